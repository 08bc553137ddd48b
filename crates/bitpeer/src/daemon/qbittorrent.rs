//! The qBittorrent WebUI API v2 (`/api/v2/...`), presenting as qBittorrent v5.1.4 with
//! API 2.11.4, on the daemon's state: what Sonarr, Radarr, Prowlarr, Flood and scripts on
//! `qbittorrent-api` call. Parameters come from the query string and the body (form or
//! multipart), booleans in any case. Auth: the `SID` cookie of `auth/login`, HTTP Basic or
//! a bearer API key; with no credentials configured (loopback only) everything is open,
//! as qBittorrent is with its local-auth bypass. Unauthenticated calls get 403.

use super::api::{random_token, same_secret};
use super::guard;
use super::state::{
    AddRequest, Daemon, OpError, PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_SKIP, Record, SeedAction,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use webform::parse_bool;

pub const QB_VERSION: &str = "v5.1.4";
pub const QB_API_VERSION: &str = "2.11.4";
/// `eta` when it is not known.
const ETA_UNKNOWN: u64 = 8_640_000;
/// At most this many live sessions (`SID`s); the oldest goes first.
const MAX_SIDS: usize = 256;
/// A session unused this long is over (qBittorrent's `WebUI\SessionTimeout` default).
const SID_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);
/// At most this many parameters, torrent files and created tags.
const MAX_PARAMS: usize = 256;
const MAX_FILES: usize = 64;
/// Links (magnets, info-hashes, .torrent URLs) in one `torrents/add`; each URL is fetched in
/// turn, so the count bounds the request's time.
const MAX_URLS: usize = 1000;
/// Of those, .torrent URLs to fetch (up to 30 s each).
const MAX_FETCHED_URLS: usize = 32;
/// `sync/maindata` snapshots kept, one per client (the least recently used goes first).
const MAX_SYNC_CLIENTS: usize = 16;
/// Limits qBittorrent shows for "no limit".
const UNLIMITED_RATIO: f64 = 1e300;
/// A count or connection limit taken as "none".
const NO_LIMIT: usize = 65_535;

#[derive(Clone)]
struct Qb {
    daemon: Daemon,
    /// Fetches `urls` that are http(s) links to .torrent files.
    http: Option<reqwest::Client>,
    /// Live sessions and when each was last used.
    sids: Arc<Mutex<Vec<(String, std::time::Instant)>>>,
    rid: Arc<AtomicU64>,
    /// The last `sync/maindata` answer of each client, to answer the next as a diff.
    syncs: Arc<Mutex<Vec<SyncState>>>,
}

/// What one client was last told by `sync/maindata`.
struct SyncState {
    client: String,
    rid: u64,
    seen: Seen,
}

/// The full state `sync/maindata` describes.
#[derive(Clone, Default)]
struct MainData {
    torrents: Map<String, Value>,
    categories: Map<String, Value>,
    tags: BTreeSet<String>,
    server: Map<String, Value>,
}

/// What a client was told, kept small: each torrent as the hashes of its fields (a
/// torrent object is some 60 fields; thousands of torrents are kept per client), the rest
/// as it was.
struct Seen {
    torrents: HashMap<String, Vec<(u64, u64)>>,
    categories: Map<String, Value>,
    tags: BTreeSet<String>,
    server: Map<String, Value>,
}

fn hash_of<T: std::hash::Hash + ?Sized>(x: &T) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(x)
}

/// An object's fields as (key hash, value hash), sorted by key hash.
fn digest(v: &Value) -> Vec<(u64, u64)> {
    let mut d: Vec<(u64, u64)> = v
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (hash_of(k), hash_of(v))).collect())
        .unwrap_or_default();
    d.sort_unstable();
    d
}

impl Seen {
    fn of(m: &MainData) -> Seen {
        Seen {
            torrents: m
                .torrents
                .iter()
                .map(|(h, t)| (h.clone(), digest(t)))
                .collect(),
            categories: m.categories.clone(),
            tags: m.tags.clone(),
            server: m.server.clone(),
        }
    }
}

