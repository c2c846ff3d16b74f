//! [`CorsHeaders`]: the fixed-capacity list of CORS response headers, which costs an answer no
//! heap allocation of its own.

use super::*;

/// At most this many headers are ever produced (a preflight's six).
const CAPACITY: usize = 6;

/// What the unused slots of a [`CorsHeaders`] hold; never visible.
const UNUSED: (HeaderName, HeaderValue) = (VARY, HeaderValue::from_static(""));

/// A small fixed-capacity list of CORS response headers: no heap allocation of its own.
///
/// It derefs to a slice of `(name, value)` pairs, so it goes wherever a
/// `&[(HeaderName, HeaderValue)]` does, and `&CorsHeaders` iterates like one.
///
/// Every name except `Vary` should replace what the response already has (an upstream's own
/// CORS headers would contradict the gateway's); `Vary` should be appended so the upstream's
/// `Vary` (say `accept-encoding`) survives. [`CorsHeaders::apply_to`] does exactly that for an
/// `http::HeaderMap`.
#[derive(Debug, Clone)]
pub struct CorsHeaders {
    entries: [(HeaderName, HeaderValue); CAPACITY],
    len: usize,
}

/// The name the gateway's callers use for the response-header list.
pub(crate) type Headers = CorsHeaders;

impl CorsHeaders {
    /// An empty list.
    pub const fn new() -> Self {
        CorsHeaders {
            entries: [UNUSED; CAPACITY],
            len: 0,
        }
    }

    /// Adds a header; past the capacity it is dropped, which the tests prove never happens.
    pub(super) fn push(&mut self, name: HeaderName, value: HeaderValue) {
        if let Some(slot) = self.entries.get_mut(self.len) {
            *slot = (name, value);
            self.len += 1;
        }
    }

    pub(super) fn push_origin(&mut self, grant: Grant) {
        let value = match grant {
            Grant::Any => ANY,
            Grant::Echo(origin) => origin,
        };
        self.push(ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }

    /// The value of `name`, if present.
    pub fn value(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Writes the headers into `map`: `Vary` appended, everything else replacing what is there.
    pub fn apply_to(self, map: &mut HeaderMap) {
        for (name, value) in self {
            if name == VARY {
                map.append(name, value);
            } else {
                map.insert(name, value);
            }
        }
    }
}

impl Default for CorsHeaders {
    fn default() -> Self {
        Self::new()
    }
}

impl std::ops::Deref for CorsHeaders {
    type Target = [(HeaderName, HeaderValue)];

    fn deref(&self) -> &Self::Target {
        // `len` never exceeds the capacity (see `push`); the fallback only avoids a panic path.
        self.entries.get(..self.len).unwrap_or(&[])
    }
}

impl PartialEq for CorsHeaders {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for CorsHeaders {}

impl IntoIterator for CorsHeaders {
    type Item = (HeaderName, HeaderValue);
    type IntoIter = std::iter::Take<std::array::IntoIter<Self::Item, CAPACITY>>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter().take(self.len)
    }
}

impl<'a> IntoIterator for &'a CorsHeaders {
    type Item = &'a (HeaderName, HeaderValue);
    type IntoIter = std::slice::Iter<'a, (HeaderName, HeaderValue)>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl From<CorsHeaders> for Vec<(HeaderName, HeaderValue)> {
    fn from(headers: CorsHeaders) -> Self {
        headers.into_iter().collect()
    }
}
