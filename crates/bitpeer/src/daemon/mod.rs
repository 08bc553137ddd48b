//! `bitpeer daemon`: one always-on node holding any number of torrents, controlled through
//! an HTTP API (and the web UI and CLI built on it), its torrents persisted in a state
//! folder so a stop and start, or a crash, brings every one back.

pub mod api;
pub mod config;
pub mod guard;
pub mod qbittorrent;
pub mod state;
pub mod transmission;
pub mod webtorrent;

use crate::{CliError, CliResult};
use config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How often the watch folder is looked at, and how many files at most per look.
const WATCH_EVERY: Duration = Duration::from_secs(1);
const WATCH_MAX_FILES: usize = 100;
/// Threads for blocking (disk) work; tokio's default is 512.
const MAX_BLOCKING_THREADS: usize = 32;
/// How often `counters.json` is written (when a counter changed), besides at shutdown.
const COUNTERS_EVERY: Duration = Duration::from_secs(60);
/// A file modified less than this long ago may still be being written: left for later.
const WATCH_SETTLE: Duration = Duration::from_secs(1);

#[derive(clap::Args)]
#[command(after_help = "\
The daemon runs in the foreground until SIGTERM or Ctrl-C; once the API is ready it prints \
one line `api listening on http://HOST:PORT`. Its torrents are kept in the state folder \
(one file each), so a restart, or a crash, brings every torrent back in its state. \
The API (docs/api.md) is at /api/v1, the web UI at /, Prometheus metrics at /metrics.

Config file keys (TOML, all optional; see --print-config): api, listen, transports, download_dir, \
state_dir, watch_dir, allowed_dirs, api_user, api_password, api_key, download_limit, \
upload_limit, dht, lsd, port_mapping, port_mapping_lease, trackers, webtorrent, stun, max_active_downloads, max_active_seeds, ratio_limit, \
seeding_time_limit, encryption (prefer, require or disable); and a section [ipfs] with gateway (serve the IPFS block store as a \
Trustless Gateway: GET/HEAD /ipfs/CID), gateway_listen (its own address; without it, /ipfs/ on \
the API's address, asking the API's credentials when the API is not on loopback; its own \
address answers anyone, read-only), store (default STATE_DIR/ipfs), add_on_complete (import \
each completed torrent, pieces checked, into the store; its CID shows as ipfs_cid) and \
profile (unixfs-v1-2025, unixfs-v0-2015 or v1-256k). With the gateway on, a line \
`gateway listening on http://HOST:PORT` comes before the API's line.

Settings changed through the APIs (qBittorrent's app/setPreferences, Transmission's \
session-set, PATCH /api/v1/session: default save folder, rate and connection limits, \
queueing, seeding limits) are kept in STATE_DIR/settings.json and win over the config \
file from the next start; delete that file to go back to the config.")]
pub struct Args {
    /// A TOML config file; flags override its keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the effective config (file, then flags) as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Address of the HTTP API and web UI [default: 127.0.0.1:8080; port 0: a free port].
    /// Another address than loopback needs credentials.
    #[arg(long, value_name = "ADDR")]
    api: Option<SocketAddr>,
    /// Address to listen on for peers [default: 0.0.0.0:6881]; `0.0.0.0:PORT` or `[::]:PORT`
    /// listens on every interface of both IPv4 and IPv6.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Where torrents are kept between runs [default: $XDG_STATE_HOME/bitpeer].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Where content goes (DOWNLOAD_DIR/NAME) [default: ~/Downloads].
    #[arg(long, value_name = "DIR")]
    download_dir: Option<PathBuf>,
    #[command(flatten)]
    creds: crate::client::Credentials,
    /// No DHT.
    #[arg(long)]
    no_dht: bool,
    /// No Local Service Discovery.
    #[arg(long)]
    no_lsd: bool,
    /// No port mapping (by default the daemon asks the router, by UPnP IGD or NAT-PMP/PCP,
    /// to forward the listening port, and shows the external address in /api/v1/session).
    #[arg(long)]
    no_port_mapping: bool,
    /// No tracker announces.
    #[arg(long)]
    no_trackers: bool,
    /// No WebTorrent (by default the `ws://` trackers of a torrent or magnet link, and
    /// those given at add, bring browser peers over WebRTC).
    #[arg(long)]
    no_webtorrent: bool,
    /// A STUN server (HOST:PORT) that tells each WebRTC session its public address,
    /// offered to WebTorrent peers [default: none; no STUN server is asked].
    #[arg(long, value_name = "HOST:PORT")]
    stun: Option<String>,
    /// A folder watched for .torrent files to add.
    #[arg(long, value_name = "DIR")]
    watch_dir: Option<PathBuf>,
    /// Protocol encryption (MSE/PE): prefer, require or disable [default: prefer].
    #[arg(long, value_name = "POLICY")]
    encryption: Option<config::EncryptionPolicy>,
}

