//! `sandstack setup`: prepare the sandbox ahead of the first Python ingest,
//! or report how it stands; and the version lines `--version` prints.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use crate::sandbox::bundle::Bundle;
use crate::sandbox::guest::{pin, GUEST_PACKAGES};
use crate::sandbox::{home_dir, snapshot_key, wasmtime_version, Readiness, Sandbox};

/// What this build is: sandstack, wasmtime, the guest, and whether this
/// executable is a bundle.
/// The profile this binary was built with: figures from a debug build are
/// not what a release deploy sees.
pub(crate) fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

pub fn version_text() -> String {
    let guest = pin();
    // clap prints "sandstack " before the first line.
    let mut lines = vec![
        env!("CARGO_PKG_VERSION").to_string(),
        format!("{} build, wasmtime {}", build_profile(), wasmtime_version()),
        format!(
            "guest {} {} (sha256 {}), snapshot {}",
            guest.package,
            guest.version,
            guest.sha256,
            snapshot_key()
        ),
    ];
    lines.push(match Bundle::running() {
        Some(b) => format!(
            "bundle: yes, made {} for {} (compiled guest {}, blake3 {})",
            b.manifest.created,
            b.manifest.machine,
            crate::sandbox::bundle::mb(b.manifest.compiled.len),
            b.manifest.compiled.blake3
        ),
        None => "bundle: no".to_string(),
    });
    lines.join("\n")
}

/// `sandstack setup --check`: what the guest offers and whether this
/// machine's sandbox is prepared, preparing nothing.
pub fn check() -> anyhow::Result<ExitCode> {
    let home = home_dir();
    println!("sandstack {}", version_text());
    let readiness = Sandbox::readiness(&home);
    if let (Some(b), false) = (Bundle::running(), readiness == Readiness::Bundled) {
        let engine = crate::sandbox::shared_engine().map_err(anyhow::Error::msg)?;
        if let Err(e) = b.compiled_guest(engine) {
            println!("{e}; `sandstack setup` compiles the bundle's snapshot for this machine into {} (once)", home.display());
        }
    }
    let state = match readiness {
        Readiness::Bundled => "ready: the compiled guest is mapped from this bundle".to_string(),
        Readiness::Ready => format!("ready, in {}", home.display()),
        Readiness::NotCompiled => format!(
            "guest fetched into {}, snapshot not built or compiled yet (run `sandstack setup`)",
            home.display()
        ),
        Readiness::NoGuest => format!(
            "not prepared in {} (run `sandstack setup`, or the first Python ingest will)",
            home.display()
        ),
    };
    println!("sandbox: {state}");
    println!("Python packages besides the standard library:");
    for p in GUEST_PACKAGES {
        println!("  {p}");
    }
    Ok(match readiness {
        Readiness::Bundled | Readiness::Ready => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

pub fn setup(guest_wheel: Option<&Path>) -> anyhow::Result<ExitCode> {
    let home = home_dir();
    let start = Instant::now();
    eprintln!(
        "sandstack setup: preparing the Python sandbox in {}",
        home.display()
    );
    let sandbox = Sandbox::prepare(&home, guest_wheel, &|msg| {
        eprintln!("sandstack setup: {msg}")
    })?;
    let place = match sandbox.from_bundle() {
        true => "the compiled guest is mapped from this bundle".to_string(),
        false => format!("later runs reuse {}", home.display()),
    };
    eprintln!(
        "sandstack setup: the sandbox is ready ({:.1}s); {place}",
        start.elapsed().as_secs_f64(),
    );
    Ok(ExitCode::SUCCESS)
}
