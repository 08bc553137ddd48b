//! The rules of an IPFS Trustless Gateway (<https://specs.ipfs.tech/http-gateways/trustless-gateway/>),
//! sans-IO: a request line, query and `Accept` header in, a [`GatewayRequest`] (or the
//! error status to answer) out, and the response headers for it. The HTTP shell resolves
//! the request against a block store and streams the body.
//!
//! - `GET|HEAD /ipfs/{cid}?format=raw` (or `Accept: application/vnd.ipld.raw`): one block;
//! - `GET|HEAD /ipfs/{cid}[/path]?format=car` (or `Accept: application/vnd.ipld.car`): a
//!   CAR v1 stream, `order=dfs`, `dups=n`, rooted at `{cid}`, holding the blocks that prove
//!   the path and then the target within `dag-scope` (`all`, `entity`, `block`) and, for a
//!   file with `dag-scope=entity`, `entity-bytes=from:to`;
//! - `format=` wins over `Accept`; anything else (a plain request for a web page, CAR
//!   version 2) gets 406 or 400, since a trustless gateway serves only verifiable data.

use crate::Cid;
use crate::dag::Scope;

/// The probe CID clients use to check a gateway is up: an identity CID of no bytes.
pub const PROBE_CID: &str = "bafkqaaa";
const MAX_PATH: usize = 4096;

pub const RAW_TYPE: &str = "application/vnd.ipld.raw";
pub const CAR_TYPE: &str = "application/vnd.ipld.car; version=1; order=dfs; dups=n";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Raw,
    Car,
}

/// A byte range of `entity-bytes`: `from` and inclusive `to`, negative counting from the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntityBytes {
    pub from: i64,
    pub to: Option<i64>,
}

impl EntityBytes {
    /// `[start, end)` within a file of `size` bytes (empty when the range misses it).
    pub fn resolve(self, size: u64) -> (u64, u64) {
        let at = |v: i64| {
            if v < 0 {
                size.saturating_sub(v.unsigned_abs())
            } else {
                (v as u64).min(size)
            }
        };
        let start = at(self.from);
        let end = match self.to {
            None => size,
            Some(t) if t < 0 => at(t).saturating_add(1).min(size),
            Some(t) => (t as u64).saturating_add(1).min(size),
        };
        (start, end.max(start))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayRequest {
    pub head: bool,
    pub root: Cid,
    /// Path segments inside the root folder, percent-decoded.
    pub path: Vec<String>,
    pub format: Format,
    pub scope: Scope,
    pub entity_bytes: Option<EntityBytes>,
}

/// An answer that is an error: the status and a one-line reason for the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

fn percent_decode(s: &str) -> Result<String, Refusal> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: Option<&u8>| c.and_then(|&c| (c as char).to_digit(16));
            match (hex(b.get(i + 1)), hex(b.get(i + 2))) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err(refuse(400, "bad percent-encoding")),
            }
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| refuse(400, "path is not UTF-8"))
}

fn parse_entity_bytes(v: &str) -> Result<EntityBytes, Refusal> {
    let bad = || refuse(400, format!("invalid entity-bytes {v:?} (from:to)"));
    let (from, to) = v.split_once(':').ok_or_else(bad)?;
    let from = from.parse::<i64>().map_err(|_| bad())?;
    let to = match to {
        "*" => None,
        t => Some(t.parse::<i64>().map_err(|_| bad())?),
    };
    if let Some(t) = to
        && from >= 0
        && t >= 0
        && t < from
    {
        return Err(bad());
    }
    Ok(EntityBytes { from, to })
}

