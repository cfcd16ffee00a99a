//! deploy/docker-compose.yml: `docker-compose config` (Debian's docker-compose) accepts it,
//! its Grafana provisioning fits the compose file and the shipped dashboard, and the node
//! and Prometheus, brought up from locally built images (setowire-node:latest from
//! deploy/docker/build-offline.sh, Prometheus from deploy/docker/build-prometheus-offline.sh),
//! show the node's target up in Prometheus. Grafana cannot be pulled here: its part is
//! checked by structure only.
//!
//! Needs Docker and docker-compose: without them the tests fail, they are never skipped.

mod prometheus;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::docker::{node_image, yaml_to_json, ComposeProject};

/// The token the tests give the node's admin API (the node refuses a non-loopback admin
/// listener without one).
const TOKEN: &str = "compose-test-token";
/// Bound on Prometheus reporting the node's target up: its first scrape comes within one
/// 15 s scrape interval of its start.
const TARGET_UP_WITHIN: Duration = Duration::from_secs(90);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn compose_file() -> PathBuf {
    repo().join("deploy/docker-compose.yml")
}

/// The environment of a run in the tests: local images, ports on loopback, any free port.
fn test_env(prometheus_image: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SETOWIRE_ADMIN_TOKEN", TOKEN.to_owned()),
        ("SETOWIRE_IMAGE", node_image()),
        ("PROMETHEUS_IMAGE", prometheus_image.to_owned()),
        ("SETOWIRE_BIND", "127.0.0.1".to_owned()),
        ("SETOWIRE_UDP_PORT", "0".to_owned()),
        ("SETOWIRE_HTTP_PORT", "0".to_owned()),
        ("PROMETHEUS_PORT", "0".to_owned()),
        ("GRAFANA_PORT", "0".to_owned()),
    ]
}