/// The fields of `now` that are not in `seen` (new, or with another value).
fn changed_fields(seen: &[(u64, u64)], now: &Map<String, Value>) -> Map<String, Value> {
    now.iter()
        .filter(|(k, v)| {
            let kh = hash_of(*k);
            match seen.binary_search_by_key(&kh, |&(k, _)| k) {
                Ok(i) => seen[i].1 != hash_of(*v),
                Err(_) => true,
            }
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The router, to be nested at `/api/v2`.
pub fn router(daemon: Daemon, http: Option<reqwest::Client>) -> Router {
    let qb = Qb {
        daemon,
        http,
        sids: Arc::new(Mutex::new(Vec::new())),
        rid: Arc::new(AtomicU64::new(0)),
        syncs: Arc::new(Mutex::new(Vec::new())),
    };
    Router::new()
        .route("/{group}/{method}", any(dispatch))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not Found") })
        .layer(middleware::from_fn_with_state(qb.clone(), auth))
        .with_state(qb)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Basic credentials or a bearer key from the `Authorization` header, checked against the
/// daemon's (shared with the Transmission endpoint).
pub fn authorization_ok(daemon: &Daemon, headers: &HeaderMap) -> Option<bool> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    if let Some(b64) = v.strip_prefix("Basic ") {
        let ok = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|s| s.split_once(':').map(|(u, p)| credentials_ok(daemon, u, p)))
            .unwrap_or(false);
        return Some(ok);
    }
    if let Some(key) = v.strip_prefix("Bearer ") {
        return Some(
            daemon
                .config
                .api_key
                .as_deref()
                .is_some_and(|k| !k.is_empty() && same_secret(k.as_bytes(), key.trim().as_bytes())),
        );
    }
    None
}

/// [`authorization_ok`] under the login ban: a banned address is refused before its
/// credentials are compared, and each Basic or bearer attempt counts.
pub fn authorization_checked(
    daemon: &Daemon,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Option<bool> {
    headers.get(header::AUTHORIZATION)?;
    let mut answer = None;
    let checked = daemon.login_guard.attempt(peer, || {
        answer = authorization_ok(daemon, headers);
        answer == Some(true)
    });
    match checked {
        Err(()) => Some(false),
        Ok(_) => answer,
    }
}

/// The caller's address, when the server recorded it.
pub fn peer_ip(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

pub fn credentials_ok(daemon: &Daemon, user: &str, pass: &str) -> bool {
    match (&daemon.config.api_user, &daemon.config.api_password) {
        (Some(u), Some(p)) if !p.is_empty() => {
            let a = same_secret(u.as_bytes(), user.as_bytes());
            let b = same_secret(p.as_bytes(), pass.as_bytes());
            a & b
        }
        _ => false,
    }
}

fn sid_of(headers: &HeaderMap) -> Option<String> {
    for cookie in headers.get_all(header::COOKIE) {
        let Ok(s) = cookie.to_str() else { continue };
        for part in s.split(';') {
            if let Some(v) = part.trim().strip_prefix("SID=") {
                return Some(v.to_string());
            }
        }
    }
    None
}

fn logged_in(qb: &Qb, headers: &HeaderMap, peer: Option<IpAddr>) -> bool {
    if !qb.daemon.config.has_credentials() {
        return true;
    }
    if let Some(ok) = authorization_checked(&qb.daemon, headers, peer) {
        return ok;
    }
    let Some(sid) = sid_of(headers) else {
        return false;
    };
    sid_live(&mut lock(&qb.sids), &sid, std::time::Instant::now())
}

/// Is `sid` a live session at `now`? Sessions idle for [`SID_IDLE`] end; a use renews one.
fn sid_live(
    sids: &mut Vec<(String, std::time::Instant)>,
    sid: &str,
    now: std::time::Instant,
) -> bool {
    sids.retain(|(_, used)| now.saturating_duration_since(*used) < SID_IDLE);
    match sids
        .iter_mut()
        .find(|(s, _)| same_secret(s.as_bytes(), sid.as_bytes()))
    {
        Some((_, used)) => {
            *used = now;
            true
        }
        None => false,
    }
}

async fn auth(State(qb): State<Qb>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let open = path == "/auth/login" || path == "/app/webapiVersion";
    if !open && !logged_in(&qb, req.headers(), peer_ip(&req)) {
        return text(StatusCode::FORBIDDEN, "Forbidden");
    }
    next.run(req).await
}

/// The parameters of a call: query string, then the body's form or multipart fields.
#[derive(Default)]
struct Params {
    pairs: Vec<(String, String)>,
    files: Vec<Vec<u8>>,
}

impl Params {
    fn get(&self, k: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
    fn req(&self, k: &str) -> Result<&str, Fail> {
        self.get(k)
            .ok_or_else(|| fail(StatusCode::BAD_REQUEST, &format!("Missing {k}")))
    }
    /// A boolean in any case; absent or unreadable is `None`.
    fn flag(&self, k: &str) -> Option<bool> {
        self.get(k).and_then(parse_bool)
    }
}

fn form_error(e: webform::FormError) -> Fail {
    let m = match e {
        webform::FormError::TooManyParams => "Too many parameters",
        webform::FormError::TooManyFiles => "Too many files",
        webform::FormError::BadEncoding => "Bad form encoding",
        webform::FormError::NotUtf8 => "A field is not UTF-8",
        webform::FormError::BadMultipart => "Bad multipart body",
    };
    fail(StatusCode::BAD_REQUEST, m)
}

async fn read_params(req: Request) -> Result<Params, Fail> {
    let mut p = Params::default();
    if let Some(q) = req.uri().query() {
        webform::parse_form(q, &mut p.pairs, MAX_PARAMS).map_err(form_error)?;
    }
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // Bounded by the router's body limit (413 past it).
    let body = Bytes::from_request(req, &())
        .await
        .map_err(|e| fail(e.status(), "Cannot read the body"))?;
    if ctype
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        let mut fields = webform::Fields {
            pairs: std::mem::take(&mut p.pairs),
            files: Vec::new(),
        };
        let limits = webform::Limits {
            max_params: MAX_PARAMS,
            max_files: MAX_FILES,
        };
        webform::parse_multipart(body, &ctype, limits, &mut fields).map_err(form_error)?;
        p.pairs = fields.pairs;
        p.files = fields.files;
    } else if !body.is_empty() {
        let s = std::str::from_utf8(&body)
            .map_err(|_| fail(StatusCode::BAD_REQUEST, "The body is not UTF-8"))?;
        webform::parse_form(s.trim(), &mut p.pairs, MAX_PARAMS).map_err(form_error)?;
    }
    Ok(p)
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn ok_empty() -> Response {
    text(StatusCode::OK, "")
}

fn json_res(v: Value) -> Response {
    axum::Json(v).into_response()
}

fn op_error(e: OpError) -> Fail {
    Box::new(match e {
        OpError::BadRequest(m) => text(StatusCode::BAD_REQUEST, &m),
        OpError::NotFound(m) => text(StatusCode::NOT_FOUND, &m),
        OpError::Conflict(m) => text(StatusCode::CONFLICT, &m),
        OpError::Internal(m) => text(StatusCode::INTERNAL_SERVER_ERROR, &m),
    })
}

/// The records a `hashes` parameter names: `all`, or `|`-separated info-hashes (unknown
/// ones skipped, as qBittorrent does).
pub fn select(daemon: &Daemon, hashes: &str) -> Vec<Record> {
    let records = daemon.records();
    if hashes.trim().eq_ignore_ascii_case("all") {
        return records;
    }
    let wanted: std::collections::HashSet<String> = hashes
        .split('|')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    records
        .into_iter()
        .filter(|r| wanted.contains(&r.info_hash))
        .collect()
}

fn one(daemon: &Daemon, hash: &str) -> Result<Record, Fail> {
    let h = hash.trim().to_ascii_lowercase();
    daemon
        .records()
        .into_iter()
        .find(|r| r.info_hash == h)
        .ok_or_else(|| fail(StatusCode::NOT_FOUND, "Torrent hash was not found"))
}

/// The daemon's torrent objects with their records, by info-hash.
pub fn snapshot(daemon: &Daemon) -> Vec<(Record, Value)> {
    let records: HashMap<u64, Record> = daemon.records().into_iter().map(|r| (r.id, r)).collect();
    daemon
        .list_json()
        .into_iter()
        .filter_map(|v| {
            let r = records.get(&v["id"].as_u64()?)?.clone();
            Some((r, v))
        })
        .collect()
}

fn qb_state(r: &Record, v: &Value) -> &'static str {
    let complete = v["progress"].as_f64().unwrap_or(0.0) >= 1.0;
    let down = v["download_rate"].as_u64().unwrap_or(0);
    let up = v["upload_rate"].as_u64().unwrap_or(0);
    match v["state"].as_str().unwrap_or("") {
        "metadata" if r.force => "forcedMetaDL",
        "metadata" => "metaDL",
        "checking" if complete => "checkingUP",
        "checking" => "checkingDL",
        "queued" if complete => "queuedUP",
        "queued" => "queuedDL",
        "paused" if complete => "stoppedUP",
        "paused" => "stoppedDL",
        "downloading" if r.force => "forcedDL",
        "downloading" if down == 0 => "stalledDL",
        "downloading" => "downloading",
        "seeding" if r.force => "forcedUP",
        "seeding" if up == 0 => "stalledUP",
        "seeding" => "uploading",
        "error" => "error",
        _ => "unknown",
    }
}

pub fn ratio_limit_out(l: Option<f64>) -> f64 {
    match l {
        None => -2.0,
        Some(x) if x >= UNLIMITED_RATIO => -1.0,
        Some(x) => x,
    }
}

/// A torrent as `torrents/info` shows it.
fn qb_torrent(daemon: &Daemon, r: &Record, v: &Value) -> Value {
    let now = super::state::now_secs();
    let size = v["wanted_size"].as_u64().unwrap_or(0);
    let total = v["size"].as_u64().unwrap_or(0);
    let have = v["have_bytes"].as_u64().unwrap_or(0);
    let progress = v["progress"].as_f64().unwrap_or(0.0);
    let completed = if progress >= 1.0 {
        size
    } else {
        have.min(size)
    };
    let seeding_time = r.completed_at.map(|c| now.saturating_sub(c)).unwrap_or(0);
    let prefs = daemon.prefs();
    let queueing = prefs.queueing;
    let name = v["name"].as_str().unwrap_or("").to_string();
    let save = r.save_path.display().to_string();
    let content = v["content_path"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| save.clone());
    let magnet = format!("magnet:?xt=urn:btih:{}&dn={}", r.info_hash, urlish(&name));
    let seeding_limit = match r.seeding_time_limit {
        None => -2,
        Some(u64::MAX) => -1,
        Some(s) => (s / 60) as i64,
    };
    let out = json!({
        "hash": r.info_hash,
        "infohash_v1": r.info_hash,
        "infohash_v2": "",
        "name": name,
        "magnet_uri": magnet,
        "size": size,
        "total_size": total,
        "progress": progress,
        "dlspeed": v["download_rate"],
        "upspeed": v["upload_rate"],
        "priority": if queueing { v["queue_position"].as_u64().unwrap_or(0) as i64 } else { 0 },
        "num_seeds": v["seeds"],
        "num_complete": v["seeds"],
        "num_leechs": v["peers"].as_u64().unwrap_or(0).saturating_sub(v["seeds"].as_u64().unwrap_or(0)),
        "num_incomplete": 0,
        "ratio": v["ratio"],
        "eta": v["eta"].as_u64().unwrap_or(ETA_UNKNOWN),
        "state": qb_state(r, v),
        "seq_dl": r.sequential,
        "f_l_piece_prio": r.first_last,
        "category": r.category.clone().unwrap_or_default(),
        "tags": r.tags.join(","),
        "super_seeding": false,
        "force_start": r.force,
        "save_path": save,
        "download_path": "",
        "content_path": content,
        "root_path": content,
        "added_on": r.added_at,
        "completion_on": r.completed_at.map(|c| c as i64).unwrap_or(-1),
        "tracker": "",
        "trackers_count": 0,
        "dl_limit": r.download_limit,
        "up_limit": r.upload_limit,
    });
    let more = json!({
        "downloaded": v["downloaded"],
        "uploaded": v["uploaded"],
        "downloaded_session": v["downloaded"],
        "uploaded_session": v["uploaded"],
        "amount_left": size.saturating_sub(completed),
        "completed": completed,
        "max_ratio": ratio_limit_out(r.ratio_limit.or(prefs.ratio_limit)),
        "max_seeding_time": prefs.seeding_time_limit.map(|s| (s / 60) as i64).unwrap_or(-1),
        "max_inactive_seeding_time": -1,
        "ratio_limit": ratio_limit_out(r.ratio_limit),
        "seeding_time_limit": seeding_limit,
        "inactive_seeding_time_limit": -2,
        "seen_complete": r.completed_at.unwrap_or(0),
        "last_activity": now,
        "time_active": now.saturating_sub(r.added_at),
        "seeding_time": seeding_time,
        "auto_tmm": false,
        "availability": daemon
            .session
            .torrent(r.engine_id)
            .map_or(-1.0, |t| t.distributed_copies()),
        "private": v["private"],
        "has_metadata": total > 0,
        "popularity": 0,
        "reannounce": 0,
        "comment": "",
    });
    merge(out, more)
}

/// `a` with `b`'s keys added (json! objects too big for one macro call).
pub fn merge(mut a: Value, b: Value) -> Value {
    if let (Value::Object(m), Value::Object(more)) = (&mut a, b) {
        m.extend(more);
    }
    a
}

fn urlish(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn queueing_enabled(daemon: &Daemon) -> bool {
    daemon.prefs().queueing
}

/// A count where 0 means "no limit", as qBittorrent shows it (-1).
fn count_out(n: usize) -> i64 {
    if n == 0 || n >= NO_LIMIT {
        -1
    } else {
        n as i64
    }
}

/// qBittorrent's count (-1 or 0: no limit) as the daemon keeps it (0: no limit).
fn count_in(v: &Value) -> Option<usize> {
    let n = num(v)?;
    Some(if n <= 0.0 {
        0
    } else {
        n.min(NO_LIMIT as f64) as usize
    })
}

/// A connection limit (-1 or 0: none, kept as a large number).
fn connections_in(v: &Value) -> Option<usize> {
    count_in(v).map(|n| if n == 0 { NO_LIMIT } else { n })
}

/// A number, or a string holding one (clients differ).
fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

fn flag_of(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool(s),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        _ => None,
    }
}

fn seed_action_out(a: SeedAction) -> u8 {
    match a {
        SeedAction::Stop => 0,
        SeedAction::Remove => 1,
        SeedAction::RemoveWithData => 3,
    }
}

fn preferences(daemon: &Daemon) -> Value {
    let c = &daemon.config;
    let p = daemon.prefs();
    let listen = daemon.session.listen_addr();
    let main = json!({
        "save_path": p.download_dir.display().to_string(),
        "temp_path_enabled": false,
        "temp_path": "",
        "max_ratio_enabled": p.ratio_limit.is_some(),
        "max_ratio": p.ratio_limit.unwrap_or(-1.0),
        "max_seeding_time_enabled": p.seeding_time_limit.is_some(),
        "max_seeding_time": p.seeding_time_limit.map(|s| (s / 60) as i64).unwrap_or(-1),
        "max_inactive_seeding_time_enabled": false,
        "max_inactive_seeding_time": -1,
        "max_ratio_act": seed_action_out(p.seeding_action),
        "queueing_enabled": p.queueing,
        "max_active_downloads": count_out(p.max_active_downloads),
        "max_active_uploads": count_out(p.max_active_seeds),
        "max_active_torrents": count_out(p.max_active_torrents),
        "max_connec": count_out(p.max_connections),
        "max_connec_per_torrent": count_out(p.max_peers_per_torrent),
    });
    let more = json!({
        "dht": c.dht,
        "pex": true,
        "lsd": c.lsd,
        "dl_limit": p.download_limit,
        "up_limit": p.upload_limit,
        "listen_port": listen.port(),
        "random_port": false,
        "upnp": false,
        "encryption": 0,
        "anonymous_mode": false,
        "auto_tmm_enabled": false,
        "start_paused_enabled": false,
        "add_stopped_enabled": false,
        "create_subfolder_enabled": true,
        "torrent_content_layout": "Original",
        "web_ui_address": c.api.ip().to_string(),
        "web_ui_port": c.api.port(),
        "web_ui_username": c.api_user.clone().unwrap_or_default(),
        "bypass_local_auth": !c.has_credentials(),
        "max_auth_fail_count": guard::MAX_LOGIN_FAILS,
        "web_ui_ban_duration": guard::BAN_TIME.as_secs(),
        "locale": "en",
    });
    merge(main, more)
}

async fn dispatch(
    State(qb): State<Qb>,
    axum::extract::Path((group, method)): axum::extract::Path<(String, String)>,
    req: Request,
) -> Response {
    let headers = req.headers().clone();
    let peer = peer_ip(&req);
    // As qBittorrent 5: a method that changes something must be POSTed, so a web page
    // elsewhere cannot make a browser change or delete anything with a link or an image
    // (a GET carries no Origin to check).
    if matches!(*req.method(), Method::GET | Method::HEAD) && !read_only(&group, &method) {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let p = match read_params(req).await {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let who = Caller {
        headers: &headers,
        peer,
    };
    match call(&qb, &group, &method, &p, &who).await {
        Ok(r) => r,
        Err(r) => *r,
    }
}

/// The methods that only read, which may be called with GET.
fn read_only(group: &str, method: &str) -> bool {
    match group {
        "app" => matches!(
            method,
            "webapiVersion"
                | "version"
                | "buildInfo"
                | "preferences"
                | "defaultSavePath"
                | "networkInterfaceList"
                | "networkInterfaceAddressList"
        ),
        "transfer" => matches!(
            method,
            "info" | "speedLimitsMode" | "downloadLimit" | "uploadLimit"
        ),
        "sync" => matches!(method, "maindata" | "torrentPeers"),
        "log" => matches!(method, "main" | "peers"),
        "torrents" => matches!(
            method,
            "info"
                | "count"
                | "properties"
                | "files"
                | "trackers"
                | "webseeds"
                | "pieceStates"
                | "pieceHashes"
                | "categories"
                | "tags"
                | "downloadLimit"
                | "uploadLimit"
                | "export"
        ),
        _ => false,
    }
}

type Res = Result<Response, Fail>;
/// An error answer, boxed (a `Response` is large).
type Fail = Box<Response>;
/// A ratio and a seeding-time change, each absent, unset (`Some(None)`) or set.
type ShareLimits = (Option<Option<f64>>, Option<Option<u64>>);

fn fail(status: StatusCode, body: &str) -> Fail {
    Box::new(text(status, body))
}

/// Who calls: their headers and address.
struct Caller<'a> {
    headers: &'a HeaderMap,
    peer: Option<IpAddr>,
}

async fn call(qb: &Qb, group: &str, method: &str, p: &Params, who: &Caller<'_>) -> Res {
    let d = &qb.daemon;
    let headers = who.headers;
    Ok(match (group, method) {
        ("auth", "login") => login(qb, p, who.peer),
        ("auth", "logout") => {
            if let Some(sid) = sid_of(headers) {
                lock(&qb.sids).retain(|(s, _)| *s != sid);
            }
            ok_empty()
        }
        ("app", "webapiVersion") => text(StatusCode::OK, QB_API_VERSION),
        ("app", "version") => text(StatusCode::OK, QB_VERSION),
        ("app", "buildInfo") => json_res(json!({
            "qt": "6.4.2", "libtorrent": "2.0.11.0", "boost": "1.83.0", "openssl": "3.0.0",
            "zlib": "1.3", "bitness": 64, "platform": "linux",
        })),
        ("app", "preferences") => json_res(preferences(d)),
        ("app", "setPreferences") => set_preferences(d, p).await?,
        ("app", "defaultSavePath") => text(
            StatusCode::OK,
            &d.prefs().download_dir.display().to_string(),
        ),
        ("transfer", "info") => json_res(transfer_info(d)),
        ("transfer", "speedLimitsMode") => text(StatusCode::OK, "0"),
        ("transfer", "downloadLimit") => text(
            StatusCode::OK,
            &d.session.settings().download_limit.to_string(),
        ),
        ("transfer", "uploadLimit") => text(
            StatusCode::OK,
            &d.session.settings().upload_limit.to_string(),
        ),
        ("transfer", "setDownloadLimit") | ("transfer", "setUploadLimit") => {
            let limit = parse_limit(p.req("limit")?)?;
            d.set_prefs(|s| {
                if method == "setDownloadLimit" {
                    s.download_limit = limit;
                } else {
                    s.upload_limit = limit;
                }
            })
            .await
            .map_err(op_error)?;
            ok_empty()
        }
        ("sync", "maindata") => {
            let rid = p
                .get("rid")
                .and_then(|r| r.trim().parse().ok())
                .unwrap_or(0);
            json_res(maindata(qb, &client_key(headers, who.peer), rid))
        }
        ("sync", "torrentPeers") => json_res(torrent_peers(qb, &one(d, p.req("hash")?)?)),
        ("torrents", m) => torrents(qb, m, p).await?,
        _ => text(StatusCode::NOT_FOUND, "Not Found"),
    })
}

/// Failed logins by address: how many in a row, and when the last one was.
fn login(qb: &Qb, p: &Params, peer: Option<IpAddr>) -> Response {
    let d = &qb.daemon;
    let user = p.get("username").unwrap_or("");
    let pass = p.get("password").unwrap_or("");
    let checked = d.login_guard.attempt(peer, || {
        !d.config.has_credentials() || credentials_ok(d, user, pass)
    });
    let Ok(ok) = checked else {
        return text(StatusCode::FORBIDDEN, guard::BANNED);
    };
    if !ok {
        return text(StatusCode::OK, "Fails.");
    }
    let sid = random_token();
    {
        let mut sids = lock(&qb.sids);
        if sids.len() >= MAX_SIDS {
            sids.remove(0);
        }
        sids.push((sid.clone(), std::time::Instant::now()));
    }
    let mut res = text(StatusCode::OK, "Ok.");
    if let Ok(v) = HeaderValue::from_str(&format!("SID={sid}; HttpOnly; SameSite=Strict; path=/")) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

fn parse_limit(s: &str) -> Result<u64, Fail> {
    let n: i64 = s
        .trim()
        .parse()
        .map_err(|_| fail(StatusCode::BAD_REQUEST, "Bad limit"))?;
    Ok(n.max(0) as u64)
}

/// `app/setPreferences`: the keys that map onto the daemon's settings are applied at once
/// and kept; the others (DHT, PeX, LSD, the listen port, alternative limits, ...) are
/// ignored, as qBittorrent ignores keys it does not know.
async fn set_preferences(d: &Daemon, p: &Params) -> Res {
    let raw = p.req("json")?;
    let v: Map<String, Value> =
        serde_json::from_str(raw).map_err(|_| fail(StatusCode::BAD_REQUEST, "Bad json"))?;
    let save_path = match v.get("save_path").and_then(Value::as_str) {
        Some(sp) if !sp.trim().is_empty() => Some(d.check_save_path(sp).map_err(op_error)?),
        _ => None,
    };
    let get = |k: &str| v.get(k);
    d.set_prefs(|s| {
        if let Some(sp) = save_path {
            s.download_dir = sp;
        }
        if let Some(n) = get("dl_limit").and_then(num) {
            s.download_limit = n.max(0.0) as u64;
        }
        if let Some(n) = get("up_limit").and_then(num) {
            s.upload_limit = n.max(0.0) as u64;
        }
        if let Some(b) = get("queueing_enabled").and_then(flag_of) {
            s.queueing = b;
        }
        type Parse = fn(&Value) -> Option<usize>;
        for (key, parse, slot) in [
            (
                "max_connec",
                connections_in as Parse,
                &mut s.max_connections,
            ),
            (
                "max_connec_per_torrent",
                connections_in,
                &mut s.max_peers_per_torrent,
            ),
            (
                "max_active_downloads",
                count_in,
                &mut s.max_active_downloads,
            ),
            ("max_active_uploads", count_in, &mut s.max_active_seeds),
            ("max_active_torrents", count_in, &mut s.max_active_torrents),
        ] {
            if let Some(n) = get(key).and_then(parse) {
                *slot = n;
            }
        }
        let ratio = get("max_ratio").and_then(num);
        match get("max_ratio_enabled").and_then(flag_of) {
            Some(false) => s.ratio_limit = None,
            Some(true) => {
                s.ratio_limit = ratio.filter(|r| *r >= 0.0).or(s.ratio_limit).or(Some(1.0));
            }
            None => {
                if let Some(r) = ratio {
                    s.ratio_limit = (r >= 0.0).then_some(r);
                }
            }
        }
        let minutes = get("max_seeding_time").and_then(num);
        let secs = |m: f64| (m as u64).saturating_mul(60);
        match get("max_seeding_time_enabled").and_then(flag_of) {
            Some(false) => s.seeding_time_limit = None,
            Some(true) => {
                s.seeding_time_limit = minutes
                    .filter(|m| *m >= 0.0)
                    .map(secs)
                    .or(s.seeding_time_limit)
                    .or(Some(1440 * 60));
            }
            None => {
                if let Some(m) = minutes {
                    s.seeding_time_limit = (m >= 0.0).then(|| secs(m));
                }
            }
        }
        match get("max_ratio_act").and_then(num).map(|n| n as i64) {
            Some(0) => s.seeding_action = SeedAction::Stop,
            Some(1) => s.seeding_action = SeedAction::Remove,
            Some(3) => s.seeding_action = SeedAction::RemoveWithData,
            _ => {} // 2 (super seeding) is not supported
        }
    })
    .await
    .map_err(op_error)?;
    Ok(ok_empty())
}

fn transfer_info(d: &Daemon) -> Value {
    let s = d.session_json();
    let settings = d.prefs();
    json!({
        "dl_info_speed": s["download_rate"],
        "up_info_speed": s["upload_rate"],
        "dl_info_data": s["downloaded"],
        "up_info_data": s["uploaded"],
        "dl_rate_limit": settings.download_limit,
        "up_rate_limit": settings.upload_limit,
        "dht_nodes": 0,
        "connection_status": "connected",
        "queueing": queueing_enabled(d),
        "use_alt_speed_limits": false,
        "refresh_interval": 1500,
    })
}

fn all_tags(qb: &Qb) -> BTreeSet<String> {
    let mut set = qb.daemon.created_tags();
    for r in qb.daemon.records() {
        set.extend(r.tags);
    }
    set
}

fn categories_json(d: &Daemon) -> Value {
    let map: Map<String, Value> = d
        .categories()
        .into_iter()
        .map(|(k, c)| {
            let v = json!({"name": c.name, "savePath": c.save_path.display().to_string(),
                           "download_path": Value::Null});
            (k, v)
        })
        .collect();
    Value::Object(map)
}

/// Who a `sync/maindata` caller is: its `SID`, else (a hash of) its `Authorization`
/// header, else its address.
fn client_key(headers: &HeaderMap, peer: Option<IpAddr>) -> String {
    if let Some(sid) = sid_of(headers) {
        return format!("sid:{sid}");
    }
    if let Some(a) = headers.get(header::AUTHORIZATION) {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        a.as_bytes().hash(&mut h);
        return format!("auth:{:x}", h.finish());
    }
    format!("ip:{}", peer.map(|p| p.to_string()).unwrap_or_default())
}

fn main_data(qb: &Qb) -> MainData {
    let d = &qb.daemon;
    let torrents: Map<String, Value> = snapshot(d)
        .iter()
        .map(|(r, v)| (r.info_hash.clone(), qb_torrent(d, r, v)))
        .collect();
    let mut server = transfer_info(d);
    server["free_space_on_disk"] = json!(free_space(&d.prefs().download_dir).unwrap_or(0));
    server["alltime_dl"] = server["dl_info_data"].clone();
    server["alltime_ul"] = server["up_info_data"].clone();
    let categories = match categories_json(d) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    MainData {
        torrents,
        categories,
        tags: all_tags(qb),
        server: match server {
            Value::Object(m) => m,
            _ => Map::new(),
        },
    }
}

/// `b`'s entries that are new or differ from `a`'s.
fn changed(a: &Map<String, Value>, b: &Map<String, Value>) -> Map<String, Value> {
    b.iter()
        .filter(|(k, v)| a.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `sync/maindata`: the whole state (`full_update`) for a client whose `rid` is not the
/// last one it was given, else only what changed since: new torrents whole, changed ones
/// with their changed fields, `torrents_removed`, categories and tags added and removed,
/// and the changed `server_state` fields.
fn maindata(qb: &Qb, client: &str, rid: u64) -> Value {
    let now = main_data(qb);
    let new_rid = qb.rid.fetch_add(1, Ordering::Relaxed) + 1;
    let before = {
        let mut syncs = lock(&qb.syncs);
        let pos = syncs.iter().position(|s| s.client == client);
        let before = pos
            .map(|i| syncs.remove(i))
            .filter(|s| rid != 0 && s.rid == rid)
            .map(|s| s.seen);
        if syncs.len() >= MAX_SYNC_CLIENTS {
            syncs.remove(0);
        }
        syncs.push(SyncState {
            client: client.to_string(),
            rid: new_rid,
            seen: Seen::of(&now),
        });
        before
    };
    let Some(old) = before else {
        return json!({
            "rid": new_rid,
            "full_update": true,
            "torrents": now.torrents,
            "categories": now.categories,
            "tags": now.tags,
            "trackers": {},
            "server_state": now.server,
        });
    };
    let mut out = Map::new();
    out.insert("rid".into(), json!(new_rid));
    let mut torrents = Map::new();
    for (h, t) in &now.torrents {
        match (old.torrents.get(h), t) {
            (Some(a), Value::Object(b)) => {
                let c = changed_fields(a, b);
                if !c.is_empty() {
                    torrents.insert(h.clone(), Value::Object(c));
                }
            }
            _ => {
                torrents.insert(h.clone(), t.clone());
            }
        }
    }
    let removed: Vec<&String> = old
        .torrents
        .keys()
        .filter(|h| !now.torrents.contains_key(*h))
        .collect();
    let categories = changed(&old.categories, &now.categories);
    let categories_removed: Vec<&String> = old
        .categories
        .keys()
        .filter(|c| !now.categories.contains_key(*c))
        .collect();
    let tags: Vec<&String> = now.tags.difference(&old.tags).collect();
    let tags_removed: Vec<&String> = old.tags.difference(&now.tags).collect();
    let server = changed(&old.server, &now.server);
    let mut put = |k: &str, v: Value, empty: bool| {
        if !empty {
            out.insert(k.to_string(), v);
        }
    };
    put("torrents", json!(torrents), torrents.is_empty());
    put("torrents_removed", json!(removed), removed.is_empty());
    put("categories", json!(categories), categories.is_empty());
    put(
        "categories_removed",
        json!(categories_removed),
        categories_removed.is_empty(),
    );
    put("tags", json!(tags), tags.is_empty());
    put("tags_removed", json!(tags_removed), tags_removed.is_empty());
    put("server_state", json!(server), server.is_empty());
    Value::Object(out)
}

/// Bytes free for an unprivileged user on the file system holding `path` (its nearest
/// existing folder); `None` when it cannot be read.
pub fn free_space(path: &std::path::Path) -> Option<u64> {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            return None;
        }
    }
    let st = rustix::fs::statvfs(&p).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

fn torrent_peers(qb: &Qb, r: &Record) -> Value {
    let rid = qb.rid.fetch_add(1, Ordering::Relaxed) + 1;
    let mut peers = Map::new();
    if let Some(t) = qb.daemon.session.torrent(r.engine_id) {
        for p in t.peer_list(500) {
            let mut flags = String::new();
            if p.interested {
                flags.push('U');
            }
            if p.unchoked {
                flags.push('u');
            }
            if p.encrypted {
                flags.push('E');
            }
            if p.transport == engine::transport::TransportKind::Utp {
                flags.push('P');
            }
            peers.insert(
                p.addr.to_string(),
                json!({
                    "ip": p.addr.ip().to_string(), "port": p.addr.port(),
                    "client": p.client.unwrap_or_default(), "peer_id_client": "",
                    "connection": if p.transport == engine::transport::TransportKind::Utp { "μTP" } else { "BT" },
                    "flags": flags, "flags_desc": "",
                    "progress": if p.piece_count == 0 { 0.0 } else { p.pieces as f64 / p.piece_count as f64 },
                    "dl_speed": p.download_rate, "up_speed": p.upload_rate,
                    "downloaded": p.downloaded, "uploaded": p.uploaded,
                    "relevance": 0, "files": "", "country": "", "country_code": "",
                }),
            );
        }
    }
    json!({"rid": rid, "full_update": true, "peers": peers, "show_flags": true})
}

fn matches_filter(state: &str, v: &Value, filter: &str) -> bool {
    let complete = v["progress"].as_f64().unwrap_or(0.0) >= 1.0;
    let active =
        v["download_rate"].as_u64().unwrap_or(0) > 0 || v["upload_rate"].as_u64().unwrap_or(0) > 0;
    match filter {
        "" | "all" => true,
        "downloading" => {
            matches!(
                state,
                "downloading"
                    | "forcedDL"
                    | "stalledDL"
                    | "metaDL"
                    | "forcedMetaDL"
                    | "queuedDL"
                    | "checkingDL"
                    | "stoppedDL"
            ) && state != "stoppedDL"
        }
        "seeding" => matches!(
            state,
            "uploading" | "forcedUP" | "stalledUP" | "queuedUP" | "checkingUP"
        ),
        "completed" => complete,
        "paused" | "stopped" => state.starts_with("stopped"),
        "resumed" | "running" => !state.starts_with("stopped"),
        "active" => active,
        "inactive" => !active,
        "stalled" => state.starts_with("stalled"),
        "stalled_uploading" => state == "stalledUP",
        "stalled_downloading" => state == "stalledDL",
        "checking" => state.starts_with("checking"),
        "moving" => state == "moving",
        "errored" => matches!(state, "error" | "missingFiles"),
        _ => false,
    }
}

fn cmp_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        _ => match (a, b) {
            (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
            (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        },
    }
}

fn info(d: &Daemon, p: &Params) -> Value {
    let hashes = p
        .get("hashes")
        .map(|h| select(d, h).into_iter().map(|r| r.id).collect::<Vec<_>>());
    let mut list: Vec<Value> = snapshot(d)
        .iter()
        .filter(|(r, _)| hashes.as_ref().is_none_or(|h| h.contains(&r.id)))
        .filter(|(r, _)| {
            p.get("category")
                .is_none_or(|c| r.category.as_deref().unwrap_or("") == c)
        })
        .filter(|(r, _)| {
            p.get("tag").is_none_or(|t| {
                if t.is_empty() {
                    r.tags.is_empty()
                } else {
                    r.tags.iter().any(|x| x == t)
                }
            })
        })
        .map(|(r, v)| qb_torrent(d, r, v))
        .filter(|t| {
            let state = t["state"].as_str().unwrap_or("");
            matches_filter(state, t, p.get("filter").unwrap_or("all"))
        })
        .collect();
    if let Some(key) = p.get("sort") {
        list.sort_by(|a, b| cmp_values(&a[key], &b[key]));
    }
    if p.flag("reverse") == Some(true) {
        list.reverse();
    }
    let len = list.len() as i64;
    let offset = p
        .get("offset")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let start = if offset < 0 {
        (len + offset).max(0)
    } else {
        offset.min(len)
    } as usize;
    let limit = p
        .get("limit")
        .and_then(|s| s.trim().parse::<i64>().ok())
        .filter(|l| *l > 0)
        .map(|l| l as usize)
        .unwrap_or(usize::MAX);
    Value::from(list.into_iter().skip(start).take(limit).collect::<Vec<_>>())
}

fn properties(d: &Daemon, r: &Record) -> Result<Value, OpError> {
    let v = d.detail_json(r.id)?;
    let now = super::state::now_secs();
    let meta = d.session.metainfo(r.engine_id);
    let have = meta
        .as_ref()
        .map(|m| d.have_pieces(r, m).iter().filter(|h| **h).count())
        .unwrap_or(0);
    let elapsed = now.saturating_sub(r.added_at).max(1);
    let first = json!({
        "hash": r.info_hash,
        "infohash_v1": r.info_hash,
        "infohash_v2": "",
        "name": v["name"],
        "save_path": r.save_path.display().to_string(),
        "download_path": "",
        "creation_date": v["creation_date"].as_i64().unwrap_or(-1),
        "piece_size": v["piece_length"],
        "pieces_num": v["piece_count"],
        "pieces_have": have,
        "comment": v["comment"].as_str().unwrap_or(""),
        "created_by": v["created_by"].as_str().unwrap_or(""),
        "total_wasted": 0,
        "total_uploaded": v["uploaded"],
        "total_uploaded_session": v["uploaded"],
        "total_downloaded": v["downloaded"],
        "total_downloaded_session": v["downloaded"],
        "up_limit": r.upload_limit,
        "dl_limit": r.download_limit,
        "time_elapsed": now.saturating_sub(r.added_at),
        "seeding_time": r.completed_at.map(|c| now.saturating_sub(c)).unwrap_or(0),
        "nb_connections": v["peers"],
        "nb_connections_limit": -1,
        "share_ratio": v["ratio"],
    });
    let second = json!({
        "addition_date": r.added_at,
        "completion_date": r.completed_at.map(|c| c as i64).unwrap_or(-1),
        "last_seen": r.completed_at.map(|c| c as i64).unwrap_or(-1),
        "dl_speed": v["download_rate"],
        "up_speed": v["upload_rate"],
        "dl_speed_avg": v["downloaded"].as_u64().unwrap_or(0) / elapsed,
        "up_speed_avg": v["uploaded"].as_u64().unwrap_or(0) / elapsed,
        "eta": v["eta"].as_u64().unwrap_or(ETA_UNKNOWN),
        "peers": v["peers"].as_u64().unwrap_or(0).saturating_sub(v["seeds"].as_u64().unwrap_or(0)),
        "peers_total": v["peers"],
        "seeds": v["seeds"],
        "seeds_total": v["seeds"],
        "reannounce": 0,
        "total_size": v["size"],
        "isPrivate": v["private"],
        "is_private": v["private"],
        "has_metadata": meta.is_some(),
        "popularity": 0,
    });
    Ok(merge(first, second))
}

fn qb_priority(name: &str) -> u8 {
    match name {
        "skip" => 0,
        "high" => 6,
        _ => 1,
    }
}

fn files(d: &Daemon, r: &Record) -> Result<Value, OpError> {
    let list = d.files_json(r.id)?;
    let meta = d.session.metainfo(r.engine_id);
    let avail = d.session.torrent(r.engine_id).map(|t| t.availability());
    let plen = meta
        .as_ref()
        .map(|m| m.info.piece_length.max(1))
        .unwrap_or(1);
    Ok(Value::from(
        list.iter()
            .enumerate()
            .map(|(i, f)| {
                let (first, last) = meta
                    .as_ref()
                    .and_then(|m| m.info.files.get(i))
                    .map(|f| (f.offset / plen, (f.offset + f.length.max(1) - 1) / plen))
                    .unwrap_or((0, 0));
                json!({
                    "index": i,
                    "name": f["path"],
                    "size": f["size"],
                    "progress": f["progress"],
                    "priority": qb_priority(f["priority"].as_str().unwrap_or("normal")),
                    "is_seed": f["progress"].as_f64() == Some(1.0),
                    "piece_range": [first, last],
                    "availability": avail
                        .as_ref()
                        .and_then(|a| a.get(first as usize..=last as usize))
                        .map_or(-1.0, engine::picker::distributed_copies),
                })
            })
            .collect::<Vec<_>>(),
    ))
}

/// The daemon's tracker objects; when it does not announce (`trackers = false`), the
/// torrent's trackers all the same, as `disabled`.
pub fn tracker_list(d: &Daemon, r: &Record) -> Result<Vec<Value>, OpError> {
    let list = d.trackers_json(r.id)?;
    if !list.is_empty() {
        return Ok(list);
    }
    Ok(d.listed_trackers(r, "disabled"))
}

fn trackers(d: &Daemon, r: &Record) -> Result<Value, OpError> {
    let list = tracker_list(d, r)?;
    Ok(Value::from(
        list.iter()
            .map(|t| {
                let status = match t["status"].as_str().unwrap_or("") {
                    "disabled" => 0,
                    "working" => 2,
                    "updating" => 3,
                    "error" => 4,
                    _ => 1,
                };
                json!({
                    "url": t["url"], "status": status, "tier": t["tier"],
                    "num_peers": t["peers"].as_i64().unwrap_or(-1),
                    "num_seeds": t["seeds"].as_i64().unwrap_or(-1),
                    "num_leeches": t["leechers"].as_i64().unwrap_or(-1),
                    "num_downloaded": -1,
                    "msg": t["message"],
                })
            })
            .collect::<Vec<_>>(),
    ))
}

fn piece_states(d: &Daemon, r: &Record) -> Value {
    match d.session.metainfo(r.engine_id) {
        Some(m) => Value::from(
            d.have_pieces(r, &m)
                .iter()
                .map(|h| if *h { 2 } else { 0 })
                .collect::<Vec<u8>>(),
        ),
        None => json!([]),
    }
}

/// `ratioLimit` (-2 global, -1 none) and `seedingTimeLimit` (minutes, -2, -1) as the
/// daemon keeps them.
fn share_limits(p: &Params) -> Result<ShareLimits, Fail> {
    let bad = || fail(StatusCode::BAD_REQUEST, "Bad share limit");
    let ratio = match p.get("ratioLimit") {
        None => None,
        Some(s) => {
            let x: f64 = s.trim().parse().map_err(|_| bad())?;
            Some(if x == -2.0 {
                None
            } else if x < 0.0 {
                Some(f64::MAX)
            } else if x.is_finite() {
                Some(x)
            } else {
                return Err(bad());
            })
        }
    };
    let time = match p.get("seedingTimeLimit") {
        None => None,
        Some(s) => {
            let m: i64 = s.trim().parse().map_err(|_| bad())?;
            Some(match m {
                -2 => None,
                m if m < 0 => Some(u64::MAX),
                m => Some((m as u64).saturating_mul(60)),
            })
        }
    };
    Ok((ratio, time))
}

fn tag_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

async fn add(qb: &Qb, p: &Params) -> Res {
    let d = &qb.daemon;
    let save_path = p
        .get("savepath")
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string);
    if let Some(sp) = &save_path {
        d.check_save_path(sp).map_err(op_error)?;
    }
    let category = p
        .get("category")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if let Some(c) = &category
        && !d.categories().contains_key(c)
    {
        // qBittorrent creates an unknown category on add.
        d.add_category(c, &d.prefs().download_dir.display().to_string())
            .map_err(op_error)?;
    }
    let tags = p.get("tags").map(tag_list).unwrap_or_default();
    let stopped = p.flag("stopped").or(p.flag("paused")).unwrap_or(false);
    let (ratio, time) = share_limits(p)?;
    let sequential = p.flag("sequentialDownload").unwrap_or(false);
    // Subfolder puts a single-file torrent in a folder of its name, NoSubfolder a
    // multi-file torrent's files without their top folder; otherwise as the torrent has it.
    let layout = p.get("contentLayout").map(str::trim);
    let subfolder = layout == Some("Subfolder");
    let no_subfolder = layout == Some("NoSubfolder");
    let first_last = p.flag("firstLastPiecePrio").unwrap_or(false);
    let mut requests: Vec<AddRequest> = p
        .files
        .iter()
        .map(|f| AddRequest {
            torrent: Some(f.clone()),
            ..Default::default()
        })
        .collect();
    let urls: Vec<&str> = p
        .get("urls")
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let fetched = urls
        .iter()
        .filter(|u| !u.starts_with("magnet:") && u.len() != 40);
    if urls.len() > MAX_URLS || fetched.count() > MAX_FETCHED_URLS {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            &format!("at most {MAX_URLS} urls, {MAX_FETCHED_URLS} of them to fetch, in one add"),
        ));
    }
    for url in urls {
        if url.len() == 40 && url.bytes().all(|b| b.is_ascii_hexdigit()) {
            requests.push(AddRequest {
                magnet: Some(format!("magnet:?xt=urn:btih:{url}")),
                ..Default::default()
            });
        } else if url.starts_with("magnet:") {
            requests.push(AddRequest {
                magnet: Some(url.to_string()),
                ..Default::default()
            });
        } else {
            match super::api::fetch_url(qb.http.as_ref(), url).await {
                Ok(bytes) => requests.push(AddRequest {
                    torrent: Some(bytes),
                    ..Default::default()
                }),
                Err(e) => tracing::info!(error = %e, "qbittorrent add: URL not fetched"),
            }
        }
    }
    if requests.is_empty() {
        return Ok(text(StatusCode::OK, "Fails."));
    }
    let mut added = 0;
    for mut r in requests {
        r.save_path = save_path.clone();
        r.paused = stopped;
        r.category = category.clone();
        r.tags = tags.clone();
        r.subfolder = subfolder;
        r.no_subfolder = no_subfolder;
        r.first_last = first_last;
        match d.add(r).await {
            Ok((id, _)) => {
                added += 1;
                let _ = d.set_meta(id, None, None, ratio, time);
                if sequential {
                    let _ = d.set_sequential(id, true);
                }
            }
            Err(OpError::Conflict(_)) => {}
            Err(e) => tracing::info!(error = %e, "qbittorrent add: not added"),
        }
    }
    Ok(if added == 0 {
        text(StatusCode::OK, "Fails.")
    } else {
        text(StatusCode::OK, "Ok.")
    })
}

async fn torrents(qb: &Qb, m: &str, p: &Params) -> Res {
    let d = &qb.daemon;
    let each = || select(d, p.get("hashes").unwrap_or(""));
    Ok(match m {
        "info" => json_res(info(d, p)),
        "count" => text(StatusCode::OK, &d.records().len().to_string()),
        "properties" => json_res(properties(d, &one(d, p.req("hash")?)?).map_err(op_error)?),
        "files" => json_res(files(d, &one(d, p.req("hash")?)?).map_err(op_error)?),
        "trackers" => json_res(trackers(d, &one(d, p.req("hash")?)?).map_err(op_error)?),
        "webseeds" => {
            one(d, p.req("hash")?)?;
            json_res(json!([]))
        }
        "pieceStates" => json_res(piece_states(d, &one(d, p.req("hash")?)?)),
        "pieceHashes" => {
            let r = one(d, p.req("hash")?)?;
            let hashes: Vec<String> = d
                .session
                .metainfo(r.engine_id)
                .map(|m| {
                    m.info
                        .pieces
                        .iter()
                        .map(|p| metainfo::hash::to_hex(p))
                        .collect()
                })
                .unwrap_or_default();
            json_res(json!(hashes))
        }
        "add" => add(qb, p).await?,
        "delete" => {
            let delete_files = p.flag("deleteFiles").unwrap_or(false);
            for r in each() {
                d.remove(r.id, delete_files).await.map_err(op_error)?;
            }
            ok_empty()
        }
        "stop" | "pause" => {
            for r in each() {
                d.pause(r.id).await.map_err(op_error)?;
            }
            ok_empty()
        }
        "start" | "resume" => {
            for r in each() {
                d.resume(r.id, false).await.map_err(op_error)?;
            }
            ok_empty()
        }
        "recheck" => {
            for r in each() {
                d.recheck(r.id).await.map_err(op_error)?;
            }
            ok_empty()
        }
        "reannounce" => ok_empty(),
        "setForceStart" => {
            let force = p.flag("value").unwrap_or(false);
            for r in each() {
                if force || r.force {
                    d.resume(r.id, force).await.map_err(op_error)?;
                }
            }
            ok_empty()
        }
        "topPrio" | "bottomPrio" | "increasePrio" | "decreasePrio" => {
            if !queueing_enabled(d) {
                return Err(fail(
                    StatusCode::CONFLICT,
                    "Torrent queueing must be enabled",
                ));
            }
            let how = match m {
                "topPrio" => "top",
                "bottomPrio" => "bottom",
                "increasePrio" => "up",
                _ => "down",
            };
            let mut sel = each();
            sel.sort_by_key(|r| r.queue);
            if how == "top" || how == "down" {
                sel.reverse();
            }
            for r in sel {
                d.queue_move(r.id, how).map_err(op_error)?;
            }
            d.apply_queue().await;
            ok_empty()
        }
        "setShareLimits" => {
            let (ratio, time) = share_limits(p)?;
            for r in each() {
                d.set_meta(r.id, None, None, ratio, time)
                    .map_err(op_error)?;
            }
            d.apply_queue().await;
            ok_empty()
        }
        "setCategory" => {
            let c = p.get("category").unwrap_or("").trim().to_string();
            if !c.is_empty() && !d.categories().contains_key(&c) {
                return Err(fail(StatusCode::CONFLICT, "Incorrect category name"));
            }
            for r in each() {
                d.set_meta(
                    r.id,
                    Some((!c.is_empty()).then(|| c.clone())),
                    None,
                    None,
                    None,
                )
                .map_err(op_error)?;
            }
            ok_empty()
        }
        "categories" => json_res(categories_json(d)),
        "createCategory" | "editCategory" => {
            let name = p.req("category")?.trim().to_string();
            if name.is_empty() {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    "Category name cannot be empty",
                ));
            }
            if m == "createCategory" && d.categories().contains_key(&name) {
                return Err(fail(StatusCode::CONFLICT, "Category already exists"));
            }
            let path = p
                .get("savePath")
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| d.prefs().download_dir.display().to_string());
            d.add_category(&name, &path).map_err(op_error)?;
            ok_empty()
        }
        "removeCategories" => {
            let names: Vec<String> = p
                .get("categories")
                .unwrap_or("")
                .lines()
                .map(|s| s.trim().to_string())
                .collect();
            for n in names.iter().filter(|n| !n.is_empty()) {
                let _ = d.remove_category(n);
                for r in d
                    .records()
                    .into_iter()
                    .filter(|r| r.category.as_deref() == Some(n))
                {
                    let _ = d.set_meta(r.id, Some(None), None, None, None);
                }
            }
            ok_empty()
        }
        "addTags" | "removeTags" => {
            let tags = tag_list(p.get("tags").unwrap_or(""));
            for r in each() {
                let mut t = r.tags.clone();
                if m == "addTags" {
                    for x in &tags {
                        if !t.contains(x) {
                            t.push(x.clone());
                        }
                    }
                } else if tags.is_empty() {
                    t.clear();
                } else {
                    t.retain(|x| !tags.contains(x));
                }
                d.set_meta(r.id, None, Some(t), None, None)
                    .map_err(op_error)?;
            }
            ok_empty()
        }
        "tags" => json_res(json!(all_tags(qb))),
        "createTags" => {
            d.edit_created_tags(&tag_list(p.get("tags").unwrap_or("")), true);
            ok_empty()
        }
        "deleteTags" => {
            let tags = tag_list(p.get("tags").unwrap_or(""));
            d.edit_created_tags(&tags, false);
            for r in d.records() {
                if r.tags.iter().any(|t| tags.contains(t)) {
                    let kept = r
                        .tags
                        .iter()
                        .filter(|t| !tags.contains(t))
                        .cloned()
                        .collect();
                    let _ = d.set_meta(r.id, None, Some(kept), None, None);
                }
            }
            ok_empty()
        }
        "filePrio" => {
            let r = one(d, p.req("hash")?)?;
            let prio = match p.req("priority")?.trim() {
                "0" => PRIORITY_SKIP,
                "1" => PRIORITY_NORMAL,
                "6" | "7" => PRIORITY_HIGH,
                _ => return Err(fail(StatusCode::BAD_REQUEST, "Priority is not valid")),
            };
            let mut changes = Vec::new();
            for i in p.req("id")?.split('|') {
                let i: usize = i
                    .trim()
                    .parse()
                    .map_err(|_| fail(StatusCode::BAD_REQUEST, "File IDs must be integers"))?;
                changes.push((i, prio));
            }
            d.set_priorities(r.id, &changes)
                .await
                .map_err(|e| match e {
                    OpError::BadRequest(m) => fail(StatusCode::CONFLICT, &m),
                    e => op_error(e),
                })?;
            ok_empty()
        }
        "setLocation" => {
            let loc = p.req("location")?;
            let path = d.check_save_path(loc).map_err(op_error)?;
            for r in each() {
                if r.save_path != path {
                    // qBittorrent moves the data with the location.
                    d.move_data(r.id, loc).await.map_err(|e| match e {
                        OpError::Conflict(m) => fail(StatusCode::CONFLICT, &m),
                        e => op_error(e),
                    })?;
                }
            }
            ok_empty()
        }
        "setDownloadLimit" | "setUploadLimit" => {
            let limit = parse_limit(p.req("limit")?)?;
            for r in each() {
                let (down, up) = if m == "setDownloadLimit" {
                    (Some(limit), None)
                } else {
                    (None, Some(limit))
                };
                d.set_limits(r.id, down, up).map_err(op_error)?;
            }
            ok_empty()
        }
        "downloadLimit" | "uploadLimit" => {
            let map: Map<String, Value> = each()
                .into_iter()
                .map(|r| {
                    let l = if m == "downloadLimit" {
                        r.download_limit
                    } else {
                        r.upload_limit
                    };
                    (r.info_hash, json!(l))
                })
                .collect();
            json_res(Value::Object(map))
        }
        "toggleSequentialDownload" => {
            for r in each() {
                d.set_sequential(r.id, !r.sequential).map_err(op_error)?;
            }
            ok_empty()
        }
        "setSequentialDownload" => {
            let on = p.flag("value").unwrap_or(false);
            for r in each() {
                d.set_sequential(r.id, on).map_err(op_error)?;
            }
            ok_empty()
        }
        "toggleFirstLastPiecePrio" => {
            for r in each() {
                d.set_first_last(r.id, !r.first_last)
                    .await
                    .map_err(op_error)?;
            }
            ok_empty()
        }
        "setAutoManagement" | "setSuperSeeding" => ok_empty(),
        _ => text(StatusCode::NOT_FOUND, "Not Found"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_end_after_an_idle_hour_and_a_use_renews_them() {
        let t0 = std::time::Instant::now();
        let mut sids = vec![("a".to_owned(), t0), ("b".to_owned(), t0)];
        let half = SID_IDLE / 2;
        assert!(sid_live(&mut sids, "a", t0 + half));
        assert!(!sid_live(&mut sids, "c", t0 + half));
        assert!(
            sid_live(&mut sids, "a", t0 + SID_IDLE + half / 2),
            "renewed"
        );
        assert!(!sid_live(&mut sids, "b", t0 + SID_IDLE), "idle for an hour");
        assert_eq!(sids.len(), 1);
    }

    #[test]
    fn changed_keeps_new_and_different_entries() {
        let a = json!({"x": 1, "y": 2, "gone": 3, "s": "a"});
        let b = json!({"x": 1, "y": 5, "new": 4, "s": "b"});
        let want = json!({"y": 5, "new": 4, "s": "b"});
        let c = changed(a.as_object().unwrap(), b.as_object().unwrap());
        assert_eq!(Value::Object(c), want);
        let c = changed_fields(&digest(&a), b.as_object().unwrap());
        assert_eq!(Value::Object(c), want);
        assert!(changed_fields(&digest(&b), b.as_object().unwrap()).is_empty());
    }

    #[test]
    fn ratio_limits_map_to_qbittorrent_numbers() {
        assert_eq!(ratio_limit_out(None), -2.0);
        assert_eq!(ratio_limit_out(Some(f64::MAX)), -1.0);
        assert_eq!(ratio_limit_out(Some(1.5)), 1.5);
    }
}
