//! `POST /api/billing`'s body: read field by field (every bad field reported at once, numbers
//! kept as their exact text) into an [`Order`].

use common::{
    json_fields::{self, FieldReader, RawObject, CHECKED},
    order::{Amount, NumberOfItems, Order, UserId},
    problem::Problem,
};
use serde_json::value::RawValue;

const FIELDS: [&str; 3] = ["user_id", "number_of_items", "total_amount"];

/// Parses the body, answering a 400 problem that names every bad field.
pub(crate) fn parse_order(fields: RawObject) -> Result<Order, Problem> {
    let mut reader = FieldReader::new(fields, &FIELDS);
    let user_id = reader.required("user_id", user_id);
    let number_of_items = reader.required("number_of_items", |raw| {
        NumberOfItems::parse(&json_fields::number_or_string_text(raw)?)
    });
    let total_amount = reader.required("total_amount", |raw| {
        Amount::parse(&json_fields::number_or_string_text(raw)?)
    });
    reader.finish()?;
    Ok(Order {
        user_id: user_id.expect(CHECKED),
        number_of_items: number_of_items.expect(CHECKED),
        total_amount: total_amount.expect(CHECKED),
    })
}

/// A string, or a JSON positive integer kept as its decimal text (the original system sent
/// both).
fn user_id(raw: &RawValue) -> Result<UserId, String> {
    match json_fields::kind_of(raw) {
        "a string" => UserId::parse(&json_fields::string(raw)?),
        "a number" => {
            // An id, not a quantity: any positive integer literal, kept as its digits.
            let digits = raw.get();
            let positive = digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
            if positive && digits.len() <= UserId::MAX_CHARS {
                UserId::parse(digits)
            } else {
                Err(format!(
                    "must be a positive integer of at most {} digits, or a string",
                    UserId::MAX_CHARS
                ))
            }
        }
        other => Err(format!(
            "must be a string or a positive integer, not {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use common::order::PayloadFingerprint;

    use super::*;

    fn order(json: &str) -> Result<Order, Problem> {
        parse_order(serde_json::from_str(json).unwrap())
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
    fn user_ids_may_be_positive_integers() {
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
    fn the_same_order_spelled_differently_has_one_fingerprint() {
        let fingerprint = |json: &str| PayloadFingerprint::of(&order(json).unwrap());
        let a =
            fingerprint(r#"{"user_id": "88", "number_of_items": "2", "total_amount": "45.00"}"#);
        let b = fingerprint(r#"{"total_amount": 45, "number_of_items": 2, "user_id": 88}"#);
        assert_eq!(a, b);
    }

    proptest::proptest! {
        #[test]
        fn order_parser_never_panics(body in proptest::collection::btree_map("[a-z_]{1,16}", "(null|true|-?[0-9]{1,30}(\\.[0-9]{0,5})?|\"[^\"\\\\]{0,70}\"|\\[\\]|\\{\\})", 0..5)) {
            let json = format!("{{{}}}", body.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect::<Vec<_>>().join(","));
            if let Ok(fields) = serde_json::from_str::<RawObject>(&json) {
                let _ = parse_order(fields);
            }
        }
    }
}
