//! A download into a full filesystem: bitpeer stops with one line naming the disk error,
//! bans no peer, keeps what it verified, and completes once space is freed and the same
//! command runs again. The full disk is a small tmpfs the test mounts (the test command
//! runs as root; elsewhere the test says so and passes without running).

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Unmounts the tmpfs when the test ends, pass or fail.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(dir.to_owned()))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot resize the tmpfs at {}", self.0.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn download(torrent: &Path, out: &Path, port: u16) -> Proc {
    let mut cmd = Command::new(bitpeer_bin());
    cmd.arg("download")
        .arg(torrent)
        .arg("-o")
        .arg(out)
        .args(["--listen", "127.0.0.1:0", "--json", "--no-dht", "--no-lsd"])
        .arg("--peer")
        .arg(format!("127.0.0.1:{port}"));
    Proc::spawn(cmd, Duration::from_secs(120))
}

#[test]
fn a_full_disk_stops_the_download_cleanly_and_it_resumes_after() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("seed");
    write_random(&data.join("movie.bin"), 11, 12 << 20);
    let torrent = tmp.path().join("movie.torrent");
    bitpeer_create(
        &data.join("movie.bin"),
        &torrent,
        &["--piece-length", "262144"],
    );
    let out = tmp.path().join("disk");
    let Some(disk) = Mount::tmpfs(&out, "4m") else {
        eprintln!("notice: cannot mount a tmpfs (not root?); the full-disk test did not run");
        return;
    };
    let (_seeder, port) = spawn_lt_peer(&torrent, &data, &[], &["--seed"]);

    let mut dl = download(&torrent, &out, port);
    let status = dl.wait_exit(Duration::from_secs(120));
    dl.assert_no_panic();
    assert_eq!(status.code(), Some(1), "{}", dl.explain());
    let stderr = dl.stderr_str();
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {}", dl.explain());
    assert!(
        errors[0].contains("No space left on device") && errors[0].contains("disk"),
        "the error names the disk: {}",
        errors[0]
    );
    let last: Value = dl
        .stdout_lines()
        .iter()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("progress lines");
    assert_eq!(last["state"], "error", "{last}");
    assert_eq!(last["banned"], 0, "no peer is blamed for our disk: {last}");
    assert_eq!(last["hash_failures"], 0, "{last}");
    let kept = last["bytes"].as_u64().unwrap();
    assert!(
        kept > 0,
        "some pieces were verified before the disk filled: {last}"
    );

    // Space freed: the same command finishes the download.
    disk.resize("64m");
    let mut again = download(&torrent, &out, port);
    let v = finish_download(&mut again, Duration::from_secs(120));
    eprintln!("resumed: {v}");
    assert_same_tree(&data.join("movie.bin"), &out.join("movie.bin"));
}
