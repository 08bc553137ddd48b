//! `bitpeer ipfs ...`: IPFS content addressing. `add` imports a file or folder as UnixFS
//! (same CIDs as kubo and Helia for the chosen profile) into a block store; `cat` and
//! `export` read it back (to stdout, to files, or to a CAR file); `import` loads a CAR file,
//! verifying every block.

pub mod daemon;
mod gateway;
mod get;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use std::fs;
use std::io::Write;

use ipfs::{BlockSink, BlockStore, Cid, DiscardBlocks, FsStore, Profile, car, dag};

use crate::{CliError, CliResult};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: IpfsCommand,
}

#[derive(Subcommand)]
enum IpfsCommand {
    /// Import a file or folder as UnixFS; prints the root CID as the last line.
    Add(AddArgs),
    /// Write a file's bytes to stdout.
    Cat(CatArgs),
    /// Write a CID's DAG to a CAR file (--car) or its files to a path (-o).
    Export(ExportArgs),
    /// Load the blocks of a CAR v1 file into the store, verifying each; prints its roots.
    Import(ImportArgs),
    /// Fetch a CID from trustless gateways, verifying every block; resumes from held blocks.
    Get(GetArgs),
    /// Serve the store as an IPFS Trustless Gateway (raw blocks and CAR files over HTTP).
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct GetArgs {
    /// The CID to fetch.
    cid: String,
    /// Write the file or folder here (must not exist yet); without it the blocks are only
    /// stored.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// A trustless gateway to fetch from (http:// or https://); give several to spread the
    /// risk. A gateway that sends a wrong block is refused.
    #[arg(long = "gateway", required = true)]
    gateways: Vec<String>,
    /// Block store folder (default: the `ipfs` folder in bitpeer's state folder).
    #[arg(long)]
    store: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (HOST:PORT; port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: String,
    /// Block store folder (default: the `ipfs` folder in bitpeer's state folder).
    #[arg(long)]
    store: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CatArgs {
    /// The CID of a file (optionally followed by /path inside a folder).
    cid: String,
    /// Block store folder (default: the `ipfs` folder in bitpeer's state folder).
    #[arg(long)]
    store: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ExportArgs {
    /// The CID to export (optionally followed by /path inside a folder).
    cid: String,
    /// Write a CAR v1 file holding every block of the DAG (depth-first, no duplicates).
    #[arg(long, conflicts_with = "output", required_unless_present = "output")]
    car: Option<PathBuf>,
    /// Write the file or folder here (must not exist yet).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Block store folder (default: the `ipfs` folder in bitpeer's state folder).
    #[arg(long)]
    store: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ImportArgs {
    /// The CAR v1 file to load.
    #[arg(long)]
    car: PathBuf,
    /// Block store folder (default: the `ipfs` folder in bitpeer's state folder).
    #[arg(long)]
    store: Option<PathBuf>,
}

#[derive(clap::Args)]
struct AddArgs {
    /// The file or folder to import; with --torrent, the folder holding the torrent's
    /// content (what `bitpeer download -o` was given).
    path: PathBuf,
    /// Import exactly the files of this completed torrent (pad files left out; every
    /// piece checked against the torrent's SHA-1 first), and remember the CID for its
    /// info-hashes so `bitpeer info` shows it.
    #[arg(long)]
    torrent: Option<PathBuf>,
    /// Import profile: unixfs-v1-2025 (CIDv1, raw leaves, 1 MiB chunks, 1024 links),
    /// unixfs-v0-2015 (kubo's legacy default: CIDv0, 256 KiB chunks, 174 links) or v1-256k
    /// (Helia's default: CIDv1, raw leaves, 256 KiB chunks, 174 links).
    #[arg(long, default_value = "unixfs-v1-2025", value_parser = parse_profile)]
    profile: Profile,
    /// Compute the CID only; store nothing.
    #[arg(long)]
    only_hash: bool,
    /// Block store folder (default: the `ipfs` folder in bitpeer's state folder).
    #[arg(long)]
    store: Option<PathBuf>,
}

fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::from_name(s).ok_or_else(|| {
        let names: Vec<_> = Profile::ALL.iter().map(|p| p.name()).collect();
        format!("unknown profile {s:?} (one of {})", names.join(", "))
    })
}

fn err(e: impl std::fmt::Display) -> CliError {
    CliError::new(e.to_string())
}

/// The store folder: `--store`, else `STATE/ipfs`.
fn store_dir(arg: Option<PathBuf>) -> CliResult<PathBuf> {
    arg.or_else(|| crate::download::state_dir().map(|d| d.join("ipfs")))
        .ok_or_else(|| CliError::new("no state folder (HOME unset); pass --store DIR"))
}

fn open_store(arg: Option<PathBuf>) -> CliResult<FsStore> {
    FsStore::open(&store_dir(arg)?).map_err(err)
}

pub fn run(args: Args) -> CliResult {
    match args.command {
        IpfsCommand::Add(a) => add(a),
        IpfsCommand::Cat(a) => cat(a),
        IpfsCommand::Export(a) => export(a),
        IpfsCommand::Import(a) => import(a),
        IpfsCommand::Serve(a) => serve(a),
        IpfsCommand::Get(a) => get_cmd(a),
    }
}

/// What `add` imports: a path as it is on disk, or exactly a torrent's files.
enum Source {
    Path(PathBuf),
    Tree(ipfs::FileTree),
}

fn add(a: AddArgs) -> CliResult {
    if let Some(t) = &a.torrent {
        let bytes = crate::info::read_torrent_file(&t.to_string_lossy())?;
        let m = metainfo::Metainfo::from_bytes(&bytes)
            .map_err(|e| CliError::new(format!("{}: invalid torrent: {e}", t.display())))?;
        let cid = if a.only_hash {
            torrent_source(&m, &a.path)?
                .import(a.profile, &mut DiscardBlocks)
                .map_err(err)?
                .cid
        } else {
            add_torrent_content(&m, &a.path, &store_dir(a.store)?, a.profile)?
        };
        println!("{cid}");
        return Ok(());
    }
    let root = if a.only_hash {
        ipfs::import_path(a.profile, &a.path, &mut DiscardBlocks).map_err(err)?
    } else {
        let store = open_store(a.store)?;
        let mut sink: &FsStore = &store;
        ipfs::import_path(a.profile, &a.path, &mut sink).map_err(err)?
    };
    println!("{}", root.cid);
    Ok(())
}

/// Imports the content of the complete torrent `m` held under `data` into the store in
/// `store_dir`, and records its CID for the torrent's info-hashes (so `bitpeer info` and
/// the daemon show it). Used by `ipfs add --torrent` and the daemon's bridge.
pub fn add_torrent_content(
    m: &metainfo::Metainfo,
    data: &std::path::Path,
    store_dir: &std::path::Path,
    profile: Profile,
) -> CliResult<Cid> {
    let source = torrent_source(m, data)?;
    let store = FsStore::open(store_dir).map_err(err)?;
    let mut sink: &FsStore = &store;
    let root = source.import(profile, &mut sink).map_err(err)?;
    let hashes = [
        m.info_hashes.get_v1().map(|h| h.to_hex()),
        m.info_hashes.get_v2().map(|h| h.to_hex()),
    ];
    for h in hashes.into_iter().flatten() {
        remember_torrent(store_dir, &h, &root.cid)?;
    }
    Ok(root.cid)
}

impl Source {
    fn import(
        &self,
        profile: Profile,
        sink: &mut dyn BlockSink,
    ) -> Result<ipfs::Imported, ipfs::Error> {
        match self {
            Source::Path(p) => ipfs::import_path(profile, p, sink),
            Source::Tree(t) => t.import(profile, sink),
        }
    }
}

/// The content of the complete torrent `m` under `data`: every non-pad file present with
/// its length, and every piece matching its SHA-1 (a v2-only torrent, which has no v1
/// pieces, is checked by sizes only). A single file is imported as that file.
fn torrent_source(m: &metainfo::Metainfo, data: &std::path::Path) -> CliResult<Source> {
    let mut tree = ipfs::FileTree::default();
    for (i, f) in m.info.files.iter().enumerate() {
        if f.attr.pad {
            continue;
        }
        let path = data.join(m.info.file_path(i));
        let len = fs::metadata(&path)
            .map_err(|e| {
                CliError::new(format!(
                    "{}: {e} (is the torrent complete?)",
                    path.display()
                ))
            })?
            .len();
        if len != f.length {
            return Err(CliError::new(format!(
                "{}: {len} bytes, the torrent says {} (is the torrent complete?)",
                path.display(),
                f.length
            )));
        }
        tree.add(&f.path, path).map_err(err)?;
    }
    if !m.info.pieces.is_empty() {
        check_pieces(m, data)?;
    }
    Ok(if m.info.single_file {
        Source::Path(data.join(&m.info.name))
    } else {
        Source::Tree(tree)
    })
}

/// Every piece of `m` under `data` hashes to the torrent's SHA-1 (checked on all cores).
fn check_pieces(m: &metainfo::Metainfo, data: &std::path::Path) -> CliResult {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    let storage = engine::storage::Storage::open(&m.info, data)
        .map_err(|e| CliError::new(format!("{}: {e}", data.display())))?;
    let have = storage
        .recheck(0, &AtomicU64::new(0), &AtomicBool::new(false))
        .map_err(|e| CliError::new(format!("{}: {e}", data.display())))?;
    let total = m.info.pieces.len();
    let good = have.count_ones() as usize;
    if good != total {
        return Err(CliError::new(format!(
            "{}: {} of {total} pieces do not match the torrent's hashes (is the torrent complete?)",
            data.display(),
            total - good
        )));
    }
    Ok(())
}

/// Records `cid` for the torrent with info-hash `hex` in the store (`torrents/HEX`),
/// written to a temp file and renamed.
fn remember_torrent(store: &std::path::Path, hex: &str, cid: &Cid) -> CliResult {
    let dir = store.join("torrents");
    let io = |e: std::io::Error| CliError::new(format!("{}: {e}", dir.display()));
    fs::create_dir_all(&dir).map_err(io)?;
    let tmp = dir.join(format!(".{hex}.{}", std::process::id()));
    fs::write(&tmp, format!("{cid}\n")).map_err(io)?;
    fs::rename(&tmp, dir.join(hex)).map_err(io)
}

/// The CID `bitpeer ipfs add --torrent` recorded for an info-hash (hex) in the default
/// store, if any.
pub fn known_cid(info_hash_hex: &str) -> Option<String> {
    if !info_hash_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let dir = store_dir(None).ok()?;
    let text = fs::read_to_string(dir.join("torrents").join(info_hash_hex)).ok()?;
    let cid = ipfs::parse_cid(text.trim()).ok()?;
    Some(cid.to_string())
}

/// `CID[/path]` resolved in `store`.
fn resolve(store: &dyn BlockStore, arg: &str) -> CliResult<Cid> {
    let arg = arg.strip_prefix("/ipfs/").unwrap_or(arg);
    let (cid, path) = arg.split_once('/').unwrap_or((arg, ""));
    let root = ipfs::parse_cid(cid).map_err(err)?;
    dag::resolve(store, &root, path).map_err(err)
}

fn cat(a: CatArgs) -> CliResult {
    let store = open_store(a.store)?;
    let cid = resolve(&store, &a.cid)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    dag::write_file(&store, &cid, 0, u64::MAX, &mut out).map_err(err)?;
    out.flush()
        .map_err(|e| CliError::new(format!("stdout: {e}")))
}

fn export(a: ExportArgs) -> CliResult {
    let store = open_store(a.store)?;
    let cid = resolve(&store, &a.cid)?;
    if let Some(dest) = a.output {
        return dag::export(&store, &cid, &dest).map_err(err);
    }
    let path = a.car.expect("clap requires --car or -o");
    // Written to a temp file and renamed, so a failed export leaves no partial CAR.
    let tmp = path.with_extension("car.part");
    let file =
        fs::File::create(&tmp).map_err(|e| CliError::new(format!("{}: {e}", tmp.display())))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let io = |e: std::io::Error| ipfs::Error::Io {
        path: tmp.display().to_string(),
        source: e,
    };
    let result = out
        .write_all(&car::header(&[cid]))
        .map_err(io)
        .and_then(|()| {
            dag::walk(&store, &cid, dag::Scope::All, |c, b| {
                car::write_block(&mut out, c, b).map_err(io)
            })
        })
        .and_then(|()| out.flush().map_err(io));
    match result {
        Ok(()) => {
            fs::rename(&tmp, &path).map_err(|e| CliError::new(format!("{}: {e}", path.display())))
        }
        Err(e) => {
            drop(out);
            let _ = fs::remove_file(&tmp);
            Err(err(e))
        }
    }
}

fn import(a: ImportArgs) -> CliResult {
    let store = open_store(a.store)?;
    let file =
        fs::File::open(&a.car).map_err(|e| CliError::new(format!("{}: {e}", a.car.display())))?;
    let mut reader = car::CarReader::new(std::io::BufReader::with_capacity(1 << 20, file))
        .map_err(|e| CliError::new(format!("{}: {e}", a.car.display())))?;
    let mut blocks = 0u64;
    while let Some((cid, block)) = reader
        .next_block()
        .map_err(|e| CliError::new(format!("{}: {e}", a.car.display())))?
    {
        store.put(&cid, &block).map_err(|e| {
            CliError::new(format!("{}: block {}: {e}", a.car.display(), blocks + 1))
        })?;
        blocks += 1;
    }
    eprintln!("imported {blocks} blocks");
    for root in &reader.roots {
        println!("{root}");
    }
    Ok(())
}

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))
}

fn serve(a: ServeArgs) -> CliResult {
    let store: Arc<dyn BlockStore> = Arc::new(open_store(a.store)?);
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(&a.http)
            .await
            .map_err(|e| CliError::new(format!("cannot listen on {}: {e}", a.http)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::new(e.to_string()))?;
        println!("gateway listening on http://{addr}");
        tokio::select! {
            _ = gateway::serve(listener, store) => Ok(()),
            _ = crate::shutdown_signal() => Ok(()),
        }
    })
}

