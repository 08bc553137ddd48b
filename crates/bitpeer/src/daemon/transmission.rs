//! Transmission RPC (`/transmission/rpc`), presenting as Transmission 4.0.6 (rpc-version
//! 17) on the daemon's state: what Sonarr, transmission-remote and `transmission-rpc` call.
//! HTTP Basic is checked first (401), then the `X-Transmission-Session-Id` exchange (409
//! with the id to use). Torrent ids are the daemon's numeric ids; hash strings work too.

use super::api::{BODY_LIMIT, random_token};
use super::qbittorrent::{
    authorization_checked, free_space, merge, peer_ip, snapshot, tracker_list,
};
use super::state::{
    AddRequest, Daemon, OpError, PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_SKIP, Record,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::sync::Arc;

pub const TR_VERSION: &str = "4.0.6 (38c164933e)";
const SESSION_HEADER: &str = "x-transmission-session-id";
/// Speeds in kB/s, as Transmission counts them (1000 bytes).
const KB: u64 = 1000;
/// Seconds a torrent counts as recently active.
const RECENT: u64 = 60;

#[derive(Clone)]
struct Tr {
    daemon: Daemon,
    /// Fetches a `filename` that is an http(s) link to a .torrent file.
    http: Option<reqwest::Client>,
    session_id: Arc<String>,
}

/// The service for `/transmission/rpc` (and `/transmission/rpc/`).
pub fn router(daemon: Daemon, http: Option<reqwest::Client>) -> Router {
    let tr = Tr {
        daemon,
        http,
        session_id: Arc::new(random_token()),
    };
    Router::new().fallback(rpc).with_state(tr)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"Transmission\"")],
        "<h1>401: Unauthorized</h1>Unauthorized User",
    )
        .into_response()
}

fn conflict(id: &str) -> Response {
    let mut res = (
        StatusCode::CONFLICT,
        format!("<h1>409: Conflict</h1><p>Your request had an invalid session-id header.</p><p><code>X-Transmission-Session-Id: {id}</code></p>"),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(id) {
        res.headers_mut().insert(SESSION_HEADER, v);
    }
    res
}

async fn rpc(State(tr): State<Tr>, req: Request) -> Response {
    let d = &tr.daemon;
    if d.config.has_credentials() {
        if d.login_guard.banned_now(peer_ip(&req)) {
            return (StatusCode::FORBIDDEN, super::guard::BANNED).into_response();
        }
        if authorization_checked(d, req.headers(), peer_ip(&req)) != Some(true) {
            return unauthorized();
        }
    }
    let sid_ok = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| super::api::same_secret(v.as_bytes(), tr.session_id.as_bytes()));
    if !sid_ok {
        return conflict(&tr.session_id);
    }
    if req.method() != axum::http::Method::POST {
        return (StatusCode::METHOD_NOT_ALLOWED, "POST a JSON request").into_response();
    }
    let body = match Bytes::from_request(req, &()).await {
        Ok(b) => b,
        Err(e) => {
            return (
                e.status(),
                format!(
                    "request body larger than {} MiB or unreadable",
                    BODY_LIMIT >> 20
                ),
            )
                .into_response();
        }
    };
    let Some(request) = webform::parse_rpc(&body) else {
        return (StatusCode::BAD_REQUEST, "<h1>400: Bad Request</h1>not JSON").into_response();
    };
    let (result, arguments) = match call(&tr, &request.method, &request.arguments).await {
        Ok(a) => ("success".to_string(), a),
        Err(e) => (e, json!({})),
    };
    let mut out = json!({"result": result, "arguments": arguments});
    if let Some(tag) = request.tag {
        out["tag"] = tag;
    }
    let mut res = axum::Json(out).into_response();
    if let Ok(v) = HeaderValue::from_str(&tr.session_id) {
        res.headers_mut().insert(SESSION_HEADER, v);
    }
    res
}

type R = Result<Value, String>;

fn op(e: OpError) -> String {
    e.to_string()
}

