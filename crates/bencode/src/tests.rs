use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[test]
fn decodes_each_kind() {
    assert_eq!(decode(b"i42e").unwrap().as_int(), Some(42));
    assert_eq!(decode(b"i-7e").unwrap().as_int(), Some(-7));
    assert_eq!(decode(b"i0e").unwrap().as_int(), Some(0));
    assert_eq!(decode(b"4:spam").unwrap().as_bytes(), Some(&b"spam"[..]));
    assert_eq!(decode(b"0:").unwrap().as_bytes(), Some(&b""[..]));
    let l = decode(b"l4:spami3ee").unwrap();
    let l = l.as_list().unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l[1].as_int(), Some(3));
    let d = decode(b"d3:cow3:moo4:spam4:eggse").unwrap();
    assert_eq!(
        d.as_dict().unwrap().get(b"spam").unwrap().as_str(),
        Some("eggs")
    );
    assert!(d.is_canonical());
}

#[test]
fn integer_limits() {
    assert_eq!(
        decode(b"i9223372036854775807e").unwrap().as_int(),
        Some(i64::MAX)
    );
    assert_eq!(
        decode(b"i-9223372036854775808e").unwrap().as_int(),
        Some(i64::MIN)
    );
    assert_eq!(
        decode(b"i9223372036854775808e"),
        Err(Error::IntegerOverflow(1))
    );
    assert_eq!(
        decode(b"i-9223372036854775809e"),
        Err(Error::IntegerOverflow(1))
    );
}

