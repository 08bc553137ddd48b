//! Reading UnixFS DAGs out of a block store: a file's bytes (whole or a byte range), a
//! folder's entries (flat or HAMT-sharded), a path inside a folder, exporting to disk, and
//! the depth-first block walk CAR files and the gateway use.
//!
//! Everything read is untrusted: link names are checked before they become file names (no
//! `..`, `/`, NUL, empty names), nesting and link counts are bounded, and a file's
//! `blocksizes` must match what its children hold.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use crate::dagpb::{PbLink, PbNode};
use crate::store::BlockStore;
use crate::unixfs::{Data, DataType};
use crate::{Cid, DAG_PB, Error, RAW};

/// Deepest DAG we follow (file trees, folders and shards together).
pub const MAX_DEPTH: usize = 256;
/// Most entries one folder (all its shards together) may list.
pub const MAX_DIR_ENTRIES: usize = 1 << 20;

/// A block decoded as UnixFS.
pub enum Node {
    /// A raw block: file bytes.
    Raw(Vec<u8>),
    /// A UnixFS file (or raw) node: inline bytes, then children with their sizes.
    File {
        data: Vec<u8>,
        links: Vec<PbLink>,
        blocksizes: Vec<u64>,
    },
    Directory(Vec<PbLink>),
    Hamt(Vec<PbLink>),
    Symlink(Vec<u8>),
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self, Node::Directory(_) | Node::Hamt(_))
    }
}

pub fn decode(cid: &Cid, block: &[u8]) -> Result<Node, Error> {
    match cid.codec() {
        RAW => Ok(Node::Raw(block.to_vec())),
        DAG_PB => {
            let node = PbNode::decode(block)?;
            let data = node.data.ok_or_else(|| {
                Error::Malformed(format!("{cid}: dag-pb node without UnixFS data"))
            })?;
            let d = Data::decode(&data)?;
            match d.kind {
                DataType::File | DataType::Raw => {
                    if !node.links.is_empty() && node.links.len() != d.blocksizes.len() {
                        return Err(Error::Malformed(format!(
                            "{cid}: {} links but {} blocksizes",
                            node.links.len(),
                            d.blocksizes.len()
                        )));
                    }
                    Ok(Node::File {
                        data: d.data,
                        links: node.links,
                        blocksizes: d.blocksizes,
                    })
                }
                DataType::Directory => Ok(Node::Directory(node.links)),
                DataType::HamtShard => {
                    if d.fanout != Some(crate::hamt::FANOUT)
                        || d.hash_type != Some(crate::hamt::HASH_MURMUR3_X64_64)
                    {
                        return Err(Error::Unsupported(format!(
                            "{cid}: HAMT with fanout {:?} and hash {:?}",
                            d.fanout, d.hash_type
                        )));
                    }
                    Ok(Node::Hamt(node.links))
                }
                DataType::Symlink => Ok(Node::Symlink(d.data)),
                DataType::Metadata => {
                    Err(Error::Unsupported(format!("{cid}: UnixFS metadata nodes")))
                }
            }
        }
        c => Err(Error::Unsupported(format!(
            "{cid}: codec 0x{c:x} (only dag-pb and raw)"
        ))),
    }
}

/// Fetches a block that must be held.
pub fn need(store: &dyn BlockStore, cid: &Cid) -> Result<Vec<u8>, Error> {
    store
        .get(cid)?
        .ok_or_else(|| Error::NotFound(cid.to_string()))
}

pub fn load(store: &dyn BlockStore, cid: &Cid) -> Result<Node, Error> {
    decode(cid, &need(store, cid)?)
}

/// Writes the bytes `[from, to)` of the file at `cid` to `out`; returns the file's size as
/// its root declares it. `to = u64::MAX` means to the end.
pub fn write_file(
    store: &dyn BlockStore,
    cid: &Cid,
    from: u64,
    to: u64,
    out: &mut dyn Write,
) -> Result<u64, Error> {
    let node = load(store, cid)?;
    let size = node_size(cid, &node)?;
    let written = write_range(store, cid, node, 0, from, to, out, 0)?;
    if written != size {
        return Err(Error::Malformed(format!(
            "{cid}: file holds {written} bytes, declares {size}"
        )));
    }
    Ok(size)
}

/// Size of a file node as it declares it.
pub fn node_size(cid: &Cid, node: &Node) -> Result<u64, Error> {
    match node {
        Node::Raw(b) => Ok(b.len() as u64),
        Node::File {
            data, blocksizes, ..
        } => blocksizes
            .iter()
            .try_fold(data.len() as u64, |a, &b| a.checked_add(b))
            .ok_or_else(|| Error::Malformed(format!("{cid}: file size overflows"))),
        _ => Err(Error::Unsupported(format!("{cid} is not a file"))),
    }
}

