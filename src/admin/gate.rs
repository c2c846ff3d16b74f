//! Who may use a gated admin endpoint: whoever presents its secret as `Authorization: Bearer
//! <secret>` — the console's admin key, `/metrics`'s `admin.metrics_token`. The secret is kept
//! only as its SHA-256 digest and a presented one is compared digest to digest with `subtle`:
//! equal lengths, and a comparison whose time does not depend on where a guess goes wrong.

use http::HeaderMap;

pub(crate) struct Gate([u8; 32]);

impl Gate {
    pub(crate) fn new(secret: &str) -> Self {
        Gate(crate::keys::digest(secret.as_bytes()))
    }

    /// Is `presented` the secret?
    pub(crate) fn opens(&self, presented: &str) -> bool {
        crate::keys::constant_time_eq(&crate::keys::digest(presented.as_bytes()), &self.0)
    }

    /// Does the request carry the secret as its bearer token?
    pub(crate) fn admits(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|token| self.opens(token))
    }
}

/// The token of `Authorization: Bearer <token>`, if the request has one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_secret_as_a_bearer_token_opens() {
        let gate = Gate::new("metrics-token-0123456789");
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
            h
        };
        assert!(gate.admits(&with("Bearer metrics-token-0123456789")));
        for refused in [
            "Bearer metrics-token-012345678",
            "Bearer metrics-token-01234567890",
            "Bearer  metrics-token-0123456789",
            "bearer metrics-token-0123456789",
            "Basic metrics-token-0123456789",
            "metrics-token-0123456789",
            "Bearer ",
        ] {
            assert!(!gate.admits(&with(refused)), "{refused}");
        }
        assert!(!gate.admits(&HeaderMap::new()));
    }

    /// One way secrets are compared: no source file outside `keys/` (the forward keys' lookup,
    /// the constant-time compare itself) and this gate compares digests with `==` or `!=` (the
    /// cache admin key used to be checked that way, with a comparison of its own).
    #[test]
    fn no_other_source_file_compares_secret_digests() {
        let (src, files) = crate::source_tree::rust_sources();
        for file in &files {
            if file.starts_with(src.join("keys")) || file.ends_with("admin/gate.rs") {
                continue;
            }
            let text = std::fs::read_to_string(file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let compares = line.contains("==") || line.contains("!=");
                assert!(
                    !(line.contains("digest(") && compares),
                    "{}:{} compares digests: use admin::gate::Gate",
                    file.display(),
                    n + 1
                );
            }
        }
    }
}
