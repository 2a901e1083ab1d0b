//! Compiles DuckDB's ICU extension into sandstack, so time zones and
//! `TIMESTAMP WITH TIME ZONE` arithmetic work as in every other DuckDB
//! distribution. duckdb-rs's `icu` feature needs a git checkout of DuckDB
//! (the crate ships without ICU's sources), so the sources come from DuckDB's
//! own source distribution on PyPI, fetched once by `scripts/install-deps`,
//! and are compiled here against the headers of the DuckDB that duckdb-rs
//! built. Hand-written for want of a crate that builds one DuckDB extension.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=native/duckdb_icu.c");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-env-changed=SANDSTACK_DUCKDB_ICU_DIR");

    let version = duckdb_version();
    let sources = icu_sources(&version);
    println!("cargo:rerun-if-changed={}", sources.display());
    let include = PathBuf::from(
        std::env::var("DEP_DUCKDB_INCLUDE")
            .expect("libduckdb-sys publishes DuckDB's include directory (links = \"duckdb\")"),
    );
    let include_dirs = duckdb_include_dirs(&include);

    let mut files = Vec::new();
    collect_cpp(&sources, &mut files);
    files.sort();
    if files.is_empty() {
        fail(&format!(
            "no ICU sources (*.cpp) under {}",
            sources.display()
        ));
    }

    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .files(&files)
        .includes(&include_dirs)
        .include(sources.join("include"))
        .include(sources.join("collation/include"))
        .include(sources.join("datetime/include"))
        // Must match the DuckDB library's own build (NDEBUG in duckdb-rs's
        // cc backend, whatever this crate's profile): DEBUG changes layouts.
        .define("NDEBUG", None)
        .define("DUCKDB_STATIC_BUILD", None)
        .define("EXT_VERSION_ICU", Some(format!("\"v{version}\"").as_str()))
        .opt_level(2)
        .debug(false)
        .warnings(false)
        .flag_if_supported("-w");
    build.compile("sandstack_duckdb_icu");

    cc::Build::new()
        .file("native/duckdb_icu.c")
        .include(&include)
        .define(
            "SANDSTACK_DUCKDB_VERSION",
            Some(format!("\"v{version}\"").as_str()),
        )
        .compile("sandstack_duckdb_icu_register");
}

/// DuckDB's own include directories, as its source manifest lists them
/// (the sources sit two levels above `src/include`).
fn duckdb_include_dirs(include: &Path) -> Vec<PathBuf> {
    let root = include.join("../..");
    let manifest = std::fs::read_to_string(root.join("manifest.json"))
        .unwrap_or_else(|e| fail(&format!("DuckDB's manifest.json: {e}")));
    let manifest: serde_json::Value = serde_json::from_str(&manifest)
        .unwrap_or_else(|e| fail(&format!("DuckDB's manifest.json: {e}")));
    let dirs = manifest["base"]["include_dirs"]
        .as_array()
        .unwrap_or_else(|| fail("DuckDB's manifest.json lists no base include_dirs"));
    dirs.iter()
        .filter_map(|d| d.as_str())
        .map(|d| root.join(d))
        .collect()
}

/// The DuckDB version duckdb-rs bundles, decoded from libduckdb-sys's
/// version in Cargo.lock (1.MMmmpp.x encodes DuckDB MM.mm.pp), the same way
/// `scripts/install-deps` decodes it to fetch the matching sources.
fn duckdb_version() -> String {
    let lock =
        std::fs::read_to_string("Cargo.lock").unwrap_or_else(|e| fail(&format!("Cargo.lock: {e}")));
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"libduckdb-sys\"" {
            let version = lines
                .next()
                .and_then(|l| l.strip_prefix("version = \""))
                .and_then(|l| l.strip_suffix('"'))
                .unwrap_or_else(|| fail("Cargo.lock: libduckdb-sys has no version line"));
            let encoded: u32 = version
                .split('.')
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| fail(&format!("libduckdb-sys {version}: not 1.MMmmpp.x")));
            return format!(
                "{}.{}.{}",
                encoded / 10_000,
                encoded / 100 % 100,
                encoded % 100
            );
        }
    }
    fail("Cargo.lock has no libduckdb-sys")
}

fn icu_sources(version: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("SANDSTACK_DUCKDB_ICU_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| fail("HOME is not set"));
    let dir = Path::new(&home).join(format!(".cache/sandstack-deps/duckdb-{version}/icu"));
    if !dir.join("icu_extension.cpp").is_file() {
        fail(&format!(
            "DuckDB {version}'s ICU extension sources are not at {}.\n\
             Run scripts/install-deps (it fetches them once with pip), or set \
             SANDSTACK_DUCKDB_ICU_DIR to the extension/icu folder of DuckDB {version}'s sources.",
            dir.display()
        ));
    }
    dir
}

fn collect_cpp(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_cpp(&path, out);
        } else if path.extension().is_some_and(|e| e == "cpp") {
            out.push(path);
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("sandstack build: {message}");
    std::process::exit(1)
}