async fn call(tr: &Tr, method: &str, a: &Value) -> R {
    let d = &tr.daemon;
    match method {
        "session-get" => Ok(session(d, a)),
        "session-set" => session_set(d, a).await,
        "session-stats" => {
            let s = d.session_json();
            let list = snapshot(d);
            let active = list
                .iter()
                .filter(|(_, v)| v["state"] == "downloading" || v["state"] == "seeding")
                .count();
            let stats = json!({"uploadedBytes": s["uploaded"], "downloadedBytes": s["downloaded"],
                "filesAdded": list.len(), "sessionCount": 1, "secondsActive": 0});
            Ok(json!({
                "activeTorrentCount": active, "pausedTorrentCount": list.len() - active,
                "torrentCount": list.len(), "downloadSpeed": s["download_rate"], "uploadSpeed": s["upload_rate"],
                "cumulative-stats": stats, "current-stats": stats,
            }))
        }
        "session-close" => Err("session-close is not allowed over RPC here".into()),
        "free-space" => {
            let path = a["path"].as_str().ok_or("no path")?;
            let bytes = free_space(std::path::Path::new(path)).ok_or("cannot read free space")?;
            Ok(json!({"path": path, "size-bytes": bytes, "total_size": bytes}))
        }
        "port-test" => Ok(json!({"port-is-open": false, "ip_protocol": "ipv4"})),
        "blocklist-update" => Ok(json!({"blocklist-size": 0})),
        "torrent-get" => torrent_get(d, a),
        "torrent-add" => torrent_add(tr, a).await,
        "torrent-remove" => {
            let delete = a["delete-local-data"].as_bool().unwrap_or(false);
            for r in ids(d, a)? {
                d.remove(r.id, delete).await.map_err(op)?;
            }
            Ok(json!({}))
        }
        "torrent-start" | "torrent-start-now" => {
            for r in ids(d, a)? {
                d.resume(r.id, method == "torrent-start-now")
                    .await
                    .map_err(op)?;
            }
            Ok(json!({}))
        }
        "torrent-stop" => {
            for r in ids(d, a)? {
                d.pause(r.id).await.map_err(op)?;
            }
            Ok(json!({}))
        }
        "torrent-verify" => {
            for r in ids(d, a)? {
                d.recheck(r.id).await.map_err(op)?;
            }
            Ok(json!({}))
        }
        "torrent-reannounce" => {
            ids(d, a)?;
            Ok(json!({}))
        }
        "torrent-set" => torrent_set(d, a).await,
        "torrent-set-location" => {
            let loc = a["location"].as_str().ok_or("no location")?;
            let path = d.check_save_path(loc).map_err(op)?;
            let moving = a["move"].as_bool().unwrap_or(false);
            for r in ids(d, a)? {
                if r.save_path == path {
                    continue;
                }
                if moving {
                    d.move_data(r.id, loc).await.map_err(op)?;
                } else {
                    // The data is said to lie there already: point there and check it.
                    d.relocate(r.id, loc).await.map_err(op)?;
                }
            }
            Ok(json!({}))
        }
        "queue-move-top" | "queue-move-up" | "queue-move-down" | "queue-move-bottom" => {
            let how = method.trim_start_matches("queue-move-");
            let mut sel = ids(d, a)?;
            sel.sort_by_key(|r| r.queue);
            if how == "top" || how == "down" {
                sel.reverse();
            }
            for r in sel {
                d.queue_move(r.id, how).map_err(op)?;
            }
            d.apply_queue().await;
            Ok(json!({}))
        }
        "" => Err("no method name".into()),
        other => Err(format!("method name not recognized: {other:.40}")),
    }
}

