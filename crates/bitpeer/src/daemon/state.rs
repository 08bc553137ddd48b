//! The daemon's torrents: the engine session plus what the daemon keeps for each torrent
//! (its source, folder, category, tags, limits, priorities, paused flag), persisted as one
//! JSON file per torrent in the state folder, written atomically (temp, fsync, rename), so
//! a stop and start, or a crash, brings every torrent back in its state.

use super::config::{Config, absolute};
use base64::Engine as _;
use engine::session::{
    AddSource, AddTorrent, Session, TorrentBrief, TorrentId, TorrentInfo, TorrentState,
};
use engine::torrent::TorrentConfig;
use metainfo::Metainfo;
use metainfo::magnet::Magnet;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Largest .torrent file accepted (upload, URL, watch folder, state file).
pub const MAX_TORRENT_BYTES: usize = 10 << 20;
/// At most this many tags per torrent, each at most this long; same for names.
const MAX_TAGS: usize = 32;
const MAX_NAME: usize = 128;
/// Largest `counters.json` read.
const MAX_COUNTERS_BYTES: usize = 64 << 20;
/// At most this many peers given with an add.
const MAX_PEERS: usize = 64;
/// Most WebTorrent trackers given with one add.
const MAX_WEBTORRENT_TRACKERS: usize = 16;

/// Priorities as the API names them, and the engine's numbers.
pub const PRIORITY_SKIP: u8 = 0;
pub const PRIORITY_NORMAL: u8 = 1;
pub const PRIORITY_HIGH: u8 = 2;

pub fn priority_name(p: u8) -> &'static str {
    match p {
        PRIORITY_SKIP => "skip",
        PRIORITY_HIGH => "high",
        _ => "normal",
    }
}

pub fn priority_from_name(s: &str) -> Option<u8> {
    match s {
        "skip" => Some(PRIORITY_SKIP),
        "normal" => Some(PRIORITY_NORMAL),
        "high" => Some(PRIORITY_HIGH),
        _ => None,
    }
}

/// A failure of a daemon operation, mapped to an HTTP status by the API.
#[derive(Debug)]
pub enum OpError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
    Internal(String),
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::BadRequest(m)
            | OpError::NotFound(m)
            | OpError::Conflict(m)
            | OpError::Internal(m) => f.write_str(m),
        }
    }
}

pub type OpResult<T> = Result<T, OpError>;

fn bad(msg: impl Into<String>) -> OpError {
    OpError::BadRequest(msg.into())
}

/// What a torrent was added from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The .torrent file, base64.
    Torrent(String),
    Magnet(String),
}

/// What the daemon keeps of one torrent (its state file).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: u64,
    pub info_hash: String,
    /// Shared: records are cloned often, the .torrent inside is not copied.
    pub source: Arc<Source>,
    pub save_path: PathBuf,
    pub paused: bool,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub download_limit: u64,
    #[serde(default)]
    pub upload_limit: u64,
    #[serde(default)]
    pub priorities: Vec<u8>,
    #[serde(default)]
    pub sequential: bool,
    #[serde(default)]
    pub peers: Vec<SocketAddr>,
    pub added_at: u64,
    #[serde(default)]
    pub completed_at: Option<u64>,
    #[serde(default)]
    pub queue: u64,
    #[serde(default)]
    pub ratio_limit: Option<f64>,
    #[serde(default)]
    pub seeding_time_limit: Option<u64>,
    /// Started by force: not held back by the queue's limits.
    #[serde(default)]
    pub force: bool,
    /// Each wanted file's first and last pieces come first.
    #[serde(default)]
    pub first_last: bool,
    /// qBittorrent's `contentLayout=NoSubfolder` of a multi-file torrent: its files lie
    /// in the save folder without the torrent's top folder, whose name this keeps (the
    /// engine is given the torrent with an empty name, so it lays the files out so).
    #[serde(default)]
    pub no_root: Option<String>,
    /// The root CID of its content, once the IPFS bridge has imported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipfs_cid: Option<String>,
    /// WebSocket (WebTorrent) trackers given when it was added, besides those its
    /// .torrent or magnet link names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webtorrent_trackers: Vec<String>,
    /// The engine's id for it in this run.
    #[serde(skip)]
    pub engine_id: TorrentId,
    /// Seconds spent seeding over every run (kept in `counters.json` with the payload
    /// totals, not in this file, so the per-torrent files are written only on changes).
    #[serde(skip)]
    pub seeding_secs: u64,
}

/// What `counters.json` keeps per torrent (by info-hash): the totals that survive a
/// restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub uploaded: u64,
    pub downloaded: u64,
    pub seeding_secs: u64,
}

/// A running torrent, for WebTorrent ([`Daemon::webtorrent_candidates`]).
pub struct WebTorrentCandidate {
    pub id: u64,
    pub engine_id: TorrentId,
    pub info_hash: [u8; 20],
    pub source: Arc<Source>,
    /// The WebSocket trackers given when it was added.
    pub trackers: Vec<String>,
}

/// A request to add a torrent, from the API, the CLI or the watch folder.
#[derive(Debug, Default)]
pub struct AddRequest {
    pub torrent: Option<Vec<u8>>,
    pub magnet: Option<String>,
    pub save_path: Option<String>,
    pub paused: bool,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub peers: Vec<String>,
    /// qBittorrent's `contentLayout=Subfolder`: a single-file torrent goes in a folder
    /// named after it (its name without the extension).
    pub subfolder: bool,
    /// qBittorrent's `firstLastPiecePrio`.
    pub first_last: bool,
    /// qBittorrent's `contentLayout=NoSubfolder`: a multi-file torrent's files go in the
    /// save folder without its top folder.
    pub no_subfolder: bool,
    /// WebSocket (WebTorrent) tracker URLs (`ws://`), besides those the torrent names.
    pub webtorrent_trackers: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Category {
    pub name: String,
    pub save_path: PathBuf,
}

/// What to do with a torrent that reached its seeding limit (qBittorrent's
/// `max_ratio_act`: 0 stop, 1 remove, 3 remove with its files).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedAction {
    #[default]
    Stop,
    Remove,
    RemoveWithData,
}

/// The settings the APIs may change while the daemon runs (qBittorrent's
/// `app/setPreferences`, Transmission's `session-set`, `PATCH /api/v1/session`). They
/// start from the config; once one is changed, all are kept in `STATE_DIR/settings.json`,
/// which wins over the config file on the next start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prefs {
    /// Where torrents go when no save path is given (inside the allowed folders).
    pub download_dir: PathBuf,
    /// Session-wide rate limits, bytes per second (0: none).
    pub download_limit: u64,
    pub upload_limit: u64,
    /// Peer connections across all torrents, and of one torrent.
    pub max_connections: usize,
    pub max_peers_per_torrent: usize,
    /// Queueing on: at most this many torrents download, seed, and run in all (0: no
    /// limit of that kind). Off: every torrent that is not stopped runs.
    pub queueing: bool,
    pub max_active_downloads: usize,
    pub max_active_seeds: usize,
    pub max_active_torrents: usize,
    /// Seeding limits for torrents that set none, and what reaching one does.
    pub ratio_limit: Option<f64>,
    pub seeding_time_limit: Option<u64>,
    pub seeding_action: SeedAction,
}

