//! The catalogue cache: inventory's successful answers to catalogue reads, kept in memory
//! (bounded in bytes, each entry for at most the TTL) and dropped when the catalogue changes.
//!
//! What drops them: the change events inventory publishes (`catalogue_events` subscribes), and
//! this gateway's own writes at once (read-your-writes). A movie's change drops that movie's
//! entry and every list page (any page may show it). A read that missed notes how many changes
//! that concern it were heard so far (`Changes`), and its answer is kept only if none was heard
//! meanwhile: an answer fetched before a change cannot be stored after it.
//!
//! Staleness: while the subscription is up, an entry outlives its movie's change by the time
//! the event takes to arrive (measured in BENCHMARKS.md); while it is down (broker lost, node
//! failed over), by at most the TTL. The TTL counts from when inventory was asked, not from
//! when its answer came: an answer that took long (a hung instance) is no fresher for it.
//! Every resubscription drops everything, since events may have been missed in between.
//!
//! Misses of one key at once ask inventory once: the first plain `GET` leads (it asks), the
//! others follow (they wait for its answer: a 200 they are given; a failure of inventory they
//! share rather than pile onto it; anything else sends each to ask itself).
//! A cold cache under thousands of clients would otherwise send every one of them to
//! inventory at once, and past its connection slots. A read follows only a lead taken with the
//! same changes heard, so a read that starts after this gateway heard of a change never gets an
//! answer from before it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{
    http::{
        header::{self, EntityTag},
        Method, StatusCode,
    },
    HttpRequest, HttpResponse,
};
use common::{conditional, connection_watch, metrics::Metrics};
use moka::{notification::RemovalCause, sync::Cache};
use prometheus::{IntCounter, IntCounterVec, IntGauge};
use tokio::sync::watch;

use crate::upstream::{AnswerBody, UpstreamAnswer};

/// What a catalogue read is, for the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CacheKey {
    /// `GET /api/movies/{id}` with no query, the id in its canonical spelling (so that every
    /// spelling a change event could miss is kept out of the cache).
    Movie(i64),
    /// `GET /api/movies` with this query string, exactly as sent.
    Page(String),
}

impl CacheKey {
    /// The key of a catalogue read, or `None` for a request the cache does not keep.
    pub(crate) fn of(req: &HttpRequest) -> Option<Self> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return None;
        }
        match req.match_info().get("id") {
            Some(id) => {
                let canonical = id.parse::<i64>().ok().filter(|n| n.to_string() == id)?;
                req.query_string()
                    .is_empty()
                    .then_some(Self::Movie(canonical))
            }
            None => Some(Self::Page(req.query_string().to_owned())),
        }
    }

    fn weight(&self) -> usize {
        match self {
            Self::Movie(_) => 8,
            Self::Page(query) => query.len(),
        }
    }
}

/// A stored answer, when inventory was asked for it, and (for a list page) the count of
/// changes it was fetched under.
#[derive(Clone)]
struct Entry {
    answer: Arc<UpstreamAnswer>,
    asked_at: Instant,
    pages_changed: u64,
}

/// Counted per entry beside its body, headers and key: the bookkeeping.
const ENTRY_OVERHEAD: usize = 256;

/// Slots of movie change counts: a movie's answer waits only on changes to the movies of its
/// slot (its id modulo this), not on every change heard.
const MOVIE_SLOTS: usize = 1024;

/// Changes heard, counted by what they concern.
struct Changes {
    /// Every change: a list page may show any movie.
    pages: u64,
    /// Changes to everything (the catalogue emptied, events missed).
    everything: u64,
    /// Changes to movies, by slot.
    movies: Box<[u64; MOVIE_SLOTS]>,
}

impl Changes {
    fn slot(id: i64) -> usize {
        id.rem_euclid(MOVIE_SLOTS as i64) as usize
    }

    /// What a read of `key` must see unchanged for its answer to be stored.
    fn stamp(&self, key: &CacheKey) -> (u64, u64) {
        match key {
            CacheKey::Movie(id) => (self.everything, self.movies[Self::slot(*id)]),
            CacheKey::Page(_) => (self.pages, 0),
        }
    }
}

