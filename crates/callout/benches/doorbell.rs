//! Which doorbell for the isolated callout host: one round trip (the server rings, the host
//! answers) between two processes, with no work in between, through
//! - `futex`: a word in shared memory, FUTEX_WAIT/FUTEX_WAKE, sleeping at once;
//! - `futex_spin2000`: the same word, but each side first spins on it 2 000 times (as the transport
//!   did before it bounded its spin by time and backed off, see `src/isolate/shm.rs`), so a quick
//!   answer costs no system call to wait, and a late one costs the spin;
//! - `eventfd`: one eventfd each way (write 8 bytes, read 8 bytes);
//! - `pipe`: one pipe each way (write 1 byte, read 1 byte).
//!
//! Two measurements of the same round trips: `wall` (the latency the server sees) and `cpu` (the
//! CPU time both processes spend per round trip: the server's own process clock plus the peer's,
//! read through `clock_getcpuclockid`). On a machine shared with other work, the CPU figure is the
//! steadier one, and the one that adds up at 8 000 exchanges/s.
//!
//! `cargo bench -p calloutd-callout --bench doorbell`. A benchmark, not a test: see
//! bench/results.md for the figures and the load they were taken under.

#[cfg(target_os = "linux")]
mod linux {
    use criterion::{BenchmarkId, Criterion};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    /// Spins before sleeping in the `futex_spin2000` variant: the transport's former host side value.
    const SPIN: u32 = 2_000;

    const IDLE: u32 = 0;
    const PING: u32 = 1;
    const PONG: u32 = 2;
    const STOP: u32 = 3;

