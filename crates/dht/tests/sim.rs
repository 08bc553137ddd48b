//! Many DHT nodes over an in-memory network with virtual time: bootstrap from one seed,
//! announce, and every node finds the announcer with `get_peers`. Also with hostile nodes that
//! answer every query with a flood of fake nodes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Net, median, public_addr};
use dht::NodeId;
use dht::node::{Event, LookupId, LookupStats, MAX_CANDIDATES, MAX_PENDING};
use dht::table::K;

/// Build a network of `n` nodes: node 0 is the seed; each other node bootstraps from the
/// seed and from a random earlier node, joining 100 ms after the previous one.
fn build(net: &mut Net, n: usize) {
    let seed = net.add_node(public_addr(0), |_| {});
    for i in 1..n {
        let idx = net.add_node(public_addr(i), |_| {});
        let other = net.rng.below(i as u64) as usize;
        let contacts = vec![net.addr(seed), net.addr(other)];
        net.with_node(idx, |node, now| node.bootstrap(&contacts, now));
        net.run_for(Duration::from_millis(100));
    }
    // Let the last lookups finish.
    net.run_for(Duration::from_secs(30));
}

fn lookup_done(net: &Net, i: usize, lid: LookupId) -> Option<LookupStats> {
    net.events[i].iter().find_map(|e| match e {
        Event::LookupDone { lookup, stats, .. } if *lookup == lid => Some(stats.clone()),
        _ => None,
    })
}

fn found(net: &Net, i: usize, lid: LookupId, want: SocketAddr) -> bool {
    net.events[i].iter().any(|e| {
        matches!(e, Event::PeersFound { lookup, peers, .. } if *lookup == lid && peers.contains(&want))
    })
}

/// Announce from one node, then run `get_peers` from every node in `askers`, `batch` at a
/// time. Returns the stats of each lookup and whether it found the announcer.
fn announce_and_find(
    net: &mut Net,
    announcer: usize,
    askers: &[usize],
    batch: usize,
) -> Vec<(LookupStats, bool)> {
    let info_hash = NodeId(net.rng.bytes20());
    let port = 7000;
    let want = SocketAddr::new(net.addr(announcer).ip(), port);
    let lid = net.with_node(announcer, |n, now| n.announce(info_hash, Some(port), now));
    let deadline = net.now + Duration::from_secs(120);
    assert!(
        net.run_until(deadline, |net| lookup_done(net, announcer, lid).is_some()),
        "announce did not finish"
    );
    let stats = lookup_done(net, announcer, lid).unwrap();
    println!("announce: {stats:?}");
    assert!(stats.announced >= K / 2, "announced to too few: {stats:?}");
    assert!(stats.announce_acks >= K / 2, "too few acks: {stats:?}");

    let mut results = Vec::new();
    for chunk in askers.chunks(batch) {
        let lids: Vec<(usize, LookupId)> = chunk
            .iter()
            .map(|&i| (i, net.with_node(i, |n, now| n.get_peers(info_hash, now))))
            .collect();
        let deadline = net.now + Duration::from_secs(120);
        let all_done = net.run_until(deadline, |net| {
            lids.iter().all(|&(i, l)| lookup_done(net, i, l).is_some())
        });
        assert!(all_done, "lookups did not finish within 120 s");
        for (i, l) in lids {
            results.push((lookup_done(net, i, l).unwrap(), found(net, i, l, want)));
        }
    }
    results
}

