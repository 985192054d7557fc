//! The orders table.

use chrono::{DateTime, Utc};
use common::order::message::OrderEnvelope;
use database::Failure;
use tokio_postgres::GenericClient;
use uuid::Uuid;

// Migrations from migrations/, serialised between instances by this (arbitrary) lock id.
database::embedded_schema!(0x1A7E_0002);

/// Why orders could not be stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("database pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database")]
    Database(#[from] tokio_postgres::Error),
}

impl StoreError {
    pub(crate) fn failure(&self) -> Failure {
        match self {
            Self::Pool(_) => Failure::of(None),
            Self::Database(e) => Failure::of(Some(e)),
        }
    }
}

/// What storing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// New rows.
    pub(crate) inserted: u64,
    /// Orders whose id was already billed with a different payload (an Idempotency-Key reused
    /// for another order): recorded in `order_conflicts`, never billed.
    pub(crate) conflicts: u64,
}

/// Stores the orders in one statement (so one transaction); an order id already stored is
/// skipped, which makes redelivery harmless. An order whose id is already billed with another
/// payload fingerprint is recorded as a conflict instead. Safe to repeat: a redelivered batch
/// changes nothing.
pub async fn insert_orders(
    client: &impl GenericClient,
    orders: &[OrderEnvelope],
) -> Result<Stored, tokio_postgres::Error> {
    let mut order_ids: Vec<Uuid> = Vec::with_capacity(orders.len());
    let mut user_ids: Vec<&str> = Vec::with_capacity(orders.len());
    let mut items: Vec<i32> = Vec::with_capacity(orders.len());
    // Exact decimal text ("45.00"), cast to NUMERIC by PostgreSQL: never a float on the way.
    let mut amounts: Vec<String> = Vec::with_capacity(orders.len());
    let mut received: Vec<DateTime<Utc>> = Vec::with_capacity(orders.len());
    let mut request_ids: Vec<Option<&str>> = Vec::with_capacity(orders.len());
    let mut fingerprints: Vec<Option<&str>> = Vec::with_capacity(orders.len());
    for OrderEnvelope {
        message: order,
        request_id,
        ..
    } in orders
    {
        fingerprints.push(order.payload_fingerprint.as_ref().map(|f| f.as_str()));
        order_ids.push(order.order_id);
        user_ids.push(order.user_id.as_str());
        items.push(order.number_of_items.get());
        amounts.push(String::from(order.total_amount));
        received.push(order.received_at);
        request_ids.push(request_id.as_ref().map(|id| id.as_str()));
    }
    let inserted: std::collections::HashSet<Uuid> = client
        .query(
            "INSERT INTO orders (order_id, user_id, number_of_items, total_amount, received_at, request_id, payload_fingerprint)
             SELECT * FROM UNNEST($1::UUID[], $2::TEXT[], $3::INT4[], $4::TEXT[]::NUMERIC[], $5::TIMESTAMPTZ[], $6::TEXT[], $7::TEXT[])
             ON CONFLICT (order_id) DO NOTHING
             RETURNING order_id",
            &[&order_ids, &user_ids, &items, &amounts, &received, &request_ids, &fingerprints],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    // Only an order not inserted just now, or sent twice in this batch, can conflict: compare
    // those with the payload actually billed (usually none, so no second statement).
    let mut seen = std::collections::HashSet::with_capacity(orders.len());
    let candidates: Vec<usize> = (0..orders.len())
        .filter(|&i| {
            let first_time = seen.insert(order_ids[i]);
            fingerprints[i].is_some() && (!first_time || !inserted.contains(&order_ids[i]))
        })
        .collect();
    let mut conflicts = 0;
    if !candidates.is_empty() {
        let (ids, prints) = (
            pick(&order_ids, &candidates),
            pick(&fingerprints, &candidates),
        );
        let (times, requests) = (
            pick(&received, &candidates),
            pick(&request_ids, &candidates),
        );
        conflicts = client
            .execute(
                "INSERT INTO order_conflicts (order_id, payload_fingerprint, received_at, request_id)
                 SELECT c.order_id, c.payload_fingerprint, c.received_at, c.request_id
                 FROM UNNEST($1::UUID[], $2::TEXT[], $3::TIMESTAMPTZ[], $4::TEXT[])
                      AS c (order_id, payload_fingerprint, received_at, request_id)
                 JOIN orders o USING (order_id)
                 WHERE o.payload_fingerprint <> c.payload_fingerprint
                 ON CONFLICT DO NOTHING",
                &[&ids, &prints, &times, &requests],
            )
            .await?;
    }
    Ok(Stored {
        inserted: inserted.len() as u64,
        conflicts,
    })
}

/// The values at `indices`.
fn pick<T: Copy>(values: &[T], indices: &[usize]) -> Vec<T> {
    indices.iter().map(|&i| values[i]).collect()
}

/// An order as billed, as answered by `GET /api/billing/{order_id}`.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct BilledOrder {
    order_id: Uuid,
    status: &'static str,
    user_id: String,
    number_of_items: i32,
    /// Exact decimal, as a string ("45.00").
    total_amount: String,
    received_at: DateTime<Utc>,
    processed_at: DateTime<Utc>,
    /// Of the payload billed; `null` for orders billed before fingerprints existed.
    payload_fingerprint: Option<String>,
    /// Later requests that reused the order's Idempotency-Key with another payload: not billed.
    idempotency_conflicts: Vec<IdempotencyConflict>,
}

/// A request refused because its Idempotency-Key was already used for another payload.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct IdempotencyConflict {
    payload_fingerprint: String,
    received_at: DateTime<Utc>,
    request_id: Option<String>,
}

pub(crate) async fn find_order(
    client: &impl GenericClient,
    order_id: Uuid,
) -> Result<Option<BilledOrder>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT user_id, number_of_items, total_amount::text AS total_amount, received_at, processed_at, payload_fingerprint
             FROM orders WHERE order_id = $1",
            &[&order_id],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let idempotency_conflicts = client
        .query(
            "SELECT payload_fingerprint, received_at, request_id FROM order_conflicts
             WHERE order_id = $1 ORDER BY recorded_at, payload_fingerprint",
            &[&order_id],
        )
        .await?
        .iter()
        .map(|conflict| IdempotencyConflict {
            payload_fingerprint: conflict.get("payload_fingerprint"),
            received_at: conflict.get("received_at"),
            request_id: conflict.get("request_id"),
        })
        .collect();
    Ok(Some(BilledOrder {
        payload_fingerprint: row.get("payload_fingerprint"),
        idempotency_conflicts,
        order_id,
        status: "billed",
        user_id: row.get("user_id"),
        number_of_items: row.get("number_of_items"),
        total_amount: row.get("total_amount"),
        received_at: row.get("received_at"),
        processed_at: row.get("processed_at"),
    }))
}
