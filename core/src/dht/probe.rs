//! Our own requests (lookup queries, table checks) toward addresses that have not proven
//! they receive. A lookup has to ask nodes it has only just heard of, but a node that lists
//! a victim's address in its answers must not turn us into a reflector toward it: each IP
//! gets at most [`PROBES_PER_WINDOW`] such requests per [`PROBE_WINDOW`]. An address that
//! answers is verified, and requests to it are no longer probes.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Keyed by addresses others tell us about: ahash with random keys.
type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

pub const PROBE_WINDOW: Duration = Duration::from_secs(60);
/// Several, since one IP may host several nodes (behind a NAT, or on one machine).
pub const PROBES_PER_WINDOW: u8 = 8;

/// Probes sent per IP in its current window, in a bounded table.
pub struct Probes {
    windows: HashMap<IpAddr, (Instant, u8)>,
    capacity: usize,
}

impl Probes {
    pub fn new(capacity: usize) -> Self {
        Self {
            windows: HashMap::default(),
            capacity: capacity.max(1),
        }
    }

    /// Whether one more probe may go to `ip` now; counts it when it may. With the table
    /// full of IPs probed within the window, new IPs wait.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if let Some((start, sent)) = self.windows.get_mut(&ip) {
            if now.saturating_duration_since(*start) >= PROBE_WINDOW {
                *start = now;
                *sent = 0;
            }
            if *sent >= PROBES_PER_WINDOW {
                return false;
            }
            *sent += 1;
            return true;
        }
        if self.windows.len() >= self.capacity {
            self.sweep(now);
            if self.windows.len() >= self.capacity {
                return false;
            }
        }
        self.windows.insert(ip, (now, 1));
        true
    }

    /// Forgets IPs whose window is over.
    pub fn sweep(&mut self, now: Instant) {
        self.windows
            .retain(|_, (start, _)| now.saturating_duration_since(*start) < PROBE_WINDOW);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ip_gets_a_few_probes_per_window_in_a_bounded_table() {
        let t0 = Instant::now();
        let mut p = Probes::new(2);
        let ip = |n: u8| IpAddr::from([192, 0, 2, n]);
        let sent = (0..20).filter(|_| p.allow(ip(1), t0)).count();
        assert_eq!(sent, usize::from(PROBES_PER_WINDOW));
        assert!(p.allow(ip(2), t0));
        // The table is full of IPs within their window: a third waits.
        assert!(!p.allow(ip(3), t0));
        let later = t0 + PROBE_WINDOW;
        assert!(p.allow(ip(3), later));
        assert!(p.allow(ip(1), later), "a new window");
    }
}
