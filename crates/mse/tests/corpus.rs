//! Runs every seed of the `mse_handshake` fuzz target through its driver, and checks
//! what each seed is meant to show, so the seeds stay meaningful and `cargo test`
//! exercises the fuzz target's paths.

use mse::fuzzing::{Outcome, run};
use mse::{Method, MseError};
use std::path::Path;

#[test]
fn fuzz_seeds_give_their_outcome() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/mse_handshake");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus folder exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let out = run(&std::fs::read(&path).unwrap());
        match name.as_str() {
            "mode2_valid" => match out {
                Outcome::Done(e) => {
                    assert_eq!(e.method, Method::Rc4);
                    assert_eq!(e.skey, mse::fuzzing::SKEY);
                    assert_eq!(e.initial.len(), 68, "IA is a BitTorrent handshake");
                    assert_eq!(&e.initial[..20], b"\x13BitTorrent protocol");
                }
                o => panic!("{name}: {o:?}"),
            },
            "mode2_long_padc" => {
                assert!(
                    matches!(out, Outcome::Failed(MseError::PadTooLong(513))),
                    "{name}: {out:?}"
                )
            }
            "mode3_select_rc4" => match out {
                Outcome::Done(e) => assert_eq!(e.method, Method::Rc4),
                o => panic!("{name}: {o:?}"),
            },
            "raw_receiver" | "empty_initiator" => {
                assert!(matches!(out, Outcome::Pending), "{name}: {out:?}")
            }
            _ => {}
        }
        seeds += 1;
    }
    assert!(seeds >= 5, "only {seeds} seeds");
}
