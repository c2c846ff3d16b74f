//! The `model` label's values, bounded. Names from the config (upstream model lists, fallbacks,
//! tenants' allow-lists) are known from the start; any other name enters the table only once an
//! upstream has answered it with success (so a client typing junk, or a secret, into `model`
//! never becomes a label), and only while fewer than [`MAX_LEARNED`] have; past that it is
//! `other`.
//!
//! Reads take no lock: the configured names are an immutable map, learned names live in
//! write-once slots scanned up to a published length. The mutex is taken only to learn a new
//! name, which happens at most [`MAX_LEARNED`] times in a process's life.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Model names learned from traffic, at most.
pub(crate) const MAX_LEARNED: usize = 64;
/// Longest learned name; longer ones are `other`.
const MAX_NAME: usize = 128;

/// Slot of requests without a model (`none`).
pub(crate) const NONE: usize = 0;
/// Slot of every model past the cap or not admitted (`other`).
pub(crate) const OTHER: usize = 1;

pub(crate) struct ModelTable {
    configured: HashMap<Box<str>, usize>,
    /// Names by slot: `none`, `other`, the configured ones.
    fixed: Vec<Box<str>>,
    learned: [OnceLock<Box<str>>; MAX_LEARNED],
    learned_len: AtomicUsize,
    learning: Mutex<()>,
}

impl ModelTable {
    pub(crate) fn new<'a>(configured: impl IntoIterator<Item = &'a str>) -> Self {
        let mut fixed: Vec<Box<str>> = vec!["none".into(), "other".into()];
        let mut map = HashMap::new();
        for name in configured {
            if name.contains('*') || name.is_empty() || map.contains_key(name) {
                continue;
            }
            map.insert(Box::from(name), fixed.len());
            fixed.push(name.into());
        }
        ModelTable {
            configured: map,
            fixed,
            learned: std::array::from_fn(|_| OnceLock::new()),
            learned_len: AtomicUsize::new(0),
            learning: Mutex::new(()),
        }
    }

    /// Every slot a request can get.
    pub(crate) fn capacity(&self) -> usize {
        self.fixed.len() + MAX_LEARNED
    }

    /// The slot of `name`; `learn`: the name may enter the table (an upstream served it).
    pub(crate) fn slot(&self, name: Option<&str>, learn: bool) -> usize {
        let Some(name) = name else {
            return NONE;
        };
        if let Some(&i) = self.configured.get(name) {
            return i;
        }
        if let Some(i) = self.find_learned(name, self.learned_len.load(Ordering::Acquire)) {
            return i;
        }
        if !learn || name.len() > MAX_NAME || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return OTHER;
        }
        let _guard = self.learning.lock().unwrap_or_else(|p| p.into_inner());
        let len = self.learned_len.load(Ordering::Acquire);
        if let Some(i) = self.find_learned(name, len) {
            return i;
        }
        if len == MAX_LEARNED || self.learned[len].set(name.into()).is_err() {
            return OTHER;
        }
        self.learned_len.store(len + 1, Ordering::Release);
        self.fixed.len() + len
    }

    fn find_learned(&self, name: &str, len: usize) -> Option<usize> {
        self.learned[..len]
            .iter()
            .position(|s| s.get().is_some_and(|s| &**s == name))
            .map(|i| self.fixed.len() + i)
    }

    /// The label value of a slot.
    pub(crate) fn name(&self, slot: usize) -> &str {
        match self.fixed.get(slot) {
            Some(n) => n,
            None => self
                .learned
                .get(slot - self.fixed.len())
                .and_then(|s| s.get())
                .map_or("other", |s| s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_names_learned_names_and_the_cap() {
        let t = ModelTable::new(["gpt-4o", "*", "gpt-4o"]);
        assert_eq!(t.slot(None, true), NONE);
        let known = t.slot(Some("gpt-4o"), false);
        assert_eq!(t.name(known), "gpt-4o");
        // Not served yet: not a label.
        assert_eq!(t.slot(Some("mystery"), false), OTHER);
        assert_eq!(t.slot(Some("bad name"), true), OTHER);
        let learned = t.slot(Some("mystery"), true);
        assert_eq!(t.name(learned), "mystery");
        assert_eq!(t.slot(Some("mystery"), false), learned);
        for i in 1..MAX_LEARNED {
            assert_ne!(t.slot(Some(&format!("m{i}")), true), OTHER);
        }
        assert_eq!(t.slot(Some("one-too-many"), true), OTHER);
        assert!(t.capacity() > t.slot(Some("m63"), false));
    }
}
