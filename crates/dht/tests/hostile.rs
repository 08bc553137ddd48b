//! Hostile input against one sans-IO node: malformed and oversized datagrams, bad tokens,
//! spoofed responses, query floods from one IP and from very many. No panic, typed KRPC
//! errors where the protocol has them, and state that stays bounded.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{TestRng, drain};
use dht::NodeId;
use dht::krpc::{self, Body, Message, Query, code};
use dht::node::{MAX_PENDING, MAX_QUEUED_TRANSMITS, Node, NodeConfig};

const OUR_ID: NodeId = NodeId([0x42; 20]);

fn node(tweak: impl FnOnce(&mut NodeConfig)) -> (Node, Instant) {
    let now = Instant::now();
    let mut cfg = NodeConfig::new(OUR_ID, 7);
    tweak(&mut cfg);
    (Node::new(cfg, now), now)
}

fn addr(i: u32) -> SocketAddr {
    // Private addresses: BEP 42 does not apply, so any id is acceptable.
    SocketAddr::new(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), 6881)
}

fn query(tid: &[u8], q: Query) -> Vec<u8> {
    Message {
        tid: tid.to_vec(),
        version: None,
        read_only: false,
        ip: None,
        want: None,
        body: Body::Query(q),
    }
    .encode()
}

fn answers_to(out: &[(SocketAddr, Message)], to: SocketAddr) -> Vec<&Message> {
    out.iter()
        .filter(|(a, m)| *a == to && !matches!(m.body, Body::Query(_)))
        .map(|(_, m)| m)
        .collect()
}

fn ping(tid: &[u8], id: NodeId) -> Vec<u8> {
    query(tid, Query::Ping { id })
}

#[test]
fn garbage_never_panics_and_the_node_keeps_answering() {
    let (mut n, now) = node(|_| {});
    let mut rng = TestRng(99);
    let valid = ping(b"aa", NodeId([1; 20]));
    for i in 0..20_000u32 {
        let bytes: Vec<u8> = match i % 5 {
            0 => (0..rng.below(1600)).map(|_| rng.next() as u8).collect(),
            1 => {
                let mut v = valid.clone();
                let at = rng.below(v.len() as u64) as usize;
                v[at] = rng.next() as u8;
                v.truncate(rng.below(v.len() as u64 + 1) as usize);
                v
            }
            2 => [b"d".to_vec(), vec![b'l'; 1000], vec![b'e'; 1001]].concat(),
            3 => [
                b"d1:t2:aa1:y1:q1:q4:ping1:ad2:id20:".to_vec(),
                vec![b'x'; 4000],
            ]
            .concat(),
            _ => {
                // A syntactically valid dictionary of a random shape.
                format!(
                    "d1:t{}:{}1:y1:{}e",
                    3,
                    "abc",
                    ["q", "r", "e", "z"][i as usize % 4]
                )
                .into_bytes()
            }
        };
        n.handle_datagram(now, addr(i % 300), &bytes);
    }
    let f = n.footprint();
    assert!(f.queued_transmits <= MAX_QUEUED_TRANSMITS);
    assert!(f.table_nodes == 0, "garbage put nodes in the table: {f:?}");
    drain(&mut n);
    n.handle_datagram(now, addr(5000), &valid);
    let out = drain(&mut n);
    let answers = answers_to(&out, addr(5000));
    assert_eq!(answers.len(), 1);
    assert!(matches!(&answers[0].body, Body::Response(r) if r.id == OUR_ID));
    assert_eq!(
        answers[0].ip,
        Some(addr(5000)),
        "BEP 42 `ip` tells the querier its address"
    );
}

#[test]
fn malformed_queries_get_203_and_unknown_methods_204() {
    let (mut n, now) = node(|_| {});
    let from = addr(1);
    n.handle_datagram(
        now,
        from,
        b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:xy1:y1:qe",
    );
    n.handle_datagram(
        now,
        from,
        &query(
            b"zz",
            Query::Unknown {
                id: NodeId([1; 20]),
                method: b"sample_infohashes_v9".to_vec(),
            },
        ),
    );
    let out = drain(&mut n);
    let answers = answers_to(&out, from);
    assert_eq!(answers.len(), 2, "{out:?}");
    assert_eq!(answers[0].tid, b"xy");
    assert!(matches!(
        answers[0].body,
        Body::Error {
            code: code::PROTOCOL,
            ..
        }
    ));
    assert_eq!(answers[1].tid, b"zz");
    assert!(matches!(
        answers[1].body,
        Body::Error {
            code: code::METHOD_UNKNOWN,
            ..
        }
    ));
}

