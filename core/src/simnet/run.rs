//! Stepping a network through virtual time.

use std::time::{Duration, Instant};

use crate::simnet::{HostId, SimError, SimHost, SimNet};

/// What happens next.
enum Step {
    /// The next datagram on the wire arrives.
    Arrival,
    /// A host's timeout comes.
    Timeout(HostId),
}

impl<H: SimHost> SimNet<H> {
    /// Runs every arrival and timeout due up to `deadline`, then sets the clock there.
    ///
    /// Fails when that takes more than [`SimConfig::max_steps`](crate::simnet::SimConfig)
    /// steps, leaving the clock at the last step taken.
    pub fn run_until(&mut self, deadline: Instant) -> Result<(), SimError> {
        self.run_while(|_, at| at <= deadline)?;
        self.clock.advance_to(deadline);
        Ok(())
    }

    /// [`SimNet::run_until`] `duration` from now.
    pub fn run_for(&mut self, duration: Duration) -> Result<(), SimError> {
        self.run_until(self.now() + duration)
    }

    /// Runs until no datagram is in flight and no host has a timeout due: each datagram in
    /// flight arrives, and so do the ones that causes, with the timeouts due meanwhile. The
    /// clock stops at the last arrival.
    ///
    /// A timeout due by the time the last datagram arrives is taken too: it is how a host
    /// asks for its turn at once, as a sharded node does when one shard has handed another
    /// work.
    ///
    /// Fails when the network is not quiet after
    /// [`SimConfig::max_steps`](crate::simnet::SimConfig) steps, as happens when hosts
    /// keep answering each other, or when their timers send more often than a link delivers;
    /// [`SimNet::run_for`] suits those.
    pub fn settle(&mut self) -> Result<(), SimError> {
        self.run_while(|net, at| !net.wire.is_empty() || at <= net.now())
    }

    /// Sends what every host has queued, then takes steps while `wanted` says the next one,
    /// due at the given time, is to be taken.
    fn run_while(&mut self, wanted: impl Fn(&Self, Instant) -> bool) -> Result<(), SimError> {
        // Commands given to hosts between runs may have queued datagrams.
        for id in 0..self.hosts.len() {
            self.drain(HostId(id));
        }
        let mut steps = 0;
        loop {
            match self.next_step() {
                Some((at, step)) if wanted(self, at) => {
                    if steps == self.config.max_steps {
                        return Err(SimError::StepLimit(steps));
                    }
                    steps += 1;
                    self.take_step(at, step);
                }
                _ => return Ok(()),
            }
        }
    }

    /// The earliest arrival or timeout; an arrival goes first when both are due at once.
    fn next_step(&self) -> Option<(Instant, Step)> {
        let timeout = self
            .hosts
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| Some((slot.as_ref()?.host.poll_timeout()?, HostId(i))))
            .min();
        match (self.wire.next_arrival(), timeout) {
            (Some(arrival), Some((at, id))) if at < arrival => Some((at, Step::Timeout(id))),
            (Some(arrival), _) => Some((arrival, Step::Arrival)),
            (None, Some((at, id))) => Some((at, Step::Timeout(id))),
            (None, None) => None,
        }
    }

    fn take_step(&mut self, at: Instant, step: Step) {
        // A timeout asked for in the past is handled now.
        self.clock.advance_to(at);
        match step {
            Step::Arrival => {
                let datagram = self.wire.pop().expect("an arrival is due");
                self.arrive(datagram);
            }
            Step::Timeout(id) => {
                let now = self.now();
                self.slot_mut(id).host.handle_timeout(now);
                self.drain(id);
            }
        }
    }

    /// Puts what the host wants sent on the wire and collects its events.
    pub(super) fn drain(&mut self, id: HostId) {
        let Some(slot) = self.hosts[id.0].as_mut() else {
            return;
        };
        let mut outbox = std::mem::take(&mut self.outbox);
        slot.host
            .drain_transmits(&mut |dst, bytes| outbox.push((dst, bytes.to_vec())));
        slot.collect_events(self.config.max_events_per_host, &mut self.counters);
        for (dst, bytes) in outbox.drain(..) {
            self.transmit(id, dst, bytes);
        }
        self.outbox = outbox;
    }
}
