//! calloutd against real DHCP clients nobody here wrote (issue 6, item 3): ISC `dhclient`, busybox
//! `udhcpc` and `dhcpcd`. Each test joins two network namespaces with a veth pair (198.18.4.0/24,
//! the server at 198.18.4.1), runs `calloutd serve --interface` on one side with the trace callout
//! loaded, and on the other side gets a lease with the client, then releases it. It checks the lease
//! the client reported to its hook script, the address on the client's interface, and the hook
//! sequence in the server's trace and the trace callout's log. Variants renew the lease by unicast
//! (udhcpc and dhcpcd on SIGUSR1) or ask for it again in INIT-REBOOT (dhclient restarted after its
//! daemon was killed) before the release.
//!
//! The server runs one worker, so the whole server trace has one exact order: Control START, the
//! DISCOVER (NewPkt, HandleOptions, PktSend, PktDrop PROCESSED), the REQUEST (... AddressOffer NEW
//! under the lease lock ...), any renewals (AddressOffer OLD), the RELEASE (AddressDel RELEASE),
//! Control STOP after SIGTERM.
//!
//! Nothing outside the test's temp dir and namespaces is touched: every client runs with a hook
//! script of the test's own (it records its environment and configures only the namespaced
//! interface, never /etc/resolv.conf), and its lease, pid and config files are in the temp dir.
//! dhcpcd has compiled-in /run/dhcpcd and /var/lib/dhcpcd, so it runs with temp dirs bind-mounted
//! over /run and /var/lib inside the private mount namespace `ip netns exec` gives it.
//!
//! Tests skip (with a printed reason) when not root, and when a client is missing and cannot be
//! installed with apt-get; with `CI` or `CALLOUTD_REQUIRE_REAL_CLIENTS` set, a missing client fails.

// Unix only: starts the Linux calloutd with .so fixture callouts, mostly inside network namespaces.
#![cfg(unix)]

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use support::*;

const SERVER_IP: &str = "198.18.4.1";
const SCOPES: &str = "fixtures/scenarios/real-clients-scope.txt";
/// The pool of the scope file.
const POOL: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(198, 18, 4, 100),
    Ipv4Addr::new(198, 18, 4, 150),
);
const ROUTER: &str = "198.18.4.1";
const DNS: &str = "198.18.4.53 198.18.4.54";
const DOMAIN: &str = "realclients.test";
const LEASE: u64 = 3600;
const SCOPE: &str = "198.18.4.0";

/// How long a client may take to get its lease or release it.
const CLIENT_LIMIT: Duration = Duration::from_secs(20);

// ---- Finding (or installing) the clients ----

/// The program's path in PATH or the sbin directories (a test runner's PATH may lack them).
fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        });
    found
}

/// True when a missing client must fail the test rather than skip it.
fn clients_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("CALLOUTD_REQUIRE_REAL_CLIENTS").is_some()
}

/// The client program, installing its Debian package when it is missing (we are root here).
/// `None` (with a printed reason) when it cannot be had.
fn client_program(test: &str, program: &str, package: &str) -> Option<PathBuf> {
    // One apt-get at a time: the tests run in parallel and apt holds a lock.
    static INSTALL: Mutex<()> = Mutex::new(());
    if let Some(p) = find_program(program) {
        return Some(p);
    }
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = find_program(program) {
        return Some(p);
    }
    eprintln!("{test}: {program} not found; installing the Debian package {package}");
    let mut why = String::new();
    if find_program("apt-get").is_some() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("apt.log");
        let apt = |args: &[&str]| {
            let mut cmd = Command::new("apt-get");
            cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            matches!(run_logged(cmd, &log, Duration::from_secs(300)), Ok(s) if s.success())
        };
        let install = ["install", "-y", "-qq", "--no-install-recommends", package];
        // Install from the current lists; when that fails, refresh them and try again.
        let installed = apt(&install) || (apt(&["update", "-qq"]) && apt(&install));
        if !installed {
            why = fs::read_to_string(&log).unwrap_or_default();
        }
    } else {
        why = "no apt-get".into();
    }
    match find_program(program) {
        Some(p) => Some(p),
        None if clients_required() => {
            panic!("{test}: {program} (package {package}) is missing and could not be installed: {why}")
        }
        None => {
            eprintln!(
                "{test}: skipped: {program} (Debian package {package}) is missing and could not be \
                 installed: {}",
                why.trim()
            );
            None
        }
    }
}

