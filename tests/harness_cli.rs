//! `calloutd test`, `calloutd replay` and `calloutd demo`: the real binary, the real compiled test
//! callouts, the shipped scenarios, and captures written here with pcap-file and etherparse.

// Unix only: starts the Linux calloutd with .so fixture callouts, mostly inside network namespaces.
#![cfg(unix)]

mod support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use calloutd_client::{encode_request, Identity, MessageType, Outgoing};
use support::{calloutd_bin, command_run, fixture, run_bounded, CommandRun};

const SCENARIOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/scenarios");

/// The folder of the built test callouts.
fn callouts() -> PathBuf {
    fixture("trace")
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs `calloutd ARGS`, bounded by two minutes.
fn calloutd(args: &[&str]) -> CommandRun {
    let mut cmd = Command::new(calloutd_bin());
    cmd.args(args);
    command_run(run_bounded(cmd, Duration::from_secs(120)))
}

fn shipped_scenarios() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(SCENARIOS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    found.sort();
    found
}

#[test]
fn every_shipped_scenario_passes_and_together_they_cover_every_hook_and_drop_reason() {
    let dir = tempfile::tempdir().unwrap();
    let scenarios = shipped_scenarios();
    assert!(scenarios.len() >= 8, "{scenarios:?}");
    let callouts = callouts();
    let mut all_trace = String::new();
    for scenario in &scenarios {
        let trace = dir.path().join("trace.jsonl");
        let junit = dir.path().join("junit.xml");
        let run = calloutd(&[
            "test",
            "--callouts",
            callouts.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
            scenario.to_str().unwrap(),
        ]);
        assert_eq!(
            run.code,
            0,
            "{}:\n{}{}",
            scenario.display(),
            run.stdout,
            run.stderr
        );
        assert!(
            run.stdout.contains("1 passed, 0 failed, 0 invalid"),
            "{}",
            run.stdout
        );
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert_eq!(xml.matches("<testcase ").count(), 1, "{xml}");
        assert!(!xml.contains("<failure"), "{xml}");
        all_trace.push_str(&std::fs::read_to_string(&trace).unwrap());
    }
    // Coverage, from the --trace files: every hook was called, and every drop reason calloutd
    // produces reached PktDrop.
    let records: Vec<calloutd_callout::TraceRecord> = all_trace
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for hook in calloutd_callout::HookName::ALL {
        assert!(
            records.iter().any(|r| r.hook == hook),
            "{hook} never called"
        );
    }
    use dhcpssdk::DropReason::*;
    for reason in [
        Duplicate,
        NoMem,
        InternalError,
        Timeout,
        Unauth,
        Paused,
        NoSubnets,
        Invalid,
        WrongServer,
        NoAddress,
        Processed,
    ] {
        assert!(
            records
                .iter()
                .any(|r| r.hook == calloutd_callout::HookName::PktDrop
                    && r.code == Some(reason.code())),
            "{reason} never reached PktDrop"
        );
    }
    for kind in [
        "slow-hook",
        "wrote-past-buffer",
        "bad-size",
        "wrote-read-only-packet",
        "leaked-context",
        "crash",
        "hang",
    ] {
        assert!(
            all_trace.contains(&format!("\"kind\":\"{kind}\"")),
            "{kind} never reported"
        );
    }
}

/// Whether a shipped scenario makes its callout crash or hang on purpose (run isolated only).
fn isolated_only(scenario: &Path) -> bool {
    std::fs::read_to_string(scenario)
        .unwrap()
        .lines()
        .any(|l| l.trim() == "isolated_only = true")
}

/// What must be the same in both modes about one hook call: all but the thread, the timing and
/// the sequence number, and slow-hook reports, which depend on timing (a busy machine, a first
/// call resolving the DLL's symbols); faulty-slow.toml expects its slow hook in both modes.
fn call_fields(record: &calloutd_callout::TraceRecord) -> String {
    let misbehaviour: Vec<String> = record
        .misbehaviour
        .iter()
        .filter(|m| m.kind != calloutd_callout::MisbehaviourKind::SlowHook)
        .map(|m| format!("{} {} {:?} {:?}", m.kind, m.hook, m.xid, m.chaddr))
        .collect();
    format!(
        "{} {:?} {:?} {:?} {:?} {:?} ret {} fault {:?} {misbehaviour:?}",
        record.hook,
        record.code,
        record.ip,
        record.alt,
        record.xid,
        record.locks.names(),
        record.ret,
        record.fault,
    )
}

fn trace_calls(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| call_fields(&serde_json::from_str(l).unwrap()))
        .collect()
}

