//! Local Service Discovery (BEP 14): find peers of our torrents on the local network.
//!
//! Every node sends a small HTTP-like `BT-SEARCH` datagram to the multicast group
//! 239.192.152.143:6771 naming its BitTorrent TCP port and the info-hashes it is in; a node
//! that receives one for a torrent it is also in dials the sender's IP at the announced port.
//! A random per-node `cookie` header lets a node recognise (and drop) its own announces,
//! which come back to it because multicast loop is on (needed so two clients on one host
//! find each other).
//!
//! The module has three layers:
//! - a codec ([`parse_announce`], [`encode_announce`]), bounded for hostile input: at most
//!   [`MAX_DATAGRAM`] bytes and [`MAX_INFOHASHES`] info-hashes per message;
//! - [`LsdCore`], a sans-IO state machine with explicit `now`: when to announce which
//!   torrent (at most once a minute each, again every five minutes) and which incoming
//!   announces become dial candidates (only for our torrents, each peer at most once a
//!   minute per torrent, and a per-source-IP budget so a flood cannot make us dial
//!   endlessly);
//! - [`Lsd`], the tokio shell owning the multicast socket, which moves datagrams between the
//!   socket and the core and hands `(info_hash, peer address)` pairs to the session.
//!
//! IPv6 has its own service ([`Lsd::start_v6`], group `[ff15::efc0:988f]:6771`, the same
//! codec and core) on its own socket.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The BEP 14 IPv4 multicast group.
pub const DEFAULT_GROUP_V4: SocketAddrV4 =
    SocketAddrV4::new(Ipv4Addr::new(239, 192, 152, 143), 6771);

/// The BEP 14 IPv6 multicast group (site-local scope).
pub const DEFAULT_GROUP_V6: SocketAddrV6 = SocketAddrV6::new(
    Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0xefc0, 0x988f),
    6771,
    0,
    0,
);

/// Largest datagram we parse (and send): BEP 14 keeps announces within one unfragmented
/// Ethernet frame.
pub const MAX_DATAGRAM: usize = 1400;

/// Most info-hashes in one message, parsed or sent. 20 `Infohash:` lines plus the other
/// headers stay well under [`MAX_DATAGRAM`].
pub const MAX_INFOHASHES: usize = 20;

/// A torrent is announced at most this often, however often the torrent list changes.
pub const MIN_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(60);

/// A torrent is announced again this long after its last announce.
pub const REANNOUNCE_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The same (info-hash, peer address) is reported at most once in this interval.
pub const PEER_REPEAT_INTERVAL: Duration = Duration::from_secs(60);

/// Per source IP: this many peers may be reported at once...
pub const SOURCE_BURST: u32 = 25;

/// ...and then one more per this interval.
pub const SOURCE_REFILL: Duration = Duration::from_secs(2);

/// Bound on the per-source-IP rate-limit table.
const MAX_SOURCES: usize = 256;

/// Bound on the table of recently reported peers.
const MAX_RECENT_PEERS: usize = 4096;

/// Capacity of the channel of discovered peers; when the session does not keep up, new
/// discoveries are dropped rather than queued (they come again with the next announce).
const PEER_CHANNEL_CAPACITY: usize = 256;

/// Why a datagram is not a BEP 14 announce we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LsdError {
    #[error("datagram of {0} bytes is longer than {MAX_DATAGRAM}")]
    TooLong(usize),
    #[error("datagram is not text")]
    NotText,
    #[error("not a BT-SEARCH request line")]
    NotBtSearch,
    #[error("header line without a colon")]
    MalformedHeader,
    #[error("no Port header")]
    MissingPort,
    #[error("Port header is not a port number in 1..=65535")]
    InvalidPort,
    #[error("Infohash header is not 40 hex digits")]
    InvalidInfohash,
    #[error("no Infohash header")]
    MissingInfohash,
    #[error("more than {MAX_INFOHASHES} info-hashes in one announce")]
    TooManyInfohashes,
}

/// One parsed `BT-SEARCH` announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    /// The `Host` header as sent (the group the sender meant); informative only.
    pub host: Option<String>,
    /// The sender's BitTorrent TCP port.
    pub port: u16,
    /// Distinct info-hashes, in the order sent (1..=[`MAX_INFOHASHES`]).
    pub info_hashes: Vec<[u8; 20]>,
    /// The sender's cookie, used to recognise our own announces.
    pub cookie: Option<String>,
}

