//! A harness for tests that run the real service binaries: start, stop (SIGTERM, as systemd
//! does), kill (SIGKILL), and read their logs. Like systemd, the harness holds each HTTP
//! service's listening socket and passes it to every start (`LISTEN_FDS`), so the socket
//! outlives restarts.

use std::{
    net::{SocketAddr, TcpListener},
    os::fd::{AsRawFd, RawFd},
    path::PathBuf,
    process::Stdio,
    time::Duration,
};

use test_support::ServiceEnv;
use tokio::process::{Child, Command};

/// Where `cargo build` put the service binaries: next to this test's own `deps/` folder.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("E2E_BIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct ServiceProcess {
    pub name: &'static str,
    child: Child,
    log: PathBuf,
}

/// The descriptor number systemd passes the first socket as (`SD_LISTEN_FDS_START`).
const SD_LISTEN_FDS_START: RawFd = 3;

/// A loopback listening socket that the harness keeps, as systemd's file descriptor store does.
pub fn held_socket() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

impl ServiceProcess {
    /// Starts the service the way systemd does with a stored socket: `socket` as descriptor 3,
    /// `LISTEN_FDS=1` and `LISTEN_PID` naming the service's own process.
    pub fn start_with_socket(
        name: &'static str,
        env: &[(&str, String)],
        socket: &TcpListener,
    ) -> Self {
        let binary = bin_dir().join(name);
        assert!(
            binary.exists(),
            "{} is missing: build the workspace binaries first (scripts/test.sh does)",
            binary.display()
        );
        let log_dir = bin_dir().join("e2e-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let log = log_dir.join(format!("{name}-{}.log", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        // LISTEN_PID must be the service's pid, known only after the fork: a shell sets it to
        // its own pid and then execs the service, which keeps that pid.
        let mut command = Command::new("sh");
        command
            .args(["-c", "export LISTEN_PID=$$; exec \"$0\""])
            .arg(&binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("LISTEN_FDS", "1")
            .env("LISTEN_FDNAMES", common::systemd::socket_handover::FD_NAME);
        let fd = socket.as_raw_fd();
        // SAFETY: dup2 and fcntl are async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(move || pass_as_first_listen_fd(fd));
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { name, child, log }
    }

    /// Its resident memory now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the process dies mid-work, as in a crash or an OOM kill.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    /// SIGTERM, as `systemctl stop` sends; the service must exit 0 in time.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not stop within 20 s after SIGTERM", self.name))
            .unwrap();
        assert!(
            exit.success(),
            "{} exited with {exit} after SIGTERM; log:\n{}",
            self.name,
            self.log_text()
        );
    }
}

/// Puts `fd` at descriptor 3 without close-on-exec, in the child between fork and exec.
fn pass_as_first_listen_fd(fd: RawFd) -> std::io::Result<()> {
    let check = |result: i32| {
        if result < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    if fd == SD_LISTEN_FDS_START {
        // dup2 onto itself would leave close-on-exec set.
        // SAFETY: plain fcntl on a descriptor this process owns.
        check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) })
    } else {
        // SAFETY: dup2 onto descriptor 3 of the child about to exec (the new copy has no
        // close-on-exec flag).
        check(unsafe { libc::dup2(fd, SD_LISTEN_FDS_START) })
    }
}

/// The admin token of the platforms started here.
pub use test_support::ADMIN_TOKEN;

/// The three binaries on loopback, with databases and a queue of their own.
pub struct Platform {
    pub gateway_url: String,
    pub inventory_url: String,
    pub inventory_db: test_support::TestDatabase,
    pub billing_db: test_support::TestDatabase,
    pub queue: common::amqp::OrderQueue,
    pub http: reqwest::Client,
    inventory_addr: SocketAddr,
    billing_addr: SocketAddr,
    inventory_env: ServiceEnv,
    billing_env: ServiceEnv,
    gateway_env: ServiceEnv,
    /// `None` once closed ([`Platform::close_inventory_socket`]), as `systemctl stop` closes it.
    inventory_socket: Option<TcpListener>,
    billing_socket: Option<TcpListener>,
    gateway_socket: TcpListener,
    pub inventory: Option<ServiceProcess>,
    pub billing: Option<ServiceProcess>,
    pub gateway: Option<ServiceProcess>,
    /// Inventory instances beyond the first ([`Platform::start_with_inventories`]), on the same
    /// catalogue database, each on a socket of its own; `None` once the test stopped one.
    pub more_inventories: Vec<Option<ServiceProcess>>,
    more_inventory_sockets: Vec<TcpListener>,
    /// Sockets of the instances started beyond the first ([`Platform::start_another_billing`],
    /// [`Platform::start_another_gateway`]).
    extra_sockets: Vec<TcpListener>,
}

