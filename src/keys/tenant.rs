//! A tenant (openai-forward's "level"): the models and routes its keys may use, the pool each
//! route draws upstream keys from for it, and its IP rules. Resolved per route index at start,
//! so a request asks by index, not by name.

use super::pool::KeyPool;
use crate::access::IpRules;
use std::collections::HashSet;
use std::sync::Arc;

pub struct Tenant {
    pub name: String,
    /// `None`: every model.
    models: Option<HashSet<String>>,
    /// Per route index: may this tenant use it, and with which pool.
    routes: Vec<Option<Option<Arc<KeyPool>>>>,
    pub access: IpRules,
}

impl Tenant {
    pub fn new(
        name: String,
        models: Option<Vec<String>>,
        routes: Vec<Option<Option<Arc<KeyPool>>>>,
        access: IpRules,
    ) -> Self {
        Tenant {
            name,
            models: models.map(|m| m.into_iter().collect()),
            routes,
            access,
        }
    }

    pub fn allows_model(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|m| m.contains(model))
    }

    pub fn allows_route(&self, route: usize) -> bool {
        matches!(self.routes.get(route), Some(Some(_)))
    }

    /// False for a tenant given no route at all (`routes: []`; from the environment, a level
    /// without upstream keys): its keys are known but cannot be used anywhere.
    pub fn allows_any_route(&self) -> bool {
        self.routes.iter().any(Option::is_some)
    }

    /// The pool this tenant's requests on `route` draw keys from.
    pub fn pool(&self, route: usize) -> Option<&Arc<KeyPool>> {
        self.routes.get(route)?.as_ref()?.as_ref()
    }

    /// Whether a model list restricts this tenant (then bodies must be read to check it).
    pub fn restricts_models(&self) -> bool {
        self.models.is_some()
    }
}
