//! .torrent files: BEP 3 (v1), BEP 52 (v2 and hybrid), with BEP 12 announce lists, BEP 19 web
//! seeds, BEP 27 private torrents and BEP 47 pad files and attributes.
//!
//! The info-hash is computed over the `info` dictionary exactly as it appears in the file.
//! Every count and length is checked against [`Limits`] before it is used, and every file
//! name goes through the [`crate::path`] policy.

use crate::hash::InfoHashes;
use crate::path::{self, PathError};
use bencode::{Dict, Value};
use std::collections::HashSet;
use std::path::PathBuf;

/// Bounds on what a .torrent file may ask of us.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest .torrent file, in bytes.
    pub max_torrent_bytes: usize,
    /// Largest `info` dictionary, in bytes (also the bound for BEP 9 `metadata_size`).
    pub max_info_bytes: usize,
    pub max_pieces: u64,
    pub max_files: usize,
    pub max_piece_length: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_torrent_bytes: 64 << 20,
            max_info_bytes: 32 << 20,
            max_pieces: 2_000_000,
            max_files: 1_000_000,
            max_piece_length: 512 << 20,
        }
    }
}

/// Why a .torrent file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetainfoError {
    #[error("not valid bencode: {0}")]
    Bencode(#[from] bencode::Error),
    #[error("the file is {len} bytes, more than the limit of {max}")]
    FileTooLarge { len: usize, max: usize },
    #[error("the info dictionary is {len} bytes, more than the limit of {max}")]
    InfoTooLarge { len: usize, max: usize },
    #[error("the top level is not a dictionary but: {0}")]
    NotADictionary(&'static str),
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("field `{field}` has the wrong type: expected {expected}, found {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field `{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("`pieces` is {0} bytes long, not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    #[error("the torrent has {actual} piece hashes but its {total} bytes need {expected}")]
    PieceCountMismatch {
        expected: u64,
        actual: u64,
        total: u64,
    },
    #[error("the torrent has {count} pieces, more than the limit of {max}")]
    TooManyPieces { count: u64, max: u64 },
    #[error("the torrent has more than {0} files")]
    TooManyFiles(usize),
    #[error("the torrent contains no data (total size 0)")]
    Empty,
    #[error("unsupported `meta version` {0}")]
    UnsupportedVersion(i64),
    #[error("two files share the path `{0}`")]
    DuplicatePath(String),
    #[error("bad file path: {0}")]
    Path(#[from] PathError),
}

type Result<T> = std::result::Result<T, MetainfoError>;

/// Which BitTorrent version(s) a torrent speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
    Hybrid,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
            Version::Hybrid => "hybrid",
        }
    }
}

/// BEP 47 file attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileAttr {
    /// A pad file: zeros that align the next file to a piece boundary; never written to disk.
    pub pad: bool,
    pub executable: bool,
    pub hidden: bool,
    pub symlink: bool,
}

impl FileAttr {
    fn parse(s: &[u8]) -> Self {
        FileAttr {
            pad: s.contains(&b'p'),
            executable: s.contains(&b'x'),
            hidden: s.contains(&b'h'),
            symlink: s.contains(&b'l'),
        }
    }
}

/// One file of a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Sanitized path components below the torrent's folder (for a single-file torrent: its
    /// name).
    pub path: Vec<String>,
    pub length: u64,
    /// Offset of the file's first byte in the torrent's byte stream (the v1 view; for a
    /// v2-only torrent, where every file starts on a piece boundary, the v2 view).
    pub offset: u64,
    pub attr: FileAttr,
    /// BEP 52: root of the file's SHA-256 merkle tree (absent for empty files).
    pub pieces_root: Option<[u8; 32]>,
}

impl FileEntry {
    /// The path joined with `/`, for display.
    pub fn display_path(&self) -> String {
        self.path.join("/")
    }
}

/// The `info` dictionary, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Sanitized name: the file name of a single-file torrent, the folder of a multi-file one.
    pub name: String,
    pub piece_length: u64,
    /// v1 piece hashes (empty for a v2-only torrent).
    pub pieces: Vec<[u8; 20]>,
    pub files: Vec<FileEntry>,
    /// True when the torrent is one file stored as `name` (no folder).
    pub single_file: bool,
    pub private: bool,
    pub version: Version,
    /// Sum of all file lengths, pad files included.
    pub total_length: u64,
}

