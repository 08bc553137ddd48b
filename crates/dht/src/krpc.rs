//! KRPC, the DHT's message format (BEP 5): one bencoded dictionary per UDP datagram, a query
//! (`y=q`), a response (`y=r`) or an error (`y=e`), matched by the transaction id `t`.
//!
//! Also carried here: `v` (client version), `ip` (BEP 42: the address the sender saw us at)
//! and `ro` (BEP 43: the sender is read-only and must not be added to routing tables).
//!
//! Decoding is bounded before anything is kept: a datagram over [`MAX_DATAGRAM`] bytes is
//! refused, bencode is parsed with small [`Limits`], and at most [`MAX_NODES`] nodes and
//! [`MAX_VALUES`] peers of a response are kept (the rest is ignored, not an error, since real
//! nodes do send long lists).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bencode::{Dict, Encoder, Limits, Value};

use crate::id::NodeId;
use crate::item::Item;

/// Largest datagram we decode (an Ethernet MTU; real KRPC messages are far smaller).
pub const MAX_DATAGRAM: usize = 1500;
/// Most nodes kept from one `nodes` or `nodes6` field (8·k).
pub const MAX_NODES: usize = 64;
/// Most peers kept from one `values` field.
pub const MAX_VALUES: usize = 100;
/// Longest transaction id accepted (libtorrent sends 2 bytes, others up to 8).
pub const MAX_TID: usize = 32;
/// Longest token accepted in a response or an `announce_peer`.
pub const MAX_TOKEN: usize = 64;
/// Longest `v` (version) kept.
pub const MAX_VERSION: usize = 16;
/// Longest error message kept, in bytes.
pub const MAX_ERROR_MESSAGE: usize = 128;

/// KRPC error codes (BEP 5).
pub mod code {
    pub const GENERIC: i64 = 201;
    pub const SERVER: i64 = 202;
    pub const PROTOCOL: i64 = 203;
    pub const METHOD_UNKNOWN: i64 = 204;
}

fn limits() -> Limits {
    Limits {
        max_input: MAX_DATAGRAM,
        max_depth: 8,
        max_string: MAX_DATAGRAM,
        max_items: 1024,
    }
}

/// One KRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Transaction id, echoed by the response.
    pub tid: Vec<u8>,
    /// `v`: the sender's client and version, when it says.
    pub version: Option<Vec<u8>>,
    /// `ro=1` (BEP 43): the sender is read-only.
    pub read_only: bool,
    /// `ip` (BEP 42): our address as the sender sees it.
    pub ip: Option<SocketAddr>,
    /// `want` (BEP 32) in a query's arguments: which families of nodes the querier wants
    /// back (`n4`, `n6`). `None`: not given, so the family the query came over.
    pub want: Option<Want>,
    pub body: Body,
}

/// BEP 32 `want`: the node families asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    pub n4: bool,
    pub n6: bool,
}

impl Want {
    pub const BOTH: Want = Want { n4: true, n6: true };