fn project(env: &[(&'static str, String)]) -> ComposeProject {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ComposeProject::new(&compose_file(), &env)
}

/// The Prometheus image of deploy/docker/build-prometheus-offline.sh, built once per run
/// (the layer cache makes it seconds after the first time).
fn prometheus_image() -> String {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    let image = "setowire-prometheus:debian";
    IMAGE
        .get_or_init(|| {
            let script = repo().join("deploy/docker/build-prometheus-offline.sh");
            let out = Command::new("timeout")
                .arg("600")
                .arg(&script)
                .env("IMAGE", image)
                .output()
                .map_err(|e| format!("{}: {e}", script.display()))?;
            if out.status.success() {
                Ok(image.to_owned())
            } else {
                Err(format!(
                    "{} failed:\n{}{}",
                    script.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        })
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The compose file as `docker-compose config` resolves it (paths absolute, variables
/// substituted), as JSON.
fn resolved_config(project: &ComposeProject) -> Value {
    yaml_to_json(&project.run_ok(&["config"]))
}

/// The host path mounted at `target` in `service` (a bind mount of the resolved config).
#[track_caller]
fn mount_source(config: &Value, service: &str, target: &str) -> PathBuf {
    let volumes = config["services"][service]["volumes"]
        .as_array()
        .unwrap_or_else(|| panic!("{service} has no volumes"));
    volumes
        .iter()
        .filter_map(Value::as_str)
        .find_map(|v| {
            let mut parts = v.split(':');
            let (source, mounted) = (parts.next()?, parts.next()?);
            (mounted == target).then(|| PathBuf::from(source))
        })
        .unwrap_or_else(|| panic!("{service} mounts nothing at {target}: {volumes:?}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn compose_config_is_accepted_and_wants_the_admin_token() {
    let env = test_env("prom/prometheus:v2.53.0");
    let config = resolved_config(&project(&env));
    let services = config["services"].as_object().expect("services");
    for name in ["setowire-node", "prometheus", "grafana"] {
        assert!(services.contains_key(name), "no service {name}");
    }
    let node = &config["services"]["setowire-node"];
    assert_eq!(node["environment"]["SETOWIRE_ADMIN_TOKEN"], TOKEN);
    assert_eq!(
        mount_source(&config, "setowire-node", "/var/lib/setowire-node").to_str(),
        Some("setowire-state"),
        "the state directory is a named volume"
    );

    // Without a token the node would not start: compose says so before creating anything.
    let without: Vec<_> = env
        .into_iter()
        .filter(|(k, _)| *k != "SETOWIRE_ADMIN_TOKEN")
        .collect();
    let err = project(&without)
        .run(&["config"])
        .expect_err("config without SETOWIRE_ADMIN_TOKEN");
    assert!(err.contains("SETOWIRE_ADMIN_TOKEN"), "{err}");
}

#[test]
fn grafana_provisioning_fits_the_compose_file_and_the_dashboard() {
    let config = resolved_config(&project(&test_env("prom/prometheus:v2.53.0")));
    let provisioning = mount_source(&config, "grafana", "/etc/grafana/provisioning");
    assert_eq!(provisioning, repo().join("deploy/grafana/provisioning"));

    // The data source: the compose service `prometheus` on the port it listens on.
    let datasources = yaml_to_json(&read(&provisioning.join("datasources/prometheus.yml")));
    assert_eq!(datasources["apiVersion"], 1);
    let list = datasources["datasources"].as_array().expect("datasources");
    assert_eq!(list.len(), 1, "{list:?}");
    let source = &list[0];
    let listen = config["services"]["prometheus"]["command"]
        .as_array()
        .expect("prometheus command")
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix("--web.listen-address="))
        .expect("prometheus --web.listen-address");
    let port = listen.rsplit(':').next().expect("a port");
    assert_eq!(source["url"], format!("http://prometheus:{port}").as_str());
    assert_eq!(source["isDefault"], true);

    // The dashboard picks its data source by type through its `datasource` variable.
    let dashboards_provider = yaml_to_json(&read(&provisioning.join("dashboards/setowire.yml")));
    assert_eq!(dashboards_provider["apiVersion"], 1);
    let provider = &dashboards_provider["providers"][0];
    assert_eq!(provider["type"], "file");
    let path = provider["options"]["path"].as_str().expect("provider path");
    let dashboards = mount_source(&config, "grafana", path);
    let dashboard: Value = serde_json::from_str(&read(&dashboards.join("setowire-node.json")))
        .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "setowire-node");
    let variable = dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a data source variable");
    assert_eq!(variable["query"], source["type"]);

    // Prometheus reads its scrape config and the alert rules it names from the mounts.
    let scrape = mount_source(&config, "prometheus", "/etc/prometheus/prometheus.yml");
    let scrape_config = yaml_to_json(&read(&scrape));
    for rules in scrape_config["rule_files"].as_array().expect("rule_files") {
        let rules = rules.as_str().expect("a rule file path");
        let source = mount_source(&config, "prometheus", &format!("/etc/prometheus/{rules}"));
        assert!(source.is_file(), "{}", source.display());
    }
    let job = &scrape_config["scrape_configs"][0];
    // The alert rules select the job by this name.
    assert_eq!(job["job_name"], "setowire-node");
    let admin_port = config["services"]["setowire-node"]["environment"]["SETOWIRE_ADMIN_LISTEN"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .expect("SETOWIRE_ADMIN_LISTEN");
    assert_eq!(
        job["static_configs"][0]["targets"][0],
        format!("setowire-node:{admin_port}").as_str()
    );
}

#[test]
fn prometheus_scrapes_the_node_in_compose() {
    let project = project(&test_env(&prometheus_image()));
    // Prometheus checks its own configuration, in the layout compose mounts it in.
    let checked = project.run_ok(&[
        "run",
        "--rm",
        "--no-deps",
        "--entrypoint",
        "promtool",
        "prometheus",
        "check",
        "config",
        "/etc/prometheus/prometheus.yml",
    ]);
    assert!(checked.contains("SUCCESS"), "{checked}");

    project.run_ok(&["up", "-d", "--no-build", "setowire-node", "prometheus"]);
    let published = project.run_ok(&["port", "prometheus", "9090"]);
    let addr: std::net::SocketAddr = published
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("docker-compose port prometheus 9090: {published:?}: {e}"));
    assert!(addr.ip().is_loopback(), "{addr}");

    let started = Instant::now();
    let request =
        format!("GET /api/v1/targets HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut last = String::new();
    loop {
        if let Ok((200, body)) = prometheus::http_exchange(addr.port(), request.as_bytes()) {
            let targets: Value = serde_json::from_slice(&body).expect("targets JSON");
            let node = targets["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["labels"]["job"] == "setowire-node")
                .cloned();
            if let Some(t) = node {
                if t["health"] == "up" {
                    assert_eq!(t["labels"]["instance"], "setowire-node:9737");
                    eprintln!("compose up -> node target up: {:?}", started.elapsed());
                    return;
                }
                last = t.to_string();
            }
        }
        assert!(
            started.elapsed() < TARGET_UP_WITHIN,
            "the node's target is not up after {TARGET_UP_WITHIN:?}: {last}"
        );
        thread::sleep(Duration::from_millis(500));
    }
}
