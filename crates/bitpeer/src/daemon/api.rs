//! The HTTP API (`/api/v1`, see docs/api.md), `/metrics`, and the web UI at `/`.
//!
//! Every body is bounded ([`BODY_LIMIT`]), every id validated, every error answered as
//! `{"error": "..."}` with a 4xx/5xx status. When credentials are configured every API
//! request must carry them (HTTP Basic, a bearer API key, or the cookie of `POST /login`).

use super::state::{AddRequest, Daemon, MAX_TORRENT_BYTES, OpError, priority_from_name};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body: a 10 MiB .torrent, base64-encoded, with room for the rest.
pub const BODY_LIMIT: usize = 16 << 20;
/// Largest peer list answered.
const MAX_PEERS_LISTED: usize = 500;

#[derive(Clone)]
pub struct App {
    pub daemon: Daemon,
    /// The value of the `bitpeer_sid` cookie `POST /login` hands out (random per run).
    sid: Arc<String>,
    http: Option<reqwest::Client>,
}

pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({"error": self.1}))).into_response()
    }
}

impl From<OpError> for ApiError {
    fn from(e: OpError) -> Self {
        let status = match &e {
            OpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            OpError::NotFound(_) => StatusCode::NOT_FOUND,
            OpError::Conflict(_) => StatusCode::CONFLICT,
            OpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult<T = axum::Json<Value>> = Result<T, ApiError>;

fn ok(v: Value) -> ApiResult {
    Ok(axum::Json(v))
}

/// Parse a body as JSON, with the error as one line.
fn parse_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(body_error)?;
    serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("bad JSON: {e}")))
}

fn body_error(e: axum::extract::rejection::BytesRejection) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError(
            status,
            format!("the request body is larger than {} MiB", BODY_LIMIT >> 20),
        )
    } else {
        ApiError(status, format!("cannot read the request body: {e}"))
    }
}

fn parse_id(s: &str) -> Result<u64, ApiError> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad(format!("not a torrent id: {s:.40}")));
    }
    s.parse()
        .map_err(|_| ApiError::bad(format!("not a torrent id: {s:.40}")))
}

/// The whole router.
pub fn router(daemon: Daemon) -> Router {
    let http = tracker::client::tls_config(&[]).ok().and_then(|tls| {
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("bitpeer/", env!("CARGO_PKG_VERSION")))
            .build()
            .ok()
    });
    let app = App {
        daemon,
        sid: Arc::new(random_token()),
        http,
    };
    let transmission = super::transmission::router(app.daemon.clone(), app.http.clone());
    let ipfs_gateway = crate::ipfs::daemon::api_routes(&app.daemon.config.ipfs);
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/session", get(get_session).patch(patch_session))
        .route("/api/v1/torrents", get(list).post(add))
        .route(
            "/api/v1/torrents/{id}",
            get(detail).patch(patch_torrent).delete(remove),
        )
        .route("/api/v1/torrents/{id}/{action}", post(action))
        .route("/api/v1/torrents/{id}/files", get(files).patch(patch_files))
        .route("/api/v1/torrents/{id}/files/{index}/stream", get(stream))
        .route("/api/v1/torrents/{id}/peers", get(peers))
        .route("/api/v1/torrents/{id}/trackers", get(trackers))
        .route("/api/v1/torrents/{id}/pieces", get(pieces))
        .route("/api/v1/categories", get(categories).post(add_category))
        .route("/api/v1/categories/{name}", delete(remove_category))
        .route("/api/v1/events", get(events))
        .route("/metrics", get(metrics))
        // The qBittorrent and Transmission APIs, with their own auth (SID cookie, 403;
        // Basic then session id, 401/409).
        .nest_service(
            "/api/v2",
            super::qbittorrent::router(app.daemon.clone(), app.http.clone()),
        )
        .route_service("/transmission/rpc", transmission.clone())
        .route_service("/transmission/rpc/", transmission)
        .merge(ipfs_gateway)
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
}