/// Formats an announce the way libtorrent does:
///
/// ```text
/// BT-SEARCH * HTTP/1.1\r\n
/// Host: 239.192.152.143:6771\r\n
/// Port: 6881\r\n
/// Infohash: <40 lowercase hex>\r\n   (one line per torrent)
/// cookie: <cookie>\r\n
/// \r\n
/// \r\n
/// ```
///
/// At most [`MAX_INFOHASHES`] info-hashes are written; callers split longer lists. A cookie
/// must be a short token (no CR/LF).
pub fn encode_announce(
    host: SocketAddr,
    port: u16,
    info_hashes: &[[u8; 20]],
    cookie: Option<&str>,
) -> Vec<u8> {
    let mut out = format!("BT-SEARCH * HTTP/1.1\r\nHost: {host}\r\nPort: {port}\r\n");
    for hash in info_hashes.iter().take(MAX_INFOHASHES) {
        out.push_str("Infohash: ");
        for byte in hash {
            out.push_str(&format!("{byte:02x}"));
        }
        out.push_str("\r\n");
    }
    if let Some(cookie) = cookie {
        out.push_str(&format!("cookie: {cookie}\r\n"));
    }
    out.push_str("\r\n\r\n");
    out.into_bytes()
}

/// Parses a `BT-SEARCH` announce. Tolerates LF-only line ends, any case of header names and
/// of the method, surrounding blanks, unknown headers, and a missing blank-line terminator.
pub fn parse_announce(datagram: &[u8]) -> Result<Announce, LsdError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(LsdError::TooLong(datagram.len()));
    }
    let text = std::str::from_utf8(datagram).map_err(|_| LsdError::NotText)?;
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));

    let request = lines.next().unwrap_or_default();
    let mut words = request.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(LsdError::NotBtSearch);
    };
    if !method.eq_ignore_ascii_case("BT-SEARCH")
        || target != "*"
        || !version
            .get(..5)
            .is_some_and(|v| v.eq_ignore_ascii_case("HTTP/"))
    {
        return Err(LsdError::NotBtSearch);
    }

    let mut host = None;
    let mut port = None;
    let mut cookie = None;
    let mut info_hashes: Vec<[u8; 20]> = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            break; // end of headers; anything after is ignored
        }
        let (name, value) = line.split_once(':').ok_or(LsdError::MalformedHeader)?;
        let name = name.trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("Host") {
            host.get_or_insert_with(|| value.to_owned());
        } else if name.eq_ignore_ascii_case("Port") {
            if port.is_none() {
                port = Some(parse_port(value)?);
            }
        } else if name.eq_ignore_ascii_case("Infohash") {
            let hash = parse_hex20(value).ok_or(LsdError::InvalidInfohash)?;
            if !info_hashes.contains(&hash) {
                if info_hashes.len() == MAX_INFOHASHES {
                    return Err(LsdError::TooManyInfohashes);
                }
                info_hashes.push(hash);
            }
        } else if name.eq_ignore_ascii_case("cookie") {
            cookie.get_or_insert_with(|| value.to_owned());
        }
    }
    let port = port.ok_or(LsdError::MissingPort)?;
    if info_hashes.is_empty() {
        return Err(LsdError::MissingInfohash);
    }
    Ok(Announce {
        host,
        port,
        info_hashes,
        cookie,
    })
}

fn parse_port(value: &str) -> Result<u16, LsdError> {
    if value.is_empty() || value.len() > 5 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LsdError::InvalidPort);
    }
    match value.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(LsdError::InvalidPort),
    }
}

fn parse_hex20(value: &str) -> Option<[u8; 20]> {
    let digits = value.as_bytes();
    if digits.len() != 40 {
        return None;
    }
    let mut hash = [0u8; 20];
    for (byte, pair) in hash.iter_mut().zip(digits.chunks_exact(2)) {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        *byte = (hi * 16 + lo) as u8;
    }
    Some(hash)
}

/// Schedule of one torrent's announces.
#[derive(Debug, Clone, Copy)]
struct TorrentEntry {
    /// In the current torrent list (inactive entries are kept only to honour
    /// [`MIN_ANNOUNCE_INTERVAL`] if the torrent comes back).
    active: bool,
    last_announce: Option<Instant>,
    next_announce: Instant,
}

