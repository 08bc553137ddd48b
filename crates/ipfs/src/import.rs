//! UnixFS import: a file or a folder into blocks and a root CID, with the same CIDs as kubo
//! and Helia's `ipfs-unixfs-importer` for each profile.
//!
//! Files are cut into fixed-size chunks; each chunk is a leaf (a raw block in the CIDv1
//! profiles, a dag-pb UnixFS `File` node in `unixfs-v0-2015`), and leaves are gathered into
//! a balanced tree of dag-pb `File` nodes of at most `max_links` children, level by level
//! (Helia's `balanced` layout). A file of exactly one chunk is that chunk's leaf. Links to
//! chunks carry an empty Name; every link's Tsize is the cumulative size of the DAG below.
//!
//! The importer streams: a file is read chunk by chunk, and only the unfinished node of each
//! level of the tree is held (at most `max_links` links per level), so memory stays bounded
//! whatever the file's size. Chunks are hashed in batches across all cores.
//!
//! Directories list their entries sorted by name bytes. A directory becomes a HAMT shard
//! when its estimated block size exceeds 256 KiB, estimated the way Helia does it for each
//! profile: `links-bytes` (name length + CID length of each entry) for `unixfs-v0-2015` and
//! `v1-256k`, `block-bytes` (the exact encoded size) for `unixfs-v1-2025`. Like Helia, the
//! estimate counts files and empty folders but not folders with content.

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::dagpb::{PbLink, PbNode, link_encoded_len};
use crate::hamt;
use crate::unixfs::{Data, DataType};
use crate::{Cid, DAG_PB, Error, RAW, cid_of};

/// Directory blocks above this size (as estimated) are sharded.
pub const SHARD_THRESHOLD: usize = 262_144;
/// Deepest folder nesting we import.
pub const MAX_DEPTH: usize = 256;

/// A UnixFS import profile (IPIP-499 names, plus Helia's no-profile default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// CIDv1, raw leaves, 1 MiB chunks, 1024 links per node (the default).
    UnixfsV1_2025,
    /// kubo's legacy default: CIDv0, dag-pb leaves, 256 KiB chunks, 174 links per node.
    UnixfsV0_2015,
    /// Helia's importer without a profile: CIDv1, raw leaves, 256 KiB chunks, 174 links.
    V1_256k,
}

impl Profile {
    pub const ALL: [Profile; 3] = [
        Profile::UnixfsV1_2025,
        Profile::UnixfsV0_2015,
        Profile::V1_256k,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Profile::UnixfsV1_2025 => "unixfs-v1-2025",
            Profile::UnixfsV0_2015 => "unixfs-v0-2015",
            Profile::V1_256k => "v1-256k",
        }
    }

    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn chunk_size(self) -> usize {
        match self {
            Profile::UnixfsV1_2025 => 1 << 20,
            _ => 256 << 10,
        }
    }

    pub fn max_links(self) -> usize {
        match self {
            Profile::UnixfsV1_2025 => 1024,
            _ => 174,
        }
    }

    pub fn cid_v0(self) -> bool {
        self == Profile::UnixfsV0_2015
    }

    pub fn raw_leaves(self) -> bool {
        self != Profile::UnixfsV0_2015
    }
}

/// Where imported blocks go: a block store, or nowhere (`--only-hash`).
pub trait BlockSink {
    fn put(&mut self, cid: &Cid, block: &[u8]) -> Result<(), Error>;

    /// A handle the import's threads may put blocks through at once, if the sink has one
    /// (else every block goes through [`BlockSink::put`] on one thread).
    fn shared(&self) -> Option<&dyn SharedSink> {
        None
    }

