//! `calloutd client <verb>`: the command line over [`Client`].
//!
//! Exit codes: [`EXIT_OK`] 0 success (ACK, OFFER, BOOTREPLY, or RELEASE/DECLINE sent),
//! [`EXIT_NAK`] 1 the server answered NAK, [`EXIT_TIMEOUT`] 2 no reply in time, [`EXIT_ERROR`] 3 bad
//! arguments or any other error. Every failure prints one line to stderr.
//!
//! Values with a format of their own (addresses, MAC, hex, durations) are taken as text and checked
//! by [`run`], so that a bad value exits 3 with a one-line reason whatever the parent parser does
//! with its own errors (clap's would be exit 2, which means timeout here).

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::message::{parse_hex, parse_mac, RawOption, Reply};
use crate::{Client, ClientError, ClientSettings, Transport, CLIENT_PORT, SERVER_PORT};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the server answered NAK.
pub const EXIT_NAK: u8 = 1;
/// Exit code: no reply within the timeout.
pub const EXIT_TIMEOUT: u8 = 2;
/// Exit code: bad arguments or another error.
pub const EXIT_ERROR: u8 = 3;

/// calloutd client: run one DHCP exchange and print the reply.
#[derive(Debug, Clone, Args)]
pub struct ClientCommand {
    /// The exchange to run.
    #[command(subcommand)]
    pub verb: ClientVerb,
}

/// The exchanges `calloutd client` can run.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientVerb {
    /// DISCOVER, OFFER, REQUEST, ACK; exit 1 on NAK.
    Dora(ClientArgs),
    /// DISCOVER and print the OFFER.
    Discover(ClientArgs),
    /// REQUEST --requested-ip: SELECTING state with --server-id, INIT-REBOOT without.
    Request(ClientArgs),
    /// RENEWING: REQUEST with --ciaddr, unicast to --server.
    Renew(ClientArgs),
    /// REBINDING: REQUEST with --ciaddr, broadcast (to --server in relay and unicast modes).
    Rebind(ClientArgs),
    /// RELEASE --ciaddr to --server-id (default: the --server address); no reply expected.
    Release(ClientArgs),
    /// DECLINE --requested-ip offered by --server-id (default: the --server address).
    Decline(ClientArgs),
    /// INFORM from --ciaddr; expects an ACK.
    Inform(ClientArgs),
    /// BOOTREQUEST without option 53 (add --no-cookie for a plain RFC 951 request).
    Bootp(ClientArgs),
}

/// Settings shared by every verb.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientArgs {
    /// Client hardware address, e.g. 02:00:00:00:00:01 (default: random, locally administered).
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// Client identifier (option 61) as hex, e.g. 01:02:00:00:00:00:01.
    #[arg(long, value_name = "HEX")]
    pub client_id: Option<String>,
    /// Host name (option 12).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Vendor class (option 60), e.g. "MSFT 5.0".
    #[arg(long, value_name = "TEXT")]
    pub vendor_class: Option<String>,
    /// User class (option 77), sent as the bytes of TEXT.
    #[arg(long, value_name = "TEXT")]
    pub user_class: Option<String>,
    /// Extra option as CODE=HEX (repeatable); replaces a built-in option with the same code.
    #[arg(long = "option", value_name = "CODE=HEX")]
    pub options: Vec<String>,
    /// Requested IP (option 50): a wish in DISCOVER, the address in REQUEST and DECLINE.
    #[arg(long, value_name = "IP")]
    pub requested_ip: Option<String>,
    /// Server identifier (option 54) for REQUEST (SELECTING), RELEASE and DECLINE.
    #[arg(long, value_name = "IP")]
    pub server_id: Option<String>,
    /// Client address (ciaddr) for renew, rebind, release and inform.
    #[arg(long, value_name = "IP")]
    pub ciaddr: Option<String>,
    /// The server's address (port 67 unless given).
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub server: Option<String>,
    /// Relay mode: bind this address (port 67 unless given), put it in giaddr, send to --server.
    #[arg(long, value_name = "ADDR[:PORT]", conflicts_with = "interface")]
    pub giaddr: Option<String>,
    /// Broadcast mode on this interface: bind 0.0.0.0:68 there and send to 255.255.255.255:67.
    #[arg(long, value_name = "IF")]
    pub interface: Option<String>,
    /// Local address for unicast mode (default 0.0.0.0:68); in broadcast mode only its port counts.
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub bind: Option<String>,
    /// Parameter request list (option 55) as comma-separated codes; empty sends none.
    #[arg(long, value_name = "CODES")]
    pub prl: Option<String>,
    /// Transaction id (hex with 0x, or decimal; default random).
    #[arg(long, value_name = "XID")]
    pub xid: Option<String>,
    /// Set the broadcast flag (always set in broadcast mode unless --no-broadcast-flag).
    #[arg(long)]
    pub broadcast: bool,
    /// Clear the broadcast flag in broadcast mode.
    #[arg(long, conflicts_with = "broadcast")]
    pub no_broadcast_flag: bool,
    /// Seconds to wait for each reply, retransmissions included.
    #[arg(long, value_name = "SECS", default_value = "3")]
    pub timeout: String,
    /// Retransmissions within the timeout.
    #[arg(long, value_name = "N", default_value = "2")]
    pub retries: String,
    /// bootp: send no magic cookie (an RFC 951 BOOTP request).
    #[arg(long)]
    pub no_cookie: bool,
    /// Print the reply as JSON (message type, yiaddr, server id, lease, every option decoded).
    #[arg(long)]
    pub json: bool,
}

