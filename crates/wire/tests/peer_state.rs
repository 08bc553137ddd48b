//! Rules of the peer state machine (BEP 3, 6, 10), driven through its public API.

use bytes::Bytes;
use wire::extended::ExtendedHandshake;
use wire::{
    Bitfield, BlockRequest, Event, Handshake, Message, PeerConfig, PeerError, PeerState,
    PieceGeometry, RefuseReason, RequestError, RequestFailure,
};

const BLOCK: u32 = 16 * 1024;

/// 4 pieces of 32 KiB, the last one 10 000 bytes.
fn geometry() -> PieceGeometry {
    PieceGeometry::new(3 * 32 * 1024 + 10_000, 32 * 1024).unwrap()
}

fn state(fast: bool) -> PeerState {
    PeerState::new(
        PeerConfig {
            fast_extension: fast,
            extension_protocol: true,
            ..PeerConfig::default()
        },
        geometry(),
    )
}

fn events(s: &mut PeerState) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn sent(s: &mut PeerState) -> Vec<Message> {
    std::iter::from_fn(|| s.poll_message()).collect()
}

fn req(piece: u32, begin: u32, length: u32) -> BlockRequest {
    BlockRequest::new(piece, begin, length)
}

/// A peer that has everything and has unchoked us.
fn unchoked_seed(fast: bool) -> PeerState {
    let mut s = state(fast);
    s.handle_message(Message::Bitfield(Bytes::from_static(&[0xf0])))
        .unwrap();
    s.handle_message(Message::Unchoke).unwrap();
    events(&mut s);
    s
}

#[test]
fn geometry_knows_piece_lengths() {
    let g = geometry();
    assert_eq!(g.piece_count(), 4);
    assert_eq!(g.piece_len(0), Some(32 * 1024));
    assert_eq!(g.piece_len(3), Some(10_000));
    assert_eq!(g.piece_len(4), None);
    assert!(g.contains(&req(3, 0, 10_000)));
    assert!(!g.contains(&req(3, 1, 10_000)));
    assert!(!g.contains(&req(0, 0, 0)));
    assert!(!g.contains(&req(0, u32::MAX, 2)));
    assert_eq!(PieceGeometry::new(0, 16), None);
    assert_eq!(PieceGeometry::new(16, 0), None);
    assert_eq!(PieceGeometry::new(u64::MAX, 1), None);
    assert_eq!(
        PieceGeometry::new(64, 16).map(|g| (g.piece_count(), g.piece_len(3))),
        Some((4, Some(16)))
    );
}

#[test]
fn negotiated_config_needs_both_bits() {
    let mut ours = Handshake::new([0; 20], [0; 20]);
    ours.set_fast_extension(true).set_extension_protocol(true);
    let mut theirs = Handshake::new([0; 20], [1; 20]);
    theirs.set_fast_extension(true);
    let c = PeerConfig::negotiated(&ours, &theirs);
    assert!(c.fast_extension);
    assert!(!c.extension_protocol);
}

#[test]
fn starts_choked_and_uninterested_both_ways() {
    let s = state(false);
    assert!(s.am_choking() && s.peer_choking());
    assert!(!s.am_interested() && !s.peer_interested());
    assert_eq!(s.peer_pieces().count_ones(), 0);
}

#[test]
fn flags_follow_messages_and_only_changes_are_events() {
    let mut s = state(false);
    for m in [
        Message::Unchoke,
        Message::Unchoke,
        Message::Interested,
        Message::Interested,
        Message::NotInterested,
        Message::Choke,
        Message::KeepAlive,
    ] {
        s.handle_message(m).unwrap();
    }
    assert_eq!(
        events(&mut s),
        vec![
            Event::Unchoked,
            Event::Interested,
            Event::NotInterested,
            Event::Choked
        ]
    );
    assert!(s.peer_choking());
    assert!(!s.peer_interested());
}

