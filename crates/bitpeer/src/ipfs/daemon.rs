//! IPFS inside `bitpeer daemon`: the `[ipfs]` config section, the Trustless Gateway served
//! from the daemon's block store, and the bridge that imports a completed torrent's content
//! so the same files are reachable by CID.
//!
//! Where the gateway answers, and who may ask:
//! - without `gateway_listen`, at `/ipfs/...` on the API's address, behind the API's guard:
//!   on a loopback API no credentials are asked (as for `bitpeer ipfs serve`); on a
//!   non-loopback API (which always has credentials) the gateway asks for them too, since
//!   opening the API to the network is not a wish to publish the store;
//! - with `gateway_listen`, on that address alone, read-only and without credentials
//!   (IPFS clients have none to give): a non-loopback `gateway_listen` is a choice to publish
//!   the store to whoever knows a CID, like seeding a torrent to whoever knows its
//!   info-hash. Nothing lists the store; only GET and HEAD of a CID are answered.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ipfs::{BlockStore, FsStore, Profile};
use serde::{Deserialize, Serialize};

use crate::daemon::state::Daemon;
use crate::{CliError, CliResult};

/// The `[ipfs]` section of the daemon's config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Serve the block store as an IPFS Trustless Gateway (GET/HEAD /ipfs/CID).
    pub gateway: bool,
    /// The gateway's own address; none: `/ipfs/` on the API's address.
    pub gateway_listen: Option<SocketAddr>,
    /// The block store folder [default: STATE_DIR/ipfs, the one `bitpeer ipfs` uses].
    pub store: Option<PathBuf>,
    /// Import each completed torrent's content into the store (after checking its pieces),
    /// and show the root CID as `ipfs_cid` in the torrent's API object.
    pub add_on_complete: bool,
    /// The UnixFS profile of that import.
    pub profile: String,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            gateway: false,
            gateway_listen: None,
            store: None,
            add_on_complete: false,
            profile: Profile::UnixfsV1_2025.name().into(),
        }
    }
}

impl DaemonConfig {
    /// Fills in the store folder's default.
    pub fn resolve(&mut self, state_dir: &Path) {
        if self.store.is_none() {
            self.store = Some(state_dir.join("ipfs"));
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        super::parse_profile(&self.profile).map_err(|e| format!("ipfs.profile: {e}"))?;
        if self.gateway_listen.is_some() && !self.gateway {
            return Err("ipfs.gateway_listen is set but ipfs.gateway is false".into());
        }
        Ok(())
    }

    fn profile(&self) -> Profile {
        Profile::from_name(&self.profile).unwrap_or(Profile::UnixfsV1_2025)
    }

    fn store_dir(&self) -> PathBuf {
        self.store.clone().unwrap_or_else(|| PathBuf::from("ipfs"))
    }

    fn open_store(&self) -> CliResult<Arc<dyn BlockStore>> {
        let dir = self.store_dir();
        let store =
            FsStore::open(&dir).map_err(|e| CliError::new(format!("the IPFS block store: {e}")))?;
        Ok(Arc::new(store))
    }
}

/// The `/ipfs/...` routes for the API's router when the gateway shares its address (none
/// otherwise). [`start_gateway`] has opened the store once already, so a store that cannot
/// be opened has stopped the start before.
pub fn api_routes<S: Clone + Send + Sync + 'static>(cfg: &DaemonConfig) -> axum::Router<S> {
    if !cfg.gateway || cfg.gateway_listen.is_some() {
        return axum::Router::new();
    }
    let store = match cfg.open_store() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "ipfs: no gateway");
            return axum::Router::new();
        }
    };
    let handler = move |req: axum::extract::Request| {
        let store = store.clone();
        async move {
            let (parts, _body) = req.into_parts();
            super::gateway::respond(store, &parts)
                .await
                .map(axum::body::Body::new)
        }
    };
    axum::Router::new().route("/ipfs/{*path}", axum::routing::get(handler))
}

/// Does the API's guard ask credentials for `path`? The gateway's paths only when the API
/// listens beyond loopback (see the module's documentation).
pub fn needs_credentials(api: &SocketAddr, path: &str) -> bool {
    path.starts_with("/ipfs/") && !api.ip().is_loopback()
}

