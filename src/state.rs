//! Runtime state, built once from a validated config: the route table and, per route, its
//! upstream (address or cached host name, TLS trust, timeouts) and who may use it (auth mode,
//! key pool, IP rules); the forward keys and tenants; the client-IP resolver. Shared read-only
//! by every request.

use crate::access::{ClientIpResolver, IpRules};
use crate::config::UpstreamConfig;
use crate::config::{AuthMode, Config, KeyPlacement, Problems, RouteConfig};
use crate::cors::CorsPolicy;
use crate::keys::forward::ForwardKeys;
use crate::keys::pool::KeyPool;
use crate::keys::tenant::Tenant;
use crate::routing::RouteTable;
use crate::upstream::breaker::Breaker;
use crate::upstream::model_breakers::ModelBreakers;
use crate::upstream::peer::Upstream;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

/// One upstream of a route, ready to be tried.
pub(crate) struct UpstreamTarget {
    /// Position in `Route::upstreams`.
    pub index: usize,
    pub config: UpstreamConfig,
    pub upstream: Upstream,
    /// Its own key pool. Used only for requests whose credentials the gateway swaps (forward
    /// keys, `open`); a request carrying the client's own key never goes to such an upstream.
    pub pool: Option<Arc<KeyPool>>,
    pub key_placement: KeyPlacement,
    /// With `KeyPlacement::Header`, its name as Pingora takes it, built once: an attempt
    /// hands Pingora a clone (a reference count) rather than a new `String`.
    pub key_header: Option<bytes::Bytes>,
    pub breaker: Breaker,
    /// Breakers of the models that failed here (5xx, timeouts) while others may not have.
    pub model_breakers: ModelBreakers,
}

/// One configured route, ready to serve.
pub(crate) struct Route {
    /// Position in `Gateway::routes` (tenants index their permissions by it).
    pub index: usize,
    pub config: RouteConfig,
    /// Never empty; in the order configured (attempts order them by priority and weight).
    pub upstreams: Vec<Arc<UpstreamTarget>>,
    pub auth_mode: AuthMode,
    /// The route's own pool (tenants may override it).
    pub pool: Option<Arc<KeyPool>>,
    pub access: IpRules,
    /// This route writes chat-log records.
    pub chat_log: bool,
    /// Which of its requests may use the response cache (`None`: none).
    pub cache: Option<crate::cache_store::policy::RoutePolicy>,
}

impl Route {
    /// Whether the route's config depends on what a JSON body says, so that even a `general`
    /// route (which otherwise passes bodies through unread) must read it:
    /// - a first-token or idle deadline: kept through the pre-read session, it needs the stream
    ///   flag (and a replayable attempt to fail over);
    /// - per-upstream model lists and fallback models: they need the model.
    ///
    /// `names_fallbacks`: the request carries its own fallback list (`x-fallback-models`); it
    /// needs the model only when the route takes it (`fallbacks.from_request`, on by default),
    /// so that default alone does not make every request's body be read.
    pub(crate) fn depends_on_the_body(&self, names_fallbacks: bool) -> bool {
        let fb = &self.config.resilience.fallbacks;
        let by_model = !fb.models.is_empty()
            || !fb.by_model.is_empty()
            || !fb.context_length.is_empty()
            || (fb.from_request && names_fallbacks);
        by_model
            || self.upstreams.iter().any(|u| {
                let t = &u.upstream.timeouts;
                u.config.models.is_some()
                    || t.first_token.is_some()
                    || t.idle.is_some()
                    || t.max_duration.is_some()
            })
    }
}

pub(crate) struct Gateway {
    pub config: Config,
    pub routes: Vec<Arc<Route>>,
    pub table: RouteTable,
    pub forward_keys: ForwardKeys,
    pub client_ip: ClientIpResolver,
    pub access: IpRules,
    pub cors: Option<CorsPolicy>,
    pub limits: crate::limits::Limits,
    /// The chat-log writer, when chat logs are on.
    pub chat_log: Option<crate::chatlog::ChatLog>,
    /// Requests between `new_ctx` and the end of `logging` (drain on shutdown).
    pub in_flight: Arc<AtomicUsize>,
    /// Set once a graceful upgrade or stop has begun: from then on every answer closes its
    /// connection (`Connection: close`), so clients move to the new process instead of reusing a
    /// connection Pingora will drop (see `proxy::keepalive`).
    pub draining: Arc<AtomicBool>,
    /// Raised when a graceful stop's grace period ends: streams still running end as cut, and
    /// log (see `cutoff.rs`).
    pub cutoff: Arc<crate::cutoff::Cutoff>,
    /// The response cache, when configured.
    pub cache: Option<crate::cache_store::Cache>,
    /// Every upstream key pool, in config order (metrics read their keys' health).
    pub pools: Vec<Arc<KeyPool>>,
    /// Per-request metrics (recorded in `logging`, rendered by the admin service).
    pub metrics: crate::metrics::Metrics,
    /// The web console, when `admin.ui` is on.
    pub console: Option<Arc<crate::admin::console::Console>>,
    /// The OTLP trace exporter, when `telemetry.otlp` is set.
    pub tracer: Option<Arc<crate::telemetry::Tracer>>,
}

