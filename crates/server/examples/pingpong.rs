//! Measures the runtime's CPU cost per datagram against a floor (one thread: recv, answer, send), on
//! loopback. In two shells (or with `&`):
//!
//! ```text
//! pingpong runtime|floor PORT COUNT [WORKERS]   # the server; prints its CPU µs per datagram
//! pingpong client PORT COUNT                    # sends a 300-byte datagram, waits for the answer
//! ```
//!
//! Build with `cargo build --release -p calloutd-server --example pingpong`. A benchmark, not a test.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use calloutd_engine::{Admission, Datagram, NoHooks, Outcome, PacketHandler, Reply};
use calloutd_server::{Server, ServerConfig};

/// CPU seconds (user + system) of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the ")".
    (ticks(11) + ticks(12)) / 100.0
}

struct Echo(AtomicU64);

impl PacketHandler for Echo {
    fn handle(&self, datagram: Datagram, _: Admission) -> Outcome {
        self.0.fetch_add(1, Ordering::Relaxed);
        Outcome {
            reply: Some(Reply {
                bytes: datagram.bytes,
                dest: datagram.peer,
                source: datagram.if_addr,
                delay: std::time::Duration::ZERO,
            }),
            ..Outcome::default()
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("runtime");
    let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(16767);
    let count: u64 = args.get(3).and_then(|c| c.parse().ok()).unwrap_or(100_000);
    let workers: usize = args.get(4).and_then(|w| w.parse().ok()).unwrap_or(1);
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let mut start = None;
    match mode {
        "client" => {
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
            socket
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .expect("timeout");
            let request = [0x42u8; 300];
            let mut buf = [0u8; 2048];
            let started = std::time::Instant::now();
            for n in 0..count {
                socket.send_to(&request, addr).expect("send");
                if socket.recv_from(&mut buf).is_err() {
                    println!("no answer to datagram {n}");
                    return;
                }
            }
            let rate = count as f64 / started.elapsed().as_secs_f64();
            println!("client: {rate:.0} round trips/s");
            return;
        }
        "floor" => {
            let socket = UdpSocket::bind(addr).expect("bind");
            let mut buf = [0u8; 2048];
            for n in 0..count {
                let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                    break;
                };
                if n == 0 {
                    start = Some(cpu_seconds());
                }
                let _ = socket.send_to(&buf[..len], peer);
            }
        }
        _ => {
            let echo = Arc::new(Echo(AtomicU64::new(0)));
            let config = ServerConfig {
                listen: vec![addr],
                workers,
                ..ServerConfig::default()
            };
            let server =
                Server::start(config, Arc::clone(&echo), Arc::new(NoHooks)).expect("start");
            while echo.0.load(Ordering::Relaxed) == 0 {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            start = Some(cpu_seconds());
            while echo.0.load(Ordering::Relaxed) < count {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            server.handle().stop();
            server.wait();
        }
    }
    let used = cpu_seconds() - start.unwrap_or(0.0);
    println!(
        "{mode}: {:.2} us CPU per datagram over {count}",
        used * 1e6 / count as f64
    );
}