impl ClientVerb {
    /// The arguments of whichever verb this is.
    pub fn args(&self) -> &ClientArgs {
        match self {
            ClientVerb::Dora(a)
            | ClientVerb::Discover(a)
            | ClientVerb::Request(a)
            | ClientVerb::Renew(a)
            | ClientVerb::Rebind(a)
            | ClientVerb::Release(a)
            | ClientVerb::Decline(a)
            | ClientVerb::Inform(a)
            | ClientVerb::Bootp(a) => a,
        }
    }
}

/// Runs the command, printing to stdout/stderr; see the module doc for exit codes.
pub fn run(cmd: ClientCommand) -> ExitCode {
    let code = run_with(
        &cmd,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(code)
}

/// Runs the command, printing the reply to `out` and the one-line failure reason to `err`;
/// returns the exit code.
pub fn run_with(cmd: &ClientCommand, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let args = cmd.verb.args();
    let outcome = execute(&cmd.verb, args);
    let (code, printed, reason) = match outcome {
        Ok(Outcome::Reply { reply, offer }) => {
            let code = if reply.is_nak() { EXIT_NAK } else { EXIT_OK };
            let reason = reply.is_nak().then(|| nak_reason(&reply));
            (
                code,
                render_reply(&reply, offer.as_deref(), args.json),
                reason,
            )
        }
        Ok(Outcome::Sent(sent)) => {
            let text = if args.json {
                sent.to_json().to_string()
            } else {
                format!(
                    "{} sent to {} (xid 0x{:08x}, {} bytes)",
                    crate::message_type_name(sent.message_type),
                    sent.to,
                    sent.xid,
                    sent.raw.len()
                )
            };
            (EXIT_OK, Some(text), None)
        }
        Err(e @ ClientError::Timeout { .. }) => (EXIT_TIMEOUT, None, Some(e.to_string())),
        Err(e) => (EXIT_ERROR, None, Some(format!("error: {e}"))),
    };
    if let Some(text) = printed {
        let _ = writeln!(out, "{text}");
    }
    if let Some(reason) = reason {
        let _ = writeln!(err, "{}", one_line(&reason));
    }
    code
}

enum Outcome {
    Reply {
        reply: Box<Reply>,
        offer: Option<Box<Reply>>,
    },
    Sent(crate::Sent),
}

fn execute(verb: &ClientVerb, args: &ClientArgs) -> Result<Outcome, ClientError> {
    let invalid = ClientError::Invalid;
    let settings = settings_from(args, matches!(verb, ClientVerb::Bootp(_)))?;
    let transport = transport_from(args)?;
    let server_ip = match &transport {
        Transport::Relay { server, .. } | Transport::Unicast { server, .. } => Some(*server.ip()),
        Transport::Broadcast { server, .. } => *server,
    };
    let requested_ip = parse_opt_ip(&args.requested_ip, "--requested-ip")?;
    let server_id = parse_opt_ip(&args.server_id, "--server-id")?;
    let ciaddr = parse_opt_ip(&args.ciaddr, "--ciaddr")?;
    let need = |value: Option<Ipv4Addr>, what: &str| {
        value.ok_or_else(|| invalid(format!("{} needs {what}", verb_name(verb))))
    };
    let mut client = Client::new(transport, settings)?;
    let reply = |r: Reply| Outcome::Reply {
        reply: Box::new(r),
        offer: None,
    };
    Ok(match verb {
        ClientVerb::Dora(_) => {
            let dora = client.dora()?;
            Outcome::Reply {
                reply: Box::new(dora.reply),
                offer: Some(Box::new(dora.offer)),
            }
        }
        ClientVerb::Discover(_) => reply(client.discover()?),
        ClientVerb::Request(_) => {
            reply(client.request(need(requested_ip, "--requested-ip")?, server_id)?)
        }
        ClientVerb::Renew(_) => reply(client.renew(need(ciaddr, "--ciaddr")?)?),
        ClientVerb::Rebind(_) => reply(client.rebind(need(ciaddr, "--ciaddr")?)?),
        ClientVerb::Inform(_) => reply(client.inform(need(ciaddr, "--ciaddr")?)?),
        ClientVerb::Bootp(a) => reply(client.bootp(!a.no_cookie)?),
        ClientVerb::Release(_) => {
            let sid = need(server_id.or(server_ip), "--server-id or --server")?;
            Outcome::Sent(client.release(need(ciaddr, "--ciaddr")?, sid)?)
        }
        ClientVerb::Decline(_) => {
            let sid = need(server_id.or(server_ip), "--server-id or --server")?;
            Outcome::Sent(client.decline(need(requested_ip, "--requested-ip")?, sid)?)
        }
    })
}

fn verb_name(verb: &ClientVerb) -> &'static str {
    match verb {
        ClientVerb::Dora(_) => "dora",
        ClientVerb::Discover(_) => "discover",
        ClientVerb::Request(_) => "request",
        ClientVerb::Renew(_) => "renew",
        ClientVerb::Rebind(_) => "rebind",
        ClientVerb::Release(_) => "release",
        ClientVerb::Decline(_) => "decline",
        ClientVerb::Inform(_) => "inform",
        ClientVerb::Bootp(_) => "bootp",
    }
}

