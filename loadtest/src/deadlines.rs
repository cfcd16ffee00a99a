//! Operations in the order they started, so the ones older than the timeout can be given up
//! without scanning all that are outstanding.

use std::collections::VecDeque;
use std::time::Instant;

/// Start times and keys, oldest first. Finished operations are not taken out (that would need a
/// search): whoever expires checks that the key still names the operation started then.
pub struct Deadlines<K> {
    queue: VecDeque<(Instant, K)>,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
        }
    }
}

impl<K> Deadlines<K> {
    pub fn push(&mut self, started: Instant, key: K) {
        self.queue.push_back((started, key));
    }

    /// Hands over every entry started more than `timeout` before `now`, oldest first.
    pub fn expire(
        &mut self,
        now: Instant,
        timeout: std::time::Duration,
        mut expired: impl FnMut(Instant, K),
    ) {
        let Some(cutoff) = now.checked_sub(timeout) else {
            return;
        };
        while self.queue.front().is_some_and(|(at, _)| *at < cutoff) {
            let (at, key) = self.queue.pop_front().expect("checked");
            expired(at, key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn hands_over_only_what_is_older_than_the_timeout() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let ms = Duration::from_millis;
        let mut d = Deadlines::default();
        d.push(t0, "a");
        d.push(t0 + ms(5), "b");
        d.push(t0 + ms(9), "c");
        let mut out = Vec::new();
        d.expire(t0 + ms(16), ms(10), |at, k| out.push((at, k)));
        assert_eq!(out, vec![(t0, "a"), (t0 + ms(5), "b")]);
        out.clear();
        d.expire(t0 + ms(100), ms(10), |_, k| out.push((t0, k)));
        assert_eq!(out, vec![(t0, "c")]);
    }
}