#[derive(Clone)]
struct CacheMetrics {
    lookups: IntCounterVec,
    invalidations: IntCounter,
    evictions: IntCounter,
    entries: IntGauge,
    bytes: IntGauge,
}

pub(crate) struct CatalogueCache {
    entries: Cache<CacheKey, Entry>,
    /// The oldest an answer served from here may be, counted from when inventory was asked.
    ttl: Duration,
    /// The lock orders stores against invalidations.
    changes: Mutex<Changes>,
    /// Misses being asked of inventory, by key.
    leads: Mutex<HashMap<CacheKey, Lead>>,
    metrics: CacheMetrics,
}

/// A miss asking inventory: the changes it saw, when it asked, and where its outcome will be.
struct Lead {
    stamp: (u64, u64),
    asked_at: Instant,
    outcome: watch::Receiver<Outcome>,
}

/// What came of a lead, for its followers.
#[derive(Clone)]
enum Outcome {
    Pending,
    /// A full 200: every follower can be given it.
    Answer(Arc<UpstreamAnswer>),
    /// Inventory failed it (timeout, unreachable, busy, ...): asking again at once would only
    /// pile onto a failing inventory.
    Failed,
    /// Nothing to give (another status, the leader's client gone): each follower asks itself.
    AskYourself,
}

/// What a read that missed does.
pub(crate) enum Miss<'a> {
    /// Asks inventory, then [`Leader::finish`]es (or [`Leader::fail`]s).
    Lead(Leader<'a>),
    /// Waits for the leader ([`Follower::follow`]).
    Follow(Follower),
}

/// The read that asks inventory for the others; its lead ends when it is finished or dropped.
pub(crate) struct Leader<'a> {
    cache: &'a CatalogueCache,
    key: CacheKey,
    ticket: Option<Ticket>,
    outcome: watch::Sender<Outcome>,
}

impl Leader<'_> {
    /// Stores `answer` if it may be, and gives it to the followers if it is a full 200.
    pub(crate) fn finish(mut self, answer: &Arc<UpstreamAnswer>) {
        let ticket = self.ticket.take().expect("finished once");
        self.cache.store(ticket, answer);
        let outcome =
            if answer.status == StatusCode::OK && matches!(answer.body, AnswerBody::Full(_)) {
                Outcome::Answer(answer.clone())
            } else {
                Outcome::AskYourself
            };
        self.outcome.send_replace(outcome);
    }

    /// Inventory failed the read; `client_gone` if it was only the leader's client that left.
    pub(crate) fn fail(self, client_gone: bool) {
        self.outcome.send_replace(if client_gone {
            Outcome::AskYourself
        } else {
            Outcome::Failed
        });
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut leads = self.cache.leads();
        if leads
            .get(&self.key)
            .is_some_and(|lead| lead.outcome.same_channel(&self.outcome.subscribe()))
        {
            leads.remove(&self.key);
        }
    }
}

/// A read waiting for a leader.
pub(crate) struct Follower {
    outcome: watch::Receiver<Outcome>,
    /// When the leader asked, and how old an answer may be served (as from the cache).
    asked_at: Instant,
    ttl: Duration,
}

/// What following came to.
pub(crate) enum Followed {
    /// The leader's answer, as this read should get it.
    Answered(HttpResponse),
    /// No answer to give (another status, a leader gone, an answer older than the TTL).
    AskYourself,
    /// Inventory failed the leader's read.
    LeaderFailed,
    /// This read's client closed its connection while it waited.
    ClientGone,
}

impl Follower {
    pub(crate) async fn follow(mut self, req: &HttpRequest) -> Followed {
        let outcome = tokio::select! {
            outcome = self.outcome() => outcome,
            () = connection_watch::client_gone(req) => return Followed::ClientGone,
        };
        match outcome {
            Outcome::Answer(answer) if self.asked_at.elapsed() < self.ttl => {
                Followed::Answered(answer_from(req, &answer))
            }
            Outcome::Failed => Followed::LeaderFailed,
            _ => Followed::AskYourself,
        }
    }

