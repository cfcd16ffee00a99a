//! A child process speaking JSON lines: commands on stdin, events on stdout.
//!
//! A reader thread turns every stdout line into a `serde_json::Value` (a line
//! that is not a JSON object becomes `{"event":"invalid_line","line":...}`);
//! another thread collects stderr into a bounded buffer that is printed when a
//! wait fails or when the process is dropped during a panic. The child is killed
//! on drop.
//!
//! Every event received is kept in order. [`LineProcess::wait_event`] returns the
//! earliest event, old or new, that matches its predicate and was not already
//! returned by an earlier wait, so an event that arrived while the test was
//! waiting for something else is not lost, and waiting twice for "a data event"
//! yields two different events.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::net::TestNet;

/// Bytes of stderr kept (the tail).
const STDERR_KEEP: usize = 256 * 1024;
/// Events shown in a failure report (the tail).
const EVENTS_SHOWN: usize = 60;

pub struct LineProcess {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Value>,
    stdout_open: bool,
    events: Vec<Value>,
    taken: Vec<bool>,
    stderr: Arc<Mutex<Vec<u8>>>,
    reported: bool,
}

impl LineProcess {
    /// Spawns `program args...` inside `net`.
    #[track_caller]
    pub fn spawn<S: AsRef<OsStr>>(
        net: &TestNet,
        label: &str,
        program: impl AsRef<OsStr>,
        args: &[S],
    ) -> LineProcess {
        let mut cmd = net.command(program);
        cmd.args(args);
        LineProcess::spawn_command(label, cmd)
    }

    /// Spawns a prepared command (build it with [`TestNet::command`] so that it
    /// runs inside the test's network). stdin/stdout/stderr are overridden.
    #[track_caller]
    pub fn spawn_command(label: &str, mut cmd: Command) -> LineProcess {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{label}: cannot spawn {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stdin = child.stdin.take();

        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name(format!("{label}-stdout"))
            .spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end();
                    if line.is_empty() {
                        continue;
                    }
                    let ev = match serde_json::from_str::<Value>(line) {
                        Ok(v) if v.is_object() => v,
                        _ => json!({"event": "invalid_line", "line": line}),
                    };
                    if tx.send(ev).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn stdout reader");

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        thread::Builder::new()
            .name(format!("{label}-stderr"))
            .spawn(move || {
                let mut chunk = [0u8; 8192];
                loop {
                    match stderr_pipe.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut buf = sink.lock().unwrap_or_else(|p| p.into_inner());
                            buf.extend_from_slice(&chunk[..n]);
                            if buf.len() > STDERR_KEEP {
                                let cut = buf.len() - STDERR_KEEP;
                                buf.drain(..cut);
                            }
                        }
                    }
                }
            })
            .expect("spawn stderr reader");

        LineProcess {
            label: label.to_string(),
            child,
            stdin,
            rx,
            stdout_open: true,
            events: Vec::new(),
            taken: Vec::new(),
            stderr,
            reported: false,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one command line to the child's stdin.
    #[track_caller]
    pub fn send(&mut self, cmd: &Value) {
        let mut line = serde_json::to_vec(cmd).expect("serialize command");
        line.push(b'\n');
        let res = match self.stdin.as_mut() {
            Some(stdin) => stdin.write_all(&line).and_then(|_| stdin.flush()),
            None => Err(std::io::Error::other("stdin already closed")),
        };
        if let Err(e) = res {
            self.fail(&format!("cannot send {cmd}: {e}"));
        }
    }

    /// Writes one raw line (a newline is appended), e.g. to test malformed input.
    #[track_caller]
    pub fn send_line(&mut self, line: &str) {
        let res = match self.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(format!("{line}\n").as_bytes())
                .and_then(|_| stdin.flush()),
            None => Err(std::io::Error::other("stdin already closed")),
        };
        if let Err(e) = res {
            self.fail(&format!("cannot send line {line:?}: {e}"));
        }
    }

    /// Closes stdin (end of file for the child).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits up to `timeout` for an event matching `pred` that no earlier wait
    /// returned; fails the test (with stderr and the events seen) otherwise.
    #[track_caller]
    pub fn wait_event(&mut self, timeout: Duration, pred: impl FnMut(&Value) -> bool) -> Value {
        match self.try_wait_event(timeout, pred) {
            Some(ev) => ev,
            None => {
                let why = if self.stdout_open {
                    format!("timed out after {timeout:?} waiting for an event")
                } else {
                    "the process closed stdout while a test was waiting for an event".to_string()
                };
                self.fail(&why)
            }
        }
    }

    /// Like [`wait_event`](Self::wait_event) but returns `None` on timeout (or
    /// when the process has ended and no event matches).
    pub fn try_wait_event(
        &mut self,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        self.pump();
        let mut next = 0;
        loop {
            while next < self.events.len() {
                if !self.taken[next] && pred(&self.events[next]) {
                    self.taken[next] = true;
                    return Some(self.events[next].clone());
                }
                next += 1;
            }
            if !self.stdout_open {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            match self.rx.recv_timeout(deadline - now) {
                Ok(ev) => self.push(ev),
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => self.stdout_open = false,
            }
        }
    }

    /// Fails the test if an event matching `pred` (and not already returned by a
    /// wait) is seen within `window`. Returns after the full window otherwise.
    #[track_caller]
    pub fn assert_no_event(&mut self, window: Duration, pred: impl FnMut(&Value) -> bool) {
        // `None`: the window is over, or the process ended and nothing more can arrive.
        if let Some(ev) = self.try_wait_event(window, pred) {
            self.fail(&format!("unexpected event within {window:?}: {ev}"));
        }
    }

    /// Every event received so far (including ones already returned by waits).
    pub fn events_so_far(&mut self) -> Vec<Value> {
        self.pump();
        self.events.clone()
    }

    /// Collected stderr (the last 256 KiB).
    pub fn stderr_text(&self) -> String {
        let buf = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Exit status if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for the process to exit; fails the test otherwise.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "still running {timeout:?} after being asked to exit"
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A report of the process state: exit status, recent events, stderr.
    pub fn report(&mut self) -> String {
        self.pump();
        let status = match self.try_status() {
            Some(s) => format!("exited: {s}"),
            None => "still running".to_string(),
        };
        let skip = self.events.len().saturating_sub(EVENTS_SHOWN);
        let mut events = String::new();
        for ev in &self.events[skip..] {
            events.push_str("  ");
            events.push_str(&ev.to_string());
            events.push('\n');
        }
        format!(
            "[{label}] {status}\n[{label}] events ({n} total, last {shown}):\n{events}\
             [{label}] stderr:\n{stderr}",
            label = self.label,
            n = self.events.len(),
            shown = self.events.len() - skip,
            stderr = self.stderr_text(),
        )
    }

    #[track_caller]
    fn fail(&mut self, why: &str) -> ! {
        let report = self.report();
        self.reported = true;
        panic!("{}: {why}\n{report}", self.label)
    }

    fn pump(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            self.push(ev);
        }
    }

    fn push(&mut self, ev: Value) {
        self.events.push(ev);
        self.taken.push(false);
    }
}

impl Drop for LineProcess {
    fn drop(&mut self) {
        self.stdin = None;
        self.kill();
        if thread::panicking() && !self.reported {
            // Let the stderr reader catch up with what the process wrote last.
            thread::sleep(Duration::from_millis(50));
            let report = self.report();
            eprintln!(
                "---- {} (dropped during a failing test) ----\n{report}",
                self.label
            );
        }
    }
}