#[test]
fn bitfield_is_checked_against_piece_count() {
    let mut s = state(false);
    assert_eq!(
        s.handle_message(Message::Bitfield(Bytes::from_static(&[0xf0, 0]))),
        Err(PeerError::BitfieldLength {
            expected: 1,
            got: 2
        })
    );
    let mut s = state(false);
    assert_eq!(
        s.handle_message(Message::Bitfield(Bytes::from_static(&[0xf8]))),
        Err(PeerError::BitfieldSpareBits)
    );
    let mut s = state(false);
    s.handle_message(Message::Bitfield(Bytes::from_static(&[0xa0])))
        .unwrap();
    assert_eq!(events(&mut s), vec![Event::Bitfield]);
    assert!(s.peer_pieces().get(0) && !s.peer_pieces().get(1) && s.peer_pieces().get(2));
    assert_eq!(s.peer_pieces().count_ones(), 2);
}

#[test]
fn availability_only_once_and_first() {
    let mut s = state(true);
    s.handle_message(Message::HaveAll).unwrap();
    assert!(s.peer_pieces().is_full());
    assert_eq!(
        s.handle_message(Message::Bitfield(Bytes::from_static(&[0]))),
        Err(PeerError::AvailabilityNotFirst)
    );
    let mut s = state(true);
    s.handle_message(Message::Have { piece: 1 }).unwrap();
    assert_eq!(
        s.handle_message(Message::HaveNone),
        Err(PeerError::AvailabilityNotFirst)
    );
    // An extended handshake before the bitfield is fine (Transmission does that).
    let mut s = state(true);
    s.handle_message(Message::Extended {
        id: 0,
        payload: Bytes::from_static(b"de"),
    })
    .unwrap();
    s.handle_message(Message::HaveNone).unwrap();
    assert_eq!(s.peer_pieces().count_ones(), 0);
}

#[test]
fn have_out_of_range_is_fatal_and_repeats_are_quiet() {
    let mut s = state(false);
    s.handle_message(Message::Have { piece: 3 }).unwrap();
    s.handle_message(Message::Have { piece: 3 }).unwrap();
    assert_eq!(events(&mut s), vec![Event::Have(3)]);
    assert_eq!(
        s.handle_message(Message::Have { piece: 4 }),
        Err(PeerError::PieceOutOfRange {
            piece: 4,
            piece_count: 4
        })
    );
}

#[test]
fn fast_messages_need_the_fast_extension() {
    for m in [
        Message::HaveAll,
        Message::HaveNone,
        Message::Suggest { piece: 0 },
        Message::AllowedFast { piece: 0 },
        Message::Reject(req(0, 0, BLOCK)),
    ] {
        let id = m.id().unwrap();
        assert_eq!(
            state(false).handle_message(m),
            Err(PeerError::FastExtensionOff { id })
        );
    }
}

#[test]
fn extended_messages_need_the_extension_protocol() {
    let mut s = PeerState::new(PeerConfig::default(), geometry());
    assert_eq!(
        s.handle_message(Message::Extended {
            id: 0,
            payload: Bytes::from_static(b"de")
        }),
        Err(PeerError::ExtensionProtocolOff)
    );
    assert!(!s.send_extended(1, Bytes::new()));
}

#[test]
fn extended_handshake_is_decoded_and_kept() {
    let mut s = state(false);
    s.handle_message(Message::Extended {
        id: 0,
        payload: Bytes::from_static(b"d1:md6:ut_pexi2ee4:reqqi2ee"),
    })
    .unwrap();
    let Some(Event::ExtendedHandshake(hs)) = s.poll_event() else {
        panic!("no handshake event")
    };
    assert_eq!(hs.extension_id("ut_pex"), Some(2));
    assert_eq!(s.peer_extensions().and_then(|e| e.reqq), Some(2));
    s.handle_message(Message::Extended {
        id: 2,
        payload: Bytes::from_static(b"d5:added0:e"),
    })
    .unwrap();
    assert_eq!(
        events(&mut s),
        vec![Event::Extended {
            id: 2,
            payload: Bytes::from_static(b"d5:added0:e")
        }]
    );
    assert!(matches!(
        s.handle_message(Message::Extended {
            id: 0,
            payload: Bytes::from_static(b"i1e")
        }),
        Err(PeerError::ExtendedHandshake(_))
    ));
}

#[test]
fn our_requests_respect_peer_reqq() {
    let mut s = unchoked_seed(false);
    s.handle_message(Message::Extended {
        id: 0,
        payload: Bytes::from_static(b"d4:reqqi2ee"),
    })
    .unwrap();
    s.request(req(0, 0, BLOCK)).unwrap();
    s.request(req(0, BLOCK, BLOCK)).unwrap();
    assert_eq!(
        s.request(req(1, 0, BLOCK)),
        Err(RequestError::PeerQueueFull)
    );
}

