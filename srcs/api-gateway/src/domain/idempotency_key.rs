//! The client's `Idempotency-Key`, and the order id derived from it.

use actix_web::http::header::HeaderMap;
use common::{
    order::UserId,
    problem::{FieldError, Problem},
};
use uuid::Uuid;

/// A client's `Idempotency-Key`: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("Idempotency-Key must be 1 to 255 visible ASCII characters".to_owned());
        }
        Ok(Self(text.to_owned()))
    }

    /// The request's key, if it sent one; a 400 problem if it is malformed or sent twice.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, Problem> {
        let invalid = |message: String| {
            Problem::validation(vec![FieldError::new("Idempotency-Key", message)])
        };
        let mut values = headers.get_all("idempotency-key");
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            // Which one would be meant is a guess; orders are not guessed at.
            return Err(invalid("sent more than once; send one".to_owned()));
        }
        value
            .to_str()
            .map_err(|_| "Idempotency-Key must be 1 to 255 visible ASCII characters".to_owned())
            .and_then(Self::parse)
            .map(Some)
            .map_err(invalid)
    }
}

/// Namespace of order ids derived from idempotency keys (a fixed, random UUID).
const IDEMPOTENT_ORDER_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_3b7e_8a54_4d0b_9e2f_51a7_c4d8_02be);

/// The id of a new order. With an idempotency key it is derived from the key and the user, so a
/// retried request gets the same id without any state at the gateway, and billing's unique
/// `order_id` turns the retry into nothing. Without a key, every request is a new order.
pub fn new_order_id(user_id: &UserId, key: Option<&IdempotencyKey>) -> Uuid {
    match key {
        Some(key) => {
            let name = format!("{}\n{}", user_id.as_str(), key.0);
            Uuid::new_v5(&IDEMPOTENT_ORDER_NAMESPACE, name.as_bytes())
        }
        None => Uuid::new_v4(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_derive_stable_order_ids_per_user() {
        let user = UserId::parse("88").unwrap();
        let other = UserId::parse("89").unwrap();
        let key = IdempotencyKey::parse("retry-me-1").unwrap();
        assert_eq!(
            new_order_id(&user, Some(&key)),
            new_order_id(&user, Some(&key))
        );
        assert_ne!(
            new_order_id(&user, Some(&key)),
            new_order_id(&other, Some(&key))
        );
        assert_ne!(new_order_id(&user, None), new_order_id(&user, None));
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }
}