/// Builds the client settings from the arguments (`bootp` requests no DHCP parameters by default).
fn settings_from(args: &ClientArgs, bootp: bool) -> Result<ClientSettings, ClientError> {
    let invalid = ClientError::Invalid;
    let mut settings = ClientSettings::default();
    if let Some(mac) = &args.mac {
        settings.mac = parse_mac(mac).map_err(invalid)?;
    }
    if let Some(id) = &args.client_id {
        settings.client_id = Some(parse_hex(id).map_err(|e| invalid(format!("--client-id: {e}")))?);
    }
    settings.hostname = args.hostname.clone();
    settings.vendor_class = args.vendor_class.as_ref().map(|s| s.as_bytes().to_vec());
    settings.user_class = args.user_class.as_ref().map(|s| s.as_bytes().to_vec());
    settings.extra_options = args
        .options
        .iter()
        .map(|o| {
            o.parse::<RawOption>()
                .map_err(|e| invalid(format!("--option: {e}")))
        })
        .collect::<Result<_, _>>()?;
    settings.requested_ip = parse_opt_ip(&args.requested_ip, "--requested-ip")?;
    if bootp {
        settings.parameter_request_list.clear();
    }
    if let Some(list) = &args.prl {
        settings.parameter_request_list = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|c| {
                c.parse::<u8>()
                    .map_err(|_| invalid(format!("--prl: {c:?} is not an option code")))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(xid) = &args.xid {
        let parsed = match xid.strip_prefix("0x").or_else(|| xid.strip_prefix("0X")) {
            Some(hex) => u32::from_str_radix(hex, 16),
            None => xid.parse(),
        };
        settings.xid =
            Some(parsed.map_err(|_| invalid(format!("--xid: {xid:?} is not a 32-bit number")))?);
    }
    settings.broadcast_flag =
        args.broadcast || (args.interface.is_some() && !args.no_broadcast_flag);
    let timeout: f64 = args
        .timeout
        .parse()
        .ok()
        .filter(|t: &f64| t.is_finite() && *t > 0.0 && *t <= 3600.0)
        .ok_or_else(|| {
            invalid(format!(
                "--timeout: {:?} is not a number of seconds in (0, 3600]",
                args.timeout
            ))
        })?;
    settings.timeout = Duration::from_secs_f64(timeout);
    settings.retransmits = args
        .retries
        .parse::<u32>()
        .ok()
        .filter(|r| *r <= 100)
        .ok_or_else(|| {
            invalid(format!(
                "--retries: {:?} is not a number 0..=100",
                args.retries
            ))
        })?;
    Ok(settings)
}

fn transport_from(args: &ClientArgs) -> Result<Transport, ClientError> {
    let invalid = ClientError::Invalid;
    let server = args
        .server
        .as_deref()
        .map(|s| parse_socket_addr(s, SERVER_PORT, "--server"))
        .transpose()?;
    let bind = args
        .bind
        .as_deref()
        .map(|s| parse_socket_addr(s, CLIENT_PORT, "--bind"))
        .transpose()?;
    if let Some(giaddr) = &args.giaddr {
        let giaddr = parse_socket_addr(giaddr, SERVER_PORT, "--giaddr")?;
        let server =
            server.ok_or_else(|| invalid("relay mode (--giaddr) needs --server".into()))?;
        return Ok(Transport::Relay { giaddr, server });
    }
    if let Some(interface) = &args.interface {
        return Ok(Transport::Broadcast {
            interface: interface.clone(),
            client_port: bind.map(|b| b.port()).unwrap_or(CLIENT_PORT),
            server_port: server.map(|s| s.port()).unwrap_or(SERVER_PORT),
            server: server.map(|s| *s.ip()),
        });
    }
    let server = server.ok_or_else(|| {
        invalid(
            "give --server (unicast), --giaddr with --server (relay) or --interface (broadcast)"
                .into(),
        )
    })?;
    Ok(Transport::Unicast {
        local: bind.unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT)),
        server,
    })
}