fn report(name: &str, results: &[(LookupStats, bool)]) -> (usize, usize) {
    let mut rounds: Vec<usize> = results.iter().map(|(s, _)| s.rounds as usize).collect();
    let mut queries: Vec<usize> = results.iter().map(|(s, _)| s.queries).collect();
    let mut timeouts: Vec<usize> = results.iter().map(|(s, _)| s.timeouts).collect();
    let mut responses: Vec<usize> = results.iter().map(|(s, _)| s.responses).collect();
    let mut ms: Vec<usize> = results
        .iter()
        .map(|(s, _)| s.duration.as_millis() as usize)
        .collect();
    let found = results.iter().filter(|(_, f)| *f).count();
    let (mr, mq) = (median(&mut rounds), median(&mut queries));
    println!(
        "{name}: {found}/{} lookups found the announcer; median rounds {mr} (max {}), \
         median queries sent {mq} (max {}), median responses {}, median timeouts {}, \
         median virtual time {} ms",
        results.len(),
        rounds.last().unwrap(),
        queries.last().unwrap(),
        median(&mut responses),
        median(&mut timeouts),
        median(&mut ms),
    );
    (mr, mq)
}

#[test]
fn five_hundred_nodes_find_the_announcer() {
    let n = 500;
    let mut net = Net::new(0x5eed_0001);
    build(&mut net, n);
    let sizes: Vec<usize> = (0..n).map(|i| net.node(i).table_len()).collect();
    let mut s = sizes.clone();
    let med = median(&mut s);
    println!(
        "table sizes: min {} median {med} max {}",
        s[0],
        s[s.len() - 1]
    );
    assert!(
        sizes.iter().all(|&s| s >= K),
        "a node has fewer than k nodes: {sizes:?}"
    );

    let announcer = 1 + net.rng.below(n as u64 - 1) as usize;
    let askers: Vec<usize> = (0..n).filter(|&i| i != announcer).collect();
    let results = announce_and_find(&mut net, announcer, &askers, 50);
    let (rounds, queries) = report("500 nodes", &results);
    let missed: Vec<usize> = results
        .iter()
        .zip(&askers)
        .filter(|((_, f), _)| !f)
        .map(|(_, &i)| i)
        .collect();
    assert!(
        missed.is_empty(),
        "nodes that did not find the announcer: {missed:?}"
    );
    // log2(500) ≈ 9 bits to resolve, 3 or more per hop with k = 8.
    assert!(rounds <= 6, "median rounds {rounds}");
    assert!(queries <= 40, "median queries {queries}");
    let msgs: Vec<u64> = net.sent_by.clone();
    println!(
        "datagrams: {} delivered, {} dropped, busiest node sent {}",
        net.delivered,
        net.dropped,
        msgs.iter().max().unwrap()
    );
}

#[test]
fn liars_flooding_random_fake_nodes_do_not_break_lookups() {
    liars_scenario(0x5eed_0002, 30, false, 95);
}

#[test]
fn liars_flooding_fake_nodes_next_to_the_target_slow_lookups_but_do_not_break_them() {
    liars_scenario(0x5eed_0004, 15, true, 90);
}

