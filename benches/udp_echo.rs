//! The I/O floor: PING-sized requests (29 B) answered with 21 B replies by a server thread
//! on each backend, over loopback. The client (this thread) keeps a bounded number of
//! requests in flight and uses sendmmsg/recvmmsg in batches of 32, so what is measured is
//! the server's datagrams through its backend, not the client's syscalls. Server and client
//! live in `support/`, shared with the `node_ping` benchmark.
//!
//! Criterion reports each backend's throughput (elements = replies) in one run, and a
//! summary line puts the two side by side.

mod support;

use std::cell::Cell;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use setowire_node::io::BackendChoice;

use support::client::Client;
use support::echo::Server;

fn udp_echo(c: &mut Criterion) {
    let mut group = c.benchmark_group("udp_echo");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut summary = Vec::new();
    for choice in [BackendChoice::IoUring, BackendChoice::Mmsg] {
        let Some(server) = Server::start(choice) else {
            continue;
        };
        let mut client = Client::new(server.addr, 1);
        let (replies, time) = (Cell::new(0u64), Cell::new(Duration::ZERO));
        group.bench_function(choice.to_string(), |b| {
            b.iter_custom(|iters| {
                let took = client.run(iters);
                replies.set(replies.get() + iters);
                time.set(time.get() + took);
                took
            })
        });
        let stats = server.stop();
        if replies.get() < 10_000 {
            continue;
        }
        let rate = replies.get() as f64 / time.get().as_secs_f64().max(1e-9);
        summary.push(format!(
            "{choice}: {rate:.0} replies/s (client saw {} lost; server sent {} with {} errors)",
            client.stats().lost,
            stats.datagrams_sent,
            stats.send_errors.total()
        ));
    }
    group.finish();
    // `cargo test --benches` runs each benchmark once: too few replies for a rate.
    if !summary.is_empty() {
        println!("udp_echo summary: {}", summary.join(" | "));
    }
}

criterion_group!(benches, udp_echo);
criterion_main!(benches);
