//! Finding a metrics folder's tests: the `tests/` folder beside each
//! batch's YAML holds recordings (`<name>.yaml`, a cassette of one ingest
//! run), fixture histories (`<name>.history.csv`) and the rows each must
//! produce (`<name>.expected.csv`). A test belongs to the one batch of its
//! folder. Everything here is the batch author's, so what cannot be a
//! test (a link, a subfolder, a name that cannot name one or a suffix in
//! the wrong case, an expected file without its test, too many files) is
//! refused here, as an error of its own; nothing is read: each test reads,
//! caps and parses its own files when it runs (`super::run`), so finding
//! costs one directory listing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::config::{BatchSpec, MetricsFolder, TESTS_DIR};

/// A recording's suffix (and its other spelling), a fixture history's, and
/// an expected file's.
pub const RECORDING: &str = ".yaml";
pub const RECORDING_YML: &str = ".yml";
pub const HISTORY: &str = ".history.csv";
pub const EXPECTED: &str = ".expected.csv";

/// The most entries a `tests/` folder may hold.
pub const MAX_FILES: usize = 2_000;

/// The longest test name (a file name's stem).
pub const MAX_NAME_CHARS: usize = 100;

/// What a test runs.
#[derive(Debug, Clone)]
pub enum Input {
    /// A recorded ingest run (a cassette), replayed with no network.
    Recording(PathBuf),
    /// A history to import (`sandstack import`'s long or wide CSV); the
    /// batch's train, score, alert and change jobs then run on it.
    History(PathBuf),
}

/// One test of a batch.
#[derive(Debug, Clone)]
pub struct TestCase {
    pub batch: String,
    /// The file name's stem.
    pub name: String,
    /// The recording or history file, as found.
    pub file: PathBuf,
    pub input: Input,
    /// `<name>.expected.csv` beside it (it may not exist yet).
    pub expected: PathBuf,
}

impl TestCase {
    /// `batch/name`, as output, `--filter` and JUnit name it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.batch, self.name)
    }
}

/// A test file that cannot run, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// `batch/name` when known, else the file.
    pub id: String,
    pub message: String,
}

/// A folder's tests.
#[derive(Debug, Default)]
pub struct Found {
    pub cases: Vec<TestCase>,
    pub refused: Vec<Refused>,
}

/// The folder of `spec`'s tests.
pub fn tests_dir(spec: &BatchSpec) -> PathBuf {
    spec.file
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(TESTS_DIR)
}

/// Whether `name` may name a test: letters, digits, `_`, `-` and `.`, not
/// starting with a dot, at most [`MAX_NAME_CHARS`].
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Every test of `folder`'s batches (of `only`, when it names some).
pub fn find(folder: &MetricsFolder, only: &BTreeSet<String>) -> Found {
    let mut by_dir: BTreeMap<PathBuf, Vec<&BatchSpec>> = BTreeMap::new();
    for spec in &folder.batches {
        by_dir.entry(tests_dir(spec)).or_default().push(spec);
    }
    let mut found = Found::default();
    for (dir, batches) in &by_dir {
        let wanted = only.is_empty() || batches.iter().any(|b| only.contains(&b.metric_batch));
        if wanted {
            find_in(dir, batches, &mut found);
        }
    }
    if only.is_empty() {
        orphans(&folder.dir, &by_dir, &mut found);
    }
    found.cases.sort_by_key(TestCase::id);
    found
}

