//! Rough cost of one DORA exchange through the engine (no sockets, no callout): DISCOVER + REQUEST per
//! client against a fresh SQLite lease database. A measurement aid, not a test.
//!
//! `cargo run --release -p calloutd-engine --example dora_cost -- [clients] [memory]`

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use calloutd_config::{Scope, ServerConfig};
use calloutd_engine::{
    Admission, Datagram, Engine, EngineOptions, LeaseStore, MemoryLeaseStore, NoHooks, NoProber,
    PacketHandler, SqliteLeaseStore,
};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn request(kind: u8, n: u32, requested: Option<Ipv4Addr>) -> Vec<u8> {
    let mut bytes = vec![0u8; 240];
    bytes[0] = 1;
    bytes[1] = 1;
    bytes[2] = 6;
    bytes[4..8].copy_from_slice(&n.to_be_bytes());
    bytes[10] = 0x80;
    bytes[28..34].copy_from_slice(&[
        2,
        0,
        (n >> 24) as u8,
        (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ]);
    bytes[236..240].copy_from_slice(&[99, 130, 83, 99]);
    bytes.extend_from_slice(&[53, 1, kind, 55, 3, 1, 3, 6]);
    if let Some(ip) = requested {
        bytes.extend_from_slice(&[50, 4]);
        bytes.extend_from_slice(&ip.octets());
        bytes.extend_from_slice(&[54, 4]);
        bytes.extend_from_slice(&SERVER.octets());
    }
    bytes.push(255);
    bytes
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clients: u32 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let config = ServerConfig {
        scopes: vec![Scope {
            name: "bench".into(),
            lease_duration: Some(Duration::from_secs(3600)),
            ..Scope::new(
                Ipv4Addr::new(198, 18, 0, 0),
                Ipv4Addr::new(255, 254, 0, 0),
                Ipv4Addr::new(198, 18, 0, 10),
                Ipv4Addr::new(198, 19, 255, 250),
            )
        }],
        ..ServerConfig::default()
    };
    let dir = tempfile::tempdir()?;
    let memory = std::env::args().nth(2).as_deref() == Some("memory");
    let store: Box<dyn LeaseStore> = if memory {
        Box::new(MemoryLeaseStore::new())
    } else {
        Box::new(SqliteLeaseStore::open(dir.path().join("leases.db"))?)
    };
    let engine = Engine::new(
        config,
        EngineOptions::default(),
        Arc::new(NoHooks),
        store,
        Arc::new(NoProber),
    )?;
    let datagram = |bytes| Datagram {
        bytes,
        if_addr: SERVER,
        dst_addr: Ipv4Addr::BROADCAST,
        peer: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
    };
    let started = Instant::now();
    for n in 1..=clients {
        let offer = engine.handle(datagram(request(1, n, None)), Admission::Process);
        let reply = offer.reply.ok_or("no OFFER")?;
        let yiaddr = Ipv4Addr::new(
            reply.bytes[16],
            reply.bytes[17],
            reply.bytes[18],
            reply.bytes[19],
        );
        let ack = engine.handle(datagram(request(3, n, Some(yiaddr))), Admission::Process);
        if ack.reply_type != Some(5) {
            return Err(format!("no ACK for client {n}").into());
        }
    }
    let elapsed = started.elapsed();
    println!(
        "{clients} DORA exchanges in {elapsed:?}: {:.2} µs each",
        elapsed.as_secs_f64() * 1e6 / f64::from(clients)
    );
    Ok(())
}
