//! A DHT on 127.0.0.1 made of libtorrent nodes: each one is `crates/dht/tests/lt_dht.py`
//! (Debian's python3-libtorrent under `/usr/bin/python3`, loopback restrictions off, no
//! other bootstrap), driven by commands on its stdin. Dropping a node kills its process.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct LtDht {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    pub port: u16,
}

impl Drop for LtDht {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LtDht {
    /// A libtorrent DHT node bootstrapping from `bootstrap`, alive at most `max`.
    pub fn start(python: &str, bootstrap: &str, max: Duration) -> LtDht {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../dht/tests/lt_dht.py");
        let mut child = Command::new(python)
            .args([script, bootstrap, &max.as_secs().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3 lt_dht.py");
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut node = LtDht {
            child,
            stdin,
            lines,
            port: 0,
        };
        node.port = node.wait_line(Duration::from_secs(30), |l| {
            l.strip_prefix("port ").and_then(|p| p.trim().parse().ok())
        });
        node
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").expect("write to lt_dht.py");
        self.stdin.flush().expect("flush");
    }

    /// The first line from now on for which `f` returns something; panics after `limit`.
    pub fn wait_line<T>(&mut self, limit: Duration, mut f: impl FnMut(&str) -> Option<T>) -> T {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(t) = f(&line) {
                        return t;
                    }
                }
                Err(e) => panic!("lt_dht.py: no expected line within {limit:?} ({e:?})"),
            }
        }
    }
}

/// `n` libtorrent nodes, each bootstrapped from the previous one and then told of all the
/// others, with a moment to fill their tables.
pub fn lt_network(python: &str, n: usize, max: Duration) -> Vec<LtDht> {
    let mut nodes: Vec<LtDht> = Vec::new();
    for _ in 0..n {
        // The first node has nobody to start from: a port that is not listening.
        let boot = nodes
            .last()
            .map(LtDht::addr)
            .unwrap_or_else(|| "127.0.0.1:9".to_string());
        nodes.push(LtDht::start(python, &boot, max));
    }
    let addrs: Vec<String> = nodes.iter().map(LtDht::addr).collect();
    for node in &mut nodes {
        for a in &addrs {
            if *a != node.addr() {
                node.send(&format!("bootstrap {a}"));
            }
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    nodes
}