fn get_token(n: &mut Node, now: Instant, from: SocketAddr, info_hash: NodeId) -> Vec<u8> {
    n.handle_datagram(
        now,
        from,
        &query(
            b"gp",
            Query::GetPeers {
                id: NodeId([9; 20]),
                info_hash,
            },
        ),
    );
    let out = drain(n);
    let Body::Response(r) = &answers_to(&out, from)[0].body else {
        panic!("no response: {out:?}")
    };
    r.token.clone().expect("get_peers responses carry a token")
}

fn announce(token: Vec<u8>, info_hash: NodeId, port: u16, implied: bool) -> Vec<u8> {
    query(
        b"an",
        Query::AnnouncePeer {
            id: NodeId([9; 20]),
            info_hash,
            port,
            implied_port: implied,
            token,
        },
    )
}

#[test]
fn announces_need_a_fresh_token_from_the_same_ip() {
    let (mut n, t0) = node(|_| {});
    let ih = NodeId([0xab; 20]);
    let (x, y) = (addr(1), addr(2));
    let token = get_token(&mut n, t0, x, ih);

    // A made-up token, and x's token used from y: error 203, nothing stored.
    for (from, tok) in [(x, b"forged!!".to_vec()), (y, token.clone()), (x, vec![])] {
        n.handle_datagram(t0, from, &announce(tok, ih, 7000, false));
        let out = drain(&mut n);
        let a = answers_to(&out, from);
        assert!(
            matches!(&a[0].body, Body::Error { code: code::PROTOCOL, message } if message.contains("token")),
            "{a:?}"
        );
    }
    assert_eq!(n.footprint().stored_peers, 0);

    // The right token works, with an explicit port and with implied_port.
    n.handle_datagram(t0, x, &announce(token.clone(), ih, 7000, false));
    n.handle_datagram(t0, x, &announce(token.clone(), ih, 0, true));
    let out = drain(&mut n);
    assert!(
        answers_to(&out, x)
            .iter()
            .all(|m| matches!(m.body, Body::Response(_)))
    );
    n.handle_datagram(
        t0,
        y,
        &query(
            b"g2",
            Query::GetPeers {
                id: NodeId([8; 20]),
                info_hash: ih,
            },
        ),
    );
    let out = drain(&mut n);
    let Body::Response(r) = &answers_to(&out, y)[0].body else {
        panic!()
    };
    let mut values = r.values.clone();
    values.sort();
    assert_eq!(values, vec![x, SocketAddr::new(x.ip(), 7000)]);

    // Tokens live through one rotation of the secret, not two.
    let t1 = t0 + Duration::from_secs(6 * 60);
    n.handle_timeout(t1);
    n.handle_datagram(t1, x, &announce(token.clone(), ih, 7001, false));
    assert!(matches!(
        answers_to(&drain(&mut n), x)[0].body,
        Body::Response(_)
    ));
    let t2 = t0 + Duration::from_secs(12 * 60);
    n.handle_timeout(t2);
    n.handle_datagram(t2, x, &announce(token, ih, 7002, false));
    assert!(matches!(
        answers_to(&drain(&mut n), x)[0].body,
        Body::Error {
            code: code::PROTOCOL,
            ..
        }
    ));
    // Announces expire after 30 minutes.
    let t3 = t0 + Duration::from_secs(45 * 60);
    n.handle_timeout(t3);
    assert_eq!(n.footprint().stored_peers, 0);
}

#[test]
fn peer_store_is_bounded_against_many_announcers() {
    let (mut n, now) = node(|c| {
        c.store.info_hashes = 50;
        c.store.peers_per_info_hash = 20;
        c.query_burst_per_ip = 1e9;
    });
    for i in 0..500u32 {
        let from = addr(i);
        let ih = NodeId([(i % 100) as u8; 20]);
        let token = get_token(&mut n, now, from, ih);
        n.handle_datagram(now, from, &announce(token, ih, 1000 + i as u16, false));
        drain(&mut n);
    }
    let f = n.footprint();
    assert_eq!(f.stored_info_hashes, 50, "{f:?}");
    assert!(f.stored_peers <= 50 * 20, "{f:?}");
}

