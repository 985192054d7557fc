//! The orders table.

use chrono::{DateTime, Utc};
use common::order::OrderMessage;
use rust_decimal::Decimal;
use tokio_postgres::GenericClient;
use uuid::Uuid;

// Migrations from migrations/, serialised between instances by this (arbitrary) lock id.
common::embedded_schema!(0x1A7E_0002);

/// An order to bill and the request that created it.
#[derive(Debug, Clone)]
pub struct OrderToBill {
    pub order: OrderMessage,
    pub request_id: Option<String>,
}

/// Stores the orders in one statement (so one transaction); an order id already stored is
/// skipped, which makes redelivery harmless. Returns how many rows were new.
pub async fn insert_orders(
    client: &impl GenericClient,
    orders: &[OrderToBill],
) -> Result<u64, tokio_postgres::Error> {
    let mut order_ids: Vec<Uuid> = Vec::with_capacity(orders.len());
    let mut user_ids: Vec<&str> = Vec::with_capacity(orders.len());
    let mut items: Vec<i32> = Vec::with_capacity(orders.len());
    let mut amounts: Vec<Decimal> = Vec::with_capacity(orders.len());
    let mut received: Vec<DateTime<Utc>> = Vec::with_capacity(orders.len());
    let mut request_ids: Vec<Option<&str>> = Vec::with_capacity(orders.len());
    for OrderToBill { order, request_id } in orders {
        order_ids.push(order.order_id);
        user_ids.push(order.user_id.as_str());
        items.push(order.number_of_items.get());
        amounts.push(order.total_amount.get());
        received.push(order.received_at);
        request_ids.push(request_id.as_deref());
    }
    client
        .execute(
            "INSERT INTO orders (order_id, user_id, number_of_items, total_amount, received_at, request_id)
             SELECT * FROM UNNEST($1::UUID[], $2::TEXT[], $3::INT4[], $4::NUMERIC[], $5::TIMESTAMPTZ[], $6::TEXT[])
             ON CONFLICT (order_id) DO NOTHING",
            &[&order_ids, &user_ids, &items, &amounts, &received, &request_ids],
        )
        .await
}

/// An order as billed, as answered by `GET /api/billing/{order_id}`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BilledOrder {
    pub order_id: Uuid,
    pub status: &'static str,
    pub user_id: String,
    pub number_of_items: i32,
    /// Exact decimal, as a string ("45.00").
    pub total_amount: String,
    pub received_at: DateTime<Utc>,
    pub processed_at: DateTime<Utc>,
}

pub async fn find_order(
    client: &impl GenericClient,
    order_id: Uuid,
) -> Result<Option<BilledOrder>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT user_id, number_of_items, total_amount, received_at, processed_at
             FROM orders WHERE order_id = $1",
            &[&order_id],
        )
        .await?;
    Ok(row.map(|row| BilledOrder {
        order_id,
        status: "billed",
        user_id: row.get("user_id"),
        number_of_items: row.get("number_of_items"),
        total_amount: row.get::<_, Decimal>("total_amount").to_string(),
        received_at: row.get("received_at"),
        processed_at: row.get("processed_at"),
    }))
}