/// The effective config: the file (if any), then the flags.
fn effective_config(args: &Args) -> CliResult<Config> {
    let mut c = match &args.config {
        Some(path) => Config::load(path).map_err(CliError::new)?,
        None => Config::default(),
    };
    if let Some(a) = args.api {
        c.api = a;
    }
    if let Some(l) = args.listen {
        c.listen = l;
    }
    if let Some(d) = &args.state_dir {
        c.state_dir = d.clone();
    }
    if let Some(d) = &args.download_dir {
        c.download_dir = d.clone();
    }
    if let Some(d) = &args.watch_dir {
        c.watch_dir = Some(d.clone());
    }
    if let Some(u) = &args.creds.api_user {
        c.api_user = Some(u.clone());
    }
    if let Some(p) = &args.creds.api_password {
        c.api_password = Some(p.clone());
    }
    if args.no_dht {
        c.dht = false;
    }
    if args.no_lsd {
        c.lsd = false;
    }
    if args.no_port_mapping {
        c.port_mapping = false;
    }
    if args.no_trackers {
        c.trackers = false;
    }
    if args.no_webtorrent {
        c.webtorrent = false;
    }
    if let Some(s) = &args.stun {
        c.stun = Some(s.clone());
    }
    if let Some(e) = args.encryption {
        c.encryption = e;
    }
    c.download_dir = config::absolute(&c.download_dir);
    c.state_dir = config::absolute(&c.state_dir);
    c.ipfs.resolve(&c.state_dir);
    Ok(c)
}

pub fn run(args: Args) -> CliResult {
    let config = effective_config(&args)?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    config.validate().map_err(CliError::new)?;
    std::fs::create_dir_all(&config.download_dir).map_err(|e| {
        CliError::new(format!(
            "cannot create the download folder {}: {e}",
            config.download_dir.display()
        ))
    })?;
    // Disk work (opening and checking thousands of torrents at a start, reads for peers)
    // queues for the blocking threads instead of starting hundreds of them.
    let rt =
        crate::download::node_runtime(crate::download::Workers::PerCore, MAX_BLOCKING_THREADS)?;
    rt.block_on(serve(config))
}

