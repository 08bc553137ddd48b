//! uTP over a bad link: two `librqbit-utp` endpoints, created the way the session creates
//! its own (`engine::utp::utp_socket` with `engine::utp::socket_opts`), talk through a
//! simulated link in this process (a `Transport` that holds every datagram 50 ms, drops 1%
//! and lets 1% overtake others, like `tc netem`). 64 MiB must arrive byte for byte, within
//! a bounded time.
//!
//! The link runs on the real clock: `librqbit-utp` reads `std::time::Instant` through an
//! environment trait it does not export, so tokio's paused time cannot drive it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use librqbit_utp::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

type Datagram = (Vec<u8>, SocketAddr);
/// Where the link queues datagrams for an endpoint, with their release time.
type Queue = mpsc::UnboundedSender<(Instant, Datagram)>;

/// A lossy, delaying, reordering link between endpoints, like `tc netem delay 50ms loss 1%
/// reorder 1%`: every datagram is held for `delay`, 1% are lost, and 1% skip the queue
/// (they leave 5 ms early, so they overtake the few sent just before them). Each
/// direction is one queue served in release order, so nothing else is reordered.
struct Link {
    peers: Mutex<Vec<(SocketAddr, Queue)>>,
    rng: Mutex<u64>,
    loss_per_mille: u64,
    reorder_per_mille: u64,
    delay: Duration,
    /// Datagrams sent, lost, sent early.
    stats: Mutex<(u64, u64, u64)>,
}

