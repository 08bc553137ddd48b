//! HTTPS trackers: rustls (ring provider) talks to a TLS tracker on 127.0.0.1 whose
//! certificate comes from a CA made for the test with the `openssl` command, and refuses it
//! when that CA is not trusted.

mod client_common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use client_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tracker::client::{ClientConfig, TrackerClient, TrackerError};
use tracker::proto::AnnounceEvent;

struct Pki {
    ca: Vec<u8>,
    leaf: Vec<u8>,
    leaf_key: Vec<u8>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the `openssl` command is needed for this test (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it, all DER.
fn make_pki(dir: &Path) -> Pki {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=bitpeer test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-outform",
            "DER",
            "-out",
            "leaf.der",
        ],
    );
    openssl(
        dir,
        &["x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der"],
    );
    openssl(
        dir,
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "leaf.key",
            "-outform",
            "DER",
            "-out",
            "leaf.key.der",
        ],
    );
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    Pki {
        ca: read("ca.der"),
        leaf: read("leaf.der"),
        leaf_key: read("leaf.key.der"),
    }
}

/// A TLS tracker answering every request with `body`; returns its announce URL.
async fn tls_tracker(pki: &Pki, body: &'static [u8]) -> (String, tokio::task::JoinHandle<()>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.leaf.clone().into()],
            rustls::pki_types::PrivatePkcs8KeyDer::from(pki.leaf_key.clone()).into(),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/announce", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(&http_response("200 OK", body)).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, task)
}

#[tokio::test]
async fn https_announce_with_a_trusted_ca_works_and_an_unknown_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let (url, task) =
        tls_tracker(&pki, b"d8:intervali900e5:peers6:\x0a\x00\x00\x01\x1a\xe1e").await;
    let req = request(AnnounceEvent::Started);

    let trusting = TrackerClient::new(ClientConfig {
        extra_root_certs: vec![pki.ca.clone()],
        ..fast_config()
    })
    .unwrap();
    let resp = tokio::time::timeout(TEST_DEADLINE, trusting.announce(&url, &req, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.interval, 900);
    assert_eq!(resp.peers, vec!["10.0.0.1:6881".parse().unwrap()]);

    let system_roots_only = TrackerClient::new(fast_config()).unwrap();
    let err = tokio::time::timeout(TEST_DEADLINE, system_roots_only.announce(&url, &req, None))
        .await
        .unwrap()
        .unwrap_err();
    match err {
        TrackerError::Http(text) => assert!(text.to_lowercase().contains("certificate"), "{text}"),
        other => panic!("{other:?}"),
    }
    task.abort();
}