#[test]
fn shipped_scenarios_pass_in_process_with_the_hook_calls_of_isolated_mode() {
    let dir = tempfile::tempdir().unwrap();
    let callouts = callouts();
    let all = shipped_scenarios();
    let both: Vec<&PathBuf> = all.iter().filter(|p| !isolated_only(p)).collect();
    let skipped = all.len() - both.len();
    assert!(
        skipped >= 2,
        "the crash and hang scenarios are isolated only"
    );
    // In-process, all of them in one run: the isolated-only ones are skipped, not failed.
    let in_process_trace = dir.path().join("in-process.jsonl");
    let junit = dir.path().join("junit.xml");
    let mut args = vec![
        "test".to_string(),
        "--in-process".into(),
        "--callouts".into(),
        callouts.display().to_string(),
        "--trace".into(),
        in_process_trace.display().to_string(),
        "--junit".into(),
        junit.display().to_string(),
    ];
    args.extend(all.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = calloutd(&argv);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "{} passed, 0 failed, 0 invalid, {skipped} skipped",
            both.len()
        )),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.matches("(in-process)").count(), both.len());
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<skipped message=").count(), skipped, "{xml}");
    // Isolated (the default), the same scenarios: the same hook calls, field for field.
    let isolated_trace = dir.path().join("isolated.jsonl");
    let mut args = vec![
        "test".to_string(),
        "--callouts".into(),
        callouts.display().to_string(),
        "--trace".into(),
        isolated_trace.display().to_string(),
    ];
    args.extend(both.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = calloutd(&argv);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.matches("(isolated)").count(), both.len());
    let in_process = trace_calls(&in_process_trace);
    let isolated = trace_calls(&isolated_trace);
    assert!(in_process.len() > 100, "{}", in_process.len());
    for (i, (a, b)) in in_process.iter().zip(&isolated).enumerate() {
        assert_eq!(a, b, "hook call {} differs", i + 1);
    }
    assert_eq!(in_process.len(), isolated.len());
}

#[test]
fn an_unexpected_crash_fails_its_step_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.toml");
    let text = std::fs::read_to_string(Path::new(SCENARIOS).join("faulty-crash.toml"))
        .unwrap()
        .replace("misbehaviour = [\"crash\"], ", "")
        .replace("faulty.reg", &format!("{SCENARIOS}/faulty.reg"))
        .replace("dora.txt", &format!("{SCENARIOS}/dora.txt"));
    assert!(!text.contains("\"crash\""));
    std::fs::write(&path, text).unwrap();
    let junit = dir.path().join("junit.xml");
    let next = Path::new(SCENARIOS).join("dora-trace.toml");
    let run = calloutd(&[
        "test",
        "--callouts",
        callouts().to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        path.to_str().unwrap(),
        next.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let out = &run.stdout;
    assert!(
        out.contains("unexpected misbehaviour: crash in AddressOffer (xid 0x"),
        "{out}"
    );
    assert!(out.contains("chaddr 02:00:00:00:0d:02"), "{out}");
    assert!(out.contains("SIGSEGV"), "{out}");
    // The failing step, then the restarted host serving the other client, then the next scenario.
    assert!(out.contains("FAIL   4 line"), "{out}");
    assert!(out.contains("ok     5 line"), "{out}");
    assert!(
        out.contains("scenario DHCP message kinds and hook order (trace)"),
        "{out}"
    );
    assert!(out.contains("1 passed, 1 failed, 0 invalid"), "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(
        xml.matches("<failure message=\"step 4 (").count(),
        1,
        "{xml}"
    );
}

#[test]
fn a_crash_in_control_start_fails_the_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("start.toml");
    let text = format!(
        "reg = \"{SCENARIOS}/faulty.reg\"\nscopes = \"{SCENARIOS}/dora.txt\"\n\
         [env]\nCALLOUT_FAULTY_CRASH_HOOK = \"Control\"\nCALLOUT_FAULTY_CODE = \"1\"\n\
         [clients.pc]\nmac = \"02:00:00:00:0f:01\"\n\
         [[step]]\nclient = \"pc\"\nsend = \"discover\"\n"
    );
    std::fs::write(&path, text).unwrap();
    let run = calloutd(&[
        "test",
        "--callouts",
        callouts().to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("FAIL at Control START: unexpected misbehaviour: crash in Control"),
        "{}",
        run.stdout
    );
}

/// Writes a scenario with `steps` over the shipped trace .reg and scope file into `dir`.
fn scenario_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let text = format!(
        "reg = \"{SCENARIOS}/trace.reg\"\nscopes = \"{SCENARIOS}/dora.txt\"\n[clients.pc]\nmac = \"02:00:00:00:00:01\"\n{body}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_failed_expectation_exits_1_and_shows_expected_and_got() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario_file(
        dir.path(),
        "fails.toml",
        "[[step]]\nclient = \"pc\"\nsend = \"discover\"\nexpect = { reply = \"ack\" }\n",
    );
    let junit = dir.path().join("j.xml");
    let run = calloutd(&[
        "test",
        "--callouts",
        callouts().to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("expected reply: ACK"), "{}", run.stdout);
    assert!(
        run.stdout.contains("got:            OFFER 198.18.0.10"),
        "{}",
        run.stdout
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<failure message=\"step 1 ("), "{xml}");
}

