//! Fuzzes the CAR v1 reader: nothing may panic or allocate past its bounds; every section
//! read is checked against its CID like an import does.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = ipfs::car::CarReader::new(data) else {
        return;
    };
    assert!(reader.roots.len() <= 1024);
    while let Ok(Some((cid, block))) = reader.next_block() {
        assert!(block.len() <= ipfs::store::MAX_BLOCK_SIZE + 128);
        let _ = ipfs::verify_block(&cid, &block);
    }
});
