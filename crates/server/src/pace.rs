//! When a worker lingers (sleeps [`crate::ServerConfig::coalesce`]) after a round before it reads
//! again: only while a backlog is building, never for a lone datagram.
//!
//! Lingering makes the next round take everything that came meanwhile (one wake-up, one commit, one
//! send for many datagrams) but adds up to the linger to each datagram's way. It pays only when
//! datagrams come about as fast as a worker handles them: then they queue anyway and rounds without a
//! linger would each handle one or two, at the full cost of a wake-up and a commit each. So a worker
//! keeps two averages: the gap between arrivals (from the kernel's receive times) and its own CPU time
//! per datagram in rounds that did not follow a linger (the read, the engine, the commit, the send:
//! what a datagram costs when nothing is coalesced; CPU time, so a worker preempted on a busy machine
//! does not look slow). It lingers when its handling time is at
//! least [`ENTER`] of the gap (without lingering it would be busy that share of the time, and queueing
//! builds; only after [`ENTER_ROUNDS`] such rounds in a row, so a few costly rounds do not count),
//! and stops when it falls below [`EXIT`] (hysteresis, so it does not flip every round).
//! While it lingers, rounds cost less per datagram because they are larger, so those rounds do not
//! count; every [`PROBE`]th round it does not linger, and that round measures the cost again, so
//! one costly moment cannot keep it lingering.
//!
//! At low rates (one datagram per round, the socket empty after it) nothing waits: the datagram is
//! committed and answered at once, and the worker then waits in `recvmmsg` for the next.

use std::time::{Duration, Instant};

/// Lingering starts when the CPU time per datagram reaches this share of the arrival gap. Below it
/// a datagram rarely waits behind another (at a share of 1/2, on average half a datagram's handling
/// time), far less than a linger would add.
pub(crate) const ENTER: f64 = 2.0 / 3.0;
/// Lingering stops when the CPU time per datagram falls below this share of the arrival gap.
pub(crate) const EXIT: f64 = 1.0 / 2.0;
/// Weight of a new sample in the averages (an exponentially weighted mean over ~16 samples).
const WEIGHT: f64 = 1.0 / 16.0;
/// While lingering, every this many rounds one round does not linger (see the module doc).
pub(crate) const PROBE: u32 = 32;
/// A gap longer than this is idleness, not a rate: it restarts the gap average from this value.
const IDLE_GAP: Duration = Duration::from_millis(100);
/// Lingering starts only after this many rounds in a row measured a share of at least [`ENTER`]: a
/// few costly rounds (a cold start's first commits and page faults, a checkpoint) are not a backlog.
/// Measured: without it, the first rounds of a fresh server (several hundred µs each) made it
/// linger for the next half second at 1 000 exchanges/s, adding up to a millisecond to the
/// requests that followed its offers.
pub(crate) const ENTER_ROUNDS: u32 = 8;
/// One round's cost per datagram counts as at most this many arrival gaps, so that one very costly
/// round moves the average by a bounded step.
const MAX_SAMPLE_GAPS: f64 = 2.0;

/// A worker's view of the arrival rate and of its own speed (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// Mean gap between the arrivals of the datagrams this worker read, in seconds.
    gap: Option<f64>,
    /// Mean handling time per datagram in rounds that did not follow a linger, in seconds.
    cost: Option<f64>,
    last_arrival: Option<Instant>,
    /// The thread's CPU clock when its last round ended.
    last_end: Option<Duration>,
    lingering: bool,
    /// Rounds since lingering started.
    lingered: u32,
    /// Measured rounds in a row whose own cost per datagram reached [`ENTER`] of the gap.
    over: u32,
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

    /// Notes a finished round: `cpu` the thread's CPU clock ([`thread_cpu`]) now, `datagrams`
    /// handled in it; `after_linger` when the worker lingered before the round's first read.
    pub(crate) fn round_done(&mut self, cpu: Duration, datagrams: usize, after_linger: bool) {
        if datagrams == 0 {
            // What an empty round cost counts with the next one.
            return;
        }
        let Some(last) = self.last_end.replace(cpu) else {
            return;
        };
        if after_linger {
            return;
        }
        let mut per = cpu.saturating_sub(last).as_secs_f64() / datagrams as f64;
        if let Some(gap) = self.gap {
            per = per.min(gap * MAX_SAMPLE_GAPS);
            // This round's own share, not the average's: the average keeps a costly moment for
            // a dozen rounds after it.
            self.over = if per >= gap * ENTER {
                self.over.saturating_add(1)
            } else {
                0
            };
        }
        self.cost = Some(mean(self.cost, per));
        self.decide();
    }

    /// Whether the worker should linger before its next read (asked once per round).
    pub(crate) fn linger(&mut self) -> bool {
        if !self.lingering {
            return false;
        }
        self.lingered = self.lingered.wrapping_add(1);
        !self.lingered.is_multiple_of(PROBE)
    }

    /// The measured cost per datagram as a share of the mean gap between arrivals.
    fn share(&self) -> Option<f64> {
        let (gap, cost) = (self.gap?, self.cost?);
        Some(if gap > 0.0 { cost / gap } else { f64::INFINITY })
    }

    fn decide(&mut self) {
        let Some(share) = self.share() else {
            self.lingering = false;
            return;
        };
        let lingering = if self.lingering {
            share >= EXIT
        } else {
            share >= ENTER && self.over >= ENTER_ROUNDS
        };
        if lingering != self.lingering {
            self.lingered = 0;
        }
        self.lingering = lingering;
    }
}

