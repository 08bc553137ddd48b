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

/// BEP 32 over real sockets: a dual-stack node (127.0.0.1 and ::1, one table per family)
/// joins an IPv4-only and an IPv6-only node through one bootstrap, learns both (its queries
/// carry `want: [n4, n6]`), and finds an IPv6 announce and an IPv4 announce in one lookup.
#[tokio::test]
async fn a_dual_stack_node_serves_and_uses_both_families() {
    let seed = Dht::start(DhtConfig {
        bind6: Some("[::1]:0".parse().unwrap()),
        ..config(vec![])
    })
    .unwrap();
    let seed6 = seed.local_addr6().expect("an IPv6 socket");
    assert!(seed6.is_ipv6());
    let only4 = Dht::start(config(vec![seed.local_addr().to_string()])).unwrap();
    let only6 = Dht::start(DhtConfig {
        bind: "[::1]:0".parse().unwrap(),
        ..config(vec![seed6.to_string()])
    })
    .unwrap();
    assert_eq!(wait_table(&only4, 1, Duration::from_secs(10)).await, 1);
    assert_eq!(wait_table(&only6, 1, Duration::from_secs(10)).await, 1);
    assert_eq!(wait_table(&seed, 2, Duration::from_secs(10)).await, 2);
    let info_hash = [0x32; 20];
    collect(
        only6.announce(info_hash, Some(6006)),
        Duration::from_secs(15),
    )
    .await;
    collect(
        only4.announce(info_hash, Some(4004)),
        Duration::from_secs(15),
    )
    .await;

    // A dual-stack newcomer bootstrapped from both of the seed's addresses (as a router
    // name resolving to both): the seed in each table, only4 from `nodes`, only6 from
    // `nodes6`. Values come in the family of the query (the announce of only6 is stored
    // on the seed's IPv6 side), so finding both needs lookups over both families.
    let dual = Dht::start(DhtConfig {
        bind6: Some("[::1]:0".parse().unwrap()),
        ..config(vec![seed.local_addr().to_string(), seed6.to_string()])
    })
    .unwrap();
    assert_eq!(wait_table(&dual, 4, Duration::from_secs(10)).await, 4);
    let found = collect(dual.get_peers(info_hash), Duration::from_secs(15)).await;
    let v6: SocketAddr = "[::1]:6006".parse().unwrap();
    let v4: SocketAddr = "127.0.0.1:4004".parse().unwrap();
    assert!(found.contains(&v6), "{found:?}");
    assert!(found.contains(&v4), "{found:?}");
    for d in [seed, only4, only6, dual] {
        d.shutdown().await.unwrap();
    }
}

/// When the second family's socket cannot be bound (its port is taken), the node runs on
/// the first family alone instead of not at all.
#[tokio::test]
async fn a_taken_ipv6_port_leaves_the_ipv4_dht_working() {
    let taken = {
        let s = socket2::Socket::new(
            socket2::Domain::IPV6,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        s.set_only_v6(true).unwrap();
        s.bind(&"[::1]:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        std::net::UdpSocket::from(s)
    };
    let seed = Dht::start(config(vec![])).unwrap();
    let node = Dht::start(DhtConfig {
        bind6: Some(taken.local_addr().unwrap()),
        ..config(vec![seed.local_addr().to_string()])
    })
    .expect("the DHT starts without its IPv6 socket");
    assert_eq!(node.local_addr6(), None);
    assert_eq!(wait_table(&node, 1, Duration::from_secs(10)).await, 1);
    let info_hash = [0x61; 20];
    collect(
        node.announce(info_hash, Some(4444)),
        Duration::from_secs(15),
    )
    .await;
    let found = collect(seed.get_peers(info_hash), Duration::from_secs(15)).await;
    assert!(
        found.contains(&"127.0.0.1:4444".parse().unwrap()),
        "{found:?}"
    );
    for d in [seed, node] {
        d.shutdown().await.unwrap();
    }
}