fn get_cmd(a: GetArgs) -> CliResult {
    let root = ipfs::parse_cid(a.cid.strip_prefix("/ipfs/").unwrap_or(&a.cid)).map_err(err)?;
    for g in &a.gateways {
        if !(g.starts_with("http://") || g.starts_with("https://")) {
            return Err(CliError::new(format!(
                "gateway {g:?} is not an http:// or https:// URL"
            )));
        }
    }
    if let Some(out) = &a.output
        && fs::symlink_metadata(out).is_ok()
    {
        return Err(CliError::new(format!("{} exists already", out.display())));
    }
    let store = Arc::new(open_store(a.store)?);
    let fetch = Arc::new(get::Fetch::new(a.gateways)?);
    let s: Arc<dyn BlockStore> = store.clone();
    let counts = runtime()?.block_on(async {
        tokio::select! {
            r = get::fetch_dag(fetch, s, root) => r,
            _ = crate::shutdown_signal() => Err(CliError::new("interrupted (the blocks fetched so far are kept)")),
        }
    })?;
    eprintln!(
        "{} blocks fetched ({} bytes), {} already held",
        counts.fetched, counts.bytes, counts.held
    );
    if let Some(out) = &a.output {
        dag::export(&*store, &root, out).map_err(err)?;
    }
    println!("{root}");
    Ok(())
}
