//! Helpers shared by the integration tests of the `bitpeer` binary.
//!
//! Every child process runs under a deadline: [`run`] spawns it, polls `try_wait`, and kills
//! it by PID when the deadline passes, so a hung child fails the test instead of hanging it.
//! Interop helpers find the real clients (Debian's `python3-libtorrent` run with
//! `/usr/bin/python3`, `transmission-cli`) and fail with a clear message when they are
//! missing, unless `BITPEER_SKIP_INTEROP=1` is set.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

/// The network namespace of the WebTorrent tests and the processes they run in it.
pub mod netns;

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Deadline for one `bitpeer create`/`info` of test-sized data (debug build).
pub const BITPEER_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for one helper run of a real client. `lt_verify.py` has its own 60 s deadline.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

/// The Python that has Debian's libtorrent bindings (not a pyenv shim on PATH);
/// `BITPEER_PYTHON` overrides it.
pub fn python() -> String {
    std::env::var("BITPEER_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_owned())
}

pub fn bitpeer_bin() -> &'static str {
    env!("CARGO_BIN_EXE_bitpeer")
}

/// Folder of the Python interop helpers (`lt_verify.py`, `lt_create.py`).
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

/// What a finished child process left behind.
pub struct Output {
    pub desc: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    /// Panics with the command, exit status and both streams unless it exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(
            self.status.success(),
            "{} failed: {}",
            self.desc,
            self.explain()
        );
        self
    }
    pub fn explain(&self) -> String {
        format!(
            "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            truncate(&self.stdout_str(), 4000),
            truncate(&self.stderr_str(), 4000)
        )
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &s[..end], s.len())
}

/// Runs `cmd` with stdin closed, collecting stdout and stderr, and kills it (by PID) if it
/// has not exited within `timeout`. Returns an error only if it cannot be started.
pub fn try_run(mut cmd: Command, timeout: Duration) -> std::io::Result<Output> {
    let desc = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    // Drain both pipes on their own threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let pid = child.id();
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {timeout:?}; killed pid {pid}");
        }
        thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(25));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output {
        desc,
        status,
        stdout,
        stderr,
    })
}

/// [`try_run`], panicking if the program cannot be started.
pub fn run(cmd: Command, timeout: Duration) -> Output {
    let desc = format!("{cmd:?}");
    try_run(cmd, timeout).unwrap_or_else(|e| panic!("cannot start {desc}: {e}"))
}

/// Runs the `bitpeer` binary with `args` in the folder `cwd` (or the test's own if `None`).
pub fn bitpeer<I, S>(args: I, cwd: Option<&Path>) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(bitpeer_bin());
    cmd.args(args);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    run(cmd, BITPEER_TIMEOUT)
}

/// `bitpeer create DATA -o OUT EXTRA...`, which must succeed and write OUT.
pub fn bitpeer_create(data: &Path, out: &Path, extra: &[&str]) {
    let mut args: Vec<&OsStr> = vec![OsStr::new("create"), data.as_os_str()];
    args.extend([OsStr::new("-o"), out.as_os_str()]);
    args.extend(extra.iter().map(OsStr::new));
    bitpeer(args, None).assert_success();
    assert!(
        out.is_file(),
        "bitpeer create exited 0 but did not write {}",
        out.display()
    );
}

/// `bitpeer info TORRENT --json`, which must succeed and print exactly one JSON object that
/// follows the documented schema.
pub fn bitpeer_info_json(torrent: impl AsRef<OsStr>) -> Value {
    let out = bitpeer(
        [OsStr::new("info"), torrent.as_ref(), OsStr::new("--json")],
        None,
    );
    out.assert_success();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bitpeer info --json did not print one JSON value ({e}): {}",
            out.explain()
        )
    });
    check_info_schema(&v);
    v
}

