//! The `setowire-node` binary's configuration handling, end to end. Every run either prints
//! the configuration (`--print-config`, `--help`, `--version`) or is refused at start, so no
//! test binds a socket; a run that does not exit in time is killed and fails the test.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use setowire_node::config::{NodeConfig, DEFAULT_CONFIG_TOML};

const TIMEOUT: Duration = Duration::from_secs(20);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with exactly `env` as its environment.
fn node(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_setowire-node"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn setowire-node");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("setowire-node {args:?} did not exit within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Run {
        code: status.code().expect("exited normally"),
        stdout,
        stderr,
    }
}

/// A fresh file under the test target directory.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "config_cli-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn table(text: &str) -> toml::Table {
    text.parse()
        .unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"))
}

#[test]
fn print_config_without_arguments_is_the_embedded_defaults() {
    let run = node(&["--print-config"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "");
    assert_eq!(table(&run.stdout), table(DEFAULT_CONFIG_TOML));
    assert_eq!(
        NodeConfig::from_toml(&run.stdout).unwrap(),
        NodeConfig::defaults()
    );
}

#[test]
fn printed_config_reads_back_unchanged() {
    let first = node(
        &[
            "--print-config",
            "--udp-listen",
            "[::]:4000",
            "--topic",
            "00ff",
            "--bootstrap",
            "seed.example.org:49737",
            "--admin-token",
            "secret token",
            "--shards",
            "2",
            "--no-flood",
        ],
        &[],
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        !first.stdout.contains("secret token") && first.stdout.contains("# admin_token is set"),
        "secrets are never printed: {}",
        first.stdout
    );
    // Read back with the secret given again as it was, the same configuration prints.
    let path = temp_file("printed.toml", &first.stdout);
    let second = node(
        &[
            "--print-config",
            "--config",
            path.to_str().unwrap(),
            "--admin-token",
            "secret token",
        ],
        &[],
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.stdout, first.stdout);
}

#[test]
fn secrets_from_the_environment_are_not_printed_either() {
    let run = node(
        &["--print-config"],
        &[
            ("SETOWIRE_ADMIN_TOKEN", "tok-from-env"),
            ("SETOWIRE_SEED", "00ff10"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("tok-from-env"), "{}", run.stdout);
    assert!(!run.stdout.contains("00ff10"), "{}", run.stdout);
    assert!(
        run.stdout.contains("# seed is set; not shown\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn kubernetes_service_links_do_not_stop_the_node_but_typos_do() {
    let links = [
        ("SETOWIRE_NODE_PORT", "udp://10.0.0.1:49737"),
        ("SETOWIRE_NODE_PORT_49737_UDP", "udp://10.0.0.1:49737"),
        ("SETOWIRE_NODE_PORT_49737_UDP_PROTO", "udp"),
        ("SETOWIRE_NODE_SERVICE_HOST", "10.0.0.1"),
        ("SETOWIRE_NODE_SERVICE_PORT", "49737"),
    ];
    let run = node(&["--print-config"], &links);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(table(&run.stdout), table(DEFAULT_CONFIG_TOML));
    let mut with_typo = links.to_vec();
    with_typo.push(("SETOWIRE_FOO", "1"));
    let run = node(&["--print-config"], &with_typo);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("SETOWIRE_FOO"), "{}", run.stderr);
}

#[test]
fn flags_beat_environment_beats_file_beats_defaults() {
    let path = temp_file(
        "node.toml",
        "max_peers = 10\ngossip_fanout = 3\nflood = false\ntopics = [\"aa\"]\n",
    );
    let run = node(
        &[
            "--print-config",
            "--config",
            path.to_str().unwrap(),
            "--max-peers",
            "30",
        ],
        &[
            ("SETOWIRE_MAX_PEERS", "20"),
            ("SETOWIRE_GOSSIP_FANOUT", "4"),
            ("SETOWIRE_TEST_NETNS", "off"),
            ("SETOWIRE_TEST_PYTHON", "python3"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed = table(&run.stdout);
    let defaults = table(DEFAULT_CONFIG_TOML);
    assert_eq!(
        printed["max_peers"].as_integer(),
        Some(30),
        "flag beats env"
    );
    assert_eq!(
        printed["gossip_fanout"].as_integer(),
        Some(4),
        "env beats file"
    );
    assert_eq!(
        printed["flood"].as_bool(),
        Some(false),
        "file beats defaults"
    );
    assert_eq!(printed["topics"], toml::Value::Array(vec!["aa".into()]));
    assert_eq!(
        printed["relay"], defaults["relay"],
        "defaults fill the rest"
    );
    assert_eq!(printed["udp_listen"], defaults["udp_listen"]);
}

#[test]
fn config_file_from_the_environment() {
    let path = temp_file("env.toml", "max_peers = 12\n");
    let run = node(
        &["--print-config"],
        &[("SETOWIRE_CONFIG", path.to_str().unwrap())],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(table(&run.stdout)["max_peers"].as_integer(), Some(12));
}

#[test]
fn unknown_key_in_file_exits_2_naming_it() {
    let path = temp_file("typo.toml", "max_pers = 5\n");
    let run = node(
        &[
            "--udp-listen",
            "127.0.0.1:0",
            "--config",
            path.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("\"max_pers\""), "{}", run.stderr);
    assert!(run.stderr.contains("unknown key"), "{}", run.stderr);
    assert_eq!(run.stdout, "");
}

#[test]
fn invalid_value_in_env_exits_2_naming_the_key() {
    let run = node(
        &["--udp-listen", "127.0.0.1:0"],
        &[("SETOWIRE_MAX_PEERS", "abc")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "error: config key \"max_peers\": invalid value \"abc\": expected a positive integer"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("SETOWIRE_MAX_PEERS"), "{}", run.stderr);
}

#[test]
fn invalid_env_value_is_refused_even_when_a_flag_overrides_it() {
    let run = node(
        &["--print-config", "--max-peers", "5"],
        &[("SETOWIRE_MAX_PEERS", "abc")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("\"max_peers\""), "{}", run.stderr);
}

#[test]
fn unknown_prefixed_variable_exits_2_naming_it() {
    let run = node(
        &["--udp-listen", "127.0.0.1:0"],
        &[("SETOWIRE_MAX_PERS", "5")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("SETOWIRE_MAX_PERS"), "{}", run.stderr);
}

#[test]
fn bad_shards_exits_2() {
    for bad in ["0", "1025", "lots"] {
        let run = node(&["--udp-listen", "127.0.0.1:0", "--shards", bad], &[]);
        assert_eq!(run.code, 2, "--shards {bad}: {}", run.stderr);
        assert!(run.stderr.contains("\"shards\""), "{}", run.stderr);
    }
}

#[test]
fn bad_topic_and_conflicting_identity_exit_2() {
    let run = node(&["--udp-listen", "127.0.0.1:0", "--topic", "abc"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("\"topics\""), "{}", run.stderr);
    let run = node(
        &[
            "--udp-listen",
            "127.0.0.1:0",
            "--seed",
            "01",
            "--identity",
            "/nonexistent/key",
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("\"seed\""), "{}", run.stderr);
}

#[test]
fn usage_errors_exit_2_and_help_and_version_exit_0() {
    let run = node(&["--udp-listen", "127.0.0.1:0", "--no-such-flag"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = node(&["--help"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("--max-peers <N>"), "{}", run.stdout);
    assert!(run.stdout.contains("SETOWIRE_MAX_PEERS"), "{}", run.stdout);
    let run = node(&["--version"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("setowire-node "), "{}", run.stdout);
}
