//! The Python environment: `target/interop-venv` with py-setowire 0.1.0 from PyPI (the
//! interop tests' peers) and kubernetes-validate (the deployment tests' schema check).
//!
//! Created on first use by whichever test binary gets there first; the others
//! wait on an exclusive `flock` of `target/interop-venv.lock`. An existing venv is
//! reused when it already holds every package at its pinned version. Failing to
//! build it fails the test: interop tests are never skipped.
//!
//! `SETOWIRE_TEST_PYTHON` overrides the interpreter used to create the venv
//! (default `python3`).

use std::fs::{self, File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

pub const PACKAGE: &str = "py-setowire";
pub const VERSION: &str = "0.1.0";
/// Every distribution the venv holds, pinned.
const REQUIREMENTS: [(&str, &str); 2] = [(PACKAGE, VERSION), ("kubernetes-validate", "1.37.0")];

const LOCK_WAIT: Duration = Duration::from_secs(15 * 60);
const CREATE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// Cargo's target directory (the parent of `CARGO_TARGET_TMPDIR`).
pub fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

pub fn venv_dir() -> PathBuf {
    target_dir().join("interop-venv")
}

/// The venv's interpreter, provisioning the venv first if needed.
#[track_caller]
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(provision) {
        Ok(p) => p.clone(),
        Err(e) => panic!("cannot provision the py-setowire test venv:\n{e}"),
    }
}

/// Path of the JSON-lines driver script.
pub fn driver_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/setowire_driver.py")
}

fn provision() -> Result<PathBuf, String> {
    let target = target_dir();
    fs::create_dir_all(&target).map_err(|e| format!("create {}: {e}", target.display()))?;
    let _lock = lock_exclusive(&target.join("interop-venv.lock"))?;

    let dir = venv_dir();
    let python = dir.join("bin/python");
    if python.exists() && check(&python).is_ok() {
        return Ok(python);
    }

    let log_path = target.join("interop-venv-setup.log");
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| format!("remove stale {}: {e}", dir.display()))?;
    }
    let base = std::env::var_os("SETOWIRE_TEST_PYTHON").unwrap_or_else(|| "python3".into());
    let mut create = Command::new(&base);
    create.arg("-m").arg("venv").arg(&dir);
    run_logged(create, &log_path, CREATE_TIMEOUT).map_err(|e| {
        format!(
            "`{} -m venv {}` failed: {e}\n(is python3 with the venv module installed?)",
            Path::new(&base).display(),
            dir.display()
        )
    })?;

    let pins: Vec<String> = REQUIREMENTS
        .iter()
        .map(|(name, version)| format!("{name}=={version}"))
        .collect();
    let mut install = Command::new(&python);
    install
        .args(["-m", "pip", "install", "--no-input"])
        .args(&pins);
    run_logged(install, &log_path, INSTALL_TIMEOUT).map_err(|e| {
        format!(
            "`pip install {}` failed: {e}\n(is PyPI reachable?)",
            pins.join(" ")
        )
    })?;

    check(&python).map_err(|e| format!("the fresh venv does not work: {e}"))?;
    Ok(python)
}

/// `import swarm` works and every installed distribution is at its pinned version.
fn check(python: &Path) -> Result<(), String> {
    let mut code = String::from("import importlib.metadata as m, swarm, kubernetes_validate\n");
    for (name, version) in REQUIREMENTS {
        code.push_str(&format!(
            "v = m.version('{name}')\nassert v == '{version}', 'found {name} ' + v\n"
        ));
    }
    let mut cmd = Command::new(python);
    cmd.args(["-I", "-c", &code]);
    let log = target_dir().join("interop-venv-check.log");
    run_logged(cmd, &log, CHECK_TIMEOUT)
}

/// Runs `cmd` with stdout and stderr appended to `log`, killing it after `timeout`.
fn run_logged(mut cmd: Command, log: &Path, timeout: Duration) -> Result<(), String> {
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("open {}: {e}", log.display()))
    };
    let start_len = fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    cmd.stdin(Stdio::null()).stdout(open()?).stderr(open()?);
    if let Some(dir) = log.parent() {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "timed out after {timeout:?}{}",
                    log_tail(log, start_len)
                ));
            }
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!("{status}{}", log_tail(log, start_len)))
    }
}

fn log_tail(log: &Path, from: u64) -> String {
    let text = fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(40)..].join("\n");
    format!("\n--- output ({}):\n{tail}", log.display())
}

/// Holds an exclusive `flock` until dropped (closing the file releases it).
fn lock_exclusive(path: &Path) -> Result<File, String> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| format!("open {}: {e}", path.display()))?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(file);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) && err.raw_os_error() != Some(libc::EINTR)
        {
            return Err(format!("flock {}: {err}", path.display()));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "gave up waiting {LOCK_WAIT:?} for {}",
                path.display()
            ));
        }
        thread::sleep(Duration::from_millis(100));
    }
}