    /// Read a `want` list; unknown entries are skipped, at most 8 are looked at.
    fn decode(v: &Value<'_>) -> Option<Want> {
        let mut w = Want::default();
        for item in v.as_list()?.iter().take(8) {
            match item.as_bytes() {
                Some(b"n4") => w.n4 = true,
                Some(b"n6") => w.n6 = true,
                _ => {}
            }
        }
        Some(w)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Query(Query),
    Response(Response),
    Error { code: i64, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Ping {
        id: NodeId,
    },
    FindNode {
        id: NodeId,
        target: NodeId,
    },
    GetPeers {
        id: NodeId,
        info_hash: NodeId,
    },
    AnnouncePeer {
        id: NodeId,
        info_hash: NodeId,
        /// The `port` argument (present even when `implied_port` is set, as BEP 5 asks).
        port: u16,
        /// Use the UDP source port of the query instead of `port`.
        implied_port: bool,
        token: Vec<u8>,
    },
    /// BEP 44 `get`: the item stored under `target` (only if newer than `seq`).
    Get {
        id: NodeId,
        target: NodeId,
        seq: Option<i64>,
    },
    /// BEP 44 `put`. The item is as received: not yet verified.
    Put {
        id: NodeId,
        token: Vec<u8>,
        item: Item,
        cas: Option<i64>,
    },
    /// A method we do not implement; answered with error 204.
    Unknown {
        id: NodeId,
        method: Vec<u8>,
    },
}

impl Query {
    /// The querying node's id.
    pub fn id(&self) -> NodeId {
        match self {
            Query::Ping { id }
            | Query::FindNode { id, .. }
            | Query::GetPeers { id, .. }
            | Query::AnnouncePeer { id, .. }
            | Query::Get { id, .. }
            | Query::Put { id, .. }
            | Query::Unknown { id, .. } => *id,
        }
    }

    pub fn method(&self) -> &[u8] {
        match self {
            Query::Ping { .. } => b"ping",
            Query::FindNode { .. } => b"find_node",
            Query::GetPeers { .. } => b"get_peers",
            Query::AnnouncePeer { .. } => b"announce_peer",
            Query::Get { .. } => b"get",
            Query::Put { .. } => b"put",
            Query::Unknown { method, .. } => method,
        }
    }
}

/// A response: every field any of our queries can get back. Which ones are present depends
/// on the query it answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub id: NodeId,
    /// IPv4 nodes (`nodes`, 26 bytes each).
    pub nodes: Vec<(NodeId, SocketAddr)>,
    /// IPv6 nodes (`nodes6`, 38 bytes each).
    pub nodes6: Vec<(NodeId, SocketAddr)>,
    /// Peers (`values`, 6 or 18 bytes each).
    pub values: Vec<SocketAddr>,
    pub token: Option<Vec<u8>>,
    /// BEP 44 `get` answers: the item's bencoded value, and for a mutable item its key,
    /// signature and `seq` (the value alone is left out when it is not newer than asked).
    pub v: Option<Vec<u8>>,
    pub k: Option<[u8; 32]>,
    pub sig: Option<[u8; 64]>,
    pub seq: Option<i64>,
}

/// Why a datagram is not a KRPC message we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("datagram of {0} bytes is larger than {MAX_DATAGRAM}")]
    TooLarge(usize),
    #[error("not bencode: {0}")]
    Bencode(#[from] bencode::Error),
    #[error("not a dictionary")]
    NotADict,
    #[error("missing or invalid `{0}`")]
    Field(&'static str),
    /// A query we can answer with error 203, since its transaction id is known.
    #[error("malformed query: missing or invalid `{what}`")]
    BadQuery { tid: Vec<u8>, what: &'static str },
}

/// Compact IPv4/IPv6 address and port (BEP 5 / BEP 32): 6 or 18 bytes.
pub fn decode_compact_addr(b: &[u8]) -> Option<SocketAddr> {
    match b.len() {
        6 => {
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([b[4], b[5]]),
            ))
        }
        18 => {
            let ip: [u8; 16] = b[..16].try_into().ok()?;
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(ip)),
                u16::from_be_bytes([b[16], b[17]]),
            ))
        }
        _ => None,
    }
}

pub fn encode_compact_addr(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Compact node infos: `id ‖ addr` repeated, `entry` bytes each. At most [`MAX_NODES`]
/// are kept; a length that is not a multiple of `entry` is an error.
fn decode_nodes(b: &[u8], entry: usize) -> Option<Vec<(NodeId, SocketAddr)>> {
    if !b.len().is_multiple_of(entry) {
        return None;
    }
    Some(
        b.chunks_exact(entry)
            .take(MAX_NODES)
            .filter_map(|c| {
                Some((
                    NodeId::from_slice(&c[..20])?,
                    decode_compact_addr(&c[20..])?,
                ))
            })
            .collect(),
    )
}

fn encode_nodes(nodes: &[(NodeId, SocketAddr)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * 38);
    for (id, addr) in nodes {
        out.extend_from_slice(&id.0);
        encode_compact_addr(addr, &mut out);
    }
    out
}

fn id_field(d: &Dict<'_>, key: &'static str) -> Result<NodeId, &'static str> {
    d.get(key.as_bytes())
        .and_then(Value::as_bytes)
        .and_then(NodeId::from_slice)
        .ok_or(key)
}

