//! Fake trackers on 127.0.0.1 for the client tests: an HTTP server that answers canned
//! bytes and a UDP tracker whose misbehaviour each test chooses.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use tracker::client::ClientConfig;
use tracker::proto::{AnnounceEvent, AnnounceRequest};

/// Every test wait is bounded by this.
pub const TEST_DEADLINE: Duration = Duration::from_secs(20);

pub fn request(event: AnnounceEvent) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: *b"\x01\x02\x03 info-hash &?=%\xfe\xff",
        peer_id: *b"-BP0001-abcdefghijkl",
        port: 6881,
        uploaded: 10,
        downloaded: 20,
        left: 30,
        event,
        numwant: Some(50),
        key: 0x1234_abcd,
    }
}

/// A client with short timeouts, so failing tests fail fast.
pub fn fast_config() -> ClientConfig {
    ClientConfig {
        http_timeout: Duration::from_millis(1500),
        http_connect_timeout: Duration::from_millis(1000),
        udp_timeout: Duration::from_millis(200),
        udp_max_retries: 2,
        udp_bind_v4: "127.0.0.1:0".parse().unwrap(),
        udp_bind_v6: "[::1]:0".parse().unwrap(),
        // The fake trackers are on loopback: a proxy from the environment must not matter.
        use_env_proxy: false,
        ..ClientConfig::default()
    }
}

/// What the fake HTTP server does with one request.
pub enum Reply {
    /// Send these bytes (a whole HTTP response) and close.
    Raw(Vec<u8>),
    /// Wait, then send.
    Delayed(Duration, Vec<u8>),
    /// A 200 answer without length that never ends (until the client goes away or 64 MiB).
    Endless,
}

