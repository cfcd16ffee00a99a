//! `setowire-node health`, the container image's health check, against a real node: exit 0
//! while the node's admin listener answers /healthz, 1 when nothing (or something that is not
//! the node) listens there, when the admin listener is off, and once the node is gone.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Output;

use support::net::TestNet;
use support::peer::spawn_node;

/// `setowire-node health ARGS` inside `net`, with the environment cleared of SETOWIRE_*
/// variables the test runner may have.
fn health(net: &TestNet, args: &[&str]) -> Output {
    let mut cmd = net.command(env!("CARGO_BIN_EXE_setowire-node"));
    cmd.arg("health").args(args);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SETOWIRE_") {
            cmd.env_remove(name);
        }
    }
    cmd.output().expect("run setowire-node health")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn healthy_while_the_node_runs_unhealthy_after() {
    let net = TestNet::new();
    let mut node = spawn_node(&net, &[]);
    let port = node.ready_port("admin_port");
    let admin = format!("127.0.0.1:{port}");

    let out = health(&net, &["--admin-listen", &admin]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("answered 200"), "{}", text(&out));
    // The same address given the way a container gives it: in the environment, on the
    // wildcard address (asked on loopback).
    let mut cmd = net.command(env!("CARGO_BIN_EXE_setowire-node"));
    cmd.arg("health")
        .env("SETOWIRE_ADMIN_LISTEN", format!("0.0.0.0:{port}"))
        .env("SETOWIRE_ADMIN_TOKEN", "health-probe-test");
    let out = cmd.output().expect("run setowire-node health");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let status = node.quit();
    assert!(status.success(), "{status}");
    let out = health(&net, &["--admin-listen", &admin]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("unhealthy"), "{}", text(&out));
}

#[test]
fn ready_until_the_node_drains_while_still_alive() {
    let net = TestNet::new();
    let mut node = spawn_node(&net, &["--shutdown-grace-secs", "3"]);
    let admin = format!("127.0.0.1:{}", node.ready_port("admin_port"));
    let out = health(&net, &["--ready", "--admin-listen", &admin]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("/readyz answered 200"),
        "{}",
        text(&out)
    );

    // SIGTERM: during the grace the node still serves (alive) but is no longer ready.
    // SAFETY: kill(2) on the node's pid, a process this test spawned and still owns.
    let rc = unsafe { libc::kill(node.proc.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let ready = health(&net, &["--ready", "--admin-listen", &admin]);
    assert_eq!(ready.status.code(), Some(1), "{}", text(&ready));
    assert!(text(&ready).contains("503"), "{}", text(&ready));
    let alive = health(&net, &["--admin-listen", &admin]);
    assert_eq!(alive.status.code(), Some(0), "{}", text(&alive));
}

#[test]
fn unhealthy_when_it_cannot_ask_the_node() {
    let net = TestNet::new();
    let out = health(&net, &["--admin-listen", "off"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("admin_listen is off"), "{}", text(&out));

    let out = health(&net, &["--admin-listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // A bad configuration exits 1 too: Docker reserves 2.
    let out = health(&net, &["--max-peers", "many"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // Something that is not the node answers on the port.
    let (listener, port) = net.run_inside(|| {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        (l, port)
    });
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
    });
    let out = health(&net, &["--admin-listen", &format!("127.0.0.1:{port}")]);
    server.join().expect("server thread");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("503"), "{}", text(&out));
}
