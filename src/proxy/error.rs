//! The gateway's own answers: one enum for every decision it makes, each knowing its HTTP
//! status and its OpenAI-shaped body (`{"error":{"message","type","param","code"}}`), so SDKs
//! parse them. Messages name no internal detail (no upstream URL, address or key).

use bytes::Bytes;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GatewayError {
    /// No route prefix matches the path.
    RouteNotFound,
    /// The path has an encoded slash or a backslash (`routing::normalize_path`).
    InvalidPath,
    /// The request names its model twice, or in a way parsers disagree on (case variants of a
    /// JSON key, a multipart body that does not parse cleanly).
    AmbiguousModel,
    /// A tenant with a model list sent a body that names no model, on a route without a
    /// `default_model`.
    ModelRequired,
    /// The client's address is not allowed (global, route, tenant or key rules).
    IpForbidden,
    /// No valid forward key where one is required.
    InvalidApiKey,
    /// The forward key's tenant may not use this route.
    RouteNotAllowed,
    /// The forward key's tenant may use no route at all (an openai-forward level without
    /// upstream keys: refused here rather than sending the forward key upstream).
    KeyNotProvisioned,
    /// The forward key's tenant may not use this model.
    ModelNotAllowed,
    /// The body is larger than the route reads.
    BodyTooLarge,
    /// The body of a JSON API request is not a JSON object.
    InvalidJson,
    /// The request body's framing is broken (a bad chunk size, a malformed trailer).
    InvalidBody,
    /// The client stopped sending its body for longer than `server.body_timeout`.
    RequestTimeout,
    /// Every key of the pool is rejected or cooling down.
    NoUpstreamKey,
    /// Over a request-rate limit.
    RateLimited,
    /// Over a concurrency limit.
    ConcurrencyLimited,
    /// The token budget cannot cover this request's reservation.
    TokensExhausted,
    /// The shared limiter did not answer and the policy is to refuse.
    LimiterUnavailable,
    /// The upstream's name did not resolve.
    UpstreamDns,
    /// Connecting failed (refused, unreachable, TLS) after every retry.
    UpstreamConnect,
    /// Connecting or waiting for the upstream took longer than the route allows.
    UpstreamTimeout,
    /// The upstream closed or broke the connection before a complete response head.
    UpstreamBroken,
    /// No upstream of the route serves the requested model (or its fallbacks).
    ModelNotServed,
    /// The stream stopped (no chunk within the idle timeout, or the upstream broke it) after
    /// part of it reached the client.
    StreamInterrupted,
    /// The gateway stopped (the grace period of a graceful stop ended) while the request ran.
    CutByShutdown,
    /// A bug or an unexpected state inside the gateway.
    Internal,
}

impl GatewayError {
    /// Every decision, in declaration order (`e as usize` is its position): metrics keep one
    /// counter per decision in an array indexed by it. `Internal` stays last.
    pub(crate) const ALL: [GatewayError; GatewayError::Internal as usize + 1] = [
        GatewayError::RouteNotFound,
        GatewayError::InvalidPath,
        GatewayError::AmbiguousModel,
        GatewayError::ModelRequired,
        GatewayError::IpForbidden,
        GatewayError::InvalidApiKey,
        GatewayError::RouteNotAllowed,
        GatewayError::KeyNotProvisioned,
        GatewayError::ModelNotAllowed,
        GatewayError::BodyTooLarge,
        GatewayError::InvalidJson,
        GatewayError::InvalidBody,
        GatewayError::RequestTimeout,
        GatewayError::NoUpstreamKey,
        GatewayError::RateLimited,
        GatewayError::ConcurrencyLimited,
        GatewayError::TokensExhausted,
        GatewayError::LimiterUnavailable,
        GatewayError::UpstreamDns,
        GatewayError::UpstreamConnect,
        GatewayError::UpstreamTimeout,
        GatewayError::UpstreamBroken,
        GatewayError::ModelNotServed,
        GatewayError::StreamInterrupted,
        GatewayError::CutByShutdown,
        GatewayError::Internal,
    ];
}

impl GatewayError {
    pub(crate) fn status(self) -> u16 {
        match self {
            GatewayError::RouteNotFound | GatewayError::ModelNotServed => 404,
            GatewayError::IpForbidden
            | GatewayError::RouteNotAllowed
            | GatewayError::KeyNotProvisioned
            | GatewayError::ModelNotAllowed => 403,
            GatewayError::InvalidApiKey => 401,
            GatewayError::BodyTooLarge => 413,
            GatewayError::InvalidJson
            | GatewayError::InvalidPath
            | GatewayError::AmbiguousModel
            | GatewayError::ModelRequired
            | GatewayError::InvalidBody => 400,
            GatewayError::RequestTimeout => 408,
            GatewayError::NoUpstreamKey
            | GatewayError::LimiterUnavailable
            | GatewayError::CutByShutdown => 503,
            GatewayError::RateLimited
            | GatewayError::ConcurrencyLimited
            | GatewayError::TokensExhausted => 429,
            GatewayError::UpstreamDns
            | GatewayError::UpstreamConnect
            | GatewayError::UpstreamBroken
            | GatewayError::StreamInterrupted => 502,
            GatewayError::UpstreamTimeout => 504,
            GatewayError::Internal => 500,
        }
    }

