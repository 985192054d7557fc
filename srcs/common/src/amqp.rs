//! RabbitMQ: connecting, and the queue topology that the gateway (producer) and billing
//! (consumer) both declare. Declaring with different arguments fails on the broker, so the
//! arguments live here only.

use std::{str::FromStr, time::Duration};

use lapin::{
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
    uri::{AMQPScheme, AMQPUri},
    Channel, Connection, ConnectionProperties, ExchangeKind,
};
use uuid::Uuid;

/// How often a message may be delivered before the broker dead-letters it: a message that
/// crashes the consumer every time ends in the dead-letter queue instead of looping forever.
pub const DELIVERY_LIMIT: i64 = 20;

/// The heartbeat a connection asks for unless its URL names one (`?heartbeat=S`): a node that
/// goes silent (powered off, cut off by a firewall) is noticed after two missed heartbeats,
/// 10 s, instead of RabbitMQ's default 60 s heartbeat (two minutes). RabbitMQ advises against
/// values under 5 s.
pub const HEARTBEAT_SECONDS: u16 = 5;

/// The largest frame a connection asks for unless its URL names one (`?frame_max=B`). lapin
/// keeps buffers of 32 frames each way for a connection's life, zero-filled: at RabbitMQ's
/// default of 128 KiB that is 8 MiB of resident memory per connection (heap profile of the
/// gateway, idle), for messages of a few hundred bytes (orders) to a few KiB (catalogue events);
/// a larger body simply spans more frames. 16 KiB: 1 MiB per connection.
pub const FRAME_MAX_BYTES: u32 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Lapin(#[from] lapin::Error),
    #[error("no broker node answered ({0})")]
    NoNode(String),
    #[error("no AMQP handshake: {0}")]
    Handshake(#[source] std::io::Error),
}

/// One broker node named in `AMQP_URL`.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerNode {
    uri: AMQPUri,
    /// `host:port`: how logs, readiness and metrics name the node (never with credentials).
    address: String,
}

impl BrokerNode {
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl std::fmt::Debug for BrokerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address)
    }
}

/// `AMQP_URL`: the broker nodes of one cluster, comma-separated, the preferred one first (the
/// node on the service's own machine). A connection goes to the first node that answers, so a
/// service returns to its preferred node whenever it reconnects and that node is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerNodes(Vec<BrokerNode>);

impl BrokerNodes {
    pub fn iter(&self) -> impl Iterator<Item = &BrokerNode> {
        self.0.iter()
    }
}

impl FromStr for BrokerNodes {
    type Err = String;

    /// Every node's URL is checked; a message names the node by position, never quoting the
    /// URL (it holds the password).
    fn from_str(text: &str) -> Result<Self, String> {
        let nodes = text
            .split(',')
            .enumerate()
            .map(|(i, url)| {
                let url = url.trim();
                let mut uri: AMQPUri = url
                    .parse()
                    .map_err(|_| format!("URL {} of the list is not an amqp:// URL", i + 1))?;
                let position = i + 1;
                // The URL parser turns a bracketed IPv6 host into "localhost", and a URL with
                // no host at all into guest@localhost.
                if url.contains('[') {
                    return Err(format!(
                        "URL {position} of the list has an IPv6 address: name the host instead"
                    ));
                }
                // The user sits between "://" and the host: an "@" in the path or query does
                // not count.
                let authority = url.split_once("://").map_or("", |(_, rest)| rest);
                let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
                if !authority.contains('@') {
                    return Err(format!(
                        "URL {position} of the list names no user and host (amqp://user:password@host:port/vhost)"
                    ));
                }
                // Built without TLS: an amqps:// URL would be spoken in plain text.
                if uri.scheme != AMQPScheme::AMQP {
                    return Err(format!(
                        "URL {position} of the list is amqps://, which this build cannot speak (no TLS): use amqp:// on a private network"
                    ));
                }
                if uri.authority.port == 0 {
                    return Err(format!("URL {position} of the list has port 0"));
                }
                uri.query.heartbeat.get_or_insert(HEARTBEAT_SECONDS);
                uri.query.frame_max.get_or_insert(FRAME_MAX_BYTES);
                let address = format!("{}:{}", uri.authority.host, uri.authority.port);
                Ok(BrokerNode { uri, address })
            })
            .collect::<Result<Vec<_>, String>>()?;
        for (i, node) in nodes.iter().enumerate() {
            if nodes[..i]
                .iter()
                .any(|earlier| earlier.address == node.address)
            {
                return Err(format!(
                    "URL {} of the list names {} again: list each node once",
                    i + 1,
                    node.address
                ));
            }
        }
        Ok(Self(nodes))
    }
}

