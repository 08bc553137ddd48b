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

    /// Several blocks at once (a store may write them in parallel).
    fn put_many(&mut self, blocks: &[(Cid, &[u8])]) -> Result<(), Error> {
        for (cid, block) in blocks {
            self.put(cid, block)?;
        }
        Ok(())
    }
}

/// A sink that keeps nothing: computes CIDs only.
pub struct DiscardBlocks;

impl BlockSink for DiscardBlocks {
    fn put(&mut self, _cid: &Cid, _block: &[u8]) -> Result<(), Error> {
        Ok(())
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

/// Makes and hashes the leaves of `chunks` across all cores: (the dag-pb leaf block, or
/// `None` when the leaf is the raw chunk, and its CID).
fn hash_leaves(profile: Profile, chunks: &[Vec<u8>]) -> Vec<(Option<Vec<u8>>, Cid)> {
    let make = |chunk: &Vec<u8>| {
        if profile.raw_leaves() {
            (None, cid_of(RAW, chunk, false))
        } else {
            let block = pb_leaf(chunk);
            let cid = cid_of(DAG_PB, &block, profile.cid_v0());
            (Some(block), cid)
        }
    };
    let n = threads().min(chunks.len());
    if n <= 1 {
        return chunks.iter().map(make).collect();
    }
    let per = chunks.len().div_ceil(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(make).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("hashing thread panicked"))
            .collect()
    })
}

/// Fills `buf` with up to `size` bytes; fewer only at the end of the input.
fn read_chunk(reader: &mut dyn Read, buf: &mut Vec<u8>, size: usize) -> io::Result<()> {
    // A reused buffer keeps its length: no zeroing of what is about to be overwritten.
    buf.resize(size, 0);
    let mut filled = 0;
    while filled < size {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(())
}

/// Imports a byte stream as a UnixFS file. `what` names it in errors.
///
/// A reader thread fills batches of chunks while the previous batch is hashed on all
/// cores; at most three batches (about 16 MiB each) exist at once.
pub fn import_reader(
    profile: Profile,
    reader: &mut (dyn Read + Send),
    what: &Path,
    sink: &mut dyn BlockSink,
) -> Result<Imported, Error> {
    let chunk_size = profile.chunk_size();
    let batch_len = (threads() * 2).max((16 << 20) / chunk_size).max(1);
    std::thread::scope(|s| {
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<Vec<u8>>>>(1);
        let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<Vec<u8>>>();
        s.spawn(move || {
            let mut sent_any = false;
            loop {
                let mut batch = empty_rx.try_recv().unwrap_or_default();
                let mut spare: Vec<Vec<u8>> = std::mem::take(&mut batch);
                let mut eof = false;
                while batch.len() < batch_len {
                    let mut buf = spare.pop().unwrap_or_default();
                    if let Err(e) = read_chunk(reader, &mut buf, chunk_size) {
                        let _ = full_tx.send(Err(e));
                        return;
                    }
                    let short = buf.len() < chunk_size;
                    // An empty file is one empty chunk; otherwise an empty read ends it.
                    if !buf.is_empty() || (!sent_any && batch.is_empty()) {
                        batch.push(buf);
                    }
                    if short {
                        eof = true;
                        break;
                    }
                }
                sent_any = true;
                if full_tx.send(Ok(batch)).is_err() || eof {
                    return;
                }
            }
        });
        let mut tree = FileDag::new(profile);
        for batch in full_rx {
            let chunks = batch.map_err(|e| Error::io(what, e))?;
            let leaves = hash_leaves(profile, &chunks);
            let blocks: Vec<(Cid, &[u8])> = chunks
                .iter()
                .zip(&leaves)
                .map(|(chunk, (pb, cid))| (*cid, pb.as_deref().unwrap_or(chunk)))
                .collect();
            sink.put_many(&blocks)?;
            for ((cid, block), chunk) in blocks.iter().zip(&chunks) {
                tree.chunks += 1;
                let leaf = Imported {
                    cid: *cid,
                    tsize: block.len() as u64,
                    filesize: chunk.len() as u64,
                };
                tree.push(0, leaf, sink)?;
            }
            drop(blocks);
            let _ = empty_tx.send(chunks);
        }
        tree.finish(sink)
    })
}

/// Imports a file or a folder (recursively). Symbolic links and special files are refused;
/// names must be UTF-8 (dag-pb names are strings).
pub fn import_path(
    profile: Profile,
    path: &Path,
    sink: &mut dyn BlockSink,
) -> Result<Imported, Error> {
    import_entry(profile, path, sink, 0).map(|(i, _)| i)
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
        Ok((import_reader(profile, &mut file, path, sink)?, true))
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
        self.import_at(profile, sink, 0).map(|(i, _)| i)
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
