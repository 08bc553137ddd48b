//! Decoders of what HTTP clients send to the daemon's qBittorrent and Transmission APIs:
//! `application/x-www-form-urlencoded` bodies and query strings, `multipart/form-data`
//! bodies, and Transmission's JSON requests. No I/O and no async runtime: each takes the
//! whole (already size-bounded) input and bounds what it produces, so the fuzz targets in
//! `fuzz/` drive exactly the code the daemon runs.

use bytes::Bytes;
use serde_json::Value;
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Why a body or query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    #[error("too many parameters")]
    TooManyParams,
    #[error("too many files")]
    TooManyFiles,
    #[error("bad form encoding")]
    BadEncoding,
    #[error("a field is not UTF-8")]
    NotUtf8,
    #[error("bad multipart body")]
    BadMultipart,
}

/// Bounds on what one request may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Name/value pairs, all sources together.
    pub max_params: usize,
    /// Uploaded files (multipart parts with a file name, or named `torrents`).
    pub max_files: usize,
}

/// The parameters of one call: name/value pairs in order, and uploaded files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields {
    pub pairs: Vec<(String, String)>,
    pub files: Vec<Vec<u8>>,
}

/// `%XX` and `+` decoded; `None` for a bad escape or bytes that are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A boolean in any case (`true`/`1`/`yes`/`on`, `false`/`0`/`no`/`off`/empty).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// `a=1&b=%20x&c` into `out` (a name without `=` has an empty value); at most
/// `max_params` pairs in `out` in all.
pub fn parse_form(
    s: &str,
    out: &mut Vec<(String, String)>,
    max_params: usize,
) -> Result<(), FormError> {
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        if out.len() >= max_params {
            return Err(FormError::TooManyParams);
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (percent_decode(k), percent_decode(v)) {
            (Some(k), Some(v)) => out.push((k, v)),
            _ => return Err(FormError::BadEncoding),
        }
    }
    Ok(())
}

/// A `multipart/form-data` body (`content_type` carries the boundary) into `out`: parts
/// named `torrents`, or with a file name (but not named `urls`), are files; the others
/// are UTF-8 pairs.
pub fn parse_multipart(
    body: Bytes,
    content_type: &str,
    limits: Limits,
    out: &mut Fields,
) -> Result<(), FormError> {
    let boundary = multer::parse_boundary(content_type).map_err(|_| FormError::BadMultipart)?;
    let stream = futures_util::stream::iter([Ok::<Bytes, std::convert::Infallible>(body)]);
    let mut form = multer::Multipart::new(stream, boundary);
    // Everything is in memory: every future below is ready when first polled.
    loop {
        let field = match ready(form.next_field()) {
            Some(Ok(Some(f))) => f,
            Some(Ok(None)) => return Ok(()),
            _ => return Err(FormError::BadMultipart),
        };
        let name = field.name().unwrap_or("").to_string();
        let is_file = field.file_name().is_some();
        let data = match ready(field.bytes()) {
            Some(Ok(d)) => d,
            _ => return Err(FormError::BadMultipart),
        };
        if name == "torrents" || (is_file && name != "urls") {
            if out.files.len() >= limits.max_files {
                return Err(FormError::TooManyFiles);
            }
            out.files.push(data.to_vec());
        } else {
            if out.pairs.len() >= limits.max_params {
                return Err(FormError::TooManyParams);
            }
            let v = String::from_utf8(data.to_vec()).map_err(|_| FormError::NotUtf8)?;
            out.pairs.push((name, v));
        }
    }
}

/// The output of a future that needs nothing from outside (its input is all in memory);
/// `None` if it still waits after a bounded number of polls.
fn ready<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..64 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}

/// A Transmission RPC request: `{"method": ..., "arguments": {...}, "tag": ...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcRequest {
    /// Empty when absent or not a string.
    pub method: String,
    /// `{}` when absent.
    pub arguments: Value,
    pub tag: Option<Value>,
}

