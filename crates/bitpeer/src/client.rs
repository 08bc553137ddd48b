//! The CLI client of a running `bitpeer daemon`: `add`, `ls`, `show`, `pause`, `resume`,
//! `rm`, `limit`. Each talks to the API named by `--api URL` or `BITPEER_API` (default the
//! local daemon), prints for people or, with `--json`, the API's JSON.

use crate::{CliError, CliResult};
use base64::Engine as _;
use serde_json::{Value, json};
use std::time::Duration;

/// Largest .torrent file sent.
const MAX_TORRENT_BYTES: u64 = 10 << 20;

#[derive(clap::Args, Clone)]
pub struct Conn {
    /// The daemon's URL.
    #[arg(
        long,
        value_name = "URL",
        env = "BITPEER_API",
        default_value = "http://127.0.0.1:8080"
    )]
    api: String,
    #[command(flatten)]
    creds: Credentials,
    /// Print the API's JSON.
    #[arg(long)]
    json: bool,
}

/// API credentials, as the daemon takes them and the client sends them.
#[derive(clap::Args, Clone)]
pub struct Credentials {
    /// User for the API (HTTP Basic, and the web UI's login).
    #[arg(long, value_name = "USER", env = "BITPEER_API_USER")]
    pub api_user: Option<String>,
    /// Password for the API.
    #[arg(
        long,
        value_name = "PASS",
        env = "BITPEER_API_PASSWORD",
        hide_env_values = true
    )]
    pub api_password: Option<String>,
}

#[derive(clap::Args)]
pub struct AddArgs {
    /// A .torrent file, a magnet link, or an http(s) URL of a .torrent file.
    source: String,
    /// The folder to save it in (within the daemon's allowed folders).
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
    /// Add it paused.
    #[arg(long)]
    paused: bool,
    /// A category.
    #[arg(long, value_name = "NAME")]
    category: Option<String>,
    /// Tags, comma-separated.
    #[arg(long, value_name = "LIST")]
    tags: Option<String>,
    /// A peer to dial (IP:PORT), besides those trackers, DHT and PEX find; may repeat.
    #[arg(long, value_name = "ADDR")]
    peer: Vec<String>,
    /// A WebSocket tracker (ws:// or wss://) for WebTorrent peers, besides the ws:// and
    /// wss:// trackers the torrent names; may repeat.
    #[arg(long = "webtorrent-tracker", value_name = "URL")]
    webtorrent_trackers: Vec<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct IdArgs {
    /// The torrent: its id, its info-hash, or a unique prefix of either.
    id: String,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// The torrent: its id, its info-hash, or a unique prefix of either.
    id: String,
    /// Delete its files too (only this torrent's files).
    #[arg(long)]
    delete_data: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct MoveArgs {
    /// The torrent: its id, its info-hash, or a unique prefix of either.
    id: String,
    /// The folder to move its content to (inside the daemon's allowed folders).
    dir: String,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Args)]
pub struct LimitArgs {
    /// A torrent (id, info-hash or unique prefix); without it, the session-wide limits.
    id: Option<String>,
    /// Download limit, bytes per second (500k, 2M; 0: none).
    #[arg(long, value_name = "RATE")]
    down: Option<String>,
    /// Upload limit, bytes per second (500k, 2M; 0: none).
    #[arg(long, value_name = "RATE")]
    up: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

struct Client {
    conn: Conn,
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(conn: &Conn) -> CliResult<Client> {
        let tls = tracker::client::tls_config(&[]).map_err(|e| CliError::new(e.to_string()))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| CliError::new(format!("cannot make an HTTP client: {e}")))?;
        let base = conn.api.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::new(format!(
                "--api must be an http:// or https:// URL, not {base}"
            )));
        }
        Ok(Client {
            conn: conn.clone(),
            http,
            base,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> CliResult<Value> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(user) = &self.conn.creds.api_user {
            req = req.basic_auth(user, self.conn.creds.api_password.as_deref());
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let res = req.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                CliError::new(format!(
                    "no daemon answers at {} (start one with `bitpeer daemon`, or give --api URL)",
                    self.base
                ))
            } else {
                CliError::new(format!("request to {} failed: {e}", self.base))
            }
        })?;
        let status = res.status();
        let text = res
            .text()
            .await
            .map_err(|e| CliError::new(format!("cannot read the daemon's answer: {e}")))?;
        let v: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let msg = v["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("the daemon answered {status}"));
            return Err(CliError::new(msg));
        }
        Ok(v)
    }

    /// The id of the torrent `given` names: its id, info-hash or a unique prefix of either.
    async fn resolve(&self, given: &str) -> CliResult<u64> {
        let list = self.call(reqwest::Method::GET, "/torrents", None).await?;
        let list = list.as_array().cloned().unwrap_or_default();
        let g = given.trim().to_ascii_lowercase();
        if g.is_empty() {
            return Err(CliError::new("give a torrent id or info-hash"));
        }
        if let Some(t) = list
            .iter()
            .find(|t| t["id"].as_u64().is_some_and(|i| i.to_string() == g))
        {
            return Ok(t["id"].as_u64().unwrap_or(0));
        }
        let matches: Vec<&Value> = list
            .iter()
            .filter(|t| {
                t["info_hash"].as_str().is_some_and(|h| h.starts_with(&g))
                    || t["id"].to_string().starts_with(&g)
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok(one["id"].as_u64().unwrap_or(0)),
            [] => Err(CliError::new(format!("no torrent matches {given}"))),
            _ => Err(CliError::new(format!(
                "{given} matches {} torrents: give more of the info-hash",
                matches.len()
            ))),
        }
    }
}