/// Writes the part of `node` (at file offset `at`) inside `[from, to)`; returns the bytes
/// the node holds (all of them, written or skipped), checked against `blocksizes`.
#[allow(clippy::too_many_arguments)]
fn write_range(
    store: &dyn BlockStore,
    cid: &Cid,
    node: Node,
    at: u64,
    from: u64,
    to: u64,
    out: &mut dyn Write,
    depth: usize,
) -> Result<u64, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Limit(format!(
            "{cid}: file DAG deeper than {MAX_DEPTH}"
        )));
    }
    let mut emit = |bytes: &[u8], at: u64| -> Result<(), Error> {
        let end = at + bytes.len() as u64;
        let (s, e) = (from.max(at), to.min(end));
        if s < e {
            out.write_all(&bytes[(s - at) as usize..(e - at) as usize])
                .map_err(|e| Error::io("output", e))?;
        }
        Ok(())
    };
    match node {
        Node::Raw(bytes) => {
            emit(&bytes, at)?;
            Ok(bytes.len() as u64)
        }
        Node::File {
            data,
            links,
            blocksizes,
        } => {
            emit(&data, at)?;
            let mut pos = at + data.len() as u64;
            for (link, &want) in links.iter().zip(&blocksizes) {
                let end = pos
                    .checked_add(want)
                    .ok_or_else(|| Error::Malformed(format!("{cid}: file size overflows")))?;
                if end > from && pos < to {
                    let child = load(store, &link.hash)?;
                    let got = write_range(store, &link.hash, child, pos, from, to, out, depth + 1)?;
                    if got != want {
                        return Err(Error::Malformed(format!(
                            "{}: holds {got} bytes, its parent {cid} says {want}",
                            link.hash
                        )));
                    }
                }
                pos = end;
            }
            Ok(pos - at)
        }
        _ => Err(Error::Unsupported(format!("{cid} is not a file"))),
    }
}

/// A name from a dag-pb link, checked before it names anything on disk.
pub fn safe_name(name: &str) -> Result<&str, Error> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.contains('/')
        || name.contains('\0')
        || name.contains('\\')
    {
        return Err(Error::Malformed(format!(
            "unsafe name {name:?} in a folder (empty, '.', '..', or with '/', '\\' or NUL)"
        )));
    }
    Ok(name)
}

/// Every entry of a folder, shards walked, in link order: `(name, cid)`.
pub fn dir_entries(
    store: &dyn BlockStore,
    cid: &Cid,
    node: &Node,
) -> Result<Vec<(String, Cid)>, Error> {
    let mut out = Vec::new();
    match node {
        Node::Directory(links) => {
            for l in links {
                let name = l.name.clone().unwrap_or_default();
                out.push((safe_name(&name)?.to_owned(), l.hash));
            }
        }
        Node::Hamt(links) => hamt_entries(store, cid, links, &mut out, 0)?,
        _ => return Err(Error::Unsupported(format!("{cid} is not a folder"))),
    }
    Ok(out)
}

fn hamt_entries(
    store: &dyn BlockStore,
    cid: &Cid,
    links: &[PbLink],
    out: &mut Vec<(String, Cid)>,
    depth: usize,
) -> Result<(), Error> {
    if depth > 64 {
        return Err(Error::Limit(format!("{cid}: HAMT deeper than 64 levels")));
    }
    for l in links {
        let label = l.name.as_deref().unwrap_or("");
        let prefix = label.get(..2).filter(|p| {
            p.bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        });
        if prefix.is_none() {
            return Err(Error::Malformed(format!("{cid}: HAMT link {label:?}")));
        }
        if label.len() == 2 {
            match load(store, &l.hash)? {
                Node::Hamt(sub) => hamt_entries(store, &l.hash, &sub, out, depth + 1)?,
                _ => {
                    return Err(Error::Malformed(format!(
                        "{}: HAMT sub-shard that is not a shard",
                        l.hash
                    )));
                }
            }
        } else {
            if out.len() >= MAX_DIR_ENTRIES {
                return Err(Error::Limit(format!(
                    "{cid}: folder with more than {MAX_DIR_ENTRIES} entries"
                )));
            }
            out.push((safe_name(&label[2..])?.to_owned(), l.hash));
        }
    }
    Ok(())
}

/// Follows `path` (names separated by '/') from the folder `root`.
pub fn resolve(store: &dyn BlockStore, root: &Cid, path: &str) -> Result<Cid, Error> {
    let mut cid = *root;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        let node = load(store, &cid)?;
        if !node.is_dir() {
            return Err(Error::NotFound(format!(
                "{cid}/{part} ({cid} is not a folder)"
            )));
        }
        let entries = dir_entries(store, &cid, &node)?;
        cid = entries
            .into_iter()
            .find(|(n, _)| n == part)
            .map(|(_, c)| c)
            .ok_or_else(|| Error::NotFound(format!("{cid}/{part}")))?;
    }
    Ok(cid)
}

/// Writes the file or folder at `cid` to `dest`, which must not exist yet. Nothing is
/// written outside `dest`: names are checked and files are created, never opened.
pub fn export(store: &dyn BlockStore, cid: &Cid, dest: &Path) -> Result<(), Error> {
    export_at(store, cid, dest, 0)
}

