//! Fuzzes the BEP 9 `ut_metadata` decoder and the metadata assembler. Nothing may panic,
//! a decoded message must survive encode/decode unchanged, and data messages are fed to
//! an assembler sized from their own `total_size`, which must refuse or store them
//! without panicking.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wire::metadata::{MetadataAssembler, MetadataMessage, Progress};

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    let Ok(msg) = MetadataMessage::decode(&payload) else {
        return;
    };
    let again = Bytes::from(msg.encode());
    assert_eq!(MetadataMessage::decode(&again).as_ref(), Ok(&msg));

    if let MetadataMessage::Data {
        piece,
        total_size,
        data,
    } = &msg
    {
        let mut a = MetadataAssembler::new([0; 20], u64::from(*total_size))
            .expect("decoded total_size is within bounds");
        let _ = a.next_request();
        a.request_failed(*piece);
        if let Ok(p) = a.on_data(1, *piece, *total_size, data) {
            assert_ne!(p, Progress::Duplicate);
            assert_eq!(
                a.on_data(2, *piece, *total_size, data),
                Ok(Progress::Duplicate)
            );
            assert_eq!(a.contributors(), [1]);
            if p == Progress::Complete {
                assert!(
                    a.finish().is_err(),
                    "an all-zero info-hash is not a real hash"
                );
            }
        }
    }
});
