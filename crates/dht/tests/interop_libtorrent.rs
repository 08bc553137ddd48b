//! Interop with libtorrent (Debian's python3-libtorrent, driven by `tests/lt_dht.py` under
//! `/usr/bin/python3`) over 127.0.0.1: a three-node DHT of libtorrent and two of our nodes,
//! where each side finds the peers the other announced, and our codec reads libtorrent's
//! responses as they are on the wire.
//!
//! Without libtorrent the test fails with a message, unless BITPEER_SKIP_INTEROP=1.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use common::live::{LOOPBACK, collect, config, wait_table};
use dht::Dht;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// Kills the child by PID when dropped, pass or fail.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// libtorrent's lines, read on a thread.
struct Lt {
    _child: KillOnDrop,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Lt {
    fn start(bootstrap: SocketAddr) -> Lt {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lt_dht.py");
        let mut child = Command::new("/usr/bin/python3")
            .args([script, &bootstrap.to_string(), "120"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn /usr/bin/python3");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lt {
            _child: KillOnDrop(child),
            stdin,
            lines: rx,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The first line (from now on) for which `f` returns something, within `limit`.
    async fn expect<T>(
        &mut self,
        limit: Duration,
        mut f: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    let out = f(&line);
                    self.seen.push(line);
                    if out.is_some() {
                        return out;
                    }
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn libtorrent_available() -> bool {
    Command::new("/usr/bin/python3")
        .args(["-c", "import libtorrent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn hex(b: &[u8; 20]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn libtorrent_and_we_find_each_others_announces() {
    if !libtorrent_available() {
        if std::env::var("BITPEER_SKIP_INTEROP").as_deref() == Ok("1") {
            eprintln!("skipping: python3-libtorrent missing and BITPEER_SKIP_INTEROP=1");
            return;
        }
        panic!(
            "/usr/bin/python3 cannot import libtorrent: `apt-get install python3-libtorrent`, \
             or set BITPEER_SKIP_INTEROP=1 to skip this test"
        );
    }
    timeout(Duration::from_secs(100), scenario())
        .await
        .expect("the interop scenario took over 100 s");
}

async fn scenario() {
    // A: our first node, libtorrent's bootstrap node.
    let a = Dht::start(config(vec![])).unwrap();
    let mut lt = Lt::start(a.local_addr());
    let lt_port: u16 = lt
        .expect(Duration::from_secs(20), |l| {
            l.strip_prefix("port ")?.parse().ok()
        })
        .await
        .expect("libtorrent did not print its port");
    let lt_addr = SocketAddr::from((LOOPBACK, lt_port));
    // libtorrent bootstraps from A; A learns libtorrent by pinging it back.
    assert!(
        wait_table(&a, 1, Duration::from_secs(20)).await >= 1,
        "A never added libtorrent to its table; libtorrent said {:?}",
        lt.seen
    );
    // B: our second node, bootstrapping from libtorrent only; it learns A from libtorrent.
    let b = Dht::start(config(vec![lt_addr.to_string()])).unwrap();
    // (libtorrent keeps its bootstrap "router" A out of its routing table, so B may only
    // ever learn libtorrent itself.)
    let b_size = wait_table(&b, 1, Duration::from_secs(20)).await;
    assert!(b_size >= 1, "B did not add libtorrent to its table");

    // (a) libtorrent announces (a torrent it joins); B finds libtorrent's listen port.
    let ih1 = [0xa1; 20];
    let want1 = lt_addr;
    lt.send(&format!("add {}", hex(&ih1)));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut found = Vec::new();
    while !found.contains(&want1) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        found = collect(b.get_peers(ih1), Duration::from_secs(10)).await;
    }
    assert!(
        found.contains(&want1),
        "B did not find libtorrent's announce {want1}: got {found:?}; B's table has {} nodes; \
         libtorrent said {:?}",
        b.routing_table_size().await,
        lt.seen
    );

    // (b) B announces; libtorrent accepts the announce_peer and its get_peers finds us.
    let ih2 = [0xb2; 20];
    let p2 = free_tcp_port();
    let want2 = format!("127.0.0.1:{p2}");
    collect(b.announce(ih2, Some(p2)), Duration::from_secs(15)).await;
    let accepted = lt
        .expect(Duration::from_secs(10), |l| {
            (l.starts_with(&format!("announced {}", hex(&ih2))) && l.ends_with(&want2))
                .then_some(())
        })
        .await
        .is_some();
    assert!(
        accepted,
        "libtorrent did not accept B's announce_peer; it said {:?}",
        lt.seen
    );
    let mut got = None;
    for _ in 0..5 {
        lt.send(&format!("get_peers {}", hex(&ih2)));
        got = lt
            .expect(Duration::from_secs(6), |l| {
                let rest = l.strip_prefix(&format!("peers {} ", hex(&ih2)))?;
                rest.split(' ')
                    .any(|p| p == want2)
                    .then(|| rest.to_string())
            })
            .await;
        if got.is_some() {
            break;
        }
    }
    assert!(
        got.is_some(),
        "libtorrent's get_peers did not find {want2}; it said {:?}",
        lt.seen
    );

    // (b') With implied_port, libtorrent stores the UDP source port of B's announce.
    let ih3 = [0xc3; 20];
    let want3 = format!("127.0.0.1:{}", b.local_addr().port());
    collect(b.announce(ih3, None), Duration::from_secs(15)).await;
    let accepted = lt
        .expect(Duration::from_secs(10), |l| {
            (l.starts_with(&format!("announced {}", hex(&ih3))) && l.ends_with(&want3))
                .then_some(())
        })
        .await
        .is_some();
    assert!(
        accepted,
        "libtorrent did not take B's implied_port announce as {want3}; it said {:?}",
        lt.seen
    );

    // (c) Our codec reads libtorrent's answers as they are on the wire: a get_peers for ih2
    // straight to libtorrent returns a token and the peer B announced there.
    let raw = tokio::net::UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let q = dht::krpc::Message {
        tid: b"rq".to_vec(),
        version: None,
        read_only: true,
        ip: None,
        want: None,
        body: dht::krpc::Body::Query(dht::krpc::Query::GetPeers {
            id: dht::NodeId([0x33; 20]),
            info_hash: dht::NodeId(ih2),
        }),
    };
    raw.send_to(&q.encode(), lt_addr).await.unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, _) = timeout(Duration::from_secs(5), raw.recv_from(&mut buf))
        .await
        .expect("libtorrent did not answer a raw get_peers")
        .unwrap();
    let answer = dht::krpc::decode(&buf[..n]).expect("our decoder reads libtorrent's response");
    assert_eq!(answer.tid, b"rq");
    let dht::krpc::Body::Response(r) = answer.body else {
        panic!("libtorrent answered with {answer:?}")
    };
    assert!(r.token.is_some(), "{r:?}");
    assert!(
        r.values.contains(&want2.parse().unwrap()),
        "libtorrent's values lack {want2}: {r:?}"
    );
    println!(
        "libtorrent's get_peers response: v={:?} {r:?}",
        answer
            .version
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
