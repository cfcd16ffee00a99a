//! The deployment files under deploy/: the systemd unit passes `systemd-analyze verify` and
//! keeps a low exposure score, the Debian package installs with `dpkg -i` in a Debian
//! container and its node runs there, the Kubernetes manifests pass the Kubernetes schemas
//! offline and fit together, and the configuration they carry is one the node accepts.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::docker::{base_image, docker_within};
use support::venv;

/// Installing the package and starting its node in a container.
const INSTALL_WITHIN: Duration = Duration::from_secs(120);

/// `systemd-analyze security`'s score, 0 (locked down) to 10 (exposed); 1.5 when measured.
const MAX_EXPOSURE: f64 = 2.0;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deployment-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn copy(from: &Path, to: &Path) {
    fs::create_dir_all(to.parent().expect("a parent")).expect("parent directory");
    fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

/// A root as the Debian package lays it out, on this host's systemd units (the targets the
/// unit names) and its `kill` (ExecReload).
fn systemd_root() -> PathBuf {
    let root = scratch("systemd-root");
    let units = Path::new("/lib/systemd/system");
    for entry in fs::read_dir(units).expect("the host's systemd units") {
        let entry = entry.expect("a unit");
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            copy(
                &entry.path(),
                &root.join("lib/systemd/system").join(entry.file_name()),
            );
        }
    }
    copy(Path::new("/bin/kill"), &root.join("bin/kill"));
    copy(
        Path::new(env!("CARGO_BIN_EXE_setowire-node")),
        &root.join("usr/bin/setowire-node"),
    );
    copy(
        &repo("deploy/systemd/setowire-node.service"),
        &root.join("lib/systemd/system/setowire-node.service"),
    );
    copy(
        &repo("config/node.toml"),
        &root.join("etc/setowire-node/node.toml"),
    );
    root
}

/// `systemd-analyze verify` of the unit in `root`: it must say nothing at all (an unknown key
/// is only a warning, with exit code 0).
fn verify(root: &Path) {
    let out = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("/lib/systemd/system/setowire-node.service"));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{}: {said}",
        out.status
    );
}

#[test]
fn the_systemd_unit_verifies_and_is_locked_down() {
    let root = systemd_root();
    verify(&root);
    // The drop-in example, installed as an operator would, changes nothing verify objects to.
    copy(
        &repo("deploy/systemd/setowire-node.service.d/override.conf.example"),
        &root.join("etc/systemd/system/setowire-node.service.d/override.conf"),
    );
    verify(&root);

    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg("/lib/systemd/system/setowire-node.service"));
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    let score: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for setowire-node.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    println!("deployment | systemd exposure level {score}");
    assert!(score <= MAX_EXPOSURE, "exposure {score}:\n{report}");
}

#[test]
fn the_kubernetes_manifests_validate_and_fit_together() {
    let out = run(Command::new(venv::python())
        .arg("-I")
        .arg(repo("tests/deploy/check_manifests.py"))
        .arg(repo("deploy/k8s")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let carried: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let node_toml = carried["node_toml"]
        .as_str()
        .expect("the ConfigMap's node.toml");

    // The node accepts the configuration the ConfigMap carries.
    let dir = scratch("k8s-config");
    let path = dir.join("node.toml");
    fs::write(&path, node_toml).expect("write node.toml");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_setowire-node"));
    cmd.arg("--config").arg(&path).arg("--print-config");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SETOWIRE_") {
            cmd.env_remove(name);
        }
    }
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("setowire-node-2.setowire-node-peers:49737"));
}

/// The package deploy/debian/build-deb.sh made (scripts/test.sh runs it before the tests).
fn debian_package() -> PathBuf {
    let dir = repo("target/debian");
    let mut packages: Vec<PathBuf> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    packages.sort_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
    packages.pop().unwrap_or_else(|| {
        panic!(
            "no package in {}: build it with deploy/debian/build-deb.sh (scripts/test.sh does)",
            dir.display()
        )
    })
}

#[test]
fn the_debian_package_installs_and_its_node_runs() {
    let package = debian_package();
    let name = package
        .file_name()
        .and_then(|n| n.to_str())
        .expect("a name");
    let dir = package.parent().expect("a directory").display().to_string();
    // As the unit starts it, then the probe a unit's watchdog or an operator would use.
    let script = format!(
        "set -e
        dpkg -i /packages/{name}
        dpkg-query -W -f='${{Conffiles}}' setowire-node | grep -q /etc/setowire-node/node.toml
        test -f /lib/systemd/system/setowire-node.service
        mkdir -p /var/lib/setowire-node
        setowire-node --config /etc/setowire-node/node.toml --state-dir /var/lib/setowire-node &
        for i in $(seq 1 100); do
          setowire-node health --config /etc/setowire-node/node.toml && break
          sleep 0.1
        done
        test -f /var/lib/setowire-node/identity.key
        kill -TERM $!
        wait $!
        echo installed-and-ran"
    );
    let volume = format!("{dir}:/packages:ro");
    let image = base_image();
    let out = docker_within(
        &["run", "--rm", "-v", &volume, &image, "sh", "-c", &script],
        INSTALL_WITHIN,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("healthy: GET"), "{out}");
    assert!(out.trim_end().ends_with("installed-and-ran"), "{out}");
}
