//! The WebSocket tracker protocol's messages (one JSON text frame each), as npm
//! `bittorrent-tracker` and webtorrent speak it.
//!
//! `info_hash`, `peer_id`, `to_peer_id` and `offer_id` are 20 raw bytes written as a
//! "binary string": each byte is the character U+0000..U+00FF. A field of another length, or
//! with a character above U+00FF, is refused. Every string, array and frame is bounded before
//! it is used: a frame by [`MAX_MESSAGE`] (checked before parsing), an SDP by [`MAX_SDP`], the
//! offers of one announce by [`MAX_OFFERS`], a failure reason by [`MAX_REASON`].

use serde_json::{Map, Value, json};

/// Largest text frame decoded (bytes); the WebSocket layer is set to refuse larger ones.
pub const MAX_MESSAGE: usize = 256 * 1024;
/// Largest SDP (bytes) in an offer or an answer.
pub const MAX_SDP: usize = 16 * 1024;
/// Most offers decoded from one announce (webtorrent sends at most 5, libtorrent 10).
pub const MAX_OFFERS: usize = 20;
/// Longest failure or warning text kept (longer ones are cut at a character boundary).
pub const MAX_REASON: usize = 512;

/// A 20-byte id: an info-hash, a peer id or an offer id.
pub type Id20 = [u8; 20];

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
    #[error("not a JSON object")]
    NotJson,
    #[error("missing or invalid field `{0}`")]
    Field(&'static str),
    #[error("unknown action")]
    Action,
}

/// `started`, `completed`, `stopped` (or none: a regular announce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Started,
    Completed,
    Stopped,
}

impl Event {
    fn as_str(self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Completed => "completed",
            Event::Stopped => "stopped",
        }
    }
}

/// One offer in an announce, or relayed by the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub offer_id: Id20,
    pub sdp: String,
}

/// An announce from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub info_hash: Id20,
    pub peer_id: Id20,
    pub numwant: Option<u32>,
    pub uploaded: u64,
    pub downloaded: u64,
    /// Bytes left; `None` when unknown (a magnet without metadata).
    pub left: Option<u64>,
    pub event: Option<Event>,
    pub offers: Vec<Offer>,
}

/// An answer from a client to an offer it was relayed (`to_peer_id` is the offerer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub info_hash: Id20,
    pub peer_id: Id20,
    pub to_peer_id: Id20,
    pub offer_id: Id20,
    pub sdp: String,
}

/// What a client sends to a tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Announce(Announce),
    Answer(Answer),
}

/// An offer or an answer as the tracker relays it: from `peer_id`, about `offer_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub info_hash: Id20,
    pub peer_id: Id20,
    pub offer_id: Id20,
    pub sdp: String,
}

impl Relayed {
    /// Decodes the relayed fields, the SDP under `kind` ("offer" or "answer").
    fn decode(
        obj: &Map<String, Value>,
        info_hash: Id20,
        kind: &'static str,
    ) -> Result<Self, CodecError> {
        Ok(Relayed {
            info_hash,
            peer_id: id(obj, "peer_id")?,
            offer_id: id(obj, "offer_id")?,
            sdp: sdp(obj, kind, kind)?,
        })
    }

    fn encode(&self, kind: &'static str) -> Value {
        let mut v = json!({
            "action": "announce",
            "info_hash": binary_string(&self.info_hash),
            "peer_id": binary_string(&self.peer_id),
            "offer_id": binary_string(&self.offer_id),
        });
        v[kind] = json!({"type": kind, "sdp": self.sdp});
        v
    }
}

/// What a tracker sends to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// The reply to an announce.
    AnnounceReply {
        info_hash: Id20,
        /// Seconds until the next announce, when given.
        interval: Option<u32>,
        complete: u32,
        incomplete: u32,
    },
    /// An offer relayed from `peer_id`.
    Offer(Relayed),
    /// An answer from `peer_id` to our offer `offer_id`.
    Answer(Relayed),
    /// `failure reason` (with the info-hash it is about, when it says).
    Failure {
        info_hash: Option<Id20>,
        reason: String,
    },
    /// A message we have no use for (a scrape reply, a warning on its own).
    Other,
}

