//! Redis over TLS (`rediss://`), as managed Redis services require: the limiter and the cache
//! against a `redis-server` of the test's own that speaks only TLS, with a certificate from a CA
//! made here. The certificate is verified: trusted through `redis.ca_file`, refused without it.

use crate::common;

use common::mock::{Behavior, MockUpstream};
use common::*;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509Name, X509};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;

fn name(cn: &str) -> X509Name {
    let mut n = X509Name::builder().unwrap();
    n.append_entry_by_text("CN", cn).unwrap();
    n.build()
}

/// A certificate for `cn`, valid for the IP 127.0.0.1 unless it is a CA; signed by `issuer`
/// (self-signed when `None`).
fn cert(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(std::process::id() ^ cn.len() as u32)
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name(cn)).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    match issuer {
        None => {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.set_issuer_name(&name(cn)).unwrap();
            b.sign(key, MessageDigest::sha256()).unwrap();
        }
        Some((ca, ca_key)) => {
            let san = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .build(&b.x509v3_context(Some(ca), None))
                .unwrap();
            b.append_extension(san).unwrap();
            b.set_issuer_name(ca.subject_name()).unwrap();
            b.sign(ca_key, MessageDigest::sha256()).unwrap();
        }
    }
    b.build()
}

/// A `redis-server` listening only with TLS on a free port, its CA's PEM in `dir/ca.pem`.
struct TlsRedis {
    port: u16,
    child: std::process::Child,
}

impl TlsRedis {
    async fn start(dir: &Path) -> TlsRedis {
        let ca_key = PKey::ec_gen("prime256v1").unwrap();
        let ca = cert("llm-forward test Redis CA", &ca_key, None);
        let key = PKey::ec_gen("prime256v1").unwrap();
        let leaf = cert("127.0.0.1", &key, Some((&ca, &ca_key)));
        std::fs::write(dir.join("ca.pem"), ca.to_pem().unwrap()).unwrap();
        std::fs::write(dir.join("cert.pem"), leaf.to_pem().unwrap()).unwrap();
        std::fs::write(dir.join("key.pem"), key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(dir.join("cert.pem"))
            .arg("--tls-key-file")
            .arg(dir.join("key.pem"))
            .arg("--tls-ca-cert-file")
            .arg(dir.join("ca.pem"))
            .args(["--tls-auth-clients", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (built with TLS) must be installed (.ci/run installs it)");
        wait_listening(SocketAddr::from(([127, 0, 0, 1], port))).await;
        TlsRedis { port, child }
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The limiter (2 requests a minute per client, `deny` when Redis fails) and the cache, both
/// on `url`, with `redis_section` appended.
fn config(upstream: &str, url: &str, redis_section: &str) -> String {
    format!(
        r#"routes: [{{prefix: /, upstream: '{upstream}'}}]
limits:
  backend: '{url}'
  backend_timeout: 2s
  on_backend_error: deny
  rules:
    - {{requests: "2/minute", per: ip}}
cache:
  backend: '{url}'
  backend_timeout: 2s
  default: true
{redis_section}"#
    )
}

async fn ask(gw: &GatewayGuard) -> reqwest::Response {
    client()
        .post(gw.url("/v1/chat/completions"))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "tls"}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn limits_and_cache_work_over_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let redis = TlsRedis::start(dir.path()).await;
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    let ca = dir.path().join("ca.pem");
    let gw = start_gateway(&config(
        &up.url(),
        &redis.url(),
        &format!(
            r#"redis:
  ca_file: '{}'
"#,
            ca.display()
        ),
    ))
    .await;
    let first = ask(&gw).await;
    assert_eq!(first.status(), 200, "{:?}", first.text().await);
    assert_eq!(first.headers()["x-cache"], "MISS");
    assert_eq!(first.headers()["x-ratelimit-remaining-requests"], "1");
    first.text().await.unwrap();
    // The cache stored the answer in Redis over TLS (a Redis call that failed would be a miss).
    let second = ask(&gw).await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.headers()["x-cache"], "HIT");
    assert_eq!(second.headers()["x-ratelimit-remaining-requests"], "0");
    // And the limiter counted both there (a failed call would be 503 under `deny`).
    let third = ask(&gw).await;
    assert_eq!(third.status(), 429);
    assert_eq!(
        error_code(&third.json().await.unwrap()),
        "rate_limit_exceeded"
    );
    assert_eq!(up.request_count(), 1);
}

#[tokio::test]
async fn an_untrusted_redis_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let redis = TlsRedis::start(dir.path()).await;
    let up = MockUpstream::start().await;
    up.set_behavior(Behavior::OpenAi);
    // No `redis.ca_file`: the system's CAs do not know the test CA.
    let gw = start_gateway(&config(&up.url(), &redis.url(), "")).await;
    let resp = ask(&gw).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        error_code(&resp.json().await.unwrap()),
        "rate_limiter_unavailable"
    );
    assert_eq!(up.request_count(), 0);
}
