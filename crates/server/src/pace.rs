//! When a worker lingers (sleeps [`crate::ServerConfig::coalesce`]) after a round before it reads
//! again: only while a backlog is building, never for a lone datagram.
//!
//! Lingering makes the next round take everything that came meanwhile (one wake-up, one commit, one
//! send for many datagrams) but adds up to the linger to each datagram's way. It pays only when
//! datagrams come about as fast as a worker handles them: then they queue anyway and rounds without a
//! linger would each handle one or two, at the full cost of a wake-up and a commit each. So a worker
//! keeps two averages: the gap between arrivals (from the kernel's receive times) and its own handling
//! time per datagram in rounds that did not follow a linger (a wake-up, the engine, the commit, the
//! send: what a datagram costs when nothing is coalesced). It lingers when its handling time is at
//! least [`ENTER`] of the gap (without lingering it would be busy that share of the time, and queueing
//! builds), and stops when it falls below [`EXIT`] (hysteresis, so it does not flip every round).
//! While it lingers, rounds cost less per datagram because they are larger, so the handling average
//! is kept from the rounds before; the gap alone decides when to stop.
//!
//! At low rates (one datagram per round, the socket empty after it) nothing waits: the datagram is
//! committed and answered at once, and the worker then waits in `recvmmsg` for the next.

use std::time::{Duration, Instant};

/// Lingering starts when the handling time per datagram reaches this share of the arrival gap.
pub(crate) const ENTER: f64 = 1.0 / 3.0;
/// Lingering stops when the handling time per datagram falls below this share of the arrival gap.
pub(crate) const EXIT: f64 = 1.0 / 4.0;
/// Weight of a new sample in the averages (an exponentially weighted mean over ~16 samples).
const WEIGHT: f64 = 1.0 / 16.0;
/// A gap longer than this is idleness, not a rate: it restarts the gap average from this value.
const IDLE_GAP: Duration = Duration::from_millis(100);

/// A worker's view of the arrival rate and of its own speed (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// Mean gap between the arrivals of the datagrams this worker read, in seconds.
    gap: Option<f64>,
    /// Mean handling time per datagram in rounds that did not follow a linger, in seconds.
    cost: Option<f64>,
    last_arrival: Option<Instant>,
    lingering: bool,
}

impl Pace {
    /// Notes a datagram's arrival (the kernel's receive time, as an `Instant`).
    pub(crate) fn arrived(&mut self, at: Instant) {
        let Some(last) = self.last_arrival.replace(at) else {
            return;
        };
        // Datagrams of one read may come out of order across workers; a negative gap counts as 0.
        let gap = at.saturating_duration_since(last);
        if gap >= IDLE_GAP {
            self.gap = Some(IDLE_GAP.as_secs_f64());
        } else {
            self.gap = Some(mean(self.gap, gap.as_secs_f64()));
        }
        self.decide();
    }

    /// Notes a finished round: `busy` from its first datagram to its replies sent, `datagrams`
    /// handled in it; `after_linger` when the worker lingered before the round's first read.
    pub(crate) fn round_done(&mut self, busy: Duration, datagrams: usize, after_linger: bool) {
        if after_linger || datagrams == 0 {
            return;
        }
        let per = busy.as_secs_f64() / datagrams as f64;
        self.cost = Some(mean(self.cost, per));
        self.decide();
    }

    /// Whether the worker should linger before its next read.
    pub(crate) fn linger(&self) -> bool {
        self.lingering
    }

    fn decide(&mut self) {
        let (Some(gap), Some(cost)) = (self.gap, self.cost) else {
            self.lingering = false;
            return;
        };
        let share = if gap > 0.0 { cost / gap } else { f64::INFINITY };
        self.lingering = if self.lingering {
            share >= EXIT
        } else {
            share >= ENTER
        };
    }
}

fn mean(old: Option<f64>, sample: f64) -> f64 {
    match old {
        Some(old) => old + (sample - old) * WEIGHT,
        None => sample,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    /// Feeds `n` arrivals `gap` apart and, after each, a round of one datagram taking `busy`.
    fn steady(pace: &mut Pace, start: Instant, n: u32, gap: Duration, busy: Duration) -> Instant {
        let mut at = start;
        for _ in 0..n {
            at += gap;
            pace.arrived(at);
            let lingered = pace.linger();
            pace.round_done(busy, 1, lingered);
        }
        at
    }

    #[test]
    fn a_lone_datagram_never_waits() {
        let mut pace = Pace::default();
        pace.arrived(Instant::now());
        pace.round_done(30 * US, 1, false);
        assert!(!pace.linger());
    }

    #[test]
    fn low_rate_does_not_linger() {
        // 2 000 datagrams/s (1 000 exchanges/s), 30 µs each: busy 6 % of the time.
        let mut pace = Pace::default();
        steady(&mut pace, Instant::now(), 200, 500 * US, 30 * US);
        assert!(!pace.linger());
    }

    #[test]
    fn a_building_backlog_lingers_and_a_falling_rate_stops_it() {
        let mut pace = Pace::default();
        // 16 000 datagrams/s, 30 µs each: busy about half of the time.
        let at = steady(&mut pace, Instant::now(), 200, 62 * US, 30 * US);
        assert!(pace.linger());
        // Rounds after a linger are cheaper per datagram: that alone must not stop it.
        for _ in 0..50 {
            pace.round_done(2 * US, 16, true);
        }
        assert!(pace.linger());
        // The rate falls to 2 000 datagrams/s.
        steady(&mut pace, at, 200, 500 * US, 30 * US);
        assert!(!pace.linger());
    }

    #[test]
    fn idleness_is_not_a_rate() {
        let mut pace = Pace::default();
        let at = steady(&mut pace, Instant::now(), 200, 62 * US, 30 * US);
        assert!(pace.linger());
        // One datagram after a second of silence: the gap average restarts, the worker does not
        // linger after it.
        pace.arrived(at + Duration::from_secs(1));
        assert!(!pace.linger());
    }
}