impl Info {
    /// Number of pieces: the v1 count, or for v2-only torrents the sum over files (each file
    /// starts a new piece in v2).
    pub fn piece_count(&self) -> u64 {
        if self.version == Version::V2 {
            self.files
                .iter()
                .map(|f| f.length.div_ceil(self.piece_length))
                .sum()
        } else {
            self.pieces.len() as u64
        }
    }

    /// Where file `i` lives, relative to the download folder (`-o DIR`): `name/a/b` for a
    /// multi-file torrent, `name` for a single file.
    pub fn file_path(&self, i: usize) -> PathBuf {
        let f = &self.files[i];
        if self.single_file {
            PathBuf::from(&self.name)
        } else {
            PathBuf::from(&self.name).join(path::to_relative_path(&f.path))
        }
    }

    /// Length of piece `index` in the v1 layout.
    pub fn piece_size(&self, index: u64) -> u64 {
        let start = index * self.piece_length;
        self.piece_length
            .min(self.total_length.saturating_sub(start))
    }
}

/// A parsed .torrent file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    pub info_hashes: InfoHashes,
    /// The `info` dictionary exactly as it appeared in the file.
    pub info_bytes: Vec<u8>,
    pub info: Info,
    /// BEP 12 tiers (a lone `announce` becomes one tier of one URL).
    pub trackers: Vec<Vec<String>>,
    /// BEP 19 `url-list`.
    pub web_seeds: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
}

impl Metainfo {
    /// Parse a .torrent file with the default limits.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_bytes_with(bytes, &Limits::default())
    }

    pub fn from_bytes_with(bytes: &[u8], limits: &Limits) -> Result<Self> {
        if bytes.len() > limits.max_torrent_bytes {
            return Err(MetainfoError::FileTooLarge {
                len: bytes.len(),
                max: limits.max_torrent_bytes,
            });
        }
        let root = bencode::decode(bytes)?;
        let top = root
            .as_dict()
            .ok_or(MetainfoError::NotADictionary(root.type_name()))?;
        let info_value = top
            .get(b"info")
            .ok_or(MetainfoError::MissingField("info"))?;
        let (info_hashes, info) = parse_info(info_value, limits)?;
        Ok(Metainfo {
            info_hashes,
            info_bytes: info_value.raw().to_vec(),
            info,
            trackers: parse_trackers(top),
            web_seeds: parse_web_seeds(top),
            comment: text(top, b"comment.utf-8").or_else(|| text(top, b"comment")),
            created_by: text(top, b"created by"),
            creation_date: top.get(b"creation date").and_then(Value::as_int),
        })
    }

    /// A torrent from a bare `info` dictionary (as fetched from peers with BEP 9) and the
    /// trackers and web seeds a magnet link named. The caller checks the info-hash.
    pub fn from_info_bytes(
        info_bytes: &[u8],
        trackers: Vec<Vec<String>>,
        web_seeds: Vec<String>,
    ) -> Result<Self> {
        let (info_hashes, info) = parse_info_bytes(info_bytes, &Limits::default())?;
        Ok(Metainfo {
            info_hashes,
            info_bytes: info_bytes.to_vec(),
            info,
            trackers,
            web_seeds,
            comment: None,
            created_by: None,
            creation_date: None,
        })
    }
}

/// Parse and hash a bare `info` dictionary, as received through BEP 9 metadata exchange.
pub fn parse_info_bytes(bytes: &[u8], limits: &Limits) -> Result<(InfoHashes, Info)> {
    let v = bencode::decode(bytes)?;
    parse_info(&v, limits)
}

