//! `bitpeer dht put` and `bitpeer dht get`: BEP 44 items in the mainline DHT from the command
//! line. An immutable item is addressed by the SHA-1 of its bencoded value; a mutable item by
//! an ed25519 public key and an optional salt, and signed with the key in `--key FILE` (a
//! 32-byte secret seed in hex, created with mode 0600 when missing).
//!
//! Values are text, stored as a bencoded byte string (what libtorrent's
//! `dht_put_mutable_item` stores too); `--bencoded` passes an already bencoded value.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dht::item::{self, Item, MAX_SALT};
use dht::{Dht, DhtConfig};
use serde_json::json;

use crate::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Store an item (BEP 44): immutable by default, mutable and signed with --key.
    Put(PutArgs),
    /// Read an item: by its 40-hex target (immutable) or by a 64-hex public key (mutable,
    /// with --salt/--salt-hex if it was put with one). Prints its seq and value.
    Get(GetArgs),
}

/// The DHT options of the `dht` and `pipe` commands.
#[derive(clap::Args, Clone)]
pub struct NodeArgs {
    /// A DHT node to join through, instead of the well-known routers; repeatable.
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    pub dht_bootstrap: Vec<String>,
    /// The UDP address of our DHT node (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    pub listen: String,
}

#[derive(clap::Args, Clone)]
struct SaltArgs {
    /// The salt of a mutable item, as text.
    #[arg(long, value_name = "TEXT", conflicts_with = "salt_hex")]
    salt: Option<String>,
    /// The salt of a mutable item, in hex.
    #[arg(long = "salt-hex", value_name = "HEX")]
    salt_hex: Option<String>,
}

impl SaltArgs {
    fn bytes(&self) -> CliResult<Vec<u8>> {
        let salt = match (&self.salt, &self.salt_hex) {
            (Some(t), _) => t.as_bytes().to_vec(),
            (None, Some(h)) => from_hex(h).ok_or_else(|| CliError::new("--salt-hex: not hex"))?,
            (None, None) => Vec::new(),
        };
        if salt.len() > MAX_SALT {
            return Err(CliError::new(format!(
                "the salt is {} bytes; BEP 44 allows at most {MAX_SALT}",
                salt.len()
            )));
        }
        Ok(salt)
    }
}