/// Decode a request body; `None` when it is not a JSON object.
pub fn parse_rpc(body: &[u8]) -> Option<RpcRequest> {
    let Value::Object(mut m) = serde_json::from_slice::<Value>(body).ok()? else {
        return None;
    };
    let method = match m.remove("method") {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let arguments = match m.remove("arguments") {
        Some(v @ Value::Object(_)) => v,
        _ => Value::Object(Default::default()),
    };
    Some(RpcRequest {
        method,
        arguments,
        tag: m.remove("tag"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_params: 8,
        max_files: 2,
    };

    #[test]
    fn booleans_in_any_case() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn forms_decode_and_are_bounded() {
        let mut v = Vec::new();
        parse_form("hashes=a%7Cb&deleteFiles=true&x&p=a+b", &mut v, 256).unwrap();
        assert_eq!(v[0], ("hashes".into(), "a|b".into()));
        assert_eq!(v[2], ("x".into(), "".into()));
        assert_eq!(v[3], ("p".into(), "a b".into()));
        let long = "a=1&".repeat(9);
        assert_eq!(
            parse_form(&long, &mut Vec::new(), 8),
            Err(FormError::TooManyParams)
        );
        for bad in ["a=%zz", "a=%", "a=%+1", "%ff=1"] {
            assert_eq!(
                parse_form(bad, &mut Vec::new(), 8),
                Err(FormError::BadEncoding),
                "{bad}"
            );
        }
    }

    fn part(name: &str, file: Option<&str>, body: &str) -> String {
        let fname = file
            .map(|f| format!("; filename=\"{f}\""))
            .unwrap_or_default();
        format!("--XB\r\nContent-Disposition: form-data; name=\"{name}\"{fname}\r\n\r\n{body}\r\n")
    }

    #[test]
    fn multipart_splits_files_and_fields() {
        let body = format!(
            "{}{}{}--XB--\r\n",
            part("torrents", Some("a.torrent"), "d4:infoe"),
            part("category", None, "tv"),
            part("urls", Some("u.txt"), "magnet:?x")
        );
        let mut f = Fields::default();
        parse_multipart(
            Bytes::from(body),
            "multipart/form-data; boundary=XB",
            LIMITS,
            &mut f,
        )
        .unwrap();
        assert_eq!(f.files, vec![b"d4:infoe".to_vec()]);
        assert_eq!(
            f.pairs,
            vec![
                ("category".into(), "tv".into()),
                ("urls".into(), "magnet:?x".into())
            ]
        );
    }

    #[test]
    fn bad_multipart_is_refused() {
        let ct = "multipart/form-data; boundary=XB";
        for body in ["--XB\r\nnot a part", "garbage", ""] {
            let mut f = Fields::default();
            assert!(
                parse_multipart(Bytes::from(body), ct, LIMITS, &mut f).is_err(),
                "{body:?}"
            );
        }
        let mut f = Fields::default();
        let body = format!("{}--XB--\r\n", part("x", None, "ok"));
        assert_eq!(
            parse_multipart(Bytes::from(body), "text/plain", LIMITS, &mut f),
            Err(FormError::BadMultipart)
        );
        let three = format!(
            "{}{}{}--XB--\r\n",
            part("torrents", None, "1"),
            part("torrents", None, "2"),
            part("torrents", None, "3")
        );
        assert_eq!(
            parse_multipart(Bytes::from(three), ct, LIMITS, &mut Fields::default()),
            Err(FormError::TooManyFiles)
        );
        let bad_utf8 =
            b"--XB\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\xff\r\n--XB--\r\n";
        assert_eq!(
            parse_multipart(
                Bytes::from_static(bad_utf8),
                ct,
                LIMITS,
                &mut Fields::default()
            ),
            Err(FormError::NotUtf8)
        );
    }

    #[test]
    fn rpc_requests_decode_leniently() {
        let r = parse_rpc(br#"{"method":"torrent-get","arguments":{"ids":[1]},"tag":7}"#).unwrap();
        assert_eq!(r.method, "torrent-get");
        assert_eq!(r.arguments["ids"][0], 1);
        assert_eq!(r.tag, Some(Value::from(7)));
        let r = parse_rpc(br#"{"method":3,"arguments":[]}"#).unwrap();
        assert_eq!(r.method, "");
        assert!(r.arguments.as_object().unwrap().is_empty());
        assert!(parse_rpc(b"[1]").is_none());
        assert!(parse_rpc(b"{").is_none());
    }
}