/// The tests in one `tests/` folder, whose batches (those whose YAML is
/// beside it) are `batches`.
fn find_in(dir: &Path, batches: &[&BatchSpec], found: &mut Found) {
    let shown = dir.display().to_string();
    let refuse = |found: &mut Found, id: &str, message: String| {
        found.refused.push(Refused {
            id: id.to_string(),
            message,
        })
    };
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => return refuse(found, &shown, format!("{shown}: {e}")),
        Ok(m) if !m.is_dir() => {
            return refuse(
                found,
                &shown,
                format!("{shown} is not a folder (a symlink?): a batch's tests are files in a folder of the metrics folder itself"),
            )
        }
        Ok(_) => {}
    }
    let [spec] = batches else {
        let names: Vec<&str> = batches.iter().map(|b| b.metric_batch.as_str()).collect();
        return refuse(
            found,
            &shown,
            format!(
                "{shown}: a test belongs to the one batch of its folder, and this folder holds {}: give each batch a folder of its own",
                names.join(", ")
            ),
        );
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return refuse(found, &shown, format!("{shown}: {e}")),
    };
    let mut listed = Vec::new();
    for entry in entries {
        if listed.len() == MAX_FILES {
            return refuse(
                found,
                &shown,
                format!("{shown}: more than {MAX_FILES} entries; a batch's tests must be fewer"),
            );
        }
        match entry {
            Ok(e) => listed.push(e.file_name()),
            Err(e) => refuse(found, &shown, format!("{shown}: {e}")),
        }
    }
    listed.sort();
    let mut stems: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut expected = Vec::new();
    for os_name in listed {
        let path = dir.join(&os_name);
        let file = path.display().to_string();
        let Some(name) = os_name.to_str() else {
            refuse(found, &file, format!("{file}: the name is not UTF-8"));
            continue;
        };
        if let Some(why) = misnamed(name) {
            refuse(found, &file, format!("{file}: {why}"));
            continue;
        }
        let (stem, is_history) = if let Some(s) = name.strip_suffix(EXPECTED) {
            expected.push((s.to_string(), path));
            continue;
        } else if let Some(s) = name.strip_suffix(HISTORY) {
            (s, true)
        } else if let Some(s) = name
            .strip_suffix(RECORDING)
            .or_else(|| name.strip_suffix(RECORDING_YML))
        {
            (s, false)
        } else if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            refuse(
                found,
                &file,
                format!("{file}: a tests folder holds files only; its tests would not run from a folder in it"),
            );
            continue;
        } else {
            // Notes, a README, a .gitkeep: not tests.
            continue;
        };
        if !valid_name(stem) {
            refuse(
                found,
                &file,
                format!(
                    "{file}: `{}` cannot name a test: use letters, digits, _, - and . (at most {MAX_NAME_CHARS} characters, not starting with a dot)",
                    crate::escape::truncate(stem, 120)
                ),
            );
            continue;
        }
        if let Some(first) = stems.insert(stem.to_string(), path.clone()) {
            refuse(
                found,
                &file,
                format!(
                    "{file} and {} are both test `{stem}`: rename one",
                    first.display()
                ),
            );
            continue;
        }
        if let Err(message) = regular(&path) {
            refuse(found, &file, format!("{file}: {message}"));
            continue;
        }
        found.cases.push(TestCase {
            batch: spec.metric_batch.clone(),
            name: stem.to_string(),
            file: path.clone(),
            input: if is_history {
                Input::History(path.clone())
            } else {
                Input::Recording(path.clone())
            },
            expected: dir.join(format!("{stem}{EXPECTED}")),
        });
    }
    for (stem, path) in expected {
        if !stems.contains_key(&stem) {
            let file = path.display().to_string();
            refuse(
                found,
                &file,
                format!("{file}: no recording ({stem}{RECORDING}) or history ({stem}{HISTORY}) beside it: delete it, or add the test it belongs to"),
            );
        }
    }
}

/// Why `name` looks like a test file but will not be read as one (a
/// suffix in capitals, a history that is not CSV); None when it is one,
/// or plainly something else.
fn misnamed(name: &str) -> Option<&'static str> {
    let suffixes = [EXPECTED, HISTORY, RECORDING, RECORDING_YML];
    let lower = name.to_ascii_lowercase();
    if suffixes.iter().any(|s| lower.ends_with(s)) && !suffixes.iter().any(|s| name.ends_with(s)) {
        return Some("write its suffix in lower case (.yaml, .history.csv, .expected.csv): as it is, it would not be read");
    }
    let stem = Path::new(&lower)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned());
    if stem.is_some_and(|s| s.ends_with(".history")) && !name.ends_with(HISTORY) {
        return Some("a fixture history is read as CSV: save it as <name>.history.csv");
    }
    None
}