/// `session-set`: the keys that map onto the daemon's settings are applied at once and
/// kept (speed limits, download folder, seeding limits, queue sizes, peer limits); the
/// others (DHT, PeX, LPD, the peer port, alternative speeds, ...) are ignored.
async fn session_set(d: &Daemon, a: &Value) -> R {
    let dir = match a["download-dir"].as_str() {
        Some(p) if !p.trim().is_empty() => Some(d.check_save_path(p).map_err(op)?),
        _ => None,
    };
    let on = |k: &str| a[k].as_bool();
    let count = |k: &str| a[k].as_u64().map(|n| n.min(65_535) as usize);
    d.set_prefs(|s| {
        if let Some(dir) = dir {
            s.download_dir = dir;
        }
        for (value, enabled, slot) in [
            (
                "speed-limit-down",
                "speed-limit-down-enabled",
                &mut s.download_limit,
            ),
            (
                "speed-limit-up",
                "speed-limit-up-enabled",
                &mut s.upload_limit,
            ),
        ] {
            match (on(enabled), a.get(value).and_then(kb_per_s)) {
                (Some(false), _) => *slot = 0,
                (_, Some(v)) => *slot = v,
                _ => {}
            }
        }
        match (on("seedRatioLimited"), a["seedRatioLimit"].as_f64()) {
            (Some(false), _) => s.ratio_limit = None,
            (Some(true), r) => {
                s.ratio_limit = r.filter(|r| *r >= 0.0).or(s.ratio_limit).or(Some(2.0))
            }
            (None, Some(r)) if s.ratio_limit.is_some() && r >= 0.0 => s.ratio_limit = Some(r),
            _ => {}
        }
        let idle = a["idle-seeding-limit"]
            .as_u64()
            .map(|m| m.saturating_mul(60));
        match on("idle-seeding-limit-enabled") {
            Some(false) => s.seeding_time_limit = None,
            Some(true) => s.seeding_time_limit = idle.or(s.seeding_time_limit).or(Some(30 * 60)),
            None if s.seeding_time_limit.is_some() && idle.is_some() => s.seeding_time_limit = idle,
            None => {}
        }
        // One queueing switch in the daemon: on while either queue is.
        let mut downloads = if s.queueing {
            s.max_active_downloads
        } else {
            0
        };
        let mut seeds = if s.queueing { s.max_active_seeds } else { 0 };
        for (size, enabled, slot) in [
            (
                "download-queue-size",
                "download-queue-enabled",
                &mut downloads,
            ),
            ("seed-queue-size", "seed-queue-enabled", &mut seeds),
        ] {
            match (on(enabled), count(size)) {
                (Some(false), _) => *slot = 0,
                (Some(true), n) => *slot = n.filter(|n| *n > 0).unwrap_or((*slot).max(5)),
                (None, Some(n)) if *slot > 0 => *slot = n,
                _ => {}
            }
        }
        let queue_keys = [
            "download-queue-size",
            "download-queue-enabled",
            "seed-queue-size",
            "seed-queue-enabled",
        ];
        if queue_keys.iter().any(|k| a.get(*k).is_some()) {
            s.max_active_downloads = downloads;
            s.max_active_seeds = seeds;
            s.queueing = downloads > 0 || seeds > 0;
        }
        if let Some(n) = count("peer-limit-global").filter(|n| *n > 0) {
            s.max_connections = n;
        }
        if let Some(n) = count("peer-limit-per-torrent").filter(|n| *n > 0) {
            s.max_peers_per_torrent = n;
        }
    })
    .await
    .map_err(op)?;
    Ok(json!({}))
}

/// A speed in kB/s (an integer, or a fraction as some clients send) as bytes per second.
fn kb_per_s(v: &Value) -> Option<u64> {
    let kb = v.as_f64().filter(|x| x.is_finite() && *x >= 0.0)?;
    Some((kb * KB as f64).min(u64::MAX as f64) as u64)
}

