//! A route's upstream as Pingora sees it: where to connect (an IP, or a cached host name), TLS
//! and SNI, certificate trust and the per-route timeouts, turned into an `HttpPeer` per attempt.

use super::dns::{CachedHost, DnsError};
use crate::config::{RouteConfig, ServerConfig, UpstreamUrl};
use pingora_core::protocols::tls::CaType;
use pingora_core::tls::x509::X509;
use pingora_core::upstreams::peer::HttpPeer;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

enum Target {
    /// An IP literal in the config: no DNS at all.
    Ip(SocketAddr),
    Name(Arc<CachedHost>),
}

pub struct Upstream {
    pub url: UpstreamUrl,
    target: Target,
    /// `Host` header value sent upstream (`host[:port]`).
    pub host_header: http::HeaderValue,
    ca: Option<Arc<CaType>>,
    timeouts: crate::config::Timeouts,
}

impl Upstream {
    /// Build from a validated route; fails only on an unreadable CA bundle.
    pub fn new(route: &RouteConfig, server: &ServerConfig) -> Result<Self, String> {
        let url = route.upstream.clone();
        let target = match url.host.parse::<IpAddr>() {
            Ok(ip) => Target::Ip(SocketAddr::new(ip, url.port)),
            Err(_) => Target::Name(CachedHost::new(
                &url.host,
                url.port,
                server.dns_ttl,
                server.dns_timeout,
            )),
        };
        let host_header = http::HeaderValue::from_str(&url.authority())
            .map_err(|_| "the upstream host is not a valid Host header".to_string())?;
        let ca = match &route.ca_file {
            Some(path) => Some(Arc::new(load_ca(path)?)),
            None => None,
        };
        Ok(Upstream {
            url,
            target,
            host_header,
            ca,
            timeouts: route.timeouts,
        })
    }

    /// A fresh peer for one attempt. Only DNS can fail here.
    pub async fn peer(&self) -> Result<Box<HttpPeer>, DnsError> {
        let addr = match &self.target {
            Target::Ip(addr) => *addr,
            Target::Name(host) => host.resolve().await?,
        };
        let mut peer = HttpPeer::new(addr, self.url.tls, self.url.host.clone());
        let o = &mut peer.options;
        o.connection_timeout = Some(self.timeouts.connect);
        // For https the handshake counts against the same budget as the TCP connect.
        o.total_connection_timeout = Some(self.timeouts.connect);
        o.read_timeout = Some(self.timeouts.read);
        o.write_timeout = Some(self.timeouts.write);
        o.verify_cert = true;
        o.verify_hostname = true;
        o.ca = self.ca.clone();
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