#[derive(clap::Args)]
struct PutArgs {
    /// The value: text, stored as a bencoded string (or bencode itself with --bencoded).
    value: String,
    /// The value is already bencoded.
    #[arg(long)]
    bencoded: bool,
    /// Make a mutable item signed with this key file (created, mode 0600, when missing).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    #[command(flatten)]
    salt: SaltArgs,
    /// The seq of a mutable item (default: one more than the highest found in the DHT).
    #[arg(long)]
    seq: Option<i64>,
    #[command(flatten)]
    node: NodeArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct GetArgs {
    /// A 40-hex target (immutable item) or a 64-hex ed25519 public key (mutable item).
    target: String,
    #[command(flatten)]
    salt: SaltArgs,
    #[command(flatten)]
    node: NodeArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> CliResult {
    let rt = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?;
    let result = rt.block_on(async {
        match args.command {
            Sub::Put(a) => put(a).await,
            Sub::Get(a) => get(a).await,
        }
    });
    rt.shutdown_timeout(Duration::from_millis(500));
    result
}

pub fn to_hex(b: &[u8]) -> String {
    metainfo::hash::to_hex(b)
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

impl NodeArgs {
    fn bind(&self) -> CliResult<SocketAddr> {
        self.listen.parse().map_err(|_| {
            CliError::new(format!(
                "bad --listen address `{}` (expected HOST:PORT)",
                self.listen
            ))
        })
    }
}

/// Start a DHT node on `bind` and wait (at most 10 s) until it knows another node.
/// `bootstrap` empty: the well-known routers.
pub async fn start_dht(bind: SocketAddr, bootstrap: &[String], read_only: bool) -> CliResult<Dht> {
    let mut cfg = DhtConfig {
        bind,
        read_only,
        ..DhtConfig::default()
    };
    if !bootstrap.is_empty() {
        cfg.bootstrap = bootstrap.to_vec();
    }
    let dht = Dht::start(cfg)
        .map_err(|e| CliError::new(format!("cannot bind the DHT socket on {bind}: {e}")))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while dht.routing_table_size().await == 0 {
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::new(
                "no DHT node answered within 10 s (check --dht-bootstrap)",
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(dht)
}

/// Read the 32-byte ed25519 secret seed in `path` (hex), or create it (mode 0600).
pub fn load_or_create_key(path: &Path) -> CliResult<[u8; 32]> {
    use std::io::Read;
    let shown = path.display();
    match std::fs::File::open(path) {
        Ok(f) => {
            let mut text = String::new();
            f.take(256)
                .read_to_string(&mut text)
                .map_err(|e| CliError::new(format!("cannot read key file {shown}: {e}")))?;
            from_hex(text.trim())
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    CliError::new(format!(
                        "key file {shown}: expected 64 hex digits (an ed25519 secret seed)"
                    ))
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut seed))
                .map_err(|e| CliError::new(format!("cannot read /dev/urandom: {e}")))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| CliError::new(format!("cannot create {}: {e}", dir.display())))?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts
                .open(path)
                .map_err(|e| CliError::new(format!("cannot create key file {shown}: {e}")))?;
            writeln!(f, "{}", to_hex(&seed))
                .and_then(|_| f.sync_all())
                .map_err(|e| CliError::new(format!("cannot write key file {shown}: {e}")))?;
            Ok(seed)
        }
        Err(e) => Err(CliError::new(format!("cannot open key file {shown}: {e}"))),
    }
}

fn encode_value(value: &str, bencoded: bool) -> Vec<u8> {
    if bencoded {
        value.as_bytes().to_vec()
    } else {
        let mut e = bencode::Encoder::new();
        e.bytes(value.as_bytes());
        e.into_bytes()
    }
}

/// A value for people: the text of a bencoded string, or the bencoding itself.
fn show_value(v: &[u8]) -> String {
    let text = bencode::decode(v)
        .ok()
        .and_then(|d| d.as_bytes().map(<[u8]>::to_vec))
        .unwrap_or_else(|| v.to_vec());
    String::from_utf8_lossy(&text).into_owned()
}

/// An item as JSON: target, value (as text and as bencode in hex), and for a mutable item
/// its key, seq, salt and signature.
fn item_json(item: &Item) -> serde_json::Value {
    let mut o = json!({
        "target": to_hex(&item.target().0),
        "value": show_value(item.value()),
        "value_bencoded_hex": to_hex(item.value()),
    });
    if let Item::Mutable {
        key,
        salt,
        seq,
        sig,
        ..
    } = item
    {
        o["key"] = json!(to_hex(key));
        o["seq"] = json!(seq);
        o["salt_hex"] = json!(to_hex(salt));
        o["sig"] = json!(to_hex(sig));
    }
    o
}

async fn put(a: PutArgs) -> CliResult {
    let value = encode_value(&a.value, a.bencoded);
    let salt = a.salt.bytes()?;
    let dht = start_dht(a.node.bind()?, &a.node.dht_bootstrap, true).await?;
    let (item, cas) = match &a.key {
        None => {
            if !salt.is_empty() || a.seq.is_some() {
                return Err(CliError::new(
                    "--salt and --seq are for mutable items: give --key FILE",
                ));
            }
            let item = Item::immutable(value).map_err(|e| CliError::new(format!("{e}")))?;
            (item, None)
        }
        Some(path) => {
            let secret = load_or_create_key(path)?;
            let (seq, cas) = match a.seq {
                Some(s) => (s, None),
                None => {
                    let found = dht
                        .get_mutable(item::public_key(&secret), salt.clone())
                        .await;
                    match found.item.and_then(|i| i.seq()) {
                        Some(s) => (s.saturating_add(1), Some(s)),
                        None => (1, None),
                    }
                }
            };
            let item = Item::sign(&secret, salt.clone(), seq, value)
                .map_err(|e| CliError::new(format!("{e}")))?;
            (item, cas)
        }
    };
    let done = dht.put(item.clone(), cas).await;
    let _ = dht.shutdown().await;
    let stored = done.stats.announce_acks;
    if a.json {
        let mut o = item_json(&item);
        o["stored"] = json!(stored);
        o["put"] = json!(done.stats.announced);
        println!("{o}");
    } else {
        println!("target: {}", to_hex(&item.target().0));
        if let Item::Mutable { key, seq, .. } = &item {
            println!("key: {}", to_hex(key));
            println!("seq: {seq}");
        }
        println!("stored on {stored} of {} nodes", done.stats.announced);
    }
    if stored == 0 {
        return Err(CliError::new("no DHT node stored the item"));
    }
    Ok(())
}

async fn get(a: GetArgs) -> CliResult {
    let raw = from_hex(&a.target);
    let salt = a.salt.bytes()?;
    let dht = start_dht(a.node.bind()?, &a.node.dht_bootstrap, true).await?;
    let found = match raw.as_deref().map(<[u8]>::len) {
        Some(20) => {
            let t: [u8; 20] = raw.unwrap().try_into().expect("20");
            dht.get_immutable(t).await
        }
        Some(32) => {
            let k: [u8; 32] = raw.unwrap().try_into().expect("32");
            dht.get_mutable(k, salt.clone()).await
        }
        _ => {
            return Err(CliError::new(format!(
                "`{}` is neither a 40-hex target nor a 64-hex public key",
                a.target
            )));
        }
    };
    let _ = dht.shutdown().await;
    let Some(item) = found.item else {
        return Err(CliError::new(format!(
            "no item found ({} nodes asked, {} answered)",
            found.stats.queries, found.stats.responses
        )));
    };
    if a.json {
        println!("{}", item_json(&item));
    } else {
        if let Some(seq) = item.seq() {
            println!("seq: {seq}");
        }
        println!("value: {}", show_value(item.value()));
    }
    Ok(())
}
