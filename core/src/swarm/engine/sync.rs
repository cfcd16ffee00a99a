//! Store and fetch: HAVE announces keys, WANT asks for one, CHUNK carries the value (in
//! 900-byte pieces when larger), CHUNK_ACK acknowledges a piece for dialects that wait on it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::frame::{encode_have, Chunk, Frame, KeyList};
use crate::proto::identity::Id8;
use crate::swarm::effects::{ShardMessage, ShardTarget};
use crate::swarm::engine::Engine;
use crate::swarm::event::Event;
use crate::swarm::pieces::{PieceAssembler, PieceLimits};
use crate::swarm::stats::DropReason;

/// py-setowire announces at most this many stored keys to a new peer.
const HAVE_SUMMARY_MAX: usize = 64;
/// A WANT not answered in full this long after it, or after the last piece that came, is
/// sent again: py-setowire sends a value's pieces once, all at once, and never again unless
/// asked, so on a lossy link only asking again completes a value. The wait doubles each time.
const FIRST_RE_ASK: Duration = Duration::from_secs(1);
const LAST_RE_ASK: Duration = Duration::from_secs(4);

/// The fetches in progress; the values themselves are in the node's store.
pub(crate) struct SyncState {
    /// Keys asked for with WANT and not answered yet.
    wanted: HashMap<String, Wanted>,
    chunks: PieceAssembler<String>,
    /// The node-wide reassembly memory taken for `chunks`, kept equal to what it holds.
    reserved: usize,
}

struct Wanted {
    deadline: Instant,
    /// The application asked (it gets Fetched/FetchFailed); otherwise store-and-forward.
    requested: bool,
    /// Who is asked: the peer that announced the key, or (`None`) the mesh.
    from: Option<Id8>,
    /// When to ask again unless a piece comes first, and the wait after that.
    re_ask_at: Instant,
    re_ask_after: Duration,
}

impl SyncState {
    pub(crate) fn new() -> Self {
        Self {
            wanted: HashMap::new(),
            chunks: PieceAssembler::new(PieceLimits::CHUNK),
            reserved: 0,
        }
    }

    pub(crate) fn wanted_len(&self) -> usize {
        self.wanted.len()
    }

    pub(crate) fn chunk_assemblies(&self) -> usize {
        self.chunks.len()
    }
}

impl Engine {
    /// Stores a value locally and announces it to the mesh. False when the store refuses it
    /// (empty, key over 255 bytes, value over the configured maximum).
    pub fn store(&mut self, key: &str, value: Vec<u8>) -> bool {
        if !self.node.store(key, Arc::from(value)) {
            return false;
        }
        for peer in self.mesh_peers() {
            if !self.send_have(&peer, std::iter::once(key)) {
                self.count_drop(DropReason::AddressBudget);
            }
        }
        true
    }

    /// A stored value, if this node holds it.
    pub fn stored(&self, key: &str) -> Option<Vec<u8>> {
        self.node.view().stored(key).map(|value| value.to_vec())
    }

    /// Fetches a value: at once from the local store, else by WANT to the mesh. The answer
    /// comes as [`Event::Fetched`] or [`Event::FetchFailed`].
    pub fn fetch(&mut self, now: Instant, key: &str) {
        self.fetch_within(now, key, self.config.fetch_timeout);
    }

    /// Like [`Engine::fetch`] with its own timeout instead of the configured one.
    pub fn fetch_within(&mut self, now: Instant, key: &str, timeout: Duration) {
        if let Some(value) = self.stored(key) {
            return self.emit(Event::Fetched {
                key: key.to_owned(),
                value,
            });
        }
        if key.is_empty() || key.len() > 255 || self.sync.wanted.len() >= self.config.max_wanted {
            return self.emit(Event::FetchFailed {
                key: key.to_owned(),
            });
        }
        self.want(now, now + timeout, key, true, None);
        self.send_want_to_mesh(key);
        self.node
            .send(ShardTarget::Others, ShardMessage::Want(key.to_owned()));
    }

