//! ICMP conflict detection on loopback and inside a network namespace the test creates (198.18.0.0/15
//! addresses only), so no probe leaves the machine.

// Unix only: network namespaces, Unix signals and SO_TIMESTAMPNS (nix).
#![cfg(unix)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use calloutd_hooks::Prober;
use calloutd_server::IcmpProber;
use support::{is_root, Namespace};

#[test]
fn loopback_answers_and_a_silent_address_does_not() {
    if !is_root() {
        eprintln!("skipped: needs root for a raw ICMP socket and a network namespace");
        return;
    }
    let prober = IcmpProber::new(Duration::from_millis(300));
    assert!(
        prober.probe(Ipv4Addr::LOCALHOST, 2),
        "127.0.0.1 did not answer"
    );
    assert!(
        !prober.probe(Ipv4Addr::LOCALHOST, 0),
        "zero attempts probe nothing"
    );

    let namespace = Namespace::create();
    let (own, silent) = namespace.run(|| {
        let prober = IcmpProber::new(Duration::from_millis(200));
        // The namespace's own address answers; an address nobody holds on the link never does.
        (
            prober.probe(Ipv4Addr::new(198, 18, 0, 1), 1),
            prober.probe(Ipv4Addr::new(198, 18, 0, 77), 2),
        )
    });
    assert!(
        own,
        "198.18.0.1 (the namespace's own address) did not answer"
    );
    assert!(!silent, "198.18.0.77 answered, though nobody holds it");
}

#[test]
fn concurrent_probes_do_not_take_each_others_replies() {
    if !is_root() {
        eprintln!("skipped: needs root for a raw ICMP socket");
        return;
    }
    let prober = std::sync::Arc::new(IcmpProber::new(Duration::from_millis(300)));
    let threads: Vec<_> = (1..=4u8)
        .map(|n| {
            let prober = std::sync::Arc::clone(&prober);
            std::thread::spawn(move || prober.probe(Ipv4Addr::new(127, 0, 0, n), 1))
        })
        .collect();
    for thread in threads {
        assert!(thread.join().unwrap());
    }
}
