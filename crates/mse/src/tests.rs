use super::*;

const IH: [u8; 20] = [0xab; 20];

fn entropy(seed: u8, pad: usize) -> Entropy {
    Entropy {
        secret: [seed; 20],
        pad: vec![seed ^ 0x55; pad],
    }
}

fn lookup_of(hashes: Vec<[u8; 20]>) -> SkeyLookup {
    let map: Vec<([u8; 20], [u8; 20])> = hashes.into_iter().map(|h| (req2_hash(&h), h)).collect();
    Box::new(move |r| map.iter().find(|(k, _)| k == r).map(|(_, v)| *v))
}

/// Run both sides against each other, moving `chunk` bytes at a time.
fn run_pair(a: &mut Handshake, b: &mut Handshake, chunk: usize) -> Result<(), (char, MseError)> {
    for _ in 0..100_000 {
        let ab = a.take_output();
        for c in ab.chunks(chunk) {
            b.feed(c).map_err(|e| ('b', e))?;
        }
        let ba = b.take_output();
        for c in ba.chunks(chunk) {
            a.feed(c).map_err(|e| ('a', e))?;
        }
        if a.is_done() && b.is_done() && ab.is_empty() && ba.is_empty() {
            return Ok(());
        }
        if ab.is_empty() && ba.is_empty() {
            panic!("stuck");
        }
    }
    panic!("no end");
}

fn transfer(from: &mut Established, to: &mut Established, data: &[u8]) -> Vec<u8> {
    let mut wire = data.to_vec();
    if let Some(e) = from.encrypt.as_mut() {
        e.apply(&mut wire);
    }
    if from.method == Method::Rc4 {
        assert_ne!(wire, data, "RC4 must change the bytes");
    }
    if let Some(d) = to.decrypt.as_mut() {
        d.apply(&mut wire);
    }
    wire
}

#[test]
fn every_provide_and_select_combination() {
    let sets = [CRYPTO_PLAINTEXT, CRYPTO_RC4, CRYPTO_PLAINTEXT | CRYPTO_RC4];
    for provide in sets {
        for allowed in sets {
            let ia = b"\x13BitTorrent protocol and the rest".to_vec();
            let mut a = Handshake::initiator(IH, provide, ia.clone(), entropy(1, 17));
            let mut b = Handshake::receiver(allowed, lookup_of(vec![[1; 20], IH]), entropy(2, 300));
            let r = run_pair(&mut a, &mut b, 4096);
            let common = provide & allowed;
            if common == 0 {
                assert_eq!(r, Err(('b', MseError::NoCommonMethod(provide))));
                continue;
            }
            r.unwrap();
            let mut ea = a.finish().unwrap();
            let mut eb = b.finish().unwrap();
            let want = if common & CRYPTO_PLAINTEXT != 0 {
                Method::Plaintext
            } else {
                Method::Rc4
            };
            assert_eq!(ea.method, want, "provide {provide} allowed {allowed}");
            assert_eq!(eb.method, want);
            assert_eq!(eb.skey, IH);
            assert_eq!(eb.initial, ia, "the receiver gets IA");
            assert!(ea.initial.is_empty());
            let msg = b"hello there, a payload".to_vec();
            assert_eq!(transfer(&mut ea, &mut eb, &msg), msg);
            assert_eq!(transfer(&mut eb, &mut ea, &msg), msg);
            assert_eq!(transfer(&mut ea, &mut eb, &msg), msg);
        }
    }
}

#[test]
fn byte_by_byte_and_odd_chunks() {
    for chunk in [1, 3, 19, 97, 600] {
        let mut a = Handshake::initiator(IH, CRYPTO_RC4, b"ia".to_vec(), entropy(5, 512));
        let mut b = Handshake::receiver(CRYPTO_RC4, lookup_of(vec![IH]), entropy(6, 512));
        run_pair(&mut a, &mut b, chunk).unwrap();
        let mut ea = a.finish().unwrap();
        let mut eb = b.finish().unwrap();
        assert_eq!(eb.initial, b"ia");
        let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        assert_eq!(transfer(&mut eb, &mut ea, &data), data);
    }
}

#[test]
fn payload_in_the_same_read_as_the_handshake_is_decrypted() {
    let mut a = Handshake::initiator(IH, CRYPTO_RC4, Vec::new(), entropy(7, 0));
    let mut b = Handshake::receiver(CRYPTO_RC4, lookup_of(vec![IH]), entropy(8, 3));
    b.feed(&a.take_output()).unwrap();
    a.feed(&b.take_output()).unwrap();
    assert!(b.feed(&a.take_output()).unwrap());
    let mut step4 = b.take_output();
    let mut eb = b.finish().unwrap();
    let mut more = b"after".to_vec();
    eb.encrypt.as_mut().unwrap().apply(&mut more);
    step4.extend_from_slice(&more);
    assert!(a.feed(&step4).unwrap());
    let mut late = b"late".to_vec();
    eb.encrypt.as_mut().unwrap().apply(&mut late);
    assert!(a.feed(&late).unwrap());
    let ea = a.finish().unwrap();
    assert_eq!(ea.initial, b"afterlate");
}

#[test]
fn unknown_info_hash_is_refused() {
    let mut a = Handshake::initiator(IH, CRYPTO_RC4, Vec::new(), entropy(1, 0));
    let mut b = Handshake::receiver(CRYPTO_RC4, lookup_of(vec![[9; 20]]), entropy(2, 0));
    assert_eq!(
        run_pair(&mut a, &mut b, 50),
        Err(('b', MseError::UnknownSkey))
    );
    assert_eq!(b.feed(b"x"), Err(MseError::Finished));
}

