//! Auth phase (`request_filter`, after routing): what the client's credential means on this
//! route. A forward key is looked up (constant time) and resolves to its tenant, whose routes,
//! IP rules and key pool apply; without one, the route's mode decides between refusing (401),
//! passing the client's own credential through, or injecting a pool key for everyone.

use super::ctx::RequestCtx;
use super::error::GatewayError;
use crate::config::AuthMode;
use crate::credentials::CREDENTIAL_HEADERS;
use crate::state::Gateway;
use std::sync::Arc;

pub(super) fn authenticate(
    gateway: &Gateway,
    req: &pingora_http::RequestHeader,
    ctx: &mut RequestCtx,
) -> pingora_core::Result<()> {
    let Some(route) = ctx.route().cloned() else {
        return Err(ctx.fail(GatewayError::Internal));
    };
    if let Some(ip) = ctx.client.ip {
        if !route.access.permits(ip) {
            return Err(ctx.fail(GatewayError::IpForbidden));
        }
    }
    match route.auth_mode {
        AuthMode::Passthrough => return Ok(()),
        AuthMode::Open => {
            ctx.auth.pool = route.pool.clone();
            ctx.auth.swap_credentials = true;
            return Ok(());
        }
        AuthMode::ForwardKeys | AuthMode::Mixed => {}
    }
    let found = client_credential(req).and_then(|token| gateway.forward_keys.lookup(token));
    let Some(key) = found else {
        return match route.auth_mode {
            AuthMode::Mixed => Ok(()),
            _ => Err(ctx.fail(GatewayError::InvalidApiKey)),
        };
    };
    ctx.auth.key_id = Some(key.id.clone());
    let tenant = &key.tenant;
    if !tenant.allows_route(route.index) {
        let why = match tenant.allows_any_route() {
            true => GatewayError::RouteNotAllowed,
            false => GatewayError::KeyNotProvisioned,
        };
        return Err(ctx.fail(why));
    }
    if let Some(ip) = ctx.client.ip {
        if !key.access.permits(ip) || !tenant.access.permits(ip) {
            return Err(ctx.fail(GatewayError::IpForbidden));
        }
    }
    // Config validation guarantees a pool here (or on every upstream of the route); without one
    // the forward key would be the only credential left, and it must never go upstream.
    let pool = tenant.pool(route.index);
    if pool.is_none()
        && route
            .upstreams
            .iter()
            .any(|u| u.config.needs_route_pool(&route.config.auth))
    {
        return Err(ctx.fail(GatewayError::NoUpstreamKey));
    }
    ctx.auth.pool = pool.cloned();
    ctx.auth.swap_credentials = true;
    ctx.auth.tenant = Some(Arc::clone(tenant));
    Ok(())
}

/// The credential a client sent, wherever its SDK puts it: the first of
/// [`CREDENTIAL_HEADERS`] present (`Authorization: Bearer …` for OpenAI, `api-key` for Azure,
/// `x-goog-api-key` for Gemini, `x-api-key` for Anthropic), else Gemini's `key` query parameter.
pub(super) fn client_credential(req: &pingora_http::RequestHeader) -> Option<&str> {
    let parsed = crate::credentials::credential_header_names();
    for (name, parsed) in CREDENTIAL_HEADERS.into_iter().zip(parsed) {
        let Some(v) = req.headers.get(parsed).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let v = v.trim();
        if name != "authorization" {
            return Some(v);
        }
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if !token.is_empty() {
            return Some(token);
        }
    }
    req.uri
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .filter(|v| !v.is_empty())
}

/// Mark the headers that carry client credentials sensitive, so no `Debug` print of the request
/// (Pingora's logs, ours) can show them.
pub(super) fn hide_credentials(req: &mut pingora_http::RequestHeader) {
    crate::credentials::hide(req);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ctx::Routed;

    /// A forward key swapped for its tenant's pool: the auth phase keeps the key's id, tenant
    /// and pool by reference count (before: a copy of the id per request).
    #[test]
    fn a_forward_key_is_authenticated_without_allocating() {
        let yaml = "upstream_keys:\n  main: [sk-upstream-1]\ntenants:\n  gold: {}\n\
            forward_keys:\n  - {key: fk-gold, tenant: gold, name: alice}\n\
            routes:\n  - prefix: /\n    upstream: http://127.0.0.1:1\n    auth: {pool: main}\n";
        let config = crate::config::parse_bytes(yaml.as_bytes(), &|_| None).unwrap();
        let gateway = Gateway::build(config).ok().unwrap();
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut ctx = RequestCtx::new(&counter);
        ctx.routed = Some(Routed {
            route: Arc::clone(&gateway.routes[0]),
            rest: "/v1/chat/completions".into(),
            query: None,
        });
        let mut req =
            pingora_http::RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        req.insert_header("authorization", "Bearer fk-gold")
            .unwrap();
        let (n, r) = crate::alloc_count::allocations(|| authenticate(&gateway, &req, &mut ctx));
        r.unwrap();
        assert_eq!(n, 0);
        assert_eq!(ctx.auth.key_id.as_deref(), Some("alice"));
        assert!(ctx.auth.swap_credentials);
        assert!(ctx.auth.pool.is_some() && ctx.auth.tenant.is_some());
    }
}
