//! A real Docker engine for the container tests: Debian's client, bounded commands, and
//! networks and containers that remove themselves.
//!
//! * The client is `/usr/bin/docker` (Debian's docker.io; another client found first on
//!   `PATH` may not match the daemon), or `SETOWIRE_TEST_DOCKER`.
//! * Every command runs under coreutils' `timeout`, so a hung daemon fails the test.
//! * [`Network`] and [`Container`] are named `swc-<pid>-...` and removed on drop; what a
//!   killed test binary left behind is swept, by name, the first time another one starts.
//! * The node's image is `setowire-node:latest` (or `SETOWIRE_TEST_IMAGE`), built by
//!   `deploy/docker/build-offline.sh`, which scripts/test.sh runs before the tests: a missing
//!   image fails the tests, it never skips them. The py-setowire peer image is built here, on
//!   the same local Debian base, from tests/container/pypeer.Dockerfile.
//!
//! Containers talk over a network the test creates; ports are published on 127.0.0.1 only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::peer::ControlPeer;
use super::process::LineProcess;
use super::venv;

/// Bound on one ordinary docker command (images are built under [`BUILD_TIMEOUT`]).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on building the peer image (apt-get of python3 into the base, the first time).
const BUILD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The peer image's tag: py-setowire's version and the driver it runs are in its layers.
const PYPEER_IMAGE: &str = "setowire-test-pypeer:0.1.0";

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static SWEEP: Once = Once::new();

pub fn client() -> PathBuf {
    std::env::var_os("SETOWIRE_TEST_DOCKER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker"))
}

/// `docker ARGS` under `timeout`: its stdout, or what went wrong.
pub fn docker_within(args: &[&str], limit: Duration) -> Result<String, String> {
    let out = Command::new("timeout")
        .args(["--kill-after=5", &format!("{}", limit.as_secs())])
        .arg(client())
        .args(args)
        // BuildKit: Docker 20.10 needs it asked for; its cache goes by content, so an
        // unchanged peer image is not rebuilt.
        .env("DOCKER_BUILDKIT", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run timeout {}: {e}", client().display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "docker {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub fn docker(args: &[&str]) -> Result<String, String> {
    docker_within(args, COMMAND_TIMEOUT)
}

/// [`docker`], failing the test on error; stdout trimmed.
#[track_caller]
pub fn docker_ok(args: &[&str]) -> String {
    match docker(args) {
        Ok(out) => out.trim().to_owned(),
        Err(e) => panic!("{e}"),
    }
}

/// A name no other test (or test binary) uses: `swc-<pid>-<n>-<what>`.
pub fn unique_name(what: &str) -> String {
    SWEEP.call_once(sweep_stale);
    format!(
        "swc-{}-{}-{what}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The pid in a name made by [`unique_name`] (compose prefixes it to its own names too).
fn owner_pid(name: &str) -> Option<&str> {
    name.strip_prefix("swc-")?.split('-').next()
}

/// Removes the containers, networks and volumes of test processes that no longer run.
fn sweep_stale() {
    let stale = |listing: Result<String, String>| -> Vec<String> {
        listing
            .unwrap_or_default()
            .lines()
            .filter(|name| {
                owner_pid(name).is_some_and(|pid| !Path::new("/proc").join(pid).exists())
            })
            .map(str::to_owned)
            .collect()
    };
    for name in stale(docker(&["ps", "-a", "--format", "{{.Names}}"])) {
        let _ = docker(&["rm", "-f", "-v", &name]);
    }
    for name in stale(docker(&["network", "ls", "--format", "{{.Name}}"])) {
        let _ = docker(&["network", "rm", &name]);
    }
    for name in stale(docker(&["volume", "ls", "--format", "{{.Name}}"])) {
        let _ = docker(&["volume", "rm", &name]);
    }
}

/// A bridge network of the test's own; removed on drop (after its containers: declare the
/// network first so that it is dropped last).
pub struct Network {
    pub name: String,
}

impl Network {
    #[track_caller]
    pub fn create() -> Network {
        let name = unique_name("net");
        docker_ok(&["network", "create", &name]);
        Network { name }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Err(e) = docker(&["network", "rm", &self.name]) {
            eprintln!("{e}");
        }
    }
}

/// A container, removed (with its anonymous volumes) on drop.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `docker run -d` on `net` with extra `run_args`, `image` and `cmd`.
    #[track_caller]
    pub fn start(
        net: &Network,
        what: &str,
        run_args: &[&str],
        image: &str,
        cmd: &[&str],
    ) -> Container {
        Container::start_as(net, &unique_name(what), run_args, image, cmd)
    }

    /// Like [`Container::start`], named `name` (made by [`unique_name`]): for containers that
    /// must know each other's names before they run.
    #[track_caller]
    pub fn start_as(
        net: &Network,
        name: &str,
        run_args: &[&str],
        image: &str,
        cmd: &[&str],
    ) -> Container {
        let container = Container {
            name: name.to_owned(),
        };
        let mut args = vec!["run", "-d", "--name", &container.name];
        args.extend(["--network", &net.name]);
        args.extend(run_args);
        args.push(image);
        args.extend(cmd);
        docker_ok(&args);
        container
    }

    #[track_caller]
    pub fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "-f", format, &self.name])
    }

    /// The container's address on its (only) network.
    #[track_caller]
    pub fn ip(&self) -> String {
        self.inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
    }

    /// Where the host reaches the container's `port` (`"8737/tcp"`, `"49737/udp"`).
    #[track_caller]
    pub fn published(&self, port: &str) -> SocketAddr {
        let out = docker_ok(&["port", &self.name, port]);
        let first = out.lines().next().unwrap_or_default();
        first
            .parse()
            .unwrap_or_else(|e| panic!("docker port {} {port}: {out:?}: {e}", self.name))
    }

    /// Polls the health check's status until it is "healthy"; returns how long that took
    /// from `since`. Fails on "unhealthy", on the container exiting, and after `limit`.
    #[track_caller]
    pub fn wait_healthy(&self, since: Instant, limit: Duration) -> Duration {
        let deadline = since + limit;
        loop {
            let state = self.inspect("{{.State.Status}} {{.State.Health.Status}}");
            match state.as_str() {
                "running healthy" => return since.elapsed(),
                "running starting" if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(50))
                }
                _ => panic!(
                    "{}: not healthy ({state}) after {:?}\n{}\nlogs:\n{}",
                    self.name,
                    since.elapsed(),
                    self.inspect("{{json .State.Health}}"),
                    self.logs()
                ),
            }
        }
    }

    /// stdout and stderr of the container so far.
    pub fn logs(&self) -> String {
        match Command::new("timeout")
            .arg(format!("{}", COMMAND_TIMEOUT.as_secs()))
            .arg(client())
            .args(["logs", &self.name])
            .output()
        {
            Ok(out) => {
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr)
            }
            Err(e) => format!("(docker logs: {e})"),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- logs of {} ---\n{}", self.name, self.logs());
        }
        if let Err(e) = docker(&["rm", "-f", "-v", &self.name]) {
            eprintln!("{e}");
        }
    }
}