impl Link {
    fn random(&self) -> u64 {
        let mut s = self.rng.lock().unwrap();
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    fn send(&self, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        let lost = self.random() % 1000 < self.loss_per_mille;
        let early = !lost && self.random() % 1000 < self.reorder_per_mille;
        {
            let mut st = self.stats.lock().unwrap();
            st.0 += 1;
            st.1 += lost as u64;
            st.2 += early as u64;
        }
        if lost {
            return;
        }
        let release = match early {
            true => Instant::now() + self.delay - Duration::from_millis(5),
            false => Instant::now() + self.delay,
        };
        if let Some((_, tx)) = self.peers.lock().unwrap().iter().find(|(a, _)| *a == to) {
            let _ = tx.send((release, (data, from)));
        }
    }
}

/// Delivers what the link holds for one endpoint, in release order, at release time.
async fn deliver(
    mut queue: mpsc::UnboundedReceiver<(Instant, Datagram)>,
    inbox: mpsc::UnboundedSender<Datagram>,
) {
    let mut held: BinaryHeap<Reverse<(Instant, u64, Datagram)>> = BinaryHeap::new();
    let mut n = 0u64;
    loop {
        let next = held.peek().map(|Reverse((t, _, _))| *t);
        tokio::select! {
            got = queue.recv() => match got {
                Some((t, d)) => {
                    n += 1;
                    held.push(Reverse((t, n, d)));
                }
                None => return,
            },
            _ = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = Instant::now();
                while held.peek().is_some_and(|Reverse((t, _, _))| *t <= now) {
                    let Reverse((_, _, d)) = held.pop().unwrap();
                    if inbox.send(d).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

struct SimTransport {
    addr: SocketAddr,
    link: Arc<Link>,
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<Datagram>>,
}

impl SimTransport {
    fn new(link: &Arc<Link>, addr: SocketAddr) -> SimTransport {
        let (tx, rx) = mpsc::unbounded_channel();
        let (qtx, qrx) = mpsc::unbounded_channel();
        link.peers.lock().unwrap().push((addr, qtx));
        tokio::spawn(deliver(qrx, tx));
        SimTransport {
            addr,
            link: link.clone(),
            inbox: tokio::sync::Mutex::new(rx),
        }
    }
}

impl librqbit_dualstack_sockets::PollSendToVectored for SimTransport {
    fn poll_send_to_vectored(
        &self,
        _cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        let data: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        let n = data.len();
        self.link.send(self.addr, target, data);
        Poll::Ready(Ok(n))
    }
}

impl Transport for SimTransport {
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let mut inbox = self.inbox.lock().await;
        match inbox.recv().await {
            Some((data, from)) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok((n, from))
            }
            // The sender ended (the session is shutting down).
            None => std::future::pending().await,
        }
    }

    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl Future<Output = io::Result<usize>> + Send + Sync + 'a {
        self.link.send(self.addr, target, buf.to_vec());
        std::future::ready(Ok(buf.len()))
    }

    fn poll_send_to(
        &self,
        _cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.link.send(self.addr, target, buf.to_vec());
        Poll::Ready(Ok(buf.len()))
    }

    fn bind_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The byte at `i` of stream `k` (not periodic at any power of two).
fn byte_at(k: u64, i: u64) -> u8 {
    let x = (i ^ (k << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i >> 13);
    (x >> 29) as u8
}

/// Streams over the link at once, and the bytes each carries: 64 MiB in all.
const STREAMS: u64 = 8;
const STREAM_LEN: u64 = 8 << 20;

type Sim = librqbit_utp::UtpSocket<SimTransport, engine::utp::DefaultEnv>;

/// Stream `k` from `a` to `b_addr`: its number, then `STREAM_LEN` bytes. The stream is
/// kept open until the reader has everything (`done`).
async fn write_stream(
    k: u64,
    a: Arc<Sim>,
    b_addr: SocketAddr,
    done: tokio::sync::watch::Receiver<bool>,
) {
    let out = engine::utp::connect(&a, b_addr, Duration::from_secs(60))
        .await
        .expect("connect through the link");
    let (_r, mut w) = out.split();
    w.write_all(&k.to_be_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    while off < STREAM_LEN {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = byte_at(k, off + i as u64);
        }
        w.write_all(&buf).await.unwrap();
        off += buf.len() as u64;
    }
    w.flush().await.unwrap();
    let mut done = done;
    let _ = done.wait_for(|d| *d).await;
}

/// Reads one accepted stream: `Some((k, bytes))` once it is complete and correct, `None`
/// for a connection that died before it said which stream it is (a half-open one whose
/// SYN was sent again). Panics on a wrong byte, or on an error after data began.
async fn read_stream(inc: librqbit_utp::UtpStream) -> Option<(u64, u64)> {
    let (mut r, _w) = inc.split();
    let mut id = [0u8; 8];
    r.read_exact(&mut id).await.ok()?;
    let k = u64::from_be_bytes(id);
    assert!(k < STREAMS, "stream number {k}");
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while got < STREAM_LEN {
        let n = r.read(&mut buf).await.expect("read after data began");
        assert!(n > 0, "stream {k} ended early at {got}");
        for (i, b) in buf[..n].iter().enumerate() {
            let at = got + i as u64;
            assert_eq!(*b, byte_at(k, at), "stream {k}: byte {at} differs");
        }
        got += n as u64;
    }
    Some((k, got))
}

/// 64 MiB through a link with 50 ms of delay each way, 1% loss and 1% reordering, as 8
/// concurrent streams of 8 MiB between the two endpoints. (One stream alone is bound by
/// loss-based congestion control to about MSS / RTT × 1.2 / √loss, ~150 KB/s here, so
/// 64 MiB through one stream would take some 8 minutes of real time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_through_a_lossy_reordering_link() {
    let link = Arc::new(Link {
        peers: Mutex::new(Vec::new()),
        rng: Mutex::new(0x2545_F491_4F6C_DD1D),
        loss_per_mille: 10,
        reorder_per_mille: 10,
        delay: Duration::from_millis(50),
        stats: Mutex::new((0, 0, 0)),
    });
    let a_addr: SocketAddr = "10.0.0.1:6881".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:6881".parse().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let opts = engine::utp::socket_opts(cancel.clone());
    let a = engine::utp::utp_socket(SimTransport::new(&link, a_addr), opts.clone()).unwrap();
    let b = engine::utp::utp_socket(SimTransport::new(&link, b_addr), opts).unwrap();

    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(400), async {
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let writers: Vec<_> = (0..STREAMS)
            .map(|k| tokio::spawn(write_stream(k, a.clone(), b_addr, done_rx.clone())))
            .collect();
        let mut readers = tokio::task::JoinSet::new();
        let mut seen = std::collections::HashSet::new();
        let mut total = 0;
        while seen.len() < STREAMS as usize {
            tokio::select! {
                inc = b.accept() => {
                    readers.spawn(read_stream(inc.expect("accept")));
                }
                Some(r) = readers.join_next() => {
                    if let Some((k, n)) = r.unwrap() {
                        assert!(seen.insert(k), "stream {k} twice");
                        total += n;
                    }
                }
            }
        }
        done_tx.send(true).unwrap();
        for w in writers {
            w.await.unwrap();
        }
        total
    })
    .await;
    let elapsed = started.elapsed();
    let (sent, lost, early) = *link.stats.lock().unwrap();
    cancel.cancel();
    let total = result.unwrap_or_else(|_| {
        panic!("transfer did not finish in time ({sent} datagrams, {lost} lost, {early} early)")
    });
    assert_eq!(total, STREAMS * STREAM_LEN);
    // The link did what it should: about 1% lost, about 1% reordered.
    assert!(
        lost * 200 > sent && lost * 50 < sent,
        "{lost} lost of {sent}"
    );
    assert!(
        early * 200 > sent && early * 50 < sent,
        "{early} early of {sent}"
    );
    eprintln!(
        "64 MiB in {:.1} s ({:.2} MB/s), {sent} datagrams, {lost} lost, {early} reordered",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64() / 1e6
    );
}
