//! Local Service Discovery (BEP 14) between our own nodes on this machine.
//!
//! The nodes use multicast on the loopback interface: they join the group on 127.0.0.1 and
//! send with IP_MULTICAST_IF = 127.0.0.1 and multicast loop on. On the Linux kernels we run
//! on this works even though `lo` lacks the MULTICAST flag; where it does not, the test
//! turns the flag on (as root) with `ip link set lo multicast on` and turns it off again at
//! the end. Each test of our nodes uses its own random group port (not 6771), so concurrent
//! tests and real LSD clients on this host do not see each other's datagrams.
//!
//! The interop test runs libtorrent (Debian's python3-libtorrent, driven by
//! `/usr/bin/python3`) on the real group 239.192.152.143:6771 over loopback, the only port
//! libtorrent speaks; it tells its torrent apart from any other LSD traffic by info-hash.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use engine::lsd::{DEFAULT_GROUP_V4, Lsd, LsdConfig, parse_announce};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

const GROUP_IP: Ipv4Addr = Ipv4Addr::new(239, 192, 152, 143);
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
const X: [u8; 20] = [0x58; 20];
const Y: [u8; 20] = [0x59; 20];
/// Every wait for a datagram or a discovered peer ends after this.
const WAIT: Duration = Duration::from_secs(5);

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(group_port: u16, listen_port: u16) -> LsdConfig {
    LsdConfig {
        group: SocketAddrV4::new(GROUP_IP, group_port),
        listen_port,
        interface: LOOPBACK,
    }
}

/// A socket joined to the test group on loopback (to watch what the nodes send).
fn member_socket(group_port: u16) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, group_port).into())?;
    socket.join_multicast_v4(&GROUP_IP, &LOOPBACK)?;
    socket.set_multicast_all_v4(false)?;
    Ok(socket.into())
}

/// A socket that sends to the group over loopback.
fn sender_socket() -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_multicast_if_v4(&LOOPBACK)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(1)?;
    socket.bind(&SocketAddrV4::new(LOOPBACK, 0).into())?;
    Ok(socket.into())
}

/// Does a datagram sent to a group over loopback reach a member on loopback?
fn loopback_multicast_works() -> bool {
    let probe = || -> std::io::Result<bool> {
        let port = free_udp_port();
        let member = member_socket(port)?;
        member.set_read_timeout(Some(Duration::from_secs(1)))?;
        let sender = sender_socket()?;
        let mut buf = [0u8; 16];
        for _ in 0..3 {
            sender.send_to(b"lsd-probe", (GROUP_IP, port))?;
            if let Ok((n, _)) = member.recv_from(&mut buf)
                && &buf[..n] == b"lsd-probe"
            {
                return Ok(true);
            }
        }
        Ok(false)
    };
    match probe() {
        Ok(works) => works,
        Err(e) => {
            eprintln!("loopback multicast probe failed: {e}");
            false
        }
    }
}

/// Undoes `ip link set lo multicast on` if this test did it.
struct LoopbackMulticast {
    turned_on: bool,
}

impl Drop for LoopbackMulticast {
    fn drop(&mut self) {
        if self.turned_on {
            let _ = Command::new("ip")
                .args(["link", "set", "lo", "multicast", "off"])
                .status();
        }
    }
}

fn ensure_loopback_multicast() -> LoopbackMulticast {
    if loopback_multicast_works() {
        return LoopbackMulticast { turned_on: false };
    }
    let lo = Command::new("ip").args(["link", "show", "lo"]).output();
    let lo_flags = lo
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let is_root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    let mut guard = LoopbackMulticast { turned_on: false };
    if is_root && !lo_flags.contains("MULTICAST") {
        let on = Command::new("ip")
            .args(["link", "set", "lo", "multicast", "on"])
            .status();
        guard.turned_on = on.is_ok_and(|s| s.success());
        if guard.turned_on && loopback_multicast_works() {
            return guard;
        }
    }
    panic!(
        "multicast over the loopback interface does not work on this machine, so two LSD \
         nodes here cannot reach each other. `ip link show lo` says: {lo_flags:?}; running \
         as root: {is_root}. As root, try `ip link set lo up` (if it is DOWN), \
         `ip link set lo multicast on` and, if needed, `ip route add 239.0.0.0/8 dev lo`, \
         then run the test again."
    );
}

/// Waits until `rx` yields `want`, collecting everything it yields on the way.
async fn expect_peer(
    rx: &mut mpsc::Receiver<([u8; 20], SocketAddr)>,
    want: ([u8; 20], SocketAddr),
    seen: &mut Vec<([u8; 20], SocketAddr)>,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(peer)) => {
                seen.push(peer);
                if peer == want {
                    return;
                }
            }
            Ok(None) => panic!("peer channel closed while waiting for {want:?}; saw {seen:?}"),
            Err(_) => panic!("no {want:?} within {WAIT:?}; saw {seen:?}"),
        }
    }
}