#[test]
fn unexpected_misbehaviour_fails_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("leak.toml");
    let text = std::fs::read_to_string(Path::new(SCENARIOS).join("faulty-leak.toml"))
        .unwrap()
        .replace("misbehaviour = [\"leaked-context\"], ", "")
        .replace("faulty.reg", &format!("{SCENARIOS}/faulty.reg"))
        .replace("dora.txt", &format!("{SCENARIOS}/dora.txt"));
    std::fs::write(&path, text).unwrap();
    let run = calloutd(&[
        "test",
        "--callouts",
        callouts().to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("unexpected misbehaviour: leaked-context in NewPkt (xid 0x"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("chaddr 02:00:00:00:0c:01"),
        "{}",
        run.stdout
    );
}

#[test]
fn an_invalid_scenario_exits_2_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario_file(
        dir.path(),
        "bad.toml",
        "[[step]]\nclient = \"nobody\"\nsend = \"discover\"\n",
    );
    let run = calloutd(&["test", path.to_str().unwrap()]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains(&format!("{}:6: no client \"nobody\"", path.display())),
        "{}",
        run.stdout
    );
}

#[test]
fn the_demo_runs_without_arguments_and_shows_the_timeline() {
    let run = calloutd(&["demo"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    for needle in [
        "Control(START)",
        "AddressOffer(NEW)",
        "lock: lease",
        "AddressDel(RELEASE)",
        "dropped by the callout",
        "calloutd replay",
    ] {
        assert!(
            run.stdout.contains(needle),
            "{needle} missing:\n{}",
            run.stdout
        );
    }
}

// ---- replay ----

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0x0e, 1];

fn dhcp(
    kind: Option<MessageType>,
    xid: u32,
    requested: Option<Ipv4Addr>,
    giaddr: Ipv4Addr,
) -> Vec<u8> {
    let identity = Identity {
        mac: CLIENT_MAC,
        ..Identity::default()
    };
    let out = Outgoing {
        kind,
        xid,
        ciaddr: Ipv4Addr::UNSPECIFIED,
        giaddr,
        hops: u8::from(!giaddr.is_unspecified()),
        broadcast_flag: false,
        requested_ip: requested,
        server_id: requested.map(|_| Ipv4Addr::new(198, 18, 0, 1)),
        magic_cookie: true,
    };
    encode_request(&identity, &out).unwrap()
}

/// An IPv4/UDP packet (no link layer) from `src:sport` to `dst:dport` carrying `payload`.
fn ip_udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    etherparse::PacketBuilder::ipv4(src.octets(), dst.octets(), 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn ethernet(ip: Vec<u8>) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend(ip);
    frame
}

/// A Linux cooked (SLL) header: packet type, ARPHRD_ETHER, address, protocol IPv4.
fn linux_sll(ip: Vec<u8>) -> Vec<u8> {
    let mut frame = vec![0, 0, 0, 1, 0, 6];
    frame.extend_from_slice(&CLIENT_MAC);
    frame.extend_from_slice(&[0, 0, 0x08, 0x00]);
    frame.extend(ip);
    frame
}

/// The frames of a DORA (broadcast), the server's OFFER in between, a relayed DISCOVER, an ARP
/// frame and a BOOTP request, as IP packets.
fn exchange() -> Vec<Vec<u8>> {
    let any = Ipv4Addr::UNSPECIFIED;
    let bcast = Ipv4Addr::BROADCAST;
    let server = Ipv4Addr::new(198, 18, 0, 1);
    let relay = Ipv4Addr::new(198, 18, 0, 254);
    vec![
        ip_udp(
            any,
            68,
            bcast,
            67,
            &dhcp(Some(MessageType::Discover), 0x11, None, any),
        ),
        ip_udp(server, 67, bcast, 68, &{
            let mut offer = dhcp(Some(MessageType::Offer), 0x11, None, any);
            offer[0] = 2;
            offer
        }),
        ip_udp(
            any,
            68,
            bcast,
            67,
            &dhcp(
                Some(MessageType::Request),
                0x12,
                Some(Ipv4Addr::new(198, 18, 0, 10)),
                any,
            ),
        ),
        ip_udp(
            relay,
            67,
            server,
            67,
            &dhcp(Some(MessageType::Discover), 0x13, None, relay),
        ),
        ip_udp(any, 68, bcast, 67, &dhcp(None, 0x14, None, any)),
    ]
}

fn write_pcap(path: &Path, link: pcap_file::DataLink, frames: &[Vec<u8>]) {
    let header = pcap_file::pcap::PcapHeader {
        datalink: link,
        ..Default::default()
    };
    let file = std::fs::File::create(path).unwrap();
    let mut writer = pcap_file::pcap::PcapWriter::with_header(file, header).unwrap();
    for (i, frame) in frames.iter().enumerate() {
        let ts = Duration::from_secs(1_700_000_000 + i as u64);
        writer
            .write_packet(&pcap_file::pcap::PcapPacket::new(
                ts,
                frame.len() as u32,
                frame,
            ))
            .unwrap();
    }
}

fn write_pcapng(path: &Path, frames: &[Vec<u8>]) {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::{Block, PcapNgWriter};
    let file = std::fs::File::create(path).unwrap();
    let mut writer = PcapNgWriter::new(file).unwrap();
    writer
        .write_block(&Block::InterfaceDescription(InterfaceDescriptionBlock {
            linktype: pcap_file::DataLink::ETHERNET,
            snaplen: 65535,
            options: vec![],
        }))
        .unwrap();
    for (i, frame) in frames.iter().enumerate() {
        writer
            .write_block(&Block::EnhancedPacket(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_secs(1_700_000_000 + i as u64),
                original_len: frame.len() as u32,
                data: frame.as_slice().into(),
                options: vec![],
            }))
            .unwrap();
    }
}