/// The calling thread's CPU time, the clock of [`Pace::round_done`]; 0 when unavailable, which
/// never lingers.
#[cfg(unix)]
pub(crate) fn thread_cpu() -> Duration {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// The wall clock where no thread CPU clock is at hand (a preempted round then looks slower).
#[cfg(not(unix))]
pub(crate) fn thread_cpu() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
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

    /// Feeds `n` arrivals `gap` apart and, after each, a round of one datagram costing `busy`
    /// (`cpu` the thread's CPU clock, advanced by it).
    fn steady(
        pace: &mut Pace,
        start: Instant,
        cpu: &mut Duration,
        n: u32,
        gap: Duration,
        busy: Duration,
    ) -> Instant {
        let mut at = start;
        for _ in 0..n {
            at += gap;
            pace.arrived(at);
            let lingered = pace.linger();
            *cpu += busy;
            pace.round_done(*cpu, 1, lingered);
        }
        at
    }

    #[test]
    fn a_lone_datagram_never_waits() {
        let mut pace = Pace::default();
        let at = Instant::now();
        pace.arrived(at);
        pace.round_done(30 * US, 1, false);
        assert!(!pace.lingering);
        pace.arrived(at + Duration::from_millis(20));
        pace.round_done(60 * US, 1, false);
        assert!(!pace.lingering);
    }

    #[test]
    fn low_rate_does_not_linger() {
        // 2 000 datagrams/s (1 000 exchanges/s), 30 µs each: busy 6 % of the time.
        let mut pace = Pace::default();
        steady(
            &mut pace,
            Instant::now(),
            &mut Duration::default(),
            200,
            500 * US,
            30 * US,
        );
        assert!(!pace.lingering);
    }

    #[test]
    fn a_building_backlog_lingers_and_a_falling_rate_stops_it() {
        let mut pace = Pace::default();
        let mut cpu = Duration::ZERO;
        // 16 000 datagrams/s, 50 µs each: busy 80 % of the time.
        let at = steady(&mut pace, Instant::now(), &mut cpu, 200, 62 * US, 50 * US);
        assert!(pace.lingering);
        // Rounds after a linger are cheaper per datagram: that alone must not stop it.
        for _ in 0..50 {
            cpu += 32 * US;
            pace.round_done(cpu, 16, true);
        }
        assert!(pace.lingering);
        // The rate falls to 2 000 datagrams/s.
        steady(&mut pace, at, &mut cpu, 200, 500 * US, 50 * US);
        assert!(!pace.lingering);
    }

    #[test]
    fn one_costly_moment_does_not_keep_it_lingering() {
        // 2 000 datagrams/s; a burst of costly rounds (a checkpoint, a slow hook) makes it linger.
        let mut pace = Pace::default();
        let mut cpu = Duration::ZERO;
        let at = steady(&mut pace, Instant::now(), &mut cpu, 50, 500 * US, 30 * US);
        let at = steady(&mut pace, at, &mut cpu, 50, 500 * US, 2_000 * US);
        assert!(pace.lingering);
        // Rounds after a linger do not count, but every PROBE-th round measures again.
        steady(&mut pace, at, &mut cpu, PROBE * 200, 500 * US, 30 * US);
        assert!(!pace.lingering);
    }

    #[test]
    fn a_cold_start_does_not_linger() {
        // A fresh server's first rounds cost hundreds of µs each (first commits, page faults); then
        // 2 000 datagrams/s at 40 µs each.
        let mut pace = Pace::default();
        let mut cpu = Duration::ZERO;
        let at = steady(&mut pace, Instant::now(), &mut cpu, 4, 500 * US, 900 * US);
        assert!(!pace.lingering, "a few costly rounds are not a backlog");
        steady(&mut pace, at, &mut cpu, 200, 500 * US, 40 * US);
        assert!(!pace.lingering);
    }

    #[test]
    fn idleness_is_not_a_rate() {
        let mut pace = Pace::default();
        let at = steady(
            &mut pace,
            Instant::now(),
            &mut Duration::default(),
            200,
            62 * US,
            50 * US,
        );
        assert!(pace.lingering);
        // One datagram after a second of silence: the gap average restarts, the worker does not
        // linger after it.
        pace.arrived(at + Duration::from_secs(1));
        assert!(!pace.lingering);
    }
}
