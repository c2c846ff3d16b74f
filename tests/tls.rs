//! HTTPS upstreams: certificates are verified (chain and host name), a per-route CA file is
//! honoured, and SNI and Host name the upstream. The test CA and certificates are made here; a
//! small TLS terminator in front of the mock upstream plays the https provider.

use crate::common;

use common::mock::MockUpstream;
use common::process::{gateway_command, server_yaml, Process};
use common::*;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{Ssl, SslAcceptor, SslMethod};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509Name, X509};
use serde_json::Value;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

fn name(cn: &str) -> X509Name {
    let mut n = X509Name::builder().unwrap();
    n.append_entry_by_text("CN", cn).unwrap();
    n.build()
}

/// A certificate for `subject` (with SANs `dns`), signed by `issuer` (self-signed when `None`).
fn cert(
    subject: &str,
    dns: &[&str],
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    ca: bool,
) -> X509 {
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand_serial())
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name(subject)).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    if ca {
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
    }
    if !dns.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for d in dns {
            san.dns(d);
        }
        let ext = san
            .build(&b.x509v3_context(issuer.map(|(c, _)| &**c), None))
            .unwrap();
        b.append_extension(ext).unwrap();
    }
    match issuer {
        Some((issuer_cert, issuer_key)) => {
            b.set_issuer_name(issuer_cert.subject_name()).unwrap();
            b.sign(issuer_key, MessageDigest::sha256()).unwrap();
        }
        None => {
            b.set_issuer_name(&name(subject)).unwrap();
            b.sign(key, MessageDigest::sha256()).unwrap();
        }
    }
    b.build()
}

fn rand_serial() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// A TLS terminator on 127.0.0.1 that relays to `backend` and remembers the SNI it was sent.
async fn tls_front(
    leaf: X509,
    key: PKey<Private>,
    backend: SocketAddr,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor.set_certificate(&leaf).unwrap();
    acceptor.set_private_key(&key).unwrap();
    let acceptor = acceptor.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let snis = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&snis);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let ssl = Ssl::new(acceptor.context()).unwrap();
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                if Pin::new(&mut tls).accept().await.is_err() {
                    return; // the gateway refused our certificate
                }
                let sni = tls
                    .ssl()
                    .servername(openssl::ssl::NameType::HOST_NAME)
                    .unwrap_or("")
                    .to_string();
                seen.lock().unwrap().push(sni);
                let mut plain = tokio::net::TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, snis)
}

struct Pki {
    ca: X509,
    ca_pem: tempfile::NamedTempFile,
    leaf: X509,
    leaf_key: PKey<Private>,
}

fn pki(leaf_names: &[&str]) -> Pki {
    let ca_key = PKey::ec_gen("prime256v1").unwrap();
    let ca = cert("llm-forward test CA", &[], &ca_key, None, true);
    let leaf_key = PKey::ec_gen("prime256v1").unwrap();
    let leaf = cert(
        leaf_names[0],
        leaf_names,
        &leaf_key,
        Some((&ca, &ca_key)),
        false,
    );
    let ca_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_pem.path(), ca.to_pem().unwrap()).unwrap();
    Pki {
        ca,
        ca_pem,
        leaf,
        leaf_key,
    }
}

