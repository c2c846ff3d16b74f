//! Forward keys: the keys handed to clients. Looked up by the SHA-256 of the presented token
//! (no early exit on a shared prefix), then compared in constant time; the key itself is kept
//! only for that comparison.

use super::tenant::Tenant;
use super::{constant_time_eq, digest};
use crate::access::IpRules;
use std::collections::HashMap;
use std::sync::Arc;

pub struct ForwardKey {
    /// For logs: the configured name or `k-<hash prefix>` (shared: each request holds it
    /// by reference count).
    pub id: Arc<str>,
    secret: Box<[u8]>,
    pub tenant: Arc<Tenant>,
    pub access: IpRules,
}

#[derive(Default)]
pub struct ForwardKeys {
    by_digest: HashMap<[u8; 32], Arc<ForwardKey>>,
}

impl ForwardKeys {
    pub fn insert(
        &mut self,
        secret: &str,
        name: Option<String>,
        tenant: Arc<Tenant>,
        access: IpRules,
    ) {
        let key = ForwardKey {
            id: name.unwrap_or_else(|| super::key_id(secret)).into(),
            secret: secret.as_bytes().into(),
            tenant,
            access,
        };
        self.by_digest
            .insert(digest(secret.as_bytes()), Arc::new(key));
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    pub fn lookup(&self, token: &str) -> Option<&Arc<ForwardKey>> {
        let found = self.by_digest.get(&digest(token.as_bytes()))?;
        constant_time_eq(&found.secret, token.as_bytes()).then_some(found)
    }
}