    /// The lead's outcome once known (a leader dropped before it has none to give).
    async fn outcome(&mut self) -> Outcome {
        loop {
            let outcome = self.outcome.borrow_and_update().clone();
            if !matches!(outcome, Outcome::Pending) {
                return outcome;
            }
            if self.outcome.changed().await.is_err() {
                return match self.outcome.borrow().clone() {
                    Outcome::Pending => Outcome::AskYourself,
                    outcome => outcome,
                };
            }
        }
    }
}

/// A read that missed: what it must see unchanged to store its answer, and when it missed
/// (before inventory was asked).
pub(crate) struct Ticket {
    key: CacheKey,
    stamp: (u64, u64),
    asked_at: Instant,
}

/// What a change invalidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// A movie was created, replaced or deleted (every list page may have changed too).
    Movie(i64),
    /// A movie was added: only list pages may have changed.
    Pages,
    /// Anything may have changed: the whole catalogue was emptied, or events were missed.
    Everything,
}

impl CatalogueCache {
    /// A cache of at most `max_bytes` whose entries live at most `ttl`.
    pub(crate) fn new(max_bytes: u64, ttl: Duration, metrics: &Metrics) -> Self {
        let metrics = CacheMetrics {
            lookups: metrics.counter_vec(
                "catalogue_cache_lookups_total",
                "Catalogue reads looked up in the gateway's cache, by result (hit, miss).",
                &["result"],
            ),
            invalidations: metrics.counter(
                "catalogue_cache_invalidations_total",
                "Changes that invalidated cached catalogue answers (events, own writes, resubscriptions).",
            ),
            evictions: metrics.counter(
                "catalogue_cache_evictions_total",
                "Cached catalogue answers evicted for room (not expired, not invalidated).",
            ),
            entries: metrics.gauge("catalogue_cache_entries", "Catalogue answers in the cache."),
            bytes: metrics.gauge(
                "catalogue_cache_bytes",
                "Approximate bytes held by the catalogue cache.",
            ),
        };
        let evictions = metrics.evictions.clone();
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &CacheKey, entry: &Entry| {
                let size = entry.answer.size() + key.weight() + ENTRY_OVERHEAD;
                u32::try_from(size).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    evictions.inc();
                }
            })
            .build();
        Self {
            entries,
            ttl,
            changes: Mutex::new(Changes {
                pages: 0,
                everything: 0,
                movies: Box::new([0; MOVIE_SLOTS]),
            }),
            leads: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn changes(&self) -> std::sync::MutexGuard<'_, Changes> {
        self.changes
            .lock()
            .expect("no panics while holding the lock")
    }

    fn leads(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Lead>> {
        self.leads.lock().expect("no panics while holding the lock")
    }

    /// A miss follows the lead under way for its key, if that lead saw the same changes;
    /// otherwise it leads, if it `may_lead` (a plain `GET`, whose answer others can be given).
    pub(crate) fn miss(&self, ticket: Ticket, may_lead: bool) -> Miss<'_> {
        let mut leads = self.leads();
        if let Some(lead) = leads.get(&ticket.key) {
            // (A leader dropped without an answer has closed its channel: lead anew.)
            if lead.stamp == ticket.stamp && lead.outcome.has_changed().is_ok() {
                return Miss::Follow(Follower {
                    outcome: lead.outcome.clone(),
                    asked_at: lead.asked_at,
                    ttl: self.ttl,
                });
            }
        }
        let (sender, receiver) = watch::channel(Outcome::Pending);
        // A HEAD or a conditional read leads nobody: its answer (no body, or a 304) could be
        // given to nobody else.
        if may_lead {
            leads.insert(
                ticket.key.clone(),
                Lead {
                    stamp: ticket.stamp,
                    asked_at: ticket.asked_at,
                    outcome: receiver,
                },
            );
        }
        Miss::Lead(Leader {
            cache: self,
            key: ticket.key.clone(),
            ticket: Some(ticket),
            outcome: sender,
        })
    }

    /// The answer to `req` from the cache, or the ticket to store the upstream's answer with.
    pub(crate) fn lookup(&self, req: &HttpRequest, key: CacheKey) -> Result<HttpResponse, Ticket> {
        let asked_at = Instant::now();
        let stamp = self.changes().stamp(&key);
        let found = self.entries.get(&key).filter(|entry| {
            let fresh = entry.asked_at.elapsed() < self.ttl;
            fresh
                && match key {
                    // A movie's entry is dropped when it changes.
                    CacheKey::Movie(_) => true,
                    // A page's is stale after any change.
                    CacheKey::Page(_) => entry.pages_changed == stamp.0,
                }
        });
        let result = if found.is_some() { "hit" } else { "miss" };
        self.metrics.lookups.with_label_values(&[result]).inc();
        match found {
            Some(entry) => Ok(answer_from(req, &entry.answer)),
            None => Err(Ticket {
                key,
                stamp,
                asked_at,
            }),
        }
    }

    /// Keeps `answer` if it is a full 200, nothing changed since `ticket` was taken, and (for
    /// a movie) the cache does not hold a later version of it already: two reads that missed
    /// at once may come back in either order, and the older must not replace the newer.
    pub(crate) fn store(&self, ticket: Ticket, answer: &Arc<UpstreamAnswer>) {
        if answer.status != StatusCode::OK
            || !matches!(answer.body, AnswerBody::Full(_))
            || ticket.asked_at.elapsed() >= self.ttl
        {
            return;
        }
        // A copy that owns exactly its bytes: the answer's body may be a slice of the upstream
        // connection's read buffer, many times its size, which the cache would keep alive.
        let kept = Arc::new(answer.detached());
        let changes = self.changes();
        if changes.stamp(&ticket.key) != ticket.stamp {
            return;
        }
        if let CacheKey::Movie(_) = ticket.key {
            let held = self.entries.get(&ticket.key);
            if held.is_some_and(|held| movie_version(&held.answer) > movie_version(answer)) {
                return;
            }
        }
        let entry = Entry {
            answer: kept,
            asked_at: ticket.asked_at,
            pages_changed: changes.pages,
        };
        self.entries.insert(ticket.key, entry);
        drop(changes);
        self.update_gauges();
    }

    /// Drops what `change` makes stale.
    pub(crate) fn invalidate(&self, change: Change) {
        let mut changes = self.changes();
        // Every change may show on a list page: pages go by this count.
        changes.pages += 1;
        match change {
            Change::Movie(id) => {
                changes.movies[Changes::slot(id)] += 1;
                self.entries.invalidate(&CacheKey::Movie(id));
            }
            Change::Pages => {}
            Change::Everything => {
                changes.everything += 1;
                self.entries.invalidate_all();
            }
        }
        drop(changes);
        self.metrics.invalidations.inc();
        self.update_gauges();
    }

    /// Counts what the cache holds. Its counts trail its changes until it has done its pending
    /// work: done here (on misses and changes only, never on a hit).
    fn update_gauges(&self) {
        self.entries.run_pending_tasks();
        self.metrics
            .entries
            .set(i64::try_from(self.entries.entry_count()).unwrap_or(i64::MAX));
        self.metrics
            .bytes
            .set(i64::try_from(self.entries.weighted_size()).unwrap_or(i64::MAX));
    }
}

/// The version a movie answer is of: its entity tag starts with it (`"3.5f2c1a9e0b7d"`).
fn movie_version(answer: &UpstreamAnswer) -> Option<i64> {
    let etag = answer.header(&header::ETAG)?.to_str().ok()?;
    etag.trim_matches('"').split('.').next()?.parse().ok()
}

/// A cached answer, as `req` should get it: 304 if the client's copy is current (its
/// `If-None-Match`), no body for a `HEAD`.
fn answer_from(req: &HttpRequest, answer: &UpstreamAnswer) -> HttpResponse {
    let etag = answer
        .header(&header::ETAG)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<EntityTag>().ok());
    if let Some(etag) = etag {
        if conditional::is_current(req, &etag) {
            return answer.respond(Some(StatusCode::NOT_MODIFIED), &AnswerBody::Head(None));
        }
    }
    match &answer.body {
        AnswerBody::Full(bytes) if req.method() == Method::HEAD => {
            answer.respond(None, &AnswerBody::Head(Some(bytes.len() as u64)))
        }
        body => answer.respond(None, body),
    }
}