fn session(d: &Daemon, a: &Value) -> Value {
    let c = &d.config;
    let s = d.prefs();
    let v = json!({
        "version": TR_VERSION,
        "rpc-version": 17,
        "rpc-version-semver": "5.3.0",
        "rpc-version-minimum": 14,
        "session-id": "",
        "download-dir": s.download_dir.display().to_string(),
        "download-dir-free-space": free_space(&s.download_dir).unwrap_or(0),
        "incomplete-dir-enabled": false,
        "incomplete-dir": s.download_dir.display().to_string(),
        "seedRatioLimit": s.ratio_limit.unwrap_or(2.0),
        "seedRatioLimited": s.ratio_limit.is_some(),
        "idle-seeding-limit": s.seeding_time_limit.map(|t| t / 60).unwrap_or(30),
        "idle-seeding-limit-enabled": s.seeding_time_limit.is_some(),
        "speed-limit-down": s.download_limit / KB,
        "speed-limit-down-enabled": s.download_limit > 0,
        "speed-limit-up": s.upload_limit / KB,
        "speed-limit-up-enabled": s.upload_limit > 0,
        "alt-speed-enabled": false, "alt-speed-down": 50, "alt-speed-up": 50,
        "alt-speed-time-enabled": false, "alt-speed-time-begin": 540, "alt-speed-time-end": 1020,
        "alt-speed-time-day": 127,
    });
    let more = json!({
        "download-queue-enabled": s.queueing && s.max_active_downloads > 0,
        "download-queue-size": if s.max_active_downloads > 0 { s.max_active_downloads } else { 5 },
        "seed-queue-enabled": s.queueing && s.max_active_seeds > 0,
        "seed-queue-size": if s.max_active_seeds > 0 { s.max_active_seeds } else { 10 },
        "queue-stalled-enabled": false, "queue-stalled-minutes": 30,
        "dht-enabled": c.dht, "lpd-enabled": c.lsd, "pex-enabled": true, "utp-enabled": false,
    });
    let rest = json!({
        "peer-port": d.session.listen_addr().port(),
        "peer-port-random-on-start": false, "port-forwarding-enabled": false,
        "peer-limit-global": s.max_connections, "peer-limit-per-torrent": s.max_peers_per_torrent,
        "encryption": "preferred", "blocklist-enabled": false, "blocklist-size": 0, "blocklist-url": "",
        "start-added-torrents": true, "rename-partial-files": false, "trash-original-torrent-files": false,
        "cache-size-mb": 4, "config-dir": c.state_dir.display().to_string(),
        "script-torrent-done-enabled": false, "script-torrent-done-filename": "",
        "script-torrent-added-enabled": false, "script-torrent-added-filename": "",
        "script-torrent-done-seeding-enabled": false, "script-torrent-done-seeding-filename": "",
        "default-trackers": "", "anti-brute-force-enabled": false, "anti-brute-force-threshold": 100,
        "units": {
            "speed-units": ["kB/s", "MB/s", "GB/s", "TB/s"], "speed-bytes": KB,
            "size-units": ["kB", "MB", "GB", "TB"], "size-bytes": KB,
            "memory-units": ["KiB", "MiB", "GiB", "TiB"], "memory-bytes": 1024,
        },
    });
    pick(&merge(merge(v, more), rest), a.get("fields"))
}

/// Keep only the asked fields (all when no list is given).
fn pick(v: &Value, fields: Option<&Value>) -> Value {
    match (v, fields.and_then(Value::as_array)) {
        (Value::Object(m), Some(f)) if !f.is_empty() => Value::Object(
            f.iter()
                .filter_map(|k| k.as_str())
                .filter_map(|k| m.get(k).map(|x| (k.to_string(), x.clone())))
                .collect(),
        ),
        _ => v.clone(),
    }
}

/// The torrents `ids` names: absent = all, a number, a hash, a list of both, or
/// `"recently-active"`.
fn ids(d: &Daemon, a: &Value) -> Result<Vec<Record>, String> {
    let records = d.records();
    let matches = |r: &Record, x: &Value| match x {
        Value::Number(n) => n.as_u64() == Some(r.id),
        Value::String(s) => s.eq_ignore_ascii_case(&r.info_hash),
        _ => false,
    };
    Ok(match a.get("ids") {
        None | Some(Value::Null) => records,
        Some(Value::String(s)) if s == "recently-active" => {
            let now = super::state::now_secs();
            let active: std::collections::HashSet<u64> = snapshot(d)
                .iter()
                .filter(|(r, v)| {
                    now.saturating_sub(r.added_at) < RECENT
                        || v["download_rate"].as_u64() > Some(0)
                        || v["upload_rate"].as_u64() > Some(0)
                })
                .map(|(r, _)| r.id)
                .collect();
            records
                .into_iter()
                .filter(|r| active.contains(&r.id))
                .collect()
        }
        Some(Value::Array(list)) => {
            // Sets, so a long list costs one pass over the torrents.
            let nums: std::collections::HashSet<u64> =
                list.iter().filter_map(Value::as_u64).collect();
            let hashes: std::collections::HashSet<String> = list
                .iter()
                .filter_map(|x| x.as_str().map(str::to_ascii_lowercase))
                .collect();
            records
                .into_iter()
                .filter(|r| nums.contains(&r.id) || hashes.contains(&r.info_hash))
                .collect()
        }
        Some(x) => records.into_iter().filter(|r| matches(r, x)).collect(),
    })
}

/// Transmission's status numbers.
fn tr_status(v: &Value) -> u8 {
    let complete = v["progress"].as_f64().unwrap_or(0.0) >= 1.0;
    match v["state"].as_str().unwrap_or("") {
        "checking" => 2,
        "queued" if complete => 5,
        "queued" => 3,
        "metadata" | "downloading" => 4,
        "seeding" => 6,
        _ => 0,
    }
}