/// Waits until `observer` sees an announce with `cookie` that names `info_hash`.
async fn expect_announce(observer: &UdpSocket, cookie: &str, info_hash: [u8; 20]) {
    let deadline = Instant::now() + WAIT;
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok(received) = tokio::time::timeout_at(deadline, observer.recv_from(&mut buf)).await
        else {
            panic!("no announce of {info_hash:02x?} with cookie {cookie} within {WAIT:?}");
        };
        let (n, _) = received.unwrap();
        if let Ok(a) = parse_announce(&buf[..n])
            && a.cookie.as_deref() == Some(cookie)
            && a.info_hashes.contains(&info_hash)
        {
            return;
        }
    }
}

/// Datagrams a hostile or broken host might send: random bytes, oversized datagrams,
/// near-announces with bad fields, and well-formed announces for torrents we are not in.
fn garbage(count: usize) -> Vec<Vec<u8>> {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let x_hex: String = X.iter().map(|b| format!("{b:02x}")).collect();
    (0..count)
        .map(|i| match i % 6 {
            0 => (0..next() % 1500).map(|_| next() as u8).collect(),
            1 => vec![b'B'; 9000],
            2 => {
                format!("BT-SEARCH * HTTP/1.1\r\nPort: 0\r\nInfohash: {x_hex}\r\n\r\n").into_bytes()
            }
            3 => format!("BT-SEARCH * HTTP/1.1\r\nPort: 99999\r\nInfohash: {x_hex}\r\n\r\n")
                .into_bytes(),
            4 => {
                let mut m = String::from("BT-SEARCH * HTTP/1.1\nPort: 1\n");
                for _ in 0..25 {
                    m.push_str(&format!("Infohash: {:040x}\n", next() as u128));
                }
                m.into_bytes()
            }
            _ => format!(
                "BT-SEARCH * HTTP/1.1\r\nPort: {}\r\nInfohash: {:040x}\r\n\r\n",
                next() % 65535 + 1,
                next() as u128 | 1
            )
            .into_bytes(),
        })
        .collect()
}

#[tokio::test]
async fn two_nodes_find_each_other_over_loopback_multicast() {
    let _lo = ensure_loopback_multicast();
    timeout(Duration::from_secs(60), two_nodes_scenario())
        .await
        .expect("test took over 60 s");
}

async fn two_nodes_scenario() {
    let group_port = free_udp_port();
    // Listening TCP ports, held so no one else takes them while they are announced.
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind((LOOPBACK, 0)).unwrap())
        .collect();
    let [a_port, b_port, c_port] = [0, 1, 2].map(|i| listeners[i].local_addr().unwrap().port());
    let peer_at = |port| SocketAddr::from((LOOPBACK, port));

    let observer = UdpSocket::from_std({
        let s = member_socket(group_port).unwrap();
        s.set_nonblocking(true).unwrap();
        s
    })
    .unwrap();
    let (a, mut a_rx) = Lsd::start(config(group_port, a_port)).await.unwrap();
    let (b, mut b_rx) = Lsd::start(config(group_port, b_port)).await.unwrap();
    assert_ne!(a.cookie(), b.cookie());
    let mut a_seen = Vec::new();
    let mut b_seen = Vec::new();

    // B joins torrent X first; once its announce is on the wire, B is ready for A's.
    b.set_torrents(vec![X]);
    expect_announce(&observer, b.cookie(), X).await;
    a.set_torrents(vec![X]);
    expect_announce(&observer, a.cookie(), X).await;
    expect_peer(&mut b_rx, (X, peer_at(a_port)), &mut b_seen).await;

    // A garbage flood to the group port: B neither crashes nor stalls nor believes it.
    let flood = UdpSocket::from_std({
        let s = sender_socket().unwrap();
        s.set_nonblocking(true).unwrap();
        s
    })
    .unwrap();
    for datagram in garbage(3000) {
        // Oversized datagrams may be refused locally (EMSGSIZE); that is fine.
        let _ = flood.send_to(&datagram, (GROUP_IP, group_port)).await;
    }

    // A third node, C, announces after the flood: B still hears it...
    let (c, _c_rx) = Lsd::start(config(group_port, c_port)).await.unwrap();
    c.set_torrents(vec![X]);
    expect_peer(&mut b_rx, (X, peer_at(c_port)), &mut b_seen).await;
    // ...and B still announces.
    b.set_torrents(vec![X, Y]);
    expect_announce(&observer, b.cookie(), Y).await;

    // Give any stray datagram a moment to be processed, then check what everyone reported.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(peer) = a_rx.try_recv() {
        a_seen.push(peer);
    }
    while let Ok(peer) = b_rx.try_recv() {
        b_seen.push(peer);
    }
    assert!(
        !a_seen.iter().any(|(_, addr)| addr.port() == a_port),
        "A reported its own announce: {a_seen:?}"
    );
    // A may or may not have read B's first announce before it joined X (the datagram can
    // wait in A's socket buffer), and it hears C's.
    assert!(
        a_seen
            .iter()
            .all(|p| *p == (X, peer_at(b_port)) || *p == (X, peer_at(c_port))),
        "A reported something other than B and C: {a_seen:?}"
    );
    assert!(
        b_seen
            .iter()
            .all(|p| *p == (X, peer_at(a_port)) || *p == (X, peer_at(c_port))),
        "B reported something other than A and C: {b_seen:?}"
    );

    // Shutdown ends the peer stream.
    b.shutdown();
    let end = timeout(WAIT, async { while b_rx.recv().await.is_some() {} }).await;
    assert!(
        end.is_ok(),
        "B's peer channel still open {WAIT:?} after shutdown"
    );
    drop(listeners);
}

