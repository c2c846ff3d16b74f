//! An upstream as Pingora sees it: where to connect (an IP, or a cached host name), TLS and SNI,
//! certificate trust, the timeouts and the outbound proxy, turned into an `HttpPeer` per attempt.

use super::dns::{CachedHost, DnsError};
use super::tunnel::Tunnel;
use crate::config::{ServerConfig, UpstreamConfig, UpstreamUrl};
use pingora_core::protocols::tls::CaType;
use pingora_core::tls::x509::X509;
use pingora_core::upstreams::peer::HttpPeer;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

enum Target {
    /// An IP literal in the config: no DNS at all.
    Ip(SocketAddr),
    Name(Arc<CachedHost>),
}

pub(crate) struct Upstream {
    pub url: UpstreamUrl,
    target: Target,
    /// `Host` header value sent upstream (`host[:port]`).
    pub host_header: http::HeaderValue,
    ca: Option<Arc<CaType>>,
    pub timeouts: crate::config::Timeouts,
    /// The CONNECT tunnel through the outbound proxy (whose address `target` is then).
    tunnel: Option<Arc<Tunnel>>,
    /// Keeps pooled tunnels to different upstreams through one proxy apart.
    group_key: u64,
}

impl Upstream {
    /// Build from a validated upstream; fails only on an unreadable CA bundle.
    pub(crate) fn new(config: &UpstreamConfig, server: &ServerConfig) -> Result<Self, String> {
        let url = config.url.clone();
        // Through a proxy, the connection goes to the proxy and the proxy resolves the upstream.
        let (connect_host, connect_port) = match &config.proxy {
            Some(p) => (p.host.as_str(), p.port),
            None => (url.host.as_str(), url.port),
        };
        let target = match connect_host.parse::<IpAddr>() {
            Ok(ip) => Target::Ip(SocketAddr::new(ip, connect_port)),
            Err(_) => Target::Name(CachedHost::new(
                connect_host,
                connect_port,
                server.dns_ttl,
                server.dns_timeout,
            )),
        };
        let tunnel = config.proxy.as_ref().map(|p| {
            let host = if url.host.contains(':') {
                format!("[{}]", url.host)
            } else {
                url.host.clone()
            };
            Arc::new(Tunnel::new(
                format!("{host}:{}", url.port),
                p.credentials.as_deref(),
            ))
        });
        let group_key = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (url.host.as_str(), url.port, config.proxy.is_some()).hash(&mut h);
            h.finish()
        };
        let host_header = http::HeaderValue::from_str(&url.authority())
            .map_err(|_| "the upstream host is not a valid Host header".to_string())?;
        let ca = match &config.ca_file {
            Some(path) => Some(Arc::new(load_ca(path)?)),
            None => None,
        };
        Ok(Upstream {
            url,
            target,
            host_header,
            ca,
            timeouts: config.timeouts,
            tunnel,
            group_key,
        })
    }

    /// A fresh peer for one attempt, its connect timeouts capped at `budget` (what is left of
    /// the request's total) and its read timeout at `read_budget`. Only DNS can fail here.
    pub(crate) async fn peer(
        &self,
        budget: Option<Duration>,
        read_budget: Option<Duration>,
    ) -> Result<Box<HttpPeer>, DnsError> {
        let addr = match &self.target {
            Target::Ip(addr) => *addr,
            Target::Name(host) => host.resolve().await?,
        };
        let mut peer = HttpPeer::new(addr, self.url.tls, self.url.host.clone());
        peer.group_key = self.group_key;
        let cap = |t: Duration| budget.map_or(t, |b| t.min(b.max(Duration::from_millis(1))));
        let o = &mut peer.options;
        o.connection_timeout = Some(cap(self.timeouts.connect));
        // For https the handshake counts against the same budget as the TCP connect.
        o.total_connection_timeout = Some(cap(self.timeouts.connect));
        o.read_timeout = Some(match read_budget {
            Some(b) => self.timeouts.read.min(b.max(Duration::from_millis(1))),
            None => self.timeouts.read,
        });
        o.write_timeout = Some(self.timeouts.write);
        o.verify_cert = true;
        o.verify_hostname = true;
        o.ca = self.ca.clone();
        if let Some(tunnel) = &self.tunnel {
            o.custom_l4 = Some(tunnel.clone());
        }
        Ok(Box::new(peer))
    }
}

fn load_ca(path: &std::path::Path) -> Result<CaType, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let certs = X509::stack_from_pem(&pem).map_err(|e| format!("not a PEM CA bundle: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certs.into_boxed_slice())
}
