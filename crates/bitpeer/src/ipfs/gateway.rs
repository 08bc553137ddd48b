//! The HTTP shell of `bitpeer ipfs serve`: a Trustless Gateway over hyper. The rules (what
//! a request asks for, which headers answer it) are in `ipfs::gateway`; this module only
//! reads blocks from the store on the blocking pool and streams them out.
//!
//! Bounded: at most 256 connections, 10 s to send request headers, 16 KiB of headers, and a
//! CAR body is streamed through a channel of a few 256 KiB chunks, never built in memory.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use ipfs::gateway::{self, Format, GatewayRequest};
use ipfs::{BlockStore, Cid, Error, car, dag};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

const MAX_CONNECTIONS: usize = 256;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 16 * 1024;
const CHUNK: usize = 256 * 1024;

pub type ResBody = BoxBody<Bytes, std::io::Error>;

/// A body fed by a blocking task through a bounded channel.
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

fn full(bytes: impl Into<Bytes>) -> ResBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

fn text(status: u16, msg: &str) -> Response<ResBody> {
    let mut r = Response::new(full(format!("{msg}\n")));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn status_of(e: &Error) -> u16 {
    match e {
        Error::NotFound(_) => 404,
        Error::BadCid(_) => 400,
        Error::Unsupported(_) => 501,
        _ => 500,
    }
}

/// Serves `store` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, store: Arc<dyn BlockStore>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _from): (_, SocketAddr) = match listener.accept().await {
            Ok(x) => x,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let store = store.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let store = store.clone();
                async move { Ok::<_, Infallible>(answer(store, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

async fn answer(
    store: Arc<dyn BlockStore>,
    req: Request<hyper::body::Incoming>,
) -> Response<ResBody> {
    let (parts, _body) = req.into_parts();
    respond(store, &parts).await
}

/// The answer to one request (its body is never read: the gateway is read-only). Shared by
/// `bitpeer ipfs serve` and the daemon's gateway.
pub async fn respond(
    store: Arc<dyn BlockStore>,
    req: &hyper::http::request::Parts,
) -> Response<ResBody> {
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let accept = req
        .headers
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let greq = match gateway::parse_request(req.method.as_str(), target, accept) {
        Ok(r) => r,
        Err(refusal) => return text(refusal.status, &refusal.message),
    };
    let head = greq.head;
    let headers = greq.headers();
    let body = match greq.format {
        Format::Raw => {
            let root = greq.root;
            let s = store.clone();
            match tokio::task::spawn_blocking(move || s.get(&root)).await {
                Ok(Ok(Some(block))) => {
                    let len = block.len();
                    let mut r = Response::new(if head {
                        full(Bytes::new())
                    } else {
                        full(block)
                    });
                    r.headers_mut()
                        .insert(hyper::header::CONTENT_LENGTH, len.into());
                    Ok(r)
                }
                Ok(Ok(None)) => Err((404, format!("{root} not found"))),
                Ok(Err(e)) => Err((status_of(&e), e.to_string())),
                Err(_) => Err((500, "internal error".into())),
            }
        }
        Format::Car => car_response(store, greq).await,
    };
    match body {
        Ok(mut r) => {
            for (k, v) in headers {
                if let Ok(v) = hyper::header::HeaderValue::from_str(&v) {
                    r.headers_mut().insert(k, v);
                }
            }
            r
        }
        Err((status, msg)) => text(status, &msg),
    }
}

/// Checks the root and the path are held (so a missing one is a 404, not a cut stream),
/// then streams the CAR from the blocking pool.
async fn car_response(
    store: Arc<dyn BlockStore>,
    req: GatewayRequest,
) -> Result<Response<ResBody>, (u16, String)> {
    let s = store.clone();
    let r = req.clone();
    let check = tokio::task::spawn_blocking(move || -> Result<Cid, Error> {
        dag::need(&*s, &r.root)?;
        let mut path = r.root;
        for p in &r.path {
            path = dag::resolve(&*s, &path, p)?;
        }
        dag::need(&*s, &path)?;
        Ok(path)
    })
    .await
    .map_err(|_| (500, "internal error".to_owned()))?;
    if let Err(e) = check {
        return Err((status_of(&e), e.to_string()));
    }
    if req.head {
        return Ok(Response::new(full(Bytes::new())));
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut buf = car::header(&[req.root]);
        let flush = |buf: &mut Vec<u8>| -> Result<(), Error> {
            let chunk = Bytes::from(std::mem::take(buf));
            tx.blocking_send(Ok(chunk))
                .map_err(|_| Error::Limit("client went away".into()))
        };
        let result = (|| -> Result<(), Error> {
            let mut pending = std::mem::take(&mut buf);
            let mut walker = dag::Walker::new(|cid: &Cid, block: &[u8]| {
                car::write_block(&mut pending, cid, block).map_err(|e| Error::io("CAR", e))?;
                if pending.len() >= CHUNK {
                    flush(&mut pending)?;
                }
                Ok(())
            });
            let target = walker.walk_path(&*store, &req.root, &req.path)?;
            match req.entity_bytes {
                Some(range) => {
                    let node = dag::load(&*store, &target)?;
                    match dag::node_size(&target, &node) {
                        Ok(size) => {
                            let (from, to) = range.resolve(size);
                            walker.walk_range(&*store, &target, from, to)?
                        }
                        Err(_) => walker.walk(&*store, &target, req.scope)?,
                    }
                }
                None => walker.walk(&*store, &target, req.scope)?,
            }
            drop(walker);
            if !pending.is_empty() {
                flush(&mut pending)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            // The status is sent already: cut the stream so the client sees it is incomplete.
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    Ok(Response::new(ChannelBody(rx).boxed()))
}
