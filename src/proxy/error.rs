//! The gateway's own answers: one enum for every decision it makes, each knowing its HTTP
//! status and its OpenAI-shaped body (`{"error":{"message","type","param","code"}}`), so SDKs
//! parse them. Messages name no internal detail (no upstream URL, address or key).

use bytes::Bytes;
use pingora_core::{Error, ErrorSource, ErrorType};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    /// No route prefix matches the path.
    RouteNotFound,
    /// The upstream's name did not resolve.
    UpstreamDns,
    /// Connecting failed (refused, unreachable, TLS) after every retry.
    UpstreamConnect,
    /// Connecting or waiting for the upstream took longer than the route allows.
    UpstreamTimeout,
    /// The upstream closed or broke the connection before a complete response head.
    UpstreamBroken,
    /// A bug or an unexpected state inside the gateway.
    Internal,
}

impl GatewayError {
    pub fn status(self) -> u16 {
        match self {
            GatewayError::RouteNotFound => 404,
            GatewayError::UpstreamDns
            | GatewayError::UpstreamConnect
            | GatewayError::UpstreamBroken => 502,
            GatewayError::UpstreamTimeout => 504,
            GatewayError::Internal => 500,
        }
    }

    /// OpenAI's `error.type`.
    pub fn kind(self) -> &'static str {
        match self {
            GatewayError::RouteNotFound => "invalid_request_error",
            GatewayError::Internal => "server_error",
            _ => "upstream_error",
        }
    }

    /// OpenAI's `error.code`: stable, for programs (also the metric/log label).
    pub fn code(self) -> &'static str {
        match self {
            GatewayError::RouteNotFound => "route_not_found",
            GatewayError::UpstreamDns => "upstream_dns_failed",
            GatewayError::UpstreamConnect => "upstream_unreachable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::UpstreamBroken => "upstream_connection_broken",
            GatewayError::Internal => "internal_error",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            GatewayError::RouteNotFound => "No route matches this path.",
            GatewayError::UpstreamDns => "The upstream host could not be resolved.",
            GatewayError::UpstreamConnect => "The upstream could not be reached.",
            GatewayError::UpstreamTimeout => "The upstream did not answer in time.",
            GatewayError::UpstreamBroken => "The upstream closed the connection before answering.",
            GatewayError::Internal => "The gateway failed to handle the request.",
        }
    }

    pub fn body(self) -> Bytes {
        let body = serde_json::json!({
            "error": {
                "message": self.message(),
                "type": self.kind(),
                "param": null,
                "code": self.code(),
            }
        });
        Bytes::from(body.to_string())
    }

    /// Classify a Pingora error that ended a request whose cause we did not record ourselves.
    /// `None`: the client went away, nothing to answer.
    pub fn from_pingora(e: &Error) -> Option<GatewayError> {
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

    /// Turn this decision into a Pingora error that ends the request (answered in
    /// `fail_to_proxy`).
    pub fn into_pingora(self) -> Box<Error> {
        Error::explain(ErrorType::HTTPStatus(self.status()), self.code())
    }
}

/// Write a JSON response (status, `content-type: application/json`, body) and end it.
pub async fn respond_json(
    session: &mut Session,
    status: u16,
    body: Bytes,
) -> pingora_core::Result<()> {
    let mut header = ResponseHeader::build(status, Some(3))?;
    header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    header.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    header.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

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