// ---- Processes ----

/// Waits (bounded) for a client running in the foreground to exit on its own.
fn wait_exit(client: &mut LoggedChild) -> ExitStatus {
    client
        .wait_exit(CLIENT_LIMIT)
        .unwrap_or_else(|e| panic!("client: {e}:\n{}", client.log_text()))
}

/// Sends `signal` to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// True while a process `pid` runs (a zombie waiting for its parent to reap it does not).
fn alive(pid: u32) -> bool {
    // /proc/PID/stat is "pid (comm) STATE ...", and comm may contain spaces or parentheses.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

// ---- Hook scripts ----

/// One call of a client's hook script: the reason (dhclient, dhcpcd: `$reason`; udhcpc: `$1`) and
/// the environment it got.
#[derive(Debug, Clone)]
struct HookCall {
    event: String,
    env: BTreeMap<String, String>,
}

impl HookCall {
    fn var(&self, name: &str) -> &str {
        self.env
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("{} call without {name}: {:?}", self.event, self.env))
    }
}

/// Writes an executable hook script that records each call to `record` and then runs `action`
/// (shell code that may use the client's variables). It touches nothing but `record` and the
/// namespaced interface.
fn write_hook_script(path: &Path, record: &Path, client: &str, action: &str) {
    let text = format!(
        "#!/bin/sh\n\
         # Hook script of tests/real_clients.rs for {client}: records the call, then configures\n\
         # only the (namespaced) interface. Never touches /etc/resolv.conf or another host file.\n\
         PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
         {{ echo \"@@begin ${{reason:-$1}}\"; env; echo \"@@end\"; }} >> '{}'\n\
         {action}\n",
        record.display()
    );
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The complete calls in a hook script's record.
fn hook_calls(record: &Path) -> Vec<HookCall> {
    let text = fs::read_to_string(record).unwrap_or_default();
    let mut calls = Vec::new();
    let mut open: Option<HookCall> = None;
    for line in text.lines() {
        if let Some(event) = line.strip_prefix("@@begin ") {
            open = Some(HookCall {
                event: event.to_string(),
                env: BTreeMap::new(),
            });
        } else if line == "@@end" {
            calls.extend(open.take());
        } else if let (Some(call), Some((k, v))) = (open.as_mut(), line.split_once('=')) {
            call.env.insert(k.to_string(), v.to_string());
        }
    }
    calls
}

/// Waits for the hook script's first call with one of `events` after the first `skip` calls.
fn wait_hook(record: &Path, events: &[&str], skip: usize, log: impl Fn() -> String) -> HookCall {
    wait_until(
        CLIENT_LIMIT,
        &format!("hook script call {events:?}"),
        || {
            format!(
                "client log:\n{}\nhook calls: {:?}",
                log(),
                hook_calls(record)
            )
        },
        || {
            hook_calls(record)
                .into_iter()
                .skip(skip)
                .find(|c| events.contains(&c.event.as_str()))
        },
    )
}

// ---- The segment: server namespace, client namespace, veth pair ----

/// The segment of these tests: the client's interface with `mac`, the server on 198.18.4.1/24 with
/// one worker, so each packet's hooks finish before the next packet's start and the whole trace has
/// one exact order.
fn segment(tag: &str, mac: &str) -> Segment {
    Segment::start(tag, &format!("{SERVER_IP}/24"), SCOPES, "1", Some(mac))
}

/// The client MAC of variant `variant` of client `n` (each test has its own).
fn client_mac(n: u8, variant: bool) -> String {
    format!("02:00:00:00:04:{}{n}", u8::from(variant))
}

/// A real client: its program, its Debian package, its number in the test MACs, and what its hook
/// script does after recording the call (shell code that may use the client's variables).
struct RealClient {
    program: &'static str,
    package: &'static str,
    n: u8,
    name: &'static str,
    hook_action: &'static str,
}

const DHCLIENT: RealClient = RealClient {
    program: "dhclient",
    package: "isc-dhcp-client",
    n: 1,
    name: "ISC dhclient",
    hook_action: r#"case "$reason" in
PREINIT) ip link set dev "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT) ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
RELEASE|EXPIRE|FAIL|STOP) [ -z "$old_ip_address" ] || ip -4 addr del "$old_ip_address/$old_subnet_mask" dev "$interface" ;;
esac"#,
};
const UDHCPC: RealClient = RealClient {
    program: "udhcpc",
    package: "udhcpc",
    n: 2,
    name: "busybox udhcpc",
    hook_action: r#"case "$1" in
deconfig) ip -4 addr flush dev "$interface" ;;
bound|renew) ip -4 addr replace "$ip/$mask" dev "$interface" ;;
esac"#,
};
const DHCPCD: RealClient = RealClient {
    program: "dhcpcd",
    package: "dhcpcd-base",
    n: 3,
    name: "dhcpcd",
    // dhcpcd configures the address itself; the script (which replaces dhcpcd-run-hooks and so all
    // of its hooks, resolv.conf among them) only records.
    hook_action: ":",
};

