//! BEP 32 (IPv6 DHT) in the sans-IO node: `nodes6` and `want` on the wire, one routing table
//! per family, answers in the family asked for, and a node that only has IPv4 keeping IPv6
//! nodes out.

use std::net::{Ipv6Addr, SocketAddr};
use std::time::Instant;

mod common;

use common::drain;
use dht::NodeId;
use dht::krpc::{self, Body, Message, Query, Response, Want};
use dht::node::{Node, NodeConfig};

const OUR_ID: NodeId = NodeId([0x42; 20]);

fn node(families: Want) -> (Node, Instant) {
    let now = Instant::now();
    let mut cfg = NodeConfig::new(OUR_ID, 7);
    cfg.families = families;
    (Node::new(cfg, now), now)
}

fn v4(i: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, i], 6881))
}

fn v6(i: u16) -> SocketAddr {
    SocketAddr::from((Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i), 6881))
}

fn msg(tid: &[u8], want: Option<Want>, body: Body) -> Vec<u8> {
    Message {
        tid: tid.to_vec(),
        version: None,
        read_only: false,
        ip: None,
        want,
        body,
    }
    .encode()
}

/// `from` queries us; we ping it back; it answers: it is in our table now.
fn join(n: &mut Node, now: Instant, from: SocketAddr, id: NodeId) {
    let ping = msg(b"q1", None, Body::Query(Query::Ping { id }));
    n.handle_datagram(now, from, &ping);
    let out = drain(n);
    let Some((_, our_ping)) = out
        .iter()
        .find(|(a, m)| *a == from && matches!(m.body, Body::Query(Query::Ping { .. })))
    else {
        return;
    };
    let answer = msg(
        &our_ping.tid,
        None,
        Body::Response(Response {
            id,
            ..Default::default()
        }),
    );
    n.handle_datagram(now, from, &answer);
}

fn find_node(n: &mut Node, now: Instant, from: SocketAddr, want: Option<Want>) -> Response {
    let q = msg(
        b"fn",
        want,
        Body::Query(Query::FindNode {
            id: NodeId([0x99; 20]),
            target: NodeId([0x43; 20]),
        }),
    );
    n.handle_datagram(now, from, &q);
    drain(n)
        .into_iter()
        .find_map(|(to, m)| match m.body {
            Body::Response(r) if to == from => Some(r),
            _ => None,
        })
        .expect("an answer")
}

/// An answer to query `tid` that names one IPv6 node, `v6(7)`, in `nodes6`.
fn names_v6_7(tid: &[u8]) -> Vec<u8> {
    msg(
        tid,
        None,
        Body::Response(Response {
            id: NodeId([0x10; 20]),
            nodes6: vec![(NodeId([0x43; 20]), v6(7))],
            ..Default::default()
        }),
    )
}

#[test]
fn want_is_read_and_written() {
    // Unknown entries are skipped; the order does not matter.
    let raw = b"d1:ad2:id20:abcdefghij01234567896:target20:abcdefghij01234567894:wantl2:n62:xx2:n4ee1:q9:find_node1:t2:aa1:y1:qe";
    let m = krpc::decode(raw).unwrap();
    assert_eq!(m.want, Some(Want::BOTH));
    let raw6 = b"d1:ad2:id20:abcdefghij01234567896:target20:abcdefghij01234567894:wantl2:n6ee1:q9:find_node1:t2:aa1:y1:qe";
    assert_eq!(
        krpc::decode(raw6).unwrap().want,
        Some(Want {
            n4: false,
            n6: true
        })
    );
    // A `want` that is not a list is ignored, not an error.
    let bad = b"d1:ad2:id20:abcdefghij01234567896:target20:abcdefghij01234567894:wanti3ee1:q9:find_node1:t2:aa1:y1:qe";
    assert_eq!(krpc::decode(bad).unwrap().want, None);
    // Written as a list in the query's arguments, and read back.
    let enc = msg(
        b"t",
        Some(Want::BOTH),
        Body::Query(Query::GetPeers {
            id: OUR_ID,
            info_hash: NodeId([1; 20]),
        }),
    );
    assert!(enc.windows(16).any(|w| w == b"4:wantl2:n42:n6e"));
    assert_eq!(krpc::decode(&enc).unwrap().want, Some(Want::BOTH));
}

