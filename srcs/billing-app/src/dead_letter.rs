//! The note billing attaches to a message it dead-letters itself (why, after how many
//! deliveries, when), written by the consumer and read by `billing-app dlq`: encoded and
//! decoded side by side here. A message the broker dead-letters (at the delivery limit) has
//! no note; its `x-death` header says why.

use chrono::{DateTime, Utc};
use lapin::{
    message::Delivery,
    types::{AMQPValue, FieldTable, ShortString},
    BasicProperties,
};

const REASON: &str = "billing-dead-letter-reason";
const DELIVERIES: &str = "billing-dead-letter-deliveries";
const AT: &str = "billing-dead-lettered-at";

/// Headers that describe a dead-lettering (billing's note and the broker's own), dropped when
/// a message is replayed: it starts afresh on the order queue, its delivery limit from zero.
const DEAD_LETTER_HEADERS: [&str; 8] = [
    REASON,
    DELIVERIES,
    AT,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-delivery-count",
];

/// A reason longer than this is cut (a header, not a log).
const MAX_REASON_CHARS: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetterNote {
    pub(crate) reason: String,
    /// How many times the order queue delivered the message, this last time included.
    pub(crate) deliveries: i64,
    pub(crate) at: DateTime<Utc>,
}

impl DeadLetterNote {
    /// The note for `delivery`, dead-lettered now for `reason`.
    pub(crate) fn new(delivery: &Delivery, reason: &str) -> Self {
        // The quorum queue counts earlier deliveries in `x-delivery-count` (absent the first time).
        let earlier = delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("x-delivery-count"))
            .and_then(integer)
            .unwrap_or(0);
        Self {
            reason: printable(reason).chars().take(MAX_REASON_CHARS).collect(),
            deliveries: earlier + 1,
            at: Utc::now(),
        }
    }

    /// `properties` with this note added.
    pub(crate) fn attach(&self, properties: &BasicProperties) -> BasicProperties {
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(
            ShortString::from(REASON),
            AMQPValue::LongString(self.reason.as_str().into()),
        );
        headers.insert(
            ShortString::from(DELIVERIES),
            AMQPValue::LongLongInt(self.deliveries),
        );
        headers.insert(
            ShortString::from(AT),
            AMQPValue::Timestamp(self.at.timestamp().max(0) as u64),
        );
        properties.clone().with_headers(headers)
    }

    /// The note in `properties`, if billing wrote one.
    pub(crate) fn read(properties: &BasicProperties) -> Option<Self> {
        let headers = properties.headers().as_ref()?.inner();
        Some(Self {
            reason: match headers.get(REASON)? {
                AMQPValue::LongString(text) => {
                    String::from_utf8_lossy(text.as_bytes()).into_owned()
                }
                _ => return None,
            },
            deliveries: headers.get(DELIVERIES).and_then(integer)?,
            at: headers
                .get(AT)
                .and_then(AMQPValue::as_timestamp)
                .and_then(|seconds| DateTime::from_timestamp(seconds as i64, 0))?,
        })
    }
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`), and the invisible ones that
/// reorder or hide what a terminal shows (bidirectional overrides, zero-width characters): a
/// reason quotes what a producer sent, and goes to a log line and an operator's terminal.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() || is_invisible_format(c) {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Unicode format characters that change how text around them shows: bidirectional marks,
/// embeddings, overrides and isolates, zero-width characters, the byte order mark.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// `properties` without the headers of any dead-lettering.
pub(crate) fn without_dead_letter_headers(properties: &BasicProperties) -> BasicProperties {
    let Some(headers) = properties.headers() else {
        return properties.clone();
    };
    let mut kept = FieldTable::default();
    for (name, value) in headers.inner() {
        if !DEAD_LETTER_HEADERS.contains(&name.as_str()) {
            kept.insert(name.clone(), value.clone());
        }
    }
    properties.clone().with_headers(kept)
}

/// An integer header, whatever width the broker chose for it.
fn integer(value: &AMQPValue) -> Option<i64> {
    match *value {
        AMQPValue::LongLongInt(n) => Some(n),
        AMQPValue::LongInt(n) => Some(n.into()),
        AMQPValue::LongUInt(n) => Some(n.into()),
        AMQPValue::ShortInt(n) => Some(n.into()),
        AMQPValue::ShortUInt(n) => Some(n.into()),
        AMQPValue::ShortShortInt(n) => Some(n.into()),
        AMQPValue::ShortShortUInt(n) => Some(n.into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_round_trips_and_replay_drops_it_but_keeps_the_rest() {
        let note = DeadLetterNote {
            reason: "invalid order message: x".to_owned(),
            deliveries: 3,
            at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        };
        let mut headers = FieldTable::default();
        headers.insert("traceparent".into(), AMQPValue::LongString("t".into()));
        let original = BasicProperties::default()
            .with_message_id("m".into())
            .with_headers(headers.clone());
        let noted = note.attach(&original);
        assert_eq!(DeadLetterNote::read(&noted), Some(note));
        assert_eq!(DeadLetterNote::read(&original), None);
        assert_eq!(without_dead_letter_headers(&noted), original);
    }

    #[test]
    fn control_characters_in_a_reason_are_escaped() {
        assert_eq!(
            printable("unknown field `a\nb\u{1b}[31m\r`"),
            "unknown field `a\\nb\\u{1b}[31m\\r`"
        );
        assert_eq!(
            printable("x\u{202e}gnp.exe\u{200b}é"),
            "x\\u{202e}gnp.exe\\u{200b}é"
        );
    }

    #[test]
    fn a_long_reason_is_cut() {
        let delivery = Delivery::mock(1, "".into(), "".into(), false, vec![]);
        let note = DeadLetterNote::new(&delivery, &"x".repeat(5_000));
        assert_eq!(note.reason.chars().count(), MAX_REASON_CHARS);
        assert_eq!(note.deliveries, 1);
    }
}
