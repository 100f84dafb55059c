//! A map bounded in bytes, the oldest entry leaving first: what a memo that anonymous clients
//! can fill needs (the parsed-document memo, the persisted-query store).

use std::collections::{HashMap, VecDeque};

/// Keys are SHA-256 digests: 32 bytes whatever the size of what they name.
pub type Key = [u8; 32];

pub struct Budgeted<V> {
    entries: HashMap<Key, (V, usize)>,
    /// Keys from oldest to newest.
    order: VecDeque<Key>,
    bytes: usize,
    budget: usize,
}

impl<V: Clone> Budgeted<V> {
    pub fn new(budget: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            budget,
        }
    }

    pub fn get(&self, key: &Key) -> Option<V> {
        self.entries.get(key).map(|(value, _)| value.clone())
    }

    /// Keeps `value`, counted as `bytes`, evicting the oldest entries until it fits; a value
    /// larger than the whole budget is not kept.
    pub fn insert(&mut self, key: Key, bytes: usize, value: V) {
        if bytes > self.budget || self.entries.contains_key(&key) {
            return;
        }
        while self.bytes + bytes > self.budget {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some((_, size)) = self.entries.remove(&oldest) {
                self.bytes -= size;
            }
        }
        self.entries.insert(key, (value, bytes));
        self.order.push_back(key);
        self.bytes += bytes;
    }

    /// How many entries are kept, and their bytes.
    #[cfg(test)]
    pub fn usage(&self) -> (usize, usize) {
        (self.entries.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        [n; 32]
    }

    #[test]
    fn the_oldest_leave_first_and_the_budget_holds() {
        let mut map = Budgeted::new(100);
        for n in 0..10 {
            map.insert(key(n), 30, n);
            assert!(map.usage().1 <= 100);
        }
        assert_eq!(map.usage(), (3, 90));
        assert_eq!(map.get(&key(9)), Some(9));
        assert_eq!(map.get(&key(6)), None);
    }

    #[test]
    fn a_value_larger_than_the_budget_is_not_kept() {
        let mut map = Budgeted::new(100);
        map.insert(key(1), 50, 1);
        map.insert(key(2), 101, 2);
        assert_eq!(map.usage(), (1, 50));
    }
}