/// What an `Accept` header asks for, if it names a format we serve.
fn accepted(accept: &str) -> Result<Option<Format>, Refusal> {
    for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<(String, String)> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_owned(),
                )
            })
            .collect();
        match media.as_str() {
            RAW_TYPE => return Ok(Some(Format::Raw)),
            "application/vnd.ipld.car" => {
                for (k, v) in &params {
                    match (k.as_str(), v.as_str()) {
                        ("version", "1") | ("order", "dfs" | "unk") | ("dups", "n" | "y") => {}
                        ("version", _) => {
                            return Err(refuse(
                                400,
                                format!("CAR version {v} is not served (only 1)"),
                            ));
                        }
                        _ => {}
                    }
                }
                return Ok(Some(Format::Car));
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Parses a request. `target` is the request target (path and query).
pub fn parse_request(
    method: &str,
    target: &str,
    accept: Option<&str>,
) -> Result<GatewayRequest, Refusal> {
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(refuse(405, "only GET and HEAD")),
    };
    if target.len() > MAX_PATH {
        return Err(refuse(414, "request target too long"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let rest = path
        .strip_prefix("/ipfs/")
        .ok_or_else(|| refuse(404, "only /ipfs/{cid} is served"))?;
    let mut segments = rest.split('/');
    let cid_text = segments.next().unwrap_or("");
    let root =
        crate::parse_cid(&percent_decode(cid_text)?).map_err(|e| refuse(400, e.to_string()))?;
    let mut path = Vec::new();
    for s in segments.filter(|s| !s.is_empty()) {
        let s = percent_decode(s)?;
        crate::dag::safe_name(&s).map_err(|e| refuse(400, e.to_string()))?;
        path.push(s);
    }
    let mut format = None;
    let mut scope = Scope::All;
    let mut entity_bytes = None;
    for pair in query.split('&').filter(|p| !p.is_empty()).take(64) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v)?;
        match k {
            "format" => {
                format = Some(match v.as_str() {
                    "raw" => Format::Raw,
                    "car" => Format::Car,
                    other => {
                        return Err(refuse(
                            400,
                            format!("format={other} is not served (raw, car)"),
                        ));
                    }
                })
            }
            "dag-scope" => {
                scope = match v.as_str() {
                    "all" => Scope::All,
                    "entity" => Scope::Entity,
                    "block" => Scope::Block,
                    other => return Err(refuse(400, format!("invalid dag-scope {other:?}"))),
                }
            }
            "entity-bytes" => entity_bytes = Some(parse_entity_bytes(&v)?),
            "car-version" if v != "1" => return Err(refuse(400, "only CAR version 1")),
            "car-order" if v != "dfs" && v != "unk" => return Err(refuse(400, "only order=dfs")),
            _ => {}
        }
    }
    let format = match format {
        Some(f) => f,
        None => accepted(accept.unwrap_or(""))?.ok_or_else(|| {
            refuse(
                406,
                "a trustless gateway: ask for format=raw or format=car (or Accept: application/vnd.ipld.raw / application/vnd.ipld.car)",
            )
        })?,
    };
    if format == Format::Raw && !path.is_empty() {
        return Err(refuse(
            400,
            "format=raw takes a CID without a path; use format=car",
        ));
    }
    Ok(GatewayRequest {
        head,
        root,
        path,
        format,
        scope,
        entity_bytes,
    })
}

impl GatewayRequest {
    /// Headers of a successful answer (`Content-Length` is the shell's, for raw blocks).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut ipfs_path = format!("/ipfs/{}", self.root);
        for p in &self.path {
            ipfs_path.push('/');
            ipfs_path.push_str(p);
        }
        let (ctype, ext) = match self.format {
            Format::Raw => (RAW_TYPE, "bin"),
            Format::Car => (CAR_TYPE, "car"),
        };
        let etag = match self.format {
            Format::Raw => format!("\"{}.raw\"", self.root),
            Format::Car => {
                use sha2::{Digest, Sha256};
                let key = format!("{ipfs_path}|{:?}|{:?}", self.scope, self.entity_bytes);
                let h = Sha256::digest(key.as_bytes());
                let hex: String = h[..8].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{}.car.{hex}\"", self.root)
            }
        };
        vec![
            ("content-type", ctype.to_owned()),
            ("etag", etag),
            (
                "cache-control",
                "public, max-age=29030400, immutable".to_owned(),
            ),
            (
                "content-disposition",
                format!("attachment; filename=\"{}.{ext}\"", self.root),
            ),
            ("x-content-type-options", "nosniff".to_owned()),
            ("x-ipfs-path", ipfs_path),
            ("vary", "Accept".to_owned()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_beats_accept_and_plain_requests_are_refused() {
        let r = parse_request("GET", "/ipfs/bafkqaaa?format=car", Some(RAW_TYPE)).unwrap();
        assert_eq!(r.format, Format::Car);
        let r = parse_request(
            "HEAD",
            "/ipfs/bafkqaaa",
            Some("application/vnd.ipld.car; version=1"),
        )
        .unwrap();
        assert_eq!((r.format, r.head), (Format::Car, true));
        assert_eq!(
            parse_request("GET", "/ipfs/bafkqaaa", Some("text/html"))
                .unwrap_err()
                .status,
            406
        );
        assert_eq!(
            parse_request("POST", "/ipfs/bafkqaaa", None)
                .unwrap_err()
                .status,
            405
        );
        assert_eq!(
            parse_request("GET", "/ipfs/nope?format=raw", None)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            parse_request(
                "GET",
                "/ipfs/bafkqaaa?format=car",
                Some("application/vnd.ipld.car; version=2")
            )
            .unwrap()
            .format,
            Format::Car
        );
        assert_eq!(
            parse_request(
                "GET",
                "/ipfs/bafkqaaa",
                Some("application/vnd.ipld.car; version=2")
            )
            .unwrap_err()
            .status,
            400
        );
        assert_eq!(
            parse_request("GET", "/ipfs/bafkqaaa/%2e%2e?format=car", None)
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn paths_scopes_and_ranges() {
        let r = parse_request(
            "GET",
            "/ipfs/bafkqaaa/a%20b/c?format=car&dag-scope=entity&entity-bytes=10:-1",
            None,
        )
        .unwrap();
        assert_eq!(r.path, vec!["a b".to_owned(), "c".to_owned()]);
        assert_eq!(r.scope, Scope::Entity);
        let eb = r.entity_bytes.unwrap();
        assert_eq!(eb.resolve(100), (10, 100));
        assert_eq!(
            EntityBytes {
                from: -10,
                to: None
            }
            .resolve(100),
            (90, 100)
        );
        assert_eq!(
            EntityBytes {
                from: 0,
                to: Some(9)
            }
            .resolve(100),
            (0, 10)
        );
        assert_eq!(
            EntityBytes {
                from: 200,
                to: None
            }
            .resolve(100),
            (100, 100)
        );
        assert!(parse_request("GET", "/ipfs/bafkqaaa?format=car&entity-bytes=5:2", None).is_err());
        assert!(parse_request("GET", "/ipfs/bafkqaaa/x?format=raw", None).is_err());
    }
}