/// Checks the shape of `bitpeer info --json` output: every field present with its type.
pub fn check_info_schema(v: &Value) {
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("info --json is not an object: {v}"));
    let opt_uint = |k: &str| {
        let x = &o
            .get(k)
            .unwrap_or_else(|| panic!("info --json lacks {k:?}: {v}"));
        assert!(
            x.is_null() || x.is_u64(),
            "{k:?} must be an unsigned integer or null: {v}"
        );
    };
    let field = |k: &str| {
        o.get(k)
            .unwrap_or_else(|| panic!("info --json lacks {k:?}: {v}"))
    };
    assert!(field("name").is_string(), "name must be a string: {v}");
    opt_uint("total_size");
    opt_uint("piece_length");
    opt_uint("piece_count");
    assert!(field("private").is_boolean(), "private must be a bool: {v}");
    let version = field("version").as_str().unwrap_or("");
    assert!(
        ["v1", "v2", "hybrid", "magnet"].contains(&version),
        "version must be v1|v2|hybrid|magnet: {v}"
    );
    for (k, len) in [("info_hash_v1", 40), ("info_hash_v2", 64)] {
        let x = field(k);
        if let Some(s) = x.as_str() {
            assert!(
                is_lower_hex(s, len),
                "{k:?} must be {len} lowercase hex digits: {v}"
            );
        } else {
            assert!(x.is_null(), "{k:?} must be a string or null: {v}");
        }
    }
    let (has_v1, has_v2) = (
        field("info_hash_v1").is_string(),
        field("info_hash_v2").is_string(),
    );
    match version {
        "v1" => assert!(
            has_v1 && !has_v2,
            "a v1 torrent has only a v1 info-hash: {v}"
        ),
        "v2" => assert!(
            !has_v1 && has_v2,
            "a v2 torrent has only a v2 info-hash: {v}"
        ),
        "hybrid" => assert!(
            has_v1 && has_v2,
            "a hybrid torrent has both info-hashes: {v}"
        ),
        _ => assert!(
            has_v1 || has_v2,
            "a magnet link has at least one info-hash: {v}"
        ),
    }
    let files = field("files")
        .as_array()
        .unwrap_or_else(|| panic!("files must be a list: {v}"));
    for f in files {
        assert!(f["path"].is_string(), "file path must be a string: {f}");
        assert!(
            f["size"].is_u64(),
            "file size must be an unsigned integer: {f}"
        );
        assert!(f["pad"].is_boolean(), "file pad must be a bool: {f}");
    }
    let tiers = field("trackers")
        .as_array()
        .unwrap_or_else(|| panic!("trackers: {v}"));
    for tier in tiers {
        let urls = tier
            .as_array()
            .unwrap_or_else(|| panic!("a tracker tier is a list: {v}"));
        assert!(
            urls.iter().all(Value::is_string),
            "tracker urls are strings: {v}"
        );
    }
    let seeds = field("web_seeds")
        .as_array()
        .unwrap_or_else(|| panic!("web_seeds: {v}"));
    assert!(
        seeds.iter().all(Value::is_string),
        "web seeds are strings: {v}"
    );
    let comment = field("comment");
    assert!(comment.is_null() || comment.is_string(), "comment: {v}");
    let magnet = field("magnet").as_str().unwrap_or("");
    assert!(
        magnet.starts_with("magnet:?"),
        "magnet must start with magnet:?: {v}"
    );
    if version != "magnet" {
        // With or without pad files: the contract does not say which.
        let size = |pads: bool| -> u64 {
            let counted = files
                .iter()
                .filter(|f| pads || f["pad"] != Value::Bool(true));
            counted.map(|f| f["size"].as_u64().unwrap_or(0)).sum()
        };
        let total = o["total_size"].as_u64();
        assert!(
            total == Some(size(true)) || total == Some(size(false)),
            "total_size is not the sum of the file sizes: {v}"
        );
    }
}

pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The non-pad files of `bitpeer info --json` output as sorted (path, size) pairs.
pub fn info_files(v: &Value) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter(|f| !f["pad"].as_bool().unwrap_or(false))
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// The files under `data` as sorted (path, size) pairs in the form `bitpeer info` prints:
/// for a folder, '/'-joined paths relative to it; for a single file, its name.
pub fn disk_files(data: &Path) -> Vec<(String, u64)> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, u64)>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("dir entry");
            let name = entry.file_name().into_string().expect("utf-8 file name");
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                walk(&entry.path(), &path, out);
            } else {
                out.push((path, meta.len()));
            }
        }
    }
    let mut out = Vec::new();
    if data.is_dir() {
        walk(data, "", &mut out);
    } else {
        let name = data.file_name().unwrap().to_str().unwrap().to_owned();
        out.push((name, std::fs::metadata(data).unwrap().len()));
    }
    out.sort();
    out
}

/// `len` pseudo-random bytes from `seed` (splitmix64): incompressible, and the same on
/// every run so a failure can be reproduced.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `len` pseudo-random bytes to `path`, creating its parent folders.
pub fn write_random(path: &Path, seed: u64, len: usize) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, pseudo_random(seed, len)).unwrap();
}

/// A folder with odd file sizes, nested folders, an empty file and a file of exactly
/// 16 KiB, so pieces straddle file boundaries. Returns the folder (`root/name`).
pub fn make_tree(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    write_random(&dir.join("a.bin"), 1, 70_001);
    write_random(&dir.join("exact16k.bin"), 2, 16_384);
    write_random(&dir.join("sub/b.bin"), 3, 33_333);
    write_random(&dir.join("sub/deep/c.txt"), 4, 5);
    write_random(&dir.join("sub/deep/deeper/d.dat"), 5, 123_457);
    write_random(&dir.join("z"), 6, 1);
    std::fs::write(dir.join("sub/empty"), b"").unwrap();
    dir
}

// ---------------------------------------------------------------------------------------
// Real clients

/// True if the real client is usable. If it is not: panics with `why` unless
/// `BITPEER_SKIP_INTEROP=1`, in which case it prints a line and returns false.
pub fn available_or_fail(ok: bool, why: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("BITPEER_SKIP_INTEROP").as_deref() == Ok("1") {
        eprintln!("skipping interop test: {why} (BITPEER_SKIP_INTEROP=1)");
        return false;
    }
    panic!(
        "{why}. Interop tests need the real clients: run scripts/test.sh (it installs \
         python3-libtorrent and transmission-cli) or `apt-get install python3-libtorrent \
         transmission-cli`, or set BITPEER_SKIP_INTEROP=1 to skip these tests."
    );
}

/// Whether `/usr/bin/python3` can import Debian's libtorrent bindings (see
/// [`available_or_fail`] for what happens when it cannot).
pub fn libtorrent_available() -> bool {
    let mut cmd = Command::new(python());
    cmd.args(["-c", "import libtorrent"]);
    let ok = matches!(try_run(cmd, CLIENT_TIMEOUT), Ok(o) if o.status.success());
    let why = format!("{} cannot import libtorrent (python3-libtorrent)", python());
    available_or_fail(ok, &why)
}

/// Whether `transmission-create` and `transmission-show` can be run.
pub fn transmission_available() -> bool {
    let works = |prog: &str| {
        let mut cmd = Command::new(prog);
        cmd.arg("-V");
        try_run(cmd, CLIENT_TIMEOUT).is_ok()
    };
    let ok = works("transmission-create") && works("transmission-show");
    available_or_fail(
        ok,
        "transmission-create/transmission-show (transmission-cli) not found",
    )
}

/// Runs an interop Python helper and parses the JSON object it prints. Returns the exit
/// code too; the caller decides what a non-zero code means.
pub fn python_helper(script: &str, args: &[&OsStr]) -> (Option<i32>, Value, Output) {
    let mut cmd = Command::new(python());
    cmd.arg(interop_dir().join(script)).args(args);
    let out = run(cmd, CLIENT_TIMEOUT);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.code(), v, out)
}

