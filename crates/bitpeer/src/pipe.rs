//! `bitpeer pipe listen` and `bitpeer pipe connect`: a netcat between two machines.
//!
//! Standard input goes to the peer and the peer's bytes to standard output, binary safe, in
//! both directions at once. The end of standard input is sent as the end of the stream (a TCP
//! half-close, as `nc -N` does) and the command exits once both directions are done, so
//! `tar c DIR | bitpeer pipe listen` and `bitpeer pipe connect KEY | tar x` just work.
//!
//! By default the stream is end-to-end encrypted and authenticated (Noise NK, see the
//! `pipe` crate) with the listener's ed25519 identity, kept in `--key FILE` or
//! `$XDG_STATE_HOME/bitpeer/pipe.key`. The listener prints `ticket: KEY@ADDR,...` and
//! `key: KEY` on stderr, and publishes its addresses in the mainline DHT as a BEP 44 mutable
//! item signed by that key (salt `bitpeer-pipe`, re-put every 30 minutes with a higher
//! `seq`, well inside the items' 2-hour life). `connect KEY` looks the item up (its
//! signature is checked by the DHT layer), dials the addresses, and the handshake succeeds
//! only with the holder of the key; `connect TICKET` needs no DHT.
//!
//! With `--plain` the pipe is a bare TCP byte stream, so either side can be netcat
//! (`nc -l -p PORT`, `nc -N HOST PORT`). The bytes move on two threads with blocking sockets:
//! nothing here needs an event loop, and this is as fast as netcat. The DHT runs on its own
//! thread with a small Tokio runtime.

use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, SystemTime};

use dht::item::Item;
use pipe::record::{self, SALT, Ticket, key_hex, parse_key};

use crate::dht_cmd::{load_or_create_key, start_dht};
use crate::{CliError, CliResult};

/// How long a peer has for the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the listener puts its address record again (items live 2 hours).
const REPUBLISH: Duration = Duration::from_secs(30 * 60);

/// Bytes moved per read.
const CHUNK: usize = 256 * 1024;

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  tar c DIR | bitpeer pipe listen          # prints `key: KEY` and `ticket: TICKET` on stderr
  bitpeer pipe connect KEY | tar x         # found through the DHT, encrypted end to end
  bitpeer pipe connect TICKET | tar x      # the same without the DHT
  bitpeer pipe listen --plain --listen 0.0.0.0:5000   # a bare TCP stream, like nc -l -p 5000
  bitpeer pipe connect --plain HOST:5000   # like nc -N HOST 5000")]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Wait for one peer, then copy stdin to it and it to stdout (the server role).
    Listen(ListenArgs),
    /// Connect to a listener, then copy stdin to it and it to stdout (the client role).
    Connect(ConnectArgs),
}

#[derive(clap::Args)]
struct ListenArgs {
    /// The TCP address to listen on (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    listen: String,
    /// A bare TCP stream, no encryption, no key, no DHT: the peer may be netcat.
    #[arg(long)]
    plain: bool,
    /// Our identity: an ed25519 secret seed in hex, created (mode 0600) when missing.
    /// Default: $XDG_STATE_HOME/bitpeer/pipe.key (or ~/.local/state/bitpeer/pipe.key).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    #[command(flatten)]
    dht: PipeDhtArgs,
    /// Seconds between puts of the address record (for tests; items live 2 hours).
    #[arg(long, value_name = "SECS", default_value_t = REPUBLISH.as_secs(), hide = true)]
    republish_every: u64,
}

#[derive(clap::Args)]
struct ConnectArgs {
    /// Whom to connect to: a KEY (64 hex digits, found through the DHT), a TICKET
    /// (KEY@ADDR[,ADDR...], as `pipe listen` prints it) or, with --plain, HOST:PORT.
    target: String,
    /// A bare TCP stream, no encryption: the listener may be netcat (`nc -l -p PORT`).
    #[arg(long)]
    plain: bool,
    #[command(flatten)]
    dht: PipeDhtArgs,
}

