//! The daemon's torrents: the engine session plus what the daemon keeps for each torrent
//! (its source, folder, category, tags, limits, priorities, paused flag), persisted as one
//! JSON file per torrent in the state folder, written atomically (temp, fsync, rename), so
//! a stop and start, or a crash, brings every torrent back in its state.

use super::config::{Config, absolute};
use base64::Engine as _;
use engine::session::{AddSource, AddTorrent, Session, TorrentId, TorrentInfo, TorrentState};
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
/// At most this many peers given with an add.
const MAX_PEERS: usize = 64;

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
    /// The root CID of its content, once the IPFS bridge has imported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipfs_cid: Option<String>,
    /// The engine's id for it in this run.
    #[serde(skip)]
    pub engine_id: TorrentId,
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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Category {
    pub name: String,
    pub save_path: PathBuf,
}

struct Inner {
    records: BTreeMap<u64, Record>,
    categories: BTreeMap<String, Category>,
    next_id: u64,
    next_queue: u64,
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
                next_id,
                next_queue,
            })),
            ops: Arc::new(tokio::sync::Mutex::new(())),
            queue_lock: Arc::new(tokio::sync::Mutex::new(())),
        };
        // Every torrent starts paused in the engine; the queue's first pass starts those
        // that may run.
        for mut r in records {
            match daemon.start_record(&r, true) {
                Ok(eid) => {
                    r.engine_id = eid;
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
                let meta = Metainfo::from_bytes(&bytes)
                    .map_err(|e| bad(format!("not a valid .torrent: {e}")))?;
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
            self.config.download_dir.join(path)
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
        let peers = req
            .peers
            .iter()
            .map(|p| {
                p.parse::<SocketAddr>()
                    .map_err(|_| bad(format!("not a peer address (IP:PORT): {p}")))
            })
            .collect::<OpResult<Vec<_>>>()?;
        let save_path = match (&req.save_path, &req.category) {
            (Some(p), _) => self.check_save_path(p)?,
            (None, Some(c)) => match self.inner().categories.get(c) {
                Some(cat) => cat.save_path.clone(),
                None => absolute(&self.config.download_dir),
            },
            (None, None) => absolute(&self.config.download_dir),
        };
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
            ipfs_cid: None,
            engine_id: 0,
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
        self.apply_queue().await;
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
        let _op = self.ops.lock().await;
        let r = self.record(id)?;
        let res = self.session.remove(r.engine_id, delete_data).await;
        self.inner().records.remove(&id);
        let _ = std::fs::remove_file(self.torrents_dir().join(format!("{}.json", r.info_hash)));
        drop(_op);
        self.apply_queue().await;
        res.map_err(|e| OpError::Internal(format!("removed, but: {e}")))
    }

    /// One pass of the queue and the seeding limits: in queue order, the first
    /// `max_active_downloads` incomplete and `max_active_seeds` complete torrents that are
    /// not paused by the user run, the others wait (paused in the engine, shown `queued`);
    /// a seed past its ratio or seeding time is paused.
    pub async fn apply_queue(&self) {
        let _q = self.queue_lock.lock().await;
        let infos: std::collections::HashMap<TorrentId, TorrentInfo> =
            self.session.list().into_iter().map(|i| (i.id, i)).collect();
        let mut records = self.records();
        records.sort_by_key(|r| (r.queue, r.id));
        let slots = |n: usize| if n == 0 { usize::MAX } else { n };
        let mut downloads = slots(self.config.max_active_downloads);
        let mut seeds = slots(self.config.max_active_seeds);
        let now = now_secs();
        for r in records {
            let Some(info) = infos.get(&r.engine_id) else {
                continue;
            };
            if r.paused || matches!(info.state, TorrentState::Error(_)) {
                continue;
            }
            let engine_paused = info.state == TorrentState::Paused;
            let complete = r.completed_at.is_some();
            if complete && self.seeding_done(&r, info, now) {
                tracing::info!(id = r.id, "seeding limit reached: paused");
                let _ = self.pause(r.id).await;
                continue;
            }
            let slot = if complete { &mut seeds } else { &mut downloads };
            let run = if *slot > 0 {
                *slot -= 1;
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
    }

    /// Has this complete torrent seeded enough (its limits, else the session's)?
    fn seeding_done(&self, r: &Record, info: &TorrentInfo, now: u64) -> bool {
        let ratio_limit = r.ratio_limit.or(self.config.ratio_limit);
        let time_limit = r.seeding_time_limit.or(self.config.seeding_time_limit);
        if let Some(limit) = ratio_limit {
            let base = info.stats.downloaded.max(info.stats.total_bytes).max(1);
            if info.stats.uploaded as f64 / base as f64 >= limit {
                return true;
            }
        }
        if let (Some(limit), Some(done)) = (time_limit, r.completed_at)
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
    pub fn note_completions(&self) {
        let records = self.records();
        for r in records {
            if r.completed_at.is_none()
                && let Some(t) = self.session.torrent(r.engine_id)
                && t.is_complete()
            {
                let _ = self.update(r.id, |r| r.completed_at = Some(now_secs()));
            }
        }
    }

    /// The API's torrent object.
    pub fn torrent_json(&self, r: &Record, info: &TorrentInfo) -> Value {
        let live = self.session.torrent(r.engine_id);
        let complete = live.as_ref().is_some_and(|t| t.is_complete());
        let (state, error) = match &info.state {
            TorrentState::Metadata => ("metadata", None),
            TorrentState::Checking => ("checking", None),
            TorrentState::Queued => ("queued", None),
            TorrentState::Paused if !r.paused => ("queued", None),
            TorrentState::Paused => ("paused", None),
            TorrentState::Live if complete => ("seeding", None),
            TorrentState::Live => ("downloading", None),
            TorrentState::Error(e) => ("error", Some(e.clone())),
        };
        let meta = self.session.metainfo(r.engine_id);
        let s = &info.stats;
        let (size, wanted) = match &meta {
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
        let content_path = meta
            .as_ref()
            .map(|m| r.save_path.join(&m.info.name).display().to_string());
        let ratio = if s.downloaded > 0 {
            s.uploaded as f64 / s.downloaded as f64
        } else {
            0.0
        };
        json!({
            "id": r.id,
            "info_hash": r.info_hash,
            "name": info.name,
            "state": state,
            "error": error,
            "progress": progress,
            "size": size,
            "wanted_size": wanted,
            "have_bytes": have,
            "save_path": r.save_path,
            "content_path": content_path,
            "download_rate": s.download_rate,
            "upload_rate": s.upload_rate,
            "downloaded": s.downloaded,
            "uploaded": s.uploaded,
            "ratio": ratio,
            "peers": s.peers,
            "seeds": s.seeds,
            "eta": eta,
            "added_at": r.added_at,
            "completed_at": r.completed_at,
            "category": r.category,
            "tags": r.tags,
            "queue_position": r.queue,
            "download_limit": r.download_limit,
            "upload_limit": r.upload_limit,
            "sequential": r.sequential,
            "ratio_limit": r.ratio_limit,
            "seeding_time_limit": r.seeding_time_limit,
            "private": meta.as_ref().is_some_and(|m| m.info.private),
            "ipfs_cid": r.ipfs_cid,
        })
    }

    /// Every torrent as API objects, by id.
    pub fn list_json(&self) -> Vec<Value> {
        let infos: std::collections::HashMap<TorrentId, TorrentInfo> =
            self.session.list().into_iter().map(|i| (i.id, i)).collect();
        let mut records = self.records();
        records.sort_by_key(|r| r.id);
        // Queue positions as ranks (1 is first).
        let mut order: Vec<(u64, u64)> = records.iter().map(|r| (r.queue, r.id)).collect();
        order.sort();
        let rank: std::collections::HashMap<u64, u64> = order
            .iter()
            .enumerate()
            .map(|(i, (_, id))| (*id, i as u64 + 1))
            .collect();
        records
            .iter_mut()
            .filter_map(|r| {
                r.queue = rank.get(&r.id).copied().unwrap_or(0);
                Some(self.torrent_json(r, infos.get(&r.engine_id)?))
            })
            .collect()
    }

    pub fn one_json(&self, id: u64) -> OpResult<Value> {
        self.list_json()
            .into_iter()
            .find(|v| v["id"] == id)
            .ok_or_else(|| OpError::NotFound(format!("no torrent with id {id}")))
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
            "download_dir": absolute(&self.config.download_dir),
            "download_rate": down,
            "upload_rate": up,
            "downloaded": dl,
            "uploaded": ul,
            "torrents": list.len(),
            "dht_nodes": 0,
            "download_limit": settings.download_limit,
            "upload_limit": settings.upload_limit,
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
                    "path": if info.single_file { info.name.clone() } else { format!("{}/{}", info.name, f.display_path()) },
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
            "availability": [],
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
    fn priorities_round_trip() {
        for n in ["skip", "normal", "high"] {
            assert_eq!(priority_name(priority_from_name(n).unwrap()), n);
        }
        assert!(priority_from_name("urgent").is_none());
    }
}
