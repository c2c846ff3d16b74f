//! A tenant's model list, wherever the request names a model (called from the body phase).
//! The path is checked first, for every request, bodies or not: Azure deployments and Gemini
//! models are named there, in what the upstream receives (its base path plus the routed rest).
//! Then the body's model (JSON or multipart, read by `body.rs`), or, when the body names none,
//! the route's `default_model`; a body that names no model on a route without one is refused,
//! unless the path named it.

use super::ctx::RequestCtx;
use super::error::GatewayError;
use crate::keys::tenant::Tenant;
use crate::model_names::path_models;
use crate::routing::upstream_target;
use crate::state::Route;

/// Checks the models the forwarded path names against `tenant`'s list. `Ok(true)`: the path
/// names at least one (all allowed).
pub(super) fn check_path(
    route: &Route,
    ctx: &RequestCtx,
    tenant: &Tenant,
) -> Result<bool, GatewayError> {
    let Some(rest) = ctx.routed.as_ref().map(|r| &r.rest) else {
        return Ok(false);
    };
    let mut named = false;
    for upstream in &route.upstreams {
        let path = upstream_target(&upstream.config.url.base_path, rest, None);
        let models = path_models(&path).map_err(|_| GatewayError::AmbiguousModel)?;
        for model in models {
            if !tenant.allows_model(&model) {
                return Err(GatewayError::ModelNotAllowed);
            }
            named = true;
        }
    }
    Ok(named)
}

/// Checks the body's model (or, without one, the route's default) against `tenant`'s list.
pub(super) fn check_body(
    route: &Route,
    tenant: &Tenant,
    model: Option<&str>,
    path_named: bool,
) -> Result<(), GatewayError> {
    match model.or(route.config.default_model.as_deref()) {
        Some(m) if !tenant.allows_model(m) => Err(GatewayError::ModelNotAllowed),
        Some(_) => Ok(()),
        None if path_named => Ok(()),
        None => Err(GatewayError::ModelRequired),
    }
}