#[derive(clap::Args)]
struct PipeDhtArgs {
    /// Do not use the mainline DHT: the listener does not publish its address, and the
    /// connector needs a TICKET.
    #[arg(long)]
    no_dht: bool,
    /// A DHT node to join through, instead of the well-known routers; repeatable.
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    dht_bootstrap: Vec<String>,
}

pub fn run(args: Args) -> CliResult {
    match args.command {
        Sub::Listen(a) => listen(a),
        Sub::Connect(a) => connect(a),
    }
}

fn listen(a: ListenArgs) -> CliResult {
    let addr: SocketAddr = a.listen.parse().map_err(|_| {
        CliError::new(format!(
            "bad --listen address `{}` (expected HOST:PORT)",
            a.listen
        ))
    })?;
    let seed = if a.plain {
        None
    } else {
        let path = match a.key.clone() {
            Some(p) => p,
            None => state_dir()
                .ok_or_else(|| {
                    CliError::new("no state folder ($XDG_STATE_HOME or $HOME); give --key FILE")
                })?
                .join("pipe.key"),
        };
        Some(load_or_create_key(&path)?)
    };
    let listener = TcpListener::bind(addr)
        .map_err(|e| CliError::new(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::new(format!("cannot listen on {addr}: {e}")))?;
    let Some(seed) = seed else {
        eprintln!("listening on {local}");
        let (stream, _) = listener
            .accept()
            .map_err(|e| CliError::new(format!("accept failed: {e}")))?;
        drop(listener);
        return pump_plain(stream);
    };
    let key = dht::item::public_key(&seed);
    let ticket = Ticket {
        key,
        addrs: advertised(local),
    };
    eprintln!("ticket: {ticket}");
    eprintln!("key: {}", key_hex(&key));
    if !a.dht.no_dht {
        let bind = SocketAddr::new(local.ip(), 0);
        let bootstrap = a.dht.dht_bootstrap.clone();
        let addrs = ticket.addrs.clone();
        let every = Duration::from_secs(a.republish_every.max(1));
        thread::spawn(move || publish_forever(bind, bootstrap, seed, addrs, every));
    }
    // Handshakes run on their own threads (at most MAX_HANDSHAKES at once), so a peer that
    // connects and says nothing delays nobody; the first to complete one is our peer.
    let (found_tx, found) = mpsc::channel();
    thread::spawn(move || accept_handshakes(listener, seed, found_tx));
    let (stream, tx, rx, peer) = found
        .recv()
        .map_err(|_| CliError::new("the listening socket failed"))?;
    eprintln!("connected: {peer}");
    pump_noise(stream, tx, rx)
}

/// Most handshakes in progress at once; connections beyond it are closed at once.
const MAX_HANDSHAKES: usize = 64;

type Accepted = (TcpStream, pipe::Sender, pipe::Receiver, SocketAddr);

fn accept_handshakes(listener: TcpListener, seed: [u8; 32], found: mpsc::Sender<Accepted>) {
    let busy = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    while !done.load(Ordering::Relaxed) {
        let (mut stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("warning: accept failed: {e}");
                thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if done.load(Ordering::Relaxed) {
            break;
        }
        if busy.load(Ordering::Relaxed) >= MAX_HANDSHAKES {
            eprintln!("warning: dropped a connection from {peer}: too many handshakes at once");
            continue;
        }
        busy.fetch_add(1, Ordering::Relaxed);
        let (busy, done, found) = (busy.clone(), done.clone(), found.clone());
        thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
            let _ = stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT));
            match pipe::noise::accept(&mut stream, &seed) {
                Ok((tx, rx)) if !done.swap(true, Ordering::Relaxed) => {
                    let _ = stream.set_read_timeout(None);
                    let _ = stream.set_write_timeout(None);
                    let _ = found.send((stream, tx, rx, peer));
                }
                Ok(_) => {}
                // A stranger, a scanner, or someone who dialled another key: drop it.
                Err(e) => eprintln!("warning: dropped a connection from {peer}: {e}"),
            }
            busy.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

fn connect(a: ConnectArgs) -> CliResult {
    if a.plain {
        let stream = dial(&a.target)?;
        return pump_plain(stream);
    }
    let ticket = if a.target.contains('@') {
        a.target
            .parse::<Ticket>()
            .map_err(|e| CliError::new(e.to_string()))?
    } else if let Some(key) = parse_key(&a.target) {
        if a.dht.no_dht {
            return Err(CliError::new(
                "a bare KEY is found through the DHT: give a TICKET (KEY@ADDR) with --no-dht",
            ));
        }
        lookup(key, &a.dht.dht_bootstrap)?
    } else {
        return Err(CliError::new(format!(
            "`{}` is not a KEY or a TICKET; HOST:PORT needs --plain (no encryption, and no \
             check of who answers)",
            a.target
        )));
    };
    let mut last = String::from("no address");
    for addr in &ticket.addrs {
        let mut stream = match TcpStream::connect_timeout(addr, HANDSHAKE_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                last = format!("{addr}: {e}");
                continue;
            }
        };
        let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
        match pipe::noise::connect(&mut stream, &ticket.key) {
            Ok((tx, rx)) => {
                let _ = stream.set_read_timeout(None);
                return pump_noise(stream, tx, rx);
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(CliError::new(format!(
        "no listener with key {} answered ({last})",
        key_hex(&ticket.key)
    )))
}

/// `$XDG_STATE_HOME/bitpeer` or `~/.local/state/bitpeer`.
fn state_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("bitpeer"))
}

/// The addresses to tell connectors: the listening address, or for a wildcard one the
/// address this host would use to reach the internet (found without sending anything).
fn advertised(local: SocketAddr) -> Vec<SocketAddr> {
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let probe: SocketAddr = if local.is_ipv4() {
        "192.0.2.1:9".parse().expect("addr")
    } else {
        "[2001:db8::1]:9".parse().expect("addr")
    };
    let any: IpAddr = if local.is_ipv4() {
        [0, 0, 0, 0].into()
    } else {
        [0u16; 8].into()
    };
    let ip = UdpSocket::bind(SocketAddr::new(any, 0))
        .and_then(|u| u.connect(probe).and_then(|_| u.local_addr()))
        .map(|a| a.ip())
        .unwrap_or(if local.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            [0, 0, 0, 0, 0, 0, 0, 1u16].into()
        });
    vec![SocketAddr::new(ip, local.port())]
}

/// Keep our address record in the DHT, with a higher seq each time. Runs until the process
/// exits; reports on stderr.
fn publish_forever(
    bind: SocketAddr,
    bootstrap: Vec<String>,
    seed: [u8; 32],
    addrs: Vec<SocketAddr>,
    every: Duration,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warning: no DHT: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let dht = match start_dht(bind, &bootstrap, false).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("warning: not published in the DHT: {e}");
                return;
            }
        };
        let key = dht::item::public_key(&seed);
        let value = record::encode_addrs(&addrs);
        let mut seq = 0i64;
        loop {
            // Above what the DHT holds (an earlier run) and above the clock, so a restart
            // after a crash still publishes something newer.
            let found = dht.get_mutable(key, SALT.to_vec()).await;
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            seq = [
                seq + 1,
                now,
                found.item.and_then(|i| i.seq()).unwrap_or(0) + 1,
            ]
            .into_iter()
            .max()
            .unwrap_or(1);
            let wait = match Item::sign(&seed, SALT.to_vec(), seq, value.clone()) {
                Ok(item) => {
                    let done = dht.put(item, None).await;
                    let n = done.stats.announce_acks;
                    eprintln!("published to {n} DHT nodes (seq {seq})");
                    if n == 0 {
                        Duration::from_secs(60).min(every)
                    } else {
                        every
                    }
                }
                Err(e) => {
                    eprintln!("warning: cannot sign the address record: {e}");
                    return;
                }
            };
            tokio::time::sleep(wait).await;
        }
    });
}