/// Which broker node a service is connected to, as a gauge per node (1 for the one in use):
/// `<service>_broker_node_connected{node="host:port"}`.
#[derive(Clone)]
pub struct NodeGauge {
    gauge: prometheus::IntGaugeVec,
    nodes: Vec<String>,
}

impl NodeGauge {
    pub fn new(metrics: &crate::metrics::Metrics, nodes: &BrokerNodes) -> Self {
        let gauge = metrics.gauge_vec(
            "broker_node_connected",
            "1 for the broker node the service is connected to, 0 for the other nodes it knows.",
            &["node"],
        );
        let gauge = Self {
            gauge,
            nodes: nodes.iter().map(|node| node.address().to_owned()).collect(),
        };
        gauge.set(None);
        gauge
    }

    /// Records the node now in use (`None`: none).
    pub fn set(&self, connected: Option<&BrokerNode>) {
        for node in &self.nodes {
            let in_use = connected.is_some_and(|c| c.address() == node);
            self.gauge.with_label_values(&[node]).set(i64::from(in_use));
        }
    }
}

/// One call to the broker, given at most `timeout`: a broker that accepts a request but never
/// answers it (a node waiting for a silent peer) must not hold the caller.
pub async fn within<T>(
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, AmqpError> {
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| AmqpError::Timeout(timeout))?
        .map_err(AmqpError::from)
}

/// What a new channel declares (or checks) before it is handed over.
#[derive(Debug, Clone, Copy)]
pub enum Topology<'a> {
    /// The order queue with its dead-letter exchange and queue.
    Orders(&'a OrderQueue),
    /// The catalogue's change events' exchange of this name.
    CatalogueEvents(&'a str),
    /// Nothing declared: these queues must exist (a channel error, `NOT_FOUND`, if one does
    /// not), for a tool that must change nothing it does not mean to.
    Existing(&'a [&'a str]),
}

impl Topology<'_> {
    async fn prepare(self, channel: &Channel) -> Result<(), lapin::Error> {
        match self {
            Self::Orders(queue) => queue.declare(channel).await,
            Self::CatalogueEvents(exchange) => {
                crate::catalogue_event::declare_exchange(channel, exchange).await
            }
            Self::Existing(queues) => {
                for queue in queues {
                    ready_messages(channel, queue).await?;
                }
                Ok(())
            }
        }
    }
}

/// Connects to the first node of `nodes` that answers and opens a channel on it with
/// `topology` declared; `name` shows in the broker's connection list. Each node gets `timeout`
/// for all of it, so a node that accepts connections but cannot serve the queue (one cut off
/// from its cluster) is passed over like one that is down. Returns the node used.
pub async fn open_channel(
    nodes: &BrokerNodes,
    name: &str,
    topology: Topology<'_>,
    timeout: Duration,
) -> Result<(Connection, Channel, BrokerNode), AmqpError> {
    open_channel_then(nodes, name, timeout, topology).await
}

/// [`open_channel`] with publisher confirms on: what a publisher opens.
pub async fn open_confirming_channel(
    nodes: &BrokerNodes,
    name: &str,
    topology: Topology<'_>,
    timeout: Duration,
) -> Result<(Connection, Channel, BrokerNode), AmqpError> {
    let (connection, channel, node) = open_channel(nodes, name, topology, timeout).await?;
    within(
        timeout,
        channel.confirm_select(lapin::options::ConfirmSelectOptions::default()),
    )
    .await?;
    Ok((connection, channel, node))
}

async fn open_channel_then(
    nodes: &BrokerNodes,
    name: &str,
    timeout: Duration,
    topology: Topology<'_>,
) -> Result<(Connection, Channel, BrokerNode), AmqpError> {
    let mut failures = Vec::new();
    for node in nodes.iter() {
        match open_channel_on(node, name, topology, timeout).await {
            Ok((connection, channel)) => return Ok((connection, channel, node.clone())),
            Err(e) if nodes.0.len() == 1 => return Err(e),
            Err(e) => failures.push(format!("{}: {e}", node.address)),
        }
    }
    Err(AmqpError::NoNode(failures.join("; ")))
}