    fn futex(word: &AtomicU32, op: i32, val: u32) {
        // SAFETY: `word` lives in a shared mapping of both processes (no FUTEX_PRIVATE_FLAG);
        // FUTEX_WAIT/WAKE with no timeout.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                op,
                val,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                0u32,
            );
        }
    }

    /// Waits until `word` holds `want` (or STOP, returned as false), spinning `spin` times first.
    fn futex_await(word: &AtomicU32, want: u32, spin: u32) -> bool {
        let mut spins = 0;
        loop {
            let now = word.load(Ordering::Acquire);
            if now == want {
                return true;
            }
            if now == STOP {
                return false;
            }
            if spins < spin {
                spins += 1;
                std::hint::spin_loop();
            } else {
                futex(word, libc::FUTEX_WAIT, now);
            }
        }
    }

    /// CPU time of a process clock (ours, or the peer's from `clock_getcpuclockid`).
    fn cpu_of(clock: libc::clockid_t) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a writable timespec; `clock` is a valid clock id.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    /// The peer process answering round trips, and how to ring it.
    struct Peer {
        pid: libc::pid_t,
        clock: libc::clockid_t,
        kind: Kind,
    }

    enum Kind {
        Futex { word: &'static AtomicU32, spin: u32 },
        Fds { to: i32, back: i32, width: usize },
    }

    /// Forks a child that runs `serve` and exits.
    fn fork(serve: impl FnOnce()) -> (libc::pid_t, libc::clockid_t) {
        // SAFETY: the child only runs `serve` (system calls on its own fds and the shared page) and
        // leaves with _exit, without the parent's destructors.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            serve();
            // SAFETY: see above.
            unsafe { libc::_exit(0) };
        }
        let mut clock: libc::clockid_t = 0;
        // SAFETY: `pid` is our live child; `clock` is writable.
        let r = unsafe { libc::clock_getcpuclockid(pid, &mut clock) };
        assert_eq!(r, 0, "clock_getcpuclockid");
        (pid, clock)
    }

    impl Peer {
        fn futex(spin: u32) -> Peer {
            // SAFETY: an anonymous shared mapping of one page, never unmapped (leaked for the run).
            let page = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(page, libc::MAP_FAILED);
            // SAFETY: the page is zeroed, aligned, shared and lives to the end of the process;
            // AtomicU32 is valid for any bits.
            let word: &'static AtomicU32 = unsafe { &*page.cast::<AtomicU32>() };
            let (pid, clock) = fork(|| {
                while futex_await(word, PING, spin) {
                    word.store(PONG, Ordering::Release);
                    futex(word, libc::FUTEX_WAKE, 1);
                }
            });
            Peer {
                pid,
                clock,
                kind: Kind::Futex { word, spin },
            }
        }

        fn fds(make: fn() -> [(i32, i32); 2], width: usize) -> Peer {
            let [(to_read, to_write), (back_read, back_write)] = make();
            let (pid, clock) = fork(|| loop {
                let mut b = [0u8; 8];
                // SAFETY: reading at most 8 bytes into a live buffer from our fd.
                let n = unsafe { libc::read(to_read, b.as_mut_ptr().cast(), width) };
                if n <= 0 || b[0] == STOP as u8 {
                    return;
                }
                // SAFETY: writing `width` bytes from a live buffer.
                unsafe { libc::write(back_write, [1u8; 8].as_ptr().cast(), width) };
            });
            Peer {
                pid,
                clock,
                kind: Kind::Fds {
                    to: to_write,
                    back: back_read,
                    width,
                },
            }
        }

        /// One round trip.
        fn ring(&self) {
            match &self.kind {
                Kind::Futex { word, spin } => {
                    word.store(PING, Ordering::Release);
                    futex(word, libc::FUTEX_WAKE, 1);
                    futex_await(word, PONG, *spin);
                    word.store(IDLE, Ordering::Relaxed);
                }
                Kind::Fds { to, back, width } => {
                    let mut b = [1u8; 8];
                    // SAFETY: writing/reading `width` (at most 8) bytes from/into a live buffer.
                    unsafe {
                        libc::write(*to, b.as_ptr().cast(), *width);
                        libc::read(*back, b.as_mut_ptr().cast(), *width);
                    }
                }
            }
        }

        /// `iters` round trips: (wall time, CPU time of both processes).
        fn run(&self, iters: u64) -> (Duration, Duration) {
            let cpu0 = cpu_of(libc::CLOCK_PROCESS_CPUTIME_ID) + cpu_of(self.clock);
            let t = Instant::now();
            for _ in 0..iters {
                self.ring();
            }
            let wall = t.elapsed();
            let cpu = cpu_of(libc::CLOCK_PROCESS_CPUTIME_ID) + cpu_of(self.clock) - cpu0;
            (wall, cpu)
        }
    }

    impl Drop for Peer {
        fn drop(&mut self) {
            match &self.kind {
                Kind::Futex { word, .. } => {
                    word.store(STOP, Ordering::Release);
                    futex(word, libc::FUTEX_WAKE, 1);
                }
                Kind::Fds { to, back, width } => {
                    let stop = [STOP as u8; 8];
                    // SAFETY: writing from a live buffer; closing fds made for this peer.
                    unsafe {
                        libc::write(*to, stop.as_ptr().cast(), *width);
                        libc::close(*to);
                        libc::close(*back);
                    }
                }
            }
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
        }
    }

    fn eventfds() -> [(i32, i32); 2] {
        // SAFETY: plain eventfd creation.
        let (a, b) = unsafe { (libc::eventfd(0, 0), libc::eventfd(0, 0)) };
        assert!(a >= 0 && b >= 0, "eventfd");
        // An eventfd is both ends; fork shares it. STOP is written as a counter value of 3 (its first
        // byte, little-endian).
        [(a, a), (b, b)]
    }

    fn pipes() -> [(i32, i32); 2] {
        let mut a = [0i32; 2];
        let mut b = [0i32; 2];
        // SAFETY: writable two-int arrays.
        assert_eq!(unsafe { libc::pipe(a.as_mut_ptr()) }, 0);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::pipe(b.as_mut_ptr()) }, 0);
        [(a[0], a[1]), (b[0], b[1])]
    }

    pub fn doorbells(c: &mut Criterion) {
        let peers: Vec<(&str, Peer)> = vec![
            ("futex", Peer::futex(0)),
            ("futex_spin2000", Peer::futex(SPIN)),
            ("eventfd", Peer::fds(eventfds, 8)),
            ("pipe", Peer::fds(pipes, 1)),
        ];
        for (metric, pick) in [
            ("wall", (|(w, _)| w) as fn((Duration, Duration)) -> Duration),
            ("cpu", |(_, c)| c),
        ] {
            let mut group = c.benchmark_group(format!("doorbell_round_trip_{metric}"));
            group.measurement_time(Duration::from_secs(3));
            group.warm_up_time(Duration::from_millis(500));
            for (name, peer) in &peers {
                group.bench_function(BenchmarkId::from_parameter(name), |b| {
                    b.iter_custom(|iters| pick(peer.run(iters)))
                });
            }
            group.finish();
        }
    }
}

#[cfg(target_os = "linux")]
criterion::criterion_group!(benches, linux::doorbells);
#[cfg(target_os = "linux")]
criterion::criterion_main!(benches);

/// Linux only: the doorbells are Linux system calls (futex, eventfd, fork).
#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("doorbell: Linux only (futex, eventfd and fork are what it compares).");
}
