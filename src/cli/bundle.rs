//! `sandstack bundle`: one executable to deploy, holding sandstack and its
//! sandbox prepared for this machine.

use std::path::Path;
use std::process::ExitCode;

use crate::sandbox::bundle::{self, mb, Bundle, BundleSources};
use crate::sandbox::{home_dir, Sandbox};

pub fn bundle(out: &Path) -> anyhow::Result<ExitCode> {
    let say = |msg: &str| eprintln!("sandstack bundle: {msg}");
    let home = home_dir();
    let sandbox = Sandbox::prepare(&home, None, &say)?;
    let sources = BundleSources::for_this_machine(&home, Bundle::running(), &sandbox)?;
    let report = bundle::write(out, sources, &say)?;
    say(&format!(
        "wrote {} ({}: sandstack {} ({} build), compiled guest {}, snapshot {} zstd from {}) in {:.1}s",
        out.display(),
        mb(report.size),
        mb(report.executable),
        super::setup::build_profile(),
        mb(report.compiled),
        mb(report.snapshot_compressed),
        mb(report.snapshot_raw),
        report.seconds
    ));
    say(&format!(
        "copy it to any {} Linux machine and run it there: nothing to install, fetch, compile or decompress (its snapshot is unpacked only where the compiled guest does not fit the CPU)",
        std::env::consts::ARCH
    ));
    Ok(ExitCode::SUCCESS)
}
