//! Runtime state, built once from a validated config: the route table and, per route, its
//! upstream (address or cached host name, TLS trust, timeouts). Shared read-only by every
//! request; later sections (keys, limits, cache, logs) hang their runtime state here too.

use crate::config::{Config, Problems, RouteConfig};
use crate::routing::RouteTable;
use crate::upstream::peer::Upstream;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// One configured route, ready to serve.
pub struct Route {
    pub config: RouteConfig,
    pub upstream: Upstream,
}

pub struct Gateway {
    pub config: Config,
    pub routes: Vec<Arc<Route>>,
    pub table: RouteTable,
    /// Requests between `new_ctx` and the end of `logging` (drain on shutdown).
    pub in_flight: Arc<AtomicUsize>,
}

impl Gateway {
    /// Build the runtime state. The config was validated already; what can still fail here is
    /// reading files it names (CA bundles), reported like any config problem.
    pub fn build(config: Config) -> Result<Arc<Gateway>, Problems> {
        let mut problems = Problems::default();
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, rc) in config.routes.iter().enumerate() {
            match Upstream::new(rc, &config.server) {
                Ok(upstream) => routes.push(Arc::new(Route {
                    config: rc.clone(),
                    upstream,
                })),
                Err(why) => {
                    let value = rc.ca_file.as_ref().map(|p| p.display().to_string());
                    problems.add(format!("routes[{i}].ca_file"), value, why);
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let table = RouteTable::new(routes.iter().map(|r| r.config.prefix.as_str()));
        Ok(Arc::new(Gateway {
            config,
            routes,
            table,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }))
    }
}