impl Platform {
    /// Starts inventory, billing and the gateway with the test configuration of
    /// `test_support::ServiceEnv` and waits until each is ready.
    pub async fn start() -> Self {
        Self::start_with_inventories(1).await
    }

    /// [`Platform::start`] with `count` inventory instances on one catalogue database, all
    /// behind the gateway (`INVENTORY_URL` lists them).
    pub async fn start_with_inventories(count: usize) -> Self {
        Self::start_shaped(count, None).await
    }

    /// [`Platform::start`] on the three-node test cluster of RabbitMQ: the gateway lists the
    /// nodes `movie-a` first, billing `movie-c` first, as if each ran on the machine of its node.
    pub async fn start_on_cluster() -> Self {
        Self::start_shaped(1, Some(test_support::test_cluster_url())).await
    }

    async fn start_shaped(count: usize, cluster: Option<String>) -> Self {
        let no_migration = |_url: String| async {};
        let inventory_db = test_support::TestDatabase::create("e2e", "empty", no_migration).await;
        let billing_db = test_support::TestDatabase::create("e2e", "empty", no_migration).await;
        let queue = test_support::unique_queue();
        let (inventory_socket, billing_socket, gateway_socket) =
            (held_socket(), held_socket(), held_socket());
        let (inventory_addr, gateway_addr, billing_addr) = (
            address(&inventory_socket),
            address(&gateway_socket),
            address(&billing_socket),
        );
        let inventory_url = format!("http://{inventory_addr}");
        let more_inventory_sockets: Vec<TcpListener> = (1..count).map(|_| held_socket()).collect();
        let inventory_urls: Vec<String> = std::iter::once(inventory_addr)
            .chain(more_inventory_sockets.iter().map(address))
            .map(|addr| format!("http://{addr}"))
            .collect();
        let inventory_env = ServiceEnv::inventory(&inventory_db.url)
            .with("INVENTORY_BIND_ADDR", inventory_addr.to_string());
        let billing_env = ServiceEnv::billing(&billing_db.url, &queue)
            .with("BILLING_HTTP_ADDR", billing_addr.to_string());
        let gateway_env = ServiceEnv::gateway(
            &inventory_urls.join(","),
            &format!("http://{billing_addr}"),
            &queue,
        )
        .with("GATEWAY_BIND_ADDR", gateway_addr.to_string());
        let (inventory_env, billing_env, gateway_env) = match cluster {
            None => (inventory_env, billing_env, gateway_env),
            Some(nodes) => {
                let reversed: Vec<&str> = nodes.split(',').rev().collect();
                (
                    inventory_env.with("AMQP_URL", nodes.clone()),
                    billing_env.with("AMQP_URL", reversed.join(",")),
                    gateway_env.with("AMQP_URL", nodes),
                )
            }
        };
        let mut platform = Self {
            gateway_url: format!("http://{gateway_addr}"),
            inventory_url,
            inventory_db,
            billing_db,
            queue,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            inventory_addr,
            billing_addr,
            inventory_env,
            billing_env,
            gateway_env,
            inventory_socket: Some(inventory_socket),
            billing_socket: Some(billing_socket),
            gateway_socket,
            inventory: None,
            billing: None,
            gateway: None,
            more_inventories: Vec::new(),
            more_inventory_sockets,
            extra_sockets: Vec::new(),
        };
        platform.start_inventory().await;
        for i in 0..platform.more_inventory_sockets.len() {
            let socket = &platform.more_inventory_sockets[i];
            let addr = address(socket);
            let env = platform
                .inventory_env
                .clone()
                .with("INVENTORY_BIND_ADDR", addr.to_string());
            let service = ServiceProcess::start_with_socket("inventory-app", env.vars(), socket);
            platform
                .wait_ready(&format!("http://{addr}/ready"), &service)
                .await;
            platform.more_inventories.push(Some(service));
        }
        platform.start_billing().await;
        platform.start_gateway().await;
        platform
    }