/// `lt_verify.py TORRENT SAVE_PATH`: libtorrent loads the torrent and hash-checks the data.
/// Returns its JSON report; panics unless every piece checked valid.
pub fn lt_verify(torrent: &Path, save_path: &Path) -> Value {
    let (code, v, out) = python_helper(
        "lt_verify.py",
        &[torrent.as_os_str(), save_path.as_os_str()],
    );
    assert!(
        code == Some(0) && v["have"] == v["num_pieces"] && v["num_pieces"].as_u64() > Some(0),
        "libtorrent did not find every piece of {} valid: {}",
        torrent.display(),
        out.explain()
    );
    v
}

/// `lt_create.py DATA OUT --mode MODE [--piece-length N]`: libtorrent makes a torrent.
/// Returns what libtorrent reads back from it (hashes, name, files, piece length...).
pub fn lt_create(data: &Path, out: &Path, mode: &str, piece_length: Option<u64>) -> Value {
    let pl = piece_length.map(|n| n.to_string());
    let mut args = vec![
        data.as_os_str(),
        out.as_os_str(),
        OsStr::new("--mode"),
        OsStr::new(mode),
    ];
    if let Some(pl) = &pl {
        args.extend([OsStr::new("--piece-length"), OsStr::new(pl.as_str())]);
    }
    let (code, v, o) = python_helper("lt_create.py", &args);
    assert!(
        code == Some(0) && v.is_object(),
        "lt_create.py failed: {}",
        o.explain()
    );
    v
}

/// The fields `transmission-show` prints for a torrent.
#[derive(Debug, Default)]
pub struct TransmissionShow {
    pub name: String,
    pub hash: String,
    pub private: Option<bool>,
    pub piece_count: Option<u64>,
    pub comment: Option<String>,
    /// Tracker URLs, in order (transmission-show prints them per tier).
    pub trackers: Vec<String>,
    /// Paths as transmission-show prints them: `NAME/dir/file` for multi-file torrents.
    pub files: Vec<String>,
}

/// Runs `transmission-show TORRENT`, which must exit 0, and parses its report.
pub fn transmission_show(torrent: &Path) -> TransmissionShow {
    let mut cmd = Command::new("transmission-show");
    cmd.arg(torrent);
    let out = run(cmd, CLIENT_TIMEOUT);
    out.assert_success();
    let text = out.stdout_str();
    let mut show = TransmissionShow::default();
    let mut section = "";
    for line in text.lines() {
        match line.trim_end() {
            "GENERAL" | "TRACKERS" | "FILES" => {
                section = line.trim_end();
                continue;
            }
            "" => continue,
            _ => {}
        }
        let l = line.trim();
        match section {
            "GENERAL" => {
                if let Some(x) = l.strip_prefix("Name: ") {
                    show.name = x.to_owned();
                } else if let Some(x) = l.strip_prefix("Hash: ") {
                    show.hash = x.to_owned();
                } else if let Some(x) = l.strip_prefix("Privacy: ") {
                    show.private = Some(x.starts_with("Private"));
                } else if let Some(x) = l.strip_prefix("Piece Count: ") {
                    show.piece_count = x.parse().ok();
                } else if let Some(x) = l.strip_prefix("Comment: ") {
                    show.comment = Some(x.to_owned());
                }
            }
            "TRACKERS" if !l.starts_with("Tier #") => show.trackers.push(l.to_owned()),
            // "  NAME/dir/file (1.23 kB)"
            "FILES" => {
                let path = l.rsplit_once(" (").map_or(l, |(p, _)| p);
                show.files.push(path.to_owned());
            }
            _ => {}
        }
    }
    assert!(
        is_lower_hex(&show.hash, 40),
        "no Hash line in transmission-show output: {}",
        out.explain()
    );
    show
}