/// Bytes as a binary string: byte `b` is the character `b`.
pub fn binary_string(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// A binary string of exactly 20 characters, each at most U+00FF.
pub fn parse_id(s: &str) -> Option<Id20> {
    let mut out = [0u8; 20];
    let mut chars = s.chars();
    for b in out.iter_mut() {
        *b = u8::try_from(u32::from(chars.next()?)).ok()?;
    }
    chars.next().is_none().then_some(out)
}

fn id(obj: &Map<String, Value>, key: &'static str) -> Result<Id20, CodecError> {
    obj.get(key)
        .and_then(Value::as_str)
        .and_then(parse_id)
        .ok_or(CodecError::Field(key))
}

/// A non-negative integer; JSON numbers with a fraction or beyond u64 are refused.
fn count(obj: &Map<String, Value>, key: &'static str) -> Result<Option<u64>, CodecError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(CodecError::Field(key)),
    }
}

/// `{type, sdp}` with the expected type and a bounded SDP.
fn sdp(obj: &Map<String, Value>, key: &'static str, kind: &str) -> Result<String, CodecError> {
    let o = obj
        .get(key)
        .and_then(Value::as_object)
        .ok_or(CodecError::Field(key))?;
    if o.get("type").and_then(Value::as_str) != Some(kind) {
        return Err(CodecError::Field(key));
    }
    match o.get("sdp").and_then(Value::as_str) {
        Some(s) if s.len() <= MAX_SDP => Ok(s.to_owned()),
        _ => Err(CodecError::Field(key)),
    }
}

fn parse_object(text: &str) -> Result<Map<String, Value>, CodecError> {
    if text.len() > MAX_MESSAGE {
        return Err(CodecError::TooLarge);
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(CodecError::NotJson),
    }
}

fn cut(s: &str) -> String {
    let mut end = s.len().min(MAX_REASON);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

impl ClientMessage {
    /// Decodes a client's frame (what a tracker server receives).
    pub fn decode(text: &str) -> Result<Self, CodecError> {
        let obj = parse_object(text)?;
        if obj.get("action").and_then(Value::as_str) != Some("announce") {
            return Err(CodecError::Action);
        }
        let info_hash = id(&obj, "info_hash")?;
        let peer_id = id(&obj, "peer_id")?;
        if obj.contains_key("answer") {
            return Ok(ClientMessage::Answer(Answer {
                info_hash,
                peer_id,
                to_peer_id: id(&obj, "to_peer_id")?,
                offer_id: id(&obj, "offer_id")?,
                sdp: sdp(&obj, "answer", "answer")?,
            }));
        }
        let event = match obj.get("event") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match s.as_str() {
                "started" => Some(Event::Started),
                "completed" => Some(Event::Completed),
                "stopped" => Some(Event::Stopped),
                "" | "update" | "paused" => None,
                _ => return Err(CodecError::Field("event")),
            },
            Some(_) => return Err(CodecError::Field("event")),
        };
        let mut offers = Vec::new();
        match obj.get("offers") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                if list.len() > MAX_OFFERS {
                    return Err(CodecError::Field("offers"));
                }
                for item in list {
                    let o = item.as_object().ok_or(CodecError::Field("offers"))?;
                    offers.push(Offer {
                        offer_id: id(o, "offer_id")?,
                        sdp: sdp(o, "offer", "offer")?,
                    });
                }
            }
            Some(_) => return Err(CodecError::Field("offers")),
        }
        let numwant = count(&obj, "numwant")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        Ok(ClientMessage::Announce(Announce {
            info_hash,
            peer_id,
            numwant,
            uploaded: count(&obj, "uploaded")?.unwrap_or(0),
            downloaded: count(&obj, "downloaded")?.unwrap_or(0),
            left: count(&obj, "left")?,
            event,
            offers,
        }))
    }

    /// The JSON text frame.
    pub fn encode(&self) -> String {
        let v = match self {
            ClientMessage::Announce(a) => {
                let mut v = json!({
                    "action": "announce",
                    "info_hash": binary_string(&a.info_hash),
                    "peer_id": binary_string(&a.peer_id),
                    "uploaded": a.uploaded,
                    "downloaded": a.downloaded,
                    "left": a.left,
                    "offers": a.offers.iter().map(|o| json!({
                        "offer": {"type": "offer", "sdp": o.sdp},
                        "offer_id": binary_string(&o.offer_id),
                    })).collect::<Vec<_>>(),
                });
                if let Some(e) = a.event {
                    v["event"] = Value::from(e.as_str());
                }
                if let Some(n) = a.numwant {
                    v["numwant"] = Value::from(n);
                }
                v
            }
            ClientMessage::Answer(a) => json!({
                "action": "announce",
                "info_hash": binary_string(&a.info_hash),
                "peer_id": binary_string(&a.peer_id),
                "to_peer_id": binary_string(&a.to_peer_id),
                "offer_id": binary_string(&a.offer_id),
                "answer": {"type": "answer", "sdp": a.sdp},
            }),
        };
        v.to_string()
    }
}