    /// Makes what was put durable and visible; the importer calls it once at the end.
    fn finish(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// A sink several threads may put into at once. The blocks come from the importer, which
/// has just computed each CID from those very bytes.
pub trait SharedSink: Sync {
    fn put_shared(&self, cid: &Cid, block: &[u8]) -> Result<(), Error>;
}

/// A sink that keeps nothing: computes CIDs only.
pub struct DiscardBlocks;

impl BlockSink for DiscardBlocks {
    fn put(&mut self, _cid: &Cid, _block: &[u8]) -> Result<(), Error> {
        Ok(())
    }

    fn shared(&self) -> Option<&dyn SharedSink> {
        Some(self)
    }
}

impl SharedSink for DiscardBlocks {
    fn put_shared(&self, _cid: &Cid, _block: &[u8]) -> Result<(), Error> {
        Ok(())
    }
}

/// The sink as the importer uses it: shared between its threads when it can be.
enum Out<'a> {
    Shared(&'a dyn SharedSink),
    Plain(&'a mut dyn BlockSink),
}

impl BlockSink for Out<'_> {
    fn put(&mut self, cid: &Cid, block: &[u8]) -> Result<(), Error> {
        match self {
            Out::Shared(s) => s.put_shared(cid, block),
            Out::Plain(p) => p.put(cid, block),
        }
    }
}

/// What the importer made for one file, folder or tree node, as a parent links to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Imported {
    pub cid: Cid,
    /// Cumulative size of the DAG below (dag-pb `Tsize`).
    pub tsize: u64,
    /// Bytes of file content below (UnixFS `blocksizes`); 0 for a directory.
    pub filesize: u64,
}

/// Builds one file's tree as chunks arrive; holds only the open node of each level.
struct FileDag {
    profile: Profile,
    /// levels[k] = finished nodes of level k not yet gathered into a parent.
    levels: Vec<Vec<Imported>>,
    chunks: u64,
}

impl FileDag {
    fn new(profile: Profile) -> Self {
        FileDag {
            profile,
            levels: vec![Vec::new()],
            chunks: 0,
        }
    }

    fn push(
        &mut self,
        level: usize,
        node: Imported,
        sink: &mut dyn BlockSink,
    ) -> Result<(), Error> {
        if self.levels.len() <= level {
            self.levels.push(Vec::new());
        }
        self.levels[level].push(node);
        if self.levels[level].len() == self.profile.max_links() {
            let children = std::mem::take(&mut self.levels[level]);
            let parent = self.parent(&children, sink)?;
            self.push(level + 1, parent, sink)?;
        }
        Ok(())
    }

    /// A UnixFS `File` node over `children`.
    fn parent(&self, children: &[Imported], sink: &mut dyn BlockSink) -> Result<Imported, Error> {
        let children: Vec<&Imported> = children.iter().filter(|c| c.filesize > 0).collect();
        let data = Data::file(Vec::new(), children.iter().map(|c| c.filesize).collect());
        let filesize = data.filesize.unwrap_or(0);
        let node = PbNode {
            links: children
                .iter()
                .map(|c| PbLink {
                    hash: c.cid,
                    name: Some(String::new()),
                    tsize: Some(c.tsize),
                })
                .collect(),
            data: Some(data.encode()),
        };
        let block = node.encode();
        let cid = cid_of(DAG_PB, &block, self.profile.cid_v0());
        sink.put(&cid, &block)?;
        Ok(Imported {
            cid,
            tsize: block.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>(),
            filesize,
        })
    }