#[test]
fn a_query_flood_from_one_ip_is_rate_limited() {
    let (mut n, now) = node(|_| {});
    let flooder = addr(1);
    let mut answered = 0;
    for i in 0..10_000u32 {
        let t = now + Duration::from_micros(u64::from(i) * 100); // 10,000 in one second
        n.handle_datagram(
            t,
            flooder,
            &ping(&(i as u16).to_be_bytes(), NodeId([3; 20])),
        );
        answered += answers_to(&drain(&mut n), flooder).len();
    }
    // The burst (50) plus 20 per second.
    assert!((50..=75).contains(&answered), "answered {answered}");
    // Another IP is still served at once.
    let t = now + Duration::from_secs(1);
    n.handle_datagram(t, addr(2), &ping(b"ok", NodeId([4; 20])));
    assert_eq!(answers_to(&drain(&mut n), addr(2)).len(), 1);
}

#[test]
fn floods_from_many_sources_keep_state_bounded() {
    let (mut n, now) = node(|_| {});
    let mut rng = TestRng(5);
    // 100,000 sources, each a ping with a random id: each may trigger a ping back (to verify
    // it before it enters the table), but pending queries and the rate limiter are bounded.
    for i in 0..100_000u32 {
        let from = addr(i + 10);
        n.handle_datagram(now, from, &ping(b"pp", NodeId(rng.bytes20())));
        if i % 1000 == 0 {
            drain(&mut n);
        }
    }
    let f = n.footprint();
    assert!(f.pending_queries <= MAX_PENDING, "{f:?}");
    assert!(f.rate_limited_ips <= 10_000, "{f:?}");
    assert!(f.queued_transmits <= MAX_QUEUED_TRANSMITS, "{f:?}");
    assert_eq!(
        f.table_nodes, 0,
        "unverified queriers entered the table: {f:?}"
    );
    // Pending pings time out and leave nothing behind.
    n.handle_timeout(now + Duration::from_secs(5));
    assert_eq!(n.footprint().pending_queries, 0);
}

#[test]
fn responses_only_count_from_the_address_asked() {
    let (mut n, now) = node(|_| {});
    let peer = addr(1);
    let peer_id = NodeId([0x80; 20]);
    // The peer queries us; we ping it back to verify it.
    n.handle_datagram(now, peer, &ping(b"q1", peer_id));
    let out = drain(&mut n);
    let (_, our_ping) = out
        .iter()
        .find(|(a, m)| *a == peer && matches!(m.body, Body::Query(Query::Ping { .. })))
        .expect("a ping back");
    let answer = Message {
        tid: our_ping.tid.clone(),
        version: None,
        read_only: false,
        ip: None,
        want: None,
        body: Body::Response(krpc::Response {
            id: peer_id,
            ..Default::default()
        }),
    }
    .encode();
    // From elsewhere: ignored.
    n.handle_datagram(now, addr(2), &answer);
    assert_eq!(n.table_len(), 0);
    // From the peer: it enters the table.
    n.handle_datagram(now, peer, &answer);
    assert_eq!(n.table_len(), 1);
    // A replay does nothing more.
    n.handle_datagram(now, peer, &answer);
    assert_eq!(n.table_len(), 1);
}

#[test]
fn read_only_nodes_answer_nothing_and_are_not_added() {
    let (mut ro, now) = node(|c| c.read_only = true);
    ro.handle_datagram(now, addr(1), &ping(b"aa", NodeId([1; 20])));
    assert!(
        drain(&mut ro).is_empty(),
        "a read-only node answered a query"
    );
    // Its queries carry ro=1.
    ro.bootstrap(&[addr(2)], now);
    let out = drain(&mut ro);
    assert!(!out.is_empty());
    assert!(out.iter().all(|(_, m)| m.read_only));
    // A normal node answers a ro=1 query but does not ping the querier to add it.
    let (mut n, now) = node(|_| {});
    let (_, bytes) = {
        let mut ro2 = node(|c| c.read_only = true).0;
        ro2.bootstrap(&[addr(9)], now);
        ro2.poll_transmit().unwrap()
    };
    n.handle_datagram(now, addr(3), &bytes);
    let out = drain(&mut n);
    assert_eq!(answers_to(&out, addr(3)).len(), 1);
    assert!(
        !out.iter().any(|(_, m)| matches!(m.body, Body::Query(_))),
        "pinged a read-only node: {out:?}"
    );
}