fn export_at(store: &dyn BlockStore, cid: &Cid, dest: &Path, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Limit(format!(
            "{cid}: folders nested deeper than {MAX_DEPTH}"
        )));
    }
    let node = load(store, cid)?;
    if node.is_dir() {
        fs::create_dir(dest).map_err(|e| Error::io(dest, e))?;
        for (name, child) in dir_entries(store, cid, &node)? {
            export_at(store, &child, &dest.join(name), depth + 1)?;
        }
        return Ok(());
    }
    if let Node::Symlink(_) = node {
        return Err(Error::Unsupported(format!(
            "{cid}: symbolic links are not exported"
        )));
    }
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| Error::io(dest, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    write_file(store, cid, 0, u64::MAX, &mut w)?;
    w.flush().map_err(|e| Error::io(dest, e))?;
    Ok(())
}

/// How much of a DAG a walk covers (the gateway's `dag-scope`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every block reachable from the root.
    All,
    /// The blocks needed for the root entity: a whole file, or a folder's own blocks (its
    /// shards) without its children.
    Entity,
    /// The root block only.
    Block,
}

/// Visits blocks depth-first, in link order, each once (CAR `order=dfs`, `dups=n`); one
/// walker can make several walks (a path, then its target) without repeating a block.
/// A walk stops at the first block not held, with [`Error::NotFound`].
pub struct Walker<F> {
    seen: HashSet<Cid>,
    visit: F,
}

impl<F: FnMut(&Cid, &[u8]) -> Result<(), Error>> Walker<F> {
    pub fn new(visit: F) -> Self {
        Walker {
            seen: HashSet::new(),
            visit,
        }
    }

    /// The blocks of `root` within `scope`.
    pub fn walk(&mut self, store: &dyn BlockStore, root: &Cid, scope: Scope) -> Result<(), Error> {
        // (cid, whether its own children are to be followed)
        let mut stack = vec![(*root, true)];
        while let Some((cid, follow)) = stack.pop() {
            if !self.seen.insert(cid) {
                continue;
            }
            let block = need(store, &cid)?;
            (self.visit)(&cid, &block)?;
            if !follow || scope == Scope::Block || cid.codec() == RAW {
                continue;
            }
            let node = decode(&cid, &block)?;
            let links: Vec<(Cid, bool)> = match (&node, scope) {
                (Node::File { links, .. }, _) => links.iter().map(|l| (l.hash, true)).collect(),
                (Node::Directory(links) | Node::Hamt(links), Scope::All) => {
                    links.iter().map(|l| (l.hash, true)).collect()
                }
                (Node::Hamt(links), _) => links
                    .iter()
                    .filter(|l| l.name.as_deref().is_some_and(|n| n.len() == 2))
                    .map(|l| (l.hash, true))
                    .collect(),
                _ => Vec::new(),
            };
            if stack.len() + links.len() > 1 << 24 {
                return Err(Error::Limit(format!("{root}: DAG too wide to walk")));
            }
            stack.extend(links.into_iter().rev());
        }
        Ok(())
    }

    /// The blocks a reader of bytes `[from, to)` of the file at `cid` needs.
    pub fn walk_range(
        &mut self,
        store: &dyn BlockStore,
        cid: &Cid,
        from: u64,
        to: u64,
    ) -> Result<(), Error> {
        self.range_at(store, cid, 0, from, to, 0)
    }

    fn range_at(
        &mut self,
        store: &dyn BlockStore,
        cid: &Cid,
        at: u64,
        from: u64,
        to: u64,
        depth: usize,
    ) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(Error::Limit(format!(
                "{cid}: file DAG deeper than {MAX_DEPTH}"
            )));
        }
        let block = need(store, cid)?;
        if self.seen.insert(*cid) {
            (self.visit)(cid, &block)?;
        }
        if let Node::File {
            data,
            links,
            blocksizes,
        } = decode(cid, &block)?
        {
            let mut pos = at + data.len() as u64;
            for (link, &size) in links.iter().zip(&blocksizes) {
                let end = pos.saturating_add(size);
                if end > from && pos < to {
                    self.range_at(store, &link.hash, pos, from, to, depth + 1)?;
                }
                pos = end;
            }
        }
        Ok(())
    }

    /// Follows `path` from the folder `root`, visiting each folder's own blocks (its
    /// shards too) on the way, as a client needs them to verify the path; returns the target.
    pub fn walk_path(
        &mut self,
        store: &dyn BlockStore,
        root: &Cid,
        path: &[String],
    ) -> Result<Cid, Error> {
        let mut cid = *root;
        for part in path {
            self.walk(store, &cid, Scope::Entity)?;
            cid = resolve(store, &cid, part)?;
        }
        Ok(cid)
    }
}

/// Visits every block under `root` within `scope` (see [`Walker`]).
pub fn walk(
    store: &dyn BlockStore,
    root: &Cid,
    scope: Scope,
    visit: impl FnMut(&Cid, &[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    Walker::new(visit).walk(store, root, scope)
}