fn tr_torrent(d: &Daemon, r: &Record, v: &Value, wanted: &[&str]) -> Value {
    let now = super::state::now_secs();
    let want = |k: &str| wanted.is_empty() || wanted.contains(&k);
    let size = v["wanted_size"].as_u64().unwrap_or(0);
    let total = v["size"].as_u64().unwrap_or(0);
    let progress = v["progress"].as_f64().unwrap_or(0.0);
    let have = if progress >= 1.0 {
        size
    } else {
        v["have_bytes"].as_u64().unwrap_or(0).min(size)
    };
    let status = tr_status(v);
    let error = v["state"] == "error";
    let meta = d.session.metainfo(r.engine_id);
    let mut m = Map::new();
    let mut put = |k: &str, x: Value| {
        if want(k) {
            m.insert(k.to_string(), x);
        }
    };
    put("id", json!(r.id));
    put("hashString", json!(r.info_hash));
    put("name", v["name"].clone());
    put("downloadDir", json!(r.save_path.display().to_string()));
    put("totalSize", json!(total));
    put("sizeWhenDone", json!(size));
    put("leftUntilDone", json!(size - have));
    put("haveValid", json!(have));
    put("haveUnchecked", json!(0));
    put("desiredAvailable", json!(0));
    put("corruptEver", json!(0));
    put("percentDone", json!(progress));
    put(
        "percentComplete",
        json!(if total == 0 {
            0.0
        } else {
            have as f64 / total as f64
        }),
    );
    put(
        "metadataPercentComplete",
        json!(if meta.is_some() { 1.0 } else { 0.0 }),
    );
    put("recheckProgress", json!(0.0));
    put("status", json!(status));
    put("error", json!(if error { 3 } else { 0 }));
    put("errorString", json!(v["error"].as_str().unwrap_or("")));
    put(
        "isFinished",
        json!(progress >= 1.0 && v["state"] == "paused"),
    );
    put("isStalled", json!(false));
    put("isPrivate", v["private"].clone());
    put(
        "eta",
        json!(v["eta"].as_u64().map(|e| e as i64).unwrap_or(-1)),
    );
    put("etaIdle", json!(-1));
    put("rateDownload", v["download_rate"].clone());
    put("rateUpload", v["upload_rate"].clone());
    put("downloadedEver", v["downloaded"].clone());
    put("uploadedEver", v["uploaded"].clone());
    put(
        "uploadRatio",
        json!(if v["downloaded"].as_u64() == Some(0) {
            -1.0
        } else {
            v["ratio"].as_f64().unwrap_or(0.0)
        }),
    );
    let (ratio_mode, ratio) = match r.ratio_limit {
        None => (0, d.prefs().ratio_limit.unwrap_or(2.0)),
        Some(x) if x >= 1e300 => (2, 0.0),
        Some(x) => (1, x),
    };
    put("seedRatioMode", json!(ratio_mode));
    put("seedRatioLimit", json!(ratio));
    let (idle_mode, idle) = match r.seeding_time_limit {
        None => (0, 30),
        Some(u64::MAX) => (2, 0),
        Some(s) => (1, s / 60),
    };
    put("seedIdleMode", json!(idle_mode));
    put("seedIdleLimit", json!(idle));
    put("addedDate", json!(r.added_at));
    put("doneDate", json!(r.completed_at.unwrap_or(0)));
    put("startDate", json!(r.added_at));
    put("activityDate", json!(now));
    put("editDate", json!(0));
    put(
        "dateCreated",
        json!(meta.as_ref().and_then(|m| m.creation_date).unwrap_or(0)),
    );
    put(
        "comment",
        json!(
            meta.as_ref()
                .and_then(|m| m.comment.clone())
                .unwrap_or_default()
        ),
    );
    put(
        "creator",
        json!(
            meta.as_ref()
                .and_then(|m| m.created_by.clone())
                .unwrap_or_default()
        ),
    );
    put(
        "secondsDownloading",
        json!(r.completed_at.unwrap_or(now).saturating_sub(r.added_at)),
    );
    put(
        "secondsSeeding",
        json!(r.completed_at.map(|c| now.saturating_sub(c)).unwrap_or(0)),
    );
    put("labels", json!(r.tags));
    put("group", json!(""));
    put(
        "queuePosition",
        json!(v["queue_position"].as_u64().unwrap_or(1).saturating_sub(1)),
    );
    put("downloadLimit", json!(r.download_limit / KB));
    put("downloadLimited", json!(r.download_limit > 0));
    put("uploadLimit", json!(r.upload_limit / KB));
    put("uploadLimited", json!(r.upload_limit > 0));
    put("honorsSessionLimits", json!(true));
    put("bandwidthPriority", json!(0));
    put("peer-limit", json!(50));
    put(
        "magnetLink",
        json!(format!("magnet:?xt=urn:btih:{}", r.info_hash)),
    );
    put(
        "pieceCount",
        json!(meta.as_ref().map(|m| m.info.pieces.len()).unwrap_or(0)),
    );
    put(
        "pieceSize",
        json!(meta.as_ref().map(|m| m.info.piece_length).unwrap_or(0)),
    );
    put("peersConnected", v["peers"].clone());
    put(
        "peersSendingToUs",
        json!(if v["download_rate"].as_u64() > Some(0) {
            v["seeds"].as_u64().unwrap_or(0)
        } else {
            0
        }),
    );
    put("peersGettingFromUs", json!(0));
    put("webseedsSendingToUs", json!(0));
    put("webseeds", json!([]));
    put("torrentFile", json!(""));
    put("primary-mime-type", json!("application/octet-stream"));
    put("sequentialDownload", json!(r.sequential));
    let need_files = [
        "files",
        "fileStats",
        "priorities",
        "wanted",
        "fileCount",
        "file-count",
    ]
    .iter()
    .any(|k| want(k));
    if need_files {
        let files = d.files_json(r.id).unwrap_or_default();
        let prio = |f: &Value| f["priority"].as_str().unwrap_or("normal").to_string();
        put("fileCount", json!(files.len()));
        put("file-count", json!(files.len()));
        put(
            "files",
            Value::from(
                files
                    .iter()
                    .map(|f| json!({"name": f["path"], "length": f["size"], "bytesCompleted": f["have_bytes"], "begin_piece": 0, "end_piece": 0}))
                    .collect::<Vec<_>>(),
            ),
        );
        let pnum = |f: &Value| match prio(f).as_str() {
            "high" => 1,
            _ => 0,
        };
        put(
            "fileStats",
            Value::from(
                files
                    .iter()
                    .map(|f| json!({"bytesCompleted": f["have_bytes"], "wanted": prio(f) != "skip", "priority": pnum(f)}))
                    .collect::<Vec<_>>(),
            ),
        );
        put(
            "priorities",
            Value::from(files.iter().map(pnum).collect::<Vec<_>>()),
        );
        put(
            "wanted",
            Value::from(
                files
                    .iter()
                    .map(|f| (prio(f) != "skip") as u8)
                    .collect::<Vec<_>>(),
            ),
        );
    }
    if want("trackers") || want("trackerStats") || want("trackerList") {
        let list = tracker_list(d, r).unwrap_or_default();
        put(
            "trackers",
            Value::from(
                list.iter()
                    .enumerate()
                    .map(|(i, t)| json!({"id": i, "announce": t["url"], "scrape": "", "tier": t["tier"], "sitename": ""}))
                    .collect::<Vec<_>>(),
            ),
        );
        put(
            "trackerStats",
            Value::from(
                list.iter()
                    .enumerate()
                    .map(|(i, t)| json!({
                        "id": i, "announce": t["url"], "scrape": "", "tier": t["tier"], "host": "",
                        "sitename": "", "lastAnnounceSucceeded": t["status"] == "working",
                        "lastAnnounceResult": t["message"], "seederCount": t["seeds"].as_i64().unwrap_or(-1),
                        "leecherCount": t["leechers"].as_i64().unwrap_or(-1),
                        "lastAnnouncePeerCount": t["peers"].as_i64().unwrap_or(0),
                        "announceState": 1, "scrapeState": 0, "downloadCount": -1,
                        "hasAnnounced": t["status"] == "working", "hasScraped": false, "isBackup": false,
                        "lastAnnounceTime": 0, "lastScrapeTime": 0, "nextAnnounceTime": 0, "nextScrapeTime": 0,
                        "lastAnnounceTimedOut": false, "lastScrapeSucceeded": false, "lastScrapeResult": "",
                        "lastScrapeTimedOut": false, "lastAnnounceStartTime": 0, "lastScrapeStartTime": 0,
                    }))
                    .collect::<Vec<_>>(),
            ),
        );
        put(
            "trackerList",
            json!(
                list.iter()
                    .filter_map(|t| t["url"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        );
    }
    if want("peers") || want("peersFrom") {
        let peers: Vec<Value> = d
            .session
            .torrent(r.engine_id)
            .map(|t| t.peer_list(500))
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                json!({
                    "address": p.addr.ip().to_string(), "port": p.addr.port(),
                    "clientName": p.client.unwrap_or_default(), "clientIsChoked": !p.unchoked,
                    "clientIsInterested": false, "flagStr": "", "isDownloadingFrom": false,
                    "isEncrypted": p.encrypted, "isIncoming": false,
                    "isUTP": p.transport == engine::transport::TransportKind::Utp,
                    "isUploadingTo": p.unchoked && p.interested, "peerIsChoked": !p.unchoked,
                    "peerIsInterested": p.interested,
                    "progress": if p.piece_count == 0 { 0.0 } else { p.pieces as f64 / p.piece_count as f64 },
                    "rateToClient": p.download_rate, "rateToPeer": p.upload_rate, "bytes_to_client": p.downloaded, "bytes_to_peer": p.uploaded,
                })
            })
            .collect();
        let n = peers.len();
        put("peers", Value::from(peers));
        put(
            "peersFrom",
            json!({"fromCache": 0, "fromDht": 0, "fromIncoming": 0, "fromLpd": 0, "fromLtep": 0, "fromPex": 0, "fromTracker": n}),
        );
    }
    if want("pieces") {
        let bits = d
            .pieces_json(r.id)
            .ok()
            .and_then(|p| p["have"].as_str().map(str::to_string))
            .unwrap_or_default();
        put("pieces", json!(bits));
    }
    Value::Object(m)
}

fn torrent_get(d: &Daemon, a: &Value) -> R {
    let fields: Vec<&str> = a["fields"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let selected: Vec<u64> = ids(d, a)?.iter().map(|r| r.id).collect();
    let list: Vec<Value> = snapshot(d)
        .iter()
        .filter(|(r, _)| selected.contains(&r.id))
        .map(|(r, v)| tr_torrent(d, r, v, &fields))
        .collect();
    let mut out = if a["format"] == "table" {
        let mut rows = vec![json!(fields)];
        for t in &list {
            rows.push(Value::from(
                fields
                    .iter()
                    .map(|f| t.get(*f).cloned().unwrap_or(Value::Null))
                    .collect::<Vec<_>>(),
            ));
        }
        json!({"torrents": rows})
    } else {
        json!({"torrents": list})
    };
    if a["ids"] == "recently-active" {
        out["removed"] = json!([]);
    }
    Ok(out)
}

async fn torrent_add(tr: &Tr, a: &Value) -> R {
    let d = &tr.daemon;
    let mut req = AddRequest::default();
    if let Some(b64) = a["metainfo"].as_str() {
        let clean: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map_err(|_| "invalid or corrupt torrent file")?;
        req.torrent = Some(bytes);
    } else if let Some(f) = a["filename"].as_str() {
        let f = f.trim();
        if f.starts_with("magnet:") {
            req.magnet = Some(f.to_string());
        } else if f.len() == 40 && f.bytes().all(|b| b.is_ascii_hexdigit()) {
            req.magnet = Some(format!("magnet:?xt=urn:btih:{f}"));
        } else if f.starts_with("http://") || f.starts_with("https://") {
            req.torrent = Some(super::api::fetch_url(tr.http.as_ref(), f).await?);
        } else {
            return Err(
                "only magnet links, http(s) URLs and metainfo are accepted (no local files)".into(),
            );
        }
    } else {
        return Err("no filename or metainfo given".into());
    }
    req.save_path = a["download-dir"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    req.paused = a["paused"].as_bool().unwrap_or(false);
    if let Some(l) = a["labels"].as_array() {
        req.tags = l
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
    }
    // Know a duplicate before adding: the daemon answers a conflict.
    match d.add(req).await {
        Ok((id, hash)) => {
            let name = d
                .one_json(id)
                .ok()
                .and_then(|v| v["name"].as_str().map(str::to_string))
                .unwrap_or_default();
            Ok(json!({"torrent-added": {"id": id, "hashString": hash, "name": name}}))
        }
        Err(OpError::Conflict(_)) => Err("duplicate".into()),
        Err(e) => Err(e.to_string()),
    }
    .or_else(|e: String| {
        if e != "duplicate" {
            return Err(e);
        }
        // Find which one it duplicates.
        let hash = duplicate_hash(a);
        let r = d
            .records()
            .into_iter()
            .find(|r| Some(&r.info_hash) == hash.as_ref())
            .ok_or("duplicate torrent")?;
        let name = d
            .one_json(r.id)
            .ok()
            .and_then(|v| v["name"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(json!({"torrent-duplicate": {"id": r.id, "hashString": r.info_hash, "name": name}}))
    })
}

/// The info-hash of what a `torrent-add` names (for a duplicate's answer).
fn duplicate_hash(a: &Value) -> Option<String> {
    if let Some(b64) = a["metainfo"].as_str() {
        let clean: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(clean)
            .ok()?;
        let m = metainfo::Metainfo::from_bytes(&bytes).ok()?;
        return Some(metainfo::hash::to_hex(&m.info_hashes.get_v1()?.0));
    }
    let f = a["filename"].as_str()?;
    let m = metainfo::magnet::Magnet::parse(f).ok()?;
    Some(metainfo::hash::to_hex(&m.info_hashes.get_v1()?.0))
}

async fn torrent_set(d: &Daemon, a: &Value) -> R {
    for r in ids(d, a)? {
        if let Some(l) = a["labels"].as_array() {
            let tags = l
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            d.set_meta(r.id, None, Some(tags), None, None).map_err(op)?;
        }
        let lim = |k: &str, on: &str, cur: u64| -> Option<u64> {
            match a[on].as_bool() {
                Some(false) => Some(0),
                _ => kb_per_s(&a[k]).or(a[on].as_bool().map(|_| cur)),
            }
        };
        let down = lim("downloadLimit", "downloadLimited", r.download_limit);
        let up = lim("uploadLimit", "uploadLimited", r.upload_limit);
        if down.is_some() || up.is_some() {
            d.set_limits(r.id, down, up).map_err(op)?;
        }
        let ratio = match a["seedRatioMode"].as_u64() {
            Some(0) => Some(None),
            Some(2) => Some(Some(f64::MAX)),
            Some(1) => Some(a["seedRatioLimit"].as_f64().or(r.ratio_limit)),
            _ => a["seedRatioLimit"]
                .as_f64()
                .filter(|_| r.ratio_limit.is_some())
                .map(Some),
        };
        let idle = match a["seedIdleMode"].as_u64() {
            Some(0) => Some(None),
            Some(2) => Some(Some(u64::MAX)),
            Some(1) => Some(
                a["seedIdleLimit"]
                    .as_u64()
                    .map(|m| m.saturating_mul(60))
                    .or(r.seeding_time_limit),
            ),
            _ => None,
        };
        if ratio.is_some() || idle.is_some() {
            d.set_meta(r.id, None, None, ratio, idle).map_err(op)?;
        }
        let mut changes = Vec::new();
        for (key, p) in [
            ("files-unwanted", PRIORITY_SKIP),
            ("files-wanted", PRIORITY_NORMAL),
            ("priority-normal", PRIORITY_NORMAL),
            ("priority-low", PRIORITY_NORMAL),
            ("priority-high", PRIORITY_HIGH),
        ] {
            if let Some(list) = a[key].as_array() {
                for i in list {
                    let i = i.as_u64().ok_or("file indexes must be numbers")? as usize;
                    changes.push((i, p));
                }
            }
        }
        if !changes.is_empty() {
            d.set_priorities(r.id, &changes).await.map_err(op)?;
        }
        if let Some(s) = a["sequentialDownload"].as_bool() {
            d.set_sequential(r.id, s).map_err(op)?;
        }
    }
    d.apply_queue().await;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_only_asked_fields() {
        let v = json!({"a": 1, "b": 2});
        assert_eq!(pick(&v, Some(&json!(["b", "zz"]))), json!({"b": 2}));
        assert_eq!(pick(&v, None), v);
    }

    #[test]
    fn statuses_follow_transmission() {
        assert_eq!(tr_status(&json!({"state": "paused", "progress": 1.0})), 0);
        assert_eq!(tr_status(&json!({"state": "queued", "progress": 0.5})), 3);
        assert_eq!(tr_status(&json!({"state": "queued", "progress": 1.0})), 5);
        assert_eq!(tr_status(&json!({"state": "seeding", "progress": 1.0})), 6);
        assert_eq!(tr_status(&json!({"state": "checking"})), 2);
    }
}