/// What the running test starts from, as (client program, client MAC, segment with the server
/// running, hook script's record, hook script): the MAC is variant `variant` of the client's, the
/// hook script `<program>-script` in the segment's dir. `None` (the test skips, with a printed
/// reason) when not root or the client is missing and cannot be installed.
fn setup(
    tag: &str,
    client: RealClient,
    variant: bool,
) -> Option<(PathBuf, String, Segment, PathBuf, PathBuf)> {
    let test = current_test();
    if !have_root(&test) {
        return None;
    }
    let program = client_program(&test, client.program, client.package)?;
    let mac = client_mac(client.n, variant);
    let seg = segment(tag, &mac);
    let record = seg.path("hook-calls.txt");
    let script = seg.path(&format!("{}-script", client.program));
    write_hook_script(&script, &record, client.name, client.hook_action);
    Some((program, mac, seg, record, script))
}

// Methods of the shared segment that only these tests use.
impl Segment {
    /// The IPv4 addresses on the client's interface, as `a.b.c.d/len`.
    fn client_addrs(&self) -> Vec<String> {
        let out = self
            .client_ns
            .ip(&["-4", "-o", "addr", "show", "dev", &self.client_if])
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "inet")?;
                words.next().map(str::to_string)
            })
            .collect()
    }

    /// Waits until the client's interface holds `ip/24` (`present`) or no longer holds `ip`.
    fn wait_addr(&self, ip: &str, present: bool) {
        let want = format!("{ip}/24");
        wait_until(
            CLIENT_LIMIT,
            &format!("address {want} present={present} on the client's interface"),
            || format!("addresses: {:?}", self.client_addrs()),
            || {
                let addrs = self.client_addrs();
                let has = if present {
                    addrs.contains(&want)
                } else {
                    addrs.iter().any(|a| a.split('/').next() == Some(ip))
                };
                (has == present).then_some(())
            },
        );
    }

    /// Waits for the exchanges (DISCOVER, REQUEST, `renewals` renewing REQUESTs, RELEASE), stops
    /// the server with SIGTERM and checks both traces for the client `mac` that leased `ip`.
    fn stop_and_check(&mut self, mac: &str, ip: &str, renewals: usize) {
        let (log, trace) = self.stop_checked(3 + renewals);

        // The whole server trace, in order (one worker): START, DISCOVER, REQUEST, the renewals,
        // RELEASE, STOP.
        let sigs: Vec<String> = trace.iter().map(hook_signature).collect();
        let mut expected = sig(&["Control(0x1)"]);
        expected.extend(handled(&[PKT_SEND]));
        expected.extend(handled(&[OFFER_NEW, PKT_SEND]));
        for _ in 0..renewals {
            expected.extend(handled(&[OFFER_OLD, PKT_SEND]));
        }
        expected.extend(handled(&[DEL_RELEASE]));
        expected.push("Control(0x2)".to_string());
        assert_eq!(sigs, expected, "server trace:\n{trace:#?}");
        for offer in trace.iter().filter(|r| r["hook"] == "AddressOffer") {
            assert_eq!(offer["alt"], ip, "{offer}");
            assert_eq!(offer["locks"], serde_json::json!(["lease"]), "{offer}");
        }
        let del = trace.iter().find(|r| r["hook"] == "AddressDel").unwrap();
        assert_eq!(del["alt"], ip, "{del}");
        assert_eq!(del["locks"], serde_json::json!(["lease"]), "{del}");

        // Each packet as the callout saw it.
        let packets = callout_packets(&log, "trace");
        assert_eq!(packets.len(), 3 + renewals, "{packets:#?}");
        for p in &packets {
            check_packet(p, SERVER_IP);
            let opts = p.call("HandleOptions");
            assert_eq!(opts["hw_address"], mac, "{opts}");
            assert_eq!(opts["scope_id"], SCOPE, "{opts}");
        }
        let (discover, request) = (&packets[0], &packets[1]);
        let release = &packets[packets.len() - 1];
        check_discover(discover, mac, SCOPE);
        check_acked_request(request, GIVE_NEW, ip, LEASE);
        let req = request.call("HandleOptions");
        assert_eq!(
            request.xid, discover.xid,
            "the REQUEST answers the OFFER's xid"
        );
        assert_eq!(req["requested_address"], ip, "{req}");
        assert_eq!(req["server"], SERVER_IP, "{req}");
        for renew in &packets[2..packets.len() - 1] {
            check_acked_request(renew, GIVE_OLD, ip, LEASE);
            let opts = renew.call("HandleOptions");
            assert_eq!(
                opts["server"],
                Value::Null,
                "no server id when renewing: {opts}"
            );
        }
        check_release(release, ip);
    }
}

