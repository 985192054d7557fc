//! `billing-app dlq`, the binary itself, against the real broker: what an operator sees and
//! what each command leaves in the queues and the database.

use std::{process::Stdio, time::Duration};

use lapin::BasicProperties;
use tokio::io::AsyncWriteExt;

use test_support::unique_queue;

use crate::helpers::{as_published, order, TestBed};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `billing-app dlq ARGS` with this bed's broker and queue (and nothing else from the
/// environment), `stdin` typed in.
async fn dlq(bed: &TestBed, args: &[&str], stdin: &str) -> Run {
    dlq_with(&bed_env(bed), args, stdin).await
}

async fn dlq_with(env: &[(&str, String)], args: &[&str], stdin: &str) -> Run {
    let mut child = spawn_dlq(env, args);
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    finished(child).await
}

fn bed_env(bed: &TestBed) -> Vec<(&'static str, String)> {
    vec![
        ("AMQP_URL", test_support::test_amqp_url()),
        ("BILLING_QUEUE", bed.queue.name().to_owned()),
    ]
}

/// `billing-app dlq ARGS` started with this bed's broker and queue, its stdin open.
fn dlq_child(bed: &TestBed, args: &[&str]) -> tokio::process::Child {
    spawn_dlq(&bed_env(bed), args)
}

fn spawn_dlq(env: &[(&str, String)], args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_billing-app"))
        .arg("dlq")
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("billing-app runs")
}

async fn finished(child: tokio::process::Child) -> Run {
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("billing-app dlq finished within 60 s")
        .unwrap();
    let run = Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    eprintln!("dlq -> {}\n{}{}", run.code, run.stdout, run.stderr);
    run
}

impl TestBed {
    /// Puts a message straight into the dead-letter queue, as if dead-lettered long ago.
    async fn dead_letter_raw(&self, body: &[u8], properties: BasicProperties) {
        self.publish_raw_to(&self.queue.dead_letter_queue(), body, properties)
            .await;
    }

    /// Takes the order queue's messages and gives each back, up to `times` deliveries in all,
    /// as consumers crashing on them would.
    async fn give_back_deliveries(&self, times: u32) {
        for _ in 0..times {
            let Some(message) = self
                .channel
                .basic_get(self.queue.name().into(), Default::default())
                .await
                .unwrap()
            else {
                return;
            };
            message
                .delivery
                .acker
                .nack(lapin::options::BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
                .unwrap();
        }
    }
}

fn line_of<'a>(listing: &'a str, order_id: &str) -> &'a str {
    listing
        .lines()
        .find(|line| line.starts_with(order_id))
        .unwrap_or_else(|| panic!("{order_id} not listed in:\n{listing}"))
}

#[tokio::test]
async fn list_shows_each_dead_letter_with_its_reason_and_leaves_it_there() {
    let bed = TestBed::new().await;
    // Dead-lettered by billing itself, on its third delivery (two consumers gave it back
    // before): an order with a negative amount.
    let poison = order("p", "1", "1.00");
    let (body, properties) = as_published(&poison, Some("req-poison"));
    let mut json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    json["total_amount"] = "-4".into();
    bed.publish_raw(json.to_string().as_bytes(), properties)
        .await;
    bed.give_back_deliveries(2).await;
    let billing = bed.start_billing().await;
    bed.wait_for_dead_letters(1).await;
    billing.stop().await;
    // And one the broker dead-lettered at the delivery limit (a consumer that always crashed).
    let crashy = order("c", "1", "1.00");
    bed.publish(&crashy, "req-crashy").await;
    bed.give_back_deliveries(u32::MAX).await;
    bed.wait_for_dead_letters(2).await;

    for _ in 0..2 {
        let run = dlq(&bed, &["list"], "").await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        let poisoned = line_of(&run.stdout, &poison.order_id.to_string());
        assert!(
            poisoned.contains("billing: invalid order message: must be greater than 0"),
            "{poisoned}"
        );
        assert!(
            poisoned.contains(" 3  billing"),
            "three deliveries: {poisoned}"
        );
        assert!(poisoned.contains(&chrono::Utc::now().format("%Y-%m-%dT").to_string()));
        let limited = line_of(&run.stdout, &crashy.order_id.to_string());
        assert!(limited.contains("delivery limit"), "{limited}");
        assert!(
            limited.contains(&format!(" {} ", common::amqp::DELIVERY_LIMIT + 1)),
            "deliveries shown: {limited}"
        );
        assert!(run.stdout.contains("2 message(s) in"), "{}", run.stdout);
        // Listing takes nothing away (and the second listing sees the same).
        assert_eq!(bed.dead_letters().await, 2);
    }
}

