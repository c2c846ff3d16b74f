//! The streaming masker of a pool key sent in the query (set up and applied by `mask.rs`):
//! every occurrence of the key (as sent, or percent-encoded) becomes `*`s of the same length.

use bytes::Bytes;

/// Masks one key out of a body, chunk by chunk (memory bounded by the key's length).
pub(crate) struct Masker {
    /// The forms of the key to mask (longest first does not matter: all are masked).
    needles: Vec<Vec<u8>>,
    /// The tail of the last chunk that could be the start of a key.
    carry: Vec<u8>,
    keep: usize,
}

impl Masker {
    pub(crate) fn new(secret: &str) -> Option<Self> {
        if secret.is_empty() {
            return None;
        }
        let mut needles = vec![secret.as_bytes().to_vec()];
        for upper in [true, false] {
            let encoded = percent_encode(secret, upper);
            if !needles.contains(&encoded) {
                needles.push(encoded);
            }
        }
        let keep = needles.iter().map(Vec::len).max().unwrap_or(1) - 1;
        Some(Masker {
            needles,
            carry: Vec::new(),
            keep,
        })
    }

    /// The masked bytes that can go on now (`None`: nothing yet); at `end`, everything left.
    pub(crate) fn push(&mut self, chunk: Option<&[u8]>, end: bool) -> Option<Bytes> {
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(chunk.unwrap_or_default());
        self.mask(&mut data);
        if !end && data.len() > self.keep {
            self.carry = data.split_off(data.len() - self.keep);
        } else if !end {
            self.carry = data;
            return None;
        }
        (!data.is_empty()).then(|| Bytes::from(data))
    }

    pub(crate) fn mask(&self, data: &mut [u8]) {
        for needle in &self.needles {
            let mut from = 0;
            while let Some(at) = memchr::memmem::find(&data[from..], needle) {
                let start = from + at;
                data[start..start + needle.len()].fill(b'*');
                from = start + needle.len();
            }
        }
    }

    /// Whether `text` holds the key in any of its forms.
    pub(crate) fn found_in(&self, text: &[u8]) -> bool {
        self.needles
            .iter()
            .any(|n| memchr::memmem::find(text, n).is_some())
    }
}

/// `secret` with every byte outside RFC 3986's unreserved set as `%XX`.
fn percent_encode(secret: &str, upper: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(secret.len());
    for b in secret.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else if upper {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        } else {
            out.extend_from_slice(format!("%{b:02x}").as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(secret: &str, chunks: &[&str]) -> String {
        let mut m = Masker::new(secret).unwrap();
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            if let Some(b) = m.push(Some(c.as_bytes()), i + 1 == chunks.len()) {
                out.extend_from_slice(&b);
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_key_is_masked_at_any_split_and_the_length_kept() {
        let body =
            "Invalid URL (GET /v1/x?alt=sse&key=AIza-secret/1) key=AIza-secret/1 AIza-secret%2F1";
        let want =
            "Invalid URL (GET /v1/x?alt=sse&key=*************) key=************* ***************";
        for split in 0..=body.len() {
            let (a, b) = body.split_at(split);
            assert_eq!(run("AIza-secret/1", &[a, b]), want, "split at {split}");
        }
        let bytes: Vec<String> = body.chars().map(String::from).collect();
        let refs: Vec<&str> = bytes.iter().map(String::as_str).collect();
        assert_eq!(run("AIza-secret/1", &refs), want);
        assert_eq!(run("sk-1", &["nothing here"]), "nothing here");
    }
}