/// The Debian base image, made by deploy/docker/debian-base.sh (once per machine: the
/// script reuses the image when it is there).
#[track_caller]
pub fn base_image() -> String {
    static BASE: OnceLock<Result<String, String>> = OnceLock::new();
    let made = BASE.get_or_init(|| {
        let script = repo().join("deploy/docker/debian-base.sh");
        let out = Command::new(&script)
            .env("DOCKER", client())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    });
    made.clone().unwrap_or_else(|e| panic!("{e}"))
}

/// The node's image; it must have been built (deploy/docker/build-offline.sh).
#[track_caller]
pub fn node_image() -> String {
    let image =
        std::env::var("SETOWIRE_TEST_IMAGE").unwrap_or_else(|_| "setowire-node:latest".into());
    if let Err(e) = docker(&["image", "inspect", "--format", "{{.Id}}", &image]) {
        panic!(
            "the node's image {image} is not there: build it with deploy/docker/build-offline.sh \
             (scripts/test.sh does)\n{e}"
        );
    }
    image
}

/// The py-setowire peer image, built on first use (Docker's layer cache makes later builds
/// a few seconds).
#[track_caller]
pub fn pypeer_image() -> String {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    IMAGE
        .get_or_init(build_pypeer_image)
        .clone()
        .unwrap_or_else(|e| panic!("cannot build the py-setowire peer image:\n{e}"))
}

