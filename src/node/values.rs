//! The node's value store, shared by its shards: engines read it while they answer WANT and
//! HAVE, shards write it when they apply their engines' effects.
//!
//! Reads take no lock: values are looked up in a lock-free map and the newest keys come from
//! a published snapshot. Writes are rare (a value stored or fetched) and serialise on one
//! mutex that keeps the store's bounds and eviction order.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use setowire_core::swarm::store::ValueStore;

/// Newest keys kept in the snapshot readers get; HAVE summaries send at most 64.
const RECENT_KEYS: usize = 64;

pub struct NodeValues {
    values: papaya::HashMap<String, Arc<[u8]>, ahash::RandomState>,
    /// Bounds and eviction order; the authority on what is stored.
    store: Mutex<ValueStore>,
    recent_keys: ArcSwap<Vec<String>>,
}

impl NodeValues {
    pub fn new(store: ValueStore) -> Self {
        Self {
            values: papaya::HashMap::default(),
            store: Mutex::new(store),
            recent_keys: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// Stores `value`, evicting the least recently stored values to fit; false when the
    /// store's limits refuse it.
    pub fn insert(&self, key: &str, value: Arc<[u8]>) -> bool {
        let values = self.values.pin();
        // A writer that panicked left the store consistent: every step below is complete
        // before the next begins.
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let stored = store.insert_evicting(key, Arc::clone(&value), |evicted| {
            values.remove(&evicted);
        });
        if stored {
            values.insert(key.to_owned(), value);
            let recent = store.recent_keys(RECENT_KEYS).map(str::to_owned).collect();
            self.recent_keys.store(Arc::new(recent));
        }
        stored
    }

    pub fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        self.values.pin().get(key).cloned()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.values.pin().contains_key(key)
    }

    /// Up to `n` keys, most recently stored first.
    pub fn recent_keys(&self, n: usize) -> Vec<String> {
        self.recent_keys.load().iter().take(n).cloned().collect()
    }

    /// The most recently stored values, newest first, as many as fit in `max_entries`
    /// entries and `max_bytes` bytes (keys and values counted): what a snapshot keeps. The
    /// store's lock is held only to copy the handles.
    pub fn newest(&self, max_entries: usize, max_bytes: usize) -> Vec<(String, Arc<[u8]>)> {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let mut bytes = 0;
        store
            .iter()
            .take(max_entries)
            .take_while(|(key, value)| {
                bytes += key.len() + value.len();
                bytes <= max_bytes
            })
            .map(|(key, value)| (key.to_owned(), Arc::clone(value)))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_reads_and_evicts() {
        let values = NodeValues::new(ValueStore::new(2, 1000, 100));
        assert!(values.insert("a", Arc::from(&b"1"[..])));
        assert!(values.insert("b", Arc::from(&b"2"[..])));
        assert!(values.insert("c", Arc::from(&b"3"[..])));
        assert!(!values.contains("a"), "evicted to keep two entries");
        assert_eq!(values.get("c").as_deref(), Some(&b"3"[..]));
        assert_eq!(values.recent_keys(10), ["c", "b"]);
        assert_eq!(values.len(), 2);
        assert!(
            !values.insert("", Arc::from(&b"x"[..])),
            "refused by the limits"
        );
        assert!(!values.insert("big", Arc::from(vec![0; 101])));
        let newest: Vec<String> = values
            .newest(10, 1000)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(newest, ["c", "b"]);
        assert_eq!(values.newest(1, 1000).len(), 1, "capped by entries");
        assert_eq!(
            values.newest(10, 3).len(),
            1,
            "capped by bytes: 2 for each entry"
        );
    }
}
