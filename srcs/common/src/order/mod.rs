//! The order: its parsed fields, valid by construction, and (in [`message`]) the message the
//! gateway puts on the queue for billing. Both ends use these types, so the wire format cannot
//! drift. How a client's JSON becomes an [`Order`] is the gateway's business (its `domain`).

pub mod message;

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::json_fields;

/// Who ordered: a non-empty string of at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

impl UserId {
    pub const MAX_CHARS: usize = 64;

    /// At most 64 characters as sent, not blank, no control characters; kept trimmed.
    pub fn parse(text: &str) -> Result<Self, String> {
        json_fields::trimmed_text(text, Self::MAX_CHARS).map(Self)
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

/// How many items: an integer from 1 to 10,000.
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

/// What identifies an order's content, whatever its JSON spelling (`"45.0"` and `45` are the
/// same order): `sha256:` and the hex SHA-256 of its normalised fields. An Idempotency-Key sent
/// again with another fingerprint is a different order under a reused key, and is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PayloadFingerprint(String);

impl PayloadFingerprint {
    const PREFIX: &'static str = "sha256:";

    pub fn of(order: &Order) -> Self {
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

/// What was ordered, by whom: the content of an order, whatever the way it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub user_id: UserId,
    pub number_of_items: NumberOfItems,
    pub total_amount: Amount,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(user: &str, items: &str, amount: &str) -> Order {
        Order {
            user_id: UserId::parse(user).unwrap(),
            number_of_items: NumberOfItems::parse(items).unwrap(),
            total_amount: Amount::parse(amount).unwrap(),
        }
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
    }

    #[test]
    fn the_fingerprint_is_the_order_not_its_spelling() {
        let a = PayloadFingerprint::of(&order("88", "2", "45.00"));
        let b = PayloadFingerprint::of(&order("88", "2", "45"));
        let c = PayloadFingerprint::of(&order("88", "2", "45.01"));
        let d = PayloadFingerprint::of(&order("8", "82", "45.00"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d, "fields cannot run into each other");
        assert_eq!(PayloadFingerprint::try_from(String::from(a.clone())), Ok(a));
        assert!(PayloadFingerprint::try_from("sha256:xyz".to_owned()).is_err());
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
    }
}