impl ServerMessage {
    /// Decodes a tracker's frame (what a client receives).
    pub fn decode(text: &str) -> Result<Self, CodecError> {
        let obj = parse_object(text)?;
        let info_hash = obj.get("info_hash").and_then(Value::as_str);
        if let Some(reason) = obj.get("failure reason") {
            let reason = reason.as_str().ok_or(CodecError::Field("failure reason"))?;
            return Ok(ServerMessage::Failure {
                info_hash: info_hash.and_then(parse_id),
                reason: cut(reason),
            });
        }
        match obj.get("action").and_then(Value::as_str) {
            Some("announce") => {}
            Some("scrape") => return Ok(ServerMessage::Other),
            _ => return Err(CodecError::Action),
        }
        let info_hash = id(&obj, "info_hash")?;
        if obj.contains_key("offer") {
            return Ok(ServerMessage::Offer(Relayed::decode(
                &obj, info_hash, "offer",
            )?));
        }
        if obj.contains_key("answer") {
            return Ok(ServerMessage::Answer(Relayed::decode(
                &obj, info_hash, "answer",
            )?));
        }
        let small = |key| -> Result<u32, CodecError> {
            Ok(count(&obj, key)?.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
        };
        let interval = count(&obj, "interval")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
        Ok(ServerMessage::AnnounceReply {
            info_hash,
            interval,
            complete: small("complete")?,
            incomplete: small("incomplete")?,
        })
    }

    /// The JSON text frame.
    pub fn encode(&self) -> String {
        let v = match self {
            ServerMessage::AnnounceReply {
                info_hash,
                interval,
                complete,
                incomplete,
            } => {
                let mut v = json!({
                    "action": "announce",
                    "info_hash": binary_string(info_hash),
                    "complete": complete,
                    "incomplete": incomplete,
                });
                if let Some(i) = interval {
                    v["interval"] = Value::from(*i);
                }
                v
            }
            ServerMessage::Offer(r) => r.encode("offer"),
            ServerMessage::Answer(r) => r.encode("answer"),
            ServerMessage::Failure { info_hash, reason } => {
                let mut v = json!({ "failure reason": reason });
                if let Some(h) = info_hash {
                    v["action"] = Value::from("announce");
                    v["info_hash"] = Value::from(binary_string(h));
                }
                v
            }
            ServerMessage::Other => json!({}),
        };
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn binary_strings_round_trip_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        let s = binary_string(&bytes);
        assert_eq!(s.chars().count(), 256);
        let json = serde_json::to_string(&s).unwrap();
        let back: String = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(parse_id(&binary_string(&[0xff; 20])), Some([0xff; 20]));
    }

    #[test]
    fn ids_of_wrong_length_or_wide_chars_are_refused() {
        assert_eq!(parse_id(&"a".repeat(19)), None);
        assert_eq!(parse_id(&"a".repeat(21)), None);
        // 20 characters, one above U+00FF (and 21 UTF-8 bytes of which a naive reader
        // would take 20).
        let wide = format!("{}\u{0100}", "a".repeat(19));
        assert_eq!(wide.chars().count(), 20);
        assert_eq!(parse_id(&wide), None);
        // Hex is not a binary string.
        assert_eq!(parse_id(&"00".repeat(20)), None);
    }

    #[test]
    fn decodes_what_webtorrent_sends() {
        // As bittorrent-tracker's websocket client writes an announce (JSON.stringify of
        // binary strings: control characters escaped, others as UTF-8).
        let ih = binary_string(&[0x00, 0x1f, 0x7f, 0x80, 0xff].repeat(4));
        let text = format!(
            r#"{{"action":"announce","info_hash":{ih},"peer_id":"-WW0300-abcdefghijkl","numwant":5,"uploaded":0,"downloaded":10,"left":null,"event":"started","offers":[{{"offer":{{"type":"offer","sdp":"v=0\r\n"}},"offer_id":"ABCDEFGHIJKLMNOPQRST"}}]}}"#,
            ih = serde_json::to_string(&ih).unwrap()
        );
        let ClientMessage::Announce(a) = ClientMessage::decode(&text).unwrap() else {
            panic!("not an announce")
        };
        assert_eq!(a.info_hash[..5], [0x00, 0x1f, 0x7f, 0x80, 0xff]);
        assert_eq!(&a.peer_id, b"-WW0300-abcdefghijkl");
        assert_eq!(a.left, None);
        assert_eq!(a.event, Some(Event::Started));
        assert_eq!(a.offers.len(), 1);
        assert_eq!(&a.offers[0].offer_id, b"ABCDEFGHIJKLMNOPQRST");
        assert_eq!(a.offers[0].sdp, "v=0\r\n");
    }

    #[test]
    fn refuses_bad_fields() {
        let ok = ClientMessage::Answer(Answer {
            info_hash: [1; 20],
            peer_id: [2; 20],
            to_peer_id: [3; 20],
            offer_id: [4; 20],
            sdp: "v=0".into(),
        })
        .encode();
        assert!(ClientMessage::decode(&ok).is_ok());
        let mut v: Value = serde_json::from_str(&ok).unwrap();
        v["answer"]["sdp"] = Value::from("x".repeat(MAX_SDP + 1));
        assert_eq!(
            ClientMessage::decode(&v.to_string()),
            Err(CodecError::Field("answer"))
        );
        let mut v: Value = serde_json::from_str(&ok).unwrap();
        v["answer"]["type"] = Value::from("offer");
        assert!(ClientMessage::decode(&v.to_string()).is_err());
        let mut v: Value = serde_json::from_str(&ok).unwrap();
        v["to_peer_id"] = Value::from("short");
        assert_eq!(
            ClientMessage::decode(&v.to_string()),
            Err(CodecError::Field("to_peer_id"))
        );
        assert_eq!(
            ClientMessage::decode(&" ".repeat(MAX_MESSAGE + 1)),
            Err(CodecError::TooLarge)
        );
        assert_eq!(ClientMessage::decode("[1]"), Err(CodecError::NotJson));
        let many = Announce {
            info_hash: [1; 20],
            peer_id: [2; 20],
            numwant: None,
            uploaded: 0,
            downloaded: 0,
            left: Some(1),
            event: None,
            offers: vec![
                Offer {
                    offer_id: [0; 20],
                    sdp: String::new()
                };
                MAX_OFFERS + 1
            ],
        };
        assert_eq!(
            ClientMessage::decode(&ClientMessage::Announce(many).encode()),
            Err(CodecError::Field("offers"))
        );
        let mut v: Value = serde_json::from_str(&ok).unwrap();
        v["info_hash"] = Value::from(1);
        assert!(ClientMessage::decode(&v.to_string()).is_err());
    }

    fn id20() -> impl Strategy<Value = Id20> {
        any::<[u8; 20]>()
    }

    proptest! {
        #[test]
        fn client_messages_round_trip(
            ih in id20(), pid in id20(), oid in id20(), sdp in ".{0,200}",
            left in proptest::option::of(any::<u64>()), up in any::<u64>(), n in 0usize..4,
        ) {
            let a = ClientMessage::Announce(Announce {
                info_hash: ih, peer_id: pid, numwant: Some(n as u32), uploaded: up,
                downloaded: up / 2, left, event: Some(Event::Completed),
                offers: vec![Offer { offer_id: oid, sdp: sdp.clone() }; n],
            });
            prop_assert_eq!(ClientMessage::decode(&a.encode()).unwrap(), a);
            let b = ClientMessage::Answer(Answer {
                info_hash: ih, peer_id: pid, to_peer_id: oid, offer_id: oid, sdp,
            });
            prop_assert_eq!(ClientMessage::decode(&b.encode()).unwrap(), b);
        }

        #[test]
        fn server_messages_round_trip(ih in id20(), pid in id20(), oid in id20(), sdp in ".{0,200}",
                                      c in any::<u32>(), i in proptest::option::of(any::<u32>())) {
            let r = Relayed { info_hash: ih, peer_id: pid, offer_id: oid, sdp };
            for m in [
                ServerMessage::AnnounceReply { info_hash: ih, interval: i, complete: c, incomplete: c / 3 },
                ServerMessage::Offer(r.clone()),
                ServerMessage::Answer(r.clone()),
                ServerMessage::Failure { info_hash: Some(ih), reason: "no".into() },
                ServerMessage::Failure { info_hash: None, reason: "no".into() },
            ] {
                prop_assert_eq!(ServerMessage::decode(&m.encode()).unwrap(), m);
            }
        }

        #[test]
        fn decoding_anything_does_not_panic(s in ".{0,400}") {
            let _ = ClientMessage::decode(&s);
            let _ = ServerMessage::decode(&s);
        }
    }
}