fn parse_info(v: &Value<'_>, limits: &Limits) -> Result<(InfoHashes, Info)> {
    if v.raw().len() > limits.max_info_bytes {
        return Err(MetainfoError::InfoTooLarge {
            len: v.raw().len(),
            max: limits.max_info_bytes,
        });
    }
    let d = dict(v, "info")?;

    let name_raw = d
        .get(b"name.utf-8")
        .and_then(Value::as_bytes)
        .or(bytes_field(d, b"name", "info.name")?)
        .ok_or(MetainfoError::MissingField("info.name"))?;
    let name = path::sanitize_component(name_raw).ok_or(MetainfoError::Invalid {
        field: "info.name",
        reason: "empty or unusable as a file name".into(),
    })?;

    let piece_length = int_field(d, b"piece length", "info.piece length")?
        .ok_or(MetainfoError::MissingField("info.piece length"))?;
    if piece_length <= 0 {
        return Err(MetainfoError::Invalid {
            field: "info.piece length",
            reason: format!("must be positive, got {piece_length}"),
        });
    }
    let piece_length = piece_length as u64;
    if piece_length > limits.max_piece_length {
        return Err(MetainfoError::Invalid {
            field: "info.piece length",
            reason: format!(
                "{piece_length} is larger than the limit of {}",
                limits.max_piece_length
            ),
        });
    }

    let private = int_field(d, b"private", "info.private")? == Some(1);

    let meta_version = int_field(d, b"meta version", "info.meta version")?;
    let has_v2 = match meta_version {
        None => false,
        Some(2) => true,
        Some(n) => return Err(MetainfoError::UnsupportedVersion(n)),
    };
    let pieces_raw = bytes_field(d, b"pieces", "info.pieces")?;
    let has_v1 = pieces_raw.is_some() || !has_v2;

    let version = match (has_v1, has_v2) {
        (true, false) => Version::V1,
        (false, true) => Version::V2,
        _ => Version::Hybrid,
    };

    // v2 file tree, checked for every v2 or hybrid torrent.
    let v2_files = if has_v2 {
        if !piece_length.is_power_of_two() || piece_length < 16 * 1024 {
            return Err(MetainfoError::Invalid {
                field: "info.piece length",
                reason: format!("a v2 torrent needs a power of two >= 16 KiB, got {piece_length}"),
            });
        }
        let tree = d
            .get(b"file tree")
            .ok_or(MetainfoError::MissingField("info.file tree"))?;
        let mut files = Vec::new();
        let mut prefix = Vec::new();
        walk_file_tree(tree, &mut prefix, &mut files, limits)?;
        Some(files)
    } else {
        None
    };

    let (files, single_file) = if has_v1 {
        parse_v1_files(d, &name, limits)?
    } else {
        let mut files = v2_files.clone().unwrap_or_default();
        // In v2 each file starts on a piece boundary.
        let mut offset = 0u64;
        for f in &mut files {
            f.offset = offset;
            offset = offset
                .checked_add(f.length.div_ceil(piece_length) * piece_length)
                .ok_or_else(too_big)?;
        }
        // A v2 torrent with a single file at the root of the tree, named as the torrent, is
        // a single-file torrent (that is how libtorrent and qBittorrent store it).
        let single = files.len() == 1 && files[0].path.len() == 1 && files[0].path[0] == name;
        (files, single)
    };

    let total_length = files
        .iter()
        .try_fold(0u64, |acc, f| acc.checked_add(f.length))
        .ok_or_else(too_big)?;
    if total_length == 0 {
        return Err(MetainfoError::Empty);
    }
    if total_length > i64::MAX as u64 {
        return Err(too_big());
    }

    let mut pieces = Vec::new();
    if has_v1 {
        let raw = pieces_raw.ok_or(MetainfoError::MissingField("info.pieces"))?;
        if raw.len() % 20 != 0 {
            return Err(MetainfoError::PiecesNotMultipleOf20(raw.len()));
        }
        let expected = total_length.div_ceil(piece_length);
        let actual = (raw.len() / 20) as u64;
        if expected > limits.max_pieces {
            return Err(MetainfoError::TooManyPieces {
                count: expected,
                max: limits.max_pieces,
            });
        }
        if actual != expected {
            return Err(MetainfoError::PieceCountMismatch {
                expected,
                actual,
                total: total_length,
            });
        }
        pieces = raw
            .chunks_exact(20)
            .map(|c| {
                let mut h = [0u8; 20];
                h.copy_from_slice(c);
                h
            })
            .collect();
    } else {
        let count: u64 = files.iter().map(|f| f.length.div_ceil(piece_length)).sum();
        if count > limits.max_pieces {
            return Err(MetainfoError::TooManyPieces {
                count,
                max: limits.max_pieces,
            });
        }
    }

    check_unique_paths(&files)?;

    let info_hashes = InfoHashes::of_info(v.raw(), has_v1, has_v2)
        .expect("a torrent is at least v1 or v2 by construction");
    Ok((
        info_hashes,
        Info {
            name,
            piece_length,
            pieces,
            files,
            single_file,
            private,
            version,
            total_length,
        },
    ))
}

