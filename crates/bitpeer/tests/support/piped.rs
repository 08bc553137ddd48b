//! A child process whose stdin is a file and whose stdout goes to a file, as in
//! `cmd < in > out`, with stderr collected; it is killed by PID when dropped or when its
//! deadline passes, pass or fail.

#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Piped {
    pub desc: String,
    child: Child,
    stderr: Arc<Mutex<Vec<u8>>>,
    deadline: Instant,
}

impl Drop for Piped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Piped {
    pub fn spawn(cmd: Command, stdin: &Path, stdout: &Path, limit: Duration) -> Piped {
        let input = Stdio::from(File::open(stdin).expect("open stdin file"));
        Piped::spawn_stdio(cmd, input, stdout, limit)
    }

    /// Like [`Piped::spawn`], but stdin is a pipe fed with the file, then held open until
    /// `until` is true (or the deadline), as a user who types the input and waits for the
    /// answer before pressing Ctrl-D.
    pub fn spawn_held(
        cmd: Command,
        stdin: &Path,
        stdout: &Path,
        limit: Duration,
        until: impl Fn() -> bool + Send + 'static,
    ) -> Piped {
        let mut p = Piped::spawn_stdio(cmd, Stdio::piped(), stdout, limit);
        let mut input = p.child.stdin.take().expect("piped");
        let data = std::fs::read(stdin).expect("read stdin file");
        let deadline = p.deadline;
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = input.write_all(&data);
            while !until() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(input);
        });
        p
    }

    fn spawn_stdio(mut cmd: Command, stdin: Stdio, stdout: &Path, limit: Duration) -> Piped {
        let desc = format!("{cmd:?}");
        cmd.stdin(stdin)
            .stdout(Stdio::from(
                File::create(stdout).expect("create stdout file"),
            ))
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
        let mut err = child.stderr.take().expect("piped");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Piped {
            desc,
            child,
            stderr,
            deadline: Instant::now() + limit,
        }
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Wait for a stderr line for which `f` returns something (panics at the deadline or
    /// if the child exits first).
    pub fn wait_stderr<T>(&mut self, mut f: impl FnMut(&str) -> Option<T>) -> T {
        loop {
            if let Some(t) = self.stderr_str().lines().find_map(&mut f) {
                return t;
            }
            if Instant::now() >= self.deadline {
                panic!(
                    "{}: expected stderr line not seen: {}",
                    self.desc,
                    self.stderr_str()
                );
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                if let Some(t) = self.stderr_str().lines().find_map(&mut f) {
                    return t;
                }
                panic!("{}: exited ({st}) first: {}", self.desc, self.stderr_str());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for the exit (panics at the deadline; the child is then killed by Drop).
    pub fn wait(&mut self) -> ExitStatus {
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            if Instant::now() >= self.deadline {
                panic!(
                    "{}: still running at its deadline: {}",
                    self.desc,
                    self.stderr_str()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A TCP port that was free a moment ago (bound on port 0, then released).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something listens on 127.0.0.1:`port` (read from /proc/net/tcp, so without
/// connecting, which would use up a one-shot listener like `nc -l`).
pub fn wait_listening(port: u16, limit: Duration) {
    let end = Instant::now() + limit;
    let want = format!("0100007F:{port:04X}");
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
        if table.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        }) {
            return;
        }
        assert!(Instant::now() < end, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether two files hold the same bytes (sizes first, then contents).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    x.len() == y.len() && x == y
}