impl Prefs {
    fn from_config(c: &Config) -> Prefs {
        let s = engine::settings::Settings::default();
        Prefs {
            download_dir: absolute(&c.download_dir),
            download_limit: c.download_limit,
            upload_limit: c.upload_limit,
            max_connections: s.max_connections,
            max_peers_per_torrent: s.max_peers_per_torrent,
            queueing: c.max_active_downloads > 0 || c.max_active_seeds > 0,
            max_active_downloads: c.max_active_downloads,
            max_active_seeds: c.max_active_seeds,
            max_active_torrents: 0,
            ratio_limit: c.ratio_limit,
            seeding_time_limit: c.seeding_time_limit,
            seeding_action: SeedAction::Stop,
        }
    }

    /// Refuse values that cannot work (a new download folder is checked by the caller,
    /// against the allowed folders).
    fn validate(&self) -> OpResult<()> {
        if let Some(r) = self.ratio_limit
            && !(r.is_finite() && r >= 0.0)
        {
            return Err(bad("the ratio limit must be a number >= 0"));
        }
        if self.max_connections == 0 || self.max_peers_per_torrent == 0 {
            return Err(bad("connection limits must be at least 1"));
        }
        Ok(())
    }
}

/// Most tags made on no torrent (`createTags`), kept in `STATE_DIR/tags.json`.
const MAX_CREATED_TAGS: usize = 1024;

struct Inner {
    records: BTreeMap<u64, Record>,
    categories: BTreeMap<String, Category>,
    /// Tags made on no torrent (the others are those torrents carry).
    created_tags: std::collections::BTreeSet<String>,
    prefs: Prefs,
    next_id: u64,
    next_queue: u64,
    /// The counters as last written to `counters.json`.
    saved_counters: BTreeMap<String, Counters>,
}

/// The daemon: an engine session and its records.
#[derive(Clone)]
pub struct Daemon {
    pub session: Session,
    pub config: Arc<Config>,
    inner: Arc<Mutex<Inner>>,
    /// Serialises adds and removes (so two adds of one torrent cannot race).
    ops: Arc<tokio::sync::Mutex<()>>,
    /// Serialises the queue's passes.
    queue_lock: Arc<tokio::sync::Mutex<()>>,
    /// What the port mapper holds, when port mapping is on.
    pub port_mapping: Option<Arc<Mutex<portmap::Status>>>,
    /// Failed logins by address, for every API's credentials.
    pub login_guard: Arc<super::guard::LoginGuard>,
}

/// The settings: the config's, then `STATE_DIR/settings.json` over them (keys it lacks,
/// or values that do not fit, keep the config's).
fn load_prefs(config: &Config) -> Prefs {
    let base = Prefs::from_config(config);
    let path = config.state_dir.join("settings.json");
    let Some(saved) = std::fs::read(&path)
        .ok()
        .filter(|b| b.len() <= 1 << 20)
        .and_then(|b| serde_json::from_slice::<serde_json::Map<String, Value>>(&b).ok())
    else {
        return base;
    };
    let mut merged = serde_json::to_value(&base).unwrap_or_default();
    let mut out = base.clone();
    for (k, v) in saved {
        if let Some(slot) = merged.get_mut(&k) {
            let before = slot.clone();
            *slot = v;
            let inside = |p: &Prefs| {
                k != "download_dir" || config.roots().iter().any(|r| p.download_dir.starts_with(r))
            };
            match serde_json::from_value::<Prefs>(merged.clone()) {
                Ok(p) if p.validate().is_ok() && inside(&p) => out = p,
                _ => {
                    eprintln!("warning: {}: ignoring the bad value of {k}", path.display());
                    merged[&k] = before;
                }
            }
        }
    }
    out
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename,
/// fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn check_name(what: &str, s: &str) -> OpResult<()> {
    if s.is_empty() || s.len() > MAX_NAME || s.chars().any(|c| c.is_control()) {
        return Err(bad(format!(
            "a {what} must be 1 to {MAX_NAME} characters without control characters"
        )));
    }
    Ok(())
}

impl Daemon {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn torrents_dir(&self) -> PathBuf {
        self.config.state_dir.join("torrents")
    }