#[tokio::test]
async fn start_rejects_a_unicast_group() {
    let cfg = LsdConfig {
        group: SocketAddrV4::new(LOOPBACK, free_udp_port()),
        listen_port: 6881,
        interface: LOOPBACK,
    };
    let err = Lsd::start(cfg)
        .await
        .err()
        .expect("a unicast group must be refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// libtorrent with one torrent it wants to download (no data on disk), LSD on, announcing
/// every second, listening on 127.0.0.1 only. Prints `INFOHASH PORT` once ready, then runs
/// until killed or for argv[2] seconds.
const LT_LSD_PEER: &str = r#"
import libtorrent as lt, os, sys, time
work = sys.argv[1]
src, dst = os.path.join(work, "src"), os.path.join(work, "dst")
os.makedirs(src); os.makedirs(dst)
with open(os.path.join(src, "f.bin"), "wb") as f:
    f.write(os.urandom(65536))
fs = lt.file_storage()
lt.add_files(fs, os.path.join(src, "f.bin"))
ct = lt.create_torrent(fs, 0, lt.create_torrent.v1_only)
lt.set_piece_hashes(ct, src)
ti = lt.torrent_info(ct.generate())
s = lt.session({"listen_interfaces": "127.0.0.1:0", "enable_lsd": True, "enable_dht": False,
    "enable_upnp": False, "enable_natpmp": False, "local_service_announce_interval": 1})
s.add_torrent({"ti": ti, "save_path": dst})
print(str(ti.info_hashes().v1), s.listen_port(), flush=True)
time.sleep(float(sys.argv[2]))
"#;

/// Kills and reaps the child when the test ends, pass or fail.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn from_hex(hex: &str) -> [u8; 20] {
    assert_eq!(hex.len(), 40, "not an info-hash: {hex:?}");
    let mut out = [0u8; 20];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

#[tokio::test]
async fn libtorrent_and_bitpeer_find_each_other() {
    if std::env::var_os("BITPEER_SKIP_INTEROP").is_some_and(|v| v == "1") {
        eprintln!("BITPEER_SKIP_INTEROP=1: not running the libtorrent LSD test");
        return;
    }
    let has_lt = Command::new("/usr/bin/python3")
        .args(["-c", "import libtorrent"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_lt,
        "/usr/bin/python3 cannot import libtorrent: `apt-get install python3-libtorrent`, \
         or set BITPEER_SKIP_INTEROP=1 to skip interop tests"
    );
    let _lo = ensure_loopback_multicast();
    let work = tempfile::tempdir().unwrap();
    let lt = KillOnDrop(
        Command::new("/usr/bin/python3")
            .args(["-c", LT_LSD_PEER])
            .arg(work.path())
            .arg("90")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    timeout(Duration::from_secs(60), libtorrent_scenario(lt))
        .await
        .expect("test took over 60 s");
}

async fn libtorrent_scenario(mut lt: KillOnDrop) {
    // libtorrent's first line, read on a thread so the wait is bounded.
    let stdout = lt.0.stdout.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = line_tx.send(line);
    });
    let line = tokio::task::spawn_blocking(move || line_rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("libtorrent did not start within 30 s");
    let mut words = line.split_whitespace();
    let info_hash = from_hex(words.next().expect("no info-hash from libtorrent"));
    let lt_port: u16 = words
        .next()
        .and_then(|w| w.parse().ok())
        .expect("no port from libtorrent");

    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let our_port = listener.local_addr().unwrap().port();
    let cfg = LsdConfig {
        group: DEFAULT_GROUP_V4,
        listen_port: our_port,
        interface: LOOPBACK,
    };
    let (lsd, mut rx) = Lsd::start(cfg).await.unwrap();
    lsd.set_torrents(vec![info_hash]);

    // We understand libtorrent's announce...
    let mut seen = Vec::new();
    expect_peer(
        &mut rx,
        (info_hash, SocketAddr::from((LOOPBACK, lt_port))),
        &mut seen,
    )
    .await;

    // ...and libtorrent understands ours: it dials our port and asks for the torrent.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut handshake = [0u8; 68];
    loop {
        let (mut conn, from) = tokio::time::timeout_at(deadline, listener.accept())
            .await
            .expect("libtorrent did not dial the port we announced")
            .unwrap();
        let read = tokio::time::timeout_at(deadline, conn.read_exact(&mut handshake)).await;
        if matches!(read, Ok(Ok(_))) && from.ip() == LOOPBACK {
            break;
        }
    }
    assert_eq!(
        &handshake[..20],
        b"\x13BitTorrent protocol",
        "not a BitTorrent handshake"
    );
    assert_eq!(
        handshake[28..48],
        info_hash,
        "libtorrent asked for another torrent"
    );
    lsd.shutdown();
}