    /// The root, once every chunk has been pushed (Helia's level-by-level reduction: a
    /// level with one node and nothing above it is the root).
    fn finish(mut self, sink: &mut dyn BlockSink) -> Result<Imported, Error> {
        if self.chunks == 1 && self.levels.len() == 1 && self.levels[0].len() == 1 {
            return Ok(self.levels[0][0]);
        }
        let mut carry: Option<Imported> = None;
        let mut level = 0;
        loop {
            let mut nodes = std::mem::take(&mut self.levels[level]);
            nodes.extend(carry.take());
            let top = level + 1 >= self.levels.len();
            if top && nodes.len() == 1 && level > 0 {
                return Ok(nodes[0]);
            }
            if !nodes.is_empty() {
                carry = Some(self.parent(&nodes, sink)?);
            }
            if top {
                // Level 0 of a multi-chunk file with no full node above: its parent is root.
                return carry.ok_or_else(|| Error::Malformed("empty file tree".into()));
            }
            level += 1;
        }
    }
}

/// The dag-pb leaf of one chunk (`unixfs-v0-2015`); raw leaves are the chunk itself.
fn pb_leaf(chunk: &[u8]) -> Vec<u8> {
    PbNode {
        links: Vec::new(),
        data: Some(Data::file(chunk.to_vec(), Vec::new()).encode()),
    }
    .encode()
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The input as the import's threads share it: the next chunk's number is taken with the
/// chunk, so chunks are numbered in the order of the bytes.
struct Input<'a> {
    reader: &'a mut (dyn Read + Send),
    next: u64,
    done: bool,
}

/// One leaf as a worker made it: its place, CID and sizes, and its block when the sink
/// is not shared (the main thread puts it).
struct Leaf {
    seq: u64,
    node: Imported,
    block: Option<Vec<u8>>,
}

/// Bytes a worker reads at once: one read under the input's lock, and one message to the
/// tree builder, per batch of chunks rather than per chunk (at 256 KiB chunks the
/// per-chunk hand-offs cost more than the bytes they carry).
const BATCH_BYTES: usize = 4 << 20;

/// Takes the next `batch` chunks' bytes into `buf`: the first chunk's number and where its
/// bytes start in `buf`, or `None` at the end. Only the last batch of the input may hold fewer.
fn next_batch(
    input: &Mutex<Input<'_>>,
    buf: &mut Vec<u8>,
    chunk_size: usize,
    batch: usize,
) -> io::Result<Option<(u64, usize)>> {
    let mut input = input.lock().unwrap_or_else(|p| p.into_inner());
    if input.done {
        return Ok(None);
    }
    let want = chunk_size * batch;
    // The bytes start aligned: the kernel copies into them several times faster (see the
    // `iobuf` crate). Only the bytes read are initialized: a small file in a big batch
    // costs what it holds, not the batch.
    let start = match iobuf::read_aligned(input.reader, buf, want) {
        Ok(start) => start,
        Err(e) => {
            input.done = true;
            return Err(e);
        }
    };
    let len = buf.len() - start;
    let seq = input.next;
    // An empty file is one empty chunk; otherwise an empty read ends it.
    let chunks = len.div_ceil(chunk_size).max(usize::from(seq == 0));
    input.next += chunks as u64;
    input.done = len < want;
    Ok((chunks > 0).then_some((seq, start)))
}

/// Makes one chunk's leaf: hashes it, and puts it in the shared sink if there is one.
fn make_leaf(
    profile: Profile,
    seq: u64,
    chunk: &[u8],
    shared: Option<&dyn SharedSink>,
) -> Result<Leaf, Error> {
    let pb = (!profile.raw_leaves()).then(|| pb_leaf(chunk));
    let block: &[u8] = pb.as_deref().unwrap_or(chunk);
    let cid = if profile.raw_leaves() {
        cid_of(RAW, block, false)
    } else {
        cid_of(DAG_PB, block, profile.cid_v0())
    };
    let node = Imported {
        cid,
        tsize: block.len() as u64,
        filesize: chunk.len() as u64,
    };
    let block = match shared {
        Some(s) => {
            s.put_shared(&cid, block)?;
            None
        }
        None => Some(pb.unwrap_or_else(|| chunk.to_vec())),
    };
    Ok(Leaf { seq, node, block })
}

/// The leaves of one batch, in order.
fn make_leaves(
    profile: Profile,
    first: u64,
    buf: &[u8],
    shared: Option<&dyn SharedSink>,
) -> Result<Vec<Leaf>, Error> {
    if buf.is_empty() {
        return Ok(vec![make_leaf(profile, first, buf, shared)?]);
    }
    (first..)
        .zip(buf.chunks(profile.chunk_size()))
        .map(|(seq, chunk)| make_leaf(profile, seq, chunk, shared))
        .collect()
}

/// Imports a byte stream as a UnixFS file. `what` names it in errors.
pub fn import_reader(
    profile: Profile,
    reader: &mut (dyn Read + Send),
    what: &Path,
    sink: &mut dyn BlockSink,
) -> Result<Imported, Error> {
    let root = import_stream(profile, reader, None, what, sink)?;
    sink.finish()?;
    Ok(root)
}

/// [`import_reader`] without the sink's `finish`; `size_hint` is the input's expected
/// length, if known (it only sizes the pool).
///
/// One worker per core takes the next 4 MiB of chunks from the input (under a lock, so
/// chunks keep their numbers), hashes and stores each chunk, then takes more: every core is
/// busy until the end, with no round to wait for. This thread puts the batches back in
/// order and builds the tree. Memory: one batch per worker, and a few finished batches'
/// leaves in a bounded channel (with their blocks only for a sink the workers cannot share).
fn import_stream(
    profile: Profile,
    reader: &mut (dyn Read + Send),
    size_hint: Option<u64>,
    what: &Path,
    sink: &mut dyn BlockSink,
) -> Result<Imported, Error> {
    let chunk_size = profile.chunk_size();
    let batch = (BATCH_BYTES / chunk_size).max(1);
    // No more workers than batches (a small file needs one).
    let batches_hint = size_hint.map_or(usize::MAX, |n| {
        usize::try_from(n.div_ceil((chunk_size * batch) as u64)).unwrap_or(usize::MAX)
    });
    let workers = threads().min(batches_hint).max(1);
    let mut out = if sink.shared().is_some() {
        Out::Shared(sink.shared().expect("checked"))
    } else {
        Out::Plain(sink)
    };
    let shared = match &out {
        Out::Shared(s) => Some(*s),
        Out::Plain(_) => None,
    };
    let input = Mutex::new(Input {
        reader,
        next: 0,
        done: false,
    });
    let stop = AtomicBool::new(false);
    // Credits: a worker takes one before a batch, this thread gives it back once the
    // batch's leaves are in the tree, so at most `in_flight` batches (and, for a sink the
    // workers cannot share, their blocks) exist at once even when one worker lags behind.
    let in_flight = workers + 2;
    let (credit_tx, credit_rx) = std::sync::mpsc::sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        let _ = credit_tx.send(());
    }
    let credits = Mutex::new(credit_rx);
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Leaf>, Error>>(in_flight);
        for _ in 0..workers {
            let (tx, input, stop, credits) = (tx.clone(), &input, &stop, &credits);
            s.spawn(move || {
                let mut buf = Vec::new();
                let take_credit = || {
                    let rx = credits.lock().unwrap_or_else(|p| p.into_inner());
                    rx.recv().is_ok()
                };
                while !stop.load(Ordering::Relaxed) && take_credit() {
                    let leaves = match next_batch(input, &mut buf, chunk_size, batch) {
                        Ok(None) => return,
                        Ok(Some((first, start))) => {
                            make_leaves(profile, first, &buf[start..], shared)
                        }
                        Err(e) => Err(Error::io(what, e)),
                    };
                    let failed = leaves.is_err();
                    if tx.send(leaves).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let result = (|| {
            let mut tree = FileDag::new(profile);
            // Batches that came before the one the tree needs next, by first chunk.
            let mut pending = std::collections::BTreeMap::new();
            for leaves in &rx {
                let leaves = leaves?;
                let Some(first) = leaves.first().map(|l| l.seq) else {
                    continue;
                };
                pending.insert(first, leaves);
                while let Some(leaves) = pending.remove(&tree.chunks) {
                    for leaf in leaves {
                        if let Some(block) = &leaf.block {
                            out.put(&leaf.node.cid, block)?;
                        }
                        tree.chunks += 1;
                        tree.push(0, leaf.node, &mut out)?;
                    }
                    let _ = credit_tx.send(());
                }
            }
            if !pending.is_empty() {
                return Err(Error::Malformed(format!(
                    "{}: chunks missing",
                    what.display()
                )));
            }
            tree.finish(&mut out)
        })();
        // On an error the workers stop at their next batch (and the channel is closed).
        stop.store(true, Ordering::Relaxed);
        drop(rx);
        drop(credit_tx);
        result
    })
}

/// Imports a file or a folder (recursively). Symbolic links and special files are refused;
/// names must be UTF-8 (dag-pb names are strings).
pub fn import_path(
    profile: Profile,
    path: &Path,
    sink: &mut dyn BlockSink,
) -> Result<Imported, Error> {
    let root = import_entry(profile, path, sink, 0)?.0;
    sink.finish()?;
    Ok(root)
}

/// Imports one entry; the flag says whether a parent counts it in its shard estimate (a
/// file or an empty folder, as Helia counts them).
fn import_entry(
    profile: Profile,
    path: &Path,
    sink: &mut dyn BlockSink,
    depth: usize,
) -> Result<(Imported, bool), Error> {
    let meta = fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    let ft = meta.file_type();
    if ft.is_file() {
        let mut file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
        Ok((
            import_stream(profile, &mut file, Some(meta.len()), path, sink)?,
            true,
        ))
    } else if ft.is_dir() {
        if depth >= MAX_DEPTH {
            return Err(Error::Limit(format!(
                "{}: folders nested deeper than {MAX_DEPTH}",
                path.display()
            )));
        }
        import_dir(profile, path, sink, depth)
    } else if ft.is_symlink() {
        Err(Error::Unsupported(format!(
            "{}: symbolic links are not imported",
            path.display()
        )))
    } else {
        Err(Error::Unsupported(format!(
            "{}: not a regular file or folder",
            path.display()
        )))
    }
}

fn import_dir(
    profile: Profile,
    path: &Path,
    sink: &mut dyn BlockSink,
    depth: usize,
) -> Result<(Imported, bool), Error> {
    let mut names = Vec::new();
    for entry in fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        let name = entry.file_name().into_string().map_err(|n| {
            Error::Unsupported(format!("{}: name {n:?} is not UTF-8", path.display()))
        })?;
        names.push(name);
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let (child, counted) = import_entry(profile, &path.join(&name), sink, depth + 1)?;
        entries.push((name, child, counted));
    }
    directory(profile, entries, sink)
}

/// A folder node over `entries` (sorted by name bytes; the flag says whether the entry
/// counts in the shard estimate): flat, or a HAMT when the estimate passes the threshold.
fn directory(
    profile: Profile,
    entries: Vec<(String, Imported, bool)>,
    sink: &mut dyn BlockSink,
) -> Result<(Imported, bool), Error> {
    let v0 = profile.cid_v0();
    let empty = entries.is_empty();
    // The Data field of a plain directory node (tag, length, [8, 1]) counts in the exact
    // block size of `unixfs-v1-2025`.
    let mut estimate = if profile == Profile::UnixfsV1_2025 {
        4
    } else {
        0
    };
    for (name, child, counted) in &entries {
        if *counted {
            let cid_len = child.cid.encoded_len();
            estimate += match profile {
                Profile::UnixfsV1_2025 => link_encoded_len(name.len(), cid_len, child.tsize),
                _ => name.len() + cid_len,
            };
        }
    }
    let entries: Vec<hamt::Entry> = entries
        .into_iter()
        .map(|(name, child, _)| hamt::Entry {
            name,
            cid: child.cid,
            tsize: child.tsize,
        })
        .collect();
    let (cid, tsize) = if estimate > SHARD_THRESHOLD {
        hamt::build(&entries, v0, sink)?
    } else {
        let node = PbNode {
            links: entries
                .iter()
                .map(|e| PbLink {
                    hash: e.cid,
                    name: Some(e.name.clone()),
                    tsize: Some(e.tsize),
                })
                .collect(),
            data: Some(Data::new(DataType::Directory).encode()),
        };
        let block = node.encode();
        let cid = cid_of(DAG_PB, &block, v0);
        sink.put(&cid, &block)?;
        let children: u64 = entries.iter().map(|e| e.tsize).sum();
        (cid, block.len() as u64 + children)
    };
    Ok((
        Imported {
            cid,
            tsize,
            filesize: 0,
        },
        empty,
    ))
}

/// A folder given as a list of files, not read from disk: each file's path inside the
/// folder (components) and where its bytes are. Used to import exactly a torrent's files.
#[derive(Default)]
pub struct FileTree {
    children: std::collections::BTreeMap<String, TreeEntry>,
}

enum TreeEntry {
    File(std::path::PathBuf),
    Dir(FileTree),
}

impl FileTree {
    /// Adds a file at `path` (components, each non-empty and without '/').
    pub fn add(&mut self, path: &[String], source: std::path::PathBuf) -> Result<(), Error> {
        let Some((last, dirs)) = path.split_last() else {
            return Err(Error::Malformed("empty file path".into()));
        };
        let mut at = self;
        for d in dirs {
            let next = at
                .children
                .entry(d.clone())
                .or_insert_with(|| TreeEntry::Dir(FileTree::default()));
            at = match next {
                TreeEntry::Dir(t) => t,
                TreeEntry::File(_) => {
                    return Err(Error::Malformed(format!("{d} is both a file and a folder")));
                }
            };
        }
        if at
            .children
            .insert(last.clone(), TreeEntry::File(source))
            .is_some()
        {
            return Err(Error::Malformed(format!("{last} listed twice")));
        }
        Ok(())
    }

