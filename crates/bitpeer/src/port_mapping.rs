//! Port mapping for `download`, `seed` and the daemon: a [`portmap::PortMapper`] for the
//! listening port (TCP and UDP), and one line on stderr with what it got.

use std::time::Duration;

use ::portmap::{Config, PortMapper, Status};
use engine::session::Session;

/// Start mapping the session's listening port, asking for a lease of `lease_secs`; the
/// first result (or failure) is printed once on stderr, later ones are logged. Nothing is
/// asked of any router when the node listens on loopback only (no one outside could reach
/// it anyway): `None`, with a note on stderr.
pub fn start(session: &Session, lease_secs: u64) -> Option<PortMapper> {
    if session.listen_addrs().iter().all(|a| a.ip().is_loopback()) {
        eprintln!("port mapping: off (listening on loopback only)");
        return None;
    }
    let mut config = Config::new(session.listen_addr().port());
    config.lease = std::time::Duration::from_secs(lease_secs.max(1));
    let mapper = PortMapper::start(config);
    let status = mapper.status_handle();
    tokio::spawn(async move {
        let s = PortMapper::wait_first(&status, Duration::from_secs(30)).await;
        eprintln!("{}", describe(&s));
    });
    Some(mapper)
}

/// `port mapping: TCP 10.0.0.2:6881 -> 203.0.113.7:6881 (UPnP), UDP ...`, or a warning.
pub fn describe(s: &Status) -> String {
    if s.mappings.is_empty() {
        return format!(
            "warning: port mapping failed: {}",
            s.error.as_deref().unwrap_or("no answer yet")
        );
    }
    let list: Vec<String> = s
        .mappings
        .iter()
        .map(|m| format!("{} {} -> {}", m.protocol, m.internal, m.external))
        .collect();
    let method = s.method.map(|m| m.to_string()).unwrap_or_default();
    format!("port mapping: {} ({method})", list.join(", "))
}

/// What the daemon's API shows.
pub fn to_json(s: &Status) -> serde_json::Value {
    serde_json::json!({
        "method": s.method.map(|m| m.to_string()),
        "gateway": s.gateway.map(|g| g.to_string()),
        "external_ip": s.external_ip.map(|i| i.to_string()),
        "mappings": s.mappings.iter().map(|m| serde_json::json!({
            "protocol": m.protocol.to_string(),
            "internal": m.internal.to_string(),
            "external": m.external.to_string(),
        })).collect::<Vec<_>>(),
        "error": s.error,
        "renewals": s.renewals,
    })
}