/// 32 random hex digits from the system's generator.
pub(super) fn random_token() -> String {
    use std::io::Read;
    let mut b = [0u8; 16];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok();
    if !from_os {
        // No /dev/urandom: the hash of the time and the process, still unguessable enough
        // for a cookie that the password must be known to get.
        use std::hash::{BuildHasher, Hasher};
        for chunk in b.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compare secrets without an early exit on the first differing byte.
pub(super) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Basic or bearer credentials (counted by the login ban, and refused outright from a
/// banned address), else the session cookie of `/api/v1/login`.
fn authorized(app: &App, headers: &HeaderMap, peer: Option<std::net::IpAddr>) -> bool {
    if headers.contains_key(header::AUTHORIZATION) {
        return app
            .daemon
            .login_guard
            .attempt(peer, || {
                super::qbittorrent::authorization_ok(&app.daemon, headers) == Some(true)
            })
            .unwrap_or(false);
    }
    for cookie in headers.get_all(header::COOKIE) {
        let Ok(s) = cookie.to_str() else { continue };
        for part in s.split(';') {
            if let Some(v) = part.trim().strip_prefix("bitpeer_sid=")
                && same_secret(v.as_bytes(), app.sid.as_bytes())
            {
                return true;
            }
        }
    }
    false
}

/// Is `host` (a Host header: NAME[:PORT]) a name of this machine's loopback?
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuse what a web page elsewhere could make a browser send: without credentials (a
/// loopback-only daemon) a Host that is not loopback (DNS rebinding), and always a
/// changing request whose Origin is not this server (cross-site requests).
fn cross_site(app: &App, req: &Request) -> Option<&'static str> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !app.daemon.config.has_credentials() && !loopback_host(host) {
        return Some("this daemon answers only requests to a loopback address");
    }
    let changes = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if changes
        && let Some(origin) = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
    {
        let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
        if !origin_host.eq_ignore_ascii_case(host) {
            return Some("cross-site request refused");
        }
    }
    None
}

async fn auth(State(app): State<App>, req: Request, next: Next) -> Response {
    if let Some(why) = cross_site(&app, &req) {
        return ApiError(StatusCode::FORBIDDEN, why.into()).into_response();
    }
    let path = req.uri().path();
    let protected =
        (path.starts_with("/api/") && path != "/api/v1/login" && !path.starts_with("/api/v2/"))
            || path == "/metrics"
            || crate::ipfs::daemon::needs_credentials(&app.daemon.config.api, path);
    if protected
        && app.daemon.config.has_credentials()
        && !authorized(&app, req.headers(), super::qbittorrent::peer_ip(&req))
    {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "credentials needed: HTTP Basic, a bearer API key, or log in with POST /api/v1/login"
                .into(),
        )
        .into_response();
    }
    next.run(req).await
}

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(State(app): State<App>, req: Request) -> Response {
    let peer = super::qbittorrent::peer_ip(&req);
    let headers = req.headers().clone();
    let body = <Bytes as axum::extract::FromRequest<()>>::from_request(req, &()).await;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let creds: Result<LoginBody, ApiError> = if is_form {
        body.map_err(body_error).and_then(|b| {
            serde_urlencoded_login(&b).ok_or_else(|| ApiError::bad("give username and password"))
        })
    } else {
        parse_json(body)
    };
    let creds = match creds {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if !app.daemon.config.has_credentials() {
        return axum::Json(json!({"ok": true})).into_response();
    }
    let checked = app.daemon.login_guard.attempt(peer, || {
        super::qbittorrent::credentials_ok(&app.daemon, &creds.username, &creds.password)
    });
    match checked {
        Err(()) => {
            return ApiError(StatusCode::FORBIDDEN, super::guard::BANNED.into()).into_response();
        }
        Ok(false) => {
            return ApiError(StatusCode::UNAUTHORIZED, "wrong user or password".into())
                .into_response();
        }
        Ok(true) => {}
    }
    let cookie = format!("bitpeer_sid={}; HttpOnly; SameSite=Strict; Path=/", app.sid);
    let mut res = axum::Json(json!({"ok": true})).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `username=..&password=..` (form encoding).
fn serde_urlencoded_login(body: &[u8]) -> Option<LoginBody> {
    let s = std::str::from_utf8(body).ok()?;
    let mut user = None;
    let mut pass = None;
    for pair in s.split('&') {
        let (k, v) = pair.split_once('=')?;
        let v = webform::percent_decode(v)?;
        match k {
            "username" => user = Some(v),
            "password" => pass = Some(v),
            _ => {}
        }
    }
    Some(LoginBody {
        username: user?,
        password: pass?,
    })
}

async fn get_session(State(app): State<App>) -> ApiResult {
    ok(app.daemon.session_json())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionPatch {
    download_limit: Option<u64>,
    upload_limit: Option<u64>,
    encryption: Option<super::config::EncryptionPolicy>,
}

async fn patch_session(
    State(app): State<App>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    let p: SessionPatch = parse_json(body)?;
    app.daemon
        .set_prefs(|s| {
            if let Some(d) = p.download_limit {
                s.download_limit = d;
            }
            if let Some(u) = p.upload_limit {
                s.upload_limit = u;
            }
        })
        .await?;
    if let Some(e) = p.encryption {
        let mut s = app.daemon.session.settings();
        s.encryption = e.into();
        app.daemon.session.set_settings(s);
    }
    ok(app.daemon.session_json())
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    category: Option<String>,
    tag: Option<String>,
}

async fn list(State(app): State<App>, Query(q): Query<ListQuery>) -> Response {
    let body = app.daemon.list_bytes(|t| {
        q.state.as_deref().is_none_or(|s| t.state == s)
            && q.category.as_deref().is_none_or(|c| t.category == Some(c))
            && q.tag
                .as_deref()
                .is_none_or(|tag| t.tags.iter().any(|x| x == tag))
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AddJson {
    magnet: Option<String>,
    url: Option<String>,
    torrent_base64: Option<String>,
    save_path: Option<String>,
    #[serde(default)]
    paused: bool,
    category: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    /// Peers to dial (`IP:PORT`), besides what trackers, DHT and PEX find.
    #[serde(default)]
    peers: Vec<String>,
    /// WebSocket (WebTorrent) tracker URLs, besides the `ws://` trackers the torrent names.
    #[serde(default)]
    webtorrent_trackers: Vec<String>,
}

fn bool_field(s: &str) -> Result<bool, ApiError> {
    match s.trim() {
        "true" | "1" | "on" | "yes" => Ok(true),
        "false" | "0" | "off" | "no" | "" => Ok(false),
        other => Err(ApiError::bad(format!(
            "paused must be true or false, not {other:.20}"
        ))),
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

async fn add(State(app): State<App>, req: Request) -> Response {
    match add_inner(&app, req).await {
        Ok(v) => (StatusCode::CREATED, axum::Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn add_inner(app: &App, req: Request) -> ApiResult<Value> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("multipart/form-data"));
    let mut torrents: Vec<Vec<u8>> = Vec::new();
    let mut base = AddJson::default();
    if multipart {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad(format!("bad form: {e}")))?;
        loop {
            let field = match form.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(ApiError(e.status(), format!("bad form: {e}"))),
            };
            let name = field.name().unwrap_or("").to_string();
            let data = field
                .bytes()
                .await
                .map_err(|e| ApiError(e.status(), format!("bad form: {e}")))?;
            if name == "torrent" {
                if torrents.len() >= 64 {
                    return Err(ApiError::bad("at most 64 .torrent files at once"));
                }
                torrents.push(data.to_vec());
                continue;
            }
            let text = String::from_utf8(data.to_vec())
                .map_err(|_| ApiError::bad(format!("the field {name:.20} is not UTF-8")))?;
            match name.as_str() {
                "magnet" => base.magnet = Some(text),
                "url" => base.url = Some(text),
                "save_path" if !text.is_empty() => base.save_path = Some(text),
                "paused" => base.paused = bool_field(&text)?,
                "category" if !text.is_empty() => base.category = Some(text),
                "tags" => base.tags = split_list(&text),
                "peers" => base.peers = split_list(&text),
                "webtorrent_trackers" => base.webtorrent_trackers = split_list(&text),
                _ => {}
            }
        }
    } else {
        let body = Bytes::from_request(req, &()).await;
        base = parse_json(body)?;
        if let Some(b64) = base.torrent_base64.take() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| ApiError::bad(format!("torrent_base64 is not base64: {e}")))?;
            torrents.push(bytes);
        }
    }
    let given = torrents.len() + base.magnet.is_some() as usize + base.url.is_some() as usize;
    if given == 0 {
        return Err(ApiError::bad(
            "give a .torrent file, a magnet link or a URL",
        ));
    }
    if !multipart && given > 1 {
        return Err(ApiError::bad(
            "give exactly one of magnet, url or torrent_base64",
        ));
    }
    if let Some(url) = &base.url {
        torrents.push(fetch_torrent(app, url).await?);
    }
    let mut requests: Vec<AddRequest> = torrents
        .into_iter()
        .map(|t| AddRequest {
            torrent: Some(t),
            ..AddRequest::default()
        })
        .collect();
    if let Some(m) = base.magnet.take() {
        requests.push(AddRequest {
            magnet: Some(m),
            ..AddRequest::default()
        });
    }
    // Validate the common fields once, before anything is added.
    if let Some(p) = &base.save_path {
        app.daemon.check_save_path(p)?;
    }
    let mut added = Vec::new();
    for mut r in requests {
        r.save_path = base.save_path.clone();
        r.paused = base.paused;
        r.category = base.category.clone();
        r.tags = base.tags.clone();
        r.peers = base.peers.clone();
        r.webtorrent_trackers = base.webtorrent_trackers.clone();
        let (id, info_hash) = app.daemon.add(r).await?;
        added.push(json!({"id": id, "info_hash": info_hash}));
    }
    if added.len() == 1 {
        Ok(added.remove(0))
    } else {
        Ok(json!({"added": added}))
    }
}

/// GET an http(s) URL of a .torrent file, at most [`MAX_TORRENT_BYTES`].
async fn fetch_torrent(app: &App, url: &str) -> Result<Vec<u8>, ApiError> {
    fetch_url(app.http.as_ref(), url)
        .await
        .map_err(ApiError::bad)
}

/// GET an http(s) URL of a .torrent file, at most [`MAX_TORRENT_BYTES`] (also used by the
/// qBittorrent and Transmission APIs).
pub(super) async fn fetch_url(
    client: Option<&reqwest::Client>,
    url: &str,
) -> Result<Vec<u8>, String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 4096 {
        return Err("the URL must be http:// or https://".into());
    }
    let client = client.ok_or("no HTTP client (TLS setup failed)")?;
    let mut res = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot fetch the URL: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("the URL answered {}", res.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| format!("cannot fetch the URL: {e}"))?
    {
        if body.len() + chunk.len() > MAX_TORRENT_BYTES {
            return Err("the URL's .torrent is larger than 10 MiB".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn detail(State(app): State<App>, Path(id): Path<String>) -> ApiResult {
    ok(app.daemon.detail_json(parse_id(&id)?)?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TorrentPatch {
    download_limit: Option<u64>,
    upload_limit: Option<u64>,
    sequential: Option<bool>,
    #[serde(default, with = "double_option")]
    category: Option<Option<String>>,
    tags: Option<Vec<String>>,
    #[serde(default, with = "double_option")]
    ratio_limit: Option<Option<f64>>,
    #[serde(default, with = "double_option")]
    seeding_time_limit: Option<Option<u64>>,
}

/// A field absent (`None`), `null` (`Some(None)`) or set (`Some(Some(v))`).
mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

async fn patch_torrent(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    let id = parse_id(&id)?;
    let p: TorrentPatch = parse_json(body)?;
    app.daemon.record(id)?;
    let category = p.category.map(|c| c.filter(|s| !s.is_empty()));
    app.daemon
        .set_meta(id, category, p.tags, p.ratio_limit, p.seeding_time_limit)?;
    if p.download_limit.is_some() || p.upload_limit.is_some() {
        app.daemon
            .set_limits(id, p.download_limit, p.upload_limit)?;
    }
    if let Some(s) = p.sequential {
        app.daemon.set_sequential(id, s)?;
    }
    ok(app.daemon.one_json(id)?)
}

#[derive(Deserialize)]
struct RemoveQuery {
    #[serde(default)]
    delete_data: Option<String>,
}

async fn remove(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    let delete_data = match q.delete_data.as_deref() {
        None => false,
        Some(s) => bool_field(s)?,
    };
    app.daemon.remove(id, delete_data).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct QueueBody {
    position: String,
}

#[derive(Deserialize)]
struct MoveBody {
    save_path: String,
}

async fn action(
    State(app): State<App>,
    Path((id, action)): Path<(String, String)>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    let id = parse_id(&id)?;
    match action.as_str() {
        "pause" => app.daemon.pause(id).await?,
        "resume" => app.daemon.resume(id, false).await?,
        "force_start" => app.daemon.resume(id, true).await?,
        "recheck" => app.daemon.recheck(id).await?,
        "queue" => {
            let q: QueueBody = parse_json(body)?;
            app.daemon.queue_move(id, &q.position)?;
            app.daemon.apply_queue().await;
        }
        "move" => {
            let m: MoveBody = parse_json(body)?;
            app.daemon.move_data(id, &m.save_path).await?;
        }
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no action {other:.30}: pause, resume, recheck, force_start, queue"),
            ));
        }
    }
    ok(app.daemon.one_json(id)?)
}

async fn files(State(app): State<App>, Path(id): Path<String>) -> ApiResult {
    ok(Value::from(app.daemon.files_json(parse_id(&id)?)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilesPatch {
    priorities: BTreeMap<String, String>,
}

async fn patch_files(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    let id = parse_id(&id)?;
    let p: FilesPatch = parse_json(body)?;
    let mut changes = Vec::with_capacity(p.priorities.len());
    for (k, v) in &p.priorities {
        let i: usize = k
            .parse()
            .map_err(|_| ApiError::bad(format!("not a file index: {k:.20}")))?;
        let prio = priority_from_name(v).ok_or_else(|| {
            ApiError::bad(format!(
                "priority must be skip, normal or high, not {v:.20}"
            ))
        })?;
        changes.push((i, prio));
    }
    app.daemon.set_priorities(id, &changes).await?;
    ok(Value::from(app.daemon.files_json(id)?))
}

async fn peers(State(app): State<App>, Path(id): Path<String>) -> ApiResult {
    let r = app.daemon.record(parse_id(&id)?)?;
    let Some(t) = app.daemon.session.torrent(r.engine_id) else {
        return ok(json!([]));
    };
    let list: Vec<Value> = t
        .peer_list(MAX_PEERS_LISTED)
        .into_iter()
        .map(|p| {
            let mut flags = String::new();
            if p.interested {
                flags.push('I');
            }
            if p.unchoked {
                flags.push('U');
            }
            if p.snubbed {
                flags.push('S');
            }
            json!({
                "address": p.addr.to_string(),
                "client": p.client.unwrap_or_default(),
                "transport": p.transport.to_string(),
                "encrypted": p.encrypted,
                "flags": flags,
                "download_rate": p.download_rate,
                "upload_rate": p.upload_rate,
                "progress": if p.piece_count == 0 { 0.0 } else { p.pieces as f64 / p.piece_count as f64 },
                "downloaded": p.downloaded,
                "uploaded": p.uploaded,
            })
        })
        .collect();
    ok(Value::from(list))
}

async fn trackers(State(app): State<App>, Path(id): Path<String>) -> ApiResult {
    ok(Value::from(app.daemon.trackers_json(parse_id(&id)?)?))
}

async fn pieces(State(app): State<App>, Path(id): Path<String>) -> ApiResult {
    ok(app.daemon.pieces_json(parse_id(&id)?)?)
}

async fn categories(State(app): State<App>) -> ApiResult {
    ok(serde_json::to_value(app.daemon.categories()).unwrap_or_default())
}

#[derive(Deserialize)]
struct CategoryBody {
    name: String,
    save_path: String,
}

async fn add_category(
    State(app): State<App>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult {
    let c: CategoryBody = parse_json(body)?;
    app.daemon.add_category(&c.name, &c.save_path)?;
    ok(serde_json::to_value(app.daemon.categories()).unwrap_or_default())
}

async fn remove_category(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.daemon.remove_category(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Server-Sent Events: a snapshot, then changed torrents, removals and the session once a
/// second. One task per client; it ends when the client goes.
async fn events(State(app): State<App>) -> impl IntoResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(8);
    tokio::spawn(async move {
        let list = app.daemon.list_json();
        let snapshot = json!({"session": app.daemon.session_json(), "torrents": list});
        if tx
            .send(
                Event::default()
                    .event("snapshot")
                    .data(snapshot.to_string()),
            )
            .await
            .is_err()
        {
            return;
        }
        let mut prev: HashMap<u64, Value> = list
            .into_iter()
            .filter_map(|t| Some((t["id"].as_u64()?, t)))
            .collect();
        let mut changes = app.daemon.session.subscribe();
        loop {
            // At most once a second; sooner only for a change of the table.
            let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now: HashMap<u64, Value> = app
                .daemon
                .list_json()
                .into_iter()
                .filter_map(|t| Some((t["id"].as_u64()?, t)))
                .collect();
            let mut changed: Vec<&Value> = now
                .iter()
                .filter(|(id, t)| prev.get(id) != Some(t))
                .map(|(_, t)| t)
                .collect();
            changed.sort_by_key(|t| t["id"].as_u64());
            let mut out = Vec::new();
            if !changed.is_empty() {
                out.push(
                    Event::default()
                        .event("torrents")
                        .data(json!(changed).to_string()),
                );
            }
            for id in prev.keys().filter(|id| !now.contains_key(id)) {
                out.push(
                    Event::default()
                        .event("removed")
                        .data(json!({"id": id}).to_string()),
                );
            }
            out.push(
                Event::default()
                    .event("session")
                    .data(app.daemon.session_json().to_string()),
            );
            for e in out {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            prev = now;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Prometheus text format, hand-written.
async fn metrics(State(app): State<App>) -> Response {
    let list = app.daemon.list_json();
    let mut by_state: BTreeMap<&str, u64> = [
        "metadata",
        "checking",
        "queued",
        "paused",
        "downloading",
        "seeding",
        "error",
    ]
    .into_iter()
    .map(|s| (s, 0))
    .collect();
    let (mut down, mut up, mut dl, mut ul, mut peers) = (0u64, 0u64, 0u64, 0u64, 0u64);
    for t in &list {
        if let Some(n) = t["state"].as_str().and_then(|s| by_state.get_mut(s)) {
            *n += 1;
        }
        down += t["download_rate"].as_u64().unwrap_or(0);
        up += t["upload_rate"].as_u64().unwrap_or(0);
        dl += t["downloaded"].as_u64().unwrap_or(0);
        ul += t["uploaded"].as_u64().unwrap_or(0);
        peers += t["peers"].as_u64().unwrap_or(0);
    }
    let mut s = String::new();
    s.push_str("# HELP bitpeer_torrents Torrents by state.\n# TYPE bitpeer_torrents gauge\n");
    for (state, n) in by_state {
        s.push_str(&format!("bitpeer_torrents{{state=\"{state}\"}} {n}\n"));
    }
    for (name, kind, help, v) in [
        (
            "bitpeer_download_rate_bytes",
            "gauge",
            "Payload bytes per second received now.",
            down,
        ),
        (
            "bitpeer_upload_rate_bytes",
            "gauge",
            "Payload bytes per second sent now.",
            up,
        ),
        (
            "bitpeer_downloaded_bytes_total",
            "counter",
            "Payload bytes received since start.",
            dl,
        ),
        (
            "bitpeer_uploaded_bytes_total",
            "counter",
            "Payload bytes sent since start.",
            ul,
        ),
        (
            "bitpeer_peers",
            "gauge",
            "Connected peers, all torrents.",
            peers,
        ),
        (
            "bitpeer_connections",
            "gauge",
            "Peer connections open, all torrents.",
            app.daemon.session.connection_count() as u64,
        ),
    ] {
        s.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s,
    )
        .into_response()
}

async fn fallback(req: Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/api/") {
        return ApiError(
            StatusCode::NOT_FOUND,
            format!("no such API endpoint: {path:.100}"),
        )
        .into_response();
    }
    match crate::webui::asset(path) {
        Some(a) => {
            let mut res = ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response();
            for (k, v) in crate::webui::HEADERS {
                if let (Ok(k), Ok(v)) = (
                    axum::http::HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    res.headers_mut().insert(k, v);
                }
            }
            res
        }
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// How long a stream waits for the next piece before it ends.
const STREAM_STALL: Duration = Duration::from_secs(120);
/// Bytes read and sent at a time.
const STREAM_CHUNK: u64 = 256 << 10;
/// How far ahead of a reader its pieces are picked first (2 to 64 pieces).
const STREAM_READ_AHEAD: u64 = 8 << 20;

/// `bytes=A-B`, `bytes=A-` or `bytes=-N` of a file of `len` bytes: (start, end exclusive).
/// `None` for a range that cannot be satisfied; `Some(None)` for no (or an ignored) header.
fn parse_range(header: Option<&str>, len: u64) -> Option<Option<(u64, u64)>> {
    let Some(h) = header else { return Some(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Some(None);
    };
    if spec.contains(',') {
        return Some(None); // several ranges: answer the whole file
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        (len.saturating_sub(n), len)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            len
        } else {
            b.parse::<u64>().ok()?.saturating_add(1).min(len)
        };
        (start, end)
    };
    if range.0 >= range.1 {
        return None;
    }
    Some(Some(range))
}

/// A file's bytes while it downloads: each chunk is sent once its pieces are verified
/// (the torrent is switched to sequential, so the pieces ahead come first). Range requests
/// get a 206.
async fn stream(
    State(app): State<App>,
    Path((id, index)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let r = app.daemon.record(id)?;
    let meta = app.daemon.session.metainfo(r.engine_id).ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            "the torrent's metadata is not known yet".into(),
        )
    })?;
    let index: usize = index
        .parse()
        .ok()
        .filter(|&i| i < meta.info.files.len())
        .ok_or_else(|| ApiError::bad(format!("no file with index {index:.20}")))?;
    let file = &meta.info.files[index];
    let len = file.length;
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    )
    .ok_or_else(|| {
        ApiError(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("the file has {len} bytes"),
        )
    })?;
    let (start, end) = range.unwrap_or((0, len));
    let path = r.save_path.join(meta.info.file_path(index));
    let file_offset = file.offset;
    let piece_len = meta.info.piece_length.max(1);
    // The pieces just ahead of this reader go first (its own window, released when it
    // goes away); the rest of the torrent keeps its order.
    let last_piece = (file_offset + len.max(1) - 1) / piece_len;
    let ahead = (STREAM_READ_AHEAD / piece_len).clamp(2, 64);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let daemon = app.daemon.clone();
    let eid = r.engine_id;
    tokio::spawn(async move {
        let mut pos = start;
        let mut window: Option<engine::torrent::StreamWindow> = None;
        while pos < end {
            let n = STREAM_CHUNK.min(end - pos);
            let first = (file_offset + pos) / piece_len;
            let last = (file_offset + pos + n - 1) / piece_len;
            let to_u32 = |p: u64| u32::try_from(p).unwrap_or(u32::MAX);
            let want = to_u32(first)..to_u32((first + ahead).min(last_piece + 1));
            // Wait (bounded) until every piece under this chunk is verified.
            let waited = tokio::time::timeout(STREAM_STALL, async {
                loop {
                    let ready = daemon.session.torrent(eid).is_some_and(|t| {
                        // A torrent started again is a new one: a new window on it.
                        let w = match window.take() {
                            Some(w) if w.is_on(&t) => window.insert(w),
                            _ => window.insert(t.stream_window()),
                        };
                        w.set(want.clone());
                        let have = t.have();
                        (first..=last).all(|p| have.get(p as u32))
                    });
                    if ready || tx.is_closed() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
            .await;
            if waited.is_err() || tx.is_closed() {
                return;
            }
            let p = path.clone();
            let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                use std::os::unix::fs::FileExt;
                let f = std::fs::File::open(&p)?;
                let mut buf = vec![0u8; n as usize];
                f.read_exact_at(&mut buf, pos)?;
                Ok(buf)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            let failed = read.is_err();
            if tx.send(read.map(Bytes::from)).await.is_err() || failed {
                return;
            }
            pos += n;
        }
    });
    let body =
        axum::body::Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|x| (x, rx))
        }));
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&(end - start).to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if range.is_some() {
        *res.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)) {
            res.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_bound() {
        assert_eq!(parse_range(None, 100), Some(None));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Some(Some((0, 10))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Some(Some((90, 100))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Some(Some((90, 100))));
        assert_eq!(
            parse_range(Some("bytes=50-1000"), 100),
            Some(Some((50, 100)))
        );
        assert_eq!(parse_range(Some("bytes=100-"), 100), None);
        assert_eq!(parse_range(Some("bytes=9-2"), 100), None);
        assert_eq!(parse_range(Some("bytes=x-2"), 100), None);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Some(None));
        assert_eq!(parse_range(Some("items=0-1"), 100), Some(None));
    }

    #[test]
    fn ids_are_plain_numbers() {
        assert_eq!(parse_id("42").ok().unwrap(), 42);
        for bad in ["", "-1", "1e3", "abc", "99999999999999999999999", "../1"] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]:8080",
            "127.1.2.3",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "",
            "evil.example:8080",
            "192.168.1.2",
            "[2001:db8::1]:80",
            "localhost.evil",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }

    #[test]
    fn login_form_decodes() {
        let l = serde_urlencoded_login(b"username=a%20b&password=p+q%21").unwrap();
        assert_eq!(l.username, "a b");
        assert_eq!(l.password, "p q!");
        assert!(serde_urlencoded_login(b"username=a").is_none());
        assert!(serde_urlencoded_login(b"username=%zz&password=").is_none());
    }

    #[test]
    fn tokens_are_random_hex() {
        let a = random_token();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_token());
    }
}
