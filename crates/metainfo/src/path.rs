//! Path safety: the one policy by which a name from a .torrent file or a peer becomes a path
//! inside the download folder.
//!
//! A torrent's file names are untrusted. A name must never leave the download folder (`..`,
//! absolute paths, drive letters, separators inside a component) nor be unusable on disk
//! (NUL, control characters, overlong names, absurdly deep trees). Like libtorrent, we repair
//! what can be repaired (a bad character becomes `_`; `.`, `..` and empty components are
//! dropped; an overlong name is shortened, keeping its extension) and reject only what leaves
//! nothing usable.

use std::path::PathBuf;

/// Longest single path component, in bytes (the limit of ext4, XFS, btrfs and NTFS).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Most components in one file path.
pub const MAX_DEPTH: usize = 64;
/// Longest whole relative path, in bytes (Linux `PATH_MAX`).
pub const MAX_PATH_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("a file path is empty once unsafe parts are removed")]
    Empty,
    #[error("a file path has {0} components, more than the limit of {MAX_DEPTH}")]
    TooDeep(usize),
    #[error("a file path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
}

/// Make one path component safe, or `None` if nothing usable remains (empty, `.` or `..`).
///
/// Invalid UTF-8, control characters (NUL included), `/` and `\` become `_`; a leading drive
/// letter (`C:`) loses its colon; a component longer than [`MAX_COMPONENT_BYTES`] is cut,
/// keeping a short extension.
pub fn sanitize_component(raw: &[u8]) -> Option<String> {
    let lossy = String::from_utf8_lossy(raw);
    let mut s: String = lossy
        .chars()
        .map(|c| match c {
            '/' | '\\' | '\u{FFFD}' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .collect();
    if s.is_empty() || s == "." || s == ".." {
        return None;
    }
    let b = s.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        s.replace_range(1..2, "_");
    }
    if s.len() > MAX_COMPONENT_BYTES {
        s = shorten(&s);
    }
    Some(s)
}

/// Cut a name to [`MAX_COMPONENT_BYTES`] on a character boundary, keeping an extension of
/// up to 16 bytes so the file still opens with the right program.
fn shorten(s: &str) -> String {
    let ext = match s.rfind('.') {
        Some(i) if i > 0 && s.len() - i <= 16 => &s[i..],
        _ => "",
    };
    let mut keep = MAX_COMPONENT_BYTES - ext.len();
    while !s.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{}", &s[..keep], ext)
}

/// Make a whole relative path safe: each component through [`sanitize_component`], unusable
/// components dropped. Errors if nothing remains or the path is too deep or long.
pub fn sanitize_path<'a, I>(components: I) -> Result<Vec<String>, PathError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for (n, raw) in components.into_iter().enumerate() {
        if n >= MAX_DEPTH {
            return Err(PathError::TooDeep(n + 1));
        }
        if let Some(c) = sanitize_component(raw) {
            bytes += c.len() + 1;
            if bytes > MAX_PATH_BYTES {
                return Err(PathError::TooLong);
            }
            out.push(c);
        }
    }
    if out.is_empty() {
        return Err(PathError::Empty);
    }
    Ok(out)
}

/// Join sanitized components into a relative path. Every component came out of
/// [`sanitize_component`], so the result cannot climb out of the folder it is joined to.
pub fn to_relative_path(components: &[String]) -> PathBuf {
    components.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Component;

    fn p(parts: &[&str]) -> Result<Vec<String>, PathError> {
        sanitize_path(parts.iter().map(|s| s.as_bytes()))
    }

    #[test]
    fn dot_components_are_dropped() {
        assert_eq!(p(&["..", "a", ".", "", "b"]).unwrap(), ["a", "b"]);
        assert_eq!(p(&["..", "..", "."]), Err(PathError::Empty));
        assert_eq!(p(&[]), Err(PathError::Empty));
    }

    #[test]
    fn separators_and_controls_are_replaced() {
        assert_eq!(p(&["/etc/passwd"]).unwrap(), ["_etc_passwd"]);
        assert_eq!(p(&["..\\..\\x"]).unwrap(), [".._.._x"]);
        assert_eq!(p(&["a\0b\nc\x7f"]).unwrap(), ["a_b_c_"]);
        assert_eq!(p(&["C:", "x"]).unwrap(), ["C_", "x"]);
        assert_eq!(p(&["c:\\windows"]).unwrap(), ["c__windows"]);
        assert_eq!(sanitize_component(b"\xff\xfeok").unwrap(), "__ok");
        // A colon elsewhere is a legal character on every Unix filesystem.
        assert_eq!(
            p(&["Episode 1: Pilot.mkv"]).unwrap(),
            ["Episode 1: Pilot.mkv"]
        );
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.mkv", "é".repeat(300));
        let s = sanitize_component(long.as_bytes()).unwrap();
        assert!(s.len() <= MAX_COMPONENT_BYTES);
        assert!(s.ends_with(".mkv"));
        assert!(s.starts_with("éé"));
    }

    #[test]
    fn depth_and_length_are_bounded() {
        let deep = vec!["a"; MAX_DEPTH + 1];
        assert_eq!(p(&deep), Err(PathError::TooDeep(MAX_DEPTH + 1)));
        assert!(p(&vec!["a"; MAX_DEPTH]).is_ok());
        let wide = vec!["x".repeat(200); 30];
        let wide: Vec<&str> = wide.iter().map(String::as_str).collect();
        assert_eq!(p(&wide), Err(PathError::TooLong));
    }

    proptest::proptest! {
        #[test]
        fn never_escapes(parts in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 0..10)) {
            if let Ok(clean) = sanitize_path(parts.iter().map(|v| v.as_slice())) {
                let rel = to_relative_path(&clean);
                proptest::prop_assert!(!clean.is_empty());
                for c in rel.components() {
                    proptest::prop_assert!(matches!(c, Component::Normal(_)), "{:?}", rel);
                }
                proptest::prop_assert_eq!(rel.components().count(), clean.len());
            }
        }
    }
}