/// The listener's addresses from its DHT record (the DHT layer checks the signature and
/// that the record is under `key` with our salt).
fn lookup(key: [u8; 32], bootstrap: &[String]) -> CliResult<Ticket> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("cannot start the runtime: {e}")))?;
    let found = rt.block_on(async {
        let dht = start_dht("0.0.0.0:0".parse().expect("addr"), bootstrap, true).await?;
        let found = dht.get_mutable(key, SALT.to_vec()).await;
        let _ = dht.shutdown().await;
        Ok::<_, CliError>(found)
    });
    rt.shutdown_timeout(Duration::from_millis(200));
    let found = found?;
    let item = found.item.ok_or_else(|| {
        CliError::new(format!(
            "no address record for key {} in the DHT ({} nodes asked)",
            key_hex(&key),
            found.stats.queries
        ))
    })?;
    let addrs = record::decode_addrs(item.value())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| CliError::new("the key's DHT record holds no address"))?;
    Ok(Ticket { key, addrs })
}

/// Connect to `HOST:PORT`, trying each address it resolves to.
fn dial(target: &str) -> CliResult<TcpStream> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .map_err(|e| CliError::new(format!("cannot resolve `{target}`: {e}")))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(CliError::new(match last {
        Some(e) => format!("cannot connect to {target}: {e}"),
        None => format!("`{target}` resolves to no address"),
    }))
}