fn block_on<F: std::future::Future<Output = CliResult>>(f: F) -> CliResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?
        .block_on(f)
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn rate(r: &str) -> CliResult<u64> {
    engine::settings::parse_rate(r)
        .ok_or_else(|| CliError::new(format!("not a rate: {r} (e.g. 500k, 2M, 0 for none)")))
}

pub fn add(args: AddArgs) -> CliResult {
    let mut body = json!({"paused": args.paused});
    let s = args.source.as_str();
    if s.len() >= 7 && s[..7].eq_ignore_ascii_case("magnet:") {
        body["magnet"] = json!(s);
    } else if s.starts_with("http://") || s.starts_with("https://") {
        body["url"] = json!(s);
    } else {
        let len = std::fs::metadata(s)
            .map_err(|e| CliError::new(format!("cannot read {s}: {e}")))?
            .len();
        if len > MAX_TORRENT_BYTES {
            return Err(CliError::new(format!(
                "{s} is larger than 10 MiB: not a .torrent file"
            )));
        }
        let bytes = std::fs::read(s).map_err(|e| CliError::new(format!("cannot read {s}: {e}")))?;
        body["torrent_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    if let Some(d) = &args.dir {
        let d = std::path::absolute(d).unwrap_or_else(|_| d.clone());
        body["save_path"] = json!(d);
    }
    if let Some(c) = &args.category {
        body["category"] = json!(c);
    }
    if let Some(t) = &args.tags {
        body["tags"] = json!(
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
        );
    }
    if !args.peer.is_empty() {
        body["peers"] = json!(args.peer);
    }
    for u in &args.webtorrent_trackers {
        crate::webtorrent_peer::check_url(u)?;
    }
    if !args.webtorrent_trackers.is_empty() {
        body["webtorrent_trackers"] = json!(args.webtorrent_trackers);
    }
    block_on(async {
        let c = Client::new(&args.conn)?;
        let v = c
            .call(reqwest::Method::POST, "/torrents", Some(body))
            .await?;
        if args.conn.json {
            print_json(&v);
        } else {
            println!(
                "added {} {}",
                v["id"],
                v["info_hash"].as_str().unwrap_or("")
            );
        }
        Ok(())
    })
}

pub fn ls(args: LsArgs) -> CliResult {
    block_on(async {
        let c = Client::new(&args.conn)?;
        let v = c.call(reqwest::Method::GET, "/torrents", None).await?;
        if args.conn.json {
            print_json(&v);
            return Ok(());
        }
        println!(
            "{:>4}  {:<11} {:>6} {:>10} {:>10} {:>10}  NAME",
            "ID", "STATE", "DONE", "SIZE", "DOWN/s", "UP/s"
        );
        for t in v.as_array().into_iter().flatten() {
            println!(
                "{:>4}  {:<11} {:>5.1}% {:>10} {:>10} {:>10}  {}",
                t["id"],
                t["state"].as_str().unwrap_or("?"),
                t["progress"].as_f64().unwrap_or(0.0) * 100.0,
                crate::units::size(t["size"].as_u64().unwrap_or(0)),
                crate::units::size(t["download_rate"].as_u64().unwrap_or(0)),
                crate::units::size(t["upload_rate"].as_u64().unwrap_or(0)),
                t["name"].as_str().unwrap_or("")
            );
        }
        Ok(())
    })
}

pub fn show(args: IdArgs) -> CliResult {
    block_on(async {
        let c = Client::new(&args.conn)?;
        let id = c.resolve(&args.id).await?;
        let v = c
            .call(reqwest::Method::GET, &format!("/torrents/{id}"), None)
            .await?;
        if args.conn.json {
            print_json(&v);
            return Ok(());
        }
        for key in [
            "id",
            "name",
            "info_hash",
            "state",
            "error",
            "progress",
            "size",
            "have_bytes",
            "save_path",
            "download_rate",
            "upload_rate",
            "downloaded",
            "uploaded",
            "peers",
            "seeds",
            "eta",
            "category",
            "tags",
            "download_limit",
            "upload_limit",
        ] {
            let val = &v[key];
            if !val.is_null() {
                let shown = match val {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("{key:<15} {shown}");
            }
        }
        for f in v["files"].as_array().into_iter().flatten() {
            println!(
                "file {:>3}  {:>5.1}% {:<6} {}",
                f["index"],
                f["progress"].as_f64().unwrap_or(0.0) * 100.0,
                f["priority"].as_str().unwrap_or(""),
                f["path"].as_str().unwrap_or("")
            );
        }
        Ok(())
    })
}

fn action(args: IdArgs, what: &'static str, done: &'static str) -> CliResult {
    block_on(async {
        let c = Client::new(&args.conn)?;
        let id = c.resolve(&args.id).await?;
        let v = c
            .call(
                reqwest::Method::POST,
                &format!("/torrents/{id}/{what}"),
                None,
            )
            .await?;
        if args.conn.json {
            print_json(&v);
        } else {
            println!("{done} {id} {}", v["name"].as_str().unwrap_or(""));
        }
        Ok(())
    })
}

pub fn pause(args: IdArgs) -> CliResult {
    action(args, "pause", "paused")
}

pub fn resume(args: IdArgs) -> CliResult {
    action(args, "resume", "resumed")
}

pub fn rm(args: RmArgs) -> CliResult {
    block_on(async {
        let c = Client::new(&args.conn)?;
        let id = c.resolve(&args.id).await?;
        let q = if args.delete_data {
            "?delete_data=true"
        } else {
            ""
        };
        c.call(reqwest::Method::DELETE, &format!("/torrents/{id}{q}"), None)
            .await?;
        if args.conn.json {
            print_json(&json!({"id": id, "removed": true, "delete_data": args.delete_data}));
        } else {
            println!(
                "removed {id}{}",
                if args.delete_data {
                    " and its data"
                } else {
                    ""
                }
            );
        }
        Ok(())
    })
}

pub fn move_data(args: MoveArgs) -> CliResult {
    block_on(async {
        let c = Client::new(&args.conn)?;
        let id = c.resolve(&args.id).await?;
        let v = c
            .call(
                reqwest::Method::POST,
                &format!("/torrents/{id}/move"),
                Some(json!({"save_path": args.dir})),
            )
            .await?;
        if args.conn.json {
            print_json(&v);
        } else {
            println!(
                "moved {id} to {}",
                v["save_path"].as_str().unwrap_or(&args.dir)
            );
        }
        Ok(())
    })
}

pub fn limit(args: LimitArgs) -> CliResult {
    let mut body = json!({});
    if let Some(d) = &args.down {
        body["download_limit"] = json!(rate(d)?);
    }
    if let Some(u) = &args.up {
        body["upload_limit"] = json!(rate(u)?);
    }
    block_on(async {
        let c = Client::new(&args.conn)?;
        let path = match &args.id {
            Some(id) => format!("/torrents/{}", c.resolve(id).await?),
            None => "/session".to_string(),
        };
        let v = if body.as_object().is_some_and(|o| o.is_empty()) {
            let p = if args.id.is_some() {
                path.clone()
            } else {
                "/session".into()
            };
            c.call(reqwest::Method::GET, &p, None).await?
        } else {
            c.call(reqwest::Method::PATCH, &path, Some(body)).await?
        };
        if args.conn.json {
            print_json(&v);
        } else {
            let show = |n: &Value| match n.as_u64() {
                Some(0) | None => "none".to_string(),
                Some(r) => format!("{}/s", crate::units::size(r)),
            };
            println!(
                "download limit {}, upload limit {}",
                show(&v["download_limit"]),
                show(&v["upload_limit"])
            );
        }
        Ok(())
    })
}
