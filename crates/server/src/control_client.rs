//! The client side of the control API (`calloutd ctl`): one request, the body or the API's error.

use std::time::Duration;

/// The largest response body read (`GET /v1/leases` of a million leases is ~230 MB).
const RESPONSE_LIMIT: u64 = 1 << 30;

/// How long one control request may take.
pub const CONTROL_CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// One control API verb (with the `clap` feature, also the `calloutd ctl` subcommand; each doc
/// line is its help text).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::Subcommand))]
pub enum ControlVerb {
    /// List the leases (JSON): `GET /v1/leases[?scope=S]`.
    Leases {
        /// Only the leases of this scope (its subnet address).
        #[cfg_attr(feature = "clap", arg(long, value_name = "SCOPE"))]
        scope: Option<String>,
    },
    /// Delete the lease of IP, DeleteClient first: `DELETE /v1/leases/{ip}`.
    DeleteLease {
        /// The leased address.
        ip: String,
    },
    /// Pause the service (Control PAUSE; packets are dropped with DHCP_DROP_PAUSED).
    Pause,
    /// Continue a paused service (Control CONTINUE).
    Continue,
    /// Stop the server.
    Stop,
    /// The statistics (JSON).
    Stats,
    /// The statistics as Prometheus text.
    Metrics,
    /// The effective configuration (JSON).
    Config,
    /// Back the lease database up now into the configured backup file (JSON report):
    /// `POST /v1/backup`.
    Backup,
}

impl ControlVerb {
    /// The HTTP method and the path (with query) of the verb.
    pub fn request(&self) -> (&'static str, String) {
        match self {
            ControlVerb::Leases { scope: None } => ("GET", "/v1/leases".into()),
            ControlVerb::Leases { scope: Some(s) } => ("GET", format!("/v1/leases?scope={s}")),
            ControlVerb::DeleteLease { ip } => ("DELETE", format!("/v1/leases/{ip}")),
            ControlVerb::Pause => ("POST", "/v1/service/pause".into()),
            ControlVerb::Continue => ("POST", "/v1/service/continue".into()),
            ControlVerb::Stop => ("POST", "/v1/service/stop".into()),
            ControlVerb::Stats => ("GET", "/v1/stats".into()),
            ControlVerb::Metrics => ("GET", "/metrics".into()),
            ControlVerb::Config => ("GET", "/v1/config".into()),
            ControlVerb::Backup => ("POST", "/v1/backup".into()),
        }
    }
}

/// Sends `verb` to the control API at `addr` (`HOST:PORT`) with an optional bearer token. `Ok` is
/// the response body of a 2xx answer; `Err` is the API's `error` message (or why no answer came).
pub fn call(addr: &str, token: Option<&str>, verb: &ControlVerb) -> Result<String, String> {
    let (method, path) = verb.request();
    let url = format!("http://{addr}{path}");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(CONTROL_CLIENT_TIMEOUT))
        .build()
        .into();
    let auth = token.map(|t| format!("Bearer {t}"));
    let result = match method {
        "GET" => {
            let mut req = agent.get(&url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()
        }
        "DELETE" => {
            let mut req = agent.delete(&url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()
        }
        _ => {
            let mut req = agent.post(&url);
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.send_empty()
        }
    };
    let mut response = result.map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status().as_u16();
    // A lease list of a large server is big (about 230 bytes a lease): allow 1 GiB, not ureq's
    // default 10 MiB.
    let body = response
        .body_mut()
        .with_config()
        .limit(RESPONSE_LIMIT)
        .read_to_string()
        .map_err(|e| format!("{method} {url}: reading the response: {e}"))?;
    if (200..300).contains(&status) {
        return Ok(body);
    }
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| body.trim().to_string());
    Err(format!("{status}: {message}"))
}
