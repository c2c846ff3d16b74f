//! Cache backends over real sockets: the disk store across a restart and after a `kill -9`,
//! two nodes sharing Redis, Redis down (misses, never errors); a client that leaves before the
//! end stores nothing; hits are free under token budgets (unless `charge_hits`) and paced.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::process::{gateway_command, server_yaml, Process};
use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

fn config(upstream: &str, cache: &str) -> String {
    format!(
        r#"routes:
  - prefix: /
    upstream: "{upstream}"
cache:
  default: true
{cache}"#
    )
}

fn chat(content: &str) -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": content}]})
}

/// POST a chat; (status, x-cache, body).
async fn ask(addr: SocketAddr, body: &Value) -> (u16, String, bytes::Bytes) {
    let r = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("authorization", "Bearer sk-client")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    (status, cache, r.bytes().await.unwrap())
}

fn entry_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).unwrap().flatten() {
        if shard.file_name() != "tmp" && shard.path().is_dir() {
            out.extend(
                std::fs::read_dir(shard.path())
                    .unwrap()
                    .flatten()
                    .map(|f| f.path()),
            );
        }
    }
    out
}

#[tokio::test]
async fn the_disk_store_survives_a_restart() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let dir = tempfile::tempdir().unwrap();
    let yaml = config(
        &up.url(),
        &format!(
            r#"  backend: disk
  path: "{}"
"#,
            dir.path().display()
        ),
    );
    let first = {
        let gw = start_gateway(&yaml).await;
        let (status, cache, body) = ask(gw.addr, &chat("a")).await;
        assert_eq!((status, cache.as_str()), (200, "MISS"));
        ask(gw.addr, &chat("b")).await;
        body
    };
    assert_eq!(entry_files(dir.path()).len(), 2);
    let gw = start_gateway(&yaml).await;
    let (status, cache, body) = ask(gw.addr, &chat("a")).await;
    assert_eq!((status, cache.as_str()), (200, "HIT"));
    assert_eq!(body, first);
    assert_eq!(up.request_count(), 2);
    // No key material in the store: file names are digests, contents the upstream's answer.
    for f in entry_files(dir.path()) {
        let bytes = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("sk-client"), "{}", f.display());
        assert!(!text.to_ascii_lowercase().contains("authorization"));
    }
}

#[tokio::test]
async fn after_kill_9_the_disk_store_serves_nothing_partial() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("cache");
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    std::fs::write(
        dir.path().join("c.yaml"),
        format!(
            "{}{}",
            server_yaml(dir.path(), port, "  threads: 1\n"),
            config(
                &up.url(),
                &format!(
                    r#"  backend: disk
  path: '{}'
"#,
                    store.display()
                )
            )
        ),
    )
    .unwrap();
    let start = || {
        Process::spawn(
            gateway_command(dir.path())
                .args(["run", "-c", "c.yaml"])
                .stderr(Stdio::null()),
        )
    };
    let mut p = start();
    wait_listening(addr).await;
    for q in ["a", "b", "c"] {
        assert_eq!(ask(addr, &chat(q)).await.1, "MISS");
    }
    // SIGKILL, then damage as a crash mid-write (or a bad disk) would leave it: a torn entry,
    // a flipped byte, a half-written temporary file.
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    let mut files = entry_files(&store);
    files.sort();
    assert_eq!(files.len(), 3);
    let blob = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &blob[..blob.len() / 2]).unwrap();
    let mut flipped = std::fs::read(&files[1]).unwrap();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x20;
    std::fs::write(&files[1], flipped).unwrap();
    // An unfinished write from before the crash (older than a minute by now).
    let partial = store.join("tmp").join("x.partial");
    std::fs::write(&partial, &blob[..10]).unwrap();
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let f = std::fs::File::options().write(true).open(&partial).unwrap();
    f.set_modified(an_hour_ago).unwrap();
    drop(f);
    let _p = start();
    wait_listening(addr).await;
    let mut hits = 0;
    for q in ["a", "b", "c"] {
        let (status, cache, body) = ask(addr, &chat(q)).await;
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["object"], "chat.completion");
        hits += usize::from(cache == "HIT");
    }
    assert_eq!(hits, 1, "only the intact entry is served");
    assert_eq!(up.request_count(), 5);
    assert!(std::fs::read_dir(store.join("tmp"))
        .unwrap()
        .next()
        .is_none());
}

#[tokio::test]
async fn two_nodes_share_entries_through_redis() {
    let redis = RedisServer::start().await;
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let yaml = config(&up.url(), &format!("  backend: \"{}\"\n", redis.url()));
    let (a, b) = (start_gateway(&yaml).await, start_gateway(&yaml).await);
    let (_, cache, first) = ask(a.addr, &chat("shared")).await;
    assert_eq!(cache, "MISS");
    let (status, cache, second) = ask(b.addr, &chat("shared")).await;
    assert_eq!((status, cache.as_str()), (200, "HIT"));
    assert_eq!(first, second);
    assert_eq!(up.request_count(), 1);
    // Streams too.
    let stream = json!({"model": "m", "messages": [], "stream": true});
    let (_, cache, s1) = ask(b.addr, &stream).await;
    assert_eq!(cache, "MISS");
    let (_, cache, s2) = ask(a.addr, &stream).await;
    assert_eq!((cache.as_str(), s1), ("HIT", s2));
    assert_eq!(up.request_count(), 2);
}

