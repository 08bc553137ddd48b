//! Tests in network namespaces they create (root needed): LSD over IPv6 multicast, and port
//! mapping.
//!
//! LSD over IPv6 (issue #12 item 3): one namespace with a veth pair (fd00:77::1/64 on one
//! end), two bitpeer nodes on that address, no peers, trackers or DHT: the downloader finds
//! the seeder through the `[ff15::efc0:988f]:6771` group only.
//!
//! Port mapping (issue #12 item 4) against Debian's `miniupnpd` (nftables backend) in network
//! namespaces the test creates: a "gateway" namespace with an external interface (a veth
//! pair inside it, 11.22.33.44/24) and the LAN side of a veth pair (10.77.0.1/24) where
//! miniupnpd listens, and a "LAN" namespace (10.77.0.2/24, default route via 10.77.0.1)
//! where bitpeer runs. Nothing leaves the two namespaces.
//!
//! - The daemon maps its listening port by UPnP IGD by default (TCP and UDP), reports the
//!   external address in `/api/v1/session`, miniupnpd holds the two DNAT rules, and they are
//!   gone after the daemon stops.
//! - `bitpeer seed --port-mapping` against a router without UPnP falls back to NAT-PMP/PCP,
//!   and removes its mappings when interrupted.
//!
//! Needs root, `ip`, `nft` and `miniupnpd` (scripts/install-ipv6.sh installs them). When one
//! is missing the test fails, unless BITPEER_SKIP_INTEROP=1.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);
const EXTERNAL_IP: &str = "11.22.33.44";
const LAN_IP: &str = "10.77.0.2";

/// The chains miniupnpd's nftables backend fills (its defaults: table `filter`, family inet).
const NFT_RULESET: &str = "table inet filter {
    chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
    chain miniupnpd { }
    chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
    chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
    chain prerouting_miniupnpd { }
    chain postrouting_miniupnpd { }
}
";

