//! Helpers for the tracker server's integration tests: a [`Server`] running on 127.0.0.1
//! ports picked by the OS in its own tokio runtime (shut down when dropped), and blocking
//! UDP and HTTP clients with deadlines on every read.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracker::proto::{ACTION_ANNOUNCE, ACTION_CONNECT, UDP_PROTOCOL_ID};
use tracker::server::{Server, ServerConfig, TrackerState};

pub struct Running {
    pub http: SocketAddr,
    pub udp: SocketAddr,
    pub state: Arc<Mutex<TrackerState>>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Running {
    /// On 127.0.0.1, whatever addresses `config` names.
    pub fn start(mut config: ServerConfig) -> Running {
        config.http = Some("127.0.0.1:0".parse().unwrap());
        config.udp = Some("127.0.0.1:0".parse().unwrap());
        Running::start_at(config)
    }

    /// On the addresses `config` names.
    pub fn start_at(config: ServerConfig) -> Running {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(Server::bind(config)).expect("bind the tracker");
        let (http, udp, state) = (
            server.http_addr().unwrap(),
            server.udp_addr().unwrap(),
            server.state(),
        );
        rt.spawn(server.run());
        Running {
            http,
            udp,
            state,
            rt: Some(rt),
        }
    }

    pub fn stats(&self) -> tracker::server::Stats {
        self.state.lock().unwrap().stats()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// A UDP socket on 127.0.0.1 whose reads give up after `timeout`.
pub fn udp_client(timeout: Duration) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s
}

pub fn connect_packet(tid: u32) -> Vec<u8> {
    let mut p = UDP_PROTOCOL_ID.to_be_bytes().to_vec();
    p.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
    p.extend_from_slice(&tid.to_be_bytes());
    p
}

/// A BEP 15 announce (event started, numwant -1).
pub fn announce_packet(
    cid: u64,
    tid: u32,
    info_hash: &[u8; 20],
    peer_id: &[u8; 20],
    left: u64,
    port: u16,
) -> Vec<u8> {
    let mut p = Vec::with_capacity(98);
    p.extend_from_slice(&cid.to_be_bytes());
    p.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    p.extend_from_slice(&tid.to_be_bytes());
    p.extend_from_slice(info_hash);
    p.extend_from_slice(peer_id);
    p.extend_from_slice(&0u64.to_be_bytes());
    p.extend_from_slice(&left.to_be_bytes());
    p.extend_from_slice(&0u64.to_be_bytes());
    p.extend_from_slice(&2u32.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&tid.to_be_bytes());
    p.extend_from_slice(&(-1i32).to_be_bytes());
    p.extend_from_slice(&port.to_be_bytes());
    p
}

/// Connects `sock` to the tracker at `to`; returns the connection id.
pub fn udp_connect(sock: &UdpSocket, to: SocketAddr) -> u64 {
    let mut buf = [0u8; 64];
    for attempt in 0..5u32 {
        sock.send_to(&connect_packet(attempt), to).unwrap();
        if let Ok((16, _)) = sock.recv_from(&mut buf)
            && buf[..4] == [0; 4]
            && buf[4..8] == attempt.to_be_bytes()
        {
            return u64::from_be_bytes(buf[8..16].try_into().unwrap());
        }
    }
    panic!("no answer to 5 UDP connects to {to}");
}

/// `GET target` with `Connection: close`; the status and the body.
pub fn http_get(addr: SocketAddr, target: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    split_response(&resp)
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&resp)))
}

/// (status, body) of one whole HTTP response in `resp`, if it holds one.
pub fn split_response(resp: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, resp[split + 4..].to_vec()))
}

pub fn escape(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}
