//! LAN discovery by IPv4 multicast, compatible with py-setowire: every 5 s the node sends
//! `0x09 ‖ "id40:lip:lport:topichash12"` to 239.0.0.1:45678 for each topic it joins (an
//! empty topic hash when it joins none), and dials the announcers it hears whose topic it
//! joins (any announcer when it joins none; an announcer without a topic always).
//!
//! [`LanDiscovery`] decides what to announce and whom to dial; the node runs it on a small
//! thread with its own multicast socket.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::dht::id::topic_hash;
use crate::proto::frame::{Frame, LanAnnounce};

pub const MULTICAST_GROUP: Ipv4Addr = Ipv4Addr::new(239, 0, 0, 1);
pub const MULTICAST_PORT: u16 = 45678;
/// py-setowire's interval.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5);
/// An announcer is dialled again at most this often (while not connected).
const REDIAL_AFTER: Duration = Duration::from_secs(30);
/// Announcers remembered for [`REDIAL_AFTER`]; beyond this, the oldest are forgotten.
const MAX_TRACKED: usize = 1024;
/// Longest announcement read (py-setowire reads 1500 bytes).
pub const MAX_DATAGRAM: usize = 1500;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LanStats {
    pub announcements_sent: u64,
    pub received: u64,
    /// Not a LAN announcement, or one with an unusable address.
    pub malformed: u64,
    /// Our own announcements, looped back.
    pub own: u64,
    /// Announcers of topics we do not join.
    pub other_topic: u64,
    /// Announcers already connected or dialled recently.
    pub known: u64,
    pub dials: u64,
}

pub struct LanDiscovery {
    id40: String,
    local: SocketAddr,
    topic_hashes: Vec<String>,
    last_dial: HashMap<SocketAddr, Instant>,
    stats: LanStats,
}

impl LanDiscovery {
    /// `local`: the address LAN peers should dial (`lip:lport`).
    pub fn new(id40: String, local: SocketAddr, topics: &[Vec<u8>]) -> Self {
        Self {
            id40,
            local,
            topic_hashes: topics.iter().map(|t| topic_hash(t)).collect(),
            last_dial: HashMap::new(),
            stats: LanStats::default(),
        }
    }

    pub fn stats(&self) -> &LanStats {
        &self.stats
    }

    /// Counts an announcement that went out.
    pub fn note_announcement_sent(&mut self) {
        self.stats.announcements_sent += 1;
    }

    /// The datagrams to multicast each interval: one per topic, or one without a topic.
    pub fn announcements(&self) -> Vec<Vec<u8>> {
        let ip = self.local.ip().to_string();
        let one = |topic_hash: &str| {
            Frame::Lan(LanAnnounce {
                id: &self.id40,
                ip: &ip,
                port: self.local.port(),
                topic_hash,
            })
            .to_vec()
            .ok()
        };
        if self.topic_hashes.is_empty() {
            one("").into_iter().collect()
        } else {
            self.topic_hashes.iter().filter_map(|t| one(t)).collect()
        }
    }