#[test]
fn bep42_ids_are_enforced_on_public_addresses_only() {
    let (mut n, now) = node(|_| {});
    let public: SocketAddr = "1.2.3.4:6881".parse().unwrap();
    let private = addr(7);
    for from in [public, private] {
        n.handle_datagram(now, from, &ping(b"q1", NodeId([0x77; 20])));
    }
    let out = drain(&mut n);
    // Both get answers, but only the private one is pinged back for the table.
    assert_eq!(answers_to(&out, public).len(), 1);
    let pinged: Vec<SocketAddr> = out
        .iter()
        .filter(|(_, m)| matches!(m.body, Body::Query(_)))
        .map(|(a, _)| *a)
        .collect();
    assert_eq!(pinged, vec![private]);
    // A BEP 42 id on the public address is pinged.
    let good = dht::id::bep42_id(public.ip(), 3, [0x55; 20]);
    n.handle_datagram(now, public, &ping(b"q2", good));
    assert!(
        drain(&mut n)
            .iter()
            .any(|(a, m)| *a == public && matches!(m.body, Body::Query(_)))
    );
}

#[test]
fn fuzz_seeds_decode() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus/krpc_decode");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let m = krpc::decode(&bytes).unwrap_or_else(|e| panic!("seed does not decode: {e}"));
        if !matches!(m.body, Body::Error { .. }) {
            assert_eq!(krpc::decode(&m.encode()).unwrap(), m);
        }
        n += 1;
    }
    assert!(n >= 10);
}

#[test]
fn a_node_adopts_a_bep42_id_once_responders_agree_on_its_public_address() {
    let (mut n, now) = node(|_| {});
    let ours: SocketAddr = "203.0.113.7:6881".parse().unwrap();
    // Put three nodes in the table, then have each answer a ping with our address in `ip`.
    let peers: Vec<(NodeId, SocketAddr)> = (0..3u8)
        .map(|i| (NodeId([0x80 | i; 20]), addr(u32::from(i) + 1)))
        .collect();
    n.import(&peers, now);
    n.bootstrap(&[], now);
    let out = drain(&mut n);
    assert_eq!(out.len(), 3, "{out:?}");
    let old_id = n.id();
    for (i, (to, m)) in out.iter().enumerate() {
        let (id, _) = peers.iter().find(|(_, a)| a == to).unwrap();
        let answer = Message {
            tid: m.tid.clone(),
            version: None,
            read_only: false,
            ip: Some(ours),
            want: None,
            body: Body::Response(krpc::Response {
                id: *id,
                ..Default::default()
            }),
        };
        n.handle_datagram(now, *to, &answer.encode());
        if i < 2 {
            assert_eq!(n.id(), old_id, "changed id after {} votes", i + 1);
        }
    }
    assert_ne!(n.id(), old_id);
    assert!(dht::id::bep42_valid(&n.id(), ours.ip()));
    assert_eq!(n.table_len(), 3, "the table survives the new id");
    let changed = std::iter::from_fn(|| n.poll_event())
        .any(|e| matches!(e, dht::Event::NodeIdChanged { external, .. } if external == ours));
    assert!(changed);
}

mod bep44 {
    use super::*;
    use dht::ItemWant;
    use dht::item::{self, Item, ItemLimits};
    use dht::node::Event;

    /// The response to a `get` of `target` from `from`.
    fn get(n: &mut Node, now: Instant, from: SocketAddr, target: NodeId) -> krpc::Response {
        let q = Query::Get {
            id: NodeId([1; 20]),
            target,
            seq: None,
        };
        n.handle_datagram(now, from, &query(b"g1", q));
        let out = drain(n);
        match &answers_to(&out, from)[0].body {
            Body::Response(r) => r.clone(),
            other => panic!("no get response: {other:?}"),
        }
    }