/// Opens the store when the gateway is on (so a store that cannot be opened stops the
/// start), and binds and starts the gateway's own listener when `gateway_listen` is set:
/// its address and task (aborted at shutdown).
pub async fn start_gateway(
    cfg: &DaemonConfig,
) -> CliResult<Option<(SocketAddr, tokio::task::JoinHandle<()>)>> {
    if !cfg.gateway {
        return Ok(None);
    }
    let store = cfg.open_store()?;
    let Some(addr) = cfg.gateway_listen else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::new(format!("cannot listen on {addr} for the IPFS gateway: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::new(format!("cannot read the gateway's address: {e}")))?;
    let task = tokio::spawn(super::gateway::serve(listener, store));
    Ok(Some((local, task)))
}

/// Info-hashes the bridge has imported or tried in this run (a failure is not retried
/// every second; a restart tries again).
static TRIED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
/// An import is running. One at a time, and only one blocking thread for it: each import
/// already uses every core, and threads waiting for their turn would hold the blocking
/// pool that the engine's disk work and the daemon's saves share.
static IMPORTING: AtomicBool = AtomicBool::new(false);

/// Clears [`IMPORTING`] when the import ends, also by a panic.
struct Importing;

impl Drop for Importing {
    fn drop(&mut self) {
        IMPORTING.store(false, Ordering::Release);
    }
}

/// The bridge's pass (called with the daemon's periodic work): when no import is running,
/// the next complete torrent without a CID is imported on the blocking pool, and its CID
/// recorded; the others wait for a later pass.
pub fn bridge_pass(daemon: &Daemon) {
    let cfg = &daemon.config.ipfs;
    if !cfg.add_on_complete || IMPORTING.load(Ordering::Acquire) {
        return;
    }
    for r in daemon.records() {
        if r.completed_at.is_none() || r.ipfs_cid.is_some() {
            continue;
        }
        let complete = daemon
            .session
            .torrent(r.engine_id)
            .is_some_and(|t| t.is_complete());
        let Some(meta) = daemon.session.metainfo(r.engine_id) else {
            continue;
        };
        if !complete {
            continue;
        }
        {
            let mut tried = TRIED.lock().unwrap_or_else(|p| p.into_inner());
            if !tried.get_or_insert_default().insert(r.info_hash.clone()) {
                continue;
            }
        }
        let daemon = daemon.clone();
        let store = cfg.store_dir();
        let profile = cfg.profile();
        IMPORTING.store(true, Ordering::Release);
        let busy = Importing;
        tokio::task::spawn_blocking(move || {
            let _busy = busy;
            match super::add_torrent_content(&meta, &r.save_path, &store, profile) {
                Ok(cid) => {
                    tracing::info!(id = r.id, cid = %cid, "ipfs: torrent content imported");
                    daemon.set_ipfs_cid(r.id, cid.to_string());
                }
                Err(e) => {
                    tracing::warn!(id = r.id, error = %e, "ipfs: torrent content not imported");
                }
            }
        });
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_paths_ask_credentials_only_beyond_loopback() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(!needs_credentials(&lo, "/ipfs/bafkqaaa"));
        assert!(!needs_credentials(&lo6, "/ipfs/bafkqaaa"));
        assert!(needs_credentials(&any, "/ipfs/bafkqaaa"));
        assert!(!needs_credentials(&any, "/index.html"));
    }

    #[test]
    fn config_section_defaults_and_checks() {
        let mut c = DaemonConfig::default();
        assert!(!c.gateway && !c.add_on_complete);
        assert!(c.validate().is_ok());
        c.resolve(Path::new("/state"));
        assert_eq!(c.store.as_deref(), Some(Path::new("/state/ipfs")));
        c.profile = "v2-999".into();
        assert!(c.validate().is_err());
        c.profile = "unixfs-v0-2015".into();
        c.gateway_listen = Some("127.0.0.1:0".parse().unwrap());
        assert!(c.validate().is_err());
        c.gateway = true;
        assert!(c.validate().is_ok());
        assert_eq!(c.profile(), Profile::UnixfsV0_2015);
    }
}
