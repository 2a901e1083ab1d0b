//! `sandstack setup`: prepare the sandbox ahead of the first Python ingest.

use std::process::ExitCode;
use std::time::Instant;

use crate::sandbox::{home_dir, Sandbox};

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