/// Parses `ADDR` or `ADDR:PORT` (IPv4 only), with `default_port` when no port is given.
pub fn parse_socket_addr(
    text: &str,
    default_port: u16,
    what: &str,
) -> Result<SocketAddrV4, ClientError> {
    let bad = || ClientError::Invalid(format!("{what}: {text:?} is not an IPv4 ADDR[:PORT]"));
    if let Ok(ip) = text.parse::<Ipv4Addr>() {
        return Ok(SocketAddrV4::new(ip, default_port));
    }
    text.parse::<SocketAddrV4>().map_err(|_| bad())
}

fn parse_opt_ip(text: &Option<String>, what: &str) -> Result<Option<Ipv4Addr>, ClientError> {
    text.as_deref()
        .map(|t| {
            t.parse::<Ipv4Addr>()
                .map_err(|_| ClientError::Invalid(format!("{what}: {t:?} is not an IPv4 address")))
        })
        .transpose()
}

fn nak_reason(reply: &Reply) -> String {
    let server = reply
        .server_id
        .map(|s| s.to_string())
        .or_else(|| reply.from.map(|f| f.to_string()))
        .unwrap_or_else(|| "the server".into());
    match reply.option(56) {
        Some(message) => format!("NAK from {server}: {}", message.value()),
        None => format!("NAK from {server}"),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn render_reply(reply: &Reply, offer: Option<&Reply>, json: bool) -> Option<String> {
    if json {
        let mut value = reply.to_json();
        if let (Some(offer), Value::Object(map)) = (offer, &mut value) {
            map.insert("offer".into(), offer.to_json());
        }
        return Some(value.to_string());
    }
    let mut text = String::new();
    if let Some(offer) = offer {
        text.push_str(&summary(offer));
        text.push('\n');
    }
    text.push_str(&summary(reply));
    for option in &reply.options {
        text.push_str(&format!(
            "\n  {:>3} {}: {}",
            option.code,
            option.name(),
            option.value()
        ));
    }
    Some(text)
}

fn summary(reply: &Reply) -> String {
    let mut line = format!("{} {}", reply.type_name(), reply.yiaddr);
    if let Some(server) = reply.server_id {
        line.push_str(&format!(" server {server}"));
    }
    let seconds = |s: u32| {
        if s == u32::MAX {
            "infinite".to_string()
        } else {
            format!("{s}s")
        }
    };
    if let Some(lease) = reply.lease_time {
        line.push_str(&format!(" lease {}", seconds(lease)));
    }
    if let Some(t1) = reply.t1 {
        line.push_str(&format!(" t1 {}", seconds(t1)));
    }
    if let Some(t2) = reply.t2 {
        line.push_str(&format!(" t2 {}", seconds(t2)));
    }
    if let Some(from) = reply.from {
        line.push_str(&format!(" from {from}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        verb: ClientVerb,
    }

    fn parse(args: &[&str]) -> ClientVerb {
        Cli::try_parse_from(std::iter::once("client").chain(args.iter().copied()))
            .unwrap()
            .verb
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        #[derive(Parser)]
        struct Bench {
            #[command(flatten)]
            bench: crate::bench::BenchCommand,
        }
        Bench::command().debug_assert();
    }

    #[test]
    fn relay_transport_and_settings() {
        let verb = parse(&[
            "dora",
            "--giaddr",
            "127.0.0.2:6700",
            "--server",
            "127.0.0.1",
            "--mac",
            "02:00:00:00:00:05",
            "--option",
            "82=0102",
            "--option",
            "224=",
            "--prl",
            "1, 3",
            "--xid",
            "0x10",
        ]);
        let args = verb.args();
        let transport = transport_from(args).unwrap();
        assert_eq!(
            transport,
            Transport::Relay {
                giaddr: "127.0.0.2:6700".parse().unwrap(),
                server: "127.0.0.1:67".parse().unwrap()
            }
        );
        let settings = settings_from(args, false).unwrap();
        assert_eq!(settings.mac, [2, 0, 0, 0, 0, 5]);
        assert_eq!(settings.extra_options.len(), 2);
        assert_eq!(settings.parameter_request_list, vec![1, 3]);
        assert_eq!(settings.xid, Some(16));
        assert!(!settings.broadcast_flag);
    }

    #[test]
    fn broadcast_mode_sets_flag_and_ports() {
        let args = parse(&["discover", "--interface", "veth1"]).args().clone();
        assert!(settings_from(&args, false).unwrap().broadcast_flag);
        assert_eq!(
            transport_from(&args).unwrap(),
            Transport::Broadcast {
                interface: "veth1".into(),
                client_port: 68,
                server_port: 67,
                server: None
            }
        );
        let args = parse(&["discover", "--interface", "veth1", "--no-broadcast-flag"])
            .args()
            .clone();
        assert!(!settings_from(&args, false).unwrap().broadcast_flag);
    }

    #[test]
    fn bad_values_exit_3_with_one_line() {
        for argv in [
            &["dora", "--server", "127.0.0.1:1", "--mac", "zz"][..],
            &["dora", "--server", "127.0.0.1:1", "--option", "12"][..],
            &["dora", "--server", "nowhere"][..],
            &["dora"][..],
            &["renew", "--server", "127.0.0.1:1", "--bind", "127.0.0.1:0"][..],
            &["dora", "--server", "127.0.0.1:1", "--timeout=-1"][..],
        ] {
            let cmd = ClientCommand { verb: parse(argv) };
            let (mut out, mut err) = (Vec::new(), Vec::new());
            assert_eq!(run_with(&cmd, &mut out, &mut err), EXIT_ERROR, "{argv:?}");
            let err = String::from_utf8(err).unwrap();
            assert_eq!(err.lines().count(), 1, "{err}");
            assert!(out.is_empty());
        }
    }
}
