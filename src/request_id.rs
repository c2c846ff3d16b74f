//! Request ids: one per request, in the access log, the chat-log record, the `x-request-id`
//! header sent upstream and back to the client, and the message of the gateway's own errors.
//!
//! A client's `X-Request-Id` is kept only when it came through a trusted proxy (the caller
//! decides) and is sane: 1 to [`MAX_LEN`] visible ASCII characters. Otherwise the gateway makes
//! one: 32 random hex digits. Held inline (no allocation per request).

use std::fmt;

/// Longest id accepted from a trusted proxy.
pub(crate) const MAX_LEN: usize = 128;

#[derive(Clone, Copy)]
pub(crate) struct RequestId {
    len: u8,
    buf: [u8; MAX_LEN],
}

impl RequestId {
    /// 32 random lowercase hex digits (128 bits).
    pub(crate) fn generate() -> Self {
        let bits: u128 = rand::random();
        let mut buf = [0u8; MAX_LEN];
        // 16 bytes make exactly 32 digits: the only error (a wrong output length) cannot occur.
        let _ = hex::encode_to_slice(bits.to_be_bytes(), &mut buf[..32]);
        RequestId { len: 32, buf }
    }

    /// `text` as an id, if it is 1 to [`MAX_LEN`] visible ASCII characters (no spaces, no
    /// control characters: it goes into log lines and headers as is).
    pub(crate) fn accept(text: &[u8]) -> Option<Self> {
        if text.is_empty() || text.len() > MAX_LEN || !text.iter().all(u8::is_ascii_graphic) {
            return None;
        }
        let mut buf = [0u8; MAX_LEN];
        buf[..text.len()].copy_from_slice(text);
        Some(RequestId {
            len: text.len() as u8,
            buf,
        })
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_32_hex_digits_and_differ() {
        let (a, b) = (RequestId::generate(), RequestId::generate());
        assert_eq!(a.as_str().len(), 32);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a.as_str(), b.as_str());
    }

    #[test]
    fn only_sane_ids_are_accepted() {
        assert_eq!(RequestId::accept(b"req-123").unwrap().as_str(), "req-123");
        let longest = "x".repeat(MAX_LEN);
        assert_eq!(
            RequestId::accept(longest.as_bytes()).unwrap().as_str(),
            longest
        );
        for bad in [
            &b""[..],
            "x".repeat(MAX_LEN + 1).as_bytes(),
            b"has space",
            b"line\nbreak",
            "caf\u{e9}".as_bytes(),
        ] {
            assert!(RequestId::accept(bad).is_none(), "{bad:?}");
        }
    }
}
