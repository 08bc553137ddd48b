//! `bitpeer ipfs ...`: IPFS content addressing. `add` imports a file or folder as UnixFS
//! (same CIDs as kubo and Helia for the chosen profile) into a block store.

use std::path::PathBuf;

use clap::Subcommand;
use ipfs::{BlockSink, DiscardBlocks, FsStore, Profile};

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
}

#[derive(clap::Args)]
struct AddArgs {
    /// The file or folder to import.
    path: PathBuf,
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
    }
}

fn add(a: AddArgs) -> CliResult {
    let root = if a.only_hash {
        ipfs::import_path(a.profile, &a.path, &mut DiscardBlocks)
    } else {
        let store = open_store(a.store)?;
        let mut sink: &FsStore = &store;
        ipfs::import_path(a.profile, &a.path, &mut sink as &mut dyn BlockSink)
    }
    .map_err(err)?;
    println!("{}", root.cid);
    Ok(())
}
