//! Clients that send slowly, stall, or speak HTTP/1.1 at its edges, over raw sockets: a request
//! head trickled byte by byte is cut at `server.header_timeout`; a body that stops is a 408
//! after `server.body_timeout`; `Expect: 100-continue` is answered; bad chunking is a 400;
//! pipelined requests are answered in order.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn gateway(up: &MockUpstream, server: &str) -> GatewayGuard {
    let yaml = format!(
        r#"server:
{server}routes:
  - prefix: /
    upstream: "{}"
"#,
        up.url()
    );
    start_gateway(&yaml).await
}

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;

/// Read until `done` says the bytes so far are enough, the peer closes, or `limit` passes.
async fn read_until(
    conn: &mut TcpStream,
    limit: Duration,
    done: impl Fn(&[u8]) -> bool,
) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if done(&got) {
            return (got, false);
        }
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// Complete HTTP/1.1 responses (Content-Length framed) at the start of `bytes`.
fn responses(bytes: &[u8]) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let body_end = end + 4 + len;
        if rest.len() < body_end {
            break;
        }
        out.push((
            status,
            String::from_utf8_lossy(&rest[end + 4..body_end]).into_owned(),
        ));
        rest = &rest[body_end..];
    }
    out
}

#[tokio::test]
async fn a_head_trickled_byte_by_byte_is_cut_at_the_header_timeout() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let gw = gateway(&up, "  header_timeout: 1s\n").await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let took = trickle_until_closed(&mut conn, head).await;
    // 1 s configured; generous for a loaded machine, far below the 60 s of a per-read timeout.
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn a_stalled_body_gets_a_408() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let gw = gateway(&up, "  body_timeout: 1s\n").await;
    for framing in ["content-length: 100\r\n", "transfer-encoding: chunked\r\n"] {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        let start = if framing.starts_with("content") {
            "{\"model\":".to_string()
        } else {
            "9\r\n{\"model\":\r\n".to_string()
        };
        let req = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n{framing}\r\n{start}"
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (got, _) = read_until(&mut conn, Duration::from_secs(15), |b| {
            !responses(b).is_empty()
        })
        .await;
        let answers = responses(&got);
        assert_eq!(
            answers.first().map(|a| a.0),
            Some(408),
            "{framing}: {}",
            String::from_utf8_lossy(&got)
        );
        assert!(answers[0].1.contains("\"error\""), "{}", answers[0].1);
        assert!(started.elapsed() < Duration::from_secs(8), "{framing}");
    }
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let gw = gateway(&up, "  threads: 1\n").await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        CHAT.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let (got, closed) = read_until(&mut conn, Duration::from_secs(5), |b| {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    })
    .await;
    assert!(!closed);
    assert_eq!(
        String::from_utf8_lossy(&got),
        "HTTP/1.1 100 Continue\r\n\r\n"
    );
    conn.write_all(CHAT.as_bytes()).await.unwrap();
    let (got, _) = read_until(&mut conn, Duration::from_secs(10), |b| {
        !responses(b).is_empty()
    })
    .await;
    let answers = responses(&got);
    assert_eq!(answers[0].0, 200, "{}", String::from_utf8_lossy(&got));
    assert!(answers[0].1.contains("Hello from mock"));
    // The upstream got the body, and no expectation of its own.
    let seen = &up.requests()[0];
    assert_eq!(seen.body, CHAT.as_bytes());
    assert!(seen.header("expect").is_none());
}