    /// A token for `from`, from a `get`.
    fn token(n: &mut Node, now: Instant, from: SocketAddr) -> Vec<u8> {
        let r = get(n, now, from, NodeId([9; 20]));
        r.token.expect("get gives a token")
    }

    /// Put `item` from `from`; the KRPC error code, or None if stored.
    fn put(
        n: &mut Node,
        now: Instant,
        from: SocketAddr,
        item: Item,
        cas: Option<i64>,
    ) -> Option<i64> {
        let token = token(n, now, from);
        n.handle_datagram(
            now,
            from,
            &query(
                b"p1",
                Query::Put {
                    id: NodeId([1; 20]),
                    token,
                    item,
                    cas,
                },
            ),
        );
        let out = drain(n);
        match &answers_to(&out, from)[0].body {
            Body::Response(_) => None,
            Body::Error { code, .. } => Some(*code),
            Body::Query(_) => unreachable!(),
        }
    }

    fn stored(
        n: &mut Node,
        now: Instant,
        target: NodeId,
    ) -> Option<(Option<Vec<u8>>, Option<i64>)> {
        let r = get(n, now, addr(77), target);
        (r.v.is_some() || r.seq.is_some()).then_some((r.v, r.seq))
    }

    #[test]
    fn forged_items_are_refused_and_not_stored() {
        let (mut n, now) = node(|_| {});
        let from = addr(1);
        let secret = [5u8; 32];
        let salt = b"pipe".to_vec();
        let good = Item::sign(&secret, salt.clone(), 5, b"4:addr".to_vec()).unwrap();

        // Bad signature: the value changed after signing.
        let mut forged = good.clone();
        if let Item::Mutable { value, .. } = &mut forged {
            *value = b"4:evil".to_vec();
        }
        assert_eq!(
            put(&mut n, now, from, forged, None),
            Some(item::code::INVALID_SIGNATURE)
        );
        assert_eq!(stored(&mut n, now, good.target()), None);
        // Wrong salt: signed under one salt, presented under another (another target,
        // and the signature does not cover it).
        let mut wrong_salt = good.clone();
        if let Item::Mutable { salt, .. } = &mut wrong_salt {
            *salt = b"other".to_vec();
        }
        let wrong_target = wrong_salt.target();
        assert_eq!(
            put(&mut n, now, from, wrong_salt, None),
            Some(item::code::INVALID_SIGNATURE)
        );
        assert_eq!(stored(&mut n, now, wrong_target), None);
        // Oversized value: refused for its size (error 205) before any signature check.
        let big = format!("1001:{}", "x".repeat(1001)).into_bytes();
        let k = item::public_key(&secret);
        let oversized = Item::Mutable {
            key: k,
            salt: vec![],
            seq: 1,
            value: big,
            sig: [0; 64],
        };
        assert_eq!(
            put(&mut n, now, from, oversized, None),
            Some(item::code::VALUE_TOO_BIG)
        );
        // Oversized salt.
        let long_salt = Item::Mutable {
            key: k,
            salt: vec![b's'; 65],
            seq: 1,
            value: b"1:a".to_vec(),
            sig: [0; 64],
        };
        assert_eq!(
            put(&mut n, now, from, long_salt, None),
            Some(item::code::SALT_TOO_BIG)
        );
        // A bad token.
        n.handle_datagram(
            now,
            from,
            &query(
                b"p9",
                Query::Put {
                    id: NodeId([1; 20]),
                    token: b"nope".to_vec(),
                    item: good.clone(),
                    cas: None,
                },
            ),
        );
        let out = drain(&mut n);
        assert!(matches!(
            answers_to(&out, from)[0].body,
            Body::Error {
                code: code::PROTOCOL,
                ..
            }
        ));
        assert_eq!(stored(&mut n, now, good.target()), None);

        // The good one is stored; a lower seq is then refused and the stored one stays.
        assert_eq!(put(&mut n, now, from, good.clone(), None), None);
        let lower = Item::sign(&secret, salt.clone(), 4, b"3:old".to_vec()).unwrap();
        assert_eq!(
            put(&mut n, now, from, lower, None),
            Some(item::code::SEQ_TOO_LOW)
        );
        assert_eq!(
            stored(&mut n, now, good.target()),
            Some((Some(b"4:addr".to_vec()), Some(5)))
        );
        // cas mismatch.
        let newer = Item::sign(&secret, salt.clone(), 6, b"3:new".to_vec()).unwrap();
        assert_eq!(
            put(&mut n, now, from, newer.clone(), Some(3)),
            Some(item::code::CAS_MISMATCH)
        );
        assert_eq!(put(&mut n, now, from, newer, Some(5)), None);
        assert_eq!(
            stored(&mut n, now, good.target()),
            Some((Some(b"3:new".to_vec()), Some(6)))
        );
    }

