//! The value store behind HAVE, WANT and CHUNK.
//!
//! Peers `store()` values under short text keys and `fetch()` them from one another: a node
//! answers WANT from this store and advertises its most recent keys in HAVE. py-setowire keeps
//! 10 000 entries of any size; here the store is bounded by entries and by bytes, evicting the
//! least recently used entries to make room.

use std::sync::Arc;

use lru::LruCache;

/// Longest key: HAVE, WANT and CHUNK carry it behind a one-byte length.
pub const MAX_KEY_LEN: usize = 255;

/// What a store accepts: at most `max_entries` entries and `max_bytes` bytes (keys and
/// values counted), no value longer than `max_value_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueLimits {
    pub max_entries: usize,
    pub max_bytes: usize,
    pub max_value_len: usize,
}

impl ValueLimits {
    /// False when the key is empty or longer than 255 bytes (no frame could name it), the
    /// value is empty (py-setowire treats an empty value as absent) or longer than
    /// `max_value_len`, or the entry alone exceeds the store's bounds.
    pub fn admits(&self, key: &str, value_len: usize) -> bool {
        !key.is_empty()
            && key.len() <= MAX_KEY_LEN
            && value_len != 0
            && value_len <= self.max_value_len
            && key.len() + value_len <= self.max_bytes
            && self.max_entries != 0
    }
}

/// An LRU map from key to value, bounded by entry count and total bytes. Values are shared
/// (`Arc`), so handing one out copies nothing.
#[derive(Debug)]
pub struct ValueStore {
    entries: LruCache<String, Arc<[u8]>>,
    limits: ValueLimits,
    /// Key plus value bytes of every entry.
    bytes: usize,
}

impl ValueStore {
    /// A store of at most `max_entries` entries and `max_bytes` bytes (keys and values
    /// counted), refusing values longer than `max_value_len`.
    pub fn new(max_entries: usize, max_bytes: usize, max_value_len: usize) -> Self {
        Self {
            entries: LruCache::unbounded(),
            limits: ValueLimits {
                max_entries,
                max_bytes,
                max_value_len,
            },
            bytes: 0,
        }
    }

    /// Stores `value` under `key` as the most recently used entry, replacing any previous
    /// value and evicting least recently used entries to fit. Returns false, storing
    /// nothing, when [`ValueLimits::admits`] refuses the entry.
    pub fn insert(&mut self, key: &str, value: impl Into<Arc<[u8]>>) -> bool {
        self.insert_evicting(key, value.into(), |_| {})
    }

    /// Like [`ValueStore::insert`], handing each evicted key to `evicted`.
    pub fn insert_evicting(
        &mut self,
        key: &str,
        value: Arc<[u8]>,
        mut evicted: impl FnMut(String),
    ) -> bool {
        if !self.limits.admits(key, value.len()) {
            return false;
        }
        let size = key.len() + value.len();
        if let Some(old) = self.entries.pop(key) {
            self.bytes -= key.len() + old.len();
        }
        while self.entries.len() >= self.limits.max_entries
            || self.bytes + size > self.limits.max_bytes
        {
            match self.entries.pop_lru() {
                Some((k, v)) => {
                    self.bytes -= k.len() + v.len();
                    evicted(k);
                }
                None => break,
            }
        }
        self.entries.push(key.to_owned(), value);
        self.bytes += size;
        true
    }

    /// The value under `key`, marking it recently used.
    pub fn get(&mut self, key: &str) -> Option<&[u8]> {
        self.entries.get(key).map(|v| &v[..])
    }

    /// The value under `key`, without touching its recency.
    pub fn peek(&self, key: &str) -> Option<&[u8]> {
        self.entries.peek(key).map(|v| &v[..])
    }

    /// The value under `key`, shared, without touching its recency.
    pub fn peek_shared(&self, key: &str) -> Option<Arc<[u8]>> {
        self.entries.peek(key).cloned()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains(key)
    }

    /// Removes `key`; true when it was present.
    pub fn remove(&mut self, key: &str) -> bool {
        match self.entries.pop(key) {
            Some(old) => {
                self.bytes -= key.len() + old.len();
                true
            }
            None => false,
        }
    }

