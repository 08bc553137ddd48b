//! The daemon's configuration: a TOML file where every key is optional, overridden by
//! the command line. `bitpeer daemon --print-config` prints the effective one.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Every key of the config file, with its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP API and web UI (port 0: a free port).
    pub api: SocketAddr,
    /// Address to listen on for peers (TCP, and UDP for the DHT); `0.0.0.0:PORT` or
    /// `[::]:PORT`: every interface of both IPv4 and IPv6.
    pub listen: SocketAddr,
    /// Where content goes: `DOWNLOAD_DIR/NAME`.
    pub download_dir: PathBuf,
    /// Where the daemon keeps its torrents between runs.
    pub state_dir: PathBuf,
    /// A folder watched for .torrent files to add (none by default).
    pub watch_dir: Option<PathBuf>,
    /// Folders a torrent may be saved in (default: the download folder).
    pub allowed_dirs: Vec<PathBuf>,
    /// API credentials: a user and password (HTTP Basic or `POST /api/v1/login`).
    pub api_user: Option<String>,
    pub api_password: Option<String>,
    /// An API key, sent as `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
    /// Session-wide rate limits, bytes per second (0: none).
    pub download_limit: u64,
    pub upload_limit: u64,
    /// The mainline DHT and Local Service Discovery.
    pub dht: bool,
    pub lsd: bool,
    /// Transports for peer connections: "tcp", "utp" or "tcp,utp" (uTP shares the DHT's
    /// UDP port).
    pub transports: String,
    /// Ask the router to forward the listening port (UPnP IGD, NAT-PMP/PCP).
    pub port_mapping: bool,
    /// The lease asked of the router, in seconds; the mapping is renewed at half of it.
    pub port_mapping_lease: u64,
    /// Announce to trackers.
    pub trackers: bool,
    /// WebTorrent: announce to the WebSocket (`ws://`) trackers a torrent or magnet link
    /// names (and those given at add), and trade with browser peers over WebRTC (needs
    /// `trackers` too).
    pub webtorrent: bool,
    /// A STUN server (HOST:PORT) that tells each WebRTC session its public address (a
    /// server-reflexive candidate); none by default.
    pub stun: Option<String>,
    /// Queueing: at most this many torrents download at once, and this many seed; the
    /// others wait as `queued`, in the queue's order (0: no limit).
    pub max_active_downloads: usize,
    pub max_active_seeds: usize,
    /// Seeding limits for torrents that set none: stop seeding at this ratio (uploaded /
    /// size), or this many seconds after completing.
    pub ratio_limit: Option<f64>,
    pub seeding_time_limit: Option<u64>,
    /// Protocol encryption (MSE/PE) of peer connections: prefer, require or disable.
    pub encryption: EncryptionPolicy,
    /// IPFS: the Trustless Gateway and the torrent-to-CID bridge (`[ipfs]`).
    pub ipfs: crate::ipfs::daemon::DaemonConfig,
}

/// The `encryption` key (the engine's policy, as config text).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EncryptionPolicy {
    #[default]
    Prefer,
    Require,
    Disable,
}

impl From<EncryptionPolicy> for engine::settings::Encryption {
    fn from(p: EncryptionPolicy) -> Self {
        match p {
            EncryptionPolicy::Prefer => engine::settings::Encryption::Prefer,
            EncryptionPolicy::Require => engine::settings::Encryption::Require,
            EncryptionPolicy::Disable => engine::settings::Encryption::Disable,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let state_dir = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."))
            .join("bitpeer");
        let download_dir = std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join("Downloads"))
            .unwrap_or_else(|| PathBuf::from("downloads"));
        Config {
            api: "127.0.0.1:8080".parse().expect("literal address"),
            listen: "0.0.0.0:6881".parse().expect("literal address"),
            download_dir,
            state_dir,
            watch_dir: None,
            allowed_dirs: Vec::new(),
            api_user: None,
            api_password: None,
            api_key: None,
            download_limit: 0,
            upload_limit: 0,
            dht: true,
            lsd: true,
            transports: "tcp,utp".to_string(),
            port_mapping: true,
            port_mapping_lease: 3600,
            trackers: true,
            webtorrent: true,
            stun: None,
            max_active_downloads: 5,
            max_active_seeds: 0,
            ratio_limit: None,
            seeding_time_limit: None,
            encryption: EncryptionPolicy::Prefer,
            ipfs: Default::default(),
        }
    }
}