// ---------------------------------------------------------------------------------------
// Long-running children: seeders, downloads, real clients

/// A child process that runs alongside the test. Its stdout is read line by line and its
/// stderr collected, each on its own thread. A watchdog kills it (by PID, through the
/// `Child`, so never a reused PID) when its deadline passes, and dropping the guard kills
/// and reaps it, so no child outlives its test, pass or fail.
pub struct Proc {
    pub desc: String,
    child: std::sync::Arc<std::sync::Mutex<std::process::Child>>,
    pid: u32,
    lines: std::sync::mpsc::Receiver<String>,
    stdout_all: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    status: Option<ExitStatus>,
    deadline: Instant,
}

impl Proc {
    /// Starts `cmd` with stdin closed; it is killed if it still runs after `timeout`.
    pub fn spawn(mut cmd: Command, timeout: Duration) -> Proc {
        use std::io::BufRead;
        use std::sync::{Arc, Mutex, mpsc};
        let desc = format!("{cmd:?}");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
        let pid = child.id();
        let out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        let stdout_all = Arc::new(Mutex::new(Vec::new()));
        let all = stdout_all.clone();
        thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                all.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let e = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                e.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let child = Arc::new(Mutex::new(child));
        let deadline = Instant::now() + timeout;
        let watched = Arc::downgrade(&child);
        thread::spawn(move || {
            loop {
                thread::sleep(Duration::from_millis(100));
                let Some(child) = watched.upgrade() else {
                    return;
                };
                let mut child = child.lock().unwrap();
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                if Instant::now() >= deadline {
                    eprintln!("watchdog: killing pid {pid}, still running after {timeout:?}");
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        });
        Proc {
            desc,
            child,
            pid,
            lines,
            stdout_all,
            stderr,
            status: None,
            deadline,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The next stdout line, or `None` if stdout closed or none came within `timeout`.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Reads stdout lines until `f` returns `Some`; panics (with both streams) if stdout
    /// closes or `timeout` passes first.
    pub fn wait_line<T>(&mut self, timeout: Duration, mut f: impl FnMut(&str) -> Option<T>) -> T {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(t) = f(&line) {
                        return t;
                    }
                }
                Err(e) => panic!(
                    "{}: no expected stdout line within {timeout:?} ({e:?}): {}",
                    self.desc,
                    self.explain()
                ),
            }
        }
    }

    /// Waits until the collected stderr holds a line for which `f` returns `Some`.
    pub fn wait_stderr_line<T>(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let end = Instant::now() + timeout;
        loop {
            let text = self.stderr_str();
            if let Some(t) = text.lines().find_map(&mut f) {
                return t;
            }
            if Instant::now() >= end || self.try_status().is_some() {
                panic!(
                    "{}: no expected stderr line within {timeout:?}: {}",
                    self.desc,
                    self.explain()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status if the child has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.lock().unwrap().try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for the child to exit; kills it and panics if it runs past `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                // Let the reader threads see the end of both pipes.
                thread::sleep(Duration::from_millis(50));
                return s;
            }
            if Instant::now() >= end {
                self.kill();
                panic!(
                    "{} did not exit within {timeout:?}; killed pid {}: {}",
                    self.desc,
                    self.pid,
                    self.explain()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (through the `Child`, so only this process) and reap.
    pub fn kill(&mut self) {
        let mut child = self.child.lock().unwrap();
        if self.status.is_none() {
            let _ = child.kill();
            self.status = child.wait().ok();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`. The PID is signalled only
    /// while the child is known not to have been reaped.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        {
            let mut child = self.child.lock().unwrap();
            if matches!(child.try_wait(), Ok(None)) {
                let _ = Command::new("kill")
                    .args(["-TERM", &self.pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if let Some(s) = self.try_status() {
                thread::sleep(Duration::from_millis(50));
                return Some(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        None
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Every stdout line read so far (also those already returned by `next_line`).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_all.lock().unwrap().clone()
    }

    pub fn explain(&self) -> String {
        let out = self.stdout_lines().join("\n");
        format!(
            "pid {} status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.pid,
            self.status,
            truncate_tail(&out, 4000),
            truncate_tail(&self.stderr_str(), 4000)
        )
    }

    /// Fails the test if the child panicked: exit code 101 or "panicked" on stderr.
    pub fn assert_no_panic(&mut self) {
        let status = self.try_status();
        let err = self.stderr_str();
        assert!(
            status.and_then(|s| s.code()) != Some(101) && !err.contains("panicked"),
            "{} panicked: {}",
            self.desc,
            self.explain()
        );
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `max` bytes of `s` (the end of a log says the most).
fn truncate_tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("...({} bytes in all) {}", s.len(), &s[start..])
}

/// Deadline of a `bitpeer seed` started by a test.
pub const SEED_TIMEOUT: Duration = Duration::from_secs(300);

/// `bitpeer seed TORRENT --data DIR --listen 127.0.0.1:0 [--peer P]...`, once it prints
/// `listening on ADDR`. Returns the guard and ADDR.
pub fn spawn_bitpeer_seed(torrent: &Path, data_dir: &Path, peers: &[String]) -> (Proc, String) {
    spawn_bitpeer_seed_with(torrent, data_dir, peers, &[])
}

/// [`spawn_bitpeer_seed`] with `extra` arguments.
pub fn spawn_bitpeer_seed_with(
    torrent: &Path,
    data_dir: &Path,
    peers: &[String],
    extra: &[&str],
) -> (Proc, String) {
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("seed")
        .arg(torrent)
        .arg("--data")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra);
    for p in peers {
        cmd.args(["--peer", p]);
    }
    let mut p = Proc::spawn(cmd, SEED_TIMEOUT);
    let addr = p.wait_line(Duration::from_secs(120), |l| {
        l.strip_prefix("listening on ").map(|a| a.trim().to_owned())
    });
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "bitpeer seed listens on {addr}"
    );
    (p, addr)
}

/// Starts `bitpeer download TORRENT -o DIR --listen 127.0.0.1:0 --json [--peer P]...`.
pub fn spawn_bitpeer_download(
    torrent: &Path,
    out_dir: &Path,
    peers: &[String],
    timeout: Duration,
) -> Proc {
    spawn_bitpeer_download_with(torrent, out_dir, peers, timeout, &[])
}

/// [`spawn_bitpeer_download`] with `extra` arguments.
pub fn spawn_bitpeer_download_with(
    torrent: &Path,
    out_dir: &Path,
    peers: &[String],
    timeout: Duration,
    extra: &[&str],
) -> Proc {
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("download")
        .arg(torrent)
        .arg("-o")
        .arg(out_dir)
        .args(["--listen", "127.0.0.1:0", "--json"])
        .args(extra);
    for p in peers {
        cmd.args(["--peer", p]);
    }
    Proc::spawn(cmd, timeout)
}

/// The address a `bitpeer download` prints on stderr (`listening on ADDR`).
pub fn download_listen_addr(p: &mut Proc) -> String {
    p.wait_stderr_line(Duration::from_secs(60), |l| {
        l.trim()
            .strip_prefix("listening on ")
            .map(|a| a.trim().to_owned())
    })
}

/// Parses a `--json` progress line and checks its fields are all there.
pub fn progress_line(line: &str) -> Value {
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("download --json printed a non-JSON line ({e}): {line}"));
    for k in [
        "pieces",
        "piece_count",
        "bytes",
        "total_bytes",
        "downloaded",
        "uploaded",
        "peers",
        "hash_failures",
        "banned",
    ] {
        assert!(v[k].is_u64(), "progress line lacks {k:?}: {line}");
    }
    assert!(
        v["elapsed"].is_number(),
        "progress line lacks elapsed: {line}"
    );
    let state = v["state"].as_str().unwrap_or("");
    assert!(
        ["downloading", "complete", "interrupted", "error"].contains(&state),
        "bad state in {line}"
    );
    v
}

/// Waits for a `bitpeer download --json` to exit, and checks that it exited 0 without a
/// panic and that its last line says `complete` with every piece. Returns that last line.
pub fn finish_download(p: &mut Proc, timeout: Duration) -> Value {
    let status = p.wait_exit(timeout);
    p.assert_no_panic();
    assert!(
        status.success(),
        "{} did not exit 0: {}",
        p.desc,
        p.explain()
    );
    let lines = p.stdout_lines();
    let last = lines
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("{} printed nothing: {}", p.desc, p.explain()));
    let v = progress_line(last);
    assert_eq!(
        v["state"],
        "complete",
        "last line of {}: {}",
        p.desc,
        p.explain()
    );
    assert_eq!(v["pieces"], v["piece_count"], "{v}");
    assert_eq!(v["bytes"], v["total_bytes"], "{v}");
    v
}

/// Deadline of an `lt_peer.py` child (it also gets `--deadline` a little shorter).
pub const LT_PEER_TIMEOUT: Duration = Duration::from_secs(240);

/// Starts `lt_peer.py TORRENT SAVE_PATH [--peer P]... [EXTRA...]` and reads the port it
/// prints first.
pub fn spawn_lt_peer(
    torrent: &Path,
    save_path: &Path,
    peers: &[String],
    extra: &[&str],
) -> (Proc, u16) {
    spawn_lt_peer_in(Command::new(python()), torrent, save_path, peers, extra)
}

/// [`spawn_lt_peer`] through `python`, a command that runs `/usr/bin/python3` (e.g. inside a
/// network namespace: `Netns::command(python())`).
pub fn spawn_lt_peer_in(
    mut cmd: Command,
    torrent: &Path,
    save_path: &Path,
    peers: &[String],
    extra: &[&str],
) -> (Proc, u16) {
    cmd.arg(interop_dir().join("lt_peer.py"))
        .arg(torrent)
        .arg(save_path)
        .args(["--deadline", &(LT_PEER_TIMEOUT.as_secs() - 10).to_string()])
        .args(extra);
    for p in peers {
        cmd.args(["--peer", p]);
    }
    let mut p = Proc::spawn(cmd, LT_PEER_TIMEOUT);
    let port = p.wait_line(Duration::from_secs(60), |l| {
        serde_json::from_str::<Value>(l)
            .ok()
            .and_then(|v| v["port"].as_u64())
    });
    assert!(port > 0 && port < 65536, "lt_peer.py printed port {port}");
    (p, port as u16)
}

/// Reads `--stats` lines of an lt_peer.py until one says it is seeding, so that bitpeer
/// dials a seeder that has finished checking its data.
pub fn wait_lt_seeding(p: &mut Proc) {
    p.wait_line(Duration::from_secs(60), |l| {
        let v: Value = serde_json::from_str(l).ok()?;
        (v["seeding"] == true).then_some(())
    });
}

/// Compares `src` (a file or a folder) with `dst` byte for byte: the same files with the
/// same contents, the same folders, nothing more and nothing less.
pub fn assert_same_tree(src: &Path, dst: &Path) {
    let src_meta =
        std::fs::metadata(src).unwrap_or_else(|e| panic!("source {}: {e}", src.display()));
    let dst_meta =
        std::fs::metadata(dst).unwrap_or_else(|e| panic!("{} was not created: {e}", dst.display()));
    if src_meta.is_dir() {
        assert!(dst_meta.is_dir(), "{} is not a folder", dst.display());
        let names = |d: &Path| -> Vec<std::ffi::OsString> {
            let mut v: Vec<_> = std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let (a, b) = (names(src), names(dst));
        assert_eq!(
            a,
            b,
            "entries of {} differ from {}",
            dst.display(),
            src.display()
        );
        for n in a {
            assert_same_tree(&src.join(&n), &dst.join(&n));
        }
    } else {
        assert!(dst_meta.is_file(), "{} is not a file", dst.display());
        let (a, b) = (std::fs::read(src).unwrap(), std::fs::read(dst).unwrap());
        assert_eq!(
            a.len(),
            b.len(),
            "{} has {} bytes, the source {}",
            dst.display(),
            b.len(),
            a.len()
        );
        if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
            panic!(
                "{} differs from {} first at byte {i}",
                dst.display(),
                src.display()
            );
        }
    }
}

/// `bitpeer info --json`'s v1 info-hash of `torrent` as 20 bytes.
pub fn info_hash_v1(torrent: &Path) -> [u8; 20] {
    let info = bitpeer_info_json(torrent);
    let hex = info["info_hash_v1"]
        .as_str()
        .unwrap_or_else(|| panic!("no v1 info-hash: {info}"));
    let mut out = [0u8; 20];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// Peak resident memory (`VmHWM`) of a running process, in MiB.
pub fn peak_rss_mib(pid: u32) -> u64 {
    try_peak_rss_mib(pid).expect("VmHWM in /proc/PID/status")
}

/// [`peak_rss_mib`], or `None` once the process is gone.
pub fn try_peak_rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    Some(kib / 1024)
}

pub const DAEMON_TIMEOUT: Duration = Duration::from_secs(300);

/// A daemon process and its API address.
pub struct Daemon {
    pub proc: Proc,
    /// HOST:PORT of its API.
    pub api: String,
}

/// The command line of `bitpeer daemon` on free ports of 127.0.0.1 (no DHT, LSD or
/// trackers), with no API credentials from the environment.
pub fn daemon_command(state: &Path, downloads: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("daemon")
        .args(["--api", "127.0.0.1:0", "--listen", "127.0.0.1:0"])
        .args(["--no-dht", "--no-lsd", "--no-trackers"])
        .arg("--state-dir")
        .arg(state)
        .arg("--download-dir")
        .arg(downloads)
        .args(extra)
        .env_remove("BITPEER_API_PASSWORD")
        .env_remove("BITPEER_API_USER");
    cmd
}

/// `bitpeer daemon` on free ports of 127.0.0.1 (no DHT, LSD or trackers), waiting for its
/// `api listening on` line.
pub fn spawn_daemon(state: &Path, downloads: &Path, extra: &[&str]) -> Daemon {
    let mut proc = Proc::spawn(daemon_command(state, downloads, extra), DAEMON_TIMEOUT);
    let api = proc.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("api listening on http://")
            .map(str::to_owned)
    });
    Daemon { proc, api }
}

/// Waits (bounded) until some socket of `proto` (`"tcp"` or `"udp"`) is bound to local
/// `port`, as the kernel lists them in `/proc/net/{proto}{,6}`: a child that opens its
/// sockets after it starts is then ready to be dialled, with no guessed pause.
pub fn wait_port_bound(proto: &str, port: u16, who: &mut Proc, timeout: Duration) {
    let needle = format!(":{port:04X} ");
    let deadline = Instant::now() + timeout;
    loop {
        let bound = ["", "6"].iter().any(|v6| {
            std::fs::read_to_string(format!("/proc/net/{proto}{v6}")).is_ok_and(|table| {
                // Each row: "sl local_address rem_address ..."; the local address is field 2.
                table
                    .lines()
                    .skip(1)
                    .filter_map(|row| row.split_whitespace().nth(1))
                    .any(|local| format!("{local} ").ends_with(&needle))
            })
        });
        if bound {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not bind {proto} port {port} within {timeout:?}: {}",
            who.desc,
            who.explain()
        );
        assert!(
            who.try_status().is_none(),
            "{} exited before binding {proto} port {port}: {}",
            who.desc,
            who.explain()
        );
        thread::sleep(Duration::from_millis(20));
    }
}
