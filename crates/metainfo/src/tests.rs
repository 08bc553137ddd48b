//! Parsing tests over hand-built torrents: every field, every error.

use crate::create::{self, CreateOptions};
use crate::*;
use bencode::Encoder;
use std::sync::atomic::{AtomicBool, AtomicU64};

/// A v1 info dict with the given entries plus valid pieces for `total` bytes at 16 KiB.
fn torrent(
    info: impl FnOnce(&mut bencode::DictEncoder),
    top: impl FnOnce(&mut bencode::DictEncoder),
) -> Vec<u8> {
    let mut i = Encoder::new();
    i.dict(info);
    let info = i.into_bytes();
    let mut t = Encoder::new();
    t.dict(|d| {
        top(d);
        d.raw(b"info", &info);
    });
    t.into_bytes()
}

fn single(len: i64) -> Vec<u8> {
    let pieces = vec![0u8; 20 * (len as usize).div_ceil(16384)];
    torrent(
        |d| {
            d.int(b"length", len)
                .bytes(b"name", b"a.bin")
                .int(b"piece length", 16384)
                .bytes(b"pieces", &pieces);
        },
        |_| {},
    )
}

#[test]
fn single_file() {
    let m = Metainfo::from_bytes(&single(40000)).unwrap();
    assert_eq!(m.info.name, "a.bin");
    assert_eq!(m.info.total_length, 40000);
    assert_eq!(m.info.piece_count(), 3);
    assert_eq!(m.info.piece_size(2), 40000 - 32768);
    assert!(m.info.single_file);
    assert_eq!(m.info.version, Version::V1);
    assert_eq!(m.info.file_path(0), std::path::PathBuf::from("a.bin"));
    assert!(m.info_hashes.get_v2().is_none());
}

#[test]
fn info_hash_is_over_raw_bytes_even_unsorted() {
    // Keys out of order: a re-encoding would sort them and change the hash.
    let info =
        b"d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaa7:privatei1ee";
    let unsorted =
        b"d4:name1:x6:lengthi5e12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaa7:privatei1ee";
    for raw in [&info[..], &unsorted[..]] {
        let mut file = b"d8:announce9:http://t/4:info".to_vec();
        file.extend_from_slice(raw);
        file.push(b'e');
        let m = Metainfo::from_bytes(&file).unwrap();
        use sha1::Digest;
        let expect: [u8; 20] = sha1::Sha1::digest(raw).into();
        assert_eq!(m.info_hashes.get_v1().unwrap().0, expect);
        assert_eq!(m.info_bytes, raw);
        assert!(m.info.private);
        assert_eq!(m.trackers, vec![vec!["http://t/".to_string()]]);
    }
}

#[test]
fn multi_file_with_pad_and_attrs() {
    let t = torrent(
        |d| {
            d.entry(b"files", |e| {
                e.list(|e| {
                    e.dict(|f| {
                        f.int(b"length", 10).entry(b"path", |e| {
                            e.list(|e| {
                                e.bytes(b"..").bytes(b"sub").bytes(b"a");
                            });
                        });
                    });
                    e.dict(|f| {
                        f.int(b"length", 16374)
                            .bytes(b"attr", b"p")
                            .entry(b"path", |e| {
                                e.list(|e| {
                                    e.bytes(b".pad").bytes(b"16374");
                                });
                            });
                    });
                    e.dict(|f| {
                        f.int(b"length", 0)
                            .bytes(b"attr", b"x")
                            .entry(b"path", |e| {
                                e.list(|e| {
                                    e.bytes(b"/abs");
                                });
                            });
                    });
                    e.dict(|f| {
                        f.int(b"length", 5)
                            .bytes(b"attr", b"ph")
                            .entry(b"path", |e| {
                                e.list(|e| {
                                    e.bytes(b".pad").bytes(b"16374");
                                });
                            });
                    });
                });
            });
            d.bytes(b"name", b"folder")
                .int(b"piece length", 16384)
                .bytes(b"pieces", &[1u8; 40]);
        },
        |d| {
            d.entry(b"announce-list", |e| {
                e.list(|e| {
                    e.list(|e| {
                        e.bytes(b"udp://a:1").bytes(b"http://b/");
                    });
                    e.list(|_| {});
                    e.list(|e| {
                        e.bytes(b"http://c/");
                    });
                });
            });
            d.bytes(b"announce", b"http://ignored/");
            d.bytes(b"url-list", b"http://seed/");
            d.bytes(b"comment", b"hi");
        },
    );
    let m = Metainfo::from_bytes(&t).unwrap();
    let f = &m.info.files;
    assert_eq!(f.len(), 4);
    assert_eq!(f[0].path, ["sub", "a"]);
    assert!(f[1].attr.pad && !f[1].attr.executable);
    assert_eq!(f[1].offset, 10);
    assert_eq!(f[2].path, ["_abs"]);
    assert!(f[2].attr.executable);
    assert_eq!(f[3].offset, 16384);
    assert_eq!(
        m.info.file_path(0),
        std::path::PathBuf::from("folder/sub/a")
    );
    assert_eq!(
        m.trackers,
        vec![
            vec!["udp://a:1".to_string(), "http://b/".into()],
            vec!["http://c/".into()]
        ]
    );
    assert_eq!(m.web_seeds, ["http://seed/"]);
    assert_eq!(m.comment.as_deref(), Some("hi"));
}