    pub async fn start_inventory(&mut self) {
        let addr = self.inventory_addr;
        let socket = held_again(&mut self.inventory_socket, addr);
        let service =
            ServiceProcess::start_with_socket("inventory-app", self.inventory_env.vars(), socket);
        self.wait_ready(&format!("http://{addr}/ready"), &service)
            .await;
        self.inventory = Some(service);
    }

    pub async fn start_billing(&mut self) {
        let addr = self.billing_addr;
        let socket = held_again(&mut self.billing_socket, addr);
        let service =
            ServiceProcess::start_with_socket("billing-app", self.billing_env.vars(), socket);
        self.wait_ready(&format!("http://{addr}/ready"), &service)
            .await;
        self.billing = Some(service);
    }

    pub async fn start_gateway(&mut self) {
        let service = ServiceProcess::start_with_socket(
            "api-gateway",
            self.gateway_env.vars(),
            &self.gateway_socket,
        );
        self.wait_ready(&format!("{}/ready", self.gateway_url), &service)
            .await;
        self.gateway = Some(service);
    }

    /// Starts one more billing-app on the same database and queue (a competing consumer), with
    /// an HTTP listener of its own, and waits until it is ready.
    pub async fn start_another_billing(&mut self) -> ServiceProcess {
        let socket = held_socket();
        let addr = socket.local_addr().unwrap();
        let env = self
            .billing_env
            .clone()
            .with("BILLING_HTTP_ADDR", addr.to_string());
        let service = ServiceProcess::start_with_socket("billing-app", env.vars(), &socket);
        self.wait_ready(&format!("http://{addr}/ready"), &service)
            .await;
        self.extra_sockets.push(socket);
        service
    }

    /// Starts one more api-gateway in front of the same services (the same configuration, a
    /// socket of its own) and waits until it is ready; returns it and its base URL. Its socket
    /// stays open as long as the platform.
    pub async fn start_another_gateway(&mut self) -> (ServiceProcess, String) {
        let socket = held_socket();
        let addr = socket.local_addr().unwrap();
        let env = self
            .gateway_env
            .clone()
            .with("GATEWAY_BIND_ADDR", addr.to_string());
        let service = ServiceProcess::start_with_socket("api-gateway", env.vars(), &socket);
        let url = format!("http://{addr}");
        self.wait_ready(&format!("{url}/ready"), &service).await;
        self.extra_sockets.push(socket);
        (service, url)
    }