fn liars_scenario(seed: u64, liars: usize, targeted: bool, percent_found: usize) {
    let n = 300;
    let mut net = Net::new(seed);
    build(&mut net, n);
    // Liars join by querying a few real nodes, which ping them back and add them.
    let liar_ids: Vec<usize> = (0..liars)
        .map(|j| net.add_liar(public_addr(10_000 + j), targeted))
        .collect();
    for &l in &liar_ids {
        for _ in 0..20 {
            let target = net.rng.below(n as u64) as usize;
            let from = net.addr(l);
            let id = match &net.hosts[l].1 {
                common::Host::Liar { id, .. } => *id,
                _ => unreachable!(),
            };
            let q = dht::krpc::Message {
                tid: b"lx".to_vec(),
                version: None,
                read_only: false,
                ip: None,
                want: None,
                body: dht::krpc::Body::Query(dht::krpc::Query::Ping { id }),
            };
            net.inject(from, target, q.encode());
        }
    }
    net.run_for(Duration::from_secs(10));
    let liar_addrs: std::collections::HashSet<SocketAddr> =
        liar_ids.iter().map(|&l| net.addr(l)).collect();
    let liars_known: usize = (0..n)
        .map(|i| {
            net.node(i)
                .export()
                .iter()
                .filter(|(_, a)| liar_addrs.contains(a))
                .count()
        })
        .sum();
    println!("liar entries in real routing tables: {liars_known}");
    assert!(
        liars_known > 0,
        "the liars never got into any table: the test tests nothing"
    );

    let announcer = 1 + net.rng.below(n as u64 - 1) as usize;
    let askers: Vec<usize> = (0..n).filter(|&i| i != announcer).step_by(2).collect();
    let results = announce_and_find(&mut net, announcer, &askers, 50);
    let name = format!("300 nodes + {liars} liars (targeted: {targeted})");
    report(&name, &results);
    // Every lookup stays within its query budget, whatever the liars sent.
    let budget = dht::NodeConfig::new(NodeId([0; 20]), 0).max_lookup_queries;
    assert!(results.iter().all(|(s, _)| s.queries <= budget));
    let found = results.iter().filter(|(_, f)| *f).count();
    assert!(
        found * 100 >= results.len() * percent_found,
        "only {found}/{} found the announcer",
        results.len()
    );
    // State stays bounded whatever the liars sent.
    for i in 0..n {
        let f = net.node(i).footprint();
        assert!(f.table_nodes <= 160 * K, "{f:?}");
        assert!(f.replacement_nodes <= 160 * K, "{f:?}");
        assert!(f.pending_queries <= MAX_PENDING, "{f:?}");
        assert!(f.lookup_candidates <= f.lookups * MAX_CANDIDATES, "{f:?}");
        // None of the fake nodes (random ids on random public addresses) passes BEP 42.
        let exported = net.node(i).export();
        let fakes = exported
            .iter()
            .filter(|(_, a)| !net.by_addr.contains_key(a))
            .count();
        assert_eq!(fakes, 0, "node {i} has fake nodes in its table");
    }
}

#[test]
fn tables_fill_by_refresh_and_lookups_survive_churn() {
    let n = 300;
    let mut net = Net::new(0x5eed_0003);
    build(&mut net, n);
    let mut before: Vec<usize> = (0..n).map(|i| net.node(i).table_len()).collect();
    // 20 virtual minutes: every bucket goes 15 minutes without news and is refreshed.
    net.run_for(Duration::from_secs(20 * 60));
    let mut after: Vec<usize> = (0..n).map(|i| net.node(i).table_len()).collect();
    let (b, a) = (median(&mut before), median(&mut after));
    println!("median table size: {b} after joining, {a} after refresh");
    assert!(a > b, "refresh did not grow the tables ({b} -> {a})");

    // A fifth of the nodes leave without a word; the rest still find an announcer.
    let mut gone = std::collections::HashSet::new();
    while gone.len() < n / 5 {
        let i = 1 + net.rng.below(n as u64 - 1) as usize;
        if gone.insert(i) {
            net.take_offline(i);
        }
    }
    let alive: Vec<usize> = (0..n).filter(|i| !gone.contains(i)).collect();
    let announcer = alive[1 + net.rng.below(alive.len() as u64 - 1) as usize];
    let askers: Vec<usize> = alive.iter().copied().filter(|&i| i != announcer).collect();
    let results = announce_and_find(&mut net, announcer, &askers, 50);
    report("300 nodes, 60 gone", &results);
    let found = results.iter().filter(|(_, f)| *f).count();
    assert!(
        found * 100 >= results.len() * 98,
        "only {found}/{} found the announcer",
        results.len()
    );
}

fn item_lookup_done(
    net: &Net,
    i: usize,
    lid: LookupId,
) -> Option<(Option<dht::Item>, LookupStats)> {
    let stats = lookup_done(net, i, lid)?;
    let item = net.events[i].iter().rev().find_map(|e| match e {
        Event::ItemFound { lookup, item } if *lookup == lid => Some(item.clone()),
        _ => None,
    });
    Some((item, stats))
}