#[test]
fn nodes6_entries_are_38_bytes() {
    let mut nodes6 = Vec::new();
    nodes6.extend_from_slice(&[0x55; 20]);
    nodes6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
    nodes6.extend_from_slice(&6881u16.to_be_bytes());
    let mut raw = b"d1:rd2:id20:abcdefghij01234567896:nodes638:".to_vec();
    raw.extend_from_slice(&nodes6);
    raw.extend_from_slice(b"e1:t2:aa1:y1:re");
    let Body::Response(r) = krpc::decode(&raw).unwrap().body else {
        panic!("a response")
    };
    assert_eq!(
        r.nodes6,
        vec![(NodeId([0x55; 20]), "[::1]:6881".parse().unwrap())]
    );
    // 26-byte entries are no `nodes6`.
    let bad =
        b"d1:rd2:id20:abcdefghij01234567896:nodes626:abcdefghijklmnopqrstuvwxyze1:t2:aa1:y1:re";
    assert!(krpc::decode(bad).is_err());
}

#[test]
fn each_family_has_its_own_table_and_answers_follow_want() {
    let (mut n, now) = node(Want::BOTH);
    join(&mut n, now, v4(1), NodeId([0x40; 20]));
    join(&mut n, now, v4(2), NodeId([0x41; 20]));
    join(&mut n, now, v6(1), NodeId([0x44; 20]));
    assert_eq!(n.table().len(), 2);
    assert_eq!(n.table6().len(), 1);
    assert_eq!(n.table_len(), 3);
    assert!(n.table().export().iter().all(|(_, a)| a.is_ipv4()));
    assert!(n.table6().export().iter().all(|(_, a)| a.is_ipv6()));

    // No `want`: the family of the querier.
    let r = find_node(&mut n, now, v4(9), None);
    assert_eq!((r.nodes.len(), r.nodes6.len()), (2, 0));
    let r = find_node(&mut n, now, v6(9), None);
    assert_eq!((r.nodes.len(), r.nodes6.len()), (0, 1));
    // `want` decides, whatever the querier's family.
    let r = find_node(&mut n, now, v4(9), Some(Want::BOTH));
    assert_eq!((r.nodes.len(), r.nodes6.len()), (2, 1));
    assert_eq!(r.nodes6[0].1, v6(1));
    let only6 = Want {
        n4: false,
        n6: true,
    };
    let r = find_node(&mut n, now, v4(9), Some(only6));
    assert_eq!((r.nodes.len(), r.nodes6.len()), (0, 1));
}

#[test]
fn a_dual_stack_node_asks_for_both_and_looks_up_over_both() {
    let (mut n, now) = node(Want::BOTH);
    n.bootstrap(&[v4(1), v6(1)], now);
    let out = drain(&mut n);
    let mut to: Vec<SocketAddr> = out.iter().map(|(a, _)| *a).collect();
    to.sort();
    assert_eq!(to, vec![v4(1), v6(1)]);
    for (_, m) in &out {
        assert!(matches!(m.body, Body::Query(Query::FindNode { .. })));
        assert_eq!(m.want, Some(Want::BOTH));
    }
    // The IPv4 bootstrap names an IPv6 node in `nodes6`: it is asked next, over IPv6.
    let (_, q) = out.iter().find(|(a, _)| *a == v4(1)).unwrap();
    let answer = names_v6_7(&q.tid);
    n.handle_datagram(now, v4(1), &answer);
    assert_eq!(n.table().len(), 1);
    assert_eq!(n.table6().len(), 0);
    let out = drain(&mut n);
    assert!(out.iter().any(|(a, _)| *a == v6(7)), "{out:?}");
}

#[test]
fn an_ipv4_only_node_keeps_ipv6_nodes_out() {
    let (mut n, now) = node(Want {
        n4: true,
        n6: false,
    });
    // Our queries carry no `want` (one family only).
    n.bootstrap(&[v4(1), v6(1)], now);
    let out = drain(&mut n);
    assert_eq!(out.len(), 1, "only the IPv4 bootstrap is asked");
    assert_eq!(out[0].0, v4(1));
    assert_eq!(out[0].1.want, None);
    // A `nodes6` referral is not followed.
    let answer = names_v6_7(&out[0].1.tid);
    n.handle_datagram(now, v4(1), &answer);
    assert!(drain(&mut n).iter().all(|(a, _)| a.is_ipv4()));
    // An IPv6 querier is answered but not pinged into a table.
    join(&mut n, now, v6(2), NodeId([0x44; 20]));
    assert_eq!(n.table6().len(), 0);
}