impl Gateway {
    /// Whether something records a request's answer text on `route`: its chat log, printed
    /// chats, or the console's tail showing exchanges. Asked at the response head (what the tap
    /// keeps) and at the end (what the outcome reads); here, so neither phase imports the other.
    pub(crate) fn records_answer_text(&self, route: Option<&Route>) -> bool {
        let chat_logged = route.is_some_and(|r| r.chat_log) && self.chat_log.is_some();
        chat_logged
            || self.config.log.print_chat
            || self.console.as_ref().is_some_and(|c| c.show_messages)
    }

    /// Build the runtime state. The config was validated already; what can still fail here is
    /// reading files it names (CA bundles), reported like any config problem.
    pub(crate) fn build(config: Config) -> Result<Arc<Gateway>, Problems> {
        let mut problems = Problems::default();
        let pool_list: Vec<Arc<KeyPool>> = config
            .upstream_keys
            .iter()
            .map(|p| Arc::new(KeyPool::with_health(p, config.key_health)))
            .collect();
        let pools = PoolIndex(
            config
                .upstream_keys
                .iter()
                .map(|p| p.name.as_str())
                .zip(pool_list.iter().cloned())
                .collect(),
        );
        let mut routes = Vec::with_capacity(config.routes.len());
        let now = std::time::Instant::now();
        for (index, rc) in config.routes.iter().enumerate() {
            let mut upstreams = Vec::with_capacity(rc.upstreams.len());
            for (i, uc) in rc.upstreams.iter().enumerate() {
                let upstream = match Upstream::new(uc, &config.server) {
                    Ok(u) => u,
                    Err(why) => {
                        let value = uc.ca_file.as_ref().map(|p| p.display().to_string());
                        problems.add(format!("routes[{index}].ca_file"), value, why);
                        continue;
                    }
                };
                let key_placement = uc
                    .key_placement
                    .clone()
                    .unwrap_or_else(|| rc.auth.key_placement.clone());
                upstreams.push(Arc::new(UpstreamTarget {
                    index: i,
                    config: uc.clone(),
                    upstream,
                    pool: pools.resolve(
                        uc.pool.as_deref(),
                        || format!("routes[{index}].upstreams[{i}].pool"),
                        &mut problems,
                    ),
                    key_header: key_header(&key_placement),
                    key_placement,
                    breaker: Breaker::new(rc.resilience.breaker, now),
                    model_breakers: ModelBreakers::new(rc.resilience.breaker),
                }));
            }
            if upstreams.len() != rc.upstreams.len() {
                continue;
            }
            routes.push(Arc::new(Route {
                index,
                config: rc.clone(),
                upstreams,
                auth_mode: config.auth_mode(rc),
                pool: pools.resolve(
                    rc.auth.pool.as_deref(),
                    || format!("routes[{index}].auth.pool"),
                    &mut problems,
                ),
                access: rc.access.rules(),
                chat_log: config.log.chat.as_ref().is_some_and(|c| match &c.routes {
                    Some(prefixes) => prefixes.contains(&rc.prefix),
                    None => rc.kind == crate::config::RouteKind::OpenAi,
                }),
                cache: config
                    .cache
                    .as_ref()
                    .and_then(|c| crate::cache_store::policy::RoutePolicy::of(c, rc)),
            }));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut tenants: HashMap<&str, Arc<Tenant>> = HashMap::new();
        for t in &config.tenants {
            let mut per_route = Vec::with_capacity(routes.len());
            for r in &routes {
                let allowed = t
                    .routes
                    .as_ref()
                    .is_none_or(|p| p.contains(&r.config.prefix));
                if !allowed {
                    per_route.push(None);
                    continue;
                }
                let own = t
                    .pools
                    .iter()
                    .find(|(prefix, _)| *prefix == r.config.prefix)
                    .map(|(_, p)| (p, "pools"));
                let pool = match own.or(t.pool.as_ref().map(|p| (p, "pool"))) {
                    Some((name, key)) => pools.resolve(
                        Some(name),
                        || format!("tenants.{}.{key}", t.name),
                        &mut problems,
                    ),
                    None => r.pool.clone(),
                };
                per_route.push(Some(pool));
            }
            let tenant = Tenant::new(
                t.name.clone(),
                t.models.clone(),
                per_route,
                t.access.rules(),
            );
            tenants.insert(t.name.as_str(), Arc::new(tenant));
        }
        let mut forward_keys = ForwardKeys::default();
        for (i, fk) in config.forward_keys.iter().enumerate() {
            let Some(tenant) = tenants.get(fk.tenant.as_str()) else {
                let at = format!("forward_keys[{i}].tenant");
                problems.add(at, Some(fk.tenant.clone()), "no such tenant");
                continue;
            };
            forward_keys.insert(
                &fk.key.0,
                fk.name.clone(),
                Arc::clone(tenant),
                fk.access.rules(),
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let client_ip = ClientIpResolver::new(config.access.trusted_proxies.set().clone());
        let access = config.access.rules.rules();
        let cors = config.cors.as_ref().map(|c| c.policy().clone());
        let limits =
            match crate::limits::Limits::new(&config.limits, config.redis.ca_file.as_deref()) {
                Ok(l) => l,
                Err(why) => {
                    problems.add("limits.backend", None, why);
                    return Err(problems);
                }
            };
        let chat_log = config.log.chat.as_ref().map(|c| {
            crate::chatlog::ChatLog::deferred(crate::chatlog::ChatLogConfig {
                dir: c.dir.clone(),
                max_file_bytes: c.max_file_bytes,
                keep_files: c.keep_files,
                ..Default::default()
            })
        });
        let cache = match config
            .cache
            .as_ref()
            .map(|c| crate::cache_store::Cache::build(c, config.redis.ca_file.as_deref()))
        {
            Some(Err(why)) => {
                problems.add("cache.backend", None, why);
                return Err(problems);
            }
            Some(Ok(c)) => Some(c),
            None => None,
        };
        let table = RouteTable::new(routes.iter().map(|r| r.config.prefix.as_str()));
        let metrics = metrics_for(&config);
        let pools = pool_list;
        let console = match (&config.admin.key, config.admin.ui) {
            (Some(key), true) => Some(Arc::new(crate::admin::console::Console::new(
                &key.0,
                config.admin.ui_messages,
            ))),
            _ => None,
        };
        let tracer = config.tracing.clone().map(crate::telemetry::Tracer::new);
        Ok(Arc::new(Gateway {
            config,
            routes,
            table,
            forward_keys,
            client_ip,
            access,
            cors,
            limits,
            chat_log,
            in_flight: Arc::new(AtomicUsize::new(0)),
            draining: Arc::new(AtomicBool::new(false)),
            cutoff: Arc::default(),
            cache,
            pools,
            metrics,
            console,
            tracer,
        }))
    }
}

/// The key pools by name.
struct PoolIndex<'c>(HashMap<&'c str, Arc<KeyPool>>);

impl PoolIndex<'_> {
    /// The pool `name` names. One that finds no pool is a problem at `at`, never a route or
    /// tenant quietly left without keys: the cross-check rejects such names first, and this keeps
    /// a `Config` assembled any other way from building a gateway that swaps forward keys for
    /// nothing.
    fn resolve(
        &self,
        name: Option<&str>,
        at: impl FnOnce() -> String,
        problems: &mut Problems,
    ) -> Option<Arc<KeyPool>> {
        let name = name?;
        let pool = self.0.get(name).cloned();
        if pool.is_none() {
            problems.add(
                at(),
                Some(name.to_string()),
                "no such pool in upstream_keys",
            );
        }
        pool
    }
}

/// The metrics' fixed label values: route prefixes, upstream names, and every model name the
/// config mentions (upstream model lists, fallbacks, tenants' allow-lists).
/// The header a pool key goes in, for `KeyPlacement::Header` (see `UpstreamTarget::key_header`).
fn key_header(placement: &KeyPlacement) -> Option<bytes::Bytes> {
    let KeyPlacement::Header(name) = placement else {
        return None;
    };
    let name = bytes::Bytes::from(name.clone().into_bytes());
    // A `Bytes` made from a `Vec` becomes shared on its first clone, which allocates: done
    // here, once, so that no request pays it.
    drop(name.clone());
    Some(name)
}

fn metrics_for(config: &Config) -> crate::metrics::Metrics {
    let routes = config.routes.iter().map(|r| {
        let ups = r.upstreams.iter().map(|u| u.name.clone()).collect();
        (r.prefix.clone(), ups)
    });
    let mut models: Vec<&str> = Vec::new();
    for r in &config.routes {
        for u in &r.upstreams {
            // Names only: a glob or an exclusion is no model a request can name.
            let names = u.models.iter().flatten().map(|(name, _)| name.as_str());
            models.extend(names.filter(|n| !n.contains('*') && !n.starts_with('!')));
        }
        let fb = &r.resilience.fallbacks;
        models.extend(fb.models.iter().map(String::as_str));
        models.extend(fb.context_length.iter().map(String::as_str));
        for (m, list) in &fb.by_model {
            models.push(m);
            models.extend(list.iter().map(String::as_str));
        }
    }
    for t in &config.tenants {
        models.extend(t.models.iter().flatten().map(String::as_str));
    }
    crate::metrics::Metrics::new(routes, models)
}

#[cfg(test)]
mod tests;