/// Decode one datagram.
pub fn decode(datagram: &[u8]) -> Result<Message, DecodeError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLarge(datagram.len()));
    }
    let value = bencode::decode_with(datagram, &limits())?;
    let top = value.as_dict().ok_or(DecodeError::NotADict)?;
    let tid = top
        .get(b"t")
        .and_then(Value::as_bytes)
        .filter(|t| t.len() <= MAX_TID)
        .ok_or(DecodeError::Field("t"))?
        .to_vec();
    let y = top
        .get(b"y")
        .and_then(Value::as_bytes)
        .ok_or(DecodeError::Field("y"))?;
    let version = top
        .get(b"v")
        .and_then(Value::as_bytes)
        .map(|v| v[..v.len().min(MAX_VERSION)].to_vec());
    let read_only = top.get(b"ro").and_then(Value::as_int) == Some(1);
    let ip = top
        .get(b"ip")
        .and_then(Value::as_bytes)
        .and_then(decode_compact_addr);
    let want = if y == b"q" {
        top.get(b"a")
            .and_then(Value::as_dict)
            .and_then(|a| a.get(b"want"))
            .and_then(Want::decode)
    } else {
        None
    };
    let body = match y {
        b"q" => Body::Query(decode_query(top).map_err(|what| DecodeError::BadQuery {
            tid: tid.clone(),
            what,
        })?),
        b"r" => Body::Response(decode_response(top).map_err(DecodeError::Field)?),
        b"e" => {
            let list = top
                .get(b"e")
                .and_then(Value::as_list)
                .ok_or(DecodeError::Field("e"))?;
            let code = list
                .first()
                .and_then(Value::as_int)
                .unwrap_or(code::GENERIC);
            let message = list
                .get(1)
                .and_then(Value::as_bytes)
                .map(|m| String::from_utf8_lossy(&m[..m.len().min(MAX_ERROR_MESSAGE)]).into_owned())
                .unwrap_or_default();
            Body::Error { code, message }
        }
        _ => return Err(DecodeError::Field("y")),
    };
    Ok(Message {
        tid,
        version,
        read_only,
        ip,
        want,
        body,
    })
}