    /// Start from the state folder: every torrent found there is added back (paused ones
    /// paused), in id order. Files that cannot be read are reported and skipped.
    pub fn open(session: Session, config: Config) -> Result<Daemon, String> {
        let config = Arc::new(config);
        let dir = config.state_dir.join("torrents");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create the state folder {}: {e}", dir.display()))?;
        let categories = std::fs::read(config.state_dir.join("categories.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<BTreeMap<String, Category>>(&b).ok())
            .unwrap_or_default();
        let created_tags = std::fs::read(config.state_dir.join("tags.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<std::collections::BTreeSet<String>>(&b).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| check_name("tag", t).is_ok())
            .take(MAX_CREATED_TAGS)
            .collect();
        let prefs = load_prefs(&config);
        let counters = std::fs::read(config.state_dir.join("counters.json"))
            .ok()
            .filter(|b| b.len() <= MAX_COUNTERS_BYTES)
            .and_then(|b| serde_json::from_slice::<BTreeMap<String, Counters>>(&b).ok())
            .unwrap_or_default();
        let mut records = Vec::new();
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let parsed = std::fs::read(&path)
                .ok()
                .filter(|b| b.len() <= 2 * MAX_TORRENT_BYTES)
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
            match parsed {
                Some(r) => records.push(r),
                None => eprintln!("warning: skipping unreadable state file {}", path.display()),
            }
        }
        records.sort_by_key(|r| r.id);
        let next_id = records.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        let next_queue = records.iter().map(|r| r.queue).max().unwrap_or(0) + 1;
        let daemon = Daemon {
            session,
            config,
            inner: Arc::new(Mutex::new(Inner {
                records: BTreeMap::new(),
                categories,
                created_tags,
                prefs,
                next_id,
                next_queue,
                saved_counters: counters.clone(),
            })),
            ops: Arc::new(tokio::sync::Mutex::new(())),
            queue_lock: Arc::new(tokio::sync::Mutex::new(())),
            port_mapping: None,
            login_guard: Arc::default(),
        };
        daemon.apply_engine_settings();
        // Every torrent starts paused in the engine; the queue's first pass starts those
        // that may run.
        for mut r in records {
            match daemon.start_record(&r, true) {
                Ok(eid) => {
                    r.engine_id = eid;
                    if let Some(c) = counters.get(&r.info_hash) {
                        let _ = daemon.session.set_counters(eid, c.uploaded, c.downloaded);
                        r.seeding_secs = c.seeding_secs;
                    }
                    daemon.inner().records.insert(r.id, r);
                }
                Err(e) => eprintln!("warning: cannot restore torrent {}: {e}", r.info_hash),
            }
        }
        Ok(daemon)
    }

    /// Add a record's torrent to the engine.
    fn start_record(&self, r: &Record, paused: bool) -> OpResult<TorrentId> {
        let source = match r.source.as_ref() {
            Source::Torrent(b64) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| bad(format!("bad torrent data: {e}")))?;
                let mut meta = Metainfo::from_bytes(&bytes)
                    .map_err(|e| bad(format!("not a valid .torrent: {e}")))?;
                if r.no_root.is_some() && !meta.info.single_file {
                    // Files at SAVE/PATH instead of SAVE/NAME/PATH; the info-hash and the
                    // metadata served to peers come from the untouched info bytes.
                    meta.info.name = String::new();
                }
                AddSource::Torrent(Box::new(meta))
            }
            Source::Magnet(link) => AddSource::Magnet(Box::new(
                Magnet::parse(link).map_err(|e| bad(format!("not a valid magnet link: {e}")))?,
            )),
        };
        let mut config = TorrentConfig::new(r.save_path.clone(), r.peers.clone());
        config.trackers = self.config.trackers;
        config.download_limit = r.download_limit;
        config.upload_limit = r.upload_limit;
        config.file_priorities = r.priorities.clone();
        config.sequential = r.sequential;
        config.first_last_pieces = r.first_last;
        if let AddSource::Magnet(m) = &source {
            config.only = m.select_only.clone();
        }
        self.session
            .add(AddTorrent {
                source,
                config,
                paused,
            })
            .map_err(|e| match e {
                engine::error::EngineError::Duplicate => {
                    OpError::Conflict("this torrent is already in the daemon".into())
                }
                e => bad(e.to_string()),
            })
    }

    fn save(&self, r: &Record) {
        let path = self.torrents_dir().join(format!("{}.json", r.info_hash));
        let bytes = serde_json::to_vec(r).unwrap_or_default();
        if let Err(e) = write_atomic(&path, &bytes) {
            tracing::warn!(path = %path.display(), error = %e, "cannot save torrent state");
        }
    }

    fn save_id(&self, id: u64) {
        let r = self.inner().records.get(&id).cloned();
        if let Some(r) = r {
            self.save(&r);
        }
    }

    fn save_categories(&self) {
        let bytes = serde_json::to_vec(&self.inner().categories).unwrap_or_default();
        let _ = write_atomic(&self.config.state_dir.join("categories.json"), &bytes);
    }

    /// The settings as they are now.
    pub fn prefs(&self) -> Prefs {
        self.inner().prefs.clone()
    }

    /// Change settings: checked, applied at once (rate and connection limits to the
    /// engine, queueing and seeding limits by a queue pass) and kept in the state folder.
    pub async fn set_prefs(&self, f: impl FnOnce(&mut Prefs)) -> OpResult<Prefs> {
        let mut p = self.prefs();
        f(&mut p);
        p.validate()?;
        let changed = {
            let mut inner = self.inner();
            let changed = inner.prefs != p;
            inner.prefs = p.clone();
            changed
        };
        if changed {
            let bytes = serde_json::to_vec_pretty(&p).unwrap_or_default();
            write_atomic(&self.config.state_dir.join("settings.json"), &bytes)
                .map_err(|e| OpError::Internal(format!("cannot save the settings: {e}")))?;
            self.apply_engine_settings();
            self.apply_queue().await;
        }
        Ok(p)
    }

    /// Hand the engine the settings it applies itself (rate and connection limits).
    fn apply_engine_settings(&self) {
        let p = self.prefs();
        let mut s = self.session.settings();
        s.download_limit = p.download_limit;
        s.upload_limit = p.upload_limit;
        s.max_connections = p.max_connections;
        s.max_peers_per_torrent = p.max_peers_per_torrent;
        self.session.set_settings(s);
    }

    /// Tags made on no torrent.
    pub fn created_tags(&self) -> std::collections::BTreeSet<String> {
        self.inner().created_tags.clone()
    }

    /// Make tags (or forget them, `keep` false); kept across restarts. Bad names and
    /// tags past the bound are skipped.
    pub fn edit_created_tags(&self, tags: &[String], keep: bool) {
        let bytes = {
            let mut inner = self.inner();
            for t in tags {
                if !keep {
                    inner.created_tags.remove(t);
                } else if inner.created_tags.len() < MAX_CREATED_TAGS
                    && check_name("tag", t).is_ok()
                {
                    inner.created_tags.insert(t.clone());
                }
            }
            serde_json::to_vec(&inner.created_tags).unwrap_or_default()
        };
        if let Err(e) = write_atomic(&self.config.state_dir.join("tags.json"), &bytes) {
            tracing::warn!(error = %e, "cannot save the tags");
        }
    }

    /// A save path from a request: relative ones are under the download folder; `..` is
    /// refused; the result must be inside one of the allowed folders.
    pub fn check_save_path(&self, p: &str) -> OpResult<PathBuf> {
        if p.is_empty() || p.len() > 4096 || p.contains('\0') {
            return Err(bad("the save path is empty, too long or has a NUL"));
        }
        let path = Path::new(p);
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(bad("a save path may not contain '..'"));
        }
        let full = absolute(&if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.prefs().download_dir.join(path)
        });
        let roots = self.config.roots();
        if !roots.iter().any(|r| full.starts_with(r)) {
            return Err(bad(format!(
                "the save path {} is outside the allowed folders ({})",
                full.display(),
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(full)
    }

    /// For WebTorrent: every torrent that runs now (not paused, not stopped by an error).
    pub fn webtorrent_candidates(&self, states: &[TorrentBrief]) -> Vec<WebTorrentCandidate> {
        let running: std::collections::HashSet<TorrentId> = states
            .iter()
            .filter(|b| !matches!(b.state, TorrentState::Paused | TorrentState::Error(_)))
            .map(|b| b.id)
            .collect();
        self.inner()
            .records
            .values()
            .filter(|r| running.contains(&r.engine_id))
            .filter_map(|r| {
                Some(WebTorrentCandidate {
                    id: r.id,
                    engine_id: r.engine_id,
                    info_hash: metainfo::hash::from_hex(&r.info_hash)?,
                    source: r.source.clone(),
                    trackers: r.webtorrent_trackers.clone(),
                })
            })
            .collect()
    }

    /// Add a torrent; returns its id and info-hash.
    pub async fn add(&self, req: AddRequest) -> OpResult<(u64, String)> {
        let source = match (&req.torrent, &req.magnet) {
            (Some(bytes), None) => {
                if bytes.len() > MAX_TORRENT_BYTES {
                    return Err(bad("the .torrent file is larger than 10 MiB"));
                }
                Metainfo::from_bytes(bytes)
                    .map_err(|e| bad(format!("not a valid .torrent file: {e}")))?;
                Source::Torrent(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            (None, Some(link)) => {
                Magnet::parse(link).map_err(|e| bad(format!("not a valid magnet link: {e}")))?;
                Source::Magnet(link.clone())
            }
            _ => {
                return Err(bad(
                    "give exactly one of a .torrent file, a magnet link or a URL",
                ));
            }
        };
        if let Some(c) = &req.category {
            check_name("category", c)?;
        }
        if req.tags.len() > MAX_TAGS {
            return Err(bad(format!("at most {MAX_TAGS} tags")));
        }
        for t in &req.tags {
            check_name("tag", t)?;
        }
        if req.peers.len() > MAX_PEERS {
            return Err(bad(format!("at most {MAX_PEERS} peers")));
        }
        if req.webtorrent_trackers.len() > MAX_WEBTORRENT_TRACKERS {
            return Err(bad(format!(
                "at most {MAX_WEBTORRENT_TRACKERS} WebTorrent trackers"
            )));
        }
        for u in &req.webtorrent_trackers {
            crate::webtorrent_peer::check_ws_url(u).map_err(bad)?;
        }
        let peers = req
            .peers
            .iter()
            .map(|p| {
                p.parse::<SocketAddr>()
                    .map_err(|_| bad(format!("not a peer address (IP:PORT): {p}")))
            })
            .collect::<OpResult<Vec<_>>>()?;
        let mut save_path = match (&req.save_path, &req.category) {
            (Some(p), _) => self.check_save_path(p)?,
            (None, Some(c)) => {
                let cat = self.inner().categories.get(c).map(|c| c.save_path.clone());
                cat.unwrap_or_else(|| self.prefs().download_dir)
            }
            (None, None) => self.prefs().download_dir,
        };
        let meta = req
            .torrent
            .as_ref()
            .and_then(|b| Metainfo::from_bytes(b).ok());
        let no_root = meta
            .as_ref()
            .filter(|m| req.no_subfolder && !m.info.single_file)
            .map(|m| m.info.name.clone());
        if req.subfolder
            && let Some(meta) = &meta
            && meta.info.single_file
        {
            // The name is one sanitised path component already; without its extension.
            let name = Path::new(&meta.info.name);
            let stem = name.file_stem().unwrap_or(name.as_os_str());
            if !stem.is_empty() && Path::new(stem).components().count() == 1 {
                save_path = save_path.join(stem);
            }
        }
        let _op = self.ops.lock().await;
        let (id, queue) = {
            let inner = self.inner();
            (inner.next_id, inner.next_queue)
        };
        let mut record = Record {
            id,
            info_hash: String::new(),
            source: Arc::new(source),
            save_path,
            paused: req.paused,
            category: req.category,
            tags: req.tags,
            download_limit: 0,
            upload_limit: 0,
            priorities: Vec::new(),
            sequential: false,
            peers,
            added_at: now_secs(),
            completed_at: None,
            queue,
            ratio_limit: None,
            seeding_time_limit: None,
            force: false,
            first_last: req.first_last,
            no_root,
            ipfs_cid: None,
            webtorrent_trackers: req.webtorrent_trackers,
            engine_id: 0,
            seeding_secs: 0,
        };
        // Paused in the engine; the queue starts it when a slot is free.
        let eid = self.start_record(&record, true)?;
        let info = self
            .session
            .info(eid)
            .ok_or_else(|| OpError::Internal("the torrent vanished".into()))?;
        record.info_hash = metainfo::hash::to_hex(&info.info_hash);
        record.engine_id = eid;
        {
            let mut inner = self.inner();
            inner.next_id += 1;
            inner.next_queue += 1;
            inner.records.insert(id, record.clone());
        }
        self.save(&record);
        drop(_op);
        if record.paused {
            // Nothing to start.
        } else if self.config.max_active_downloads == 0 {
            // No queue for downloads: a new torrent starts at once, without a pass over
            // every torrent (thousands of adds stay linear).
            let _ = self.session.resume(eid);
        } else {
            self.apply_queue().await;
        }
        Ok((id, record.info_hash))
    }

    /// The record of API id `id`.
    pub fn record(&self, id: u64) -> OpResult<Record> {
        self.inner()
            .records
            .get(&id)
            .cloned()
            .ok_or_else(|| OpError::NotFound(format!("no torrent with id {id}")))
    }

    /// Records the CID the IPFS bridge gave the torrent's content.
    pub fn set_ipfs_cid(&self, id: u64, cid: String) {
        let _ = self.update(id, |r| r.ipfs_cid = Some(cid));
    }

    pub fn records(&self) -> Vec<Record> {
        self.inner().records.values().cloned().collect()
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Record)) -> OpResult<Record> {
        let r = {
            let mut inner = self.inner();
            let r = inner
                .records
                .get_mut(&id)
                .ok_or_else(|| OpError::NotFound(format!("no torrent with id {id}")))?;
            f(r);
            r.clone()
        };
        self.save(&r);
        Ok(r)
    }

    pub async fn pause(&self, id: u64) -> OpResult<()> {
        let r = self.update(id, |r| r.paused = true)?;
        self.session
            .pause(r.engine_id)
            .await
            .map_err(|e| OpError::Internal(e.to_string()))
    }

    /// Resume a paused torrent: it runs when the queue has a slot for it, or at once with
    /// `force` (whatever the limits).
    pub async fn resume(&self, id: u64, force: bool) -> OpResult<()> {
        self.update(id, |r| {
            r.paused = false;
            r.force = force;
        })?;
        self.apply_queue().await;
        Ok(())
    }

    pub async fn recheck(&self, id: u64) -> OpResult<()> {
        let r = self.record(id)?;
        self.session
            .recheck(r.engine_id)
            .await
            .map_err(|e| OpError::Internal(e.to_string()))
    }

    pub async fn remove(&self, id: u64, delete_data: bool) -> OpResult<()> {
        let res = self.remove_only(id, delete_data).await;
        self.apply_queue().await;
        res
    }

    /// Remove without a queue pass afterwards.
    async fn remove_only(&self, id: u64, delete_data: bool) -> OpResult<()> {
        let _op = self.ops.lock().await;
        let r = self.record(id)?;
        let res = self.session.remove(r.engine_id, delete_data).await;
        self.inner().records.remove(&id);
        let _ = std::fs::remove_file(self.torrents_dir().join(format!("{}.json", r.info_hash)));
        res.map_err(|e| OpError::Internal(format!("removed, but: {e}")))
    }

    /// One pass of the queue and the seeding limits: with queueing on, in queue order, the
    /// first `max_active_downloads` incomplete and `max_active_seeds` complete torrents
    /// (and `max_active_torrents` in all) that are not paused by the user run, the others
    /// wait (paused in the engine, shown `queued`); a seed past its ratio or seeding time
    /// is stopped or removed, as the seeding action says.
    pub async fn apply_queue(&self) {
        let states = self.session.states();
        self.apply_queue_with(&states).await;
    }

    /// [`Daemon::apply_queue`] with the engine's states (no counters, in id order) read
    /// already: a pass over thousands of torrents costs about a millisecond.
    pub async fn apply_queue_with(&self, states: &[TorrentBrief]) {
        let removals = self.queue_pass(states).await;
        for (id, with_data) in removals {
            tracing::info!(id, with_data, "seeding limit reached: removed");
            let _ = self.remove_only(id, with_data).await;
        }
    }

    /// The queue pass; returns the torrents to remove (seeding limit reached).
    async fn queue_pass(&self, states: &[TorrentBrief]) -> Vec<(u64, bool)> {
        let _q = self.queue_lock.lock().await;
        let prefs = self.prefs();
        let mut removals = Vec::new();
        struct Item {
            queue: u64,
            id: u64,
            engine_id: TorrentId,
            paused: bool,
            force: bool,
            completed_at: Option<u64>,
            ratio_limit: Option<f64>,
            seeding_time_limit: Option<u64>,
        }
        let mut records: Vec<Item> = self
            .inner()
            .records
            .values()
            .map(|r| Item {
                queue: r.queue,
                id: r.id,
                engine_id: r.engine_id,
                paused: r.paused,
                force: r.force,
                completed_at: r.completed_at,
                ratio_limit: r.ratio_limit,
                seeding_time_limit: r.seeding_time_limit,
            })
            .collect();
        records.sort_by_key(|r| (r.queue, r.id));
        let slots = |n: usize| {
            if n == 0 || !prefs.queueing {
                usize::MAX
            } else {
                n
            }
        };
        let mut downloads = slots(prefs.max_active_downloads);
        let mut seeds = slots(prefs.max_active_seeds);
        let mut total = slots(prefs.max_active_torrents);
        let now = now_secs();
        for r in records {
            let Some(state) = brief(states, r.engine_id).map(|b| &b.state) else {
                continue;
            };
            if r.paused || matches!(state, TorrentState::Error(_)) {
                continue;
            }
            let engine_paused = *state == TorrentState::Paused;
            let complete = r.completed_at.is_some();
            if complete
                && self.seeding_done(
                    r.engine_id,
                    (r.ratio_limit, r.seeding_time_limit),
                    r.completed_at,
                    now,
                    &prefs,
                )
            {
                match prefs.seeding_action {
                    SeedAction::Stop => {
                        tracing::info!(id = r.id, "seeding limit reached: paused");
                        let _ = self.pause(r.id).await;
                    }
                    SeedAction::Remove => removals.push((r.id, false)),
                    SeedAction::RemoveWithData => removals.push((r.id, true)),
                }
                continue;
            }
            let slot = if complete { &mut seeds } else { &mut downloads };
            let run = if *slot > 0 && total > 0 {
                *slot -= 1;
                total -= 1;
                true
            } else {
                r.force
            };
            if run && engine_paused {
                let _ = self.session.resume(r.engine_id);
            } else if !run && !engine_paused {
                let _ = self.session.pause(r.engine_id).await;
            }
        }
        removals
    }

    /// Has this complete torrent seeded enough (its limits, else the session's)?
    fn seeding_done(
        &self,
        engine_id: TorrentId,
        (ratio_limit, time_limit): (Option<f64>, Option<u64>),
        completed_at: Option<u64>,
        now: u64,
        prefs: &Prefs,
    ) -> bool {
        let ratio_limit = ratio_limit.or(prefs.ratio_limit);
        let time_limit = time_limit.or(prefs.seeding_time_limit);
        if let Some(limit) = ratio_limit
            && let Some(info) = self.session.info(engine_id)
        {
            let base = info.stats.downloaded.max(info.stats.total_bytes).max(1);
            if info.stats.uploaded as f64 / base as f64 >= limit {
                return true;
            }
        }
        if let (Some(limit), Some(done)) = (time_limit, completed_at)
            && now.saturating_sub(done) >= limit
        {
            return true;
        }
        false
    }

    pub fn set_limits(&self, id: u64, down: Option<u64>, up: Option<u64>) -> OpResult<()> {
        let r = self.update(id, |r| {
            if let Some(d) = down {
                r.download_limit = d;
            }
            if let Some(u) = up {
                r.upload_limit = u;
            }
        })?;
        self.session
            .set_torrent_limits(r.engine_id, r.download_limit, r.upload_limit)
            .map_err(|e| OpError::Internal(e.to_string()))
    }

    /// Move the torrent's data to `save_path` (checked like an add's save path): the
    /// engine stops it, moves its files and starts it again if it ran.
    pub async fn move_data(&self, id: u64, save_path: &str) -> OpResult<()> {
        let to = self.check_save_path(save_path)?;
        let _op = self.ops.lock().await;
        // No queue pass may start the torrent while its files move.
        let _q = self.queue_lock.lock().await;
        let r = self.record(id)?;
        self.session
            .move_data(r.engine_id, to.clone())
            .await
            .map_err(|e| match &e {
                engine::error::EngineError::Move(io)
                    if io.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    OpError::Conflict(e.to_string())
                }
                _ => OpError::Internal(e.to_string()),
            })?;
        self.update(id, |r| r.save_path = to)?;
        Ok(())
    }

    /// Point the torrent at `save_path` without moving anything (the data is said to lie
    /// there already) and check it all again there, as Transmission does for
    /// `torrent-set-location` with `move: false`. A running torrent runs again after.
    pub async fn relocate(&self, id: u64, save_path: &str) -> OpResult<()> {
        let to = self.check_save_path(save_path)?;
        let _op = self.ops.lock().await;
        let _q = self.queue_lock.lock().await;
        let r = self.record(id)?;
        let internal = |e: engine::error::EngineError| OpError::Internal(e.to_string());
        let was_running = self
            .session
            .info(r.engine_id)
            .is_some_and(|i| !matches!(i.state, TorrentState::Paused | TorrentState::Error(_)));
        self.session.pause(r.engine_id).await.map_err(internal)?;
        // The old folder's resume data would describe other files: it goes.
        self.session.recheck(r.engine_id).await.map_err(internal)?;
        self.session
            .update_config(r.engine_id, |c| c.dir = to.clone())
            .map_err(internal)?;
        self.session.recheck(r.engine_id).await.map_err(internal)?;
        self.update(id, |r| {
            r.save_path = to;
            r.completed_at = None;
        })?;
        if was_running {
            self.session.resume(r.engine_id).map_err(internal)?;
        }
        Ok(())
    }

    /// Fetch each wanted file's first and last pieces first, or not.
    pub async fn set_first_last(&self, id: u64, on: bool) -> OpResult<()> {
        let r = self.update(id, |r| r.first_last = on)?;
        let _ = self
            .session
            .update_config(r.engine_id, |c| c.first_last_pieces = on);
        if let Some(t) = self.session.torrent(r.engine_id) {
            t.set_first_last_pieces(on, &r.priorities)
                .await
                .map_err(|e| OpError::Internal(e.to_string()))?;
        }
        Ok(())
    }

    pub fn set_sequential(&self, id: u64, on: bool) -> OpResult<()> {
        let r = self.update(id, |r| r.sequential = on)?;
        let _ = self
            .session
            .update_config(r.engine_id, |c| c.sequential = on);
        if let Some(t) = self.session.torrent(r.engine_id) {
            t.set_sequential(on);
        }
        Ok(())
    }

    pub fn set_meta(
        &self,
        id: u64,
        category: Option<Option<String>>,
        tags: Option<Vec<String>>,
        ratio_limit: Option<Option<f64>>,
        seeding_time_limit: Option<Option<u64>>,
    ) -> OpResult<()> {
        if let Some(Some(c)) = &category {
            check_name("category", c)?;
        }
        if let Some(tags) = &tags {
            if tags.len() > MAX_TAGS {
                return Err(bad(format!("at most {MAX_TAGS} tags")));
            }
            for t in tags {
                check_name("tag", t)?;
            }
        }
        if let Some(Some(r)) = ratio_limit
            && !(r.is_finite() && r >= 0.0)
        {
            return Err(bad("ratio_limit must be a number >= 0"));
        }
        self.update(id, |r| {
            if let Some(c) = category {
                r.category = c;
            }
            if let Some(t) = tags {
                r.tags = t;
            }
            if let Some(l) = ratio_limit {
                r.ratio_limit = l;
            }
            if let Some(l) = seeding_time_limit {
                r.seeding_time_limit = l;
            }
        })?;
        Ok(())
    }

    /// Set file priorities by index; indexes must exist.
    pub async fn set_priorities(&self, id: u64, changes: &[(usize, u8)]) -> OpResult<()> {
        let r = self.record(id)?;
        let meta = self
            .session
            .metainfo(r.engine_id)
            .ok_or_else(|| OpError::Conflict("the torrent's metadata is not known yet".into()))?;
        let n = meta.info.files.len();
        let mut prios = r.priorities.clone();
        prios.resize(n, PRIORITY_NORMAL);
        for &(i, p) in changes {
            if i >= n {
                return Err(bad(format!("no file with index {i} (the torrent has {n})")));
            }
            prios[i] = p;
        }
        if let Some(t) = self.session.torrent(r.engine_id) {
            t.set_file_priorities(&prios)
                .await
                .map_err(|e| OpError::Internal(e.to_string()))?;
        }
        let p2 = prios.clone();
        let _ = self
            .session
            .update_config(r.engine_id, |c| c.file_priorities = p2);
        self.update(id, |r| r.priorities = prios)?;
        Ok(())
    }

    /// Move in the queue: top, bottom, up, down.
    pub fn queue_move(&self, id: u64, how: &str) -> OpResult<()> {
        let mut order: Vec<(u64, u64)> = {
            let inner = self.inner();
            let mut v: Vec<(u64, u64)> = inner.records.values().map(|r| (r.queue, r.id)).collect();
            v.sort();
            v
        };
        let pos = order
            .iter()
            .position(|&(_, i)| i == id)
            .ok_or_else(|| OpError::NotFound(format!("no torrent with id {id}")))?;
        let item = order.remove(pos);
        let to = match how {
            "top" => 0,
            "bottom" => order.len(),
            "up" => pos.saturating_sub(1),
            "down" => (pos + 1).min(order.len()),
            _ => return Err(bad("position must be top, bottom, up or down")),
        };
        order.insert(to, item);
        let changed: Vec<u64> = {
            let mut inner = self.inner();
            let mut changed = Vec::new();
            for (q, (_, rid)) in order.iter().enumerate() {
                if let Some(r) = inner.records.get_mut(rid)
                    && r.queue != q as u64 + 1
                {
                    r.queue = q as u64 + 1;
                    changed.push(*rid);
                }
            }
            inner.next_queue = order.len() as u64 + 1;
            changed
        };
        for rid in changed {
            self.save_id(rid);
        }
        Ok(())
    }

    pub fn categories(&self) -> BTreeMap<String, Category> {
        self.inner().categories.clone()
    }

    pub fn add_category(&self, name: &str, save_path: &str) -> OpResult<()> {
        check_name("category", name)?;
        let save_path = self.check_save_path(save_path)?;
        self.inner().categories.insert(
            name.to_string(),
            Category {
                name: name.to_string(),
                save_path,
            },
        );
        self.save_categories();
        Ok(())
    }

    pub fn remove_category(&self, name: &str) -> OpResult<()> {
        if self.inner().categories.remove(name).is_none() {
            return Err(OpError::NotFound(format!("no category {name}")));
        }
        self.save_categories();
        Ok(())
    }

    /// Note completions (for `completed_at`); called by the periodic task.
    ///
    /// Also counts `elapsed` seconds of seeding time for every torrent seeding now. One
    /// look at each torrent's state, no copy of the records: cheap with thousands.
    pub fn note_completions(&self, elapsed: u64, states: &[TorrentBrief]) {
        let newly: Vec<u64> = {
            let mut inner = self.inner();
            let mut newly = Vec::new();
            for r in inner.records.values_mut() {
                if brief(states, r.engine_id).is_some_and(|b| b.complete) {
                    r.seeding_secs += elapsed;
                    if r.completed_at.is_none() {
                        newly.push(r.id);
                    }
                }
            }
            newly
        };
        for id in newly {
            let _ = self.update(id, |r| r.completed_at = Some(now_secs()));
        }
    }

    /// Write `counters.json` (payload totals and seeding time per torrent) if it changed.
    pub fn save_counters(&self) {
        let totals: std::collections::HashMap<TorrentId, (u64, u64)> = self
            .session
            .list()
            .into_iter()
            .map(|i| (i.id, (i.stats.uploaded, i.stats.downloaded)))
            .collect();
        let bytes = {
            let mut inner = self.inner();
            let now: BTreeMap<String, Counters> = inner
                .records
                .values()
                .map(|r| {
                    let (uploaded, downloaded) =
                        totals.get(&r.engine_id).copied().unwrap_or_default();
                    let c = Counters {
                        uploaded,
                        downloaded,
                        seeding_secs: r.seeding_secs,
                    };
                    (r.info_hash.clone(), c)
                })
                .collect();
            if now == inner.saved_counters {
                return;
            }
            let bytes = serde_json::to_vec(&now).unwrap_or_default();
            inner.saved_counters = now;
            bytes
        };
        if let Err(e) = write_atomic(&self.config.state_dir.join("counters.json"), &bytes) {
            tracing::warn!(error = %e, "cannot save the torrents' counters");
        }
    }

    /// The API's torrent object.
    pub fn torrent_json(&self, r: &Record, info: &TorrentInfo) -> Value {
        serde_json::to_value(torrent_view(r, info)).unwrap_or_default()
    }

    /// Every torrent's view, by id, handed to `f`. The views borrow the records under
    /// the daemon's lock (no copy of thousands of records); `f` should be quick.
    fn with_views<R>(&self, f: impl FnOnce(Vec<TorrentView<'_>>) -> R) -> R {
        // By engine id (the session lists in id order).
        let infos = self.session.list();
        let inner = self.inner();
        let records: Vec<&Record> = inner.records.values().collect();
        // Queue positions as ranks (1 is first).
        let mut order: Vec<usize> = (0..records.len()).collect();
        order.sort_by_key(|&i| (records[i].queue, records[i].id));
        let mut rank = vec![0u64; records.len()];
        for (pos, &i) in order.iter().enumerate() {
            rank[i] = pos as u64 + 1;
        }
        let views = records
            .iter()
            .zip(rank)
            .filter_map(|(r, rank)| {
                let i = infos
                    .binary_search_by_key(&r.engine_id, |info| info.id)
                    .ok()?;
                let mut v = torrent_view(r, &infos[i]);
                v.queue_position = rank;
                Some(v)
            })
            .collect();
        f(views)
    }

    /// Every torrent as API objects, by id.
    pub fn list_json(&self) -> Vec<Value> {
        self.with_views(|views| {
            views
                .iter()
                .map(|v| serde_json::to_value(v).unwrap_or_default())
                .collect()
        })
    }

    /// The torrents `keep` keeps, as a JSON array, serialized straight from the records
    /// (no intermediate `Value`s: thousands of torrents list in milliseconds).
    pub fn list_bytes(&self, keep: impl Fn(&TorrentView<'_>) -> bool) -> Vec<u8> {
        self.with_views(|views| {
            let kept: Vec<&TorrentView<'_>> = views.iter().filter(|v| keep(v)).collect();
            let mut out = Vec::with_capacity(kept.len() * 768 + 2);
            let _ = serde_json::to_writer(&mut out, &kept);
            out
        })
    }

    pub fn one_json(&self, id: u64) -> OpResult<Value> {
        let not_found = || OpError::NotFound(format!("no torrent with id {id}"));
        let mut r = self.record(id)?;
        let info = self.session.info(r.engine_id).ok_or_else(not_found)?;
        // The queue position as a rank (1 is first), as in the list.
        r.queue = {
            let inner = self.inner();
            1 + inner
                .records
                .values()
                .filter(|o| (o.queue, o.id) < (r.queue, r.id))
                .count() as u64
        };
        Ok(self.torrent_json(&r, &info))
    }

    /// The session object.
    pub fn session_json(&self) -> Value {
        let list = self.session.list();
        let (mut down, mut up, mut dl, mut ul) = (0u64, 0u64, 0u64, 0u64);
        for i in &list {
            down += i.stats.download_rate;
            up += i.stats.upload_rate;
            dl += i.stats.downloaded;
            ul += i.stats.uploaded;
        }
        let settings = self.session.settings();
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "listen_addr": self.session.listen_addr().to_string(),
            "listen_addrs": self.session.listen_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "port_mapping": self.port_mapping.as_ref().map(|s| {
                crate::port_mapping::to_json(&s.lock().unwrap_or_else(|e| e.into_inner()))
            }),
                        "download_dir": self.prefs().download_dir,
            "download_rate": down,
            "upload_rate": up,
            "downloaded": dl,
            "uploaded": ul,
            "torrents": list.len(),
            "dht_nodes": 0,
            "download_limit": settings.download_limit,
            "upload_limit": settings.upload_limit,
            "encryption": settings.encryption.as_str(),
        })
    }

    /// Per-file objects.
    pub fn files_json(&self, id: u64) -> OpResult<Vec<Value>> {
        let r = self.record(id)?;
        let Some(meta) = self.session.metainfo(r.engine_id) else {
            return Ok(Vec::new());
        };
        let have = self.have_pieces(&r, &meta);
        let info = &meta.info;
        let plen = info.piece_length.max(1);
        Ok(info
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let (start, end) = (f.offset, f.offset + f.length);
                let mut got = 0u64;
                if f.length > 0 {
                    for p in start / plen..=(end - 1) / plen {
                        if have.get(p as usize).copied().unwrap_or(false) {
                            let ps = p * plen;
                            let pe = ps + info.piece_size(p);
                            got += pe.min(end).saturating_sub(ps.max(start));
                        }
                    }
                }
                json!({
                    "index": i,
                    "path": if info.single_file { info.name.clone() } else if r.no_root.is_some() { f.display_path() } else { format!("{}/{}", info.name, f.display_path()) },
                    "size": f.length,
                    "have_bytes": got,
                    "progress": if f.length == 0 { 1.0 } else { got as f64 / f.length as f64 },
                    "priority": priority_name(r.priorities.get(i).copied().unwrap_or(PRIORITY_NORMAL)),
                })
            })
            .collect())
    }

    /// Which pieces are verified (for a torrent not live: none known, or all once complete).
    pub fn have_pieces(&self, r: &Record, meta: &Metainfo) -> Vec<bool> {
        let n = meta.info.pieces.len();
        match self.session.torrent(r.engine_id) {
            Some(t) => {
                let bf = t.have();
                (0..n as u32).map(|i| bf.get(i)).collect()
            }
            None => vec![r.completed_at.is_some(); n],
        }
    }

    pub fn trackers_json(&self, id: u64) -> OpResult<Vec<Value>> {
        let r = self.record(id)?;
        if let Some(t) = self.session.torrent(r.engine_id) {
            return Ok(t
                .tracker_status()
                .into_iter()
                .map(|s| {
                    let status = if s.last_error.is_some() {
                        "error"
                    } else if s.successes > 0 {
                        "working"
                    } else {
                        "updating"
                    };
                    json!({
                        "url": s.url, "tier": s.tier, "status": status,
                        "message": s.last_error.or(s.warning).unwrap_or_default(),
                        "seeds": s.seeders, "leechers": s.leechers,
                        "peers": s.peers_received, "next_announce": null,
                    })
                })
                .collect());
        }
        Ok(self.listed_trackers(&r, "not_contacted"))
    }

    /// The torrent's trackers as its metainfo lists them, each with `status`.
    pub fn listed_trackers(&self, r: &Record, status: &str) -> Vec<Value> {
        let tiers = self
            .session
            .metainfo(r.engine_id)
            .map(|m| m.trackers.clone())
            .unwrap_or_default();
        tiers
            .iter()
            .enumerate()
            .flat_map(|(tier, urls)| {
                urls.iter().map(move |u| {
                    json!({"url": u, "tier": tier, "status": status, "message": "",
                           "seeds": null, "leechers": null, "peers": 0, "next_announce": null})
                })
            })
            .collect()
    }

    pub fn pieces_json(&self, id: u64) -> OpResult<Value> {
        let r = self.record(id)?;
        let Some(meta) = self.session.metainfo(r.engine_id) else {
            return Ok(
                json!({"piece_count": 0, "piece_length": 0, "have": "", "availability": []}),
            );
        };
        let have = self.have_pieces(&r, &meta);
        // How many connected peers have each piece (none known while it is not live).
        let availability = self
            .session
            .torrent(r.engine_id)
            .map(|t| t.availability())
            .unwrap_or_default();
        let mut bytes = vec![0u8; have.len().div_ceil(8)];
        for (i, h) in have.iter().enumerate() {
            if *h {
                bytes[i / 8] |= 0x80 >> (i % 8);
            }
        }
        Ok(json!({
            "piece_count": have.len(),
            "piece_length": meta.info.piece_length,
            "have": base64::engine::general_purpose::STANDARD.encode(&bytes),
            "availability": availability,
        }))
    }

    /// The detail object: the torrent plus files, trackers and metadata.
    pub fn detail_json(&self, id: u64) -> OpResult<Value> {
        let mut v = self.one_json(id)?;
        let r = self.record(id)?;
        let meta = self.session.metainfo(r.engine_id);
        v["files"] = Value::from(self.files_json(id)?);
        v["trackers"] = Value::from(self.trackers_json(id)?);
        v["piece_count"] = json!(meta.as_ref().map(|m| m.info.pieces.len()).unwrap_or(0));
        v["piece_length"] = json!(meta.as_ref().map(|m| m.info.piece_length).unwrap_or(0));
        v["comment"] = json!(meta.as_ref().and_then(|m| m.comment.clone()));
        v["created_by"] = json!(meta.as_ref().and_then(|m| m.created_by.clone()));
        v["creation_date"] = json!(meta.as_ref().and_then(|m| m.creation_date));
        Ok(v)
    }
}

/// The API's torrent object (`docs/api.md`), borrowed from a record and its engine info.
#[derive(Debug, Serialize)]
pub struct TorrentView<'a> {
    pub id: u64,
    pub info_hash: &'a str,
    pub name: &'a str,
    pub state: &'static str,
    pub error: Option<&'a str>,
    pub progress: f64,
    pub size: u64,
    pub wanted_size: u64,
    pub have_bytes: u64,
    pub save_path: &'a Path,
    pub content_path: Option<ContentPath<'a>>,
    pub download_rate: u64,
    pub upload_rate: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub ratio: f64,
    pub peers: usize,
    pub seeds: usize,
    pub eta: Option<u64>,
    pub added_at: u64,
    pub completed_at: Option<u64>,
    pub category: Option<&'a str>,
    pub tags: &'a [String],
    pub queue_position: u64,
    pub download_limit: u64,
    pub upload_limit: u64,
    pub sequential: bool,
    pub ratio_limit: Option<f64>,
    pub seeding_time_limit: Option<u64>,
    pub seeding_time: u64,
    pub private: bool,
    /// The root CID of its content, once the IPFS bridge has imported it.
    pub ipfs_cid: Option<&'a str>,
}