    fn send_want_to_mesh(&mut self, key: &str) {
        let want = Frame::Want { key };
        for peer in self.mesh_peers() {
            if let Some(addr) = self.peers.get(&peer).map(|p| p.addr) {
                self.send_paid(&peer, addr, &want);
            }
        }
    }

    /// Another shard is fetching `key`: ask this shard's mesh too, and keep what comes back.
    pub(crate) fn want_from_elsewhere(&mut self, now: Instant, key: &str) {
        if self.sync.wanted.len() >= self.config.max_wanted || self.node.view().has_stored(key) {
            return;
        }
        self.want(now, now + self.config.fetch_timeout, key, false, None);
        self.send_want_to_mesh(key);
    }

    /// Another shard stored `key`: a fetch of it waiting here is complete.
    pub(crate) fn value_arrived_elsewhere(&mut self, key: &str) {
        let Some(wanted) = self.sync.wanted.remove(key) else {
            return;
        };
        self.sync.chunks.remove(&key.to_owned());
        self.settle_chunk_memory();
        if wanted.requested {
            if let Some(value) = self.stored(key) {
                self.emit(Event::Fetched {
                    key: key.to_owned(),
                    value,
                });
            }
        }
    }

    fn want(
        &mut self,
        now: Instant,
        deadline: Instant,
        key: &str,
        requested: bool,
        from: Option<Id8>,
    ) {
        let entry = self.sync.wanted.entry(key.to_owned()).or_insert(Wanted {
            deadline,
            requested,
            from,
            re_ask_at: now + FIRST_RE_ASK,
            re_ask_after: FIRST_RE_ASK,
        });
        entry.requested |= requested;
    }

    /// Asks again for the values whose answer stalled: the peer that announced it while it
    /// is connected, else the mesh.
    fn re_ask(&mut self, now: Instant) {
        let stalled: Vec<(String, Option<Id8>)> = self
            .sync
            .wanted
            .iter_mut()
            .filter(|(_, w)| w.re_ask_at <= now && w.deadline > now)
            .map(|(key, w)| {
                w.re_ask_after = (w.re_ask_after * 2).min(LAST_RE_ASK);
                w.re_ask_at = now + w.re_ask_after;
                (key.clone(), w.from)
            })
            .collect();
        for (key, from) in stalled {
            self.stats.wants_repeated += 1;
            let announcer = from.and_then(|id| Some((id, self.peers.get(&id)?.addr)));
            match announcer {
                Some((peer, addr)) => {
                    // Refused and counted when its credit is short; the next round asks again.
                    self.send_paid(&peer, addr, &Frame::Want { key: &key });
                }
                None => self.send_want_to_mesh(&key),
            }
        }
    }

    /// The stored keys a newcomer is told about; false while its credit does not cover
    /// them (the summary then waits).
    pub(crate) fn send_have_summary(&mut self, peer: &Id8) -> bool {
        let keys = self.node.view().recent_keys(HAVE_SUMMARY_MAX);
        keys.is_empty() || self.send_have(peer, keys.iter().map(String::as_str))
    }