fn token_field(args: &Dict<'_>) -> Result<Vec<u8>, &'static str> {
    Ok(args
        .get(b"token")
        .and_then(Value::as_bytes)
        .filter(|t| t.len() <= MAX_TOKEN)
        .ok_or("token")?
        .to_vec())
}

fn decode_query(top: &Dict<'_>) -> Result<Query, &'static str> {
    let method = top.get(b"q").and_then(Value::as_bytes).ok_or("q")?;
    let args = top.get(b"a").and_then(Value::as_dict).ok_or("a")?;
    let id = id_field(args, "id")?;
    Ok(match method {
        b"ping" => Query::Ping { id },
        b"find_node" => Query::FindNode {
            id,
            target: id_field(args, "target")?,
        },
        b"get_peers" => Query::GetPeers {
            id,
            info_hash: id_field(args, "info_hash")?,
        },
        b"announce_peer" => {
            let implied_port = args.get(b"implied_port").and_then(Value::as_int) == Some(1);
            let port = args.get(b"port").and_then(Value::as_int);
            let port = match (port, implied_port) {
                (Some(p), _) if (1..=65535).contains(&p) => p as u16,
                // With implied_port the port argument may be anything, or missing.
                (_, true) => 0,
                _ => return Err("port"),
            };
            let token = token_field(args)?;
            Query::AnnouncePeer {
                id,
                info_hash: id_field(args, "info_hash")?,
                port,
                implied_port,
                token,
            }
        }
        b"get" => Query::Get {
            id,
            target: id_field(args, "target")?,
            seq: args.get(b"seq").and_then(Value::as_int),
        },
        b"put" => {
            let token = token_field(args)?;
            let value = args.get(b"v").ok_or("v")?.raw().to_vec();
            let cas = args.get(b"cas").and_then(Value::as_int);
            let item = match args.get(b"k") {
                None => Item::Immutable { value },
                Some(k) => Item::Mutable {
                    key: k.as_bytes().and_then(|b| b.try_into().ok()).ok_or("k")?,
                    sig: args
                        .get(b"sig")
                        .and_then(Value::as_bytes)
                        .and_then(|b| b.try_into().ok())
                        .ok_or("sig")?,
                    seq: args.get(b"seq").and_then(Value::as_int).ok_or("seq")?,
                    salt: match args.get(b"salt") {
                        None => Vec::new(),
                        Some(s) => s.as_bytes().ok_or("salt")?.to_vec(),
                    },
                    value,
                },
            };
            Query::Put {
                id,
                token,
                item,
                cas,
            }
        }
        other => Query::Unknown {
            id,
            method: other[..other.len().min(32)].to_vec(),
        },
    })
}

fn decode_response(top: &Dict<'_>) -> Result<Response, &'static str> {
    let r = top.get(b"r").and_then(Value::as_dict).ok_or("r")?;
    let id = id_field(r, "id")?;
    let nodes = match r.get(b"nodes") {
        None => Vec::new(),
        Some(v) => v
            .as_bytes()
            .and_then(|b| decode_nodes(b, 26))
            .ok_or("nodes")?,
    };
    let nodes6 = match r.get(b"nodes6") {
        None => Vec::new(),
        Some(v) => v
            .as_bytes()
            .and_then(|b| decode_nodes(b, 38))
            .ok_or("nodes6")?,
    };
    let values = match r.get(b"values") {
        None => Vec::new(),
        Some(v) => v
            .as_list()
            .ok_or("values")?
            .iter()
            .filter_map(|p| p.as_bytes().and_then(decode_compact_addr))
            .take(MAX_VALUES)
            .collect(),
    };
    let token = match r.get(b"token") {
        None => None,
        Some(v) => Some(
            v.as_bytes()
                .filter(|t| t.len() <= MAX_TOKEN)
                .ok_or("token")?
                .to_vec(),
        ),
    };
    // BEP 44 fields: a value over the item bound, or a key or signature of the wrong size,
    // is left out (the responder may still have given useful nodes).
    let v = r
        .get(b"v")
        .map(|v| v.raw())
        .filter(|v| v.len() <= crate::item::MAX_VALUE)
        .map(<[u8]>::to_vec);
    let k = r
        .get(b"k")
        .and_then(Value::as_bytes)
        .and_then(|b| b.try_into().ok());
    let sig = r
        .get(b"sig")
        .and_then(Value::as_bytes)
        .and_then(|b| b.try_into().ok());
    let seq = r.get(b"seq").and_then(Value::as_int);
    Ok(Response {
        id,
        nodes,
        nodes6,
        values,
        token,
        v,
        k,
        sig,
        seq,
    })
}

impl Message {
    /// The canonical bencoding of this message.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::new();
        e.dict(|d| {
            d.bytes(b"t", &self.tid);
            if let Some(v) = &self.version {
                d.bytes(b"v", v);
            }
            if self.read_only {
                d.int(b"ro", 1);
            }
            if let Some(ip) = &self.ip {
                let mut b = Vec::new();
                encode_compact_addr(ip, &mut b);
                d.bytes(b"ip", &b);
            }
            match &self.body {
                Body::Query(q) => {
                    d.bytes(b"y", b"q");
                    d.bytes(b"q", q.method());
                    d.entry(b"a", |e| {
                        e.dict(|a| {
                            a.bytes(b"id", &q.id().0);
                            if let Some(w) = self.want {
                                a.entry(b"want", |e| {
                                    e.list(|l| {
                                        if w.n4 {
                                            l.bytes(b"n4");
                                        }
                                        if w.n6 {
                                            l.bytes(b"n6");
                                        }
                                    });
                                });
                            }
                            match q {
                                Query::Ping { .. } | Query::Unknown { .. } => {}
                                Query::FindNode { target, .. } => {
                                    a.bytes(b"target", &target.0);
                                }
                                Query::GetPeers { info_hash, .. } => {
                                    a.bytes(b"info_hash", &info_hash.0);
                                }
                                Query::AnnouncePeer {
                                    info_hash,
                                    port,
                                    implied_port,
                                    token,
                                    ..
                                } => {
                                    a.bytes(b"info_hash", &info_hash.0);
                                    a.int(b"port", i64::from(*port));
                                    a.int(b"implied_port", i64::from(*implied_port));
                                    a.bytes(b"token", token);
                                }
                                Query::Get { target, seq, .. } => {
                                    a.bytes(b"target", &target.0);
                                    if let Some(seq) = seq {
                                        a.int(b"seq", *seq);
                                    }
                                }
                                Query::Put {
                                    token, item, cas, ..
                                } => {
                                    a.bytes(b"token", token);
                                    a.raw(b"v", item.value());
                                    if let Some(cas) = cas {
                                        a.int(b"cas", *cas);
                                    }
                                    if let Item::Mutable {
                                        key,
                                        salt,
                                        seq,
                                        sig,
                                        ..
                                    } = item
                                    {
                                        a.bytes(b"k", key);
                                        a.bytes(b"sig", sig);
                                        a.int(b"seq", *seq);
                                        if !salt.is_empty() {
                                            a.bytes(b"salt", salt);
                                        }
                                    }
                                }
                            }
                        });
                    });
                }
                Body::Response(r) => {
                    d.bytes(b"y", b"r");
                    d.entry(b"r", |e| {
                        e.dict(|rd| {
                            rd.bytes(b"id", &r.id.0);
                            if !r.nodes.is_empty() {
                                rd.bytes(b"nodes", &encode_nodes(&r.nodes));
                            }
                            if !r.nodes6.is_empty() {
                                rd.bytes(b"nodes6", &encode_nodes(&r.nodes6));
                            }
                            if !r.values.is_empty() {
                                rd.entry(b"values", |e| {
                                    e.list(|l| {
                                        for p in &r.values {
                                            let mut b = Vec::with_capacity(18);
                                            encode_compact_addr(p, &mut b);
                                            l.bytes(&b);
                                        }
                                    });
                                });
                            }
                            if let Some(t) = &r.token {
                                rd.bytes(b"token", t);
                            }
                            if let Some(v) = &r.v {
                                rd.raw(b"v", v);
                            }
                            if let Some(k) = &r.k {
                                rd.bytes(b"k", k);
                            }
                            if let Some(sig) = &r.sig {
                                rd.bytes(b"sig", sig);
                            }
                            if let Some(seq) = r.seq {
                                rd.int(b"seq", seq);
                            }
                        });
                    });
                }
                Body::Error { code, message } => {
                    d.bytes(b"y", b"e");
                    d.entry(b"e", |e| {
                        e.list(|l| {
                            l.int(*code).bytes(message.as_bytes());
                        });
                    });
                }
            }
        });
        e.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_the_bep5_examples() {
        let m = decode(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe").unwrap();
        assert_eq!(m.tid, b"aa");
        assert_eq!(
            m.body,
            Body::Query(Query::Ping {
                id: NodeId(*b"abcdefghij0123456789")
            })
        );
        let m = decode(b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee").unwrap();
        assert_eq!(
            m.body,
            Body::Error {
                code: 201,
                message: "A Generic Error Ocurred".into()
            }
        );
        let m = decode(b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re").unwrap();
        let Body::Response(r) = m.body else { panic!() };
        assert_eq!(r.token.as_deref(), Some(&b"aoeusnth"[..]));
        assert_eq!(r.values.len(), 2);
        assert_eq!(r.values[0], "97.120.106.101:11893".parse().unwrap());
        let m = decode(b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe").unwrap();
        assert!(matches!(
            m.body,
            Body::Query(Query::AnnouncePeer {
                port: 6881,
                implied_port: false,
                ..
            })
        ));
    }

    #[test]
    fn implied_port_without_port_is_accepted() {
        let m = decode(b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234565:token2:xxe1:q13:announce_peer1:t2:aa1:y1:qe").unwrap();
        assert!(matches!(
            m.body,
            Body::Query(Query::AnnouncePeer {
                implied_port: true,
                ..
            })
        ));
    }

    #[test]
    fn malformed_queries_keep_their_tid() {
        let e =
            decode(b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:xy1:y1:qe").unwrap_err();
        assert_eq!(
            e,
            DecodeError::BadQuery {
                tid: b"xy".to_vec(),
                what: "target"
            }
        );
        let e = decode(b"d1:ad2:id3:abce1:q4:ping1:t2:xy1:y1:qe").unwrap_err();
        assert!(matches!(e, DecodeError::BadQuery { what: "id", .. }));
    }

    #[test]
    fn unknown_methods_decode_as_unknown() {
        let m = decode(b"d1:ad2:id20:abcdefghij0123456789e1:q8:vote_xyz1:t1:z1:y1:qe").unwrap();
        assert!(matches!(m.body, Body::Query(Query::Unknown { .. })));
    }

    #[test]
    fn bounds() {
        assert!(matches!(
            decode(&vec![b'd'; MAX_DATAGRAM + 1]),
            Err(DecodeError::TooLarge(_))
        ));
        // 55 nodes in one response (1430 bytes): only MAX_NODES are kept.
        let nodes: Vec<(NodeId, SocketAddr)> = (0..55u8)
            .map(|i| (NodeId([i; 20]), SocketAddr::from(([10, 0, 0, i], 1000))))
            .collect();
        let all = encode_nodes(&nodes);
        let enc = [
            format!("d1:rd2:id20:abcdefghij01234567895:nodes{}:", all.len()).as_bytes(),
            &all,
            b"e1:t1:t1:y1:re",
        ]
        .concat();
        assert!(enc.len() <= MAX_DATAGRAM);
        let Body::Response(r) = decode(&enc).unwrap().body else {
            panic!()
        };
        assert_eq!(r.nodes.len(), 55.min(MAX_NODES));
        // A nodes field of a wrong length is refused.
        assert!(decode(b"d1:rd2:id20:abcdefghij01234567895:nodes3:abce1:t2:aa1:y1:re").is_err());
        // Deep nesting is refused without recursion trouble.
        let deep = [vec![b'l'; 700], vec![b'e'; 700]].concat();
        assert!(decode(&deep).is_err());
    }

    fn arb_id() -> impl Strategy<Value = NodeId> {
        any::<[u8; 20]>().prop_map(NodeId)
    }

    fn arb_addr4() -> impl Strategy<Value = SocketAddr> {
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p)))
    }

    fn arb_addr6() -> impl Strategy<Value = SocketAddr> {
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p)))
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![arb_addr4(), arb_addr6()]
    }

    fn arb_query() -> impl Strategy<Value = Query> {
        prop_oneof![
            arb_id().prop_map(|id| Query::Ping { id }),
            (arb_id(), arb_id()).prop_map(|(id, target)| Query::FindNode { id, target }),
            (arb_id(), arb_id()).prop_map(|(id, info_hash)| Query::GetPeers { id, info_hash }),
            (
                arb_id(),
                arb_id(),
                1u16..,
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..MAX_TOKEN)
            )
                .prop_map(|(id, info_hash, port, implied_port, token)| {
                    Query::AnnouncePeer {
                        id,
                        info_hash,
                        port,
                        implied_port,
                        token,
                    }
                }),
            (arb_id(), arb_id(), proptest::option::of(any::<i64>()))
                .prop_map(|(id, target, seq)| Query::Get { id, target, seq }),
            (
                arb_id(),
                proptest::collection::vec(any::<u8>(), 0..MAX_TOKEN),
                arb_item(),
                proptest::option::of(any::<i64>()),
            )
                .prop_map(|(id, token, item, cas)| Query::Put {
                    id,
                    token,
                    item,
                    cas
                }),
            (arb_id(), "[a-z_]{1,20}").prop_filter_map("known method", |(id, m)| {
                let known = [
                    "ping",
                    "find_node",
                    "get_peers",
                    "announce_peer",
                    "get",
                    "put",
                ];
                (!known.contains(&m.as_str())).then(|| Query::Unknown {
                    id,
                    method: m.into_bytes(),
                })
            }),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            any::<i64>().prop_map(|i| format!("i{i}e").into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..200).prop_map(|b| [
                format!("{}:", b.len()).into_bytes(),
                b
            ]
            .concat()),
        ]
    }

    fn arb_item() -> impl Strategy<Value = Item> {
        prop_oneof![
            arb_value().prop_map(|value| Item::Immutable { value }),
            (
                any::<[u8; 32]>(),
                proptest::collection::vec(any::<u8>(), 0..64),
                any::<i64>(),
                arb_value(),
                any::<[u8; 32]>(),
            )
                .prop_map(|(key, salt, seq, value, half)| Item::Mutable {
                    key,
                    salt,
                    seq,
                    value,
                    sig: [half, half].concat().try_into().unwrap(),
                }),
        ]
    }

    fn arb_body() -> impl Strategy<Value = Body> {
        prop_oneof![
            arb_query().prop_map(Body::Query),
            (
                arb_id(),
                proptest::collection::vec((arb_id(), arb_addr4()), 0..8),
                proptest::collection::vec((arb_id(), arb_addr6()), 0..4),
                proptest::collection::vec(arb_addr(), 0..20),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                proptest::option::of(arb_item()),
            )
                .prop_map(|(id, nodes, nodes6, values, token, item)| {
                    let mut r = Response {
                        id,
                        nodes,
                        nodes6,
                        values,
                        token,
                        ..Default::default()
                    };
                    match item {
                        Some(Item::Immutable { value }) => r.v = Some(value),
                        Some(Item::Mutable {
                            key,
                            seq,
                            value,
                            sig,
                            ..
                        }) => {
                            r.v = Some(value);
                            r.k = Some(key);
                            r.sig = Some(sig);
                            r.seq = Some(seq);
                        }
                        None => {}
                    }
                    Body::Response(r)
                }),
            (201i64..=204, "[ -~]{0,40}").prop_map(|(code, message)| Body::Error { code, message }),
        ]
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        (
            proptest::collection::vec(any::<u8>(), 0..8),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..MAX_VERSION)),
            any::<bool>(),
            proptest::option::of(arb_addr()),
            proptest::option::of((any::<bool>(), any::<bool>())),
            arb_body(),
        )
            .prop_map(|(tid, version, read_only, ip, want, body)| Message {
                tid,
                version,
                read_only,
                ip,
                // `want` is an argument of queries only.
                want: want
                    .filter(|_| matches!(body, Body::Query(_)))
                    .map(|(n4, n6)| Want { n4, n6 }),
                body,
            })
    }

    proptest! {
        #[test]
        fn round_trip(m in arb_message()) {
            let enc = m.encode();
            prop_assert!(enc.len() <= MAX_DATAGRAM);
            prop_assert_eq!(decode(&enc).unwrap(), m);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(m in arb_message(), at in any::<usize>(), b in any::<u8>()) {
            let mut enc = m.encode();
            let i = at % enc.len();
            enc[i] = b;
            let _ = decode(&enc);
            enc.truncate(i);
            let _ = decode(&enc);
        }
    }
}