#[test]
fn our_requests_are_checked() {
    let mut s = state(false);
    s.handle_message(Message::Bitfield(Bytes::from_static(&[0x80])))
        .unwrap();
    assert_eq!(s.request(req(0, 0, BLOCK)), Err(RequestError::PeerChoking));
    s.handle_message(Message::Unchoke).unwrap();
    assert_eq!(
        s.request(req(1, 0, BLOCK)),
        Err(RequestError::PeerLacksPiece)
    );
    assert_eq!(
        s.request(req(0, 0, BLOCK + 1)),
        Err(RequestError::OutOfRange)
    );
    assert_eq!(
        s.request(req(0, 2 * BLOCK, 1)),
        Err(RequestError::OutOfRange)
    );
    assert_eq!(s.request(req(9, 0, 1)), Err(RequestError::OutOfRange));
    s.request(req(0, 0, BLOCK)).unwrap();
    assert_eq!(s.request(req(0, 0, BLOCK)), Err(RequestError::Duplicate));
    assert_eq!(sent(&mut s), vec![Message::Request(req(0, 0, BLOCK))]);
    assert_eq!(s.our_requests().len(), 1);
}

#[test]
fn requested_block_arrives_and_unrequested_is_flagged() {
    let mut s = unchoked_seed(false);
    s.request(req(1, BLOCK, BLOCK)).unwrap();
    assert!(s.has_requested(&req(1, BLOCK, BLOCK)));
    assert!(!s.has_requested(&req(1, 0, BLOCK)));
    let data = Bytes::from(vec![1u8; BLOCK as usize]);
    s.handle_message(Message::Piece {
        piece: 1,
        begin: BLOCK,
        data: data.clone(),
    })
    .unwrap();
    assert!(!s.has_requested(&req(1, BLOCK, BLOCK)), "answered");
    // Same block again: now unsolicited.
    s.handle_message(Message::Piece {
        piece: 1,
        begin: BLOCK,
        data: data.clone(),
    })
    .unwrap();
    // Right place, wrong length: unsolicited too.
    s.request(req(2, 0, BLOCK)).unwrap();
    s.handle_message(Message::Piece {
        piece: 2,
        begin: 0,
        data: data.slice(..10),
    })
    .unwrap();
    assert_eq!(
        events(&mut s),
        vec![
            Event::Block {
                request: req(1, BLOCK, BLOCK),
                data: data.clone()
            },
            Event::UnsolicitedBlock {
                piece: 1,
                begin: BLOCK,
                data: data.clone()
            },
            Event::UnsolicitedBlock {
                piece: 2,
                begin: 0,
                data: data.slice(..10)
            },
        ]
    );
    assert_eq!(s.our_requests().len(), 1);
}

#[test]
fn unsolicited_piece_is_fatal_with_fast_extension() {
    let mut s = unchoked_seed(true);
    assert_eq!(
        s.handle_message(Message::Piece {
            piece: 0,
            begin: 0,
            data: Bytes::from_static(b"x")
        }),
        Err(PeerError::UnsolicitedPiece {
            piece: 0,
            begin: 0,
            length: 1
        })
    );
}

#[test]
fn cancelled_block_in_flight_is_still_a_block() {
    for fast in [false, true] {
        let mut s = unchoked_seed(fast);
        s.request(req(0, 0, 4)).unwrap();
        assert!(s.cancel(req(0, 0, 4)));
        assert!(!s.cancel(req(0, 0, 4)));
        assert_eq!(
            sent(&mut s),
            vec![
                Message::Request(req(0, 0, 4)),
                Message::Cancel(req(0, 0, 4))
            ]
        );
        s.handle_message(Message::Piece {
            piece: 0,
            begin: 0,
            data: Bytes::from_static(b"abcd"),
        })
        .unwrap();
        assert_eq!(
            events(&mut s),
            vec![Event::Block {
                request: req(0, 0, 4),
                data: Bytes::from_static(b"abcd")
            }]
        );
    }
}

