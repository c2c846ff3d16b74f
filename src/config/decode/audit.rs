//! The test-only check that a section reads exactly the keys its table declares (see
//! [`super::Fields`]).

use serde_yaml::Mapping;
use std::cell::RefCell;

pub(crate) struct Audit {
    declared: Vec<String>,
    /// Declared keys present in the document, not yet read.
    unread: RefCell<Vec<String>>,
}

impl Audit {
    pub(crate) fn new(map: &Mapping, allowed: &[&str]) -> Self {
        let unread = map
            .keys()
            .filter_map(|k| k.as_str())
            .filter(|k| allowed.contains(k))
            .map(str::to_string)
            .collect();
        Audit {
            declared: allowed.iter().map(|k| k.to_string()).collect(),
            unread: RefCell::new(unread),
        }
    }

    pub(crate) fn read(&self, key: &str, path: &str) {
        assert!(
            self.declared.iter().any(|k| k == key),
            "the decoder of `{path}` reads `{key}`, which its key table does not declare"
        );
        self.unread.borrow_mut().retain(|k| k != key);
    }
}

thread_local! {
    static UNREAD: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// The declared keys that sections dropped since the last call without reading them.
/// (A section that stops at a problem may leave keys unread; only a clean decode counts.)
pub(crate) fn take_unread() -> Vec<String> {
    UNREAD.with(|u| std::mem::take(&mut *u.borrow_mut()))
}

impl Drop for Audit {
    fn drop(&mut self) {
        let unread = std::mem::take(self.unread.get_mut());
        UNREAD.with(|u| u.borrow_mut().extend(unread));
    }
}