    /// HAVE to `peer`, paid from its credit; false when the credit is short.
    fn send_have<'k>(&mut self, peer: &Id8, keys: impl Iterator<Item = &'k str> + Clone) -> bool {
        let Some(addr) = self.peers.get(peer).map(|p| p.addr) else {
            return true;
        };
        let len = 2 + keys.clone().map(|k| 1 + k.len()).sum::<usize>();
        if !self.spend(peer, addr, len) {
            return false;
        }
        match self.out.push_with(addr, len, |buf| encode_have(keys, buf)) {
            Ok(true) => {}
            _ => self.count_drop(DropReason::OutQueueFull),
        }
        true
    }

    pub(crate) fn on_have(&mut self, now: Instant, src: SocketAddr, keys: KeyList<'_>) {
        let Some(peer) = self.by_addr.get(&src).copied() else {
            return self.count_drop(DropReason::UnknownPeer);
        };
        for key in keys.keys() {
            let wanted = self.sync.wanted.contains_key(key);
            let forward = self.config.store_forward
                && !wanted
                && !self.node.view().has_stored(key)
                && self.sync.wanted.len() < self.config.max_wanted;
            if forward {
                let deadline = now + self.config.fetch_timeout;
                self.want(now, deadline, key, false, Some(peer));
            }
            if wanted || forward {
                self.send_paid(&peer, src, &Frame::Want { key });
            }
        }
    }

    /// A stored value asked for is sent as the asker's credit allows (see `paced`).
    pub(crate) fn on_want(&mut self, src: SocketAddr, key: &str) {
        let Some(peer) = self.by_addr.get(&src).copied() else {
            return self.count_drop(DropReason::UnknownPeer);
        };
        if self.node.view().has_stored(key) {
            self.queue_value(&peer, src, key);
        }
    }

    pub(crate) fn on_chunk(&mut self, now: Instant, src: SocketAddr, chunk: Chunk<'_>) {
        let Some(peer) = self.by_addr.get(&src).copied() else {
            return self.count_drop(DropReason::UnknownPeer);
        };
        let key = chunk.key();
        if !self.sync.wanted.contains_key(key) {
            // Unlike py-setowire, values nobody asked for are not stored.
            return self.count_drop(DropReason::Unwanted);
        }
        match chunk {
            Chunk::Whole { value, .. } => self.complete_fetch(key, value.to_vec()),
            Chunk::Piece {
                index,
                total,
                piece,
                ..
            } => {
                // A CHUNK_ACK is smaller than the piece it answers.
                self.send_paid(&peer, src, &Frame::ChunkAck { key, index });
                if let Some(wanted) = self.sync.wanted.get_mut(key) {
                    // Pieces are coming: no need to ask again yet.
                    wanted.re_ask_at = now + wanted.re_ask_after;
                }
                let added = self
                    .sync
                    .chunks
                    .add(now, key.to_owned(), index, total, piece);
                if !self.settle_chunk_memory() {
                    self.sync.chunks.remove(&key.to_owned());
                    self.settle_chunk_memory();
                    return self.count_drop(DropReason::ReassemblyMemory);
                }
                match added {
                    Ok(Some(value)) => self.complete_fetch(key, value),
                    Ok(None) => {}
                    Err(_) => {
                        self.sync.chunks.remove(&key.to_owned());
                        self.settle_chunk_memory();
                        self.count_drop(DropReason::Chunk);
                    }
                }
            }
        }
    }

    fn complete_fetch(&mut self, key: &str, value: Vec<u8>) {
        let Some(wanted) = self.sync.wanted.remove(key) else {
            return;
        };
        self.node.store(key, Arc::from(&value[..]));
        self.node.send(
            ShardTarget::Others,
            ShardMessage::ValueArrived(key.to_owned()),
        );
        let key = key.to_owned();
        self.emit(if wanted.requested {
            Event::Fetched { key, value }
        } else {
            Event::Synced { key, value }
        });
    }

    /// Brings the node-wide reservation for CHUNK reassembly to what it holds now; false
    /// when it grew beyond what the node allows (the caller drops what it just added).
    fn settle_chunk_memory(&mut self) -> bool {
        let held = self.sync.chunks.memory();
        let reserved = self.sync.reserved;
        if held > reserved && !self.limits().reserve_reassembly_memory(held - reserved) {
            return false;
        }
        if held < reserved {
            self.limits().release_reassembly_memory(reserved - held);
        }
        self.sync.reserved = held;
        true
    }

    /// Drops fetches past their deadline and asks again for those that stalled.
    pub(crate) fn expire_sync(&mut self, now: Instant) {
        self.sync.chunks.expire(now);
        let expired: Vec<(String, bool)> = self
            .sync
            .wanted
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(k, w)| (k.clone(), w.requested))
            .collect();
        for (key, requested) in expired {
            self.sync.wanted.remove(&key);
            self.sync.chunks.remove(&key);
            if requested {
                self.emit(Event::FetchFailed { key });
            }
        }
        self.settle_chunk_memory();
        self.re_ask(now);
    }
}