/// Torrent `id`'s entry in the session's states (listed in id order).
fn brief(states: &[TorrentBrief], id: TorrentId) -> Option<&TorrentBrief> {
    states
        .binary_search_by_key(&id, |b| b.id)
        .ok()
        .map(|i| &states[i])
}

/// `SAVE_PATH/NAME`, written out only when serialized.
#[derive(Debug)]
/// The save folder, joined with the torrent's top folder or file name unless the
/// torrent was added without one (`contentLayout=NoSubfolder`).
pub struct ContentPath<'a>(&'a Path, Option<&'a str>);

impl Serialize for ContentPath<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.1 {
            Some(name) => s.collect_str(&self.0.join(name).display()),
            None => s.collect_str(&self.0.display()),
        }
    }
}

fn torrent_view<'a>(r: &'a Record, info: &'a TorrentInfo) -> TorrentView<'a> {
    let complete = info.complete;
    let (state, error) = match &info.state {
        TorrentState::Metadata => ("metadata", None),
        TorrentState::Checking => ("checking", None),
        TorrentState::Queued => ("queued", None),
        TorrentState::Paused if !r.paused => ("queued", None),
        TorrentState::Paused => ("paused", None),
        TorrentState::Live if complete => ("seeding", None),
        TorrentState::Live => ("downloading", None),
        TorrentState::Error(e) => ("error", Some(e.as_str())),
    };
    let meta = &info.meta;
    let s = &info.stats;
    let (size, wanted) = match meta {
        Some(m) => {
            let wanted: u64 = m
                .info
                .files
                .iter()
                .enumerate()
                .filter(|(i, f)| {
                    !f.attr.pad && r.priorities.get(*i).copied() != Some(PRIORITY_SKIP)
                })
                .map(|(_, f)| f.length)
                .sum();
            (m.info.total_length, wanted)
        }
        None => (0, 0),
    };
    let have = s.bytes_have.min(size);
    let progress = if complete || (r.completed_at.is_some() && have >= wanted) {
        1.0
    } else if wanted == 0 {
        0.0
    } else {
        (have as f64 / wanted as f64).min(1.0)
    };
    let eta = if state == "downloading" && s.download_rate > 0 {
        Some(wanted.saturating_sub(have) / s.download_rate)
    } else {
        None
    };
    TorrentView {
        id: r.id,
        info_hash: &r.info_hash,
        name: r.no_root.as_deref().unwrap_or(&info.name),
        state,
        error,
        progress,
        size,
        wanted_size: wanted,
        have_bytes: have,
        save_path: &r.save_path,
        content_path: meta.as_ref().map(|m| {
            ContentPath(
                &r.save_path,
                r.no_root.is_none().then_some(m.info.name.as_str()),
            )
        }),
        download_rate: s.download_rate,
        upload_rate: s.upload_rate,
        downloaded: s.downloaded,
        uploaded: s.uploaded,
        ratio: if s.downloaded > 0 {
            s.uploaded as f64 / s.downloaded as f64
        } else {
            0.0
        },
        peers: s.peers,
        seeds: s.seeds,
        eta,
        added_at: r.added_at,
        completed_at: r.completed_at,
        category: r.category.as_deref(),
        tags: &r.tags,
        queue_position: r.queue,
        download_limit: r.download_limit,
        upload_limit: r.upload_limit,
        sequential: r.sequential,
        ratio_limit: r.ratio_limit,
        seeding_time_limit: r.seeding_time_limit,
        seeding_time: r.seeding_secs,
        private: meta.as_ref().is_some_and(|m| m.info.private),
        ipfs_cid: r.ipfs_cid.as_deref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn saved_settings_override_the_config_and_bad_values_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            state_dir: dir.path().join("state"),
            download_dir: dir.path().join("dl"),
            ratio_limit: Some(2.0),
            ..Config::default()
        };
        assert_eq!(load_prefs(&config), Prefs::from_config(&config));
        std::fs::create_dir_all(&config.state_dir).unwrap();
        let saved = json!({
            "download_limit": 1000,
            "max_active_torrents": 3,
            "seeding_action": "remove_with_data",
            "ratio_limit": -1.0,
            "download_dir": "/elsewhere",
            "max_connections": 0,
            "unknown": true,
        });
        std::fs::write(config.state_dir.join("settings.json"), saved.to_string()).unwrap();
        let p = load_prefs(&config);
        assert_eq!(p.download_limit, 1000);
        assert_eq!(p.max_active_torrents, 3);
        assert_eq!(p.seeding_action, SeedAction::RemoveWithData);
        assert_eq!(p.ratio_limit, Some(2.0), "a bad ratio keeps the config's");
        assert_eq!(
            p.download_dir,
            absolute(&config.download_dir),
            "outside: skipped"
        );
        assert!(p.max_connections > 0);
    }

    #[test]
    fn priorities_round_trip() {
        for n in ["skip", "normal", "high"] {
            assert_eq!(priority_name(priority_from_name(n).unwrap()), n);
        }
        assert!(priority_from_name("urgent").is_none());
    }
}