fn too_big() -> MetainfoError {
    MetainfoError::Invalid {
        field: "info.length",
        reason: "the total size does not fit in 63 bits".into(),
    }
}

/// v1 `length` (single file) or `files` (multi-file), with offsets in the v1 byte stream.
fn parse_v1_files(d: &Dict<'_>, name: &str, limits: &Limits) -> Result<(Vec<FileEntry>, bool)> {
    let length = int_field(d, b"length", "info.length")?;
    let list = d.get(b"files");
    match (length, list) {
        (Some(_), Some(_)) => Err(MetainfoError::Invalid {
            field: "info",
            reason: "has both `length` and `files`".into(),
        }),
        (None, None) => Err(MetainfoError::MissingField("info.length or info.files")),
        (Some(len), None) => {
            let length = non_negative(len, "info.length")?;
            let attr = d
                .get(b"attr")
                .and_then(Value::as_bytes)
                .map(FileAttr::parse)
                .unwrap_or_default();
            Ok((
                vec![FileEntry {
                    path: vec![name.to_string()],
                    length,
                    offset: 0,
                    attr,
                    pieces_root: None,
                }],
                true,
            ))
        }
        (None, Some(list)) => {
            let list = list.as_list().ok_or(MetainfoError::WrongType {
                field: "info.files",
                expected: "list",
                found: list.type_name(),
            })?;
            if list.len() > limits.max_files {
                return Err(MetainfoError::TooManyFiles(limits.max_files));
            }
            if list.is_empty() {
                return Err(MetainfoError::Empty);
            }
            let mut files = Vec::with_capacity(list.len());
            let mut offset = 0u64;
            for item in list {
                let fd = dict(item, "info.files[]")?;
                let length = non_negative(
                    int_field(fd, b"length", "info.files[].length")?
                        .ok_or(MetainfoError::MissingField("info.files[].length"))?,
                    "info.files[].length",
                )?;
                let path_value = fd
                    .get(b"path.utf-8")
                    .filter(|p| p.as_list().is_some())
                    .or(fd.get(b"path"))
                    .ok_or(MetainfoError::MissingField("info.files[].path"))?;
                let parts = path_value.as_list().ok_or(MetainfoError::WrongType {
                    field: "info.files[].path",
                    expected: "list",
                    found: path_value.type_name(),
                })?;
                let raw_parts = parts
                    .iter()
                    .map(|p| {
                        p.as_bytes().ok_or(MetainfoError::WrongType {
                            field: "info.files[].path[]",
                            expected: "string",
                            found: p.type_name(),
                        })
                    })
                    .collect::<Result<Vec<&[u8]>>>()?;
                let attr = fd
                    .get(b"attr")
                    .and_then(Value::as_bytes)
                    .map(FileAttr::parse)
                    .unwrap_or_default();
                let path = path::sanitize_path(raw_parts)?;
                files.push(FileEntry {
                    path,
                    length,
                    offset,
                    attr,
                    pieces_root: None,
                });
                offset = offset.checked_add(length).ok_or_else(too_big)?;
            }
            Ok((files, false))
        }
    }
}

/// BEP 52 `file tree`: nested dictionaries of path components, each file a dictionary under
/// the empty key holding `length` and `pieces root`.
fn walk_file_tree<'a>(
    node: &Value<'a>,
    prefix: &mut Vec<&'a [u8]>,
    out: &mut Vec<FileEntry>,
    limits: &Limits,
) -> Result<()> {
    let d = dict(node, "info.file tree")?;
    for (key, child) in d.iter() {
        if key.is_empty() {
            // A file: the path so far names it.
            let fd = dict(child, "info.file tree file")?;
            let length = non_negative(
                int_field(fd, b"length", "info.file tree length")?
                    .ok_or(MetainfoError::MissingField("info.file tree length"))?,
                "info.file tree length",
            )?;
            let pieces_root = match bytes_field(fd, b"pieces root", "info.file tree pieces root")? {
                Some(r) if r.len() == 32 => {
                    let mut root = [0u8; 32];
                    root.copy_from_slice(r);
                    Some(root)
                }
                Some(_) => {
                    return Err(MetainfoError::Invalid {
                        field: "info.file tree pieces root",
                        reason: "must be 32 bytes".into(),
                    });
                }
                None if length > 0 => {
                    return Err(MetainfoError::MissingField("info.file tree pieces root"));
                }
                None => None,
            };
            if out.len() >= limits.max_files {
                return Err(MetainfoError::TooManyFiles(limits.max_files));
            }
            let attr = fd
                .get(b"attr")
                .and_then(Value::as_bytes)
                .map(FileAttr::parse)
                .unwrap_or_default();
            out.push(FileEntry {
                path: path::sanitize_path(prefix.iter().copied())?,
                length,
                offset: 0,
                attr,
                pieces_root,
            });
        } else {
            if prefix.len() >= path::MAX_DEPTH {
                return Err(PathError::TooDeep(prefix.len() + 1).into());
            }
            prefix.push(key);
            walk_file_tree(child, prefix, out, limits)?;
            prefix.pop();
        }
    }
    Ok(())
}