impl Config {
    /// Read a config file; a missing key takes its default.
    pub fn load(path: &Path) -> Result<Config, String> {
        use std::io::Read;
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(format!("{} is larger than 1 MiB", path.display()));
        }
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    /// The config as TOML, with the password hidden.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        if shown.api_password.is_some() {
            shown.api_password = Some("********".into());
        }
        if shown.api_key.is_some() {
            shown.api_key = Some("********".into());
        }
        toml::to_string(&shown).unwrap_or_default()
    }

    /// The folders a save path may be in (made absolute).
    pub fn roots(&self) -> Vec<PathBuf> {
        let mut roots = if self.allowed_dirs.is_empty() {
            vec![self.download_dir.clone()]
        } else {
            self.allowed_dirs.clone()
        };
        for r in &mut roots {
            *r = absolute(r);
        }
        roots
    }

    /// Are credentials configured?
    pub fn has_credentials(&self) -> bool {
        self.api_key.as_deref().is_some_and(|k| !k.is_empty())
            || (self.api_user.is_some()
                && self.api_password.as_deref().is_some_and(|p| !p.is_empty()))
    }

    /// Refuse what cannot work or would be unsafe.
    pub fn validate(&self) -> Result<(), String> {
        if !self.api.ip().is_loopback() && !self.has_credentials() {
            return Err(format!(
                "the API would listen on {} (not loopback) without credentials: set --api-user and \
                 --api-password (or BITPEER_API_PASSWORD, or api_key in the config), or use --api 127.0.0.1:PORT",
                self.api
            ));
        }
        if let Some(r) = self.ratio_limit
            && !(r.is_finite() && r >= 0.0)
        {
            return Err("ratio_limit must be a number >= 0".into());
        }
        self.ipfs.validate()?;
        if self.api_password.is_some() && self.api_user.is_none() {
            return Err("an API password needs a user: set --api-user too".into());
        }
        Ok(())
    }
}

/// `path` made absolute against the current folder, with `.` components dropped.
pub fn absolute(path: &Path) -> PathBuf {
    let p = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_optional_and_unknown_keys_are_refused() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.api.to_string(), "127.0.0.1:8080");
        assert!(c.dht && c.lsd);
        let c =
            Config::parse("api = \"127.0.0.1:0\"\ndht = false\ndownload_limit = 100\n").unwrap();
        assert_eq!(c.api.port(), 0);
        assert!(!c.dht);
        assert_eq!(c.download_limit, 100);
        assert!(Config::parse("apii = 1").is_err());
        assert!(Config::parse("api = 3").is_err());
    }

    #[test]
    fn encryption_key() {
        assert_eq!(
            Config::parse("").unwrap().encryption,
            EncryptionPolicy::Prefer
        );
        let c = Config::parse("encryption = \"require\"").unwrap();
        assert_eq!(c.encryption, EncryptionPolicy::Require);
        assert_eq!(
            engine::settings::Encryption::from(c.encryption),
            engine::settings::Encryption::Require
        );
        assert!(c.to_toml().contains("encryption = \"require\""));
        assert!(Config::parse("encryption = \"always\"").is_err());
    }

    #[test]
    fn printed_config_reads_back_without_secrets() {
        let c = Config {
            api_user: Some("u".into()),
            api_password: Some("secret".into()),
            ..Config::default()
        };
        let text = c.to_toml();
        assert!(!text.contains("secret"));
        let back = Config::parse(&text).unwrap();
        assert_eq!(back.api, c.api);
        assert_eq!(back.download_dir, c.download_dir);
    }

    #[test]
    fn non_loopback_needs_credentials() {
        let mut c = Config {
            api: "0.0.0.0:8080".parse().unwrap(),
            ..Config::default()
        };
        assert!(c.validate().is_err());
        c.api_user = Some("u".into());
        c.api_password = Some("p".into());
        assert!(c.validate().is_ok());
    }
}
