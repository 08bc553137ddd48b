//! The web UI's files, compiled into the binary. They live in `crates/bitpeer/webui/` as
//! plain ES modules, CSS and SVG: nothing to build, so `cargo build` and `cargo install`
//! need no npm. The daemon serves them at `/` with [`asset`]; every other path under `/` that
//! is not the API is a 404.

/// One file of the web UI.
pub struct Asset {
    /// The URL path it is served at, e.g. `/app.js`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($file:literal, $content_type:literal) => {
        Asset {
            path: concat!("/", $file),
            content_type: $content_type,
            body: include_bytes!(concat!("../webui/", $file)),
        }
    };
}

/// Every file of the web UI (a test checks that none in the folder is missing here).
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("theme.js", "text/javascript; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("util.js", "text/javascript; charset=utf-8"),
    asset!("graph.js", "text/javascript; charset=utf-8"),
    asset!("details.js", "text/javascript; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// Headers to send with every asset: the UI needs nothing inline and nothing remote, so the
/// policy forbids both (an injected string could not run even if one slipped through).
pub const HEADERS: &[(&str, &str)] = &[
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
];

/// The asset for a request path (`/` is `index.html`); `None` for anything else. The path
/// is compared whole, so no request can reach a file outside this list.
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_folder_is_served() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("webui");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| format!("/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed, "add the new file of webui/ to ASSETS");
    }

    #[test]
    fn index_refers_only_to_served_files() {
        let index = std::str::from_utf8(asset("/").unwrap().body).unwrap();
        for attr in ["src=\"", "href=\""] {
            for part in index.split(attr).skip(1) {
                let target = &part[..part.find('"').unwrap()];
                if target.starts_with('#') {
                    continue; // an icon of the inline sprite
                }
                assert!(
                    asset(&format!("/{target}")).is_some(),
                    "{target} is not served"
                );
            }
        }
    }

    #[test]
    fn modules_import_only_served_files() {
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).unwrap();
            for part in text.split("from \"./").skip(1) {
                let target = &part[..part.find('"').unwrap()];
                assert!(
                    asset(&format!("/{target}")).is_some(),
                    "{}: {target} is not served",
                    a.path
                );
            }
        }
    }

    #[test]
    fn unknown_paths_are_not_served() {
        assert!(asset("/../Cargo.toml").is_none());
        assert!(asset("/webui/app.js").is_none());
        assert!(asset("").is_none());
        assert_eq!(asset("/").unwrap().path, "/index.html");
        assert_eq!(
            asset("/app.js").unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
    }
}