#[tokio::test]
async fn https_upstream_verified_against_the_route_ca_with_sni_and_host() {
    let up = MockUpstream::start().await;
    up.set_behavior(common::mock::Behavior::Echo);
    let p = pki(&["localhost"]);
    let (front, snis) = tls_front(p.leaf, p.leaf_key, up.addr()).await;
    let extra = format!("    ca_file: \"{}\"\n", p.ca_pem.path().display());
    let gw = start_gateway(&one_route(
        "/secure",
        &format!("https://localhost:{}/v1", front.port()),
        &extra,
    ))
    .await;
    let resp = client().get(gw.url("/secure/models")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let echo: Value = resp.json().await.unwrap();
    assert_eq!(echo["path"], "/v1/models");
    assert_eq!(
        up.requests()[0].header("host"),
        Some(format!("localhost:{}", front.port()).as_str())
    );
    assert_eq!(
        snis.lock().unwrap().first().map(String::as_str),
        Some("localhost")
    );
}

#[tokio::test]
async fn https_through_an_outbound_connect_proxy_keeps_sni_and_verification() {
    let up = MockUpstream::start().await;
    up.set_behavior(common::mock::Behavior::Echo);
    let p = pki(&["localhost"]);
    let (front, snis) = tls_front(p.leaf, p.leaf_key, up.addr()).await;
    let proxy = common::connect_proxy::ConnectProxy::start(None).await;
    let extra = format!(
        r#"    ca_file: "{}"
    proxy: "{}"
"#,
        p.ca_pem.path().display(),
        proxy.url()
    );
    let gw = start_gateway(&one_route(
        "/secure",
        &format!("https://localhost:{}/v1", front.port()),
        &extra,
    ))
    .await;
    let resp = client().get(gw.url("/secure/models")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["path"], "/v1/models");
    // The tunnel names the upstream by host name: the proxy resolves it.
    assert_eq!(proxy.targets(), [format!("localhost:{}", front.port())]);
    assert_eq!(
        snis.lock().unwrap().first().map(String::as_str),
        Some("localhost")
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let up = MockUpstream::start().await;
    let p = pki(&["localhost"]);
    let (front, _) = tls_front(p.leaf, p.leaf_key, up.addr()).await;
    // No ca_file: the system store does not know our test CA.
    let retry = "    retry: {connect_retries: 0}\n";
    let gw = start_gateway(&one_route(
        "/",
        &format!("https://localhost:{}", front.port()),
        retry,
    ))
    .await;
    let resp = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        error_code(&resp.json().await.unwrap()),
        "upstream_unreachable"
    );
    assert_eq!(up.request_count(), 0);
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let up = MockUpstream::start().await;
    let p = pki(&["other.example"]);
    let (front, _) = tls_front(p.leaf, p.leaf_key, up.addr()).await;
    let extra = format!(
        r#"    ca_file: "{}"
    retry: {{connect_retries: 0}}
"#,
        p.ca_pem.path().display()
    );
    let gw = start_gateway(&one_route(
        "/",
        &format!("https://localhost:{}", front.port()),
        &extra,
    ))
    .await;
    let resp = client().get(gw.url("/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(up.request_count(), 0);
}

/// Runs the binary with `env` (`SSL_CERT_*` not listed are removed) and one route to
/// `upstream`; returns the status of a request through it and what the process printed.
async fn through_a_process_with(env: &[(&str, &std::path::Path)], upstream: &str) -> (u16, String) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = server_yaml(dir.path(), port, "");
    std::fs::write(
        dir.path().join("gw.yaml"),
        format!(
            r#"{server}routes:
  - prefix: /secure
    upstream: {upstream}
    retry: {{connect_retries: 0}}
"#
        ),
    )
    .unwrap();
    let mut cmd = gateway_command(dir.path());
    cmd.args(["run", "-c", "gw.yaml"])
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .envs(env.iter().copied());
    let mut gateway = Process::spawn(&mut cmd);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr).await;
    let status = client()
        .get(format!("http://{addr}/secure/models"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    (status, gateway.kill_for_stderr())
}

/// What `upstream/trust.rs` sets up when the system qualifies: an empty bundle and a hashed
/// directory, each CA read when a chain names it. Verification works through it, and holds.
#[tokio::test]
async fn an_empty_bundle_and_a_hashed_directory_verify_upstreams() {
    let up = MockUpstream::start().await;
    up.set_behavior(common::mock::Behavior::Echo);
    let p = pki(&["localhost"]);
    let (front, _) = tls_front(p.leaf, p.leaf_key, up.addr()).await;
    let upstream = format!("https://localhost:{}/v1", front.port());
    let empty = std::path::Path::new("/dev/null");

    // The directory holds our CA under its subject hash, as c_rehash would name it.
    let hashed = |ca: &X509| {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("{:08x}.0", ca.subject_name_hash());
        std::fs::write(dir.path().join(name), ca.to_pem().unwrap()).unwrap();
        dir
    };
    let trusted = hashed(&p.ca);
    let env = [("SSL_CERT_FILE", empty), ("SSL_CERT_DIR", trusted.path())];
    let (status, banner) = through_a_process_with(&env, &upstream).await;
    assert_eq!(status, 200, "{banner}");
    assert_eq!(up.request_count(), 1);

    // Another CA with the same subject (so the same hash file name): found, and refused.
    let impostor = hashed(&pki(&["localhost"]).ca);
    let env = [("SSL_CERT_FILE", empty), ("SSL_CERT_DIR", impostor.path())];
    let (status, banner) = through_a_process_with(&env, &upstream).await;
    assert_eq!(status, 502, "{banner}");
    assert_eq!(up.request_count(), 1);
}

/// With no variable set, the process decides its trust itself (the hashed system directory
/// where it is as complete as the bundle), says so, and an unknown CA is still refused.
#[tokio::test]
async fn the_system_trust_is_named_in_the_banner_and_refuses_an_unknown_ca() {
    let up = MockUpstream::start().await;
    let p = pki(&["localhost"]);
    let (front, _) = tls_front(p.leaf, p.leaf_key, up.addr()).await;
    let upstream = format!("https://localhost:{}/v1", front.port());
    let (status, banner) = through_a_process_with(&[], &upstream).await;
    assert_eq!(status, 502, "{banner}");
    assert!(banner.contains("  tls trust   "), "{banner}");
    assert_eq!(up.request_count(), 0);
}