/// `path` is a regular file itself, not a link to one.
pub fn regular(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) if m.file_type().is_symlink() => {
            Err("it is a symlink: a test's files are files of the metrics folder itself".into())
        }
        Ok(_) => Err("it is not a regular file".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// `tests/` folders beside a YAML file but no loaded batch (one that
/// failed to load, or a YAML that is no batch): their tests would silently
/// not run.
fn orphans(root: &Path, by_dir: &BTreeMap<PathBuf, Vec<&BatchSpec>>, found: &mut Found) {
    let known: BTreeSet<PathBuf> = by_dir
        .keys()
        .filter_map(|d| std::path::absolute(d).ok())
        .collect();
    let walker = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for e in walker.filter_map(Result::ok) {
        let is_tests =
            e.depth() > 0 && e.file_type().is_dir() && crate::config::is_tests_folder(e.path());
        let known = std::path::absolute(e.path()).is_ok_and(|p| known.contains(&p));
        if is_tests && !known {
            let shown = e.path().display().to_string();
            found.refused.push(Refused {
                id: shown.clone(),
                message: format!(
                    "{shown}: no batch loaded from the folder it is in (see `sandstack validate`), so its tests cannot run"
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> (tempfile::TempDir, MetricsFolder) {
        let dir = tempfile::tempdir().expect("tmp");
        for (rel, text) in files {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        let loaded = crate::config::load(dir.path(), &Default::default());
        (dir, loaded)
    }

    const SQL: &str = "ingest_sql: select 1\n";

    #[test]
    fn tests_are_found_by_name_and_what_cannot_be_one_is_refused() {
        let (dir, f) = folder(&[
            ("a/a.yaml", &format!("metric_batch: a\n{SQL}")),
            ("a/tests/day.history.csv", ""),
            ("a/tests/run.yml", ""),
            ("a/tests/run2.yaml", ""),
            ("a/tests/README.md", ""),
            ("a/tests/sub/deep.yaml", ""),
            ("a/tests/gone.expected.csv", ""),
            ("a/tests/Loud.YAML", ""),
            ("a/tests/week.history.parquet", ""),
            ("two/b.yaml", &format!("metric_batch: b\n{SQL}")),
            ("two/c.yaml", &format!("metric_batch: c\n{SQL}")),
            ("two/tests/x.yaml", ""),
        ]);
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        let found = find(&f, &BTreeSet::new());
        let ids: Vec<String> = found.cases.iter().map(TestCase::id).collect();
        assert_eq!(ids, ["a/day", "a/run", "a/run2"]);
        assert!(matches!(found.cases[0].input, Input::History(_)));
        assert!(matches!(found.cases[1].input, Input::Recording(_)));
        let refused = |what: &str| {
            found
                .refused
                .iter()
                .find(|r| r.message.contains(what))
                .unwrap_or_else(|| panic!("nothing refused for {what}: {:?}", found.refused))
                .id
                .clone()
        };
        let shown = |rel: &str| dir.path().join(rel).display().to_string();
        assert_eq!(refused("holds files only"), shown("a/tests/sub"));
        assert_eq!(
            refused("no recording (gone.yaml)"),
            shown("a/tests/gone.expected.csv")
        );
        assert_eq!(refused("this folder holds b, c"), shown("two/tests"));
        assert_eq!(refused("in lower case"), shown("a/tests/Loud.YAML"));
        assert_eq!(
            refused("read as CSV"),
            shown("a/tests/week.history.parquet")
        );
        assert_eq!(found.refused.len(), 5, "{:?}", found.refused);
        // Asked for one batch, the others' tests are not looked at.
        let only = BTreeSet::from(["b".to_string()]);
        let found = find(&f, &only);
        assert!(found.cases.is_empty());
        assert_eq!(found.refused.len(), 1);
    }

    #[test]
    fn names_that_could_escape_or_hide_are_not_test_names() {
        for good in ["front_page", "day-1", "v1.2"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", "é", &"x".repeat(101)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
