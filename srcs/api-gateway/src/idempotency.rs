//! The gateway's memory of recent Idempotency-Keys (draft-ietf-httpapi-idempotency-key-header):
//! a key whose first request is still being published is answered `409`, a key reused with
//! another payload `422`, and a key already queued with the same payload `202` again without a
//! second publish.
//!
//! The memory is this process's only (no new stateful dependency): it covers retries that reach
//! the same gateway within [`REMEMBERED_FOR`]. Past that (another instance, a restart, an old
//! key), the order's fingerprint travels in its message, and billing records a reused key with
//! another payload as a conflict on the order, shown by `GET /api/billing/{order_id}`; it is
//! never billed.

use std::{
    collections::{hash_map::Entry, HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::order::PayloadFingerprint;
use uuid::Uuid;

/// How long a queued key is remembered.
pub(crate) const REMEMBERED_FOR: Duration = Duration::from_secs(10 * 60);
/// The most keys remembered at once (about 200 bytes each); the oldest are forgotten first.
pub(crate) const CAPACITY: usize = 20_000;

/// What to do with a request carrying an Idempotency-Key.
pub(crate) enum Claim {
    /// The first request seen for the key: publish it, then [`Publishing::queued`].
    New(Publishing),
    /// The same payload was queued already: answer as the first time.
    AlreadyQueued,
    /// The first request for the key is still being published.
    InFlight,
    /// The key was used for another payload.
    Conflict,
}

#[derive(Clone, Default)]
pub(crate) struct RecentKeys(Arc<Mutex<Keys>>);

#[derive(Default)]
struct Keys {
    by_order: HashMap<Uuid, Remembered>,
    /// Queued orders, oldest first, for forgetting.
    queued: VecDeque<(Uuid, Instant)>,
}

struct Remembered {
    fingerprint: PayloadFingerprint,
    /// `None` while the first request is being published.
    queued_at: Option<Instant>,
    /// Whether the broker confirmed it; if not (a confirm that timed out), it may or may not be
    /// queued: another payload is still refused, the same one is published again.
    confirmed: bool,
}

impl RecentKeys {
    /// Claims `order_id` (derived from the key) for a request with `fingerprint`.
    pub(crate) fn claim(&self, order_id: Uuid, fingerprint: &PayloadFingerprint) -> Claim {
        let mut keys = self.0.lock().expect("no panics while holding the lock");
        keys.forget_old(Instant::now());
        match keys.by_order.entry(order_id) {
            Entry::Occupied(mut entry) => {
                let known = entry.get_mut();
                if known.fingerprint != *fingerprint {
                    Claim::Conflict
                } else if known.queued_at.is_none() {
                    Claim::InFlight
                } else if known.confirmed {
                    Claim::AlreadyQueued
                } else {
                    known.queued_at = None;
                    Claim::New(Publishing {
                        keys: self.clone(),
                        order_id,
                        settled: false,
                    })
                }
            }
            Entry::Vacant(entry) => {
                entry.insert(Remembered {
                    fingerprint: fingerprint.clone(),
                    queued_at: None,
                    confirmed: false,
                });
                Claim::New(Publishing {
                    keys: self.clone(),
                    order_id,
                    settled: false,
                })
            }
        }
    }
}

impl Keys {
    fn forget_old(&mut self, now: Instant) {
        while let Some(&(order_id, queued_at)) = self.queued.front() {
            if self.queued.len() < CAPACITY && now.duration_since(queued_at) < REMEMBERED_FOR {
                break;
            }
            self.queued.pop_front();
            self.by_order.remove(&order_id);
        }
    }
}

/// A key's first request while it is published. Dropped unsettled (the message was certainly
/// not queued), the key is forgotten so a retry can go ahead.
pub(crate) struct Publishing {
    keys: RecentKeys,
    order_id: Uuid,
    settled: bool,
}

impl Publishing {
    /// The broker confirmed the order.
    pub(crate) fn queued(self) {
        self.settle(true);
    }

    /// The broker may have queued the order (its confirm did not come in time).
    pub(crate) fn maybe_queued(self) {
        self.settle(false);
    }

    fn settle(mut self, confirmed: bool) {
        let mut keys = self
            .keys
            .0
            .lock()
            .expect("no panics while holding the lock");
        let now = Instant::now();
        if let Some(known) = keys.by_order.get_mut(&self.order_id) {
            known.queued_at = Some(now);
            known.confirmed = confirmed;
            keys.queued.push_back((self.order_id, now));
        }
        self.settled = true;
    }
}

impl Drop for Publishing {
    fn drop(&mut self) {
        if !self.settled {
            let mut keys = self
                .keys
                .0
                .lock()
                .expect("no panics while holding the lock");
            keys.by_order.remove(&self.order_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use common::order::{Amount, NumberOfItems, Order, UserId};

    use super::*;

    fn fingerprint(amount: &str) -> PayloadFingerprint {
        PayloadFingerprint::of(&Order {
            user_id: UserId::parse("1").unwrap(),
            number_of_items: NumberOfItems::parse("1").unwrap(),
            total_amount: Amount::parse(amount).unwrap(),
        })
    }

    #[test]
    fn in_flight_then_queued_then_conflicting() {
        let keys = RecentKeys::default();
        let id = Uuid::new_v4();
        let Claim::New(publishing) = keys.claim(id, &fingerprint("1")) else {
            panic!("first claim")
        };
        assert!(matches!(keys.claim(id, &fingerprint("1")), Claim::InFlight));
        assert!(matches!(keys.claim(id, &fingerprint("2")), Claim::Conflict));
        publishing.queued();
        assert!(matches!(
            keys.claim(id, &fingerprint("1")),
            Claim::AlreadyQueued
        ));
        assert!(matches!(
            keys.claim(id, &fingerprint("999999")),
            Claim::Conflict
        ));
    }

    #[test]
    fn a_publish_of_unknown_fate_keeps_the_payload_and_is_sent_again() {
        let keys = RecentKeys::default();
        let id = Uuid::new_v4();
        let Claim::New(publishing) = keys.claim(id, &fingerprint("1")) else {
            panic!("first claim")
        };
        publishing.maybe_queued();
        assert!(matches!(keys.claim(id, &fingerprint("2")), Claim::Conflict));
        let Claim::New(again) = keys.claim(id, &fingerprint("1")) else {
            panic!("the same payload is published again, never answered from memory")
        };
        again.queued();
        assert!(matches!(
            keys.claim(id, &fingerprint("1")),
            Claim::AlreadyQueued
        ));
    }

    #[test]
    fn a_failed_publish_frees_the_key() {
        let keys = RecentKeys::default();
        let id = Uuid::new_v4();
        drop(keys.claim(id, &fingerprint("1")));
        assert!(matches!(keys.claim(id, &fingerprint("2")), Claim::New(_)));
    }

    #[test]
    fn the_oldest_keys_are_forgotten_beyond_capacity() {
        let keys = RecentKeys::default();
        let first = Uuid::new_v4();
        for id in std::iter::once(first).chain((0..CAPACITY).map(|_| Uuid::new_v4())) {
            match keys.claim(id, &fingerprint("1")) {
                Claim::New(publishing) => publishing.queued(),
                _ => panic!("new keys"),
            }
        }
        assert!(matches!(
            keys.claim(first, &fingerprint("2")),
            Claim::New(_)
        ));
        assert!(keys.0.lock().unwrap().by_order.len() <= CAPACITY + 1);
    }
}
