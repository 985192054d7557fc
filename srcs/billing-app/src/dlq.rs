//! `billing-app dlq`: the operator's way out of the dead-letter queue.
//!
//! - `list`: each dead-lettered message with its order id, why and when it was dead-lettered,
//!   and how many times it was delivered; the messages stay where they are.
//! - `replay --all | ORDER_ID...`: back onto the order queue. Each message is published with
//!   publisher confirms and acknowledged from the dead-letter queue only once the broker has
//!   confirmed it: a crash in between leaves it in both queues, and billing bills an order once
//!   whatever the number of copies (the order id is the key).
//! - `purge [--yes]`: deletes the messages the operator was told of, after a confirmation typed
//!   on stdin (messages that arrive meanwhile are kept).
//!
//! The messages are read one at a time with `basic.get` and held unacknowledged while the
//! command runs, so a message is seen once per run, and whatever the command does not settle
//! returns to the dead-letter queue when its channel closes, in any failure. One command at a
//! time per queue (an exclusive lock queue): another would see only the messages not held. The
//! commands declare nothing: a mistyped queue name is an error, not a new queue.

use std::{
    cell::Cell,
    collections::BTreeSet,
    io::{BufRead, Write},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use chrono::{DateTime, Utc};
use common::{
    amqp::{self, BrokerNodes, OrderQueue},
    config::{ConfigError, Env, FromEnv},
    order::message::OrderEnvelope,
    telemetry::error_chain,
};
use futures_util::StreamExt;
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
    Channel, Confirmation, Connection,
};
use uuid::Uuid;

use crate::dead_letter::{printable, without_dead_letter_headers, DeadLetterNote};

const USAGE: &str = "\
usage: billing-app dlq [--env-file FILE] list
       billing-app dlq [--env-file FILE] replay (--all | ORDER_ID...)
       billing-app dlq [--env-file FILE] purge [--yes]

The broker and queue come from AMQP_URL and BILLING_QUEUE, as for the service: from the
environment (and ./.env), or only from FILE with --env-file (on a VM:
/etc/movie-platform/billing.env).
Exit status: 0 done; 1 not everything done (orders not found, purge not confirmed);
64 usage; 65 a message this tool cannot read (the error says how to take it off);
69 broker unavailable; 75 another dlq command is running; 78 configuration
(including a broker that refuses the credentials or vhost, or has no such queue).";

/// Exit statuses (sysexits.h, as the services use 78 for a bad configuration).
const EXIT_USAGE: u8 = 64;
const EXIT_DATAERR: u8 = 65;
const EXIT_UNAVAILABLE: u8 = 69;
const EXIT_TEMPFAIL: u8 = 75;
const EXIT_CONFIG: u8 = 78;

/// What a call to the broker may take before the command gives up.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq, Eq)]
enum Command {
    List,
    Replay(Selection),
    Purge { confirmed: bool },
}

#[derive(Debug, PartialEq, Eq)]
enum Selection {
    All,
    Orders(BTreeSet<Uuid>),
}

