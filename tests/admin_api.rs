//! The admin API on the admin listener, driven with curl against a node that has a real
//! py-setowire 0.1.0 peer connected: health, status, peers (paging, lookups, errors), DHT,
//! config redaction, broadcast, store/fetch, disconnect, bearer-token auth, the refusal to
//! expose the API without a token, and the OpenAPI document covering every route.

#[macro_use]
mod support;
mod admin;
mod http_client;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use admin::{get, node_with_admin, request};
use support::net::TestNet;
use support::peer::{spawn_node, PyPeer};
use support::{pattern_bytes, TIMEOUT};

#[track_caller]
fn json_ok(reply: &http_client::Reply) -> Value {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    reply.json()
}

#[track_caller]
fn json_error(reply: &http_client::Reply, status: u16) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

#[test]
fn api_reports_and_controls_the_node() {
    let net = TestNet::new();
    let (mut node, base) = node_with_admin(&net, &["--shards", "2", "--seed", "00ff00ff"]);
    let mut py = PyPeer::spawn(&net, &[]).into_inner();
    py.dial_peer(&node);
    node.wait_connection(&py.id8);
    py.wait_connection(&node.id8);

    let health = get(&net, &format!("{base}/healthz"), None);
    assert_eq!((health.status, health.text().trim()), (200, "ok"));
    assert_eq!(get(&net, &format!("{base}/readyz"), None).status, 200);

    let status = json_ok(&get(&net, &format!("{base}/api/v1/status"), None));
    assert_eq!(status["id"], node.id40.as_str());
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["shard_count"], 2);
    assert_eq!(status["shards"].as_array().unwrap().len(), 2);
    assert!(["io_uring", "mmsg"].contains(&status["io_backend"].as_str().unwrap()));
    assert!(status["listeners"]["admin"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(status["uptime_secs"].as_f64().unwrap() >= 0.0);
    // The shards publish their counters every 100 ms.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let status = json_ok(&get(&net, &format!("{base}/api/v1/status"), None));
        if status["peers"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "peer count never 1: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Peers, paging and lookups.
    let list = json_ok(&get(&net, &format!("{base}/api/v1/peers"), None));
    assert_eq!(list["total"], 1, "{list}");
    let peer = &list["peers"][0];
    assert_eq!(peer["id"], py.id40.as_str(), "{list}");
    assert_eq!(peer["id8"], py.id8.as_str());
    assert!(peer["shard"].as_u64().unwrap() < 2);
    assert!(peer["address"]
        .as_str()
        .unwrap()
        .ends_with(&format!(":{}", py.port)));
    for key in [
        "rtt_ms",
        "in_mesh",
        "last_seen_secs_ago",
        "bytes_in",
        "bytes_out",
    ] {
        assert!(!peer[key].is_null(), "{key} missing: {peer}");
    }
    let page = json_ok(&get(
        &net,
        &format!("{base}/api/v1/peers?offset=1&limit=5"),
        None,
    ));
    assert_eq!(
        (page["total"].as_u64(), page["offset"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(page["peers"].as_array().unwrap().len(), 0);
    json_error(
        &get(&net, &format!("{base}/api/v1/peers?limit=0"), None),
        400,
    );
    json_error(
        &get(&net, &format!("{base}/api/v1/peers?offset=x"), None),
        400,
    );
    let one = json_ok(&get(&net, &format!("{base}/api/v1/peers/{}", py.id8), None));
    assert_eq!(one["id"], py.id40.as_str());
    let one = json_ok(&get(
        &net,
        &format!("{base}/api/v1/peers/{}", py.id40),
        None,
    ));
    assert_eq!(one["id8"], py.id8.as_str());
    json_error(&get(&net, &format!("{base}/api/v1/peers/xyz"), None), 400);
    let unknown = "0123456789abcdef";
    json_error(
        &get(&net, &format!("{base}/api/v1/peers/{unknown}"), None),
        404,
    );
    json_error(&get(&net, &format!("{base}/api/v1/nothing"), None), 404);
    json_error(&get(&net, &format!("{base}/nothing"), None), 404);

    // DHT and config.
    let dht = json_ok(&get(&net, &format!("{base}/api/v1/dht"), None));
    assert_eq!(dht["id"].as_str().map(str::len), Some(40), "{dht}");
    assert!(dht["routing"].is_array());
    let config = json_ok(&get(&net, &format!("{base}/api/v1/config"), None));
    assert_eq!(config["seed"], "<redacted>", "{config}");
    assert_eq!(config["admin_token"], "");
    assert_eq!(config["shards"], 2);
    assert!(!config.to_string().contains("00ff00ff"));

    // Broadcast reaches the py-setowire peer.
    let payload = pattern_bytes(7, 24);
    let text: String = payload.iter().map(|b| format!("{:02x}", b)).collect();
    let sent = json_ok(&request(
        &net,
        "POST",
        &format!("{base}/api/v1/broadcast"),
        Some(text.as_bytes()),
        None,
    ));
    assert_eq!(sent["peers"], 1, "{sent}");
    py.wait_data_eq(&node.id8, text.as_bytes());
    json_error(
        &request(
            &net,
            "POST",
            &format!("{base}/api/v1/broadcast"),
            Some(b""),
            None,
        ),
        400,
    );

    // Store, then fetch it back; a key nobody has times out.
    let stored = json_ok(&request(
        &net,
        "PUT",
        &format!("{base}/api/v1/store/greeting"),
        Some(b"hello there"),
        None,
    ));
    assert_eq!(stored["bytes"], 11);
    let fetched = get(&net, &format!("{base}/api/v1/fetch/greeting"), None);
    assert_eq!(fetched.status, 200, "{fetched:?}");
    assert_eq!(fetched.body, b"hello there");
    // The py-setowire peer got the HAVE and can fetch it from the node too.
    assert_eq!(
        py.fetch("greeting", 10_000).as_deref(),
        Ok(&b"hello there"[..])
    );
    let missing = get(
        &net,
        &format!("{base}/api/v1/fetch/nobody-has-this?timeout_ms=300"),
        None,
    );
    json_error(&missing, 504);
    json_error(
        &get(&net, &format!("{base}/api/v1/fetch/k?timeout_ms=abc"), None),
        400,
    );
    let long_key = "k".repeat(300);
    json_error(
        &request(
            &net,
            "PUT",
            &format!("{base}/api/v1/store/{long_key}"),
            Some(b"v"),
            None,
        ),
        400,
    );

    // Disconnect sends GOAWAY.
    let gone = json_ok(&request(
        &net,
        "DELETE",
        &format!("{base}/api/v1/peers/{}", py.id8),
        None,
        None,
    ));
    assert_eq!(gone["disconnected"], py.id8.as_str());
    py.wait_disconnect(&node.id8);
    json_error(
        &request(
            &net,
            "DELETE",
            &format!("{base}/api/v1/peers/{unknown}"),
            None,
            None,
        ),
        404,
    );
}

#[test]
fn a_token_guards_the_api_only() {
    let net = TestNet::new();
    let token = "s3cret-token";
    let (_node, base) = node_with_admin(&net, &["--admin-token", token]);
    let url = format!("{base}/api/v1/status");
    let missing = get(&net, &url, None);
    json_error(&missing, 401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    json_error(&get(&net, &url, Some("wrong")), 401);
    json_error(&get(&net, &url, Some("s3cret-token-and-more")), 401);
    json_error(&get(&net, &format!("{base}/api/v1/peers"), None), 401);
    json_error(
        &get(&net, &format!("{base}/api/v1/openapi.json"), None),
        401,
    );
    let ok = json_ok(&get(&net, &url, Some(token)));
    assert!(ok["id"].is_string());
    let config = json_ok(&get(&net, &format!("{base}/api/v1/config"), Some(token)));
    assert_eq!(config["admin_token"], "<redacted>");
    assert!(!config.to_string().contains(token));
    // Health, metrics and the page itself stay open (the page asks for the token).
    assert_eq!(get(&net, &format!("{base}/healthz"), None).status, 200);
    assert_eq!(get(&net, &format!("{base}/metrics"), None).status, 200);
    assert_eq!(get(&net, &format!("{base}/"), None).status, 200);
}

#[test]
fn the_admin_listener_can_be_turned_off() {
    let net = TestNet::new();
    let mut node = spawn_node(&net, &["--admin-listen", "off"]);
    let ready = node.ready_event();
    assert!(ready["admin_port"].is_null(), "{ready}");
}

#[test]
fn refuses_to_expose_the_api_without_a_token() {
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let out = Command::new(env!("CARGO_BIN_EXE_setowire-node"))
            .args(["--udp-listen", "127.0.0.1:0", "--http-listen", "off"])
            .args(["--admin-listen", listen])
            .env_remove("SETOWIRE_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("run setowire-node");
        assert_eq!(out.status.code(), Some(2), "{listen}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("admin_listen") && stderr.contains("admin_token"),
            "{stderr}"
        );
    }
}

/// Every route the admin router serves is in the OpenAPI document, with its methods.
#[test]
fn openapi_lists_every_route() {
    let source = include_str!("../src/admin/mod.rs");
    let doc: Value = serde_json::from_str(include_str!("../assets/openapi.json")).unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    let mut seen = 0;
    for line in source.lines() {
        let Some(rest) = line.trim().strip_prefix(".route(\"") else {
            continue;
        };
        let (path, handlers) = rest.split_once('"').unwrap();
        let entry = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in openapi.json"));
        for method in ["get", "post", "put", "delete", "patch"] {
            let routed = handlers.contains(&format!("{method}("))
                || handlers.contains(&format!(".{method}("));
            assert_eq!(
                routed,
                entry.get(method).is_some(),
                "{method} {path}: router and openapi.json disagree"
            );
        }
        seen += 1;
    }
    assert!(seen >= 13, "found only {seen} routes");
    assert_eq!(
        paths.len(),
        seen,
        "openapi.json lists paths the router does not serve"
    );
}
