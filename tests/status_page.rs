//! The status page at `/` on the admin listener, rendered by headless Chromium against a node
//! with a py-setowire 0.1.0 peer connected: the DOM shows the node's live id and one peer, and
//! a screenshot is produced. Set `STATUS_PAGE_SCREENSHOT=path.png` to keep the screenshot.

#[macro_use]
mod support;
mod admin;
mod http_client;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use admin::{get, node_with_admin};
use support::net::TestNet;
use support::peer::PyPeer;

fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("headless Chromium is needed (Debian package chromium; .ci/run installs it)")
}

fn run_chromium(net: &TestNet, profile: &Path, extra: &[&str], url: &str) -> Output {
    let mut cmd = net.command(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .env("HOME", profile)
    .stdin(Stdio::null());
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("chromium output")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("setowire-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn status_page_renders_live_node_state() {
    let net = TestNet::new();
    let (mut node, base) = node_with_admin(&net, &["--shards", "2"]);
    let mut py = PyPeer::spawn(&net, &[]).into_inner();
    py.dial_peer(&node);
    node.wait_connection(&py.id8);
    py.wait_connection(&node.id8);
    // The page is self-contained: no external scripts, styles or fonts.
    let page = get(&net, &format!("{base}/"), None);
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let html = page.text();
    for external in ["http://", "https://", "src=\"//", "@import"] {
        assert!(!html.contains(external), "the page loads {external}");
    }
    // Wait until the shards published the peer.
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&net, &format!("{base}/api/v1/status"), None).json()["peers"] != 1 {
        assert!(Instant::now() < deadline, "peer count never 1");
        std::thread::sleep(Duration::from_millis(100));
    }

    let profile = temp_dir("chromium-dom");
    let dom = run_chromium(&net, &profile, &["--dump-dom"], &format!("{base}/"));
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom_text.contains(&node.id40),
        "the DOM lacks the node id; stderr: {}\n{dom_text}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(
        dom_text.contains("id=\"peers\">1<"),
        "the DOM does not show 1 peer:\n{dom_text}"
    );
    assert!(
        dom_text.contains(&py.id8),
        "the peer table lacks the peer:\n{dom_text}"
    );
    assert!(
        dom_text.contains("2 / 2"),
        "shard health missing:\n{dom_text}"
    );

    let shots = temp_dir("chromium-shot");
    let png = std::env::var_os("STATUS_PAGE_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| shots.join("status.png"));
    let _ = std::fs::remove_file(&png);
    let out = run_chromium(
        &net,
        &shots,
        &[&format!("--screenshot={}", png.display())],
        &format!("{base}/"),
    );
    let bytes = std::fs::read(&png).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000);
    let _ = std::fs::remove_dir_all(&profile);
}

#[test]
fn status_page_asks_for_the_token() {
    let net = TestNet::new();
    let (_node, base) = node_with_admin(&net, &["--admin-token", "page-token"]);
    let profile = temp_dir("chromium-token");
    let dom = run_chromium(&net, &profile, &["--dump-dom"], &format!("{base}/"));
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom_text.contains("id=\"login\" style=\"display: block;\""),
        "no token prompt:\n{dom_text}"
    );
    assert!(dom_text.contains("token required"), "{dom_text}");
    let _ = std::fs::remove_dir_all(&profile);
}