fn err(bytes: &[u8]) -> MetainfoError {
    Metainfo::from_bytes(bytes).unwrap_err()
}

#[test]
fn bad_torrents_give_typed_errors() {
    assert!(matches!(err(b"garbage"), MetainfoError::Bencode(_)));
    assert!(matches!(
        err(b"i1e"),
        MetainfoError::NotADictionary("integer")
    ));
    assert!(matches!(err(b"de"), MetainfoError::MissingField("info")));
    assert!(matches!(
        err(b"d4:infoi1ee"),
        MetainfoError::WrongType { field: "info", .. }
    ));
    assert!(matches!(err(&single(0)), MetainfoError::Empty));
    assert!(matches!(
        err(&torrent(
            |d| {
                d.int(b"length", -5)
                    .bytes(b"name", b"x")
                    .int(b"piece length", 16384)
                    .bytes(b"pieces", b"");
            },
            |_| {}
        )),
        MetainfoError::Invalid {
            field: "info.length",
            ..
        }
    ));
    assert!(matches!(
        err(&torrent(
            |d| {
                d.int(b"length", 5)
                    .bytes(b"name", b"x")
                    .int(b"piece length", 0)
                    .bytes(b"pieces", &[0; 20]);
            },
            |_| {}
        )),
        MetainfoError::Invalid {
            field: "info.piece length",
            ..
        }
    ));
    assert!(matches!(
        err(&torrent(
            |d| {
                d.int(b"length", 5)
                    .bytes(b"name", b"x")
                    .int(b"piece length", 16384)
                    .bytes(b"pieces", &[0; 21]);
            },
            |_| {}
        )),
        MetainfoError::PiecesNotMultipleOf20(21)
    ));
    assert!(matches!(
        err(&torrent(
            |d| {
                d.int(b"length", 50000)
                    .bytes(b"name", b"x")
                    .int(b"piece length", 16384)
                    .bytes(b"pieces", &[0; 20]);
            },
            |_| {}
        )),
        MetainfoError::PieceCountMismatch {
            expected: 4,
            actual: 1,
            ..
        }
    ));
    assert!(matches!(
        err(&torrent(
            |d| {
                d.int(b"length", 5)
                    .bytes(b"name", b"..")
                    .int(b"piece length", 16384)
                    .bytes(b"pieces", &[0; 20]);
            },
            |_| {}
        )),
        MetainfoError::Invalid {
            field: "info.name",
            ..
        }
    ));
    assert!(matches!(
        err(&torrent(
            |d| {
                d.int(b"length", 5)
                    .bytes(b"name", b"x")
                    .int(b"piece length", 16384);
            },
            |_| {}
        )),
        MetainfoError::MissingField("info.pieces")
    ));
    assert!(matches!(
        err(&torrent(
            |d| {
                d.int(b"length", i64::MAX)
                    .bytes(b"name", b"x")
                    .int(b"piece length", 16384)
                    .bytes(b"pieces", &[0; 20]);
            },
            |_| {}
        )),
        MetainfoError::TooManyPieces { .. }
    ));
    assert!(matches!(
        err(&torrent(
            |d| {
                d.int(b"length", 5)
                    .bytes(b"name", b"x")
                    .int(b"piece length", 16384)
                    .bytes(b"pieces", &[0; 20])
                    .int(b"meta version", 3);
            },
            |_| {}
        )),
        MetainfoError::UnsupportedVersion(3)
    ));
}

