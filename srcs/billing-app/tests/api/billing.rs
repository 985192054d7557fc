use lapin::BasicProperties;

use crate::helpers::{as_published, metric_of, order, TestBed};

#[tokio::test]
async fn orders_are_billed_with_every_field_and_acknowledged() {
    let bed = TestBed::new().await;
    let billing = bed.start_billing().await;
    let first = order("88", "2", "45.00");
    bed.publish(&first, "req-first").await;
    for i in 0..9 {
        bed.publish(&order(&format!("user-{i}"), "1", "9.99"), "req-more")
            .await;
    }
    bed.wait_for_rows(10).await;

    let client = bed.db.client().await;
    let row = client
        .query_one(
            "SELECT user_id, number_of_items, total_amount::text AS total_amount, received_at,
                    processed_at, request_id
             FROM orders WHERE order_id = $1",
            &[&first.order_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>("user_id"), "88");
    assert_eq!(row.get::<_, i32>("number_of_items"), 2);
    assert_eq!(
        row.get::<_, String>("total_amount"),
        "45.00",
        "exact, as sent"
    );
    let received: chrono::DateTime<chrono::Utc> = row.get("received_at");
    let processed: chrono::DateTime<chrono::Utc> = row.get("processed_at");
    assert_eq!(
        received.timestamp_micros(),
        first.received_at.timestamp_micros()
    );
    assert!(processed >= received);
    assert_eq!(
        row.get::<_, Option<String>>("request_id").as_deref(),
        Some("req-first")
    );

    billing.stop().await;
    assert_eq!(
        bed.ready_messages(bed.queue.name()).await,
        0,
        "everything was acknowledged"
    );
}

#[tokio::test]
async fn a_duplicated_or_redelivered_order_is_billed_once() {
    let bed = TestBed::new().await;
    let repeated = order("7", "3", "12.50");
    // Already billed before a crash lost the acknowledgement:
    let client = bed.db.client().await;
    let already = order("8", "1", "1.00");
    client
        .execute(
            "INSERT INTO orders (order_id, user_id, number_of_items, total_amount, received_at) VALUES ($1, '8', 1, 1.00, now())",
            &[&already.order_id],
        )
        .await
        .unwrap();
    for _ in 0..3 {
        bed.publish(&repeated, "req-dup").await;
    }
    bed.publish(&already, "req-redelivered").await;
    let billing = bed.start_billing().await;
    bed.wait_for_rows(2).await;
    billing.stop().await;
    assert_eq!(bed.ready_messages(bed.queue.name()).await, 0);
}

#[tokio::test]
async fn poison_messages_go_to_the_dead_letter_queue_and_good_ones_still_land() {
    let bed = TestBed::new().await;
    let good = order("1", "1", "1.00");
    let json = BasicProperties::default().with_content_type("application/json".into());
    let poison: Vec<(Vec<u8>, BasicProperties)> = vec![
        (b"not json at all".to_vec(), json.clone()),
        (br#"{"order_id": 5, "user_id": "1"}"#.to_vec(), json.clone()),
        (
            br#"{"order_id": "0b6b5a57-52c3-4a4b-8a0c-1b8e2f3f4e5d", "user_id": "1", "number_of_items": "many", "total_amount": "1.00", "received_at": "2026-01-01T00:00:00Z"}"#.to_vec(),
            json.clone(),
        ),
        (
            br#"{"order_id": "0b6b5a57-52c3-4a4b-8a0c-1b8e2f3f4e5e", "user_id": "1", "number_of_items": 1, "total_amount": "-4", "received_at": "2026-01-01T00:00:00Z"}"#.to_vec(),
            json.clone(),
        ),
        {
            let (body, properties) = as_published(&good, None);
            (body, properties.with_type("order.cancelled.v9".into()))
        },
    ];
    for (body, properties) in &poison {
        bed.publish_raw(body, properties.clone()).await;
    }
    let good_after = order("2", "2", "2.00");
    bed.publish(&good_after, "req-good").await;

    let billing = bed.start_billing().await;
    bed.wait_for_rows(1).await;
    bed.wait_for_dead_letters(poison.len() as u32).await;
    billing.stop().await;
    assert_eq!(
        bed.ready_messages(bed.queue.name()).await,
        0,
        "nothing requeued forever"
    );
    let client = bed.db.client().await;
    let billed: uuid::Uuid = client
        .query_one("SELECT order_id FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(billed, good_after.order_id);
}

#[tokio::test]
async fn an_order_the_database_refuses_is_dead_lettered_and_the_batches_around_it_are_billed() {
    let bed = TestBed::new().await;
    // Nothing valid is refused by the real schema; a constraint of the test's own makes one so.
    let client = bed.db.client().await;
    client
        .execute(
            "ALTER TABLE orders ADD CONSTRAINT test_refuses CHECK (user_id <> 'refused')",
            &[],
        )
        .await
        .unwrap();
    // Batches of 50 with two written at once: the refused one's batch is stored in halves while
    // the next batch is already being written.
    let total = 500;
    for i in 0..total {
        let user = if i == 175 {
            "refused".to_owned()
        } else {
            i.to_string()
        };
        bed.publish(&order(&user, "1", "1.00"), "req-refused").await;
    }
    let billing = bed.start_billing().await;
    bed.wait_for_rows(total - 1).await;
    bed.wait_for_dead_letters(1).await;
    // Ten batches, and about 2·log2(50) smaller writes to find the culprit (one order at a time
    // took 49 more).
    let writes = metric_of(&billing, "billing_database_writes_total").await;
    assert!((10.0..=35.0).contains(&writes), "{writes} writes");
    billing.stop().await;
    assert_eq!(bed.rows().await, total - 1, "every other order billed once");
    assert_eq!(
        bed.ready_messages(bed.queue.name()).await,
        0,
        "everything was acknowledged"
    );
}

#[tokio::test]
async fn a_read_only_database_holds_the_orders_and_dead_letters_none() {
    let bed = TestBed::new().await;
    let billing = bed.start_billing().await;
    // A standby not yet promoted: connections work, every write is refused (SQLSTATE 25006).
    bed.db.set_read_only(true).await;
    let total = 120;
    bed.publish_orders(total, "1.00", "req-read-only").await;
    test_support::eventually(
        std::time::Duration::from_secs(10),
        "billing trying to store the first orders",
        || async { metric_of(&billing, "billing_messages_received_total").await >= 1.0 },
    )
    .await;
    // Its writes are refused meanwhile (one refused order was dead-lettered within milliseconds
    // when a read-only database counted as the orders' fault).
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(bed.dead_letters().await, 0, "nothing dead-lettered");
    assert_eq!(bed.rows().await, 0);

    bed.db.set_read_only(false).await;
    bed.wait_for_rows(total).await;
    billing.stop().await;
    assert_eq!(bed.dead_letters().await, 0, "nothing dead-lettered");
    assert_eq!(bed.ready_messages(bed.queue.name()).await, 0);
}

#[tokio::test]
async fn a_prefetch_under_two_batches_makes_smaller_batches_instead_of_waiting_out_the_linger() {
    let bed = TestBed::new().await;
    let total = 100;
    bed.publish_orders(total, "1.00", "req-prefetch").await;
    // With a batch written, the broker sends only 5 more: a batch of 10 waited its 3 s linger
    // every other time (over 8 s for these 100); now only the last, partial batch waits.
    let mut settings = bed.settings(&test_support::test_amqp_url());
    settings.prefetch = 15;
    settings.batch_size = 10;
    settings.batch_linger = std::time::Duration::from_secs(3);
    let billing = bed.start_billing_with(settings).await;
    test_support::eventually(
        std::time::Duration::from_secs(8),
        "all billed, no batch waiting out its linger",
        || async { bed.rows().await == total },
    )
    .await;
    billing.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_what_was_delivered_and_leaves_the_rest_queued() {
    let bed = TestBed::new().await;
    let total = 600;
    bed.publish_orders(total, "3.00", "req-shutdown").await;
    let billing = bed.start_billing().await;
    // Stop while the backlog is being drained.
    test_support::eventually(
        std::time::Duration::from_secs(10),
        "billing started",
        || async { bed.rows().await > 0 },
    )
    .await;
    billing.stop().await;
    let billed = bed.rows().await;
    let queued = bed.ready_messages(bed.queue.name()).await as i64;
    assert_eq!(
        billed + queued,
        total,
        "billed {billed} + queued {queued}: nothing lost or doubled"
    );

    // A restart drains the rest, exactly once.
    let billing = bed.start_billing().await;
    bed.wait_for_rows(total).await;
    billing.stop().await;
}

#[tokio::test]
async fn a_message_that_keeps_failing_delivery_is_dead_lettered_at_the_delivery_limit() {
    use lapin::options::{BasicGetOptions, BasicNackOptions};
    let bed = TestBed::new().await;
    bed.publish(&order("1", "1", "1.00"), "req-crashy").await;
    // A consumer that gives the message back every time, as a crashing billing-app would.
    let mut returns = 0;
    while let Some(message) = bed
        .channel
        .basic_get(bed.queue.name().into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        message
            .delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
            .unwrap();
        returns += 1;
        assert!(
            returns <= common::amqp::DELIVERY_LIMIT + 1,
            "the delivery limit is enforced"
        );
    }
    assert!(
        returns >= common::amqp::DELIVERY_LIMIT,
        "delivered {returns} times"
    );
    bed.wait_for_dead_letters(1).await;
}

#[tokio::test]
async fn a_message_our_client_cannot_parse_goes_to_the_dead_letter_queue_alone() {
    let bed = TestBed::new().await;
    // First in the queue: properties lapin cannot parse (a message id that is not UTF-8),
    // which kills billing's connection each time it is delivered...
    test_support::raw_amqp::publish_with_raw_message_id(
        &test_support::test_amqp_url(),
        bed.queue.name(),
        b"\xff\xfe",
        b"{}",
    )
    .await;
    // ...and good orders behind it, which must not go down with it.
    for i in 0..50 {
        bed.publish(&order("7", "1", "1.00"), &format!("req-behind-{i}"))
            .await;
    }
    let _billing = bed.start_billing().await;
    test_support::eventually(
        std::time::Duration::from_secs(60),
        "the 50 good orders billed",
        || async { bed.rows().await == 50 },
    )
    .await;
    // It reaches the delivery limit by itself, a connection each time, and goes alone.
    test_support::eventually(
        std::time::Duration::from_secs(60),
        "it in the dead-letter queue",
        || async { bed.dead_letters().await == 1 },
    )
    .await;
    assert_eq!(bed.ready_messages(bed.queue.name()).await, 0);
    // Full pace again: the next orders are billed as usual.
    for i in 0..20 {
        bed.publish(&order("8", "1", "1.00"), &format!("req-after-{i}"))
            .await;
    }
    bed.wait_for_rows(70).await;
    assert_eq!(bed.dead_letters().await, 1, "only it");
}
