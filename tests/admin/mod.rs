//! Helpers shared by the admin listener tests: a node with its admin port, and curl.
#![allow(dead_code)]

pub mod prom;

use crate::http_client::{curl, Reply};
use crate::support::net::TestNet;
use crate::support::peer::{spawn_node, ControlPeer};

/// A node with an admin listener on a free loopback port; returns it and `http://127.0.0.1:PORT`.
#[track_caller]
pub fn node_with_admin(net: &TestNet, args: &[&str]) -> (ControlPeer, String) {
    let mut node = spawn_node(net, args);
    let port = node.ready_port("admin_port");
    (node, format!("http://127.0.0.1:{port}"))
}

/// `GET /metrics` at `admin` (as [`node_with_admin`] gives it), parsed strictly.
pub fn scrape(net: &TestNet, admin: &str) -> Vec<prom::Sample> {
    let reply = get(net, &format!("{admin}/metrics"), None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    prom::parse(&reply.text()).1
}

/// `curl` with an optional bearer token.
pub fn get(net: &TestNet, url: &str, token: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args: Vec<&str> = Vec::new();
    if let Some(auth) = &auth {
        args.extend(["-H", auth.as_str()]);
    }
    args.push(url);
    curl(net, &args)
}

/// Any method, with an optional body and token.
pub fn request(
    net: &TestNet,
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
) -> Reply {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let body = body.map(|b| String::from_utf8(b.to_vec()).expect("text body"));
    let mut args: Vec<&str> = vec!["-X", method];
    if let Some(auth) = &auth {
        args.extend(["-H", auth.as_str()]);
    }
    if let Some(body) = &body {
        args.extend([
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            body.as_str(),
        ]);
    }
    args.push(url);
    curl(net, &args)
}
