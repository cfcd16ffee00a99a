//! The simulated network's notion of time: an `Instant` chosen by the caller plus the virtual
//! time that has passed since, which only the network moves forward.

use std::time::{Duration, Instant};

/// Virtual time. Never reads the real clock, so a run does not depend on how fast the
/// machine is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VirtualClock {
    start: Instant,
    now: Instant,
}

impl VirtualClock {
    pub(crate) fn new(start: Instant) -> Self {
        Self { start, now: start }
    }

    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Moves to `at`; time never goes back, so an earlier `at` leaves the clock where it is.
    pub(crate) fn advance_to(&mut self, at: Instant) {
        self.now = self.now.max(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_only_moves_forward() {
        let start = Instant::now();
        let mut clock = VirtualClock::new(start);
        clock.advance_to(start + Duration::from_millis(5));
        clock.advance_to(start + Duration::from_millis(2));
        assert_eq!(clock.now(), start + Duration::from_millis(5));
        assert_eq!(clock.elapsed(), Duration::from_millis(5));
    }
}