#[test]
fn choke_without_fast_drops_our_requests() {
    let mut s = unchoked_seed(false);
    s.request(req(0, 0, BLOCK)).unwrap();
    s.request(req(0, BLOCK, BLOCK)).unwrap();
    s.handle_message(Message::Choke).unwrap();
    assert_eq!(
        events(&mut s),
        vec![
            Event::Choked,
            Event::RequestFailed {
                request: req(0, 0, BLOCK),
                reason: RequestFailure::Choked
            },
            Event::RequestFailed {
                request: req(0, BLOCK, BLOCK),
                reason: RequestFailure::Choked
            },
        ]
    );
    assert_eq!(s.our_requests().len(), 0);
}

#[test]
fn choke_with_fast_keeps_requests_until_rejected() {
    let mut s = unchoked_seed(true);
    s.request(req(0, 0, BLOCK)).unwrap();
    s.request(req(0, BLOCK, BLOCK)).unwrap();
    s.handle_message(Message::Choke).unwrap();
    assert_eq!(events(&mut s), vec![Event::Choked]);
    assert_eq!(s.our_requests().len(), 2);
    s.handle_message(Message::Reject(req(0, 0, BLOCK))).unwrap();
    // A reject for something never requested is ignored.
    s.handle_message(Message::Reject(req(3, 0, 5))).unwrap();
    s.handle_message(Message::Piece {
        piece: 0,
        begin: BLOCK,
        data: Bytes::from(vec![0; BLOCK as usize]),
    })
    .unwrap();
    let ev = events(&mut s);
    assert_eq!(
        ev[0],
        Event::RequestFailed {
            request: req(0, 0, BLOCK),
            reason: RequestFailure::Rejected
        }
    );
    assert!(matches!(ev[1], Event::Block { .. }));
    assert_eq!(ev.len(), 2);
}

#[test]
fn allowed_fast_lets_us_request_while_choked() {
    let mut s = state(true);
    s.handle_message(Message::HaveAll).unwrap();
    s.handle_message(Message::AllowedFast { piece: 2 }).unwrap();
    s.handle_message(Message::AllowedFast { piece: 2 }).unwrap();
    s.handle_message(Message::AllowedFast { piece: 99 })
        .unwrap();
    assert_eq!(s.allowed_fast(), &[2]);
    assert_eq!(s.request(req(1, 0, BLOCK)), Err(RequestError::PeerChoking));
    s.request(req(2, 0, BLOCK)).unwrap();
    let ev = events(&mut s);
    assert_eq!(ev, vec![Event::HaveAll, Event::AllowedFast(2)]);
}

#[test]
fn allowed_fast_set_is_bounded() {
    let mut s = PeerState::new(
        PeerConfig {
            fast_extension: true,
            max_allowed_fast: 2,
            ..PeerConfig::default()
        },
        geometry(),
    );
    for piece in 0..4 {
        s.handle_message(Message::AllowedFast { piece }).unwrap();
    }
    assert_eq!(s.allowed_fast(), &[0, 1]);
}

#[test]
fn suggest_and_port_are_reported() {
    let mut s = state(true);
    s.handle_message(Message::Suggest { piece: 1 }).unwrap();
    s.handle_message(Message::Suggest { piece: 100 }).unwrap();
    s.handle_message(Message::Port(6881)).unwrap();
    assert_eq!(
        events(&mut s),
        vec![Event::Suggest(1), Event::DhtPort(6881)]
    );
}

// ----- the peer's requests to us -----