impl Selection {
    fn includes(&self, order_id: Option<Uuid>) -> bool {
        match self {
            Self::All => true,
            Self::Orders(ids) => order_id.is_some_and(|id| ids.contains(&id)),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Invocation {
    env_file: Option<PathBuf>,
    command: Command,
}

/// Parses the arguments after `dlq`.
fn parse(args: &[String]) -> Result<Invocation, String> {
    let mut args = args.iter().map(String::as_str).peekable();
    let mut env_file = None;
    if args.peek() == Some(&"--env-file") {
        args.next();
        env_file = Some(PathBuf::from(args.next().ok_or("--env-file needs a file")?));
    }
    let command = match args.next() {
        Some("list") => Command::List,
        Some("replay") => {
            let rest: Vec<&str> = args.by_ref().collect();
            match rest.as_slice() {
                [] => return Err("replay needs --all or the order ids to replay".to_owned()),
                ["--all"] => Command::Replay(Selection::All),
                ids => Command::Replay(Selection::Orders(
                    ids.iter()
                        .map(|id| {
                            Uuid::parse_str(id).map_err(|_| {
                                format!("{id:?} is not an order id (a UUID), nor --all alone")
                            })
                        })
                        .collect::<Result<_, _>>()?,
                )),
            }
        }
        Some("purge") => match args.next() {
            None => Command::Purge { confirmed: false },
            Some("--yes") => Command::Purge { confirmed: true },
            Some(other) => return Err(format!("purge takes only --yes, not {other:?}")),
        },
        Some(other) => return Err(format!("unknown command {other:?}")),
        None => return Err("which command?".to_owned()),
    };
    if let Some(extra) = args.next() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    Ok(Invocation { env_file, command })
}

/// What the commands need from billing's configuration.
struct Settings {
    brokers: BrokerNodes,
    queue: OrderQueue,
    connect_timeout: Duration,
}

impl FromEnv for Settings {
    fn read(env: &Env) -> Result<Self, ConfigError> {
        let queue: String = env.or_default("BILLING_QUEUE", OrderQueue::DEFAULT_NAME.to_owned())?;
        Ok(Self {
            brokers: env.required("AMQP_URL")?,
            queue: OrderQueue::new(&queue).map_err(|e| ConfigError::invalid("BILLING_QUEUE", e))?,
            connect_timeout: env.millis_or_default("AMQP_CONNECT_TIMEOUT_MS", 5_000)?,
        })
    }
}

/// `billing-app dlq ARGS...`: runs one command, says what it did on stdout and what went wrong
/// on stderr.
pub async fn main(args: &[String]) -> ExitCode {
    let invocation = match parse(args) {
        Ok(invocation) => invocation,
        Err(e) => {
            eprintln!("billing-app dlq: {e}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let env = match &invocation.env_file {
        None => {
            common::config::load_dotenv();
            Env::process()
        }
        Some(path) => match dotenvy::from_path_iter(path)
            .and_then(|vars| vars.collect::<Result<Vec<_>, _>>())
        {
            Ok(vars) => Env::given(vars),
            Err(e) => {
                eprintln!("billing-app dlq: cannot read {}: {e}", path.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let settings = match Settings::read(&env) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("billing-app dlq: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(&settings, invocation.command).await {
        Ok(Done::All) => ExitCode::SUCCESS,
        Ok(Done::Partly) => ExitCode::FAILURE,
        Err(failure) => {
            eprintln!("billing-app dlq: {failure}");
            ExitCode::from(failure.exit_status())
        }
    }
}

enum Done {
    All,
    /// Some of what was asked could not be done (said on stderr).
    Partly,
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("the broker is unavailable: {0}")]
    Unavailable(String),
    #[error("the broker refused: {0} (are AMQP_URL's user, password and vhost right?)")]
    Refused(String),
    #[error("{0} does not exist on the broker (is BILLING_QUEUE right?)")]
    NoQueue(String),
    #[error("another billing-app dlq command is working on {0}; try again once it has finished")]
    Locked(String),
    #[error("the broker connection failed: {0}")]
    Lost(String),
    /// RabbitMQ takes any bytes in a message's short-string properties; the client library
    /// only UTF-8, and its connection dies on the message. Nothing behind it can be read here.
    #[error("the next message in {0} has AMQP properties this tool cannot read (not UTF-8: message id, type, correlation id or a header name); take it off in RabbitMQ's management UI (Queues > {0} > Get messages, Ack mode \"Reject requeue false\", 1 message) and run the command again ({1})")]
    Unreadable(String, String),
}

impl Failure {
    fn exit_status(&self) -> u8 {
        match self {
            Self::Unavailable(_) | Self::Lost(_) => EXIT_UNAVAILABLE,
            Self::Refused(_) | Self::NoQueue(_) => EXIT_CONFIG,
            Self::Unreadable(..) => EXIT_DATAERR,
            Self::Locked(_) => EXIT_TEMPFAIL,
        }
    }

    /// A failure while connecting: the broker's refusals are configuration errors.
    fn connecting(e: &amqp::AmqpError, queues: &[&str]) -> Self {
        let text = error_chain(e);
        if text.contains("NOT_FOUND") {
            Self::NoQueue(queues.join(" or "))
        } else if text.contains("ACCESS_REFUSED") || text.contains("NOT_ALLOWED") {
            Self::Refused(text)
        } else {
            Self::Unavailable(text)
        }
    }
}

impl From<amqp::AmqpError> for Failure {
    fn from(e: amqp::AmqpError) -> Self {
        Self::Lost(error_chain(&e))
    }
}

impl From<lapin::Error> for Failure {
    fn from(e: lapin::Error) -> Self {
        Self::Lost(error_chain(&e))
    }
}

async fn run(settings: &Settings, command: Command) -> Result<Done, Failure> {
    let dead_letter_queue = settings.queue.dead_letter_queue();
    let mut expected = vec![dead_letter_queue.as_str()];
    if let Command::Replay(_) = command {
        expected.push(settings.queue.name());
    }
    let (connection, channel, _) = amqp::open_channel(
        &settings.brokers,
        "billing-app dlq",
        amqp::Topology::Existing(&expected),
        settings.connect_timeout,
    )
    .await
    .map_err(|e| Failure::connecting(&e, &expected))?;
    let mut events = connection.events_listener();
    let unreadable = async {
        while let Some(event) = events.next().await {
            if let lapin::Event::Error(e) = event {
                if matches!(e.kind(), lapin::ErrorKind::ParsingError(_)) {
                    return e;
                }
            }
        }
        std::future::pending().await
    };
    // Messages deleted for good so far, of how many, said if the command fails part way.
    let purged = Cell::new(None::<(u32, u32)>);
    let command = async {
        lock(&connection, &dead_letter_queue).await?;
        match command {
            Command::List => list(&channel, &dead_letter_queue).await,
            Command::Replay(selection) => {
                replay(&connection, &channel, &settings.queue, &selection).await
            }
            Command::Purge { confirmed } => {
                purge(&channel, &dead_letter_queue, confirmed, &purged).await
            }
        }
    };
    let outcome = tokio::select! {
        outcome = command => outcome,
        e = unreadable => Err(Failure::Unreadable(dead_letter_queue.clone(), error_chain(&e))),
    };
    if let (Err(_), Some((done, of))) = (&outcome, purged.get()) {
        eprintln!("billing-app dlq: purged {done} of the {of} message(s) before the failure below");
    }
    // Whatever was read and not settled goes back to the dead-letter queue with the channel.
    let _ = amqp::within(BROKER_TIMEOUT, connection.close(200, "done".into())).await;
    outcome
}

/// One command at a time on a dead-letter queue: an exclusive queue of this connection's (gone
/// with it), which another connection cannot declare while it exists.
async fn lock(connection: &Connection, dead_letter_queue: &str) -> Result<(), Failure> {
    let channel = amqp::within(BROKER_TIMEOUT, connection.create_channel()).await?;
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let name = format!("{dead_letter_queue}.dlq-command");
    match amqp::within(
        BROKER_TIMEOUT,
        channel.queue_declare(name.as_str().into(), exclusive, FieldTable::default()),
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if error_chain(&e).contains("RESOURCE_LOCKED") => {
            Err(Failure::Locked(dead_letter_queue.to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

/// A line on stdout. A reader that went away (`| head`) is no reason to stop: what the command
/// does matters more than what it prints.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// One dead-lettered message, as `list` shows it.
struct DeadLetter {
    order_id: Option<Uuid>,
    reason: String,
    dead_lettered_at: Option<DateTime<Utc>>,
    /// Deliveries from the order queue, when known.
    deliveries: Option<i64>,
}

impl DeadLetter {
    fn of(delivery: &Delivery) -> Self {
        let properties = &delivery.properties;
        let order_id = OrderEnvelope::from_amqp(properties, &delivery.data)
            .map(|envelope| envelope.message.order_id)
            .ok()
            // The gateway names the order in the message id too.
            .or_else(|| {
                properties
                    .message_id()
                    .as_ref()
                    .and_then(|id| Uuid::parse_str(id.as_str()).ok())
            });
        if let Some(note) = DeadLetterNote::read(properties) {
            return Self {
                order_id,
                reason: format!("billing: {}", printable(&note.reason)),
                dead_lettered_at: Some(note.at),
                deliveries: Some(note.deliveries),
            };
        }
        // Dead-lettered by the broker: its x-death header says why and when.
        let death = properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("x-death"))
            .and_then(AMQPValue::as_array)
            .and_then(|deaths| deaths.as_slice().first())
            .and_then(AMQPValue::as_field_table)
            .cloned()
            .unwrap_or_default();
        let broker_reason = match death.inner().get("reason") {
            Some(AMQPValue::LongString(text)) => {
                printable(&String::from_utf8_lossy(text.as_bytes()))
            }
            _ => "unknown".to_owned(),
        };
        let (reason, deliveries) = match broker_reason.as_str() {
            "delivery_limit" => (
                "broker: delivery limit reached, never acknowledged (billing crashed or was stopped on it each time?)".to_owned(),
                Some(amqp::DELIVERY_LIMIT + 1),
            ),
            "rejected" => (
                "broker: rejected by billing (billing's log says why)".to_owned(),
                None,
            ),
            other => (format!("broker: {other}"), None),
        };
        Self {
            order_id,
            reason,
            dead_lettered_at: death
                .inner()
                .get("time")
                .and_then(AMQPValue::as_timestamp)
                .and_then(|seconds| DateTime::from_timestamp(seconds as i64, 0)),
            deliveries,
        }
    }
}

/// How many messages `queue` holds now (ready ones: what `basic.get` can take).
async fn waiting(channel: &Channel, queue: &str) -> Result<u32, Failure> {
    Ok(amqp::within(BROKER_TIMEOUT, amqp::ready_messages(channel, queue)).await?)
}

/// Takes the messages in `queue` now, one at a time, held unacknowledged on `channel` (so each
/// once), and hands each to `each`; nothing of a message is kept once `each` is done with it.
/// Returns how many there were.
async fn for_each_message(
    channel: &Channel,
    queue: &str,
    limit: Option<u32>,
    mut each: impl AsyncFnMut(Delivery) -> Result<(), Failure>,
) -> Result<u32, Failure> {
    let count = match limit {
        Some(limit) => limit,
        None => waiting(channel, queue).await?,
    };
    let mut taken = 0;
    while taken < count {
        let got = amqp::within(
            BROKER_TIMEOUT,
            channel.basic_get(queue.into(), BasicGetOptions { no_ack: false }),
        )
        .await?;
        let Some(message) = got else { break };
        taken += 1;
        each(message.delivery).await?;
    }
    Ok(taken)
}

async fn list(channel: &Channel, dead_letter_queue: &str) -> Result<Done, Failure> {
    say(format_args!(
        "{:<36}  {:<20}  {:>10}  REASON",
        "ORDER ID", "DEAD-LETTERED AT", "DELIVERIES"
    ));
    let count = for_each_message(channel, dead_letter_queue, None, async |delivery| {
        let dead = DeadLetter::of(&delivery);
        say(format_args!(
            "{:<36}  {:<20}  {:>10}  {}",
            dead.order_id.map_or("-".to_owned(), |id| id.to_string()),
            dead.dead_lettered_at.map_or("-".to_owned(), |at| at
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()),
            dead.deliveries.map_or("-".to_owned(), |n| n.to_string()),
            dead.reason,
        ));
        Ok(())
    })
    .await?;
    say(format_args!("{count} message(s) in {dead_letter_queue}"));
    Ok(Done::All)
}

async fn replay(
    connection: &Connection,
    channel: &Channel,
    queue: &OrderQueue,
    selection: &Selection,
) -> Result<Done, Failure> {
    // Publishing on a channel of its own in confirm mode; the messages stay held on `channel`.
    let publisher = amqp::within(BROKER_TIMEOUT, connection.create_channel()).await?;
    amqp::within(
        BROKER_TIMEOUT,
        publisher.confirm_select(ConfirmSelectOptions::default()),
    )
    .await?;
    let mut found = BTreeSet::new();
    let mut replayed = 0;
    let mut refused = false;
    for_each_message(
        channel,
        &queue.dead_letter_queue(),
        None,
        async |delivery| {
            let order_id = DeadLetter::of(&delivery).order_id;
            if refused || !selection.includes(order_id) {
                return Ok(());
            }
            let confirmation = amqp::within(BROKER_TIMEOUT, async {
                publisher
                    .basic_publish(
                        "".into(),
                        queue.name().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &delivery.data,
                        without_dead_letter_headers(&delivery.properties),
                    )
                    .await?
                    .await
            })
            .await?;
            if !matches!(confirmation, Confirmation::Ack(None)) {
                // Not taken by the order queue: it stays in the dead-letter queue, and so do
                // the rest (the broker refuses more of the same).
                eprintln!(
                    "billing-app dlq: the broker did not take {} onto {}; it and the rest stay dead-lettered",
                    order_id.map_or("a message without an order id".to_owned(), |id| id.to_string()),
                    queue.name()
                );
                refused = true;
                return Ok(());
            }
            amqp::within(
                BROKER_TIMEOUT,
                channel.basic_ack(delivery.delivery_tag, BasicAckOptions::default()),
            )
            .await?;
            replayed += 1;
            match order_id {
                Some(id) => {
                    say(format_args!("replayed {id}"));
                    found.insert(id);
                }
                None => say(format_args!("replayed a message without an order id")),
            }
            Ok(())
        },
    )
    .await?;
    say(format_args!(
        "{replayed} message(s) replayed onto {}",
        queue.name()
    ));
    if refused {
        return Ok(Done::Partly);
    }
    if let Selection::Orders(asked) = selection {
        let missing: Vec<String> = asked.difference(&found).map(Uuid::to_string).collect();
        if !missing.is_empty() {
            eprintln!(
                "billing-app dlq: not in {}: {}",
                queue.dead_letter_queue(),
                missing.join(", ")
            );
            return Ok(Done::Partly);
        }
    }
    Ok(Done::All)
}

async fn purge(
    channel: &Channel,
    dead_letter_queue: &str,
    confirmed: bool,
    purged: &Cell<Option<(u32, u32)>>,
) -> Result<Done, Failure> {
    // Exactly the messages there now (the oldest first, as the queue holds them): any that
    // arrive while the operator reads the question are not part of the answer.
    let count = waiting(channel, dead_letter_queue).await?;
    if !confirmed {
        eprint!(
            "Delete the {count} message(s) in {dead_letter_queue} for good? Type yes to confirm: "
        );
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() != "yes" {
            eprintln!("billing-app dlq: not confirmed; nothing purged");
            return Ok(Done::Partly);
        }
    }
    // Each message is gone once acknowledged: `purged` keeps count for the caller.
    purged.set(Some((0, count)));
    let done = for_each_message(channel, dead_letter_queue, Some(count), async |delivery| {
        amqp::within(
            BROKER_TIMEOUT,
            channel.basic_ack(delivery.delivery_tag, BasicAckOptions::default()),
        )
        .await?;
        purged.set(purged.get().map(|(done, of)| (done + 1, of)));
        Ok(())
    })
    .await?;
    purged.set(None);
    say(format_args!(
        "purged {done} message(s) from {dead_letter_queue}"
    ));
    let left = waiting(channel, dead_letter_queue).await?;
    if left > 0 {
        say(format_args!(
            "{left} message(s) arrived meanwhile and were kept"
        ));
    }
    Ok(Done::All)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn commands_parse_and_usage_errors_say_what_is_wrong() {
        let id = "6f1c3b7e-8a54-4d0b-9e2f-51a7c4d802be";
        assert_eq!(parse(&args("list")).unwrap().command, Command::List);
        assert_eq!(
            parse(&args("--env-file /etc/x.env replay --all")).unwrap(),
            Invocation {
                env_file: Some("/etc/x.env".into()),
                command: Command::Replay(Selection::All)
            }
        );
        assert_eq!(
            parse(&args(&format!("replay {id}"))).unwrap().command,
            Command::Replay(Selection::Orders([id.parse().unwrap()].into()))
        );
        assert_eq!(
            parse(&args("purge --yes")).unwrap().command,
            Command::Purge { confirmed: true }
        );
        for (bad, says) in [
            ("", "which command"),
            ("replay", "needs --all"),
            ("replay --all x", "not an order id"),
            ("replay 12", "not an order id"),
            ("purge now", "only --yes"),
            ("list more", "unexpected argument"),
            ("drop", "unknown command"),
            ("--env-file", "needs a file"),
        ] {
            let error = parse(&args(bad)).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
    }
}