pub fn http_response(status: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

pub fn ok(body: &[u8]) -> Reply {
    Reply::Raw(http_response("200 OK", body))
}

pub struct FakeHttp {
    pub addr: SocketAddr,
    /// Request targets (`/announce?...`) in arrival order.
    pub requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl FakeHttp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP server on 127.0.0.1 answering each request with `reply(target)`.
pub async fn fake_http(reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> FakeHttp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let reply = Arc::new(reply);
    let log = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let reply = reply.clone();
            let log = log.clone();
            tokio::spawn(async move {
                // Read the request head, at most 16 KiB.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                let target = text.split(' ').nth(1).unwrap_or("").to_string();
                log.lock().unwrap().push(target.clone());
                match reply(&target) {
                    Reply::Raw(bytes) => {
                        let _ = conn.write_all(&bytes).await;
                    }
                    Reply::Delayed(wait, bytes) => {
                        tokio::time::sleep(wait).await;
                        let _ = conn.write_all(&bytes).await;
                    }
                    Reply::Endless => {
                        let _ = conn
                            .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                            .await;
                        let chunk = vec![b'x'; 64 * 1024];
                        for _ in 0..1024 {
                            if conn.write_all(&chunk).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = conn.shutdown().await;
            });
        }
    });
    FakeHttp {
        addr,
        requests,
        task,
    }
}

/// How the fake UDP tracker misbehaves.
#[derive(Clone, Default)]
pub struct UdpBehaviour {
    /// Ignore these packets (numbered from 1 in arrival order).
    pub drop: Vec<usize>,
    /// Before each real answer, send a forged one with a wrong transaction id.
    pub wrong_txid_first: bool,
    /// Before each real answer, send a forged one from another socket.
    pub spoof_from_other_address: bool,
    /// Answer announces with this error.
    pub error: Option<String>,
    /// Peers returned on announce, encoded as the tracker's address family says.
    pub peers: Vec<SocketAddr>,
    /// Never answer anything.
    pub silent: bool,
}

/// What the fake UDP tracker saw.
#[derive(Default, Debug, Clone)]
pub struct UdpLog {
    pub received: usize,
    pub connects: usize,
    pub announces: Vec<Vec<u8>>,
    pub scrapes: Vec<Vec<u8>>,
    /// Announces or scrapes that carried a connection id we never gave out.
    pub bad_connection_ids: usize,
}

pub struct FakeUdp {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<UdpLog>>,
    task: JoinHandle<()>,
}

impl FakeUdp {
    pub fn url(&self) -> String {
        format!("udp://{}/announce", self.addr)
    }
    pub fn log(&self) -> UdpLog {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for FakeUdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

/// A BEP 15 tracker written from the spec for the tests, on `bind` (127.0.0.1:0 or [::1]:0).
pub async fn fake_udp(bind: &str, behaviour: UdpBehaviour) -> FakeUdp {
    let socket = UdpSocket::bind(bind).await.unwrap();
    let spoofer = UdpSocket::bind(bind).await.unwrap();
    let addr = socket.local_addr().unwrap();
    let log = Arc::new(Mutex::new(UdpLog::default()));
    let seen = log.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        let mut issued: Vec<u64> = Vec::new();
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let p = buf[..n].to_vec();
            let index = {
                let mut l = seen.lock().unwrap();
                l.received += 1;
                l.received
            };
            if behaviour.silent || behaviour.drop.contains(&index) || p.len() < 16 {
                continue;
            }
            let conn_id = u64::from_be_bytes(p[0..8].try_into().unwrap());
            let action = be32(&p, 8);
            let txid = be32(&p, 12);
            let mut answer = Vec::new();
            answer.extend_from_slice(&action.to_be_bytes());
            answer.extend_from_slice(&txid.to_be_bytes());
            match action {
                0 if conn_id == 0x41727101980 => {
                    seen.lock().unwrap().connects += 1;
                    let id = 0x5eed_0000_0000_0000 | issued.len() as u64;
                    issued.push(id);
                    answer.extend_from_slice(&id.to_be_bytes());
                }
                1 | 2 if !issued.contains(&conn_id) => {
                    seen.lock().unwrap().bad_connection_ids += 1;
                    answer.clear();
                    answer.extend_from_slice(&3u32.to_be_bytes());
                    answer.extend_from_slice(&txid.to_be_bytes());
                    answer.extend_from_slice(b"bad connection id");
                }
                1 => {
                    seen.lock().unwrap().announces.push(p.clone());
                    if let Some(msg) = &behaviour.error {
                        answer.clear();
                        answer.extend_from_slice(&3u32.to_be_bytes());
                        answer.extend_from_slice(&txid.to_be_bytes());
                        answer.extend_from_slice(msg.as_bytes());
                    } else {
                        answer.extend_from_slice(&1800u32.to_be_bytes());
                        answer.extend_from_slice(&7u32.to_be_bytes()); // leechers
                        answer.extend_from_slice(&3u32.to_be_bytes()); // seeders
                        for peer in &behaviour.peers {
                            match (peer, addr.is_ipv6()) {
                                (SocketAddr::V4(a), false) => {
                                    answer.extend_from_slice(&a.ip().octets())
                                }
                                (SocketAddr::V6(a), true) => {
                                    answer.extend_from_slice(&a.ip().octets())
                                }
                                _ => continue,
                            }
                            answer.extend_from_slice(&peer.port().to_be_bytes());
                        }
                    }
                }
                2 => {
                    seen.lock().unwrap().scrapes.push(p.clone());
                    for (i, _) in p[16..].chunks_exact(20).enumerate() {
                        let i = i as u32;
                        for v in [i + 1, i + 100, i + 1000] {
                            answer.extend_from_slice(&v.to_be_bytes());
                        }
                    }
                }
                _ => continue,
            }
            // A forged answer says something else: a connection id never issued, or an
            // error instead of peers. Believing it makes the test fail.
            let mut forged = answer[..8].to_vec();
            if action == 0 {
                forged.extend_from_slice(&0xbad_u64.to_be_bytes());
            } else {
                forged[0..4].copy_from_slice(&3u32.to_be_bytes());
                forged.extend_from_slice(b"forged");
            }
            if behaviour.wrong_txid_first {
                let mut wrong = forged.clone();
                wrong[4..8].copy_from_slice(&txid.wrapping_add(1).to_be_bytes());
                let _ = socket.send_to(&wrong, from).await;
            }
            if behaviour.spoof_from_other_address {
                let _ = spoofer.send_to(&forged, from).await;
            }
            if behaviour.wrong_txid_first || behaviour.spoof_from_other_address {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = socket.send_to(&answer, from).await;
        }
    });
    FakeUdp { addr, log, task }
}