fn replay(capture: &Path, extra: &[&str]) -> CommandRun {
    let reg = format!("{SCENARIOS}/trace.reg");
    let scopes = format!("{SCENARIOS}/dora.txt");
    let reg_dir = tempfile::tempdir().unwrap();
    // The shipped .reg names trace.so relatively; here it is resolved by an absolute copy.
    let abs_reg = reg_dir.path().join("trace.reg");
    std::fs::write(
        &abs_reg,
        calloutd_registry::write_parameters_reg(&[fixture("trace").display().to_string()], Some(1)),
    )
    .unwrap();
    let _ = reg;
    let mut args = vec![
        "replay",
        capture.to_str().unwrap(),
        "--reg",
        abs_reg.to_str().unwrap(),
        "--scopes",
        &scopes,
    ];
    args.extend_from_slice(extra);
    calloutd(&args)
}

/// A replay's JSON objects without the measured durations (the rest must not depend on the mode).
fn untimed(run: &CommandRun) -> Vec<serde_json::Value> {
    let mut lines = json_lines(run);
    for line in &mut lines {
        if let Some(serde_json::Value::Array(hooks)) = line.get_mut("hooks") {
            for hook in hooks {
                if let Some(map) = hook.as_object_mut() {
                    map.remove("dur_us");
                    // Slow-hook reports depend on timing too.
                    if let Some(serde_json::Value::Array(found)) = map.get_mut("misbehaviour") {
                        found.retain(|m| m["kind"] != "slow-hook");
                    }
                }
            }
        }
    }
    lines
}

#[test]
fn replay_with_isolate_answers_and_calls_the_hooks_as_in_process() {
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/captures/clients.pcap");
    let in_process = replay(&capture, &["--json"]);
    assert_eq!(
        in_process.code, 0,
        "{}{}",
        in_process.stdout, in_process.stderr
    );
    let isolated = replay(&capture, &["--json", "--isolate"]);
    assert_eq!(isolated.code, 0, "{}{}", isolated.stdout, isolated.stderr);
    let (a, b) = (untimed(&in_process), untimed(&isolated));
    assert!(
        a.iter().filter(|l| l.get("frame").is_some()).count() >= 4,
        "{a:?}"
    );
    assert_eq!(a, b);
}