/// Two files that land on the same path (or a file that is also a folder) would overwrite
/// each other. Pad files are never written, so they may repeat.
fn check_unique_paths(files: &[FileEntry]) -> Result<()> {
    let mut seen: HashSet<&[String]> = HashSet::with_capacity(files.len());
    for f in files.iter().filter(|f| !f.attr.pad) {
        if !seen.insert(&f.path) {
            return Err(MetainfoError::DuplicatePath(f.display_path()));
        }
    }
    for f in files.iter().filter(|f| !f.attr.pad) {
        for n in 1..f.path.len() {
            if seen.contains(&f.path[..n]) {
                return Err(MetainfoError::DuplicatePath(f.path[..n].join("/")));
            }
        }
    }
    Ok(())
}

fn parse_trackers(top: &Dict<'_>) -> Vec<Vec<String>> {
    const MAX_TIERS: usize = 100;
    const MAX_PER_TIER: usize = 100;
    let mut tiers: Vec<Vec<String>> = Vec::new();
    if let Some(list) = top.get(b"announce-list").and_then(Value::as_list) {
        for tier in list.iter().take(MAX_TIERS) {
            let urls: Vec<String> = tier
                .as_list()
                .unwrap_or_default()
                .iter()
                .filter_map(|u| u.as_str())
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .take(MAX_PER_TIER)
                .map(String::from)
                .collect();
            if !urls.is_empty() {
                tiers.push(urls);
            }
        }
    }
    // BEP 12: when announce-list is present, announce is ignored.
    if tiers.is_empty()
        && let Some(url) = top.get(b"announce").and_then(Value::as_str)
        && !url.trim().is_empty()
    {
        tiers.push(vec![url.trim().to_string()]);
    }
    tiers
}

fn parse_web_seeds(top: &Dict<'_>) -> Vec<String> {
    match top.get(b"url-list") {
        Some(v) if v.as_str().is_some() => v.as_str().into_iter().map(String::from).collect(),
        Some(v) => v
            .as_list()
            .unwrap_or_default()
            .iter()
            .filter_map(|u| u.as_str())
            .filter(|u| !u.is_empty())
            .take(100)
            .map(String::from)
            .collect(),
        None => Vec::new(),
    }
    .into_iter()
    .filter(|u| !u.is_empty())
    .collect()
}

fn text(d: &Dict<'_>, key: &[u8]) -> Option<String> {
    d.get(key)
        .and_then(Value::as_bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn dict<'v, 'a>(v: &'v Value<'a>, field: &'static str) -> Result<&'v Dict<'a>> {
    v.as_dict().ok_or(MetainfoError::WrongType {
        field,
        expected: "dictionary",
        found: v.type_name(),
    })
}

fn int_field(d: &Dict<'_>, key: &[u8], field: &'static str) -> Result<Option<i64>> {
    match d.get(key) {
        None => Ok(None),
        Some(v) => v.as_int().map(Some).ok_or(MetainfoError::WrongType {
            field,
            expected: "integer",
            found: v.type_name(),
        }),
    }
}

fn bytes_field<'a>(d: &Dict<'a>, key: &[u8], field: &'static str) -> Result<Option<&'a [u8]>> {
    match d.get(key) {
        None => Ok(None),
        Some(v) => v.as_bytes().map(Some).ok_or(MetainfoError::WrongType {
            field,
            expected: "string",
            found: v.type_name(),
        }),
    }
}

fn non_negative(n: i64, field: &'static str) -> Result<u64> {
    u64::try_from(n).map_err(|_| MetainfoError::Invalid {
        field,
        reason: format!("must not be negative, got {n}"),
    })
}
