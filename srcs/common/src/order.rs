//! The order: what a client may send to `POST /api/billing`, and the message the gateway puts on
//! the queue for billing. Both ends use these types, so the wire format cannot drift, and a value
//! of any of them is valid by construction.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::json_fields::{self, FieldReader, RawObject, CHECKED};
use crate::problem::Problem;

/// AMQP `type` property of an [`OrderMessage`]; bump it with any incompatible change.
/// v2 added `payload_fingerprint`.
pub const ORDER_MESSAGE_TYPE: &str = "order.created.v2";

/// The message types billing decodes: v1 messages (no fingerprint) may still be queued from
/// before an upgrade.
pub fn is_known_message_type(kind: &str) -> bool {
    matches!(kind, ORDER_MESSAGE_TYPE | "order.created.v1")
}

/// Who ordered: a non-empty string of at most 64 characters (a JSON positive integer is accepted
/// and kept as its decimal text, as the original system sent both).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    pub const MAX_CHARS: usize = 64;

    /// At most 64 characters as sent, not blank, no control characters; kept trimmed.
    pub fn parse(text: &str) -> Result<Self, String> {
        json_fields::trimmed_text(text, Self::MAX_CHARS).map(Self)
    }

    fn from_json(raw: &serde_json::value::RawValue) -> Result<Self, String> {
        match json_fields::kind_of(raw) {
            "a string" => Self::parse(&json_fields::string(raw)?),
            "a number" => {
                // An id, not a quantity: any positive integer literal, kept as its digits.
                let digits = raw.get();
                let positive =
                    digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
                if positive && digits.len() <= Self::MAX_CHARS {
                    Ok(Self(digits.to_owned()))
                } else {
                    Err(format!(
                        "must be a positive integer of at most {} digits, or a string",
                        Self::MAX_CHARS
                    ))
                }
            }
            other => Err(format!(
                "must be a string or a positive integer, not {other}"
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> String {
        id.0
    }
}

/// How many items: an integer from 1 to 10,000 (a JSON number, or a string holding one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i32")]
pub struct NumberOfItems(i32);

impl NumberOfItems {
    pub const MAX: i32 = 10_000;

    pub fn parse(text: &str) -> Result<Self, String> {
        json_fields::parse_integer_in(text, 1..=i64::from(Self::MAX)).map(|n| Self(n as i32))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

impl TryFrom<i64> for NumberOfItems {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        Self::parse(&value.to_string())
    }
}

impl From<NumberOfItems> for i32 {
    fn from(n: NumberOfItems) -> i32 {
        n.0
    }
}

/// An amount of money: greater than 0, at most 1,000,000, with at most two decimal places,
/// written in plain decimal notation without leading zeros ("45", "45.5", "45.00", "0.50").
/// Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Amount(Decimal);

impl Amount {
    pub const MAX: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);

    pub fn parse(text: &str) -> Result<Self, String> {
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (text, None),
        };
        if let Some(unsigned) = whole.strip_prefix('-') {
            if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err("must be greater than 0".to_owned());
            }
        }
        let plain = !whole.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && (whole == "0" || !whole.starts_with('0'))
            && fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
        if !plain {
            return Err("must be a decimal number such as \"45.00\"".to_owned());
        }
        if fraction.is_some_and(|f| f.len() > 2) {
            return Err("must have at most 2 decimal places".to_owned());
        }
        if whole.len() > 7 {
            return Err("must be at most 1000000".to_owned());
        }
        let mut value =
            Decimal::from_str(text).map_err(|e| format!("is not a decimal number: {e}"))?;
        if value <= Decimal::ZERO {
            return Err("must be greater than 0".to_owned());
        }
        if value > Self::MAX {
            return Err("must be at most 1000000".to_owned());
        }
        value.rescale(2);
        Ok(Self(value))
    }

    pub fn get(self) -> Decimal {
        self.0
    }
}

impl TryFrom<String> for Amount {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<Amount> for String {
    fn from(amount: Amount) -> String {
        amount.0.to_string()
    }
}

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

/// What identifies an order's content, whatever its JSON spelling (`"45.0"` and `45` are the
/// same order): `sha256:` and the hex SHA-256 of its normalised fields. An Idempotency-Key sent
/// again with another fingerprint is a different order under a reused key, and is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PayloadFingerprint(String);

impl PayloadFingerprint {
    const PREFIX: &'static str = "sha256:";

    pub fn of(order: &OrderRequest) -> Self {
        use sha2::{Digest, Sha256};
        let normalised = format!(
            "{}\n{}\n{}",
            order.user_id.as_str(),
            order.number_of_items.get(),
            order.total_amount.get()
        );
        let digest = Sha256::digest(normalised.as_bytes());
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Self(format!("{}{hex}", Self::PREFIX))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PayloadFingerprint {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let well_formed = text.strip_prefix(Self::PREFIX).is_some_and(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        if well_formed {
            Ok(Self(text))
        } else {
            Err("a payload fingerprint is \"sha256:\" and 64 lowercase hex digits".to_owned())
        }
    }
}

impl From<PayloadFingerprint> for String {
    fn from(fingerprint: PayloadFingerprint) -> String {
        fingerprint.0
    }
}

/// A validated `POST /api/billing` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub user_id: UserId,
    pub number_of_items: NumberOfItems,
    pub total_amount: Amount,
}

impl OrderRequest {
    pub const FIELDS: [&'static str; 3] = ["user_id", "number_of_items", "total_amount"];

    /// Parses the body, answering a 400 problem that names every bad field.
    pub fn from_json(fields: RawObject) -> Result<Self, Problem> {
        let mut reader = FieldReader::new(fields, &Self::FIELDS);
        let user_id = reader.required("user_id", UserId::from_json);
        let number_of_items = reader.required("number_of_items", |raw| {
            NumberOfItems::parse(&json_fields::number_or_string_text(raw)?)
        });
        let total_amount = reader.required("total_amount", |raw| {
            Amount::parse(&json_fields::number_or_string_text(raw)?)
        });
        reader.finish()?;
        Ok(Self {
            user_id: user_id.expect(CHECKED),
            number_of_items: number_of_items.expect(CHECKED),
            total_amount: total_amount.expect(CHECKED),
        })
    }
}

/// The message on the queue, as JSON. Unknown fields are refused so that a producer speaking
/// another version is noticed (and dead-lettered) instead of half understood.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderMessage {
    pub order_id: Uuid,
    pub user_id: UserId,
    pub number_of_items: NumberOfItems,
    pub total_amount: Amount,
    /// When the gateway accepted the order.
    pub received_at: DateTime<Utc>,
    /// The request's [`PayloadFingerprint`] (absent in v1 messages): when an Idempotency-Key is
    /// reused with another payload, billing records the second payload as a conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_fingerprint: Option<PayloadFingerprint>,
}

impl OrderMessage {
    pub fn new(order_id: Uuid, request: OrderRequest, received_at: DateTime<Utc>) -> Self {
        Self {
            payload_fingerprint: Some(PayloadFingerprint::of(&request)),
            order_id,
            user_id: request.user_id,
            number_of_items: request.number_of_items,
            total_amount: request.total_amount,
            received_at,
        }
    }

    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an order message always serialises")
    }

    /// Decodes and validates a message body; the error says why it can never be processed.
    pub fn from_json_bytes(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(body).map_err(|e| format!("invalid order message: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(json: &str) -> Result<OrderRequest, Problem> {
        OrderRequest::from_json(serde_json::from_str(json).unwrap())
    }

    fn field_errors(json: &str) -> Vec<(String, String)> {
        order(json)
            .unwrap_err()
            .errors
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    #[test]
    fn accepts_the_original_systems_payload_with_strings_and_with_numbers() {
        let strings =
            order(r#"{"user_id": "88", "number_of_items": "2", "total_amount": "45.00"}"#).unwrap();
        let numbers =
            order(r#"{"user_id": 88, "number_of_items": 2, "total_amount": 45.00}"#).unwrap();
        assert_eq!(strings, numbers);
        assert_eq!(strings.user_id.as_str(), "88");
        assert_eq!(strings.number_of_items.get(), 2);
        assert_eq!(String::from(strings.total_amount), "45.00");
    }

    #[test]
    fn amounts_are_exact_and_normalised_to_cents() {
        for (text, normalised) in [
            ("45", "45.00"),
            ("45.5", "45.50"),
            ("0.01", "0.01"),
            ("1000000", "1000000.00"),
            ("0.5", "0.50"),
        ] {
            assert_eq!(
                String::from(Amount::parse(text).unwrap()),
                normalised,
                "{text}"
            );
        }
    }

    #[test]
    fn odd_amounts_are_refused_with_a_reason() {
        let cases = [
            ("45.000", "at most 2 decimal places"),
            ("-1", "greater than 0"),
            ("0", "greater than 0"),
            ("0.00", "greater than 0"),
            ("1e3", "decimal number"),
            ("", "decimal number"),
            ("45.", "decimal number"),
            (".5", "decimal number"),
            ("1_000", "decimal number"),
            ("+5", "decimal number"),
            ("NaN", "decimal number"),
            ("007.10", "decimal number"),
            (" 45", "decimal number"),
            ("1000000.01", "at most 1000000"),
            ("99999999999999999999999999999999", "at most 1000000"),
        ];
        for (text, reason) in cases {
            let err = Amount::parse(text).unwrap_err();
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_float_amount_is_read_from_its_text_not_through_f64() {
        let err = field_errors(r#"{"user_id": "1", "number_of_items": 1, "total_amount": 0.1e1}"#);
        assert_eq!(
            err,
            [(
                "total_amount".to_owned(),
                "must be a decimal number such as \"45.00\"".to_owned()
            )]
        );
        let ok = order(r#"{"user_id": "1", "number_of_items": 1, "total_amount": 19.99}"#).unwrap();
        assert_eq!(String::from(ok.total_amount), "19.99");
    }

    #[test]
    fn number_of_items_bounds() {
        for bad in [
            "0",
            "-1",
            "10001",
            "2.5",
            "1e3",
            "",
            "two",
            "99999999999999999999",
        ] {
            assert!(NumberOfItems::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(NumberOfItems::parse("10000").unwrap().get(), 10_000);
        assert!(
            NumberOfItems::parse(" 3 ").is_err(),
            "no surrounding spaces"
        );
        assert!(NumberOfItems::parse("03").is_err(), "no leading zeros");
    }

    #[test]
    fn user_ids() {
        assert_eq!(
            UserId::parse("  ünïcødé-user ").unwrap().as_str(),
            "ünïcødé-user"
        );
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("   ").is_err());
        assert!(UserId::parse(&"x".repeat(65)).is_err());
        assert!(UserId::parse(&"é".repeat(64)).is_ok());
        assert!(UserId::parse("a\u{0}b").is_err());
        assert!(
            UserId::parse(&format!("a{}", " ".repeat(64))).is_err(),
            "length counts as sent"
        );
        let huge = format!(
            r#"{{"user_id": {}, "number_of_items": 1, "total_amount": "1"}}"#,
            "9".repeat(30)
        );
        assert_eq!(order(&huge).unwrap().user_id.as_str(), "9".repeat(30));
        for bad in [r#"0"#, r#"-3"#, r#"1.5"#, r#"1e3"#, r#"true"#, r#"[]"#] {
            let json =
                format!(r#"{{"user_id": {bad}, "number_of_items": 1, "total_amount": "1"}}"#);
            assert_eq!(field_errors(&json)[0].0, "user_id", "{bad}");
        }
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let errors = field_errors(
            r#"{"user_id": "", "number_of_items": 0, "total_amount": "-1", "coupon": "X"}"#,
        );
        let fields: Vec<_> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["coupon", "user_id", "number_of_items", "total_amount"]
        );
        let missing = field_errors("{}");
        assert_eq!(missing.len(), 3);
        assert!(missing.iter().all(|(_, m)| m == "is required"));
    }

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

    #[test]
    fn the_fingerprint_is_the_order_not_its_spelling() {
        let fingerprint = |json: &str| PayloadFingerprint::of(&order(json).unwrap());
        let a =
            fingerprint(r#"{"user_id": "88", "number_of_items": "2", "total_amount": "45.00"}"#);
        let b = fingerprint(r#"{"total_amount": 45, "number_of_items": 2, "user_id": 88}"#);
        let c = fingerprint(r#"{"user_id": "88", "number_of_items": 2, "total_amount": "45.01"}"#);
        let d = fingerprint(r#"{"user_id": "8", "number_of_items": 82, "total_amount": "45.00"}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d, "fields cannot run into each other");
        assert_eq!(PayloadFingerprint::try_from(String::from(a.clone())), Ok(a));
        assert!(PayloadFingerprint::try_from("sha256:xyz".to_owned()).is_err());
    }

    #[test]
    fn a_v1_message_without_a_fingerprint_still_decodes() {
        let v1 = br#"{"order_id": "6f1c3b7e-8a54-4d0b-9e2f-51a7c4d802be", "user_id": "88",
            "number_of_items": 2, "total_amount": "45.00", "received_at": "2026-01-01T00:00:00Z"}"#;
        let message = OrderMessage::from_json_bytes(v1).unwrap();
        assert_eq!(message.payload_fingerprint, None);
        assert!(is_known_message_type("order.created.v1"));
        assert!(is_known_message_type(ORDER_MESSAGE_TYPE));
        assert!(!is_known_message_type("order.created.v3"));
    }

    #[test]
    fn the_message_round_trips_and_refuses_what_it_does_not_know() {
        let request =
            order(r#"{"user_id": "88", "number_of_items": "2", "total_amount": "45.00"}"#).unwrap();
        let message = OrderMessage::new(Uuid::new_v4(), request, Utc::now());
        let decoded = OrderMessage::from_json_bytes(&message.to_json_bytes()).unwrap();
        assert_eq!(decoded, message);

        let mut json: serde_json::Value = serde_json::from_slice(&message.to_json_bytes()).unwrap();
        assert_eq!(json["total_amount"], "45.00");
        json["total_amount"] = "-5".into();
        assert!(OrderMessage::from_json_bytes(json.to_string().as_bytes()).is_err());
        json["total_amount"] = "5".into();
        json["surprise"] = 1.into();
        assert!(OrderMessage::from_json_bytes(json.to_string().as_bytes()).is_err());
        assert!(OrderMessage::from_json_bytes(b"not json").is_err());
    }

    proptest::proptest! {
        #[test]
        fn amount_parser_never_panics(text in "\\PC*") {
            let _ = Amount::parse(&text);
        }

        #[test]
        fn valid_cents_always_parse(cents in 1u64..=100_000_000) {
            let text = format!("{}.{:02}", cents / 100, cents % 100);
            let amount = Amount::parse(&text).unwrap();
            proptest::prop_assert_eq!(String::from(amount), text);
        }

        #[test]
        fn order_parser_never_panics(body in proptest::collection::btree_map("[a-z_]{1,16}", "(null|true|-?[0-9]{1,30}(\\.[0-9]{0,5})?|\"[^\"\\\\]{0,70}\"|\\[\\]|\\{\\})", 0..5)) {
            let json = format!("{{{}}}", body.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect::<Vec<_>>().join(","));
            if let Ok(fields) = serde_json::from_str::<RawObject>(&json) {
                let _ = OrderRequest::from_json(fields);
            }
        }
    }
}
