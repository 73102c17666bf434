//! A DHCPv4 client for scripts and tests, and a load generator.
//!
//! - [`Client`]: one exchange per method ([`Client::dora`], [`Client::discover`],
//!   [`Client::request`], [`Client::renew`], [`Client::rebind`], [`Client::release`],
//!   [`Client::decline`], [`Client::inform`], [`Client::bootp`], [`Client::init_reboot`]) over one of
//!   three [`Transport`]s: as a relay agent (bind giaddr, unicast to the server; works on loopback),
//!   broadcast on an interface (a client with no address yet, inside a test network namespace), or
//!   plain unicast. Replies come back as [`Reply`]: message type, yiaddr, server id, lease, T1/T2,
//!   every option decoded in wire order, and the raw bytes.
//! - [`cli`]: the `calloutd client <verb>` command line (exit 0 success, 1 NAK, 2 timeout, 3 other).
//! - [`bench`](mod@bench): `calloutd bench`, 4-way exchanges at a given rate in relay mode, in the spirit of
//!   Kea's perfdhcp.
//!
//! Not for: serving. This crate must not depend on the calloutd server crates, so that it tests the
//! server from the outside as any other client would.
//!
//! ```no_run
//! use calloutd_client::{Client, ClientSettings, Transport};
//!
//! let transport = Transport::Relay {
//!     giaddr: "127.0.0.2:67".parse().unwrap(),
//!     server: "127.0.0.1:67".parse().unwrap(),
//! };
//! let mut client = Client::new(transport, ClientSettings::default())?;
//! let dora = client.dora()?;
//! println!("{} {} lease {:?}", dora.reply.type_name(), dora.reply.yiaddr, dora.reply.lease_time);
//! # Ok::<(), calloutd_client::ClientError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod cli;
mod client;
mod message;

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

pub use client::{Client, ClientSettings, Dora, Sent, Transport, CLIENT_PORT, SERVER_PORT};
pub use dhcproto;
pub use dhcproto::v4::MessageType;
pub use message::{
    encode_request, message_type_name, parse_hex, parse_mac, to_colon_hex, to_hex, DecodedOption,
    Identity, Outgoing, RawOption, Reply, BOOTP_MIN_LEN,
};

/// Why an exchange failed. A NAK is not an error: it is a [`Reply`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No acceptable reply within the timeout.
    #[error("timeout: no reply to {stage} sent to {to} within {waited:?} ({attempts} transmissions){}", ignored.as_ref().map(|i| format!("; {i}")).unwrap_or_default())]
    Timeout {
        /// The message that went unanswered (`DISCOVER`, `REQUEST`...).
        stage: String,
        /// Where it was sent.
        to: SocketAddrV4,
        /// How long the client waited.
        waited: Duration,
        /// How many times it was sent.
        attempts: u32,
        /// Replies that arrived but were not acceptable, if any.
        ignored: Option<String>,
    },
    /// A socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the client was doing.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A reply that is not a well-formed BOOTP/DHCP message.
    #[error("malformed reply{}: {reason}", from.map(|f| format!(" from {f}")).unwrap_or_default())]
    Malformed {
        /// Its sender.
        from: Option<SocketAddr>,
        /// What is wrong with it.
        reason: String,
    },
    /// dhcproto could not encode the request.
    #[error("cannot encode the request: {0}")]
    Encode(String),
    /// The request cannot be made as asked (missing server id, bad setting).
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    fn io(context: &str, source: std::io::Error) -> Self {
        ClientError::Io {
            context: context.to_string(),
            source,
        }
    }
}