#[tokio::test]
async fn redis_down_means_misses_not_errors() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let redis = RedisServer::start().await;
    let yaml = config(
        &up.url(),
        &format!(
            r#"  backend: "{}"
  backend_timeout: 200ms
"#,
            redis.url()
        ),
    );
    let gw = start_gateway(&yaml).await;
    assert_eq!(ask(gw.addr, &chat("x")).await.1, "MISS");
    assert_eq!(ask(gw.addr, &chat("x")).await.1, "HIT");
    drop(redis);
    let started = Instant::now();
    for _ in 0..5 {
        let (status, cache, body) = ask(gw.addr, &chat("x")).await;
        assert_eq!((status, cache.as_str()), (200, "MISS"));
        assert!(!body.is_empty());
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(up.request_count(), 6);
    // A Redis that was never there: the same.
    let nowhere = config(
        &up.url(),
        &format!(
            r#"  backend: redis://127.0.0.1:{}/0
  backend_timeout: 200ms
"#,
            free_port()
        ),
    );
    let gw = start_gateway(&nowhere).await;
    let (status, cache, _) = ask(gw.addr, &chat("y")).await;
    assert_eq!((status, cache.as_str()), (200, "MISS"));
}

#[tokio::test]
async fn the_cache_uses_redis_again_once_it_is_back_under_steady_traffic() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let redis = RedisServer::start().await;
    let port = redis.port;
    let yaml = config(
        &up.url(),
        &format!(
            r#"  backend: "{}"
  backend_timeout: 200ms
"#,
            redis.url()
        ),
    );
    let gw = start_gateway(&yaml).await;
    assert_eq!(ask(gw.addr, &chat("z")).await.1, "MISS");
    drop(redis);
    assert_eq!(ask(gw.addr, &chat("z")).await.1, "MISS");
    let _redis = RedisServer::start_on(port).await;
    // Lookups keep coming faster than the one-second back-off: each skipped one must not
    // extend it, or Redis is never tried again. Back and empty, it stores the next answer.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, cache, _) = ask(gw.addr, &chat("z")).await;
        assert_eq!(status, 200);
        if cache == "HIT" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never used Redis again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_client_that_leaves_before_the_end_stores_nothing() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::chat_stream(20, Duration::from_millis(50)));
    let gw = start_gateway(&config(&up.url(), "")).await;
    let body = json!({"model": "m", "messages": [], "stream": true});
    let mut r = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert!(r.chunk().await.unwrap().is_some());
    drop(r);
    assert!(up
        .wait_for_peer_close(Duration::from_secs(10))
        .await
        .is_some());
    up.set_behavior(Behavior::OpenAi);
    let again = client()
        .post(gw.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["x-cache"], "MISS");
    assert_eq!(up.request_count(), 2);
}

/// `x-ratelimit-remaining-tokens` of one request.
async fn remaining_tokens(addr: SocketAddr) -> u64 {
    let r = client()
        .post(format!("http://{addr}/v1/chat/completions"))
        .header("authorization", "Bearer sk-client")
        .json(&chat("budget"))
        .send()
        .await
        .unwrap();
    let n = r.headers()["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let _ = r.bytes().await;
    n
}

#[tokio::test]
async fn hits_cost_no_tokens_unless_charge_hits() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let limits = r#"limits:
  default_max_tokens: 10
  rules:
    - {tokens: "10000/hour", per: key}
"#;
    for (charge, expect_drop) in [(false, 0), (true, 13)] {
        let yaml = format!(
            "{}{limits}",
            config(&up.url(), &format!("  charge_hits: {charge}\n"))
        );
        let gw = start_gateway(&yaml).await;
        remaining_tokens(gw.addr).await; // the miss: 13 tokens of usage
        let after_first_hit = remaining_tokens(gw.addr).await;
        let after_second_hit = remaining_tokens(gw.addr).await;
        assert_eq!(
            after_first_hit - after_second_hit,
            expect_drop,
            "charge_hits: {charge}"
        );
    }
}

#[tokio::test]
async fn hits_are_paced_like_any_stream() {
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::chat_stream(12, Duration::ZERO));
    let yaml = format!(
        r#"{}limits:
  rules:
    - {{output_tokens_per_second: 20}}
"#,
        config(&up.url(), "")
    );
    let gw = start_gateway(&yaml).await;
    let body = json!({"model": "m", "messages": [], "stream": true});
    let (_, cache, first) = ask(gw.addr, &body).await;
    assert_eq!(cache, "MISS");
    let started = Instant::now();
    let mut hit = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", "Bearer sk-client")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(hit.headers()["x-cache"], "HIT");
    let mut reads = Vec::new();
    while let Some(c) = hit.chunk().await.unwrap() {
        reads.push(c);
    }
    assert_eq!(reads.concat(), first.to_vec());
    // 12 one-token events at 20 tokens/s: at least ~0.5 s, event by event.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(reads.len() >= 6, "{} reads", reads.len());
}