fn run_item_lookup(net: &mut Net, i: usize, lid: LookupId) -> (Option<dht::Item>, LookupStats) {
    let deadline = net.now + Duration::from_secs(120);
    assert!(
        net.run_until(deadline, |net| lookup_done(net, i, lid).is_some()),
        "item lookup did not finish"
    );
    item_lookup_done(net, i, lid).unwrap()
}

/// BEP 44 across 200 nodes: an immutable and a mutable item put by one node are read by
/// others; a newer version (higher seq) replaces the older one for every reader.
#[test]
fn bep44_items_put_and_get_across_the_network() {
    use dht::ItemWant;
    use dht::item::Item;
    let n = 200;
    let mut net = Net::new(0x5eed_0044);
    build(&mut net, n);

    let value = b"l5:hello5:worlde".to_vec();
    let imm = Item::immutable(value.clone()).unwrap();
    let lid = net.with_node(3, |node, now| node.put_item(imm.clone(), None, now));
    let (_, stats) = run_item_lookup(&mut net, 3, lid);
    println!("immutable put: {stats:?}");
    assert!(
        stats.announce_acks >= K / 2,
        "too few puts stored: {stats:?}"
    );

    let secret = [0x11u8; 32];
    let salt = b"bitpeer".to_vec();
    let v1 = Item::sign(&secret, salt.clone(), 1, b"2:v1".to_vec()).unwrap();
    let lid = net.with_node(7, |node, now| node.put_item(v1.clone(), None, now));
    let (_, stats) = run_item_lookup(&mut net, 7, lid);
    assert!(
        stats.announce_acks >= K / 2,
        "too few puts stored: {stats:?}"
    );

    let key = dht::item::public_key(&secret);
    let want = ItemWant::Mutable {
        key,
        salt: salt.clone(),
    };
    for reader in [20, 60, 150, 199] {
        let target = imm.target();
        let lid = net.with_node(reader, |node, now| {
            node.get_item(target, ItemWant::Immutable, now)
        });
        let (item, _) = run_item_lookup(&mut net, reader, lid);
        assert_eq!(item.as_ref(), Some(&imm), "reader {reader}: immutable");
        let lid = net.with_node(reader, |node, now| {
            node.get_item(v1.target(), want.clone(), now)
        });
        let (item, _) = run_item_lookup(&mut net, reader, lid);
        assert_eq!(item.as_ref(), Some(&v1), "reader {reader}: mutable v1");
    }

    // seq 2 with a cas of 1 replaces seq 1; an old put of seq 1 cannot bring it back.
    let v2 = Item::sign(&secret, salt.clone(), 2, b"2:v2".to_vec()).unwrap();
    let lid = net.with_node(9, |node, now| node.put_item(v2.clone(), Some(1), now));
    let (_, stats) = run_item_lookup(&mut net, 9, lid);
    assert!(
        stats.announce_acks >= K / 2,
        "too few puts stored: {stats:?}"
    );
    let lid = net.with_node(11, |node, now| node.put_item(v1.clone(), None, now));
    let (_, stats) = run_item_lookup(&mut net, 11, lid);
    // Nodes that hold seq 2 refuse it (error 302); a node that was not among the k closest
    // for the earlier put may take it, which readers then outvote by seq.
    assert!(
        stats.announce_acks * 4 <= stats.announced,
        "an older seq was accepted widely: {stats:?}"
    );
    for reader in [30, 120] {
        let lid = net.with_node(reader, |node, now| {
            node.get_item(v2.target(), want.clone(), now)
        });
        let (item, _) = run_item_lookup(&mut net, reader, lid);
        assert_eq!(item.as_ref(), Some(&v2), "reader {reader}: mutable v2");
    }
    // Nothing under another salt.
    let other = ItemWant::Mutable {
        key,
        salt: b"other".to_vec(),
    };
    let lid = net.with_node(40, |node, now| {
        node.get_item(other.target(NodeId([0; 20])), other.clone(), now)
    });
    let (item, _) = run_item_lookup(&mut net, 40, lid);
    assert_eq!(item, None);
}