/// The sans-IO LSD state machine: announce schedule and incoming-announce filter.
///
/// Drive it with [`set_torrents`](Self::set_torrents),
/// [`handle_datagram`](Self::handle_datagram), [`poll_transmit`](Self::poll_transmit) (call
/// until `None`) and sleep until [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct LsdCore {
    host: SocketAddr,
    listen_port: u16,
    cookie: String,
    torrents: HashMap<[u8; 20], TorrentEntry>,
    /// Per source IP, the GCRA "theoretical arrival time" of its next reported peer.
    sources: HashMap<IpAddr, Instant>,
    /// When each (info-hash, peer) was last reported.
    recent: HashMap<([u8; 20], SocketAddr), Instant>,
}

impl LsdCore {
    /// `host` is the group we send to (written in the `Host` header), `listen_port` our
    /// BitTorrent TCP port, `cookie` a random token (no CR/LF) identifying this node.
    pub fn new(host: SocketAddr, listen_port: u16, cookie: String) -> Self {
        LsdCore {
            host,
            listen_port,
            cookie,
            torrents: HashMap::new(),
            sources: HashMap::new(),
            recent: HashMap::new(),
        }
    }

    pub fn cookie(&self) -> &str {
        &self.cookie
    }

    /// Replaces the torrents we are in. New ones are announced as soon as allowed (at once,
    /// or [`MIN_ANNOUNCE_INTERVAL`] after an announce made before they were removed).
    pub fn set_torrents(&mut self, info_hashes: &[[u8; 20]], now: Instant) {
        let wanted: std::collections::HashSet<[u8; 20]> = info_hashes.iter().copied().collect();
        for (hash, entry) in &mut self.torrents {
            if !wanted.contains(hash) {
                entry.active = false;
            }
        }
        for hash in wanted {
            let entry = self.torrents.entry(hash).or_insert(TorrentEntry {
                active: false,
                last_announce: None,
                next_announce: now,
            });
            if !entry.active {
                // Back after a removal: announce again as soon as the minimum interval allows.
                entry.active = true;
                entry.next_announce = match entry.last_announce {
                    Some(last) => last + MIN_ANNOUNCE_INTERVAL,
                    None => now,
                };
            }
        }
        self.prune_torrents(now);
    }

    fn prune_torrents(&mut self, now: Instant) {
        self.torrents.retain(|_, e| {
            e.active
                || e.last_announce
                    .is_some_and(|last| now < last + MIN_ANNOUNCE_INTERVAL)
        });
    }

    /// The next datagram to send to the group, if any torrent is due. Call until `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        self.prune_torrents(now);
        let mut due: Vec<[u8; 20]> = self
            .torrents
            .iter()
            .filter(|(_, e)| e.active && e.next_announce <= now)
            .map(|(hash, _)| *hash)
            .collect();
        if due.is_empty() {
            return None;
        }
        due.sort_unstable();
        due.truncate(MAX_INFOHASHES);
        for hash in &due {
            if let Some(entry) = self.torrents.get_mut(hash) {
                entry.last_announce = Some(now);
                entry.next_announce = now + REANNOUNCE_INTERVAL;
            }
        }
        Some(encode_announce(
            self.host,
            self.listen_port,
            &due,
            Some(&self.cookie),
        ))
    }

    /// When [`poll_transmit`](Self::poll_transmit) next has something to send.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.torrents
            .values()
            .filter(|e| e.active)
            .map(|e| e.next_announce)
            .min()
    }

    /// Handles a datagram from `source`. Returns the peers to dial: `(info-hash, source IP
    /// and announced port)` for each of our torrents in the announce, minus our own
    /// announces, peers reported in the last [`PEER_REPEAT_INTERVAL`] and peers over the
    /// source's rate budget ([`SOURCE_BURST`], then one per [`SOURCE_REFILL`]).
    pub fn handle_datagram(
        &mut self,
        source: SocketAddr,
        datagram: &[u8],
        now: Instant,
    ) -> Result<Vec<([u8; 20], SocketAddr)>, LsdError> {
        let announce = parse_announce(datagram)?;
        if announce.cookie.as_deref() == Some(self.cookie.as_str()) {
            return Ok(Vec::new());
        }
        let peer = SocketAddr::new(source.ip(), announce.port);
        let mut found = Vec::new();
        for hash in announce.info_hashes {
            if !self.torrents.get(&hash).is_some_and(|e| e.active) {
                continue;
            }
            if self
                .recent
                .get(&(hash, peer))
                .is_some_and(|&at| now < at + PEER_REPEAT_INTERVAL)
            {
                continue;
            }
            if !self.make_room_for_peer(now) || !self.take_source_token(source.ip(), now) {
                break;
            }
            self.recent.insert((hash, peer), now);
            found.push((hash, peer));
        }
        Ok(found)
    }

    fn make_room_for_peer(&mut self, now: Instant) -> bool {
        if self.recent.len() >= MAX_RECENT_PEERS {
            self.recent
                .retain(|_, &mut at| now < at + PEER_REPEAT_INTERVAL);
        }
        self.recent.len() < MAX_RECENT_PEERS
    }

    /// GCRA token bucket: `tat` is when the source's budget is full again plus one refill.
    fn take_source_token(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_SOURCES {
            self.sources.retain(|_, &mut tat| tat > now);
            if self.sources.len() >= MAX_SOURCES {
                return false;
            }
        }
        let tat = self.sources.entry(ip).or_insert(now);
        let start = (*tat).max(now);
        if start.duration_since(now) > SOURCE_REFILL * (SOURCE_BURST - 1) {
            return false;
        }
        *tat = start + SOURCE_REFILL;
        true
    }
}