async fn open_channel_on(
    node: &BrokerNode,
    name: &str,
    topology: Topology<'_>,
    timeout: Duration,
) -> Result<(Connection, Channel), AmqpError> {
    let deadline = tokio::time::Instant::now() + timeout;
    speaks_amqp(node, deadline, timeout).await?;
    let properties = ConnectionProperties::default().with_connection_name(LongString::from(name));
    let connection = tokio::time::timeout_at(
        deadline,
        Connection::connect_uri(node.uri.clone(), properties),
    )
    .await
    .map_err(|_| AmqpError::Timeout(timeout))??;
    let opened = tokio::time::timeout_at(deadline, async {
        let channel = connection.create_channel().await?;
        topology.prepare(&channel).await?;
        Ok::<_, lapin::Error>(channel)
    })
    .await;
    match opened {
        Ok(Ok(channel)) => Ok((connection, channel)),
        failed => {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                connection.close(200, "giving up".into()),
            )
            .await;
            Err(match failed {
                Ok(Err(e)) => e.into(),
                _ => AmqpError::Timeout(timeout),
            })
        }
    }
}

/// Whether `node` starts the AMQP handshake before `deadline`: it answers a protocol header
/// with Connection.Start. Asked on a connection of our own first because lapin's connection
/// thread, once started, waits for the server for as long as the socket stays open: a connect
/// abandoned at its deadline against a node that accepts connections but never speaks (a hung
/// broker) would leave that thread and its socket behind, one more at every retry.
async fn speaks_amqp(
    node: &BrokerNode,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<(), AmqpError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = &node.uri.authority;
    let handshake = async {
        let mut stream =
            tokio::net::TcpStream::connect((authority.host.as_str(), authority.port)).await?;
        stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
        // A method frame (type 1): Connection.Start. Anything else is no AMQP 0-9-1 broker.
        let mut frame_type = [0; 1];
        stream.read_exact(&mut frame_type).await?;
        if frame_type[0] == 1 {
            Ok(())
        } else {
            Err(std::io::Error::other("not an AMQP 0-9-1 broker"))
        }
    };
    tokio::time::timeout_at(deadline, handshake)
        .await
        .map_err(|_| AmqpError::Timeout(timeout))?
        .map_err(AmqpError::Handshake)
}

/// A queue or exchange name of 1 to 200 characters from `[A-Za-z0-9._-]` (the names we derive
/// from it stay under AMQP's 255).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err("must be 1 to 200 characters from A-Z, a-z, 0-9, '.', '_' and '-'".to_owned())
    }
}

/// The orders queue (a durable quorum queue) and its dead-letter exchange and queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderQueue {
    name: String,
}

impl OrderQueue {
    pub const DEFAULT_NAME: &'static str = "billing_queue";