async fn serve(config: Config) -> CliResult {
    let mut sc = engine::session::SessionConfig::new(config.listen);
    if !config.lsd {
        sc.lsd = None;
    }
    if config.dht {
        if let Some(d) = &mut sc.dht {
            d.state_file = Some(config.state_dir.join("dht.dat"));
        }
    } else {
        sc.dht = None;
    }
    sc.transports = config
        .transports
        .parse()
        .map_err(|e| CliError::new(format!("bad transports in the configuration: {e}")))?;
    sc.settings.download_limit = config.download_limit;
    sc.settings.upload_limit = config.upload_limit;
    sc.settings.encryption = config.encryption.into();
    let api_addr = config.api;
    let listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .map_err(|e| CliError::new(format!("cannot listen on {api_addr} for the API: {e}")))?;
    let session = engine::session::Session::start(sc)
        .await
        .map_err(|e| CliError::new(e.to_string()))?;
    let mapper = config
        .port_mapping
        .then(|| crate::port_mapping::start(&session, config.port_mapping_lease))
        .flatten();
    let daemon = match state::Daemon::open(session.clone(), config) {
        Ok(mut d) => {
            d.port_mapping = mapper.as_ref().map(|m| m.status_handle());
            d
        }
        Err(e) => {
            session.shutdown().await;
            return Err(CliError::new(e));
        }
    };
    daemon.apply_queue().await;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::new(format!("cannot read the API address: {e}")))?;
    let gateway = match crate::ipfs::daemon::start_gateway(&daemon.config.ipfs).await {
        Ok(g) => g,
        Err(e) => {
            daemon.session.shutdown().await;
            return Err(e);
        }
    };
    let router = api::router(daemon.clone());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        // The callers' addresses: qBittorrent's login bans by address.
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        })
        .await
    });
    let bg = tokio::spawn(background(daemon.clone()));
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if let Some((addr, _)) = &gateway {
            let _ = writeln!(out, "gateway listening on http://{addr}");
        } else if daemon.config.ipfs.gateway {
            let _ = writeln!(out, "gateway listening on http://{local}");
        }
        let _ = writeln!(out, "api listening on http://{local}");
        let _ = out.flush();
    }
    crate::shutdown_signal().await;
    tracing::info!("stopping");
    bg.abort();
    if let Some((_, task)) = gateway {
        task.abort();
    }
    let _ = stop_tx.send(true);
    // Open event streams would hold the graceful shutdown: give it a moment, no more.
    let _ = tokio::time::timeout(Duration::from_secs(3), server).await;
    if let Some(m) = mapper {
        m.shutdown().await;
    }
    daemon.session.shutdown().await;
    // The totals as the torrents stopped.
    daemon.save_counters();
    Ok(())
}

/// Periodic work: completion times and seeding time, the queue, the counters file and the
/// watch folder. The one timer of the daemon: torrents themselves run none while idle.
async fn background(daemon: state::Daemon) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = std::time::Instant::now();
    let mut counted = Duration::ZERO;
    let mut last_save = std::time::Instant::now();
    let mut webtorrent = webtorrent::Bridge::default();
    loop {
        tick.tick().await;
        // Whole seconds of seeding, the rest carried to the next tick.
        counted += last.elapsed();
        last = std::time::Instant::now();
        let secs = counted.as_secs();
        counted -= Duration::from_secs(secs);
        // One look at every torrent's state serves both.
        let states = daemon.session.states();
        daemon.note_completions(secs, &states);
        crate::ipfs::daemon::bridge_pass(&daemon);
        webtorrent.pass(&daemon, &states).await;
        daemon.apply_queue_with(&states).await;
        if last_save.elapsed() >= COUNTERS_EVERY {
            last_save = std::time::Instant::now();
            let d = daemon.clone();
            let _ = tokio::task::spawn_blocking(move || d.save_counters()).await;
        }
        if let Some(dir) = daemon.config.watch_dir.clone() {
            scan_watch_dir(&daemon, &dir).await;
        }
    }
}

/// Add every `*.torrent` of the watch folder, then rename it `*.torrent.added` (or
/// `.invalid` when it cannot be added), so it is added once.
async fn scan_watch_dir(daemon: &state::Daemon, dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("torrent") && p.is_file())
        // A file still being written (copied in) waits for the next look.
        .filter(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= WATCH_SETTLE)
        })
        .take(WATCH_MAX_FILES)
        .collect();
    for path in files {
        let bytes = match std::fs::metadata(&path) {
            Ok(m) if m.len() <= state::MAX_TORRENT_BYTES as u64 => std::fs::read(&path).ok(),
            _ => None,
        };
        let result = match bytes {
            Some(b) => daemon
                .add(state::AddRequest {
                    torrent: Some(b),
                    ..Default::default()
                })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => Err("unreadable or larger than 10 MiB".into()),
        };
        let suffix = match &result {
            Ok(()) => "added",
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "watch folder: not added");
                "invalid"
            }
        };
        let mut to = path.clone().into_os_string();
        to.push(".");
        to.push(suffix);
        let _ = std::fs::rename(&path, to);
    }
}