fn build_pypeer_image() -> Result<String, String> {
    let base = base_image();
    let context = venv::target_dir().join("container-pypeer");
    let wheels = context.join("wheels");
    std::fs::create_dir_all(&wheels).map_err(|e| format!("{}: {e}", wheels.display()))?;
    // The host's pip fetches what the container's pip installs offline; the base image is
    // the host's Debian release, so the host's Python takes the same wheels.
    let pip = Command::new(venv::python())
        .args(["-I", "-m", "pip", "download", "--no-input", "--quiet", "-d"])
        .arg(&wheels)
        .arg(format!("{}=={}", venv::PACKAGE, venv::VERSION))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run pip download: {e}"))?;
    if !pip.status.success() {
        return Err(format!(
            "pip download failed: {}",
            String::from_utf8_lossy(&pip.stderr)
        ));
    }
    std::fs::copy(venv::driver_script(), context.join("setowire_driver.py"))
        .map_err(|e| format!("copy the driver: {e}"))?;
    let dockerfile = repo().join("tests/container/pypeer.Dockerfile");
    let build_arg = format!("DEBIAN_IMAGE={base}");
    let args = [
        "build",
        "--quiet",
        "--build-arg",
        &build_arg,
        "--tag",
        PYPEER_IMAGE,
        "--file",
        dockerfile.to_str().ok_or("non-UTF-8 path")?,
        context.to_str().ok_or("non-UTF-8 path")?,
    ];
    docker_within(&args, BUILD_TIMEOUT)?;
    Ok(PYPEER_IMAGE.to_owned())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A py-setowire peer in a container on `net`, driven over `docker run -i`. The client
/// process is killed first, then the container removed.
pub struct ContainerPeer {
    pub peer: ControlPeer,
    pub container: Container,
}

impl ContainerPeer {
    #[track_caller]
    pub fn spawn(net: &Network, label: &str) -> ContainerPeer {
        let image = pypeer_image();
        let container = Container {
            name: unique_name(label),
        };
        let mut cmd = Command::new(client());
        cmd.args(["run", "-i", "--rm", "--name", &container.name])
            .args(["--network", &net.name])
            .arg(image);
        let peer = ControlPeer::from_process(LineProcess::spawn_command(label, cmd));
        ContainerPeer { peer, container }
    }
}

impl std::ops::Deref for ContainerPeer {
    type Target = ControlPeer;
    fn deref(&self) -> &ControlPeer {
        &self.peer
    }
}

impl std::ops::DerefMut for ContainerPeer {
    fn deref_mut(&mut self) -> &mut ControlPeer {
        &mut self.peer
    }
}

/// Debian's docker-compose (v1.29), or `SETOWIRE_TEST_COMPOSE`.
pub fn compose_client() -> PathBuf {
    std::env::var_os("SETOWIRE_TEST_COMPOSE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-compose"))
}

/// A compose project of the test's own (`-p swc-<pid>-<n>-compose`) on one compose file
/// with the given environment; `down -v` on drop removes its containers, network and
/// volumes.
pub struct ComposeProject {
    pub name: String,
    file: PathBuf,
    env: Vec<(String, String)>,
    /// Whether a command that creates containers ran (only then is there anything to take
    /// down).
    created: std::cell::Cell<bool>,
}

impl ComposeProject {
    pub fn new(file: &Path, env: &[(&str, &str)]) -> ComposeProject {
        ComposeProject {
            name: unique_name("compose"),
            file: file.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            created: std::cell::Cell::new(false),
        }
    }

    /// `docker-compose -p NAME -f FILE ARGS` under `timeout`: stdout, or what went wrong.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        if matches!(args.first(), Some(&("up" | "run" | "create"))) {
            self.created.set(true);
        }
        let out = Command::new("timeout")
            .args(["--kill-after=5", &format!("{}", COMMAND_TIMEOUT.as_secs())])
            .arg(compose_client())
            .args(["--ansi", "never", "-p", &self.name, "-f"])
            .arg(&self.file)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("DOCKER_BUILDKIT", "1")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", compose_client().display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "docker-compose {} failed ({}):\n{}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    #[track_caller]
    pub fn run_ok(&self, args: &[&str]) -> String {
        self.run(args).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        if !self.created.get() {
            return;
        }
        if thread::panicking() {
            if let Ok(logs) = self.run(&["logs", "--no-color"]) {
                eprintln!("--- logs of compose project {} ---\n{logs}", self.name);
            }
        }
        if let Err(e) = self.run(&["down", "-v", "--remove-orphans", "--timeout", "10"]) {
            eprintln!("{e}");
        }
    }
}

/// A YAML document as JSON, parsed by PyYAML with the system's Python (Debian's
/// docker-compose depends on python3-yaml).
#[track_caller]
pub fn yaml_to_json(yaml: &str) -> serde_json::Value {
    let code = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-I", "-c", code])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run /usr/bin/python3: {e}"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin
            .write_all(yaml.as_bytes())
            .expect("write the YAML to python3");
    }
    let out = child.wait_with_output().expect("python3 output");
    assert!(
        out.status.success(),
        "YAML does not parse (python3-yaml installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python3 printed JSON")
}
