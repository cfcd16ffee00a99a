//! Per-test network isolation.
//!
//! As root, every [`TestNet`] is a fresh network namespace `swn-<pid>-<n>` holding
//! only an up loopback interface; processes of the test run inside it through
//! `ip netns exec`, so they cannot reach (or be reached from) anything else, and
//! parallel tests cannot see each other. The namespace is deleted on drop, and
//! namespaces left behind by test processes that no longer exist are swept the
//! first time a test binary creates one.
//!
//! Not root: processes share the host's loopback. Either way tests address peers
//! only at 127.0.0.1.
//!
//! `SETOWIRE_TEST_NETNS=off` forces the host-loopback mode even as root (for
//! containers that are root but may not create namespaces).

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static SWEEP: Once = Once::new();

pub struct TestNet {
    ns: Option<String>,
}

impl TestNet {
    #[track_caller]
    pub fn new() -> TestNet {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let disabled = std::env::var("SETOWIRE_TEST_NETNS").is_ok_and(|v| v == "off");
        if !root || disabled {
            return TestNet { ns: None };
        }
        SWEEP.call_once(sweep_stale_namespaces);
        let name = format!(
            "swn-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let hint = "(set SETOWIRE_TEST_NETNS=off to run on the host loopback instead)";
        ip(&["netns", "add", &name])
            .unwrap_or_else(|e| panic!("cannot create network namespace {name}: {e}\n{hint}"));
        let net = TestNet { ns: Some(name) };
        if let Err(e) = net.run(&["ip", "link", "set", "lo", "up"]) {
            panic!("cannot bring lo up in {}: {e}", net.describe());
        }
        net
    }

    /// The namespace name, or `None` on the host loopback.
    pub fn namespace(&self) -> Option<&str> {
        self.ns.as_deref()
    }

    pub fn is_isolated(&self) -> bool {
        self.ns.is_some()
    }

    pub fn describe(&self) -> String {
        match &self.ns {
            Some(ns) => format!("netns {ns}"),
            None => "host loopback".to_string(),
        }
    }

    /// A `Command` that runs `program` inside this network.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Runs `f` on a thread that has joined this network (a network namespace is a
    /// per-thread property), so sockets it opens live there.
    pub fn run_inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    if let Some(ns) = &self.ns {
                        let path = format!("/var/run/netns/{ns}");
                        let file = std::fs::File::open(&path)
                            .unwrap_or_else(|e| panic!("opening {path}: {e}"));
                        // SAFETY: setns on a valid namespace fd affects only this thread.
                        let rc = unsafe {
                            libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET)
                        };
                        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                    }
                    f()
                })
                .join()
                .expect("the closure run inside the namespace panicked")
        })
    }

    /// Runs a short command inside this network and returns its stdout.
    pub fn run(&self, argv: &[&str]) -> Result<String, String> {
        let (program, args) = argv.split_first().expect("empty argv");
        let mut cmd = self.command(program);
        cmd.args(args);
        finish(cmd.stdin(Stdio::null()).output(), argv)
    }
}

impl Default for TestNet {
    fn default() -> Self {
        TestNet::new()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if let Some(ns) = self.ns.take() {
            if let Err(e) = ip(&["netns", "delete", &ns]) {
                eprintln!("warning: cannot delete network namespace {ns}: {e}");
            }
        }
    }
}

fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).stdin(Stdio::null()).output();
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    finish(out, &argv)
}

fn finish(out: std::io::Result<Output>, argv: &[&str]) -> Result<String, String> {
    let out = out.map_err(|e| format!("`{}`: {e}", argv.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}`: {}: {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes `swn-<pid>-<n>` namespaces whose creating process is gone.
fn sweep_stale_namespaces() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    let me = std::process::id();
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix("swn-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != me && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "delete", name]);
        }
    }
}
