//! Code shared by the UDP benchmarks: a bare echo server on the node's I/O backends and a
//! closed-loop PING client. Each benchmark uses only part of it.
#![allow(dead_code)]

pub mod client;
pub mod echo;

/// Whether criterion measures (`cargo bench`) rather than runs each benchmark once as a
/// smoke test (`cargo test --benches`, `cargo bench -- --test`): the same rule criterion
/// applies to its command line.
pub fn bench_mode() -> bool {
    let mut bench = false;
    let mut test = false;
    for arg in std::env::args() {
        match arg.as_str() {
            "--bench" => bench = true,
            "--test" => test = true,
            _ => {}
        }
    }
    bench && !test
}