/// Where and how the [`Lsd`] service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsdConfig {
    /// The multicast group and port; [`DEFAULT_GROUP_V4`] in real use.
    pub group: SocketAddrV4,
    /// Our BitTorrent TCP port, the one announced.
    pub listen_port: u16,
    /// Local interface address to join the group on and send from;
    /// `Ipv4Addr::UNSPECIFIED` lets the system choose (the default route's interface).
    pub interface: Ipv4Addr,
}

impl LsdConfig {
    /// The standard group on the system-chosen interface.
    pub fn new(listen_port: u16) -> Self {
        LsdConfig {
            group: DEFAULT_GROUP_V4,
            listen_port,
            interface: Ipv4Addr::UNSPECIFIED,
        }
    }
}

/// The running LSD service (IPv4). Dropping it stops it, like [`shutdown`](Self::shutdown).
pub struct Lsd {
    torrents: watch::Sender<Vec<[u8; 20]>>,
    task: JoinHandle<()>,
    cookie: String,
}

impl Lsd {
    /// Binds the group port (with SO_REUSEADDR and SO_REUSEPORT, so other LSD clients on
    /// this host can share it), joins the group, and starts announcing and listening. The
    /// receiver yields peers to dial for the torrents given to
    /// [`set_torrents`](Self::set_torrents), never our own announces; it ends when the
    /// service stops.
    pub async fn start(
        cfg: LsdConfig,
    ) -> io::Result<(Lsd, mpsc::Receiver<([u8; 20], SocketAddr)>)> {
        let socket = UdpSocket::from_std(multicast_socket(&cfg)?)?;
        Ok(Self::spawn(
            socket,
            SocketAddr::V4(cfg.group),
            cfg.listen_port,
        ))
    }

    /// [`Lsd::start`] over IPv6: the group `cfg.group` (normally [`DEFAULT_GROUP_V6`])
    /// joined on the interface of index `cfg.interface` (0: the system's choice).
    pub async fn start_v6(
        cfg: LsdConfigV6,
    ) -> io::Result<(Lsd, mpsc::Receiver<([u8; 20], SocketAddr)>)> {
        let socket = UdpSocket::from_std(multicast_socket_v6(&cfg)?)?;
        Ok(Self::spawn(
            socket,
            SocketAddr::V6(cfg.group),
            cfg.listen_port,
        ))
    }

    fn spawn(
        socket: UdpSocket,
        group: SocketAddr,
        listen_port: u16,
    ) -> (Lsd, mpsc::Receiver<([u8; 20], SocketAddr)>) {
        let cookie = random_cookie();
        let core = LsdCore::new(group, listen_port, cookie.clone());
        let (torrents_tx, torrents_rx) = watch::channel(Vec::new());
        let (peers_tx, peers_rx) = mpsc::channel(PEER_CHANNEL_CAPACITY);
        let task = tokio::spawn(run(socket, group, core, torrents_rx, peers_tx));
        (
            Lsd {
                torrents: torrents_tx,
                task,
                cookie,
            },
            peers_rx,
        )
    }

