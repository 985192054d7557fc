//! Field-by-field reading of a JSON object, so that a request with several bad fields is answered
//! with every field's message at once, so that numbers keep their exact text (money is never
//! parsed through a float), and so that a member sent twice is refused rather than one of its
//! values silently winning.

use std::collections::{btree_map::Entry, BTreeMap};

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::problem::{FieldError, Problem};

/// A JSON object whose member values are kept as raw JSON text. Members whose name appears more
/// than once are remembered, not overwritten: [`FieldReader`] refuses them.
#[derive(Debug, Default)]
pub struct RawObject {
    members: BTreeMap<String, Box<RawValue>>,
    repeated: Vec<String>,
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = RawObject;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut object = RawObject::default();
                while let Some((name, value)) = map.next_entry::<String, Box<RawValue>>()? {
                    match object.members.entry(name) {
                        Entry::Vacant(member) => {
                            member.insert(value);
                        }
                        Entry::Occupied(member) => {
                            if !object.repeated.contains(member.key()) {
                                object.repeated.push(member.key().clone());
                            }
                        }
                    }
                }
                Ok(object)
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Reads known fields out of a [`RawObject`], collecting one message per bad field.
pub struct FieldReader {
    fields: BTreeMap<String, Box<RawValue>>,
    /// Members sent more than once: already reported, never read.
    repeated: Vec<String>,
    errors: Vec<FieldError>,
}

impl FieldReader {
    /// Any member not in `allowed` is reported as an unknown field, and any member sent more
    /// than once as ambiguous (its value is then not read at all).
    pub fn new(object: RawObject, allowed: &[&str]) -> Self {
        let RawObject {
            mut members,
            repeated,
        } = object;
        let mut errors: Vec<FieldError> = members
            .keys()
            .filter(|name| !allowed.contains(&name.as_str()))
            .map(|name| FieldError::new(name.clone(), "unknown field"))
            .collect();
        for name in &repeated {
            members.remove(name);
            errors.push(FieldError::new(
                name.clone(),
                "appears more than once; send each field once",
            ));
        }
        Self {
            fields: members,
            repeated,
            errors,
        }
    }

    /// A field that must be present and not null.
    pub fn required<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&RawValue) -> Result<T, String>,
    ) -> Option<T> {
        if self.repeated.iter().any(|r| r == name) {
            return None;
        }
        match self.fields.get(name) {
            None => self.fail(name, "is required"),
            Some(raw) if raw.get() == "null" => self.fail(name, "is required"),
            Some(raw) => match parse(raw) {
                Ok(value) => Some(value),
                Err(message) => self.fail(name, message),
            },
        }
    }

    /// A field that may be absent or null (both read as `None`).
    pub fn optional<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&RawValue) -> Result<T, String>,
    ) -> Option<Option<T>> {
        if self.repeated.iter().any(|r| r == name) {
            return None;
        }
        match self.fields.get(name) {
            None => Some(None),
            Some(raw) if raw.get() == "null" => Some(None),
            Some(raw) => match parse(raw) {
                Ok(value) => Some(Some(value)),
                Err(message) => self.fail(name, message),
            },
        }
    }

    fn fail<T>(&mut self, name: &str, message: impl Into<String>) -> Option<T> {
        self.errors.push(FieldError::new(name, message));
        None
    }

    /// `Ok` when every field read so far was valid: the `Option`s it returned are then all `Some`.
    pub fn finish(self) -> Result<(), Problem> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Problem::validation(self.errors))
        }
    }
}

/// Message used by parsers when `finish` has already guaranteed the value is there.
pub const CHECKED: &str = "FieldReader::finish checked every field";

