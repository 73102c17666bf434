//! Fuzzes control API request handling: the router behind the HTTP server (`ControlRouter::handle`)
//! fed arbitrary methods, paths, queries and Authorization headers, with and without a token, over
//! a running (loopback, port 0) runtime. Any request gets a status in 200..=599 and a JSON (or
//! Prometheus text) body, never a panic. The input is `METHOD\nURL\nAUTHORIZATION`; the first byte
//! picks whether a token is required.
#![no_main]

use std::sync::OnceLock;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use calloutd_engine::{Admission, Datagram, PacketHandler};
use calloutd_server::ControlRouter;
use libfuzzer_sys::fuzz_target;

fn routers() -> &'static (ControlRouter, ControlRouter) {
    static ROUTERS: OnceLock<(ControlRouter, ControlRouter)> = OnceLock::new();
    ROUTERS.get_or_init(control_routers)
}

fuzz_target!(|data: &[u8]| {
    let Some((&select, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(3, '\n');
    let method = parts.next().unwrap_or("");
    let url = parts.next().unwrap_or("/");
    let authorization = parts.next();
    let (open, guarded) = routers();
    let router = if select & 1 == 0 { open } else { guarded };
    let response = router.handle(method, url, authorization);
    assert!(
        (200..=599).contains(&response.status),
        "status {} for {method:?} {url:?}",
        response.status
    );
    if response.content_type.contains("json") {
        if let Err(error) = serde_json::from_str::<serde_json::Value>(&response.body) {
            panic!(
                "{method} {url}: the body is not JSON ({error}): {}",
                response.body
            );
        }
    }
});

/// The control API routers the control target drives, over a runtime serving on loopback (port 0,
/// answering nothing) and a backend with the lab's two scopes and no leases: one open, one that
/// requires the token `fuzz-token`.
pub fn control_routers() -> (
    calloutd_server::ControlRouter,
    calloutd_server::ControlRouter,
) {
    use calloutd_server::{ControlRouter, Server, ServerConfig};
    let config = ServerConfig {
        listen: vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)],
        workers: 1,
        ..ServerConfig::default()
    };
    let server = Server::start(config, Arc::new(Silent), Arc::new(calloutd_engine::NoHooks))
        .unwrap_or_else(|e| panic!("a runtime on loopback: {e}"));
    let handle = server.handle();
    // The runtime lives as long as the fuzzing process, kept where the leak checker sees it.
    static SERVER: OnceLock<Server> = OnceLock::new();
    let _ = SERVER.set(server);
    let backend: Arc<dyn calloutd_server::ControlBackend> = Arc::new(LabBackend);
    (
        ControlRouter::new(handle.clone(), Arc::clone(&backend), None),
        ControlRouter::new(handle, backend, Some("fuzz-token".into())),
    )
}

/// Answers no datagram.
struct Silent;

impl PacketHandler for Silent {
    fn handle(&self, _: Datagram, _: Admission) -> calloutd_engine::Outcome {
        calloutd_engine::Outcome::default()
    }
}

/// The lab's two scopes, no leases, no callout.
struct LabBackend;

impl calloutd_server::ControlBackend for LabBackend {
    fn leases(&self, scope: Option<Ipv4Addr>) -> Result<Vec<calloutd_server::LeaseView>, String> {
        match scope {
            Some(ip)
                if ![Ipv4Addr::new(198, 18, 0, 0), Ipv4Addr::new(198, 18, 1, 0)].contains(&ip) =>
            {
                Err(format!("no scope {ip}"))
            }
            _ => Ok(Vec::new()),
        }
    }

    fn delete_lease(&self, _: Ipv4Addr) -> Result<Option<calloutd_server::LeaseView>, String> {
        Ok(None)
    }

    fn hooks(&self) -> Vec<calloutd_server::HookView> {
        Vec::new()
    }

    fn scopes(&self) -> Vec<calloutd_server::ScopeView> {
        Vec::new()
    }

    fn engine_counters(&self) -> std::collections::BTreeMap<String, u64> {
        std::collections::BTreeMap::new()
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "scopes": calloutd_fuzz::LAB_SCOPES })
    }
}
