//! What an admin endpoint answers, and how it is written: a small response type, so each
//! endpoint returns a value and one place writes heads, lengths and security headers.

use bytes::Bytes;
use pingora_core::protocols::http::ServerSession;
use serde::Serialize;

pub(crate) enum Reply {
    /// An embedded asset.
    Static {
        body: &'static [u8],
        content_type: &'static str,
    },
    Body {
        status: u16,
        content_type: &'static str,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
    },
    /// The endpoint wrote its own response (a live stream); nothing more to send.
    Streamed,
}

impl Reply {
    pub(crate) fn json<T: Serialize>(value: &T) -> Reply {
        match serde_json::to_vec(value) {
            Ok(body) => Reply::body(200, "application/json", body),
            Err(_) => Reply::error(500, "could not encode the answer"),
        }
    }

    pub(crate) fn text(content_type: &'static str, text: String) -> Reply {
        Reply::body(200, content_type, text.into_bytes())
    }

    pub(crate) fn empty(status: u16) -> Reply {
        Reply::body(status, "text/plain", Vec::new())
    }

    /// An OpenAI-shaped error, like the proxy's own.
    pub(crate) fn error(status: u16, message: &str) -> Reply {
        let body = serde_json::json!({"error": {
            "message": message,
            "type": if status == 401 { "authentication_error" } else { "invalid_request_error" },
            "param": null,
            "code": null,
        }});
        Reply::body(status, "application/json", body.to_string().into_bytes())
    }

    fn body(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply::Body {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    pub(crate) fn with_header(self, name: &'static str, value: String) -> Reply {
        match self {
            Reply::Static { body, content_type } => Reply::Body {
                status: 200,
                content_type,
                body: body.to_vec(),
                headers: vec![(name, value)],
            },
            Reply::Body {
                status,
                content_type,
                body,
                mut headers,
            } => {
                headers.push((name, value));
                Reply::Body {
                    status,
                    content_type,
                    body,
                    headers,
                }
            }
            Reply::Streamed => Reply::Streamed,
        }
    }

    /// Write the reply. `false`: the connection cannot be reused.
    pub(crate) async fn send(self, http: &mut ServerSession) -> bool {
        let (status, content_type, body, headers) = match self {
            Reply::Streamed => return false,
            Reply::Static { body, content_type } => {
                (200, content_type, Bytes::from_static(body), Vec::new())
            }
            Reply::Body {
                status,
                content_type,
                body,
                headers,
            } => (status, content_type, Bytes::from(body), headers),
        };
        let Ok(mut head) = pingora_http::ResponseHeader::build(status, Some(6 + headers.len()))
        else {
            return false;
        };
        let fixed = [
            ("content-type", content_type.to_string()),
            ("content-length", body.len().to_string()),
            ("cache-control", "no-store".to_string()),
            ("x-content-type-options", "nosniff".to_string()),
            ("referrer-policy", "no-referrer".to_string()),
        ];
        for (name, value) in fixed.into_iter().chain(headers) {
            if head.append_header(name, value).is_err() {
                return false;
            }
        }
        if http.write_response_header(Box::new(head)).await.is_err() {
            return false;
        }
        if !body.is_empty() && http.write_response_body(body, true).await.is_err() {
            return false;
        }
        true
    }
}

/// The request body, up to `limit` bytes; a larger one is answered with 413.
pub(super) async fn read_body(http: &mut ServerSession, limit: usize) -> Result<Vec<u8>, Reply> {
    let mut body = Vec::new();
    loop {
        match http.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(Reply::error(413, "the body is too large"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(_) => return Err(Reply::error(400, "could not read the body")),
        }
    }
}