fn sh(args: &[&str]) -> Output {
    let mut cmd = Command::new(args[0]);
    cmd.args(&args[1..]);
    try_run(cmd, Duration::from_secs(20)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) {
    let o = sh(args);
    assert!(o.status.success(), "{args:?}: {}", o.explain());
}

/// Whether root, `ip netns`, `nft` and `miniupnpd` are there.
fn tools_available() -> bool {
    let have = |p: &str| Path::new(p).exists();
    let root = std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let ok = root && have("/usr/sbin/ip") && have("/usr/sbin/nft") && have("/usr/sbin/miniupnpd");
    available_or_fail(
        ok,
        "port mapping tests need root, ip, nft and miniupnpd (apt-get install iproute2 \
         nftables miniupnpd-nftables; scripts/install-ipv6.sh does)",
    )
}

/// The two namespaces and miniupnpd; everything is removed on drop (miniupnpd killed by
/// its PID through its guard, then the namespaces deleted, which deletes the veths).
struct Lab {
    gw: String,
    lan: String,
    miniupnpd: Option<Proc>,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn new(upnp: bool) -> Lab {
        static N: AtomicU32 = AtomicU32::new(0);
        let tag = format!(
            "bp{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let (gw, lan) = (format!("{tag}g"), format!("{tag}l"));
        let dir = tempfile::tempdir().unwrap();
        // Built first, so that a failure below still deletes what was made.
        let mut lab = Lab {
            gw: gw.clone(),
            lan: lan.clone(),
            miniupnpd: None,
            _dir: dir,
        };
        let dir = lab._dir.path().to_owned();
        must(&["ip", "netns", "add", &gw]);
        must(&["ip", "netns", "add", &lan]);
        must(&[
            "ip", "link", "add", "v0", "netns", &lan, "type", "veth", "peer", "name", "v1",
            "netns", &gw,
        ]);
        must(&[
            "ip", "-n", &gw, "link", "add", "ext0", "type", "veth", "peer", "name", "ext1",
        ]);
        must(&[
            "ip",
            "-n",
            &gw,
            "addr",
            "add",
            &format!("{EXTERNAL_IP}/24"),
            "dev",
            "ext0",
        ]);
        must(&["ip", "-n", &gw, "addr", "add", "10.77.0.1/24", "dev", "v1"]);
        must(&[
            "ip",
            "-n",
            &lan,
            "addr",
            "add",
            &format!("{LAN_IP}/24"),
            "dev",
            "v0",
        ]);
        for (ns, dev) in [
            (&gw, "ext0"),
            (&gw, "ext1"),
            (&gw, "v1"),
            (&gw, "lo"),
            (&lan, "v0"),
            (&lan, "lo"),
        ] {
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        must(&[
            "ip",
            "-n",
            &lan,
            "route",
            "add",
            "default",
            "via",
            "10.77.0.1",
        ]);
        let nft = dir.join("rules.nft");
        std::fs::write(&nft, NFT_RULESET).unwrap();
        must(&[
            "ip",
            "netns",
            "exec",
            &gw,
            "nft",
            "-f",
            nft.to_str().unwrap(),
        ]);
        let conf = dir.join("miniupnpd.conf");
        std::fs::write(
            &conf,
            format!(
                "ext_ifname=ext0\nlistening_ip=v1\nport=0\nenable_natpmp=yes\n\
                 enable_upnp={}\nsecure_mode=yes\nsystem_uptime=yes\n\
                 uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b\nlease_file={}\n\
                 allow 1024-65535 10.77.0.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
                if upnp { "yes" } else { "no" },
                dir.join("leases").display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &gw, "miniupnpd", "-d", "-f"])
            .arg(&conf)
            .arg("-P")
            .arg(dir.join("pid"));
        let mut p = Proc::spawn(cmd, Duration::from_secs(300));
        p.wait_stderr_line(Duration::from_secs(20), |l| {
            l.contains("Listening for NAT-PMP").then_some(())
        });
        lab.miniupnpd = Some(p);
        lab
    }

    /// The DNAT rules miniupnpd holds: (protocol number, external port, target).
    fn redirects(&self) -> Vec<String> {
        let o = sh(&[
            "ip",
            "netns",
            "exec",
            &self.gw,
            "nft",
            "list",
            "chain",
            "inet",
            "filter",
            "prerouting_miniupnpd",
        ]);
        assert!(o.status.success(), "{}", o.explain());
        o.stdout_str()
            .lines()
            .filter(|l| l.contains("dnat"))
            .map(|l| l.trim().to_owned())
            .collect()
    }

    fn explain(&self) -> String {
        self.miniupnpd
            .as_ref()
            .map(|p| p.explain())
            .unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut p) = self.miniupnpd.take() {
            p.kill();
        }
        for ns in [&self.gw, &self.lan] {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

/// Waits until miniupnpd holds exactly the TCP and UDP redirects of `port` to the LAN host.
fn wait_redirects(lab: &Lab, port: u16, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let target = format!("dnat ip to {LAN_IP}:{port}");
    loop {
        let r = lab.redirects();
        let tcp = r.iter().any(|l| l.contains("0x6 ") && l.contains(&target));
        let udp = r.iter().any(|l| l.contains("0x11 ") && l.contains(&target));
        if present && tcp && udp && r.len() == 2 || !present && r.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "redirects of port {port} should be {}: {r:?}\nminiupnpd: {}",
            if present { "there" } else { "gone" },
            lab.explain()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn in_lan(lab: &Lab) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &lab.lan, bitpeer_bin()]);
    cmd
}

/// GET http://API/api/v1/session from inside the LAN namespace.
fn session_json(lab: &Lab, api: &str) -> Value {
    let code = format!(
        "import urllib.request;print(urllib.request.urlopen('http://{api}/api/v1/session',timeout=5).read().decode())"
    );
    let o = sh(&["ip", "netns", "exec", &lab.lan, "python3", "-c", &code]);
    assert!(o.status.success(), "{}", o.explain());
    serde_json::from_str(o.stdout_str().trim()).unwrap()
}

#[test]
fn the_daemon_maps_its_port_by_upnp_and_reports_it() {
    if !tools_available() {
        return;
    }
    let lab = Lab::new(true);
    let tmp = tempfile::tempdir().unwrap();
    // A 4 s lease, renewed every 2 s.
    let config = tmp.path().join("daemon.toml");
    std::fs::write(&config, "port_mapping_lease = 4\n").unwrap();
    let mut cmd = in_lan(&lab);
    cmd.arg("daemon")
        .arg("--config")
        .arg(&config)
        .args([
            "--api",
            "127.0.0.1:0",
            "--listen",
            "0.0.0.0:0",
            "--no-dht",
            "--no-lsd",
        ])
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .arg("--download-dir")
        .arg(tmp.path().join("dl"))
        .env_remove("BITPEER_API_PASSWORD")
        .env_remove("BITPEER_API_USER");
    let mut daemon = Proc::spawn(cmd, TIMEOUT);
    let api = daemon.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("api listening on http://")
            .map(str::to_owned)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let (s, port) = loop {
        let s = session_json(&lab, &api);
        let port: u16 = s["listen_addr"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        if s["port_mapping"]["mappings"]
            .as_array()
            .is_some_and(|m| m.len() == 2)
        {
            break (s, port);
        }
        assert!(
            Instant::now() < deadline,
            "no mapping reported: {s}\n{}\n{}",
            daemon.explain(),
            lab.explain()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let pm = &s["port_mapping"];
    assert_eq!(pm["method"], "UPnP", "{s}");
    assert_eq!(pm["external_ip"], EXTERNAL_IP, "{s}");
    assert_eq!(pm["gateway"], "10.77.0.1", "{s}");
    for (m, proto) in pm["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["TCP", "UDP"])
    {
        assert_eq!(m["protocol"], proto);
        assert_eq!(m["internal"], format!("{LAN_IP}:{port}"), "{s}");
        assert_eq!(m["external"], format!("{EXTERNAL_IP}:{port}"), "{s}");
    }
    // Both families listen on the one port by default.
    assert_eq!(s["listen_addrs"].as_array().unwrap().len(), 2, "{s}");
    wait_redirects(&lab, port, true);
    // Renewed before the lease ends: after three leases the router still forwards both.
    let started = Instant::now();
    let renewals = |s: &Value| s["port_mapping"]["renewals"].as_u64().unwrap_or(0);
    let first = renewals(&s);
    while started.elapsed() < Duration::from_secs(12) {
        std::thread::sleep(Duration::from_millis(500));
        wait_redirects(&lab, port, true);
    }
    let s = session_json(&lab, &api);
    assert!(renewals(&s) >= first + 4, "{s}");
    assert_eq!(s["port_mapping"]["error"], Value::Null, "{s}");
    let status = daemon.terminate(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{}", daemon.explain());
    wait_redirects(&lab, port, false);
    daemon.assert_no_panic();
}

#[test]
fn seed_with_port_mapping_falls_back_to_natpmp_and_removes_it() {
    if !tools_available() {
        return;
    }
    let lab = Lab::new(false);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("pm.bin");
    write_random(&data, 77, 300_000);
    let torrent = tmp.path().join("pm.torrent");
    bitpeer_create(&data, &torrent, &[]);
    let mut cmd = in_lan(&lab);
    cmd.arg("seed")
        .arg(&torrent)
        .arg("--data")
        .arg(tmp.path())
        .args([
            "--listen",
            "0.0.0.0:0",
            "--no-dht",
            "--no-lsd",
            "--port-mapping",
        ]);
    let mut seed = Proc::spawn(cmd, TIMEOUT);
    let port: u16 = seed.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("listening on ")
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
    });
    let line = seed.wait_stderr_line(Duration::from_secs(60), |l| {
        l.contains("port mapping").then(|| l.to_owned())
    });
    assert_eq!(
        line,
        format!(
            "port mapping: TCP {LAN_IP}:{port} -> {EXTERNAL_IP}:{port}, \
             UDP {LAN_IP}:{port} -> {EXTERNAL_IP}:{port} (NAT-PMP/PCP)"
        ),
        "{}",
        lab.explain()
    );
    wait_redirects(&lab, port, true);
    let status = seed.terminate(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{}", seed.explain());
    wait_redirects(&lab, port, false);
    seed.assert_no_panic();
}

#[test]
fn lsd_over_ipv6_multicast_finds_the_seeder() {
    if !tools_available() {
        return;
    }
    let ns = format!("bp{}lsd", std::process::id());
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = sh(&["ip", "netns", "del", &self.0]);
        }
    }
    must(&["ip", "netns", "add", &ns]);
    let _ns = Ns(ns.clone());
    must(&[
        "ip", "-n", &ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
    ]);
    must(&[
        "ip",
        "-n",
        &ns,
        "addr",
        "add",
        "fd00:77::1/64",
        "dev",
        "v0",
        "nodad",
    ]);
    for dev in ["lo", "v0", "v1"] {
        must(&["ip", "-n", &ns, "link", "set", dev, "up"]);
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("seed").join("lsd6.bin");
    write_random(&data, 61, 700_000);
    let torrent = tmp.path().join("lsd6.torrent");
    bitpeer_create(&data, &torrent, &[]);
    let node = |args: &[&str]| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns, bitpeer_bin()])
            .args(args)
            .args(["--listen", "[fd00:77::1]:0", "--no-dht"]);
        cmd
    };
    let dir = data.parent().unwrap().to_str().unwrap();
    let mut seeder = Proc::spawn(
        node(&["seed", torrent.to_str().unwrap(), "--data", dir]),
        TIMEOUT,
    );
    seeder.wait_line(Duration::from_secs(60), |l| {
        l.strip_prefix("listening on ").map(|_| ())
    });
    let out = tmp.path().join("out");
    let mut dl = Proc::spawn(
        node(&[
            "download",
            torrent.to_str().unwrap(),
            "--json",
            "-o",
            out.to_str().unwrap(),
        ]),
        TIMEOUT,
    );
    finish_download(&mut dl, TIMEOUT);
    assert_same_tree(&data, &out.join("lsd6.bin"));
    dl.assert_no_panic();
    seeder.assert_no_panic();
}

/// A daemon listening on loopback only asks no router (no one outside could reach it): its
/// session shows no port mapping. (No namespace needed.)
#[test]
fn a_daemon_on_loopback_asks_no_router() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let mut d = spawn_daemon(&tmp.path().join("s"), &tmp.path().join("d"), &[]);
    let mut s = std::net::TcpStream::connect(&d.api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /api/v1/session HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        d.api
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(v["port_mapping"], Value::Null, "{v}");
    d.proc.wait_stderr_line(Duration::from_secs(10), |l| {
        (l == "port mapping: off (listening on loopback only)").then_some(())
    });
    d.proc.assert_no_panic();
}