    /// Replaces the torrents we announce and want peers for. Leave out private torrents
    /// (BEP 27): their peers come from their trackers only.
    pub fn set_torrents(&self, info_hashes: Vec<[u8; 20]>) {
        self.torrents.send_replace(info_hashes);
    }

    /// Stops announcing and listening, closes the socket (leaving the group) and ends the
    /// peer receiver.
    pub fn shutdown(&self) {
        self.task.abort();
    }

    /// This node's cookie, as sent in its announces.
    pub fn cookie(&self) -> &str {
        &self.cookie
    }
}

impl Drop for Lsd {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A non-blocking UDP socket for `group`'s family that other LSD clients on this host can
/// share (SO_REUSEADDR, SO_REUSEPORT); an error if `group` is not multicast.
fn shared_socket(group: IpAddr) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    if !group.is_multicast() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("LSD group {group} is not a multicast address"),
        ));
    }
    let socket = Socket::new(
        Domain::for_address(SocketAddr::new(group, 0)),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if group.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    #[cfg(all(
        unix,
        not(any(target_os = "solaris", target_os = "illumos", target_os = "cygwin"))
    ))]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn multicast_socket(cfg: &LsdConfig) -> io::Result<std::net::UdpSocket> {
    let group = *cfg.group.ip();
    let socket = shared_socket(IpAddr::V4(group))?;
    socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.group.port()).into())?;
    socket.join_multicast_v4(&group, &cfg.interface)?;
    // Only datagrams of the group we joined, not of groups other sockets on this host joined
    // on the same port.
    #[cfg(target_os = "linux")]
    socket.set_multicast_all_v4(false)?;
    if !cfg.interface.is_unspecified() {
        socket.set_multicast_if_v4(&cfg.interface)?;
    }
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(1)?;
    Ok(socket.into())
}

/// Where and how the IPv6 [`Lsd`] service runs ([`Lsd::start_v6`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LsdConfigV6 {
    /// The multicast group and port; [`DEFAULT_GROUP_V6`] in real use.
    pub group: SocketAddrV6,
    /// Our BitTorrent TCP port, the one announced.
    pub listen_port: u16,
    /// Index of the interface to join the group on and send from (0: the system's choice;
    /// see [`interface_index`]).
    pub interface: u32,
}

/// The index of the interface that has `ip` (from `/proc/net/if_inet6`), if one does.
pub fn interface_index(ip: Ipv6Addr) -> Option<u32> {
    let text = std::fs::read_to_string("/proc/net/if_inet6").ok()?;
    let want: String = ip.octets().iter().map(|b| format!("{b:02x}")).collect();
    text.lines().take(4096).find_map(|line| {
        let mut f = line.split_whitespace();
        (f.next()? == want)
            .then(|| u32::from_str_radix(f.next()?, 16).ok())
            .flatten()
    })
}

fn multicast_socket_v6(cfg: &LsdConfigV6) -> io::Result<std::net::UdpSocket> {
    let group = *cfg.group.ip();
    let socket = shared_socket(IpAddr::V6(group))?;
    socket.bind(&SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, cfg.group.port(), 0, 0).into())?;
    socket.join_multicast_v6(&group, cfg.interface)?;
    #[cfg(target_os = "linux")]
    socket.set_multicast_all_v6(false)?;
    if cfg.interface != 0 {
        socket.set_multicast_if_v6(cfg.interface)?;
    }
    socket.set_multicast_loop_v6(true)?;
    socket.set_multicast_hops_v6(1)?;
    Ok(socket.into())
}

/// A random hex token; not secret, only distinct per node.
fn random_cookie() -> String {
    let mut hasher = RandomState::new().build_hasher();
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    hasher.write_u128(since_epoch.map(|d| d.as_nanos()).unwrap_or_default());
    hasher.write_u32(std::process::id());
    format!("{:08x}", hasher.finish() as u32)
}