#[tokio::test]
async fn replay_bills_the_chosen_orders_once_and_a_poison_message_comes_back() {
    let bed = TestBed::new().await;
    let billing = bed.start_billing().await;
    // Two good orders dead-lettered (say, while the database refused them); one of them was
    // billed meanwhile by another copy. And a poison message.
    let first = order("1", "1", "1.00");
    let second = order("2", "2", "2.00");
    let kept = order("3", "3", "3.00");
    bed.publish(&second, "req-second").await;
    bed.wait_for_rows(1).await;
    for message in [&first, &second, &kept] {
        let (body, properties) = as_published(message, Some("req-dead"));
        bed.dead_letter_raw(&body, properties).await;
    }
    let poison = order("4", "1", "1.00");
    let (_, properties) = as_published(&poison, Some("req-poison"));
    bed.dead_letter_raw(b"{\"not\": \"an order\"}", properties)
        .await;

    // Chosen ones only; an order not there is named, and the rest stays.
    let absent = uuid::Uuid::new_v4();
    let run = dlq(
        &bed,
        &[
            "replay",
            &first.order_id.to_string(),
            &second.order_id.to_string(),
            &absent.to_string(),
        ],
        "",
    )
    .await;
    assert_eq!(run.code, 1, "an asked-for order was missing");
    assert!(run.stderr.contains(&absent.to_string()), "{}", run.stderr);
    assert!(run.stdout.contains(&format!("replayed {}", first.order_id)));
    assert!(run
        .stdout
        .contains(&format!("replayed {}", second.order_id)));
    bed.wait_for_rows(2).await; // first billed; second was already: still one row
    assert_eq!(bed.dead_letters().await, 2, "kept and poison stay");

    // All: kept is billed, the poison message is rejected again and comes back.
    let run = dlq(&bed, &["replay", "--all"], "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("2 message(s) replayed"),
        "{}",
        run.stdout
    );
    bed.wait_for_rows(3).await;
    bed.wait_for_dead_letters(1).await;
    let run = dlq(&bed, &["list"], "").await;
    let back = line_of(&run.stdout, &poison.order_id.to_string());
    assert!(back.contains("billing: invalid order message"), "{back}");
    billing.stop().await;

    let client = bed.db.client().await;
    let billed: i64 = client
        .query_one(
            "SELECT count(DISTINCT order_id) FROM orders WHERE order_id = ANY($1)",
            &[&vec![first.order_id, second.order_id, kept.order_id]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((billed, bed.rows().await), (3, 3), "each billed once");
}

#[tokio::test]
async fn purge_asks_first_and_empties_the_queue_only_when_confirmed() {
    let bed = TestBed::new().await;
    for _ in 0..3 {
        let (body, properties) = as_published(&order("1", "1", "1.00"), None);
        bed.dead_letter_raw(&body, properties).await;
    }
    for answer in ["", "no\n", "y\n"] {
        let run = dlq(&bed, &["purge"], answer).await;
        assert_eq!(run.code, 1, "{answer:?} is no confirmation");
        assert!(
            run.stderr.contains("Delete the 3 message(s)"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("nothing purged"));
        assert_eq!(bed.dead_letters().await, 3);
    }
    let run = dlq(&bed, &["purge"], "yes\n").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("purged 3 message(s)"), "{}", run.stdout);
    assert_eq!(bed.dead_letters().await, 0);

    let (body, properties) = as_published(&order("1", "1", "1.00"), None);
    bed.dead_letter_raw(&body, properties).await;
    let run = dlq(&bed, &["purge", "--yes"], "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(bed.dead_letters().await, 0);

    // Messages arriving while the operator reads the question are not what they confirmed.
    for _ in 0..2 {
        let (body, properties) = as_published(&order("1", "1", "1.00"), None);
        bed.dead_letter_raw(&body, properties).await;
    }
    let mut child = dlq_child(&bed, &["purge"]);
    let mut stdin = child.stdin.take().unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..5 {
        let (body, properties) = as_published(&order("2", "1", "1.00"), None);
        bed.dead_letter_raw(&body, properties).await;
    }
    stdin.write_all(b"yes\n").await.unwrap();
    drop(stdin);
    let run = finished(child).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("Delete the 2 message(s)"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("purged 2 message(s)"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("5 message(s) arrived meanwhile and were kept"),
        "{}",
        run.stdout
    );
    assert_eq!(bed.dead_letters().await, 5);
    // The order queue is never touched.
    assert_eq!(bed.ready_messages(bed.queue.name()).await, 0);
}

#[tokio::test]
async fn usage_configuration_and_broker_errors_have_their_own_exit_status() {
    let queue = ("BILLING_QUEUE", "test-dlq-errors".to_owned());
    let run = dlq_with(std::slice::from_ref(&queue), &["replay"], "").await;
    assert_eq!(run.code, 64);
    assert!(
        run.stderr.contains("usage: billing-app dlq"),
        "{}",
        run.stderr
    );

    let run = dlq_with(std::slice::from_ref(&queue), &["list"], "").await;
    assert_eq!(run.code, 78);
    assert!(run.stderr.contains("AMQP_URL is not set"), "{}", run.stderr);

    let run = dlq_with(&[], &["--env-file", "/nonexistent/billing.env", "list"], "").await;
    assert_eq!(run.code, 78);
    assert!(
        run.stderr.contains("/nonexistent/billing.env"),
        "{}",
        run.stderr
    );

    // A port nothing listens on: refused at once, said clearly, nothing hangs.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = (
        "AMQP_URL",
        format!("amqp://user:secret-password@127.0.0.1:{port}/%2f"),
    );
    let run = dlq_with(&[unreachable, queue], &["list"], "").await;
    assert_eq!(run.code, 69);
    assert!(
        run.stderr.contains("broker is unavailable"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("secret-password"), "no password shown");
}

#[tokio::test]
async fn one_command_at_a_time_and_a_mistyped_queue_is_not_created() {
    let bed = TestBed::new().await;
    let (body, properties) = as_published(&order("1", "1", "1.00"), None);
    bed.dead_letter_raw(&body, properties).await;
    // A purge waiting for its answer holds the queue; a second command is told so.
    let mut waiting = dlq_child(&bed, &["purge"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let run = dlq(&bed, &["list"], "").await;
    assert_eq!(run.code, 75, "{}", run.stderr);
    assert!(
        run.stderr.contains("another billing-app dlq command"),
        "{}",
        run.stderr
    );
    drop(waiting.stdin.take());
    assert_eq!(
        finished(waiting).await.code,
        1,
        "closed stdin: not confirmed"
    );
    assert_eq!(dlq(&bed, &["list"], "").await.code, 0, "free again");

    let typo = unique_queue();
    let run = dlq_with(
        &[
            ("AMQP_URL", test_support::test_amqp_url()),
            ("BILLING_QUEUE", typo.name().to_owned()),
        ],
        &["list"],
        "",
    )
    .await;
    assert_eq!(run.code, 78, "{}", run.stderr);
    assert!(run.stderr.contains("does not exist"), "{}", run.stderr);
    let channel = test_support::amqp_channel().await;
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    assert!(
        channel
            .queue_declare(
                typo.dead_letter_queue().as_str().into(),
                passive,
                Default::default()
            )
            .await
            .is_err(),
        "no queue was created"
    );
}

#[tokio::test]
async fn replay_piped_into_a_closed_reader_still_replays_everything() {
    let bed = TestBed::new().await;
    for i in 0..20 {
        let (body, properties) = as_published(&order(&i.to_string(), "1", "1.00"), None);
        bed.dead_letter_raw(&body, properties).await;
    }
    let mut child = dlq_child(&bed, &["replay", "--all"]);
    drop(child.stdout.take()); // as `| head -0` would
    let run = finished(child).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(bed.dead_letters().await, 0);
    assert_eq!(bed.ready_messages(bed.queue.name()).await, 20);
}

#[tokio::test]
async fn a_message_the_tool_cannot_read_is_named_with_the_way_out_and_a_partial_purge_is_counted() {
    let bed = TestBed::new().await;
    for i in 0..3 {
        let (body, properties) = as_published(&order("5", "1", "1.00"), Some(&format!("r-{i}")));
        bed.dead_letter_raw(&body, properties).await;
    }
    test_support::raw_amqp::publish_with_raw_message_id(
        &test_support::test_amqp_url(),
        &bed.queue.dead_letter_queue(),
        b"\xc3\x28",
        b"{}",
    )
    .await;
    let purge = dlq(&bed, &["purge", "--yes"], "").await;
    assert_eq!(purge.code, 65, "65: a message this tool cannot read");
    assert!(
        purge.stderr.contains("purged 3 of the 4"),
        "{}",
        purge.stderr
    );
    assert!(
        purge.stderr.contains("Reject requeue false"),
        "{}",
        purge.stderr
    );
    // Nothing but the unreadable one is left, and list says the same about it.
    let list = dlq(&bed, &["list"], "").await;
    assert_eq!(list.code, 65);
    // (Back in the queue once the broker has seen the tool's connection close.)
    bed.wait_for_dead_letters(1).await;
}