fn refused(s: &mut PeerState) -> Vec<RefuseReason> {
    events(s)
        .into_iter()
        .filter_map(|e| match e {
            Event::RequestRefused { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

#[test]
fn requests_while_choked_are_rejected_with_fast_and_dropped_without() {
    let r = req(0, 0, BLOCK);
    let mut s = state(true);
    s.handle_message(Message::Request(r)).unwrap();
    assert_eq!(refused(&mut s), vec![RefuseReason::Choked]);
    assert_eq!(sent(&mut s), vec![Message::Reject(r)]);
    assert_eq!(s.peer_requests().len(), 0);

    let mut s = state(false);
    s.handle_message(Message::Request(r)).unwrap();
    assert_eq!(refused(&mut s), vec![RefuseReason::Choked]);
    assert_eq!(sent(&mut s), vec![]);
}

#[test]
fn out_of_range_requests_are_refused() {
    let mut s = state(true);
    s.unchoke();
    sent(&mut s);
    for r in [
        req(4, 0, BLOCK),
        req(3, 0, 10_001),
        req(3, 9_999, 2),
        req(0, 0, 0),
        req(0, 0, BLOCK + 1),
        req(0, u32::MAX, u32::MAX),
    ] {
        s.handle_message(Message::Request(r)).unwrap();
        assert_eq!(refused(&mut s), vec![RefuseReason::OutOfRange], "{r:?}");
        assert_eq!(sent(&mut s), vec![Message::Reject(r)]);
    }
    s.handle_message(Message::Request(req(3, 0, 10_000)))
        .unwrap();
    assert_eq!(events(&mut s), vec![Event::Request(req(3, 0, 10_000))]);
}

#[test]
fn peer_queue_is_bounded() {
    for fast in [false, true] {
        let mut s = PeerState::new(
            PeerConfig {
                fast_extension: fast,
                max_peer_requests: 3,
                ..PeerConfig::default()
            },
            geometry(),
        );
        s.unchoke();
        sent(&mut s);
        for i in 0..4 {
            s.handle_message(Message::Request(req(i, 0, 100))).unwrap();
        }
        assert_eq!(s.peer_requests().len(), 3);
        assert_eq!(refused(&mut s), vec![RefuseReason::QueueFull]);
        let rejects = sent(&mut s);
        if fast {
            assert_eq!(rejects, vec![Message::Reject(req(3, 0, 100))]);
        } else {
            assert!(rejects.is_empty());
        }
    }
}

#[test]
fn duplicate_requests_are_dropped_silently() {
    let mut s = state(true);
    s.unchoke();
    sent(&mut s);
    s.handle_message(Message::Request(req(0, 0, 100))).unwrap();
    s.handle_message(Message::Request(req(0, 0, 100))).unwrap();
    assert_eq!(refused(&mut s), vec![RefuseReason::Duplicate]);
    assert_eq!(sent(&mut s), vec![]);
    assert_eq!(s.peer_requests().len(), 1);
}

#[test]
fn serving_a_request_and_races_with_cancel() {
    let mut s = state(false);
    s.unchoke();
    let r = req(0, 0, 4);
    s.handle_message(Message::Request(r)).unwrap();
    assert!(!s.send_piece(r, Bytes::from_static(b"abc")), "wrong length");
    assert!(s.send_piece(r, Bytes::from_static(b"abcd")));
    assert!(
        !s.send_piece(r, Bytes::from_static(b"abcd")),
        "already served"
    );
    s.handle_message(Message::Request(r)).unwrap();
    s.handle_message(Message::Cancel(r)).unwrap();
    assert!(!s.send_piece(r, Bytes::from_static(b"abcd")), "cancelled");
    assert_eq!(
        sent(&mut s),
        vec![
            Message::Unchoke,
            Message::Piece {
                piece: 0,
                begin: 0,
                data: Bytes::from_static(b"abcd")
            }
        ]
    );
    assert_eq!(
        events(&mut s),
        vec![Event::Request(r), Event::Request(r), Event::Cancelled(r)]
    );
}

#[test]
fn cancel_with_fast_is_answered_with_reject() {
    let mut s = state(true);
    s.unchoke();
    let r = req(0, 0, 4);
    s.handle_message(Message::Request(r)).unwrap();
    s.handle_message(Message::Cancel(r)).unwrap();
    // Cancel of something not queued: no answer.
    s.handle_message(Message::Cancel(req(1, 0, 4))).unwrap();
    assert_eq!(sent(&mut s), vec![Message::Unchoke, Message::Reject(r)]);
}

#[test]
fn choking_the_peer_drops_its_queue_but_keeps_allowed_fast() {
    let mut s = state(true);
    assert!(s.allow_fast(1));
    s.unchoke();
    s.handle_message(Message::Request(req(0, 0, 4))).unwrap();
    s.handle_message(Message::Request(req(1, 0, 4))).unwrap();
    sent(&mut s);
    assert!(s.choke());
    assert!(!s.choke());
    assert_eq!(
        sent(&mut s),
        vec![Message::Choke, Message::Reject(req(0, 0, 4))]
    );
    assert_eq!(
        s.peer_requests().copied().collect::<Vec<_>>(),
        vec![req(1, 0, 4)]
    );
    // While choked, allowed-fast pieces are still served, others rejected.
    s.handle_message(Message::Request(req(1, 4, 4))).unwrap();
    s.handle_message(Message::Request(req(2, 0, 4))).unwrap();
    assert_eq!(sent(&mut s), vec![Message::Reject(req(2, 0, 4))]);
    assert_eq!(s.peer_requests().len(), 2);
}

#[test]
fn choking_without_fast_drops_silently() {
    let mut s = state(false);
    s.unchoke();
    s.handle_message(Message::Request(req(0, 0, 4))).unwrap();
    sent(&mut s);
    s.choke();
    assert_eq!(sent(&mut s), vec![Message::Choke]);
    assert_eq!(s.peer_requests().len(), 0);
    assert!(!s.allow_fast(0), "no allowed-fast without BEP 6");
}

#[test]
fn reject_request_tells_fast_peers() {
    for fast in [false, true] {
        let mut s = state(fast);
        s.unchoke();
        s.handle_message(Message::Request(req(0, 0, 4))).unwrap();
        sent(&mut s);
        assert!(s.reject_request(req(0, 0, 4)));
        assert!(!s.reject_request(req(0, 0, 4)));
        let want = if fast {
            vec![Message::Reject(req(0, 0, 4))]
        } else {
            vec![]
        };
        assert_eq!(sent(&mut s), want);
    }
}

#[test]
fn sending_our_pieces_uses_the_shortest_form() {
    let g = geometry();
    let mut full = Bitfield::new(g.piece_count());
    for i in 0..4 {
        full.set(i);
    }
    let mut some = Bitfield::new(g.piece_count());
    some.set(1);
    let none = Bitfield::new(g.piece_count());

    let mut s = state(true);
    s.send_pieces(&full);
    s.send_pieces(&none);
    s.send_pieces(&some);
    assert_eq!(
        sent(&mut s),
        vec![
            Message::HaveAll,
            Message::HaveNone,
            Message::Bitfield(Bytes::from_static(&[0x40]))
        ]
    );
    let mut s = state(false);
    s.send_pieces(&full);
    s.send_pieces(&none);
    assert_eq!(
        sent(&mut s),
        vec![Message::Bitfield(Bytes::from_static(&[0xf0]))]
    );
}

#[test]
fn other_outbound_helpers() {
    let mut s = state(true);
    s.set_interested(true);
    s.set_interested(true);
    s.set_interested(false);
    s.send_have(2);
    assert!(s.suggest(3));
    assert!(!s.suggest(4));
    s.send_port(1);
    s.send_keep_alive();
    let mut hs = ExtendedHandshake::default();
    hs.m.insert("ut_pex".into(), 1);
    assert!(s.send_extended_handshake(&hs));
    assert!(s.unchoke());
    assert!(!s.unchoke());
    let out = sent(&mut s);
    assert_eq!(
        &out[..7],
        &[
            Message::Interested,
            Message::NotInterested,
            Message::Have { piece: 2 },
            Message::Suggest { piece: 3 },
            Message::Port(1),
            Message::KeepAlive,
            Message::Extended {
                id: 0,
                payload: Bytes::from_static(b"d1:md6:ut_pexi1eee")
            },
        ]
    );
    assert_eq!(out[7], Message::Unchoke);
}

#[test]
fn bitfield_type_basics() {
    assert_eq!(Bitfield::full(9).as_bytes(), &[0xff, 0x80]);
    assert_eq!(Bitfield::full(8).as_bytes(), &[0xff]);
    assert_eq!(Bitfield::full(0).as_bytes(), &[] as &[u8]);
    assert!(Bitfield::full(0).is_empty());
    let mut b = Bitfield::new(9);
    assert!(b.set(8));
    assert!(!b.set(8));
    assert!(!b.set(9));
    assert!(!b.get(100));
    assert_eq!(b.as_bytes(), &[0, 0x80]);
    assert_eq!(b.count_ones(), 1);
    assert_eq!(
        Bitfield::from_wire(&[0xff, 0x80], 9).unwrap(),
        Bitfield::full(9)
    );
    assert_eq!(
        Bitfield::from_wire(&[0xff, 0xc0], 9),
        Err(PeerError::BitfieldSpareBits)
    );
}