#[test]
fn padding_past_the_bound_is_no_sync() {
    // Receiver: Ya then 600 bytes that never hold HASH('req1', S).
    let a = KeyPair::from_secret([4; 20]);
    let mut b = Handshake::receiver(CRYPTO_RC4, lookup_of(vec![IH]), entropy(2, 0));
    assert!(!b.feed(a.public()).unwrap());
    assert!(!b.feed(&[0u8; MAX_PAD]).unwrap());
    assert_eq!(b.feed(&[0u8; 88]), Err(MseError::NoSync));
    // Initiator: Yb then 600 bytes that never hold the encrypted VC.
    let bk = KeyPair::from_secret([6; 20]);
    let mut a = Handshake::initiator(IH, CRYPTO_RC4, Vec::new(), entropy(1, 0));
    assert!(!a.feed(bk.public()).unwrap());
    assert_eq!(a.feed(&[0x77u8; 600]), Err(MseError::NoSync));
}

#[test]
fn a_plaintext_answer_fails_at_once() {
    let mut a = Handshake::initiator(IH, CRYPTO_RC4, Vec::new(), entropy(1, 0));
    let mut hs = b"\x13BitTorrent protocol".to_vec();
    assert_eq!(a.feed(&hs[..10]), Ok(false));
    hs.extend_from_slice(&[0; 8]);
    assert_eq!(a.feed(&hs[10..]), Err(MseError::PlaintextAnswer));
}

#[test]
fn degenerate_public_key_is_refused() {
    let mut b = Handshake::receiver(CRYPTO_RC4, lookup_of(vec![IH]), entropy(2, 0));
    let mut one = [0u8; KEY_LEN];
    one[95] = 1;
    assert_eq!(b.feed(&one), Err(MseError::BadPublicKey));
}

/// Step 3 written by hand, with a chosen VC and len(PadC).
fn hand_step3(b: &mut Handshake, vc: [u8; 8], pad_c: u16) -> Result<bool, MseError> {
    let a = KeyPair::from_secret([4; 20]);
    b.feed(a.public())?;
    let yb: [u8; KEY_LEN] = b.take_output()[..KEY_LEN].try_into().unwrap();
    let s = a.shared(&yb).unwrap();
    let mut m = hash(&[b"req1", &s]).to_vec();
    let req3 = hash(&[b"req3", &s]);
    m.extend(req2_hash(&IH).iter().zip(req3).map(|(x, y)| x ^ y));
    let mut tail = vc.to_vec();
    tail.extend_from_slice(&CRYPTO_RC4.to_be_bytes());
    tail.extend_from_slice(&pad_c.to_be_bytes());
    Rc4::mse(&hash(&[b"keyA", &s, &IH])).apply(&mut tail);
    m.extend_from_slice(&tail);
    b.feed(&m)
}

#[test]
fn bad_vc_and_long_pad_c_are_refused() {
    let mut b = Handshake::receiver(CRYPTO_RC4, lookup_of(vec![IH]), entropy(2, 0));
    assert_eq!(hand_step3(&mut b, [1; 8], 0), Err(MseError::BadVc));
    let mut b = Handshake::receiver(CRYPTO_RC4, lookup_of(vec![IH]), entropy(2, 0));
    assert_eq!(hand_step3(&mut b, VC, 513), Err(MseError::PadTooLong(513)));
    let mut b = Handshake::receiver(CRYPTO_RC4, lookup_of(vec![IH]), entropy(2, 0));
    assert_eq!(hand_step3(&mut b, VC, 512), Ok(false));
}

/// Step 4 written by hand by a fake B, selecting `select`.
fn hand_step4(a: &mut Handshake, select: u32) -> Result<bool, MseError> {
    let bk = KeyPair::from_secret([6; 20]);
    let ya: [u8; KEY_LEN] = a.take_output()[..KEY_LEN].try_into().unwrap();
    let s = bk.shared(&ya).unwrap();
    a.feed(bk.public())?;
    let mut m = VC.to_vec();
    m.extend_from_slice(&select.to_be_bytes());
    m.extend_from_slice(&0u16.to_be_bytes());
    Rc4::mse(&hash(&[b"keyB", &s, &IH])).apply(&mut m);
    a.feed(&m)
}

#[test]
fn a_select_we_did_not_offer_is_refused() {
    let mut a = Handshake::initiator(IH, CRYPTO_RC4, Vec::new(), entropy(1, 0));
    assert_eq!(
        hand_step4(&mut a, CRYPTO_PLAINTEXT),
        Err(MseError::BadSelect(CRYPTO_PLAINTEXT))
    );
    let mut a = Handshake::initiator(IH, CRYPTO_RC4 | CRYPTO_PLAINTEXT, Vec::new(), entropy(1, 0));
    assert_eq!(hand_step4(&mut a, 3), Err(MseError::BadSelect(3)));
    let mut a = Handshake::initiator(IH, CRYPTO_RC4, Vec::new(), entropy(1, 0));
    assert_eq!(hand_step4(&mut a, CRYPTO_RC4), Ok(true));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn garbage_never_panics_and_stays_bounded(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..8),
            initiator in any::<bool>(),
        ) {
            let mut h = if initiator {
                Handshake::initiator(IH, CRYPTO_RC4, Vec::new(), entropy(1, 10))
            } else {
                Handshake::receiver(CRYPTO_RC4 | CRYPTO_PLAINTEXT, lookup_of(vec![IH]), entropy(2, 10))
            };
            for c in &chunks {
                if h.feed(c).is_err() {
                    break;
                }
                prop_assert!(h.buf.len() <= KEY_LEN + MAX_PAD + 20 + 700);
            }
        }
    }
}