#[test]
fn rejects_non_canonical_integers() {
    for bad in [
        &b"i-0e"[..],
        b"i03e",
        b"ie",
        b"i-e",
        b"i+3e",
        b"i3.0e",
        b"i 3e",
        b"i--3e",
    ] {
        assert_eq!(
            decode(bad),
            Err(Error::InvalidInteger(1)),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(decode(b"i3"), Err(Error::UnexpectedEnd(2)));
}

#[test]
fn rejects_bad_strings() {
    assert_eq!(decode(b"5:abc"), Err(Error::UnexpectedEnd(5)));
    assert_eq!(decode(b"03:abc"), Err(Error::InvalidLength(0)));
    assert_eq!(
        decode(b"-1:a"),
        Err(Error::UnexpectedByte { byte: b'-', at: 0 })
    );
    assert_eq!(decode(b"d1-:ae"), Err(Error::InvalidLength(1)));
    assert!(matches!(
        decode(b"99999999999999999999999:a"),
        Err(Error::StringTooLong { .. })
    ));
    let limits = Limits {
        max_string: 3,
        ..Limits::default()
    };
    assert_eq!(
        decode_with(b"4:abcd", &limits),
        Err(Error::StringTooLong {
            len: 4,
            max: 3,
            at: 0
        })
    );
}

#[test]
fn unsorted_keys_are_accepted_and_reported() {
    let input = b"d1:bi1e1:ai2ee";
    let v = decode(input).unwrap();
    assert!(!v.is_canonical());
    let d = v.as_dict().unwrap();
    assert!(!d.keys_sorted());
    assert_eq!(d.get(b"a").unwrap().as_int(), Some(2));
    assert_eq!(d.get(b"b").unwrap().as_int(), Some(1));
    // Re-encoding sorts; the raw span keeps the original bytes.
    assert_eq!(v.raw(), input);
    assert_eq!(v.to_owned_value().encode(), b"d1:ai2e1:bi1ee");
}

#[test]
fn nested_non_canonical_is_found() {
    let v = decode(b"d1:ad1:bi1e1:ai2eee").unwrap();
    assert!(v.as_dict().unwrap().keys_sorted());
    assert!(!v.is_canonical());
}

#[test]
fn duplicate_keys_are_rejected() {
    assert_eq!(decode(b"d1:ai1e1:ai2ee"), Err(Error::DuplicateKey(7)));
    assert!(matches!(
        decode(b"d1:ai1e1:bi1e1:ai2ee"),
        Err(Error::DuplicateKey(_))
    ));
}

#[test]
fn keys_must_be_strings() {
    assert_eq!(decode(b"di1ei2ee"), Err(Error::KeyNotString(1)));
}

#[test]
fn raw_spans_are_exact() {
    let input = b"d8:announce3:url4:infod4:name1:x6:lengthi5eee";
    let v = decode(input).unwrap();
    let info = v.as_dict().unwrap().get(b"info").unwrap();
    assert_eq!(info.raw(), b"d4:name1:x6:lengthi5ee");
}

#[test]
fn depth_is_bounded() {
    let deep = vec![b'l'; 100_000];
    assert_eq!(decode(&deep), Err(Error::TooDeep(64)));
    let mut ok = vec![b'l'; 64];
    ok.extend(vec![b'e'; 64]);
    assert!(decode(&ok).is_ok());
    let mut too_deep = vec![b'l'; 65];
    too_deep.extend(vec![b'e'; 65]);
    assert_eq!(decode(&too_deep), Err(Error::TooDeep(64)));
}

#[test]
fn size_and_item_count_are_bounded() {
    let limits = Limits {
        max_input: 10,
        ..Limits::default()
    };
    assert_eq!(
        decode_with(b"l0:0:0:0:0:e", &limits),
        Err(Error::InputTooLarge { len: 12, max: 10 })
    );
    let limits = Limits {
        max_items: 3,
        ..Limits::default()
    };
    assert_eq!(
        decode_with(b"li1ei2ei3ee", &limits),
        Err(Error::TooManyItems(3))
    );
}

#[test]
fn trailing_data_and_prefix() {
    assert_eq!(decode(b"i1ei2e"), Err(Error::TrailingData(3)));
    let (v, rest) = decode_prefix(b"d8:msg_typei1eeRAWDATA").unwrap();
    assert_eq!(
        v.as_dict().unwrap().get(b"msg_type").unwrap().as_int(),
        Some(1)
    );
    assert_eq!(rest, b"RAWDATA");
}

#[test]
fn garbage_is_an_error() {
    assert_eq!(decode(b""), Err(Error::UnexpectedEnd(0)));
    assert_eq!(
        decode(b"x"),
        Err(Error::UnexpectedByte { byte: b'x', at: 0 })
    );
    assert_eq!(decode(b"l"), Err(Error::UnexpectedEnd(1)));
    assert_eq!(decode(b"d1:a"), Err(Error::UnexpectedEnd(4)));
}

#[test]
fn encoder_sorts_and_dedups_keys() {
    let mut e = Encoder::new();
    e.dict(|d| {
        d.int(b"zeta", 1)
            .bytes(b"alpha", b"x")
            .int(b"zeta", 2)
            .raw(b"mid", b"le");
    });
    assert_eq!(e.into_bytes(), b"d5:alpha1:x3:midle4:zetai2ee");
}

fn arb_value() -> impl Strategy<Value = OwnedValue> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(OwnedValue::Int),
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(OwnedValue::Bytes),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(OwnedValue::List),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..8),
                inner,
                0..8
            )
            .prop_map(|m: BTreeMap<_, _>| OwnedValue::Dict(m)),
        ]
    })
}

proptest! {
    #[test]
    fn roundtrip(v in arb_value()) {
        let encoded = v.encode();
        let decoded = decode(&encoded).unwrap();
        prop_assert!(decoded.is_canonical());
        prop_assert_eq!(decoded.raw(), &encoded[..]);
        prop_assert_eq!(decoded.to_owned_value(), v);
    }

    #[test]
    fn no_input_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
        let _ = decode_prefix(&bytes);
    }

    #[test]
    fn no_mutated_input_panics(v in arb_value(), at in any::<usize>(), byte in any::<u8>()) {
        let mut encoded = v.encode();
        if !encoded.is_empty() {
            let i = at % encoded.len();
            encoded[i] = byte;
            let _ = decode(&encoded);
            // Every truncation is an error, never a panic.
            let _ = decode(&encoded[..i]);
        }
    }
}