#[test]
fn duplicate_paths_are_rejected() {
    let file = |e: &mut Encoder, parts: &[&[u8]]| {
        e.dict(|f| {
            f.int(b"length", 1).entry(b"path", |e| {
                e.list(|e| {
                    for p in parts {
                        e.bytes(p);
                    }
                });
            });
        });
    };
    for (a, b) in [
        (&[&b"a"[..]][..], &[&b"./a"[..]][..]),
        (&[b"a"], &[b"a", b"b"]),
    ] {
        let t = torrent(
            |d| {
                d.entry(b"files", |e| {
                    e.list(|e| {
                        file(e, a);
                        file(e, b);
                    });
                });
                d.bytes(b"name", b"x")
                    .int(b"piece length", 16384)
                    .bytes(b"pieces", &[0; 20]);
            },
            |_| {},
        );
        // "./a" is one component holding a slash: it becomes "._a", no clash.
        match Metainfo::from_bytes(&t) {
            Ok(m) => assert_eq!(m.info.files[1].path, ["._a"]),
            Err(e) => assert!(matches!(e, MetainfoError::DuplicatePath(_)), "{e}"),
        }
    }
    let t = torrent(
        |d| {
            d.entry(b"files", |e| {
                e.list(|e| {
                    file(e, &[b"a"]);
                    file(e, &[b"..", b"a"]);
                });
            });
            d.bytes(b"name", b"x")
                .int(b"piece length", 16384)
                .bytes(b"pieces", &[0; 20]);
        },
        |_| {},
    );
    assert!(matches!(Metainfo::from_bytes(&t), Err(MetainfoError::DuplicatePath(p)) if p == "a"));
}

#[test]
fn limits_are_enforced() {
    let limits = Limits {
        max_torrent_bytes: 10,
        ..Limits::default()
    };
    assert!(matches!(
        Metainfo::from_bytes_with(&single(5), &limits),
        Err(MetainfoError::FileTooLarge { .. })
    ));
    let limits = Limits {
        max_info_bytes: 10,
        ..Limits::default()
    };
    assert!(matches!(
        Metainfo::from_bytes_with(&single(5), &limits),
        Err(MetainfoError::InfoTooLarge { .. })
    ));
    let limits = Limits {
        max_pieces: 2,
        ..Limits::default()
    };
    assert!(matches!(
        Metainfo::from_bytes_with(&single(40000), &limits),
        Err(MetainfoError::TooManyPieces { count: 3, max: 2 })
    ));
}

#[test]
fn v2_file_tree() {
    let root = [9u8; 32];
    let t = torrent(
        |d| {
            d.entry(b"file tree", |e| {
                e.dict(|t| {
                    t.entry(b"dir", |e| {
                        e.dict(|t| {
                            t.entry(b"b", |e| {
                                e.dict(|t| {
                                    t.entry(b"", |e| {
                                        e.dict(|f| {
                                            f.int(b"length", 20000).bytes(b"pieces root", &root);
                                        });
                                    });
                                });
                            });
                        });
                    });
                    t.entry(b"empty", |e| {
                        e.dict(|t| {
                            t.entry(b"", |e| {
                                e.dict(|f| {
                                    f.int(b"length", 0);
                                });
                            });
                        });
                    });
                });
            });
            d.int(b"meta version", 2)
                .bytes(b"name", b"v2")
                .int(b"piece length", 16384);
        },
        |_| {},
    );
    let m = Metainfo::from_bytes(&t).unwrap();
    assert_eq!(m.info.version, Version::V2);
    assert!(m.info_hashes.get_v1().is_none());
    use sha2::Digest;
    let expect: [u8; 32] = sha2::Sha256::digest(&m.info_bytes).into();
    assert_eq!(m.info_hashes.get_v2().unwrap().0, expect);
    assert_eq!(m.info.files.len(), 2);
    assert_eq!(m.info.files[0].path, ["dir", "b"]);
    assert_eq!(m.info.files[0].pieces_root, Some(root));
    assert_eq!(m.info.piece_count(), 2);
    assert!(!m.info.single_file);
}