    /// Stops inventory (SIGTERM) and starts it again with `overrides` added to its environment.
    pub async fn restart_inventory_with(&mut self, overrides: &[(&'static str, &str)]) {
        if let Some(inventory) = self.inventory.take() {
            inventory.stop().await;
        }
        for (name, value) in overrides {
            self.inventory_env = self.inventory_env.clone().with(name, *value);
        }
        self.start_inventory().await;
    }

    /// Stops the gateway and starts it again with `overrides` added to its environment (a new
    /// process: the idempotency keys it remembered are gone).
    pub async fn restart_gateway_with(&mut self, overrides: &[(&'static str, &str)]) {
        if let Some(gateway) = self.gateway.take() {
            gateway.stop().await;
        }
        for (name, value) in overrides {
            self.gateway_env = self.gateway_env.clone().with(name, *value);
        }
        self.start_gateway().await;
    }

    /// The address billing-app's HTTP listener answers on.
    pub fn billing_addr(&self) -> SocketAddr {
        self.billing_addr
    }

    /// Closes the listening socket held for inventory (as `systemctl stop inventory` empties
    /// its file descriptor store): with inventory not running, connections are refused instead
    /// of waiting for a restart. The next [`Platform::start_inventory`] binds it again.
    pub fn close_inventory_socket(&mut self) {
        self.inventory_socket = None;
    }

    /// The same for billing-app's listener.
    pub fn close_billing_socket(&mut self) {
        self.billing_socket = None;
    }

    async fn wait_ready(&self, url: &str, service: &ServiceProcess) {
        for _ in 0..300 {
            if let Ok(response) = self.http.get(url).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{} did not become ready; log:\n{}",
            service.name,
            service.log_text()
        );
    }

    /// `POST /api/billing` for `user` with an idempotency key: the status and the body.
    pub async fn order(
        &self,
        user: &str,
        key: &str,
    ) -> Result<(u16, serde_json::Value), reqwest::Error> {
        let response = self
            .http
            .post(format!("{}/api/billing", self.gateway_url))
            .header("idempotency-key", key)
            .json(
                &serde_json::json!({"user_id": user, "number_of_items": 1, "total_amount": "9.99"}),
            )
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or_default()))
    }

    /// [`Platform::order`] for a load test's user: the status and the order id (if 202).
    pub async fn post_order(&self, key: &str) -> Result<(u16, Option<String>), reqwest::Error> {
        let (status, body) = self.order("load", key).await?;
        Ok((status, body["order_id"].as_str().map(str::to_owned)))
    }

    /// Every order id in the billing database, and the number of rows.
    pub async fn billed(&self) -> (std::collections::HashSet<String>, usize) {
        let client = self.billing_db.client().await;
        let rows = client
            .query("SELECT order_id::text FROM orders", &[])
            .await
            .unwrap();
        let ids: std::collections::HashSet<String> = rows.iter().map(|row| row.get(0)).collect();
        (ids, rows.len())
    }

    /// Waits until at least `count` rows are billed (or `timeout`); returns the time it took.
    pub async fn wait_billed(&self, count: usize, timeout: Duration) -> Duration {
        let started = std::time::Instant::now();
        loop {
            let (_, rows) = self.billed().await;
            if rows >= count {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "only {rows} of {count} orders billed after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop_all(mut self) {
        let more_inventories = std::mem::take(&mut self.more_inventories);
        for service in [
            self.gateway.take(),
            self.billing.take(),
            self.inventory.take(),
        ]
        .into_iter()
        .chain(more_inventories)
        .flatten()
        {
            service.stop().await;
        }
    }
}

fn address(socket: &TcpListener) -> SocketAddr {
    socket.local_addr().unwrap()
}

/// The socket held for a service, bound again on `addr` if it was closed.
fn held_again(socket: &mut Option<TcpListener>, addr: SocketAddr) -> &TcpListener {
    socket.get_or_insert_with(|| TcpListener::bind(addr).unwrap())
}

/// Appends a scenario's figures to the fault suite report (printed by scripts/test.sh) and to
/// the test's output.
pub fn report(line: &str) {
    use std::io::Write;
    println!("{line}");
    let path = bin_dir().join("fault-suite-report.txt");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

/// A node of the test cluster (`movie-a`, `movie-b`, `movie-c`): `kill` (SIGKILL), `stop`
/// (the whole node, gracefully, once it is safe to), `start` (and wait until it runs) or
/// `await-healthy` (until losing it would leave every queue its majority), through
/// scripts/lib/service-ctl.sh.
pub async fn cluster_node(action: &str, node: &str) {
    service_ctl(action, node).await;
}

/// The test cluster node leading `queue` (its quorum queue's Raft leader), asked of `via`.
pub async fn queue_leader(queue: &str, via: &str) -> String {
    let output = tokio::process::Command::new("bash")
        .args([SERVICE_CTL, "leader", via, queue])
        .output()
        .await
        .expect("run service-ctl.sh");
    assert!(
        output.status.success(),
        "service-ctl.sh leader {via} {queue} failed"
    );
    let leader = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(!leader.is_empty(), "{queue} has a leader");
    leader
}

const SERVICE_CTL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scripts/lib/service-ctl.sh"
);

/// Stops or starts PostgreSQL or RabbitMQ the way scripts/test.sh runs them (with or without
/// systemd), through scripts/lib/service-ctl.sh. Async, so that load running on the same
/// (single-threaded) test runtime keeps going meanwhile: a stop or start takes seconds, and a
/// blocking call would hold every request in flight, which the load would then count as slow
/// answers from the gateway.
pub async fn service_ctl(action: &str, service: &str) {
    let status = tokio::process::Command::new("bash")
        .args([SERVICE_CTL, action, service])
        .status()
        .await
        .expect("run service-ctl.sh");
    assert!(status.success(), "service-ctl.sh {action} {service} failed");
}
