//! sandstack's guest-side Python (runtime/python/), compiled into the binary
//! and installed into the snapshot, so a deploy is one file.

use sha2::{Digest, Sha256};

/// (module name, source, is a package)
pub const MODULES: &[(&str, &str, bool)] = &[
    (
        "_sandstack_stdlib",
        include_str!("../../runtime/python/_sandstack_stdlib.py"),
        false,
    ),
    (
        "_sandstack_door",
        include_str!("../../runtime/python/_sandstack_door.py"),
        false,
    ),
    (
        "_sandstack_frame",
        include_str!("../../runtime/python/_sandstack_frame.py"),
        false,
    ),
    (
        "_sandstack_secrets",
        include_str!("../../runtime/python/_sandstack_secrets.py"),
        false,
    ),
    (
        "_sandstack_driver",
        include_str!("../../runtime/python/_sandstack_driver.py"),
        false,
    ),
    (
        "requests",
        include_str!("../../runtime/python/requests/__init__.py"),
        true,
    ),
    (
        "requests.exceptions",
        include_str!("../../runtime/python/requests/exceptions.py"),
        false,
    ),
    (
        "requests.auth",
        include_str!("../../runtime/python/requests/auth.py"),
        false,
    ),
    (
        "_sandstack_pandas2",
        include_str!("../../runtime/python/_sandstack_pandas2.py"),
        false,
    ),
    (
        "_sandstack_stdlib_http",
        include_str!("../../runtime/python/_sandstack_stdlib_http.py"),
        false,
    ),
    (
        "requests.adapters",
        include_str!("../../runtime/python/requests/adapters.py"),
        false,
    ),
    (
        "requests.cookies",
        include_str!("../../runtime/python/requests/cookies.py"),
        false,
    ),
    (
        "requests.structures",
        include_str!("../../runtime/python/requests/structures.py"),
        false,
    ),
    (
        "requests.utils",
        include_str!("../../runtime/python/requests/utils.py"),
        false,
    ),
    (
        "urllib3",
        include_str!("../../runtime/python/urllib3/__init__.py"),
        true,
    ),
    (
        "urllib3.exceptions",
        include_str!("../../runtime/python/urllib3/exceptions.py"),
        false,
    ),
    (
        "urllib3.util",
        include_str!("../../runtime/python/urllib3/util/__init__.py"),
        true,
    ),
    (
        "urllib3.util.retry",
        include_str!("../../runtime/python/urllib3/util/retry.py"),
        false,
    ),
    (
        "dagster",
        include_str!("../../runtime/python/dagster/__init__.py"),
        true,
    ),
];

const BOOT: &str = include_str!("../../runtime/python/_sandstack_boot.py");

/// What every run executes as its one turn.
pub const RUN_TURN: &str = "import _sandstack_driver\n_sandstack_driver.main()\n";

/// The turn run once at snapshot time: install the modules, take the
/// standard library archive into memory (runs have no filesystem), import
/// what ingest code needs, warm lazy state, and freeze the heap out of the
/// GC's reach (a collection would otherwise touch, and so copy, every page).
pub fn snapshot_turn() -> String {
    let mut src = String::from(BOOT);
    src.push_str("\ninstall({\n");
    for (name, source, is_pkg) in MODULES {
        // JSON string literals are valid Python string literals.
        let lit = serde_json::to_string(source).unwrap_or_default();
        let pkg = if *is_pkg { "True" } else { "False" };
        src.push_str(&format!("    {name:?}: ({lit}, {pkg}),\n"));
    }
    src.push_str(
        "})\n\
         import _sandstack_stdlib\n\
         _sandstack_stdlib.install()\n\
         import gc, json, logging, random, datetime, time, uuid, math, statistics\n\
         import numpy\n\
         import pandas\n\
         import _sandstack_pandas2\n\
         _sandstack_pandas2.install()\n\
         import _sandstack_stdlib_http\n\
         _sandstack_stdlib_http.install()\n\
         import requests, requests.exceptions, requests.auth, requests.adapters, requests.utils\n\
         import urllib3, urllib3.util.retry\n\
         import dagster\n\
         import _sandstack_driver\n\
         import warnings\n\
         with warnings.catch_warnings():\n\
         \x20   warnings.simplefilter('ignore')\n\
         \x20   _sandstack_driver.warm()\n\
         gc.collect()\n\
         gc.freeze()\n",
    );
    src
}

/// Changes whenever the guest-side code or the snapshot recipe changes.
pub fn sources_hash() -> String {
    let mut h = Sha256::new();
    h.update(snapshot_turn().as_bytes());
    h.update(RUN_TURN.as_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::MODULES;

    /// Every guest module on disk ships in the binary, except the boot code
    /// (which is inlined into the snapshot turn).
    #[test]
    fn every_runtime_module_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime/python");
        let mut on_disk = Vec::new();
        for entry in walkdir::WalkDir::new(&root) {
            let entry = entry.expect("walk runtime/python");
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("py") {
                continue;
            }
            let rel = path
                .strip_prefix(&root)
                .expect("under root")
                .with_extension("");
            let mut name = rel.to_string_lossy().replace('/', ".");
            if let Some(pkg) = name.strip_suffix(".__init__") {
                name = pkg.to_string();
            }
            if name != "_sandstack_boot" {
                on_disk.push(name);
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = MODULES.iter().map(|(n, _, _)| n.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }
}