    /// Every entry, most recently used first, without touching recency.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<[u8]>)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Up to `n` keys, most recently used first (HAVE summaries send at most 64).
    pub fn recent_keys(&self, n: usize) -> impl Iterator<Item = &str> {
        self.entries.iter().take(n).map(|(k, _)| k.as_str())
    }

    /// Entries stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Key and value bytes stored.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_returns_values() {
        let mut s = ValueStore::new(10, 1000, 100);
        assert!(s.is_empty());
        assert!(s.insert("k", b"value".to_vec()));
        assert!(s.contains("k"));
        assert_eq!(s.get("k"), Some(&b"value"[..]));
        assert_eq!(s.peek("k"), Some(&b"value"[..]));
        assert_eq!(s.get("missing"), None);
        assert_eq!(s.len(), 1);
        assert_eq!(s.bytes(), 6);
    }

    #[test]
    fn refuses_what_no_frame_could_carry() {
        let mut s = ValueStore::new(10, 10_000, 100);
        assert!(!s.insert("k", Vec::new()));
        assert!(!s.insert("", b"v".to_vec()));
        assert!(!s.insert(&"x".repeat(256), b"v".to_vec()));
        assert!(s.insert(&"x".repeat(255), b"v".to_vec()));
        assert!(!s.insert("k", vec![1; 101]));
        assert!(s.insert("k", vec![1; 100]));
        assert_eq!(s.len(), 2);
        let mut tiny = ValueStore::new(10, 5, 100);
        assert!(!tiny.insert("key", b"abc".to_vec()));
        let mut none = ValueStore::new(0, 100, 100);
        assert!(!none.insert("k", b"v".to_vec()));
    }

    #[test]
    fn replacing_a_value_keeps_the_byte_count_right() {
        let mut s = ValueStore::new(10, 1000, 100);
        s.insert("k", vec![0; 50]);
        s.insert("k", vec![0; 10]);
        assert_eq!(s.len(), 1);
        assert_eq!(s.bytes(), 11);
        assert!(s.remove("k"));
        assert!(!s.remove("k"));
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn evicts_least_recently_used_by_count() {
        let mut s = ValueStore::new(3, 1000, 100);
        for k in ["a", "b", "c"] {
            s.insert(k, b"v".to_vec());
        }
        s.get("a");
        s.insert("d", b"v".to_vec());
        assert!(!s.contains("b"));
        assert!(s.contains("a") && s.contains("c") && s.contains("d"));
        assert_eq!(s.len(), 3);
        let order: Vec<&str> = s.iter().map(|(k, _)| k).collect();
        assert_eq!(order, ["d", "a", "c"], "most recently used first");
    }

    #[test]
    fn evicts_by_bytes() {
        let mut s = ValueStore::new(100, 30, 30);
        s.insert("a", vec![0; 9]);
        s.insert("b", vec![0; 9]);
        s.insert("c", vec![0; 9]);
        assert_eq!(s.bytes(), 30);
        s.insert("d", vec![0; 19]);
        assert!(!s.contains("a") && !s.contains("b"));
        assert!(s.contains("c") && s.contains("d"));
        assert_eq!(s.bytes(), 30);
        assert!(s.bytes() <= 30);
    }

    #[test]
    fn recent_keys_lists_most_recent_first() {
        let mut s = ValueStore::new(10, 1000, 100);
        for k in ["a", "b", "c", "d"] {
            s.insert(k, b"v".to_vec());
        }
        s.get("b");
        let keys: Vec<&str> = s.recent_keys(3).collect();
        assert_eq!(keys, ["b", "d", "c"]);
        assert_eq!(s.recent_keys(64).count(), 4);
        // contains() and peek() do not reorder.
        s.contains("a");
        s.peek("a");
        assert_eq!(s.recent_keys(1).next(), Some("b"));
    }

    #[test]
    fn bounds_hold_under_churn() {
        let mut s = ValueStore::new(50, 4096, 512);
        for i in 0..5000usize {
            let key = format!("key-{}", i % 97);
            s.insert(&key, vec![0; 1 + i * 7 % 512]);
            assert!(s.len() <= 50);
            assert!(s.bytes() <= 4096);
        }
        let sum: usize = s
            .recent_keys(usize::MAX)
            .map(|k| k.len() + s.peek(k).map_or(0, <[u8]>::len))
            .sum();
        assert_eq!(sum, s.bytes());
    }
}