    /// A queue name as [`check_name`] allows.
    pub fn new(name: &str) -> Result<Self, String> {
        check_name(name)?;
        Ok(Self {
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.name)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead-letter", self.name)
    }

    /// Quorum queue: replicated-log durability, and the only kind with a delivery limit on
    /// RabbitMQ 3.10 (Debian 12) as on 4.x. Dead-lettering is at-least-once, so a poison message
    /// is never lost on its way to the dead-letter queue (this requires `reject-publish`).
    fn arguments(&self) -> FieldTable {
        let mut args = quorum_queue();
        let mut put = |key: &str, value: AMQPValue| {
            args.insert(ShortString::from(key), value);
        };
        put("x-delivery-limit", AMQPValue::LongLongInt(DELIVERY_LIMIT));
        put(
            "x-dead-letter-exchange",
            AMQPValue::LongString(self.dead_letter_exchange().as_str().into()),
        );
        put(
            "x-dead-letter-strategy",
            AMQPValue::LongString("at-least-once".into()),
        );
        put("x-overflow", AMQPValue::LongString("reject-publish".into()));
        args
    }

    /// Declares everything (idempotent: the same arguments every time).
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .exchange_declare(
                self.dead_letter_exchange().as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(
                self.dead_letter_queue().as_str().into(),
                durable,
                quorum_queue(),
            )
            .await?;
        channel
            .queue_bind(
                self.dead_letter_queue().as_str().into(),
                self.dead_letter_exchange().as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_declare(self.name.as_str().into(), durable, self.arguments())
            .await?;
        Ok(())
    }

    /// Deletes everything `declare` made, messages included (for queues made for one run, such
    /// as the benchmark's).
    pub async fn delete(&self, channel: &Channel) -> Result<(), lapin::Error> {
        for queue in [self.name.clone(), self.dead_letter_queue()] {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        channel
            .exchange_delete(
                self.dead_letter_exchange().as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
    }
}

/// How many messages are ready in `queue` (a passive declare: a channel error, `NOT_FOUND`, if
/// there is no such queue; nothing is created).
pub async fn ready_messages(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    Ok(channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await?
        .message_count())
}

/// A quorum queue: replicated on the cluster's nodes, so it outlives any one of them (a classic
/// queue lives on one node and is unavailable while that node is down). Both the order queue
/// and its dead-letter queue are.
fn quorum_queue() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        AMQPValue::LongString("quorum".into()),
    );
    args
}

/// A consumer tag that tells which process holds a delivery.
pub fn consumer_tag(service: &str) -> String {
    format!(
        "{service}-{}-{}",
        std::process::id(),
        Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_lists_name_their_nodes_without_credentials() {
        let nodes: BrokerNodes =
            "amqp://u:secret@10.0.0.2:5672/movie, amqp://u:secret@broker-b/movie"
                .parse()
                .unwrap();
        let addresses: Vec<_> = nodes.iter().map(BrokerNode::address).collect();
        assert_eq!(addresses, ["10.0.0.2:5672", "broker-b:5672"]);
        assert!(!format!("{nodes:?}").contains("secret"));
        let err = "amqp://u:secret@a/v,http://u:secret@b"
            .parse::<BrokerNodes>()
            .unwrap_err();
        assert!(err.contains("URL 2") && !err.contains("secret"), "{err}");
        assert!("".parse::<BrokerNodes>().is_err());
        let err = "amqp://u:p@[::1]:5672/v"
            .parse::<BrokerNodes>()
            .unwrap_err();
        assert!(err.contains("IPv6"), "{err}");
        for bad in [
            "amqp://127.0.0.1/v?x=@",
            "amqp://u:p@a:0/v",
            "amqp://u:p@a:5672/v,amqp://w:q@a/v",
        ] {
            assert!(bad.parse::<BrokerNodes>().is_err(), "{bad}");
        }
    }

    #[test]
    fn connections_ask_for_a_short_heartbeat_and_small_frames_unless_the_url_names_them() {
        let nodes: BrokerNodes = "amqp://u:p@a/v,amqp://u:p@b/v?heartbeat=30&frame_max=131072"
            .parse()
            .unwrap();
        let heartbeats: Vec<_> = nodes.iter().map(|node| node.uri.query.heartbeat).collect();
        assert_eq!(heartbeats, [Some(HEARTBEAT_SECONDS), Some(30)]);
        let frames: Vec<_> = nodes.iter().map(|node| node.uri.query.frame_max).collect();
        assert_eq!(frames, [Some(FRAME_MAX_BYTES), Some(131_072)]);
    }

    #[test]
    fn queue_names_are_checked_and_derived() {
        let queue = OrderQueue::new("billing_queue").unwrap();
        assert_eq!(queue.dead_letter_exchange(), "billing_queue.dlx");
        assert_eq!(queue.dead_letter_queue(), "billing_queue.dead-letter");
        assert!(OrderQueue::new("").is_err());
        assert!(OrderQueue::new("has space").is_err());
        assert!(OrderQueue::new(&"q".repeat(201)).is_err());
    }

    #[test]
    fn queue_arguments_carry_an_explicit_delivery_limit_and_dead_letter_exchange() {
        let args = OrderQueue::new("q").unwrap().arguments();
        let inner = args.inner();
        assert_eq!(
            inner.get("x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(DELIVERY_LIMIT))
        );
        assert_eq!(
            inner.get("x-dead-letter-exchange"),
            Some(&AMQPValue::LongString("q.dlx".into()))
        );
        assert_eq!(
            inner.get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
    }

    /// The threads of this process named `name`.
    fn threads_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.trim_end() == name)
            .count()
    }

    #[tokio::test]
    async fn a_node_that_accepts_but_never_speaks_costs_nothing_after_the_deadline() {
        // Accepts connections, holds them, never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let nodes: BrokerNodes = format!("amqp://u:p@127.0.0.1:{port}/movie")
            .parse()
            .unwrap();
        let node = nodes.iter().next().unwrap();
        let queue = OrderQueue::new("silent-node-test").unwrap();
        let threads_before = threads_named("lapin-io-loop");
        for _ in 0..5 {
            let attempt = open_channel_on(
                node,
                "test",
                Topology::Orders(&queue),
                Duration::from_millis(100),
            )
            .await;
            assert!(matches!(attempt, Err(AmqpError::Timeout(_))), "{attempt:?}");
        }
        assert_eq!(threads_named("lapin-io-loop"), threads_before);
        held.abort();
    }
}
