//! Any bytes as a .torrent file: parsing never panics, and every accepted torrent keeps its
//! files inside the download folder.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = metainfo::Metainfo::from_bytes(data) {
        for i in 0..m.info.files.len() {
            let p = m.info.file_path(i);
            assert!(
                p.components().all(|c| matches!(c, std::path::Component::Normal(_))),
                "{p:?}"
            );
        }
        let _ = m.info.piece_count();
    }
    let _ = metainfo::parse_info_bytes(data, &metainfo::Limits::default());
});
