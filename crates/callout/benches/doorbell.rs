//! Which doorbell for the isolated callout host: one round trip (server rings, host answers)
//! between two processes through a futex word in shared memory, an eventfd pair, and a pipe pair,
//! with no work in between. Prints p50/p99 of each in microseconds.
//!
//! `cargo bench -p calloutd-callout --bench doorbell` (or `-- N` round trips; default 50 000).
//! The futex variant sleeps at once (no spinning), so the three are compared on equal terms.

#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicU32, Ordering};
#[cfg(target_os = "linux")]
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "{name:<8} round trips {:>7}  p50 {:>7.2} us  p99 {:>7.2} us",
        samples.len(),
        at(0.5).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    );
}

#[cfg(target_os = "linux")]
fn futex(word: &AtomicU32, op: i32, val: u32) {
    // SAFETY: `word` lives in a shared mapping for both processes; FUTEX_WAIT/WAKE on it.
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

/// Forks; the child runs `child` and exits; the parent runs `parent` and reaps the child.
#[cfg(target_os = "linux")]
fn forked(child: impl FnOnce(), parent: impl FnOnce()) {
    // SAFETY: single-threaded at this point; the child only runs `child` and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        child();
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    parent();
    // SAFETY: reaping our own child.
    unsafe {
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

#[cfg(target_os = "linux")]
fn bench_futex(n: usize) -> Vec<Duration> {
    // SAFETY: an anonymous shared mapping of one page, unmapped below.
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
    // SAFETY: the page is zeroed, aligned and shared; AtomicU32 is valid for any bits.
    let word = unsafe { &*page.cast::<AtomicU32>() };
    let mut samples = Vec::with_capacity(n);
    forked(
        || {
            for _ in 0..n {
                while word.load(Ordering::Acquire) != 1 {
                    futex(word, libc::FUTEX_WAIT, 0);
                }
                word.store(2, Ordering::Release);
                futex(word, libc::FUTEX_WAKE, 1);
            }
        },
        || {
            for _ in 0..n {
                let t = Instant::now();
                word.store(1, Ordering::Release);
                futex(word, libc::FUTEX_WAKE, 1);
                while word.load(Ordering::Acquire) != 2 {
                    futex(word, libc::FUTEX_WAIT, 1);
                }
                word.store(0, Ordering::Release);
                samples.push(t.elapsed());
            }
        },
    );
    // SAFETY: the mapping made above; the child is gone.
    unsafe { libc::munmap(page, 4096) };
    samples
}

/// Two one-way channels made by `make` (returning (read end, write end) of each), ping-ponged.
#[cfg(target_os = "linux")]
fn bench_fds(n: usize, make: fn() -> [(i32, i32); 2], width: usize) -> Vec<Duration> {
    let [(to_read, to_write), (back_read, back_write)] = make();
    let mut samples = Vec::with_capacity(n);
    let buf = [1u8; 8];
    let ring = |fd: i32| {
        // SAFETY: writing `width` bytes from a live buffer to our fd.
        unsafe { libc::write(fd, buf.as_ptr().cast(), width) };
    };
    let wait = |fd: i32| {
        let mut b = [0u8; 8];
        // SAFETY: reading at most `width` bytes into a live buffer from our fd.
        unsafe { libc::read(fd, b.as_mut_ptr().cast(), width) };
    };
    forked(
        || {
            for _ in 0..n {
                wait(to_read);
                ring(back_write);
            }
        },
        || {
            for _ in 0..n {
                let t = Instant::now();
                ring(to_write);
                wait(back_read);
                samples.push(t.elapsed());
            }
        },
    );
    for fd in [to_read, to_write, back_read, back_write] {
        // SAFETY: closing fds made here.
        unsafe { libc::close(fd) };
    }
    samples
}

#[cfg(target_os = "linux")]
fn eventfds() -> [(i32, i32); 2] {
    // SAFETY: plain eventfd creation.
    let a = unsafe { libc::eventfd(0, 0) };
    // SAFETY: as above.
    let b = unsafe { libc::eventfd(0, 0) };
    assert!(a >= 0 && b >= 0);
    // An eventfd is both ends; fork duplicates them.
    [(a, a), (b, b)]
}

#[cfg(target_os = "linux")]
fn pipes() -> [(i32, i32); 2] {
    let mut a = [0i32; 2];
    let mut b = [0i32; 2];
    // SAFETY: writable two-int arrays.
    assert_eq!(unsafe { libc::pipe(a.as_mut_ptr()) }, 0);
    // SAFETY: as above.
    assert_eq!(unsafe { libc::pipe(b.as_mut_ptr()) }, 0);
    [(a[0], a[1]), (b[0], b[1])]
}

#[cfg(target_os = "linux")]
fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50_000);
    report("futex", bench_futex(n));
    report("eventfd", bench_fds(n, eventfds, 8));
    report("pipe", bench_fds(n, pipes, 1));
}

/// Linux only: futex, eventfd and fork.
#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("doorbell: Linux only: futex, eventfd and fork.");
}