#[tokio::test]
async fn an_invalid_chunk_size_is_a_400() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let gw = gateway(&up, "  threads: 1\n").await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
    conn.write_all(req.as_bytes()).await.unwrap();
    let (got, _) = read_until(&mut conn, Duration::from_secs(10), |b| {
        !responses(b).is_empty()
    })
    .await;
    let answers = responses(&got);
    assert_eq!(
        answers.first().map(|a| a.0),
        Some(400),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::Echo);
    let gw = gateway(&up, "  threads: 1\n").await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let one = |n: u32| {
        let body = format!(r#"{{"model":"m{n}","messages":[]}}"#);
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    conn.write_all(format!("{}{}", one(1), one(2)).as_bytes())
        .await
        .unwrap();
    let (got, closed) = read_until(&mut conn, Duration::from_secs(10), |b| {
        responses(b).len() >= 2
    })
    .await;
    let answers = responses(&got);
    match answers.len() {
        // Both answered, in order.
        2 => {
            assert_eq!((answers[0].0, answers[1].0), (200, 200));
            assert!(answers[0].1.contains("m1"), "{}", answers[0].1);
            assert!(answers[1].1.contains("m2"), "{}", answers[1].1);
        }
        // Or the first, then a clean close (the client resends the second).
        1 => {
            assert!(closed, "one answer and the connection left hanging");
            assert!(answers[0].1.contains("m1"), "{}", answers[0].1);
        }
        _ => panic!("no answer: {}", String::from_utf8_lossy(&got)),
    }
}

/// The deadline of a keep-alive connection's next head starts at its first byte: that head,
/// trickled, is cut too (after the first request was answered).
#[tokio::test]
async fn a_second_head_trickled_on_a_kept_alive_connection_is_cut_too() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let gw = gateway(&up, "  header_timeout: 1s\n").await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{CHAT}",
        CHAT.len()
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let (got, _) = read_until(&mut conn, Duration::from_secs(10), |b| {
        !responses(b).is_empty()
    })
    .await;
    assert_eq!(responses(&got).first().map(|a| a.0), Some(200));
    // Idle past the timeout first: the deadline must not have started before the first byte.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa\r\n";
    let took = trickle_until_closed(&mut conn, head).await;
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert_eq!(up.request_count(), 1);
}

/// The head deadline starts with a request's first byte: a keep-alive connection idle for
/// longer than `header_timeout` between requests still serves the next one.
#[tokio::test]
async fn an_idle_keep_alive_connection_is_not_cut_by_the_header_timeout() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let gw = gateway(&up, "  header_timeout: 1s\n").await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{CHAT}",
        CHAT.len()
    );
    for round in 0..2 {
        if round == 1 {
            // Idle past the header timeout, between requests.
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        conn.write_all(req.as_bytes()).await.unwrap();
        let (got, _) = read_until(&mut conn, Duration::from_secs(10), |b| {
            !responses(b).is_empty()
        })
        .await;
        let answers = responses(&got);
        assert_eq!(answers.first().map(|a| a.0), Some(200), "round {round}");
    }
}

#[test]
fn zero_client_timeouts_are_refused_with_their_paths() {
    let yaml = r#"server: {header_timeout: 0s, body_timeout: 0s}
routes:
  - {prefix: /, upstream: 'http://h'}
"#;
    let Err(problems) = llm_forward::config::parse_bytes(yaml.as_bytes(), &|_| None) else {
        panic!("zero timeouts accepted");
    };
    let problems = problems.to_string();
    for key in ["server.header_timeout", "server.body_timeout"] {
        assert!(
            problems.contains(&format!("{key}: \"0s\": must be above 0")),
            "{problems}"
        );
    }
}

/// Sends `head` a byte every 300 ms and never ends it; how long until the gateway closed the
/// connection (panics if it is still open 30 s after the last byte).
async fn trickle_until_closed(conn: &mut TcpStream, head: &[u8]) -> Duration {
    let started = Instant::now();
    let (mut rd, mut wr) = conn.split();
    let writer = async {
        for b in head {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // The head never ends; wait for the gateway to act.
        tokio::time::sleep(Duration::from_secs(30)).await;
    };
    let reader = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        _ = writer => panic!("the connection was still open after 30 s"),
        _ = reader => {}
    }
    started.elapsed()
}