/// The address must lie in the scope's pool.
fn check_in_pool(ip: &str) -> Ipv4Addr {
    let addr: Ipv4Addr = ip
        .parse()
        .unwrap_or_else(|_| panic!("not an address: {ip:?}"));
    assert!(
        (POOL.0..=POOL.1).contains(&addr),
        "{addr} is outside the pool {}-{}",
        POOL.0,
        POOL.1
    );
    addr
}

/// Checks the `new_*` lease variables ISC-style clients (dhclient, dhcpcd) give their script;
/// returns the address.
fn check_isc_style_lease(call: &HookCall) -> String {
    let ip = call.var("new_ip_address").to_string();
    check_in_pool(&ip);
    assert_eq!(call.var("new_subnet_mask"), "255.255.255.0");
    assert_eq!(call.var("new_routers"), ROUTER);
    assert_eq!(call.var("new_domain_name_servers"), DNS);
    assert_eq!(call.var("new_domain_name"), DOMAIN);
    assert_eq!(call.var("new_dhcp_server_identifier"), SERVER_IP);
    assert_eq!(call.var("new_dhcp_lease_time"), LEASE.to_string());
    assert_eq!(call.var("new_dhcp_renewal_time"), (LEASE / 2).to_string());
    assert_eq!(
        call.var("new_dhcp_rebinding_time"),
        (LEASE * 7 / 8).to_string()
    );
    ip
}

// ---- The tests ----

#[test]
fn isc_dhclient_gets_and_releases_a_lease() {
    dhclient_lease("dh", false);
}

#[test]
fn isc_dhclient_reboots_with_its_lease_then_releases() {
    dhclient_lease("dr", true);
}