    #[test]
    fn a_flood_of_puts_from_one_ip_is_bounded() {
        let limits = ItemLimits::default();
        let (mut n, now) = node(|_| {});
        let from = addr(2);
        let mut refused = 0;
        for i in 0..500 {
            let it = Item::immutable(format!("i{i}e").into_bytes()).unwrap();
            // Slowly enough for the query rate limit, which would bound a flood by itself.
            let t = now + Duration::from_millis(200) * i;
            if put(&mut n, t, from, it, None).is_some() {
                refused += 1;
            }
        }
        assert_eq!(n.footprint().stored_items, limits.items_per_ip);
        assert_eq!(refused, 500 - limits.items_per_ip);
        // Another IP can still store.
        let now = now + Duration::from_secs(100);
        let it = Item::immutable(b"4:else".to_vec()).unwrap();
        assert_eq!(put(&mut n, now, addr(3), it, None), None);
        // Many IPs together stop at the total bound.
        for i in 0..(limits.items as u32 + 100) {
            let it = Item::immutable(format!("i{}e", 10_000 + i).into_bytes()).unwrap();
            let _ = put(&mut n, now, addr(1000 + i), it, None);
        }
        assert_eq!(n.footprint().stored_items, limits.items);
    }

    /// A lookup for a mutable item ignores responses whose item is forged, older, or under
    /// another key, and reports the verified one.
    #[test]
    fn a_getter_accepts_only_verified_items() {
        let (mut n, now) = node(|_| {});
        let secret = [6u8; 32];
        let salt = b"s".to_vec();
        let key = item::public_key(&secret);
        let want = ItemWant::Mutable {
            key,
            salt: salt.clone(),
        };
        let target = item::mutable_target(&key, &salt);
        let peers: Vec<SocketAddr> = (10..14).map(addr).collect();
        n.bootstrap(&peers, now);
        drain(&mut n);
        let lid = n.get_item(target, want, now);
        let queries: Vec<(SocketAddr, Message)> = drain(&mut n)
            .into_iter()
            .filter(|(_, m)| matches!(m.body, Body::Query(Query::Get { .. })))
            .collect();
        assert!(queries.len() >= 3);
        let good = Item::sign(&secret, salt.clone(), 3, b"2:ok".to_vec()).unwrap();
        let Item::Mutable { sig, .. } = good.clone() else {
            unreachable!()
        };
        let other_key = item::public_key(&[7u8; 32]);
        let answers = [
            // Forged: the signature of the good item over another value.
            (Some(b"4:evil".to_vec()), Some(key), Some(sig), Some(9)),
            // Another key.
            (Some(b"2:ok".to_vec()), Some(other_key), Some(sig), Some(3)),
            // The good one.
            (Some(b"2:ok".to_vec()), Some(key), Some(sig), Some(3)),
        ];
        for (i, ((to, m), (v, k, s, seq))) in queries.iter().zip(answers).enumerate() {
            let r = dht::krpc::Response {
                id: NodeId([0x50 + i as u8; 20]),
                token: Some(b"t".to_vec()),
                v,
                k,
                sig: s,
                seq,
                ..Default::default()
            };
            let msg = Message {
                tid: m.tid.clone(),
                version: None,
                read_only: false,
                ip: None,
                want: None,
                body: Body::Response(r),
            };
            n.handle_datagram(now, *to, &msg.encode());
        }
        let mut found = Vec::new();
        while let Some(e) = n.poll_event() {
            if let Event::ItemFound { lookup, item } = e {
                assert_eq!(lookup, lid);
                found.push(item);
            }
        }
        assert_eq!(found, vec![good]);
    }
}
