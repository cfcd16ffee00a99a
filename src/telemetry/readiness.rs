//! Whether the node is ready for traffic, as `/readyz` answers: every shard running and
//! publishing, no supervised thread failed, and the node neither stopping nor draining (a
//! stop signal came and the node serves out its shutdown grace). A stalled shard (see
//! [`STALL_AFTER`]) makes the node unready until its loop publishes again; the node goes on
//! running, for the shard may recover and the other shards still serve their peers.

use std::time::Instant;

use super::{NodeMetrics, ShardHealth, STALL_AFTER};
use crate::supervisor::{Failure, Supervisor};

/// Why the node is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// A thread the node cannot run without failed; the node is on its way out.
    #[error("{0}")]
    Failed(Failure),
    #[error("the node is stopping")]
    Stopping,
    #[error("shards not running: {0:?}")]
    ShardsDown(Vec<usize>),
    /// Running shards whose loops have not come round for [`STALL_AFTER`] or more.
    #[error("shards stalled (loop stuck for {secs}s or more): {0:?}", secs = STALL_AFTER.as_secs())]
    ShardsStalled(Vec<usize>),
}

pub fn check(metrics: &NodeMetrics, supervisor: &Supervisor, now: Instant) -> Result<(), NotReady> {
    if let Some(failure) = supervisor.failure() {
        return Err(NotReady::Failed(failure.clone()));
    }
    if supervisor.is_stopping() || supervisor.is_draining() {
        return Err(NotReady::Stopping);
    }
    let (mut down, mut stalled) = (Vec::new(), Vec::new());
    for (i, shard) in metrics.shards.iter().enumerate() {
        match shard.health(metrics.epoch, now) {
            ShardHealth::Running => {}
            ShardHealth::Stalled(_) => stalled.push(i),
            ShardHealth::Starting | ShardHealth::Stopped => down.push(i),
        }
    }
    if !down.is_empty() {
        Err(NotReady::ShardsDown(down))
    } else if !stalled.is_empty() {
        Err(NotReady::ShardsStalled(stalled))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{BackendKind, IoStats};
    use crate::supervisor::Cause;
    use crate::telemetry::LoopStats;
    use setowire_core::swarm::stats::Stats;
    use std::time::Duration;

    fn publishing_node(shards: usize) -> NodeMetrics {
        let metrics = NodeMetrics::new(shards, BackendKind::Mmsg, 10, Instant::now());
        for shard in &metrics.shards {
            shard.publish(
                metrics.epoch,
                Instant::now(),
                &Stats::default(),
                &IoStats::default(),
                LoopStats::default(),
            );
        }
        metrics
    }

    #[test]
    fn ready_while_every_shard_publishes() {
        let metrics = publishing_node(2);
        assert_eq!(check(&metrics, &Supervisor::new(), Instant::now()), Ok(()));
    }

    #[test]
    fn a_shard_that_never_published_or_stopped_is_down() {
        let metrics = NodeMetrics::new(3, BackendKind::Mmsg, 10, Instant::now());
        let now = Instant::now();
        let io = IoStats::default();
        let shard = LoopStats::default();
        metrics.shards[0].publish(metrics.epoch, now, &Stats::default(), &io, shard);
        metrics.shards[2].publish(metrics.epoch, now, &Stats::default(), &io, shard);
        metrics.shards[2].mark_stopped();
        let supervisor = Supervisor::new();
        assert_eq!(
            check(&metrics, &supervisor, now),
            Err(NotReady::ShardsDown(vec![1, 2]))
        );
    }

    #[test]
    fn a_shard_that_stopped_publishing_is_stalled_until_it_publishes_again() {
        let metrics = publishing_node(2);
        let supervisor = Supervisor::new();
        let later = Instant::now() + STALL_AFTER + Duration::from_millis(100);
        let io = IoStats::default();
        metrics.shards[0].publish(
            metrics.epoch,
            later,
            &Stats::default(),
            &io,
            LoopStats::default(),
        );
        let not_ready = check(&metrics, &supervisor, later).unwrap_err();
        assert_eq!(not_ready, NotReady::ShardsStalled(vec![1]));
        assert_eq!(
            not_ready.to_string(),
            "shards stalled (loop stuck for 2s or more): [1]"
        );
        metrics.shards[1].publish(
            metrics.epoch,
            later,
            &Stats::default(),
            &io,
            LoopStats::default(),
        );
        assert_eq!(check(&metrics, &supervisor, later), Ok(()));
    }

    #[test]
    fn a_failed_thread_makes_the_node_unready_at_once() {
        let metrics = publishing_node(2);
        let supervisor = Supervisor::new();
        let failure = Failure {
            thread: "shard-1".into(),
            cause: Cause::Panicked("boom".into()),
        };
        supervisor.fail(failure.clone());
        let not_ready = check(&metrics, &supervisor, Instant::now()).unwrap_err();
        assert_eq!(not_ready, NotReady::Failed(failure));
        assert_eq!(not_ready.to_string(), "shard-1 panicked: boom");
    }

    #[test]
    fn a_stopping_node_is_not_ready() {
        let metrics = publishing_node(1);
        let supervisor = Supervisor::new();
        supervisor.stop();
        assert_eq!(
            check(&metrics, &supervisor, Instant::now()),
            Err(NotReady::Stopping)
        );
    }

    #[test]
    fn a_draining_node_is_not_ready() {
        let metrics = publishing_node(1);
        let supervisor = Supervisor::new();
        supervisor
            .drain_flag()
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            check(&metrics, &supervisor, Instant::now()),
            Err(NotReady::Stopping)
        );
    }
}