/// The JSON kind of a raw value, for messages such as "must be a string, not a number".
pub fn kind_of(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// A JSON string's content.
pub fn string(raw: &RawValue) -> Result<String, String> {
    if raw.get().starts_with('"') {
        serde_json::from_str(raw.get()).map_err(|e| format!("is not a valid string: {e}"))
    } else {
        Err(format!("must be a string, not {}", kind_of(raw)))
    }
}

/// The literal text of a JSON number, or the content of a JSON string, for fields that accept
/// both (`"2"` and `2`).
pub fn number_or_string_text(raw: &RawValue) -> Result<String, String> {
    match kind_of(raw) {
        "a number" => Ok(raw.get().to_owned()),
        "a string" => string(raw),
        other => Err(format!("must be a number or a string, not {other}")),
    }
}

/// A JSON integer (no fraction, no exponent) within `range`.
pub fn integer_in(raw: &RawValue, range: std::ops::RangeInclusive<i64>) -> Result<i64, String> {
    if kind_of(raw) != "a number" {
        return Err(format!("must be an integer, not {}", kind_of(raw)));
    }
    parse_integer_in(raw.get(), range)
}

/// Parses an integer in canonical decimal form (digits, no sign unless negative, no leading
/// zeros) within `range`: exactly what a JSON integer or an OpenAPI integer parameter looks like.
pub fn parse_integer_in(text: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, String> {
    let out_of_range = || {
        format!(
            "must be an integer from {} to {}",
            range.start(),
            range.end()
        )
    };
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    if !canonical {
        return Err(out_of_range());
    }
    let value: i64 = text.parse().map_err(|_| out_of_range())?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(out_of_range())
    }
}

/// Refuses control characters (line breaks and tabs are allowed where `multiline`): the rule
/// for every free-text field.
pub fn check_text(text: &str, multiline: bool) -> Result<(), String> {
    if text
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
    {
        return Err("must not contain control characters".to_owned());
    }
    Ok(())
}

/// A short free-text value: at most `max_chars` characters as sent, not blank, no control
/// characters; returned trimmed.
pub fn trimmed_text(text: &str, max_chars: usize) -> Result<String, String> {
    if text.chars().count() > max_chars {
        return Err(format!("must be at most {max_chars} characters"));
    }
    check_text(text, false)?;
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: &str) -> RawObject {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reports_every_bad_field_and_every_unknown_field() {
        let mut reader = FieldReader::new(
            object(r#"{"a": 1, "b": "x", "extra": true}"#),
            &["a", "b", "c"],
        );
        assert!(reader.required("a", string).is_none());
        assert!(reader.required("c", string).is_none());
        assert_eq!(reader.required("b", string), Some("x".to_owned()));
        let problem = reader.finish().unwrap_err();
        let fields: Vec<_> = problem.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["extra", "a", "c"]);
        assert_eq!(problem.errors[0].message, "unknown field");
        assert_eq!(problem.errors[1].message, "must be a string, not a number");
        assert_eq!(problem.errors[2].message, "is required");
    }

    #[test]
    fn a_member_sent_twice_is_refused_whichever_value_came_last() {
        let mut reader = FieldReader::new(
            object(r#"{"a": "1", "a": "999999", "b": "x", "a": "2"}"#),
            &["a", "b"],
        );
        assert!(reader.required("a", string).is_none());
        assert_eq!(reader.required("b", string), Some("x".to_owned()));
        let problem = reader.finish().unwrap_err();
        assert_eq!(problem.errors.len(), 1, "{problem:?}");
        assert_eq!(problem.errors[0].field, "a");
        assert!(problem.errors[0].message.contains("more than once"));
    }

    #[test]
    fn null_is_absent_for_optional_fields_and_missing_for_required_ones() {
        let mut reader = FieldReader::new(object(r#"{"a": null, "b": null}"#), &["a", "b"]);
        assert_eq!(reader.optional("a", string), Some(None));
        assert!(reader.required("b", string).is_none());
        assert!(reader.finish().is_err());
    }

    #[test]
    fn numbers_keep_their_exact_text() {
        let raw: Box<RawValue> = serde_json::from_str("45.10").unwrap();
        assert_eq!(number_or_string_text(&raw).unwrap(), "45.10");
    }

    #[test]
    fn integers_refuse_fractions_exponents_and_out_of_range_values() {
        for text in ["1.5", "1e3", "0", "10001", "99999999999999999999999", "-0"] {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            assert!(integer_in(&raw, 1..=10_000).is_err(), "{text}");
        }
        let raw: Box<RawValue> = serde_json::from_str("42").unwrap();
        assert_eq!(integer_in(&raw, 1..=10_000), Ok(42));
    }

    #[test]
    fn integer_text_must_be_canonical() {
        for text in ["007", "+5", " 5", "5 ", "", "-", "--1", "0x10"] {
            assert!(parse_integer_in(text, -10..=10).is_err(), "{text:?}");
        }
        assert_eq!(parse_integer_in("-7", -10..=10), Ok(-7));
        assert_eq!(parse_integer_in("0", -10..=10), Ok(0));
    }
}