async fn run(
    socket: UdpSocket,
    group: SocketAddr,
    mut core: LsdCore,
    mut torrents: watch::Receiver<Vec<[u8; 20]>>,
    peers: mpsc::Sender<([u8; 20], SocketAddr)>,
) {
    // One byte more than we accept, so an oversized datagram is seen as such.
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut torrents_open = true;
    loop {
        let now = Instant::now();
        while let Some(datagram) = core.poll_transmit(now) {
            // A failed send (no route, interface down) is retried at the next announce.
            let _ = socket.send_to(&datagram, group).await;
        }
        let deadline = core.poll_timeout().map(tokio::time::Instant::from_std);
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                match received {
                    Ok((len, source)) => {
                        if let Ok(found) = core.handle_datagram(source, &buf[..len], Instant::now()) {
                            for peer in found {
                                let _ = peers.try_send(peer);
                            }
                        }
                    }
                    // UDP receive errors are per-datagram (e.g. ICMP); pause briefly so a
                    // persistent one cannot spin this task.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            changed = torrents.changed(), if torrents_open => {
                if changed.is_ok() {
                    let list = torrents.borrow_and_update().clone();
                    core.set_torrents(&list, Instant::now());
                } else {
                    torrents_open = false;
                }
            }
            _ = sleep_until(deadline) => {}
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GROUP: SocketAddr = SocketAddr::V4(DEFAULT_GROUP_V4);
    const X: [u8; 20] = [0xab; 20];
    const Y: [u8; 20] = [0x01; 20];

    fn hex(hash: &[u8; 20]) -> String {
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn src(ip: [u8; 4]) -> SocketAddr {
        SocketAddr::from((ip, 6771))
    }

    #[test]
    fn encodes_like_libtorrent() {
        let msg = encode_announce(GROUP, 6881, &[X], Some("5fe1"));
        let expected = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n\
             Infohash: {}\r\ncookie: 5fe1\r\n\r\n\r\n",
            hex(&X)
        );
        assert_eq!(String::from_utf8(msg).unwrap(), expected);
    }

    #[test]
    fn parses_libtorrent_announce() {
        let msg = format!(
            "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n\
             Infohash: {}\r\ncookie: 1a2b3c\r\n\r\n\r\n",
            hex(&X).to_uppercase()
        );
        let a = parse_announce(msg.as_bytes()).unwrap();
        assert_eq!(a.host.as_deref(), Some("239.192.152.143:6771"));
        assert_eq!(a.port, 6881);
        assert_eq!(a.info_hashes, vec![X]);
        assert_eq!(a.cookie.as_deref(), Some("1a2b3c"));
    }

    #[test]
    fn tolerates_lf_only_and_header_case_and_no_cookie() {
        let msg = format!(
            "bt-search * HTTP/1.1\nHOST:239.192.152.143:6771\nport:  51413 \n\
             x-other: y\ninfohash:{}\nINFOHASH: {}\n",
            hex(&X),
            hex(&Y)
        );
        let a = parse_announce(msg.as_bytes()).unwrap();
        assert_eq!(a.port, 51413);
        assert_eq!(a.info_hashes, vec![X, Y]);
        assert_eq!(a.cookie, None);
    }

    #[test]
    fn rejects_bad_messages() {
        let ok_hash = hex(&X);
        let with = |port: &str, hash: &str| {
            format!("BT-SEARCH * HTTP/1.1\r\nPort: {port}\r\nInfohash: {hash}\r\n\r\n")
        };
        assert_eq!(
            parse_announce(with("0", &ok_hash).as_bytes()),
            Err(LsdError::InvalidPort)
        );
        assert_eq!(
            parse_announce(with("65536", &ok_hash).as_bytes()),
            Err(LsdError::InvalidPort)
        );
        assert_eq!(
            parse_announce(with("-1", &ok_hash).as_bytes()),
            Err(LsdError::InvalidPort)
        );
        assert_eq!(
            parse_announce(with("+80", &ok_hash).as_bytes()),
            Err(LsdError::InvalidPort)
        );
        assert_eq!(
            parse_announce(with("", &ok_hash).as_bytes()),
            Err(LsdError::InvalidPort)
        );
        assert_eq!(
            parse_announce(with("6881", &ok_hash[..39]).as_bytes()),
            Err(LsdError::InvalidInfohash)
        );
        let mut bad_digit = ok_hash.clone();
        bad_digit.replace_range(0..1, "g");
        assert_eq!(
            parse_announce(with("6881", &bad_digit).as_bytes()),
            Err(LsdError::InvalidInfohash)
        );
        assert_eq!(
            parse_announce(
                format!("BT-SEARCH * HTTP/1.1\r\nInfohash: {ok_hash}\r\n\r\n").as_bytes()
            ),
            Err(LsdError::MissingPort)
        );
        assert_eq!(
            parse_announce(b"BT-SEARCH * HTTP/1.1\r\nPort: 6881\r\n\r\n"),
            Err(LsdError::MissingInfohash)
        );
        assert_eq!(
            parse_announce(
                format!("M-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: {ok_hash}\r\n").as_bytes()
            ),
            Err(LsdError::NotBtSearch)
        );
        assert_eq!(
            parse_announce(b"BT-SEARCH * HTTP/1.1\r\nPort 6881\r\n"),
            Err(LsdError::MalformedHeader)
        );
        assert_eq!(parse_announce(b"\xff\xfe"), Err(LsdError::NotText));
        assert_eq!(parse_announce(b""), Err(LsdError::NotBtSearch));
    }

    #[test]
    fn bounds_size_and_infohash_count() {
        let long = vec![b'a'; MAX_DATAGRAM + 1];
        assert_eq!(
            parse_announce(&long),
            Err(LsdError::TooLong(MAX_DATAGRAM + 1))
        );

        let hashes: Vec<[u8; 20]> = (0..=MAX_INFOHASHES as u8).map(|i| [i; 20]).collect();
        let mut msg = String::from("BT-SEARCH * HTTP/1.1\nPort: 1\n");
        for h in &hashes {
            msg.push_str(&format!("Infohash:{}\n", hex(h)));
        }
        assert!(msg.len() <= MAX_DATAGRAM);
        assert_eq!(
            parse_announce(msg.as_bytes()),
            Err(LsdError::TooManyInfohashes)
        );

        // Our own largest message fits and parses.
        let full = encode_announce(GROUP, 65535, &hashes[..MAX_INFOHASHES], Some("ffffffff"));
        assert!(full.len() <= MAX_DATAGRAM, "{}", full.len());
        assert_eq!(
            parse_announce(&full).unwrap().info_hashes,
            hashes[..MAX_INFOHASHES]
        );
    }

    #[test]
    fn announce_schedule() {
        let t0 = Instant::now();
        let mut core = LsdCore::new(GROUP, 6881, "me".into());
        assert_eq!(core.poll_transmit(t0), None);
        assert_eq!(core.poll_timeout(), None);

        core.set_torrents(&[X], t0);
        assert_eq!(core.poll_timeout(), Some(t0));
        let sent = parse_announce(&core.poll_transmit(t0).unwrap()).unwrap();
        assert_eq!(sent.info_hashes, vec![X]);
        assert_eq!(sent.port, 6881);
        assert_eq!(sent.cookie.as_deref(), Some("me"));
        assert_eq!(core.poll_transmit(t0), None);
        assert_eq!(core.poll_timeout(), Some(t0 + REANNOUNCE_INTERVAL));

        // Removing and re-adding X does not make it announce before a minute has passed.
        let t1 = t0 + Duration::from_secs(10);
        core.set_torrents(&[], t1);
        core.set_torrents(&[X, Y], t1);
        let sent = parse_announce(&core.poll_transmit(t1).unwrap()).unwrap();
        assert_eq!(sent.info_hashes, vec![Y]);
        assert_eq!(core.poll_transmit(t1), None);
        assert_eq!(core.poll_timeout(), Some(t0 + MIN_ANNOUNCE_INTERVAL));
        let t2 = t0 + MIN_ANNOUNCE_INTERVAL;
        assert_eq!(
            parse_announce(&core.poll_transmit(t2).unwrap())
                .unwrap()
                .info_hashes,
            vec![X]
        );

        // Re-announce after five minutes, both torrents in one datagram once aligned.
        let t3 = t2 + REANNOUNCE_INTERVAL;
        let sent = parse_announce(&core.poll_transmit(t3).unwrap()).unwrap();
        assert_eq!(sent.info_hashes.len(), 2);
        assert_eq!(core.poll_transmit(t3), None);

        // Many torrents are split into datagrams of at most MAX_INFOHASHES.
        let many: Vec<[u8; 20]> = (0..45u8).map(|i| [i; 20]).collect();
        let mut core = LsdCore::new(GROUP, 6881, "me".into());
        core.set_torrents(&many, t0);
        let mut total = 0;
        while let Some(d) = core.poll_transmit(t0) {
            assert!(d.len() <= MAX_DATAGRAM);
            total += parse_announce(&d).unwrap().info_hashes.len();
        }
        assert_eq!(total, 45);
    }

    fn announce_from(port: u16, hashes: &[[u8; 20]], cookie: &str) -> Vec<u8> {
        encode_announce(GROUP, port, hashes, Some(cookie))
    }

    #[test]
    fn incoming_filtering() {
        let t0 = Instant::now();
        let mut core = LsdCore::new(GROUP, 6881, "me".into());
        core.set_torrents(&[X], t0);
        let from = src([10, 0, 0, 7]);
        let peer = SocketAddr::from(([10, 0, 0, 7], 7000));

        // Our own announce (looped back) is ignored.
        assert_eq!(
            core.handle_datagram(from, &announce_from(7000, &[X], "me"), t0),
            Ok(vec![])
        );
        // Another node's announce for our torrent is reported; unknown torrents are not.
        assert_eq!(
            core.handle_datagram(from, &announce_from(7000, &[X, Y], "other"), t0),
            Ok(vec![(X, peer)])
        );
        // The same peer again within a minute is not reported again...
        assert_eq!(
            core.handle_datagram(from, &announce_from(7000, &[X], "other"), t0),
            Ok(vec![])
        );
        // ...but after a minute it is.
        let t1 = t0 + PEER_REPEAT_INTERVAL;
        assert_eq!(
            core.handle_datagram(from, &announce_from(7000, &[X], "other"), t1),
            Ok(vec![(X, peer)])
        );
        assert!(core.handle_datagram(from, b"garbage", t1).is_err());
    }

    #[test]
    fn flood_from_one_source_is_rate_limited() {
        let t0 = Instant::now();
        let mut core = LsdCore::new(GROUP, 6881, "me".into());
        core.set_torrents(&[X], t0);
        let from = src([10, 0, 0, 9]);
        let mut reported = 0;
        for port in 1..=1000u16 {
            reported += core
                .handle_datagram(from, &announce_from(port, &[X], "evil"), t0)
                .unwrap()
                .len();
        }
        assert_eq!(reported, SOURCE_BURST as usize);
        // Another source is unaffected.
        assert_eq!(
            core.handle_datagram(src([10, 0, 0, 10]), &announce_from(1, &[X], "ok"), t0)
                .unwrap()
                .len(),
            1
        );
        // The flooder gets one more per refill interval.
        let t1 = t0 + SOURCE_REFILL;
        let mut later = 0;
        for port in 2000..2100u16 {
            later += core
                .handle_datagram(from, &announce_from(port, &[X], "evil"), t1)
                .unwrap()
                .len();
        }
        assert_eq!(later, 1);
    }

    #[test]
    fn source_table_is_bounded() {
        let t0 = Instant::now();
        let mut core = LsdCore::new(GROUP, 6881, "me".into());
        core.set_torrents(&[X], t0);
        for i in 0..2000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            let from = SocketAddr::new(ip.into(), 1);
            let _ = core.handle_datagram(from, &announce_from(1, &[X], "x"), t0);
        }
        assert!(core.sources.len() <= MAX_SOURCES);
        assert!(core.recent.len() <= MAX_RECENT_PEERS);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let _ = parse_announce(&data);
            let mut core = LsdCore::new(GROUP, 1, "me".into());
            core.set_torrents(&[X], Instant::now());
            let _ = core.handle_datagram(src([1, 2, 3, 4]), &data, Instant::now());
        }

        #[test]
        fn mutated_announces_never_panic(
            cut in 0usize..200,
            noise in proptest::collection::vec(any::<u8>(), 0..40),
            at in 0usize..200,
        ) {
            let mut msg = announce_from(6881, &[X, Y], "c");
            msg.truncate(cut.min(msg.len()));
            let at = at.min(msg.len());
            msg.splice(at..at, noise);
            let _ = parse_announce(&msg);
        }

        #[test]
        fn roundtrip(
            port in 1u16..,
            hashes in proptest::collection::btree_set(any::<[u8; 20]>(), 1..=MAX_INFOHASHES),
            cookie in "[0-9a-zA-Z]{0,16}",
        ) {
            let hashes: Vec<[u8; 20]> = hashes.into_iter().collect();
            let msg = encode_announce(GROUP, port, &hashes, Some(&cookie));
            prop_assert!(msg.len() <= MAX_DATAGRAM);
            let a = parse_announce(&msg).unwrap();
            prop_assert_eq!(a.port, port);
            prop_assert_eq!(a.info_hashes, hashes);
            prop_assert_eq!(a.cookie, Some(cookie));
            prop_assert_eq!(a.host, Some(GROUP.to_string()));
        }
    }
}
