//! One bounded inbox per shard for the work other shards send it, with the waker that gets
//! the shard out of its receive wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use setowire_core::swarm::effects::{ShardMessage, ShardTarget};
use setowire_core::swarm::node_view::ShardId;

/// Messages one shard's inbox holds at most; beyond that they are dropped and counted
/// (flooding is best-effort, as it is on the wire).
pub const INBOX_CAPACITY: usize = 65_536;

/// Wakes a shard that may be blocked waiting for datagrams.
pub type Wake = Box<dyn Fn() + Send + Sync>;

struct Inbox {
    queue: Mutex<VecDeque<ShardMessage>>,
    wake: Wake,
}

/// Messages dropped because an inbox was full, by the shard they were for. Shared with the
/// metrics, which read it at scrape time: a shard that stopped taking its messages is the
/// one whose count grows, and it cannot be trusted to publish anything itself.
pub type InboxDrops = Arc<[AtomicU64]>;

pub struct ShardInboxes {
    inboxes: Vec<Inbox>,
    drops: InboxDrops,
}

impl ShardInboxes {
    /// `wakers[i]` wakes shard `i`.
    pub fn new(wakers: Vec<Wake>) -> Self {
        Self {
            drops: wakers.iter().map(|_| AtomicU64::new(0)).collect(),
            inboxes: wakers
                .into_iter()
                .map(|wake| Inbox {
                    queue: Mutex::new(VecDeque::new()),
                    wake,
                })
                .collect(),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.inboxes.len()
    }

    /// Messages dropped so far, for every shard.
    pub fn drops(&self) -> u64 {
        self.drops.iter().map(|d| d.load(Ordering::Relaxed)).sum()
    }

    /// The drop counters, indexed by the shard the messages were for.
    pub fn drop_counters(&self) -> InboxDrops {
        Arc::clone(&self.drops)
    }

    /// Takes every message waiting for `shard`.
    pub fn take(&self, shard: ShardId, into: &mut Vec<ShardMessage>) {
        into.extend(lock(&self.inboxes[shard].queue).drain(..));
    }

    /// Sends `message` from shard `from` to the shards `to` names.
    pub fn send(&self, from: ShardId, to: ShardTarget, message: ShardMessage) {
        match to {
            ShardTarget::One(shard) => self.send_one(shard, message),
            ShardTarget::Others => {
                let others: Vec<ShardId> = (0..self.inboxes.len()).filter(|s| *s != from).collect();
                if let Some((last, rest)) = others.split_last() {
                    for shard in rest {
                        self.send_one(*shard, message.clone());
                    }
                    self.send_one(*last, message);
                }
            }
        }
    }

    fn send_one(&self, shard: ShardId, message: ShardMessage) {
        let Some(inbox) = self.inboxes.get(shard) else {
            return;
        };
        {
            let mut queue = lock(&inbox.queue);
            if queue.len() >= INBOX_CAPACITY {
                self.drops[shard].fetch_add(1, Ordering::Relaxed);
                return;
            }
            queue.push_back(message);
        }
        (inbox.wake)();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A shard that panicked while holding the lock left a whole queue behind it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn inboxes(shards: usize) -> (ShardInboxes, Vec<Arc<AtomicUsize>>) {
        let wakes: Vec<Arc<AtomicUsize>> = (0..shards).map(|_| Arc::default()).collect();
        let wakers = wakes
            .iter()
            .map(|w| {
                let w = Arc::clone(w);
                Box::new(move || {
                    w.fetch_add(1, Ordering::Relaxed);
                }) as Wake
            })
            .collect();
        (ShardInboxes::new(wakers), wakes)
    }

    #[test]
    fn messages_reach_the_shards_they_name_and_wake_them() {
        let (inboxes, wakes) = inboxes(3);
        inboxes.send(1, ShardTarget::Others, ShardMessage::Want("k".into()));
        inboxes.send(
            0,
            ShardTarget::One(1),
            ShardMessage::ValueArrived("v".into()),
        );
        let mut got = Vec::new();
        for (shard, wake) in wakes.iter().enumerate() {
            inboxes.take(shard, &mut got);
            let woken = wake.load(Ordering::Relaxed);
            assert_eq!(woken, got.len(), "shard {shard}");
            got.clear();
        }
        assert_eq!(inboxes.drops(), 0);
    }

    #[test]
    fn a_full_inbox_drops_and_counts() {
        let (inboxes, _) = inboxes(2);
        for _ in 0..INBOX_CAPACITY + 5 {
            inboxes.send(0, ShardTarget::One(1), ShardMessage::Want("k".into()));
        }
        assert_eq!(inboxes.drops(), 5);
        let by_shard: Vec<u64> = (inboxes.drop_counters().iter())
            .map(|d| d.load(Ordering::Relaxed))
            .collect();
        assert_eq!(by_shard, [0, 5]);
        let mut got = Vec::new();
        inboxes.take(1, &mut got);
        assert_eq!(got.len(), INBOX_CAPACITY);
    }
}
