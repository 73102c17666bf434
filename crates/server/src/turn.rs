//! Whose turn it is to read a socket. Under load a worker that waits in the socket while another
//! coalesces would take every datagram as it comes and cut the rounds short; so one worker per socket
//! at a time, the holder of the turn, waits for and reads its datagrams. The others wait here and
//! join in only when they are needed: the holder passes the turn on when a read fills a whole batch
//! (datagrams are coming faster than one worker reads), and a waiting worker reads without the turn
//! when the holder has been handling datagrams for longer than the patience (a slow hook, say), so a
//! stuck worker never stalls the socket.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// What [`ReadTurn::take`] gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Took {
    /// The turn: wait for and read the socket's datagrams.
    Turn,
    /// The holder has been handling datagrams for a while: read what waits, without the turn.
    Join,
}

#[derive(Debug, Default)]
struct State {
    held: bool,
    /// Since when the holder has been handling what it read (`None` while it waits or reads).
    handling_since: Option<Instant>,
}

/// The turn to read one socket.
#[derive(Debug, Default)]
pub(crate) struct ReadTurn {
    state: Mutex<State>,
    passed: Condvar,
}

impl ReadTurn {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the turn, waiting while another worker holds it; `Join` once the holder has been
    /// handling datagrams for `patience`.
    pub(crate) fn take(&self, patience: Duration) -> Took {
        let mut state = self.lock();
        loop {
            if !state.held {
                state.held = true;
                state.handling_since = None;
                return Took::Turn;
            }
            let wait = match state.handling_since {
                Some(since) => match patience.checked_sub(since.elapsed()) {
                    Some(left) if !left.is_zero() => left,
                    _ => return Took::Join,
                },
                None => patience,
            };
            state = self
                .passed
                .wait_timeout(state, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The holder starts handling what it read.
    pub(crate) fn handling(&self) {
        self.lock().handling_since = Some(Instant::now());
    }

    /// The holder is back to waiting for the socket.
    pub(crate) fn waiting(&self) {
        self.lock().handling_since = None;
    }

    /// The holder gives the turn up and wakes one waiting worker.
    pub(crate) fn pass(&self) {
        let mut state = self.lock();
        state.held = false;
        state.handling_since = None;
        drop(state);
        self.passed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const PATIENCE: Duration = Duration::from_millis(40);

    #[test]
    fn one_holder_at_a_time_and_a_passed_turn_goes_to_a_waiting_worker() {
        let turn = Arc::new(ReadTurn::default());
        assert_eq!(turn.take(PATIENCE), Took::Turn);
        let waiter = {
            let turn = Arc::clone(&turn);
            std::thread::spawn(move || turn.take(Duration::from_secs(30)))
        };
        // The holder waits for its socket (not handling): the other keeps waiting for the turn.
        std::thread::sleep(PATIENCE * 2);
        assert!(!waiter.is_finished());
        turn.pass();
        assert_eq!(waiter.join().unwrap(), Took::Turn);
    }

    #[test]
    fn a_holder_handling_for_longer_than_the_patience_lets_others_join() {
        let turn = ReadTurn::default();
        assert_eq!(turn.take(PATIENCE), Took::Turn);
        turn.handling();
        let started = Instant::now();
        assert_eq!(turn.take(PATIENCE), Took::Join);
        assert!(started.elapsed() >= PATIENCE / 2);
        // Back to waiting for the socket: no more joining.
        turn.waiting();
        let waiter = std::thread::scope(|scope| {
            let waiter = scope.spawn(|| turn.take(PATIENCE));
            std::thread::sleep(PATIENCE * 2);
            let finished = waiter.is_finished();
            turn.pass();
            (finished, waiter.join().unwrap())
        });
        assert_eq!(waiter, (false, Took::Turn));
    }
}