    /// Whom to dial for a received datagram, if anyone. `connected(id40)` says whether the
    /// announcer already has a session with the node.
    pub fn on_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
        connected: impl Fn(&str) -> bool,
    ) -> Option<SocketAddr> {
        self.stats.received += 1;
        let Ok(Frame::Lan(lan)) = Frame::parse(datagram) else {
            self.stats.malformed += 1;
            return None;
        };
        if lan.id == self.id40 {
            self.stats.own += 1;
            return None;
        }
        if !lan.topic_hash.is_empty()
            && !self.topic_hashes.is_empty()
            && !self.topic_hashes.iter().any(|t| t == lan.topic_hash)
        {
            self.stats.other_topic += 1;
            return None;
        }
        let Ok(ip) = lan.ip.parse::<IpAddr>() else {
            self.stats.malformed += 1;
            return None;
        };
        if ip.is_unspecified() || lan.port == 0 {
            self.stats.malformed += 1;
            return None;
        }
        let addr = SocketAddr::new(ip.to_canonical(), lan.port);
        let recent = self
            .last_dial
            .get(&addr)
            .is_some_and(|t| now.saturating_duration_since(*t) < REDIAL_AFTER);
        if recent || connected(lan.id) {
            self.stats.known += 1;
            return None;
        }
        if self.last_dial.len() >= MAX_TRACKED {
            self.last_dial
                .retain(|_, t| now.saturating_duration_since(*t) < REDIAL_AFTER);
            if self.last_dial.len() >= MAX_TRACKED {
                if let Some(oldest) = self
                    .last_dial
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(a, _)| *a)
                {
                    self.last_dial.remove(&oldest);
                }
            }
        }
        self.last_dial.insert(addr, now);
        self.stats.dials += 1;
        Some(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce(id: &str, ip: &str, port: u16, topic: &str) -> Vec<u8> {
        let mut d = vec![0x09];
        d.extend(format!("{id}:{ip}:{port}:{topic}").bytes());
        d
    }

    #[test]
    fn announcements_in_py_setowire_format() {
        let id = "ab".repeat(20);
        let lan = LanDiscovery::new(id.clone(), "192.168.1.5:4000".parse().unwrap(), &[]);
        assert_eq!(
            lan.announcements(),
            vec![announce(&id, "192.168.1.5", 4000, "")]
        );
        let lan = LanDiscovery::new(
            id.clone(),
            "192.168.1.5:4000".parse().unwrap(),
            &[vec![1, 2], vec![3]],
        );
        let got = lan.announcements();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], announce(&id, "192.168.1.5", 4000, "f47de373dc27"));
    }

    #[test]
    fn dials_matching_announcers_once_in_a_while() {
        let t0 = Instant::now();
        let me = "aa".repeat(20);
        let other = "bb".repeat(20);
        let mut lan = LanDiscovery::new(me.clone(), "10.0.0.1:1".parse().unwrap(), &[vec![1, 2]]);
        let never = |_: &str| false;
        assert_eq!(
            lan.on_datagram(t0, &announce(&me, "10.0.0.1", 1, ""), never),
            None
        );
        assert_eq!(
            lan.on_datagram(t0, &announce(&other, "10.0.0.2", 7, "000000000000"), never),
            None
        );
        let want: SocketAddr = "10.0.0.2:7".parse().unwrap();
        let matching = announce(&other, "10.0.0.2", 7, "f47de373dc27");
        assert_eq!(lan.on_datagram(t0, &matching, never), Some(want));
        assert_eq!(
            lan.on_datagram(t0 + Duration::from_secs(5), &matching, never),
            None
        );
        assert_eq!(
            lan.on_datagram(t0 + REDIAL_AFTER, &matching, |id: &str| id == other),
            None,
            "connected announcers are not dialled"
        );
        assert_eq!(
            lan.on_datagram(t0 + REDIAL_AFTER, &matching, never),
            Some(want)
        );
        // No topic on either side: dial.
        let third = announce(&"cc".repeat(20), "10.0.0.3", 8, "");
        assert!(lan.on_datagram(t0, &third, never).is_some());
        for bad in [&b"\x09garbage"[..], b"\x09id:notanip:5:", b"\x01xyz", b""] {
            assert_eq!(lan.on_datagram(t0, bad, never), None);
        }
        let s = lan.stats();
        assert_eq!((s.own, s.other_topic, s.dials, s.malformed), (1, 1, 3, 4));
    }

    #[test]
    fn a_node_without_topics_dials_every_announcer() {
        let t0 = Instant::now();
        let mut lan = LanDiscovery::new("aa".repeat(20), "10.0.0.1:1".parse().unwrap(), &[]);
        let d = announce(&"bb".repeat(20), "10.0.0.2", 7, "f47de373dc27");
        assert!(lan.on_datagram(t0, &d, |_: &str| false).is_some());
    }

    #[test]
    fn tracking_is_bounded() {
        let t0 = Instant::now();
        let mut lan = LanDiscovery::new("aa".repeat(20), "10.0.0.1:1".parse().unwrap(), &[]);
        for n in 0..3000u32 {
            let d = announce(&format!("{n:040}"), "10.0.0.2", (n % 60000 + 1) as u16, "");
            lan.on_datagram(t0, &d, |_: &str| false);
        }
        assert!(lan.last_dial.len() <= MAX_TRACKED);
    }
}
