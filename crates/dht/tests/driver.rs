//! The tokio driver over real UDP sockets on 127.0.0.1 and ::1: our nodes find each other's
//! announces, save and reload their routing table, shrug off unresolvable bootstrap hosts and
//! non-KRPC datagrams.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::live::{LOOPBACK, collect, config, wait_table};
use dht::{Dht, DhtConfig};

#[tokio::test]
async fn our_nodes_find_each_other_and_reload_their_table() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("dht.state");
    let b = Dht::start(config(vec![])).unwrap();
    let mut cfg = config(vec![b.local_addr().to_string()]);
    cfg.state_file = Some(state.clone());
    let a = Dht::start(cfg.clone()).unwrap();
    assert_eq!(wait_table(&a, 1, Duration::from_secs(10)).await, 1);
    assert_eq!(wait_table(&b, 1, Duration::from_secs(10)).await, 1);

    // A announces with implied_port; B, which stored it, finds A's UDP port.
    let info_hash = [0x11; 20];
    let on_the_way = collect(a.announce(info_hash, None), Duration::from_secs(15)).await;
    assert!(on_the_way.is_empty(), "{on_the_way:?}");
    let found = collect(b.get_peers(info_hash), Duration::from_secs(15)).await;
    assert_eq!(found, vec![a.local_addr()]);

    // A saves its table on shutdown and loads it (and its id) on the next start.
    let a_id = a.node_id();
    let a_addr = a.local_addr();
    a.shutdown().await.unwrap();
    assert!(state.exists());
    cfg.bootstrap = vec![];
    let a2 = Dht::start(cfg).unwrap();
    assert_eq!(a2.node_id(), a_id);
    assert_eq!(a2.routing_table_size().await, 1, "table not reloaded");
    // Unresolvable bootstrap hosts are not fatal.
    let c = Dht::start(config(vec![
        "no-such-host.invalid:6881".into(),
        "not even a host".into(),
        b.local_addr().to_string(),
    ]))
    .unwrap();
    assert_eq!(wait_table(&c, 1, Duration::from_secs(15)).await, 1);
    // Non-KRPC datagrams are ignored; the node keeps working.
    let junk = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
    for d in [&b"\x41\x00junk"[..], b"", b"d1:x", &[b'd'; 3000]] {
        let _ = junk.send_to(d, c.local_addr());
    }
    let found = collect(c.get_peers(info_hash), Duration::from_secs(15)).await;
    assert_eq!(found, vec![a_addr]);
    for d in [a2, b, c] {
        d.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn our_nodes_work_over_ipv6_loopback() {
    let v6 = |bootstrap: Vec<String>| DhtConfig {
        bind: "[::1]:0".parse().unwrap(),
        ..config(bootstrap)
    };
    let seed = Dht::start(v6(vec![])).unwrap();
    let a = Dht::start(v6(vec![seed.local_addr().to_string()])).unwrap();
    assert_eq!(wait_table(&a, 1, Duration::from_secs(10)).await, 1);
    let c = Dht::start(v6(vec![seed.local_addr().to_string()])).unwrap();
    // C learns A from the seed's `nodes6`.
    assert_eq!(wait_table(&c, 2, Duration::from_secs(10)).await, 2);
    let info_hash = [0x66; 20];
    collect(a.announce(info_hash, Some(4242)), Duration::from_secs(15)).await;
    let want: SocketAddr = "[::1]:4242".parse().unwrap();
    let found = collect(c.get_peers(info_hash), Duration::from_secs(15)).await;
    assert!(found.contains(&want), "{found:?}");
    for d in [seed, a, c] {
        d.shutdown().await.unwrap();
    }
}
