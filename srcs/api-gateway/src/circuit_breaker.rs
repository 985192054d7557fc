//! A circuit breaker per upstream: after a run of failures it opens and calls fail at once
//! (milliseconds, not a timeout per request); after a cool-down it lets one probe through, and
//! closes again when the probe succeeds.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use prometheus::IntGauge;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// The value of the `circuit_breaker_state` gauge.
    fn gauge_value(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive_failures: u32,
    opened_at: Instant,
    probe_in_flight: bool,
}

pub(crate) struct CircuitBreaker {
    failure_threshold: u32,
    cool_down: Duration,
    inner: Mutex<Inner>,
    gauge: IntGauge,
}

/// Permission to make a call; report how it went with [`CircuitBreaker::record`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Permit {
    Call,
    /// The one call allowed through a half-open breaker.
    Probe,
}

impl CircuitBreaker {
    pub(crate) fn new(failure_threshold: u32, cool_down: Duration, gauge: IntGauge) -> Self {
        gauge.set(State::Closed.gauge_value());
        Self {
            failure_threshold,
            cool_down,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive_failures: 0,
                opened_at: Instant::now(),
                probe_in_flight: false,
            }),
            gauge,
        }
    }

    #[cfg(test)]
    fn state(&self) -> State {
        self.inner.lock().expect("breaker lock").state
    }

    /// `None` while the breaker is open (or its one probe is under way): fail fast.
    pub(crate) fn permit(&self) -> Option<Permit> {
        let mut inner = self.inner.lock().expect("breaker lock");
        match inner.state {
            State::Closed => Some(Permit::Call),
            State::Open if inner.opened_at.elapsed() >= self.cool_down => {
                self.set(&mut inner, State::HalfOpen);
                inner.probe_in_flight = true;
                Some(Permit::Probe)
            }
            State::HalfOpen if !inner.probe_in_flight => {
                inner.probe_in_flight = true;
                Some(Permit::Probe)
            }
            State::Open | State::HalfOpen => None,
        }
    }

    /// Records the outcome of a permitted call.
    pub(crate) fn record(&self, permit: Permit, success: bool) {
        let mut inner = self.inner.lock().expect("breaker lock");
        if permit == Permit::Probe {
            inner.probe_in_flight = false;
        }
        if success {
            inner.consecutive_failures = 0;
            if inner.state != State::Closed {
                log::info!("circuit closed: the upstream answers again");
                self.set(&mut inner, State::Closed);
            }
            return;
        }
        inner.consecutive_failures += 1;
        let trips = permit == Permit::Probe || inner.consecutive_failures >= self.failure_threshold;
        if trips && inner.state != State::Open {
            log::warn!(
                "circuit open after {} failure(s): failing fast for {:?}",
                inner.consecutive_failures,
                self.cool_down
            );
            inner.opened_at = Instant::now();
            self.set(&mut inner, State::Open);
        }
    }

    fn set(&self, inner: &mut Inner, state: State) {
        inner.state = state;
        self.gauge.set(state.gauge_value());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(cool_down: Duration) -> CircuitBreaker {
        CircuitBreaker::new(3, cool_down, IntGauge::new("test_breaker", "test").unwrap())
    }

    #[test]
    fn opens_after_the_threshold_and_fails_fast() {
        let breaker = breaker(Duration::from_secs(60));
        for _ in 0..2 {
            let permit = breaker.permit().unwrap();
            breaker.record(permit, false);
        }
        assert_eq!(breaker.state(), State::Closed);
        let permit = breaker.permit().unwrap();
        breaker.record(permit, false);
        assert_eq!(breaker.state(), State::Open);
        assert!(breaker.permit().is_none());
        assert_eq!(breaker.gauge.get(), 1);
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breaker = breaker(Duration::from_secs(60));
        for success in [false, false, true, false, false] {
            let permit = breaker.permit().unwrap();
            breaker.record(permit, success);
        }
        assert_eq!(breaker.state(), State::Closed);
    }

    #[test]
    fn after_the_cool_down_one_probe_decides() {
        let breaker = breaker(Duration::from_millis(10));
        for _ in 0..3 {
            let permit = breaker.permit().unwrap();
            breaker.record(permit, false);
        }
        std::thread::sleep(Duration::from_millis(15));
        assert_eq!(breaker.permit(), Some(Permit::Probe));
        assert!(breaker.permit().is_none(), "only one probe at a time");
        assert_eq!(breaker.gauge.get(), 2);
        breaker.record(Permit::Probe, false);
        assert_eq!(breaker.state(), State::Open, "a failed probe re-opens");
        std::thread::sleep(Duration::from_millis(15));
        let probe = breaker.permit().unwrap();
        breaker.record(probe, true);
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(breaker.gauge.get(), 0);
    }
}
