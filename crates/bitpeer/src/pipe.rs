//! `bitpeer pipe listen` and `bitpeer pipe connect`: a netcat between two machines.
//!
//! Standard input goes to the peer and the peer's bytes to standard output, binary safe, in
//! both directions at once. The end of standard input is sent as the end of the stream (a TCP
//! half-close, as `nc -N` does) and the command exits once both directions are done, so
//! `tar c DIR | bitpeer pipe listen` and `bitpeer pipe connect KEY | tar x` just work.
//!
//! With `--plain` the pipe is a bare TCP byte stream, so either side can be netcat
//! (`nc -l -p PORT`, `nc -N HOST PORT`). The bytes move on two threads with blocking sockets:
//! nothing here needs an event loop, and this is as fast as netcat.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::thread;

use crate::{CliError, CliResult};

/// Bytes moved per read.
const CHUNK: usize = 256 * 1024;

#[derive(clap::Args)]
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
    /// A bare TCP stream, no encryption: the peer may be netcat.
    #[arg(long)]
    plain: bool,
}

#[derive(clap::Args)]
struct ConnectArgs {
    /// Where to connect: HOST:PORT.
    target: String,
    /// A bare TCP stream, no encryption: the listener may be netcat (`nc -l -p PORT`).
    #[arg(long)]
    plain: bool,
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
    let listener = TcpListener::bind(addr)
        .map_err(|e| CliError::new(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::new(format!("cannot listen on {addr}: {e}")))?;
    if !a.plain {
        return Err(CliError::new(
            "only --plain is available in this build of `pipe listen`",
        ));
    }
    eprintln!("listening on {local}");
    let (stream, _) = listener
        .accept()
        .map_err(|e| CliError::new(format!("accept failed: {e}")))?;
    drop(listener);
    pump_plain(stream)
}

fn connect(a: ConnectArgs) -> CliResult {
    if !a.plain {
        return Err(CliError::new(
            "only --plain is available in this build of `pipe connect`",
        ));
    }
    let stream = dial(&a.target)?;
    pump_plain(stream)
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
