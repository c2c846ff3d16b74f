//! The client's side of the connection at the edges of HTTP/1.1: how long its head and body may
//! take, and the go-ahead an `Expect: 100-continue` client waits for.
//!
//! The head has a deadline as a whole (`server.header_timeout`, see `head_deadline.rs`); once
//! it is in (`early_request_filter`) that deadline is lifted and the body gets an idle timeout
//! instead (`server.body_timeout`, between bytes: a large upload over a slow link is fine, a
//! stalled one gets a 408). When the request ends (`logging`) the next head's deadline is set
//! to start with its first byte.
//!
//! Pingora 0.9.1 never sends `100 Continue` itself, and the body phase reads bodies before any
//! upstream could: a client that waits for the go-ahead would wait (curl: 1 s, others for
//! ever). So the gateway sends it when it is about to read (a body refused on its declared
//! length gets the 413 instead), and takes `Expect` out of the request sent upstream.

use crate::state::Gateway;
use pingora_proxy::Session;

/// `early_request_filter`: the head is complete.
pub(super) fn head_received(gateway: &Gateway, session: &mut Session) {
    crate::head_deadline::lift(session);
    let body_timeout = gateway.config.server.body_timeout;
    session
        .as_downstream_mut()
        .set_read_timeout(Some(body_timeout));
}

/// `logging`: the request is over; the next head's deadline starts with its first byte.
pub(super) fn request_done(session: &Session) {
    crate::head_deadline::rearm(session);
}

/// Before the body is read: answer `Expect: 100-continue` and drop the expectation.
pub(super) async fn go_ahead(session: &mut Session) -> pingora_core::Result<()> {
    let expects = session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects {
        return Ok(());
    }
    session
        .req_header_mut()
        .remove_header(&http::header::EXPECT);
    let http11 = session.req_header().version == http::Version::HTTP_11;
    if http11 && !session.as_downstream_mut().is_body_done() {
        session
            .as_downstream_mut()
            .write_continue_response()
            .await?;
    }
    Ok(())
}