/// dhclient gets a lease; when `reboot`, its daemon is killed and the address removed (a crash),
/// and dhclient started again asks for its recorded lease in INIT-REBOOT (a broadcast REQUEST
/// without server id); then it releases the lease (`-r`).
fn dhclient_lease(tag: &str, reboot: bool) {
    let Some((dhclient, mac, mut seg, record, script)) = setup(tag, DHCLIENT, reboot) else {
        return;
    };
    let conf = seg.path("dhclient.conf");
    fs::write(
        &conf,
        "# dhclient.conf of tests/real_clients.rs\n\
         request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers;\n\
         timeout 15;\n",
    )
    .unwrap();
    let pid_file = seg.path("dhclient.pid");
    let log = seg.path("dhclient.log");
    let common: Vec<String> = [
        "-4",
        "-v",
        "-sf",
        script.to_str().unwrap(),
        "-lf",
        seg.path("dhclient.leases").to_str().unwrap(),
        "-pf",
        pid_file.to_str().unwrap(),
        "-cf",
        conf.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // `dhclient COMMON ACTION IF` in the client namespace (bounded), output appended to its log.
    let run_dhclient = |action: &str| {
        let mut cmd = seg.client_ns.command(&dhclient);
        cmd.args(&common).args([action, &seg.client_if]);
        run_logged(cmd, &log, CLIENT_LIMIT).unwrap()
    };

    // `-1`: one try; dhclient returns once bound and leaves a daemon (killed by `-r` below, or
    // with the namespace).
    let status = run_dhclient("-1");
    let dh_log = || fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "dhclient -1: {status}\n{}\nserver log:\n{}",
        dh_log(),
        seg.server_log()
    );
    let bound = wait_hook(&record, &["BOUND"], 0, dh_log);
    let ip = check_isc_style_lease(&bound);
    assert_eq!(bound.var("interface"), seg.client_if);
    seg.wait_addr(&ip, true);
    let read_pid = || -> u32 {
        fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let mut daemon = read_pid();
    assert!(alive(daemon), "dhclient daemon {daemon} runs");

    if reboot {
        // The machine "crashes": the daemon dies without a word and the address goes. (Not `-x`:
        // dhclient 4.4 -x also runs state_reboot, sending an INIT-REBOOT REQUEST before exiting.)
        signal(daemon, "KILL");
        wait_until(
            Duration::from_secs(5),
            "dhclient daemon exit",
            dh_log,
            || (!alive(daemon)).then_some(()),
        );
        seg.client_ns
            .ip(&["-4", "addr", "flush", "dev", &seg.client_if])
            .unwrap();
        seg.wait_addr(&ip, false);

        // Started again, it finds the lease in its lease file: INIT-REBOOT.
        let calls_before = hook_calls(&record).len();
        let status = run_dhclient("-1");
        assert!(
            status.success(),
            "dhclient -1 again: {status}\n{}",
            dh_log()
        );
        let rebooted = wait_hook(&record, &["REBOOT"], calls_before, dh_log);
        assert_eq!(check_isc_style_lease(&rebooted), ip);
        assert!(
            dh_log().contains(&format!(
                "DHCPREQUEST for {ip} on {} to 255.255.255.255",
                seg.client_if
            )),
            "{}",
            dh_log()
        );
        seg.wait_addr(&ip, true);
        daemon = read_pid();
        assert!(alive(daemon), "dhclient daemon {daemon} runs");
    }

    // `-r`: kills the daemon by its pid file and sends DHCPRELEASE (unicast to the server).
    let calls_before = hook_calls(&record).len();
    let status = run_dhclient("-r");
    assert!(status.success(), "dhclient -r: {status}\n{}", dh_log());
    let released = wait_hook(&record, &["RELEASE"], calls_before, dh_log);
    assert_eq!(released.var("old_ip_address"), ip);
    assert!(
        dh_log().contains(&format!(
            "DHCPRELEASE of {ip} on {} to {SERVER_IP}",
            seg.client_if
        )),
        "{}",
        dh_log()
    );
    seg.wait_addr(&ip, false);
    wait_until(
        Duration::from_secs(5),
        "dhclient daemon exit",
        dh_log,
        || (!alive(daemon)).then_some(()),
    );
    seg.stop_and_check(&mac, &ip, usize::from(reboot));
}

#[test]
fn busybox_udhcpc_gets_and_releases_a_lease() {
    udhcpc_lease("ud", false);
}

#[test]
fn busybox_udhcpc_renews_by_unicast_then_releases() {
    udhcpc_lease("ur", true);
}

/// udhcpc gets a lease, renews it when `renew` (SIGUSR1: a unicast REQUEST from the leased
/// address, RENEWING), and releases it on SIGTERM.
fn udhcpc_lease(tag: &str, renew: bool) {
    let Some((udhcpc, mac, mut seg, record, script)) = setup(tag, UDHCPC, renew) else {
        return;
    };
    // Foreground (-f), fail if no lease (-n) after 5 one-second tries, release on exit (-R).
    let mut cmd = seg.client_ns.command(&udhcpc);
    cmd.args(["-i", &seg.client_if, "-s", script.to_str().unwrap()])
        .args(["-f", "-n", "-R", "-t", "5", "-T", "1"]);
    let mut client = LoggedChild::spawn(cmd, seg.path("udhcpc.log")).unwrap();
    let bound = wait_hook(&record, &["bound"], 0, || client.log_text());
    assert!(client.exited().unwrap().is_none(), "{}", client.log_text());
    let ip = bound.var("ip").to_string();
    check_in_pool(&ip);
    assert_eq!(bound.var("subnet"), "255.255.255.0");
    assert_eq!(bound.var("mask"), "24");
    assert_eq!(bound.var("router"), ROUTER);
    assert_eq!(bound.var("dns"), DNS);
    assert_eq!(bound.var("domain"), DOMAIN);
    assert_eq!(bound.var("serverid"), SERVER_IP);
    assert_eq!(bound.var("lease"), LEASE.to_string());
    assert_eq!(bound.var("interface"), seg.client_if);
    seg.wait_addr(&ip, true);

    if renew {
        let calls_before = hook_calls(&record).len();
        signal(client.pid(), "USR1");
        let renewed = wait_hook(&record, &["renew"], calls_before, || client.log_text());
        assert_eq!(renewed.var("ip"), ip);
        assert_eq!(renewed.var("serverid"), SERVER_IP);
        assert_eq!(renewed.var("lease"), LEASE.to_string());
        // "sending renew to server" is udhcpc's unicast REQUEST from the leased address (RENEWING),
        // answered by a unicast ACK to that address.
        let text = client.log_text();
        assert_eq!(
            text.matches(&format!("sending renew to server {SERVER_IP}"))
                .count(),
            1,
            "{text}"
        );
        assert_eq!(
            text.matches(&format!("lease of {ip} obtained from {SERVER_IP}"))
                .count(),
            2,
            "{text}"
        );
        seg.wait_addr(&ip, true);
    }

    // SIGTERM with -R: udhcpc unicasts a DHCPRELEASE, deconfigures and exits.
    let calls_before = hook_calls(&record).len();
    signal(client.pid(), "TERM");
    let status = wait_exit(&mut client);
    let text = client.log_text();
    assert!(status.success(), "udhcpc exit {status}:\n{text}");
    assert!(
        text.contains(&format!("unicasting a release of {ip} to {SERVER_IP}")),
        "{text}"
    );
    wait_hook(&record, &["deconfig"], calls_before, || client.log_text());
    seg.wait_addr(&ip, false);
    // udhcpc 1.35 sends the unicast renew before it reopens its listening UDP socket (that happens
    // at the top of its main loop), so an ACK quicker than that meets no socket (the client
    // namespace's UdpNoPorts counts it) and udhcpc falls back to a broadcast REQUEST after -T
    // seconds ("broadcasting renew"), which the server acknowledges as well: count what it sent.
    let renewals = if renew {
        1 + text.matches("broadcasting renew").count()
    } else {
        0
    };
    seg.stop_and_check(&mac, &ip, renewals);
}

/// `dhcpcd ARGS` in the client namespace with the segment's temp dirs over /run and /var/lib
/// (dhcpcd's compiled-in run and database directories; `ip netns exec` runs it in a private mount
/// namespace whose mounts do not propagate to the host, and `mount -n` writes no utab).
fn dhcpcd_command(seg: &Segment, dhcpcd: &Path, args: &[&str]) -> Command {
    let mut cmd = seg.client_ns.command(Path::new("/bin/sh"));
    cmd.args([
        "-c",
        r#"mount -n --bind "$1" /run && mount -n --bind "$2" /var/lib && shift 2 && exec "$@""#,
        "sh",
    ])
    .arg(seg.path("run"))
    .arg(seg.path("var-lib"))
    .arg(dhcpcd)
    .args(args);
    cmd
}

#[test]
fn dhcpcd_gets_and_releases_a_lease() {
    dhcpcd_lease("dc", false);
}

#[test]
fn dhcpcd_renews_by_unicast_then_releases() {
    dhcpcd_lease("dn", true);
}

/// dhcpcd gets a lease, renews it when `renew` (SIGUSR1: a unicast REQUEST from the leased
/// address), and releases it with `dhcpcd -k`.
fn dhcpcd_lease(tag: &str, renew: bool) {
    let Some((dhcpcd, mac, mut seg, record, script)) = setup(tag, DHCPCD, renew) else {
        return;
    };
    fs::create_dir_all(seg.path("run/dhcpcd")).unwrap();
    fs::create_dir_all(seg.path("var-lib/dhcpcd")).unwrap();
    let conf = seg.path("dhcpcd.conf");
    fs::write(
        &conf,
        "# dhcpcd.conf of tests/real_clients.rs: IPv4 only, no ARP probe, no start delay, the MAC\n\
         # as client id, no udev\n\
         ipv4only\nnoarp\nnodelay\nnoipv4ll\nnodev\nclientid\n\
         option subnet_mask, routers, domain_name_servers, domain_name\n",
    )
    .unwrap();
    let conf_s = conf.to_str().unwrap();
    let script_s = script.to_str().unwrap();
    // Foreground (-B), IPv4 (-4), no ARP (-A), give up after 15 s (-t).
    let cmd = dhcpcd_command(
        &seg,
        &dhcpcd,
        &[
            "-B",
            "-4",
            "-A",
            "-f",
            conf_s,
            "-c",
            script_s,
            "-t",
            "15",
            &seg.client_if,
        ],
    );
    let mut client = LoggedChild::spawn(cmd, seg.path("dhcpcd.log")).unwrap();
    let bound = wait_hook(&record, &["BOUND"], 0, || client.log_text());
    assert!(client.exited().unwrap().is_none(), "{}", client.log_text());
    let ip = check_isc_style_lease(&bound);
    assert_eq!(bound.var("interface"), seg.client_if);
    assert_eq!(bound.var("new_subnet_cidr"), "24");
    seg.wait_addr(&ip, true);
    // Its files went to the temp dirs, not the host's.
    let lease_file = format!("dhcpcd/{}.lease", seg.client_if);
    assert!(seg.path("var-lib").join(&lease_file).exists());
    assert!(!Path::new("/var/lib").join(&lease_file).exists());
    assert!(!Path::new("/run/dhcpcd")
        .join(format!("{}-4.pid", seg.client_if))
        .exists());

    if renew {
        let calls_before = hook_calls(&record).len();
        signal(client.pid(), "USR1");
        let renewed = wait_hook(&record, &["RENEW"], calls_before, || client.log_text());
        assert_eq!(check_isc_style_lease(&renewed), ip);
        seg.wait_addr(&ip, true);
    }

    // `-k`: the running dhcpcd releases the lease, deconfigures and, with no interface left, exits.
    let calls_before = hook_calls(&record).len();
    let release = dhcpcd_command(&seg, &dhcpcd, &["-4", "-f", conf_s, "-k", &seg.client_if]);
    let status = run_logged(release, &seg.path("dhcpcd-k.log"), CLIENT_LIMIT).unwrap();
    assert!(
        status.success(),
        "dhcpcd -k: {status}\n{}",
        fs::read_to_string(seg.path("dhcpcd-k.log")).unwrap_or_default()
    );
    let status = wait_exit(&mut client);
    let text = client.log_text();
    assert!(status.success(), "dhcpcd exit {status}:\n{text}");
    assert!(text.contains(&format!("releasing lease of {ip}")), "{text}");
    let stopped = wait_hook(&record, &["RELEASE", "STOP"], calls_before, || {
        client.log_text()
    });
    assert_eq!(stopped.var("old_ip_address"), ip);
    seg.wait_addr(&ip, false);
    seg.stop_and_check(&mac, &ip, usize::from(renew));
}
