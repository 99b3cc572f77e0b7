//! The Python consumers: the published `autoplay-sdk==0.1.0` and `==0.13.0` from
//! PyPI, each installed into a virtualenv the benchmark makes under
//! `target/autoplay-bench/`, and ours.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The consumer script, written next to the virtualenv.
pub const SCRIPT: &str = include_str!("../python/published_consume.py");

/// The asyncio consumer script (`AsyncConnectorClient`), written next to it.
pub const ASYNC_SCRIPT: &str = include_str!("../python/async_consume.py");

/// The published package pinned for the comparison.
pub const PUBLISHED: &str = "autoplay-sdk==0.1.0";

/// The published release users install today, for the asyncio comparison.
pub const PUBLISHED_LATEST: &str = "autoplay-sdk==0.13.0";

/// A ready interpreter with the published SDK, and what it reports about itself.
pub struct PublishedEnv {
    pub python: PathBuf,
    pub script: PathBuf,
    /// The asyncio consumer (`AsyncConnectorClient`).
    pub async_script: PathBuf,
    pub versions: String,
}

/// Writes both consumer scripts into `work`; returns (blocking, asyncio).
fn write_scripts(work: &Path) -> Result<(PathBuf, PathBuf), String> {
    let script = work.join("published_consume.py");
    std::fs::write(&script, SCRIPT).map_err(|e| e.to_string())?;
    let async_script = work.join("async_consume.py");
    std::fs::write(&async_script, ASYNC_SCRIPT).map_err(|e| e.to_string())?;
    Ok((script, async_script))
}

/// Creates (once) `target/autoplay-bench/venv-published` with the published SDK.
pub fn published_env(work: &Path) -> Result<PublishedEnv, String> {
    published_env_of(work, "venv-published", PUBLISHED)
}

/// Creates (once) `target/autoplay-bench/venv-published-0.13` with 0.13.0.
pub fn published_latest_env(work: &Path) -> Result<PublishedEnv, String> {
    published_env_of(work, "venv-published-0.13", PUBLISHED_LATEST)
}

/// Creates (once) `work/<venv>` with the pinned `package` and its dependencies.
fn published_env_of(work: &Path, venv: &str, package: &str) -> Result<PublishedEnv, String> {
    let venv = work.join(venv);
    let python = venv.join("bin/python");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import autoplay_sdk, httpx_sse"])
            .status()
            .is_ok_and(|s| s.success());
    if !ready {
        eprintln!("creating {} with {package}", venv.display());
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("python3 -m venv failed".into());
        }
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", package])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("pip install {package} failed"));
        }
    }
    let (script, async_script) = write_scripts(work)?;
    let versions = Command::new(&python)
        .args([
            "-c",
            "import sys, importlib.metadata as m; print('Python %d.%d.%d' % sys.version_info[:3] + ', ' + ', '.join(p + ' ' + m.version(p) for p in ('autoplay-sdk', 'httpx', 'httpx-sse')))",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Ok(PublishedEnv {
        python,
        script,
        async_script,
        versions,
    })
}

/// Our Python package (`crates/autoplay-python`): the wheel its build left in
/// `target/wheels/`, installed into `target/autoplay-bench/venv-ours` (reinstalled
/// when the wheel is newer). The benchmark does not build the wheel itself
/// (`crates/autoplay-python/test.sh` or `pip install ./crates/autoplay-python` does).
pub fn ours_env(root: &Path, work: &Path) -> Result<PublishedEnv, String> {
    let wheel = std::fs::read_dir(root.join("target/wheels"))
        .map_err(|_| "no wheel in target/wheels (build crates/autoplay-python first)".to_string())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("autoplay_sdk-") && n.ends_with(".whl"))
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .ok_or("no autoplay_sdk wheel in target/wheels (build crates/autoplay-python first)")?;
    let venv = work.join("venv-ours");
    let python = venv.join("bin/python");
    let stamp = venv.join("installed-wheel");
    let wheel_time = wheel.metadata().and_then(|m| m.modified()).ok();
    let stamp_time = stamp.metadata().and_then(|m| m.modified()).ok();
    let fresh = python.exists() && stamp_time.is_some() && stamp_time >= wheel_time;
    if !fresh {
        if !python.exists() {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err("python3 -m venv failed".into());
            }
        }
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--force-reinstall", "--no-deps"])
            .arg(&wheel)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("pip install {} failed", wheel.display()));
        }
        let _ = std::fs::write(&stamp, wheel.display().to_string());
    }
    let works = Command::new(&python)
        .args(["-c", "import autoplay_sdk._native"])
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        return Err(format!("{} does not import", wheel.display()));
    }
    let (script, async_script) = write_scripts(work)?;
    let name = wheel.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    let built = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC", "-r"])
        .arg(&wheel)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Ok(PublishedEnv {
        python,
        script,
        async_script,
        versions: format!(
            "Our Python package: `{name}` from `target/wheels` (built {built}), installed into `target/autoplay-bench/venv-ours`"
        ),
    })
}