    /// OpenAI's `error.type`.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            GatewayError::RouteNotFound
            | GatewayError::InvalidApiKey
            | GatewayError::RouteNotAllowed
            | GatewayError::KeyNotProvisioned
            | GatewayError::ModelNotAllowed
            | GatewayError::BodyTooLarge
            | GatewayError::InvalidJson
            | GatewayError::InvalidPath
            | GatewayError::AmbiguousModel
            | GatewayError::ModelRequired
            | GatewayError::InvalidBody
            | GatewayError::RequestTimeout
            | GatewayError::ModelNotServed => "invalid_request_error",
            GatewayError::IpForbidden => "permission_error",
            // OpenAI's own type for rate-limit errors.
            GatewayError::RateLimited | GatewayError::ConcurrencyLimited => "requests",
            GatewayError::TokensExhausted => "tokens",
            GatewayError::Internal | GatewayError::CutByShutdown => "server_error",
            _ => "upstream_error",
        }
    }

    /// OpenAI's `error.code`: stable, for programs (also the metric/log label).
    pub(crate) fn code(self) -> &'static str {
        match self {
            GatewayError::RouteNotFound => "route_not_found",
            GatewayError::IpForbidden => "ip_forbidden",
            GatewayError::InvalidApiKey => "invalid_api_key",
            GatewayError::RouteNotAllowed => "route_not_allowed",
            GatewayError::KeyNotProvisioned => "key_not_provisioned",
            GatewayError::ModelNotAllowed => "model_not_allowed",
            GatewayError::BodyTooLarge => "request_too_large",
            GatewayError::InvalidJson => "invalid_json",
            GatewayError::InvalidPath => "invalid_path",
            GatewayError::AmbiguousModel => "ambiguous_model",
            GatewayError::ModelRequired => "model_required",
            GatewayError::InvalidBody => "invalid_body",
            GatewayError::RequestTimeout => "request_timeout",
            GatewayError::NoUpstreamKey => "no_upstream_key_available",
            GatewayError::RateLimited => "rate_limit_exceeded",
            GatewayError::ConcurrencyLimited => "concurrency_limit_exceeded",
            GatewayError::TokensExhausted => "token_quota_exceeded",
            GatewayError::LimiterUnavailable => "rate_limiter_unavailable",
            GatewayError::UpstreamDns => "upstream_dns_failed",
            GatewayError::UpstreamConnect => "upstream_unreachable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::UpstreamBroken => "upstream_connection_broken",
            GatewayError::ModelNotServed => "model_not_found",
            GatewayError::StreamInterrupted => "stream_interrupted",
            GatewayError::CutByShutdown => "cut_by_shutdown",
            GatewayError::Internal => "internal_error",
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            GatewayError::RouteNotFound => "No route matches this path.",
            GatewayError::IpForbidden => "Requests from this address are not allowed.",
            GatewayError::InvalidApiKey => "Missing or invalid API key.",
            GatewayError::RouteNotAllowed => "This API key may not use this route.",
            GatewayError::KeyNotProvisioned => {
                "This API key has no upstream key on this gateway; ask its operator to add one."
            }
            GatewayError::ModelNotAllowed => "This API key may not use the requested model.",
            GatewayError::BodyTooLarge => "The request body is too large.",
            GatewayError::InvalidJson => "The request body is not a valid JSON object.",
            GatewayError::InvalidPath => {
                "The request path may not contain encoded slashes or backslashes."
            }
            GatewayError::AmbiguousModel => {
                "The request names its model more than once or in a form that cannot be read unambiguously."
            }
            GatewayError::ModelRequired => "This API key must name an allowed `model` in the request.",
            GatewayError::InvalidBody => "The request body is not validly framed.",
            GatewayError::RequestTimeout => "The request body stopped arriving; send it again.",
            GatewayError::NoUpstreamKey => "No upstream key is available right now; retry later.",
            GatewayError::RateLimited => "Rate limit reached; retry after the time in Retry-After.",
            GatewayError::ConcurrencyLimited => {
                "Too many requests in flight for this key; retry when one finishes."
            }
            GatewayError::LimiterUnavailable => "The rate limiter is unavailable; retry shortly.",
            GatewayError::TokensExhausted => {
                "Token budget exhausted; retry after the time in Retry-After."
            }
            GatewayError::UpstreamDns => "The upstream host could not be resolved.",
            GatewayError::UpstreamConnect => "The upstream could not be reached.",
            GatewayError::UpstreamTimeout => "The upstream did not answer in time.",
            GatewayError::UpstreamBroken => "The upstream closed the connection before answering.",
            GatewayError::ModelNotServed => "No upstream of this route serves the requested model.",
            GatewayError::StreamInterrupted => {
                "The upstream stream broke off before its end; the answer is incomplete."
            }
            GatewayError::CutByShutdown => {
                "The gateway is shutting down; the answer is incomplete. Retry the request."
            }
            GatewayError::Internal => "The gateway failed to handle the request.",
        }
    }

    #[cfg(test)]
    pub(crate) fn body(self) -> Bytes {
        self.body_with_message(self.message())
    }

    /// The body of an answer to request `request_id`: OpenAI's shape has no field for it, so
    /// it ends the message, `… (request id: <id>)`, where people reading errors look (SDKs
    /// show the message; the `x-request-id` header carries it too).
    pub(crate) fn body_for(self, request_id: &str) -> Bytes {
        self.body_with_message(&format!("{} (request id: {request_id})", self.message()))
    }

    fn body_with_message(self, message: &str) -> Bytes {
        let body = serde_json::json!({
            "error": {
                "message": message,
                "type": self.kind(),
                "param": null,
                "code": self.code(),
            }
        });
        Bytes::from(body.to_string())
    }

    /// Classify a Pingora error that ended a request whose cause we did not record ourselves.
    /// `None`: the client went away, nothing to answer.
    pub(crate) fn from_pingora(e: &Error) -> Option<GatewayError> {
        use ErrorType::*;
        if let HTTPStatus(_) = e.etype() {
            return Some(GatewayError::Internal);
        }
        match e.esource() {
            ErrorSource::Downstream => None,
            ErrorSource::Upstream => Some(match e.etype() {
                ConnectTimedout | TLSHandshakeTimedout | ReadTimedout | WriteTimedout => {
                    GatewayError::UpstreamTimeout
                }
                ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
                | TLSHandshakeFailure | InvalidCert | BindError | SocketError => {
                    GatewayError::UpstreamConnect
                }
                _ => GatewayError::UpstreamBroken,
            }),
            ErrorSource::Internal | ErrorSource::Unset => Some(GatewayError::Internal),
        }
    }

    /// How reading the client's body failed, when the client is still there to be told:
    /// it stalled past the body timeout (408) or its chunking is invalid (400).
    pub(crate) fn from_client_body(e: &Error) -> Option<GatewayError> {
        // Pingora's chunked-body reader's error types (its `body` module is private).
        const INVALID_CHUNK: ErrorType = ErrorType::Custom("InvalidChunk");
        const INVALID_TRAILER_END: ErrorType = ErrorType::Custom("InvalidTrailerEnd");
        let etype = e.etype();
        if *etype == ErrorType::ReadTimedout {
            Some(GatewayError::RequestTimeout)
        } else if [
            INVALID_CHUNK,
            INVALID_TRAILER_END,
            ErrorType::InvalidHTTPHeader,
        ]
        .contains(etype)
        {
            Some(GatewayError::InvalidBody)
        } else {
            None
        }
    }

    /// Turn this decision into a Pingora error that ends the request (answered in
    /// `fail_to_proxy`).
    pub(crate) fn into_pingora(self) -> Box<Error> {
        Error::explain(ErrorType::HTTPStatus(self.status()), self.code())
    }
}

/// Write a local answer: `status`, an optional JSON body, and `extra` headers (CORS).
pub(crate) async fn respond(
    session: &mut Session,
    status: u16,
    json: Option<Bytes>,
    extra: &[(http::HeaderName, http::HeaderValue)],
) -> pingora_core::Result<()> {
    let mut header = ResponseHeader::build(status, Some(4 + extra.len()))?;
    let body = json.unwrap_or_default();
    if !body.is_empty() {
        header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    }
    header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    header.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    for (name, value) in extra {
        header.insert_header(name.clone(), value.clone())?;
    }
    let empty = body.is_empty();
    session
        .write_response_header(Box::new(header), empty)
        .await?;
    if !empty {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_decision_at_its_position() {
        for (i, e) in GatewayError::ALL.into_iter().enumerate() {
            assert_eq!(e as usize, i, "{e:?}");
        }
    }

    #[test]
    fn bodies_have_openai_shape() {
        for e in [GatewayError::RouteNotFound, GatewayError::UpstreamTimeout] {
            let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
            let err = &v["error"];
            assert!(err["message"].is_string() && err["type"].is_string());
            assert!(err["param"].is_null() && err["code"].is_string());
        }
    }
}