#[test]
fn create_and_parse_back() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("content");
    std::fs::create_dir_all(root.join("nested/deeper")).unwrap();
    let data: Vec<u8> = (0..100_003u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(root.join("b.bin"), &data[..70_001]).unwrap();
    std::fs::write(root.join("nested/deeper/c.bin"), &data[70_001..]).unwrap();
    std::fs::write(root.join("a-empty"), b"").unwrap();
    let opts = CreateOptions {
        piece_length: Some(16384),
        trackers: vec!["http://t1/announce".into(), "udp://t2:80".into()],
        web_seeds: vec!["http://ws/".into()],
        private: true,
        comment: Some("c".into()),
        threads: 3,
        ..CreateOptions::default()
    };
    let progress = AtomicU64::new(0);
    let bytes = create::create(&root, &opts, &progress, &AtomicBool::new(false)).unwrap();
    assert_eq!(progress.into_inner(), 100_003);
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert!(bencode::decode(&bytes).unwrap().is_canonical());
    assert_eq!(m.info.name, "content");
    let paths: Vec<String> = m.info.files.iter().map(|f| f.display_path()).collect();
    assert_eq!(paths, ["a-empty", "b.bin", "nested/deeper/c.bin"]);
    assert_eq!(m.info.total_length, 100_003);
    assert!(m.info.private);
    assert_eq!(m.trackers.len(), 2);
    // Every piece hash matches the concatenated data.
    use sha1::Digest;
    for (i, chunk) in data.chunks(16384).enumerate() {
        assert_eq!(
            m.info.pieces[i],
            <[u8; 20]>::from(sha1::Sha1::digest(chunk)),
            "piece {i}"
        );
    }
    // Same result with one thread and with the automatic piece length.
    let one = CreateOptions {
        threads: 1,
        ..opts.clone()
    };
    assert_eq!(
        create::create(&root, &one, &AtomicU64::new(0), &AtomicBool::new(false)).unwrap(),
        bytes
    );
}

#[test]
fn create_errors() {
    let dir = tempfile::tempdir().unwrap();
    let none = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let opts = CreateOptions::default();
    assert!(matches!(
        create::create(&dir.path().join("missing"), &opts, &none, &stop),
        Err(create::CreateError::Io { .. })
    ));
    assert!(matches!(
        create::create(dir.path(), &opts, &none, &stop),
        Err(create::CreateError::NoFiles(_))
    ));
    std::fs::write(dir.path().join("zero"), b"").unwrap();
    assert!(matches!(
        create::create(dir.path(), &opts, &none, &stop),
        Err(create::CreateError::Empty(_))
    ));
    std::fs::write(dir.path().join("one"), b"1").unwrap();
    let bad = CreateOptions {
        piece_length: Some(1000),
        ..CreateOptions::default()
    };
    assert!(matches!(
        create::create(dir.path(), &bad, &none, &stop),
        Err(create::CreateError::BadPieceLength(1000))
    ));
}

#[test]
fn auto_piece_length_targets_1000_to_2000_pieces() {
    assert_eq!(create::auto_piece_length(1), 16 << 10);
    assert_eq!(create::auto_piece_length(1 << 30), 512 << 10);
    assert_eq!(create::auto_piece_length(1 << 50), 16 << 20);
    for total in [100u64 << 20, 3 << 30, 700 << 20, 20 << 30] {
        let p = create::auto_piece_length(total);
        let n = total.div_ceil(p);
        assert!(
            p.is_power_of_two() && (1024..=2048).contains(&n),
            "{total}: {p} -> {n}"
        );
    }
}

proptest::proptest! {
    #[test]
    fn no_input_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = Metainfo::from_bytes(&bytes);
    }

    #[test]
    fn truncations_and_mutations_never_panic(at in 0usize..400, byte in proptest::prelude::any::<u8>()) {
        let mut t = single(40000);
        let i = at % t.len();
        let _ = Metainfo::from_bytes(&t[..i]);
        t[i] = byte;
        let _ = Metainfo::from_bytes(&t);
    }
}

#[test]
fn from_info_bytes_rebuilds_the_torrent_from_its_info_dictionary() {
    let m = Metainfo::from_bytes(&single(40_000)).unwrap();
    let trackers = vec![vec!["udp://t.example:6969/announce".to_string()]];
    let back = Metainfo::from_info_bytes(&m.info_bytes, trackers.clone(), vec![]).unwrap();
    assert_eq!(back.info_hashes, m.info_hashes);
    assert_eq!(back.info, m.info);
    assert_eq!(back.trackers, trackers);
    assert!(Metainfo::from_info_bytes(b"d4:name1:xe", vec![], vec![]).is_err());
    assert!(Metainfo::from_info_bytes(b"garbage", vec![], vec![]).is_err());
}
