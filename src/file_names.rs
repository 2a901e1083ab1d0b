//! File names made from names the batch author controls (batches, metrics,
//! model tags): never a path, never hidden, never the same file for two
//! different names.

use sha2::{Digest, Sha256};

/// Characters of a name kept in its file name (the rest is in the hash).
const MAX_KEPT: usize = 100;

/// A file-name-safe stem for `name`. A name of only ASCII letters, digits,
/// `_` and `-` (and at most [`MAX_KEPT`] of them) is its own stem; any other
/// has the others replaced by `_` and `.` plus 64 bits of its SHA-256
/// appended. A stem without a `.` is therefore always a name as it is, and
/// two names can only share a stem through a SHA-256 collision.
pub fn file_stem(name: &str) -> String {
    let mut stem: String = name
        .chars()
        .take(MAX_KEPT)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem != name || stem.is_empty() {
        if stem.is_empty() {
            stem.push('_');
        }
        stem.push('.');
        stem.push_str(&hex::encode(&Sha256::digest(name.as_bytes())[..8]));
    }
    stem
}

#[cfg(test)]
mod tests {
    use super::file_stem;

    #[test]
    fn stems_stay_in_their_folder_and_never_collide() {
        assert_eq!(file_stem("cpu_load-1m"), "cpu_load-1m");
        for hostile in [
            "../../etc/passwd",
            "..",
            ".",
            "",
            "/abs",
            "a\0b",
            "<script>",
        ] {
            let s = file_stem(hostile);
            assert!(
                !s.contains('/') && !s.starts_with('.'),
                "{hostile:?} -> {s}"
            );
        }
        // Names that clean to the same text keep distinct files, and a name
        // cannot pose as another's cleaned form.
        let (a, b) = (file_stem("a/b"), file_stem("a?b"));
        assert_ne!(a, b);
        assert_ne!(file_stem(&a), a);
        assert_ne!(file_stem(&"x".repeat(101)), file_stem(&"x".repeat(102)));
    }
}