fn json_lines(run: &CommandRun) -> Vec<serde_json::Value> {
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

#[test]
fn replay_reads_pcap_and_pcapng_on_every_link_type_and_answers_like_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let ip = exchange();
    let mut eth: Vec<Vec<u8>> = ip.iter().cloned().map(ethernet).collect();
    // An ARP frame: not DHCP.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    eth.insert(1, arp);
    let captures = [
        ("eth.pcap", Some(pcap_file::DataLink::ETHERNET), eth.clone()),
        (
            "sll.pcap",
            Some(pcap_file::DataLink::LINUX_SLL),
            ip.iter().cloned().map(linux_sll).collect(),
        ),
        ("raw.pcap", Some(pcap_file::DataLink::RAW), ip.clone()),
        ("eth.pcapng", None, eth.clone()),
    ];
    for (name, link, frames) in captures {
        let path = dir.path().join(name);
        match link {
            Some(link) => write_pcap(&path, link, &frames),
            None => write_pcapng(&path, &frames),
        }
        let run = replay(&path, &["--json"]);
        assert_eq!(run.code, 0, "{name}: {}{}", run.stdout, run.stderr);
        let lines = json_lines(&run);
        let messages: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l.get("frame").is_some()).collect();
        assert_eq!(messages.len(), 4, "{name}: {}", run.stdout);
        let arp_offset = u64::from(
            link != Some(pcap_file::DataLink::LINUX_SLL) && link != Some(pcap_file::DataLink::RAW),
        );
        assert_eq!(messages[0]["frame"], 1, "{name}");
        assert_eq!(messages[0]["xid"], 0x11);
        assert_eq!(messages[0]["request"], "DISCOVER");
        assert_eq!(messages[0]["reply"], "OFFER");
        assert_eq!(messages[0]["yiaddr"], "198.18.0.10");
        assert_eq!(messages[1]["frame"], 3 + arp_offset, "{name}");
        assert_eq!(messages[1]["request"], "REQUEST");
        assert_eq!(messages[1]["reply"], "ACK");
        let hooks: Vec<&str> = messages[1]["hooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["hook"].as_str().unwrap())
            .collect();
        assert_eq!(
            hooks,
            [
                "NewPkt",
                "HandleOptions",
                "AddressOffer",
                "PktSend",
                "PktDrop"
            ],
            "{name}"
        );
        assert_eq!(messages[2]["relay"], "198.18.0.254");
        assert_eq!(messages[2]["reply"], "OFFER");
        assert_eq!(messages[3]["request"], "BOOTREQUEST");
        assert_eq!(messages[3]["reply"], "BOOTREPLY");
        let summary = &lines.last().unwrap()["summary"];
        assert_eq!(summary["server_replies_skipped"], 1, "{name}: {summary}");
        assert_eq!(summary["not_dhcp"], arp_offset, "{name}: {summary}");
        assert_eq!(summary["client_messages"], 4, "{name}: {summary}");
        assert!(summary["error"].is_null());
    }
    // The text form: one line per message, then the summary.
    let path = dir.path().join("eth.pcap");
    let run = replay(&path, &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(
            "DISCOVER -> OFFER 198.18.0.10  [NewPkt HandleOptions PktSend PktDrop(PROCESSED)]"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("skipped: 1 server replies, 1 frames that are not DHCP"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_truncated_or_corrupt_capture_reports_its_frame_and_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<Vec<u8>> = exchange().into_iter().map(ethernet).collect();
    let whole = dir.path().join("whole.pcap");
    write_pcap(&whole, pcap_file::DataLink::ETHERNET, &frames);
    let bytes = std::fs::read(&whole).unwrap();
    // Cut in the middle of the third frame.
    let cut = dir.path().join("cut.pcap");
    let third_starts = 24 + 2 * 16 + frames[0].len() + frames[1].len();
    std::fs::write(&cut, &bytes[..third_starts + 30]).unwrap();
    let run = replay(&cut, &["--json"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let lines = json_lines(&run);
    assert_eq!(lines.iter().filter(|l| l.get("frame").is_some()).count(), 1);
    let summary = &lines.last().unwrap()["summary"];
    assert!(
        summary["error"].as_str().unwrap().starts_with("frame 3:"),
        "{summary}"
    );
    assert!(run.stderr.contains("frame 3:"), "{}", run.stderr);
    // Garbage: no panic, a clear error.
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture at all").unwrap();
    let run = replay(&junk, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("not a pcap or pcapng file"),
        "{}",
        run.stderr
    );
}
