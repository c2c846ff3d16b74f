//! The admin service: a second Pingora service on its own listener (`admin.listen`, loopback by
//! default), apart from the proxy port, so that scraping or administering never competes with
//! client traffic for a route prefix and is never reachable through the proxy's port.
//!
//! A request is routed here by method and exact path, one line per endpoint in [`route`]; each
//! endpoint lives in its own module and answers a whole [`Response`]: `GET /metrics`
//! (Prometheus), which needs `admin.metrics_token` as a bearer token when one is set (else no
//! key: bind the listener to loopback or a private network; the README says so), `GET /healthz`,
//! which never needs one (load balancers probe it), and — with `admin.ui` — the web console
//! (`console.rs`), which needs the admin key for everything but its login page. Both secrets
//! are checked by `gate.rs`. The console's
//! live tail streams, so this is an `HttpServerApp` that writes its own answers.

pub(crate) mod board;
pub(crate) mod console;
pub(crate) mod gate;
mod mask;
pub(crate) mod metrics;
mod reply;

use crate::state::Gateway;
use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;
use std::sync::Arc;

pub(crate) struct AdminApp {
    pub gateway: Arc<Gateway>,
    /// `admin.metrics_token`: without it, `/metrics` is open.
    metrics_gate: Option<gate::Gate>,
}

/// Which endpoint answers `method path`.
enum Endpoint {
    Metrics,
    Health,
}

fn route(method: &Method, path: &str) -> Result<Endpoint, StatusCode> {
    let endpoint = match path {
        "/metrics" => Endpoint::Metrics,
        "/healthz" => Endpoint::Health,
        _ => return Err(StatusCode::NOT_FOUND),
    };
    if method != Method::GET && method != Method::HEAD {
        return Err(StatusCode::METHOD_NOT_ALLOWED);
    }
    Ok(endpoint)
}

#[async_trait]
impl HttpServerApp for AdminApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut http: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !matches!(http.read_request().await, Ok(true)) {
            return None;
        }
        http.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        let console = self.gateway.console.as_ref();
        let reusable = match console {
            Some(c) => match c.serve(&self.gateway, &mut http, shutdown).await {
                Some(reply) => reply.send(&mut http).await,
                None => self.answer(&mut http).await,
            },
            None => self.answer(&mut http).await,
        };
        if !reusable {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&http);
        match http.finish().await {
            Ok(Some(stream)) => Some(ReusedHttpStream::from_reusable_stream(stream, settings)),
            _ => None,
        }
    }
}

impl AdminApp {
    /// The endpoints that need no key. `false`: the connection cannot be reused.
    async fn answer(&self, http: &mut ServerSession) -> bool {
        let req = http.req_header();
        let head_only = req.method == Method::HEAD;
        let answer = match route(&req.method, req.uri.path()) {
            Ok(Endpoint::Metrics)
                if self
                    .metrics_gate
                    .as_ref()
                    .is_some_and(|g| !g.admits(&req.headers)) =>
            {
                let refusal = reply::Reply::error(
                    401,
                    "send the metrics token as `Authorization: Bearer <admin.metrics_token>`",
                )
                .with_header("www-authenticate", "Bearer".to_string());
                return refusal.send(http).await;
            }
            Ok(Endpoint::Metrics) => metrics::serve(&self.gateway).await,
            Ok(Endpoint::Health) => text(StatusCode::OK, "text/plain", b"OK\n".to_vec()),
            Err(status) => {
                let body = format!("{}\n", status.canonical_reason().unwrap_or("error"));
                text(status, "text/plain", body.into_bytes())
            }
        };
        let (parts, body) = answer.into_parts();
        let head: pingora_http::ResponseHeader = parts.into();
        if http.write_response_header(Box::new(head)).await.is_err() {
            return false;
        }
        head_only || body.is_empty() || http.write_response_body(body.into(), true).await.is_ok()
    }
}

/// A complete answer with its length (the app writes the body in one piece).
pub(crate) fn text(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let len = resp.body().len();
    let headers = resp.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// The Pingora service for `addr`, ready to add to the server.
pub(crate) fn service(
    gateway: Arc<Gateway>,
    addr: std::net::SocketAddr,
) -> pingora_core::services::listening::Service<AdminApp> {
    let mut service = pingora_core::services::listening::Service::new(
        "llm-forward admin".into(),
        AdminApp {
            metrics_gate: gateway
                .config
                .admin
                .metrics_token
                .as_ref()
                .map(|t| gate::Gate::new(&t.0)),
            gateway,
        },
    );
    // Scrapes are rare and cheap: one thread, whatever the proxy runs with.
    service.threads = Some(1);
    service.add_tcp(&addr.to_string());
    service
}
