//! A network namespace for the WebTorrent tests (interop_webtorrent.rs, browser_webtorrent.rs)
//! and the processes they run in it.
//!
//! WebRTC peers need one: libdatachannel (Node webtorrent) gathers no loopback candidates and
//! Chromium gathers host candidates only with a default route. The namespace has a veth pair
//! on 10.99.0.0/24 and a default route over it, so every packet stays inside it; it is
//! deleted when the test ends (the processes in it are killed by their own guards first).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{Proc, available_or_fail, bitpeer_bin};

/// The namespace's address the peers and trackers listen on.
pub const ADDR: &str = "10.99.0.1";

/// Deadline of the processes started by the helpers below.
pub const NS_PROC_TIMEOUT: Duration = Duration::from_secs(180);

/// A network namespace with a veth pair and a default route; deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create() -> Option<Netns> {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "bpwt{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ns = Netns { name };
        let steps: [&[&str]; 8] = [
            &["netns", "add", &ns.name],
            &["-n", &ns.name, "link", "set", "lo", "up"],
            &[
                "-n", &ns.name, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
            ],
            &["-n", &ns.name, "addr", "add", "10.99.0.1/24", "dev", "v0"],
            &["-n", &ns.name, "addr", "add", "10.99.0.2/24", "dev", "v1"],
            &["-n", &ns.name, "link", "set", "v0", "up"],
            &["-n", &ns.name, "link", "set", "v1", "up"],
            &[
                "-n",
                &ns.name,
                "route",
                "add",
                "default",
                "via",
                "10.99.0.2",
                "dev",
                "v0",
            ],
        ];
        for args in steps {
            let ok = Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                eprintln!("ip {args:?} failed");
                return None;
            }
        }
        Some(ns)
    }

    /// `cmd ARGS` inside the namespace (`ip netns exec` execs it: the PID is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The node_modules folder scripts/install-webtorrent.sh fills.
pub fn wt_modules() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("bitpeer/npm-webtorrent/node_modules")
}

/// The namespace, or `None` (after a notice) when the test cannot run and
/// BITPEER_SKIP_INTEROP=1 says that is fine. `needs` are more things that must be there
/// (a description and whether it is), checked before the npm packages.
pub fn webtorrent_setup(needs: &[(&str, bool)]) -> Option<Netns> {
    for (what, ok) in needs {
        if !available_or_fail(*ok, what) {
            return None;
        }
    }
    let modules = wt_modules();
    let have = modules.join("webtorrent/package.json").is_file()
        && modules.join("bittorrent-tracker/package.json").is_file();
    if !available_or_fail(
        have,
        &format!(
            "no npm webtorrent in {} (scripts/install-webtorrent.sh)",
            modules.display()
        ),
    ) {
        return None;
    }
    let ns = Netns::create();
    if !available_or_fail(
        ns.is_some(),
        "cannot create a network namespace (needs root and iproute2)",
    ) {
        return None;
    }
    ns
}

/// `bitpeer tracker --ws` in the namespace; returns it and its `ws://` URL.
pub fn bitpeer_ws_tracker(ns: &Netns) -> (Proc, String) {
    let mut cmd = ns.command(bitpeer_bin());
    cmd.args([
        "tracker",
        "--no-http",
        "--udp",
        &format!("{ADDR}:0"),
        "--ws",
        &format!("{ADDR}:0"),
        // Peers re-announce (with fresh offers) every 10 s: a failed WebRTC attempt is
        // retried well within the test's time.
        "--ws-interval",
        "10",
    ]);
    let mut p = Proc::spawn(cmd, NS_PROC_TIMEOUT);
    let url = p.wait_line(Duration::from_secs(20), |l| {
        l.strip_prefix("websocket tracker listening on ")
            .map(str::to_owned)
    });
    (p, url)
}

/// `bitpeer ARGS` in the namespace, WebRTC through the tracker at `url` only (no DHT, no
/// LSD).
pub fn bitpeer_in(ns: &Netns, args: &[&std::ffi::OsStr], url: &str) -> Proc {
    let mut cmd = ns.command(bitpeer_bin());
    cmd.args(args)
        .args(["--listen", &format!("{ADDR}:0"), "--no-dht", "--no-lsd"])
        .args(["--webtorrent-tracker", url])
        .env("RUST_LOG", "webtorrent=debug,engine=debug");
    Proc::spawn(cmd, NS_PROC_TIMEOUT)
}

/// SIGKILLs every descendant of `pid` (found from the parent PIDs in /proc/*/stat, all read
/// before any is killed, so none is missed by being re-parented), deepest first. For a child
/// that starts its own children (Node running Chromium): call it before the child's [`Proc`]
/// guard drops.
pub fn kill_descendants(pid: u32) {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((child, ppid))
        })
        .collect();
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() && all.len() < 1024 {
        let p = all[i];
        all.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    for c in all.iter().skip(1).rev() {
        let _ = Command::new("kill")
            .args(["-KILL", &c.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Waits until a bitpeer started by [`bitpeer_in`] says its WebRTC endpoint is up.
fn wait_webrtc(p: &mut Proc) {
    p.wait_stderr_line(Duration::from_secs(30), |l| {
        l.starts_with("webrtc on udp").then_some(())
    });
}

/// `bitpeer seed TORRENT --data DATA` in the namespace through the tracker at `url`;
/// returns once its WebRTC endpoint is up.
pub fn bitpeer_ws_seeder(ns: &Netns, torrent: &Path, data: &Path, url: &str) -> Proc {
    let mut p = bitpeer_in(
        ns,
        &[
            "seed".as_ref(),
            torrent.as_ref(),
            "--data".as_ref(),
            data.as_ref(),
        ],
        url,
    );
    wait_webrtc(&mut p);
    p
}

/// The bridge: `bitpeer download TORRENT -o OUT --seed --peer 127.0.0.1:TCP_PORT` in the
/// namespace (a TCP seeder there, on its loopback) and WebRTC through the tracker at `url`;
/// returns once its WebRTC endpoint is up.
pub fn bitpeer_bridge(ns: &Netns, torrent: &Path, out: &Path, tcp_port: u16, url: &str) -> Proc {
    let peer = format!("127.0.0.1:{tcp_port}");
    let mut p = bitpeer_in(
        ns,
        &[
            "download".as_ref(),
            torrent.as_ref(),
            "-o".as_ref(),
            out.as_ref(),
            "--seed".as_ref(),
            "--peer".as_ref(),
            peer.as_ref(),
        ],
        url,
    );
    wait_webrtc(&mut p);
    p
}

/// A file of `len` pseudo-random bytes (from `seed`) at `dir/data/NAME` and its torrent at
/// `dir/NAME.torrent` (made by bitpeer); returns (the data folder, the file, the torrent).
pub fn shared_file(dir: &Path, name: &str, seed: u64, len: usize) -> (PathBuf, PathBuf, PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = data.join(name);
    super::write_random(&file, seed, len);
    let torrent = dir.join(format!("{name}.torrent"));
    super::bitpeer_create(&file, &torrent, &[]);
    (data, file, torrent)
}
