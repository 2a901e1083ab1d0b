//! The layer check (`scripts/dep-cycles.py`, ARCHITECTURE.md's floors) holds
//! on sandstack's own source, and fails where it should: a cycle of three
//! files, a use running up the floors, a module with no floor.

use std::path::Path;
use std::process::Command;

use crate::support::repo;

fn check(src: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .arg(repo().join("scripts/dep-cycles.py"))
        .arg(src)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A source tree of `files` (path below src/, contents).
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    dir
}

#[test]
fn sandstacks_own_source_keeps_its_floors() {
    let (ok, text) = check(&repo().join("src"));
    assert!(ok, "{text}");
    assert!(text.contains(" 0 problems"), "{text}");
}

#[test]
fn a_cycle_of_three_files_is_found_and_shown_as_a_path() {
    let src = tree(&[
        ("lib.rs", "pub mod config;\n"),
        ("config/mod.rs", "mod a; mod b; mod c;\n"),
        ("config/a.rs", "use super::b::B;\npub struct A;\n"),
        ("config/b.rs", "use super::c::C;\npub struct B;\n"),
        ("config/c.rs", "use crate::config::a::A;\npub struct C;\n"),
    ]);
    let (ok, text) = check(src.path());
    assert!(!ok, "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("cycle (3 files):"))
        .unwrap_or_else(|| panic!("{text}"));
    for f in ["config/a.rs", "config/b.rs", "config/c.rs"] {
        assert!(line.contains(f), "{line}");
    }
    // A parent using its child, or a child `super::`, is no cycle.
    let src = tree(&[
        ("lib.rs", "pub mod config;\n"),
        ("config/mod.rs", "mod a;\npub use a::A;\npub struct Top;\n"),
        ("config/a.rs", "use super::Top;\npub struct A;\n"),
    ]);
    let (ok, text) = check(src.path());
    assert!(ok, "{text}");
}

#[test]
fn a_use_up_the_floors_and_a_module_without_one_are_named() {
    let src = tree(&[
        ("lib.rs", "pub mod store; pub mod jobs; pub mod newroom;\n"),
        ("store/mod.rs", "use crate::jobs::Job;\n"),
        ("jobs/mod.rs", "pub struct Job;\n"),
        ("newroom.rs", "pub struct N;\n"),
    ]);
    let (ok, text) = check(src.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("layer: ")
            && text.contains("store/mod.rs uses ")
            && text.contains("(store is below jobs)"),
        "{text}"
    );
    assert!(text.contains("module `newroom` has no floor"), "{text}");
}