fn io_err(what: &str) -> impl Fn(io::Error) -> CliError + '_ {
    move |e| CliError::new(format!("{what}: {e}"))
}

/// Copy stdin to the socket (then half-close it) and the socket to stdout, until both are
/// done.
fn pump_plain(stream: TcpStream) -> CliResult {
    let _ = stream.set_nodelay(true);
    let up_sock = stream.try_clone().map_err(io_err("socket"))?;
    let up = thread::spawn(move || -> io::Result<()> {
        let mut w = &up_sock;
        copy_stdin(|chunk| w.write_all(chunk))?;
        up_sock.shutdown(Shutdown::Write)
    });
    let mut r = &stream;
    copy_to_stdout(|buf| r.read(buf)).map_err(io_err("receiving"))?;
    match up.join() {
        Ok(r) => r.map_err(io_err("sending")),
        Err(_) => Err(CliError::new("the sending thread failed")),
    }
}

/// The encrypted pump: stdin in Noise frames to the socket, then the end marker and a
/// half-close; the peer's frames to stdout until its end marker.
fn pump_noise(stream: TcpStream, mut tx: pipe::Sender, mut rx: pipe::Receiver) -> CliResult {
    let _ = stream.set_nodelay(true);
    let up_sock = stream.try_clone().map_err(io_err("socket"))?;
    let up = thread::spawn(move || -> io::Result<()> {
        let mut w = &up_sock;
        copy_stdin(|chunk| tx.send(&mut w, chunk).map_err(io::Error::other))?;
        tx.finish(&mut w).map_err(io::Error::other)?;
        up_sock.shutdown(Shutdown::Write)
    });
    let mut r = BufReader::with_capacity(CHUNK, &stream);
    let mut stdout = io::stdout().lock();
    loop {
        match rx.recv(&mut r) {
            Ok(Some(chunk)) => match stdout.write_all(chunk) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
                Err(e) => return Err(CliError::new(format!("writing stdout: {e}"))),
            },
            Ok(None) => break,
            Err(e) => return Err(CliError::new(format!("receiving: {e}"))),
        }
    }
    match stdout.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            return Err(CliError::new(format!("writing stdout: {e}")));
        }
        _ => {}
    }
    drop(stdout);
    match up.join() {
        Ok(r) => r.map_err(io_err("sending")),
        Err(_) => Err(CliError::new("the sending thread failed")),
    }
}

/// Read stdin to its end, handing each chunk to `send`.
fn copy_stdin(mut send: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut stdin = io::stdin().lock();
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => send(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Fill buffers with `recv` until it returns 0, writing each to stdout. Stdout closed by its
/// reader (`| head`) ends this direction quietly, as netcat does.
fn copy_to_stdout(mut recv: impl FnMut(&mut [u8]) -> io::Result<usize>) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut stdout = io::stdout().lock();
    loop {
        let n = match recv(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        match stdout.write_all(&buf[..n]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    match stdout.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}