    /// Imports the folder (String order is byte order, as UnixFS wants).
    pub fn import(&self, profile: Profile, sink: &mut dyn BlockSink) -> Result<Imported, Error> {
        let root = self.import_at(profile, sink, 0)?.0;
        sink.finish()?;
        Ok(root)
    }

    fn import_at(
        &self,
        profile: Profile,
        sink: &mut dyn BlockSink,
        depth: usize,
    ) -> Result<(Imported, bool), Error> {
        if depth >= MAX_DEPTH {
            return Err(Error::Limit(format!(
                "folders nested deeper than {MAX_DEPTH}"
            )));
        }
        let mut entries = Vec::with_capacity(self.children.len());
        for (name, entry) in &self.children {
            let (child, counted) = match entry {
                TreeEntry::File(p) => import_entry(profile, p, sink, depth + 1)?,
                TreeEntry::Dir(t) => t.import_at(profile, sink, depth + 1)?,
            };
            entries.push((name.clone(), child, counted));
        }
        directory(profile, entries, sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid_of_bytes(profile: Profile, data: &[u8]) -> String {
        import_reader(
            profile,
            &mut &data[..],
            Path::new("test"),
            &mut DiscardBlocks,
        )
        .unwrap()
        .cid
        .to_string()
    }

    #[test]
    fn well_known_small_files() {
        // kubo: `ipfs add` of an empty file and of "hello world\n" (CIDv0 defaults).
        assert_eq!(
            cid_of_bytes(Profile::UnixfsV0_2015, b""),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
        assert_eq!(
            cid_of_bytes(Profile::UnixfsV0_2015, b"hello world\n"),
            "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
        );
        // Raw leaf of the empty file.
        assert_eq!(
            cid_of_bytes(Profile::UnixfsV1_2025, b""),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
    }

    #[test]
    fn streaming_tree_matches_level_by_level_shape() {
        // 175 chunks with 174 links per node: a root over a full node and a one-link node.
        let data = vec![7u8; 256 * 1024 * 175];
        let mut sink = Collect::default();
        let mut r = &data[..];
        let root = import_reader(Profile::V1_256k, &mut r, Path::new("t"), &mut sink).unwrap();
        let node = PbNode::decode(sink.get(&root.cid)).unwrap();
        assert_eq!(node.links.len(), 2);
        let second = PbNode::decode(sink.get(&node.links[1].hash)).unwrap();
        assert_eq!(second.links.len(), 1);
        assert_eq!(root.filesize, data.len() as u64);
    }

    /// A reader that hands out its bytes in uneven, small pieces, and fails at `fail_at`.
    struct Ragged<'a> {
        data: &'a [u8],
        step: usize,
        fail_at: Option<usize>,
        at: usize,
    }
    impl Read for Ragged<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.fail_at.is_some_and(|f| self.at >= f) {
                return Err(io::Error::other("disk on fire"));
            }
            self.step = self.step % 9973 + 7919;
            let n = self.step.min(buf.len()).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn parallel_leaves_keep_their_order_whatever_the_reads_and_the_sink() {
        // 9 MiB + 5 of varied bytes (three batches of work): leaves differ, so a swapped
        // pair of leaves or of batches changes the root.
        let data: Vec<u8> = (0..(9 << 20) + 5)
            .map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for profile in Profile::ALL {
            let whole = cid_of_bytes(profile, &data);
            let mut ragged = Ragged {
                data: &data,
                step: 1,
                fail_at: None,
                at: 0,
            };
            let shared =
                import_reader(profile, &mut ragged, Path::new("t"), &mut DiscardBlocks).unwrap();
            assert_eq!(shared.cid.to_string(), whole, "{}", profile.name());
            // A sink the workers cannot share: every block goes through this thread.
            let mut sink = Collect::default();
            let plain = import_reader(profile, &mut &data[..], Path::new("t"), &mut sink).unwrap();
            assert_eq!(plain.cid.to_string(), whole, "{}", profile.name());
            // The root was put last, and links to the chunks in the order of the bytes.
            assert_eq!(sink.0.last().unwrap().0, plain.cid);
            let root = PbNode::decode(sink.get(&plain.cid)).unwrap();
            let chunks: Vec<&[u8]> = data.chunks(profile.chunk_size()).collect();
            assert_eq!(root.links.len(), chunks.len());
            for (link, chunk) in root.links.iter().zip(chunks) {
                let leaf = match profile.raw_leaves() {
                    true => cid_of(RAW, chunk, false),
                    false => cid_of(DAG_PB, &pb_leaf(chunk), true),
                };
                assert_eq!(link.hash, leaf);
            }
        }
    }

    #[test]
    fn a_read_error_fails_the_import() {
        let data = vec![1u8; 5 << 20];
        let mut ragged = Ragged {
            data: &data,
            step: 1,
            fail_at: Some(3 << 20),
            at: 0,
        };
        let e = import_reader(
            Profile::V1_256k,
            &mut ragged,
            Path::new("f"),
            &mut DiscardBlocks,
        );
        assert!(matches!(e, Err(Error::Io { .. })), "{e:?}");
    }

    #[derive(Default)]
    struct Collect(Vec<(Cid, Vec<u8>)>);
    impl BlockSink for Collect {
        fn put(&mut self, cid: &Cid, block: &[u8]) -> Result<(), Error> {
            self.0.push((*cid, block.to_vec()));
            Ok(())
        }
    }
    impl Collect {
        fn get(&self, cid: &Cid) -> &[u8] {
            &self.0.iter().find(|(c, _)| c == cid).unwrap().1
        }
    }
}
