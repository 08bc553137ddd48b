//! The tracker client: asking HTTP(S) and UDP trackers for peers.
//!
//! - [`http`]: announce and scrape URLs and answers (BEP 3, BEP 23 compact peers, BEP 7
//!   `peers6`, BEP 48 scrape), as pure functions.
//! - [`udp`]: the UDP tracker protocol's packets (BEP 15), as pure functions.
//! - [`announcer`]: when to announce to which tracker with which event, over the tiers of
//!   an `announce-list` (BEP 12); a sans-IO state machine driven with an explicit `now`.
//! - [`TrackerClient`]: the async shell that sends one announce or scrape over HTTP (reqwest
//!   with rustls) or UDP, with bounded answers, timeouts and retransmission.
//! - [`run_announcer`]: the task that keeps one torrent announced until it stops.

pub mod announcer;
mod driver;
pub mod http;
pub mod udp;
mod udp_transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use announcer::Announcer;
pub use driver::{Progress, TrackerStatus, run_announcer};

use crate::proto::{AnnounceRequest, AnnounceResponse, ScrapeEntry};
use udp_transport::UdpClient;

/// Why an announce or scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// The tracker answered with a `failure reason` (HTTP) or an error packet (UDP).
    #[error("tracker says: {0}")]
    Failure(String),
    #[error("invalid tracker URL {0:?}")]
    InvalidUrl(String),
    #[error("unsupported tracker URL scheme in {0:?}")]
    UnsupportedScheme(String),
    /// The announce URL does not end in `announce`, so there is no scrape URL (BEP 48).
    #[error("tracker does not support scrape")]
    ScrapeUnsupported,
    #[error("HTTP: {0}")]
    Http(String),
    #[error("HTTP status {0}")]
    HttpStatus(u16),
    #[error("answer larger than {max} bytes")]
    BodyTooLarge { max: usize },
    #[error("tracker did not answer in time")]
    Timeout,
    #[error("answer is not valid bencode: {0}")]
    Bencode(#[from] bencode::Error),
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
    #[error("{0} info-hashes in one UDP scrape, at most 74 fit")]
    TooManyHashes(usize),
    #[error("cannot resolve tracker host {0:?}")]
    Resolve(String),
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Settings of a [`TrackerClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Whole HTTP request, body included.
    pub http_timeout: Duration,
    pub http_connect_timeout: Duration,
    pub max_redirects: usize,
    /// Largest HTTP answer read; a larger one is an error.
    pub max_body: usize,
    pub user_agent: String,
    /// First UDP retransmission timeout; BEP 15 says 15 s, doubled after each try.
    pub udp_timeout: Duration,
    /// Retransmissions after the first try (BEP 15 allows 8; the total wait doubles each).
    pub udp_max_retries: u32,
    /// How long a UDP connection id is used (BEP 15: one minute).
    pub connection_id_ttl: Duration,
    /// Local addresses of the UDP sockets for IPv4 and IPv6 trackers.
    pub udp_bind_v4: SocketAddr,
    pub udp_bind_v6: SocketAddr,
    /// Most peers kept from one answer.
    pub max_peers: usize,
    /// Send HTTP announces through the proxy named by `HTTP_PROXY`/`HTTPS_PROXY`/
    /// `ALL_PROXY` (and `NO_PROXY`), if set.
    pub use_env_proxy: bool,
    /// Extra trusted root certificates (DER), for private trackers with their own CA; the
    /// system's roots are always trusted.
    pub extra_root_certs: Vec<Vec<u8>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            http_timeout: Duration::from_secs(30),
            http_connect_timeout: Duration::from_secs(10),
            max_redirects: 5,
            max_body: 1 << 20,
            user_agent: concat!("bitpeer/", env!("CARGO_PKG_VERSION")).into(),
            udp_timeout: Duration::from_secs(15),
            udp_max_retries: 3,
            connection_id_ttl: Duration::from_secs(60),
            udp_bind_v4: "0.0.0.0:0".parse().expect("valid address"),
            udp_bind_v6: "[::]:0".parse().expect("valid address"),
            max_peers: 2000,
            use_env_proxy: true,
            extra_root_certs: Vec::new(),
        }
    }
}

/// Sends announces and scrapes to HTTP(S) and UDP trackers. Cheap to clone; clones share
/// the HTTP connection pool, the UDP sockets and the cached UDP connection ids. The UDP
/// sockets are opened on first use, inside the tokio runtime that then drives them.
#[derive(Clone)]
pub struct TrackerClient {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ClientConfig,
    http: reqwest::Client,
    udp: UdpClient,
}

impl std::fmt::Debug for TrackerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerClient")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

/// The chain of an error's causes on one line: reqwest's own message is terse.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

fn http_error(e: reqwest::Error) -> TrackerError {
    if e.is_timeout() {
        TrackerError::Timeout
    } else {
        // Without the URL: the caller knows it, and its query (info-hash, peer id, counters)
        // only makes the message unreadable.
        TrackerError::Http(error_chain(&e.without_url()))
    }
}

/// rustls on the ring provider, checking certificates against the system's roots (webpki).
/// The roots are read on the first TLS connection, not here (see [`LazyVerifier`]); bad
/// `extra_roots` are refused here.
pub fn tls_config(extra_roots: &[Vec<u8>]) -> Result<rustls::ClientConfig, TrackerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut check = rustls::RootCertStore::empty();
    for der in extra_roots {
        check
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .map_err(|e| TrackerError::Tls(e.to_string()))?;
    }
    let verifier = LazyVerifier {
        extra_roots: extra_roots.to_vec(),
        provider: provider.clone(),
        inner: std::sync::OnceLock::new(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TrackerError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The platform's certificate verifier, built on first use: building it reads and parses
/// every CA root of the system (hundreds of files, ~15 ms), which every command paid at
/// start, most of them never making a TLS connection.
#[derive(Debug)]
struct LazyVerifier {
    extra_roots: Vec<Vec<u8>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    inner: std::sync::OnceLock<Result<rustls_platform_verifier::Verifier, rustls::Error>>,
}

impl LazyVerifier {
    fn get(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        self.inner
            .get_or_init(|| {
                let extra = self
                    .extra_roots
                    .iter()
                    .map(|der| rustls::pki_types::CertificateDer::from(der.clone()));
                rustls_platform_verifier::Verifier::new_with_extra_roots(
                    extra,
                    self.provider.clone(),
                )
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl rustls::client::danger::ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.get()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.get()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.get()?.verify_tls13_signature(message, cert, dss)
    }

    /// What the provider can check (what the platform verifier answers too), without
    /// building it for a ClientHello.
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl TrackerClient {
    pub fn new(cfg: ClientConfig) -> Result<Self, TrackerError> {
        let mut http = reqwest::Client::builder();
        if !cfg.use_env_proxy {
            http = http.no_proxy();
        }
        let http = http
            .tls_backend_preconfigured(tls_config(&cfg.extra_root_certs)?)
            .user_agent(cfg.user_agent.clone())
            .timeout(cfg.http_timeout)
            .connect_timeout(cfg.http_connect_timeout)
            .redirect(reqwest::redirect::Policy::limited(cfg.max_redirects))
            // A fresh connection per announce: announces are minutes apart, and trackers
            // (opentracker among them) close idle connections, so a pooled one would often
            // be reset under us.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| TrackerError::Http(error_chain(&e)))?;
        let udp = UdpClient::new(&cfg);
        Ok(TrackerClient {
            inner: Arc::new(Inner { cfg, http, udp }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    /// Announce `req` to the tracker at `url` (`http://`, `https://` or `udp://`).
    /// `tracker_id` is what this tracker gave in an earlier answer (HTTP only).
    pub async fn announce(
        &self,
        url: &str,
        req: &AnnounceRequest,
        tracker_id: Option<&[u8]>,
    ) -> Result<AnnounceResponse, TrackerError> {
        match scheme(url)? {
            Scheme::Http => {
                let body = self
                    .http_get(&http::announce_url(url, req, tracker_id))
                    .await?;
                http::parse_announce(&body, self.inner.cfg.max_peers)
            }
            Scheme::Udp => self.inner.udp.announce(url, req).await,
        }
    }

    /// Ask the tracker at `url` (an announce URL) for the counts of `hashes`: one entry per
    /// hash, in the same order; a hash the tracker does not know gets zero counts.
    pub async fn scrape(
        &self,
        url: &str,
        hashes: &[[u8; 20]],
    ) -> Result<Vec<ScrapeEntry>, TrackerError> {
        match scheme(url)? {
            Scheme::Http => {
                let body = self.http_get(&http::scrape_url(url, hashes)?).await?;
                http::parse_scrape(&body, hashes)
            }
            Scheme::Udp => self.inner.udp.scrape(url, hashes).await,
        }
    }

    /// GET `url` and read at most `max_body` bytes of the answer. A non-200 answer is an
    /// error, with the tracker's `failure reason` if it sent one.
    async fn http_get(&self, url: &str) -> Result<Vec<u8>, TrackerError> {
        let max = self.inner.cfg.max_body;
        let mut resp = self.inner.http.get(url).send().await.map_err(http_error)?;
        if resp.content_length().is_some_and(|len| len > max as u64) {
            return Err(TrackerError::BodyTooLarge { max });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(http_error)? {
            if body.len() + chunk.len() > max {
                return Err(TrackerError::BodyTooLarge { max });
            }
            body.extend_from_slice(&chunk);
        }
        let status = resp.status();
        if !status.is_success() {
            return Err(match http::failure_reason(&body) {
                Some(reason) => TrackerError::Failure(reason),
                None => TrackerError::HttpStatus(status.as_u16()),
            });
        }
        Ok(body)
    }
}

enum Scheme {
    Http,
    Udp,
}

fn scheme(url: &str) -> Result<Scheme, TrackerError> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        Ok(Scheme::Http)
    } else if lower.starts_with("udp://") {
        Ok(Scheme::Udp)
    } else {
        Err(TrackerError::UnsupportedScheme(url.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_extra_roots_are_refused_when_the_config_is_built() {
        assert!(matches!(
            tls_config(&[b"not a certificate".to_vec()]),
            Err(TrackerError::Tls(_))
        ));
        assert!(tls_config(&[]).is_ok());
    }
}
