//! A TCP proxy on loopback that a test can cut and restore, or slow down: a broker or service
//! outage (or a hung server) for that test alone, without touching the shared servers.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct TcpProxy {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    /// How long what the target sends is held before it is passed on, in milliseconds.
    answer_delay_ms: Arc<AtomicU64>,
    /// Connections accepted so far.
    accepted: Arc<AtomicU64>,
    /// Bumped on every cut; live connections end when it changes.
    generation: watch::Sender<u64>,
}

impl TcpProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let down = Arc::new(AtomicBool::new(false));
        let answer_delay_ms = Arc::new(AtomicU64::new(0));
        let (generation, _) = watch::channel(0u64);
        let accept_down = down.clone();
        let accept_delay = answer_delay_ms.clone();
        let accepted = Arc::new(AtomicU64::new(0));
        let accept_count = accepted.clone();
        let accept_generation = generation.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                accept_count.fetch_add(1, Ordering::SeqCst);
                if accept_down.load(Ordering::SeqCst) {
                    drop(inbound); // as if the server had died: the connection closes at once
                    continue;
                }
                let mut cut = accept_generation.subscribe();
                let delay = accept_delay.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = inbound.split();
                    let (mut from_target, mut to_target) = outbound.split();
                    let answers = async {
                        let mut buffer = vec![0; 16 * 1024];
                        loop {
                            let read = from_target.read(&mut buffer).await?;
                            if read == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            let held = delay.load(Ordering::SeqCst);
                            if held > 0 {
                                tokio::time::sleep(Duration::from_millis(held)).await;
                            }
                            to_client.write_all(&buffer[..read]).await?;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy(&mut from_client, &mut to_target) => {}
                        _ = answers => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            down,
            answer_delay_ms,
            accepted,
            generation,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every live connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// Connections accepted so far (refused ones included).
    pub fn connections_accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Holds what the target sends for `delay` before passing it on (zero: at once again).
    pub fn delay_answers(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.answer_delay_ms.store(millis, Ordering::SeqCst);
    }
}
