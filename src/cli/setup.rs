//! `sandstack setup`: prepare the sandbox ahead of the first Python ingest.

use std::process::ExitCode;
use std::time::Instant;

use crate::sandbox::guest::{pin, GUEST_PACKAGES};
use crate::sandbox::{home_dir, Readiness, Sandbox};

/// `sandstack setup --check`: what the guest offers and whether this
/// machine's sandbox is prepared, preparing nothing.
pub fn check() -> anyhow::Result<ExitCode> {
    let home = home_dir();
    let guest = pin();
    println!("sandstack {}", env!("CARGO_PKG_VERSION"));
    println!(
        "guest: {} {} ({})",
        guest.package, guest.version, guest.sha256
    );
    let readiness = Sandbox::readiness(&home);
    let state = match readiness {
        Readiness::Ready => "ready",
        Readiness::NotCompiled => {
            "guest fetched, snapshot not built or compiled yet (run `sandstack setup`)"
        }
        Readiness::NoGuest => {
            "not prepared (run `sandstack setup`, or the first Python ingest will)"
        }
    };
    println!("sandbox in {}: {state}", home.display());
    println!("Python packages besides the standard library:");
    for p in GUEST_PACKAGES {
        println!("  {p}");
    }
    Ok(if readiness == Readiness::Ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn setup() -> anyhow::Result<ExitCode> {
    let home = home_dir();
    let start = Instant::now();
    eprintln!(
        "sandstack setup: preparing the Python sandbox in {}",
        home.display()
    );
    Sandbox::open(&home, &|msg| eprintln!("sandstack setup: {msg}"))?;
    eprintln!(
        "sandstack setup: the sandbox is ready ({:.1}s); later runs reuse {}",
        start.elapsed().as_secs_f64(),
        home.display()
    );
    Ok(ExitCode::SUCCESS)
}
