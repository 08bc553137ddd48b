//! `wss://` trackers: two WebTorrent nodes meet through a TLS WebSocket tracker on
//! 127.0.0.1 (our tracker behind a TLS terminator whose self-signed certificate, made for
//! the test with the `openssl` command, the nodes trust) and open a data channel; a node
//! that does not trust that certificate never reaches the tracker.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use webtorrent::node::WebTorrentNode;
use webtorrent::rtc::{RtcConfig, RtcEndpoint};
use webtorrent::server::Config;
use webtorrent::ws_server::WsServer;

const DEADLINE: Duration = Duration::from_secs(20);

/// A self-signed certificate for 127.0.0.1 (not a CA) and its key, DER.
fn self_signed(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("the `openssl` command is needed for this test (Debian package openssl)");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "key.pem",
        "-outform",
        "DER",
        "-out",
        "cert.der",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-addext",
        "extendedKeyUsage=serverAuth",
    ]);
    run(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER", "-out", "key.der",
    ]);
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    (read("cert.der"), read("key.der"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Our WebSocket tracker behind TLS; its `wss://` URL.
async fn wss_tracker(cert: &[u8], key: &[u8]) -> String {
    let server = WsServer::bind("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let plain: SocketAddr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.to_vec().into()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.to_vec()).into(),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("wss://{}/announce", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut inner) = tokio::net::TcpStream::connect(plain).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut inner).await;
            });
        }
    });
    url
}

/// A client config trusting `cert` only (or nothing).
fn client_tls(cert: Option<&[u8]>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(c) = cert {
        roots.add(c.to_vec().into()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn node(
    peer: u8,
    tls: Arc<rustls::ClientConfig>,
) -> (
    WebTorrentNode,
    tokio::sync::mpsc::Receiver<webtorrent::node::Connection>,
) {
    let rtc = RtcEndpoint::start(RtcConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..RtcConfig::default()
    })
    .await
    .unwrap();
    let (mut node, conns) = WebTorrentNode::new(rtc, [peer; 20]);
    node.set_tls(tls);
    (node, conns)
}

#[tokio::test]
async fn nodes_meet_through_a_wss_tracker_they_trust_and_not_one_they_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let url = wss_tracker(&cert, &key).await;
    let ih = [9u8; 20];
    let progress = || Arc::new(webtorrent::client::Progress::default);

    // A node that does not trust the certificate: its announces never reach the tracker,
    // so it meets nobody (the trusting nodes below do not meet it either).
    let (stranger, mut stranger_conns) = node(3, client_tls(None)).await;
    stranger.add(&url, ih, progress());

    let (a, mut a_conns) = node(1, client_tls(Some(&cert))).await;
    let (b, mut b_conns) = node(2, client_tls(Some(&cert))).await;
    a.add(&url, ih, progress());
    b.add(&url, ih, progress());
    let met = tokio::time::timeout(DEADLINE, async {
        tokio::select! {
            c = a_conns.recv() => c.unwrap().peer_id,
            c = b_conns.recv() => c.unwrap().peer_id,
        }
    })
    .await
    .expect("the nodes did not meet through the wss:// tracker");
    assert!(met == [1; 20] || met == [2; 20], "met {met:?}");
    assert!(
        tokio::time::timeout(Duration::from_secs(2), stranger_conns.recv())
            .await
            .is_err(),
        "a node that does not trust the tracker's certificate met someone"
    );
}
