//! What the path between two IP addresses does to a datagram: lose it, delay it (a fixed
//! latency plus random jitter, which is also what reorders datagrams), or duplicate it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use rand::Rng;

use crate::simnet::SimError;

/// Impairments of the path between two addresses, the same in both directions.
///
/// Each datagram is lost with probability `loss`; otherwise it arrives after `latency` plus a
/// uniformly random extra delay of up to `jitter`, so datagrams sent closer together than
/// `jitter` may overtake each other. With probability `duplicate` a second copy arrives too,
/// with a delay drawn on its own.
///
/// ```
/// use std::time::Duration;
/// use setowire_core::simnet::Link;
///
/// let lossy = Link {
///     loss: 0.2,
///     latency: Duration::from_millis(40),
///     jitter: Duration::from_millis(10),
///     ..Link::PERFECT
/// };
/// assert!(lossy.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    pub loss: f64,
    pub latency: Duration,
    pub jitter: Duration,
    pub duplicate: f64,
}

impl Link {
    /// Delivers everything at once, in order.
    pub const PERFECT: Link = Link {
        loss: 0.0,
        latency: Duration::ZERO,
        jitter: Duration::ZERO,
        duplicate: 0.0,
    };

    /// Checks that the probabilities are probabilities.
    pub fn validate(&self) -> Result<(), SimError> {
        for p in [self.loss, self.duplicate] {
            if !(0.0..=1.0).contains(&p) {
                return Err(SimError::InvalidProbability(p));
            }
        }
        Ok(())
    }

    /// Decides what becomes of one datagram.
    pub(crate) fn fate(&self, rng: &mut impl Rng) -> Fate {
        if rng.gen_bool(self.loss) {
            return Fate::Lost;
        }
        let after = self.delay(rng);
        let copy_after = rng.gen_bool(self.duplicate).then(|| self.delay(rng));
        Fate::Arrives { after, copy_after }
    }

    fn delay(&self, rng: &mut impl Rng) -> Duration {
        self.latency + rng.gen_range(Duration::ZERO..=self.jitter)
    }
}

impl Default for Link {
    fn default() -> Self {
        Link::PERFECT
    }
}

/// What a link does to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Lost,
    /// It arrives after `after`, and a copy after `copy_after` when duplicated.
    Arrives {
        after: Duration,
        copy_after: Option<Duration>,
    },
}

/// The links of a network: one per pair of addresses that was given one, and a default.
#[derive(Debug, Default)]
pub(crate) struct Links {
    default: Link,
    pairs: HashMap<(IpAddr, IpAddr), Link>,
}

impl Links {
    pub(crate) fn set_default(&mut self, link: Link) {
        self.default = link;
    }

    pub(crate) fn set(&mut self, a: IpAddr, b: IpAddr, link: Link) {
        self.pairs.insert(pair(a, b), link);
    }

    pub(crate) fn between(&self, a: IpAddr, b: IpAddr) -> &Link {
        self.pairs.get(&pair(a, b)).unwrap_or(&self.default)
    }
}

/// The key of the link between `a` and `b`, whichever way a datagram goes.
fn pair(a: IpAddr, b: IpAddr) -> (IpAddr, IpAddr) {
    (a.min(b), a.max(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn probabilities_outside_zero_to_one_are_refused() {
        for p in [-0.1, 1.5, f64::NAN] {
            let link = Link {
                loss: p,
                ..Link::PERFECT
            };
            assert!(link.validate().is_err(), "loss {p}");
        }
        assert!(Link::PERFECT.validate().is_ok());
    }

    #[test]
    fn delay_is_latency_plus_at_most_the_jitter() {
        let link = Link {
            latency: Duration::from_millis(30),
            jitter: Duration::from_millis(10),
            ..Link::PERFECT
        };
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..1000 {
            let Fate::Arrives {
                after,
                copy_after: None,
            } = link.fate(&mut rng)
            else {
                panic!("a link without loss or duplication delivers once");
            };
            assert!((Duration::from_millis(30)..=Duration::from_millis(40)).contains(&after));
        }
    }

    #[test]
    fn a_pair_has_one_link_whichever_way() {
        let mut links = Links::default();
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        let slow = Link {
            latency: Duration::from_secs(1),
            ..Link::PERFECT
        };
        links.set(b, a, slow);
        assert_eq!(*links.between(a, b), slow);
        assert_eq!(*links.between(b, a), slow);
        assert_eq!(*links.between(a, c), Link::PERFECT);
    }
}
