//! Outbound HTTP forward proxy (openai-forward's `PROXY`): the upstream connection is a CONNECT
//! tunnel through the proxy, on top of which Pingora speaks TLS (https upstreams, SNI and
//! verification as usual) or plain HTTP. Plugged in as Pingora's custom L4 connector, so pooling,
//! timeouts and retries work as for a direct connection. Tunnels to plain-http upstreams use
//! CONNECT too: one mechanism, and the proxy never sees a request it could log or alter.

use async_trait::async_trait;
use base64::Engine;
use pingora_core::connectors::L4Connect;
use pingora_core::protocols::l4::socket::SocketAddr;
use pingora_core::protocols::l4::stream::Stream;
use pingora_core::{Error, ErrorType, OrErr, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest CONNECT response head accepted from the proxy.
const MAX_HEAD: usize = 16 * 1024;

/// A connector that reaches `target` (`host:port`) through the proxy at the peer's address.
pub(crate) struct Tunnel {
    /// `host:port` as the CONNECT request names it (the proxy resolves it).
    target: String,
    /// `Proxy-Authorization` value, when the proxy URL carries credentials.
    authorization: Option<String>,
}

impl std::fmt::Debug for Tunnel {
    /// Never prints the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tunnel({})", self.target)
    }
}

impl Tunnel {
    pub(crate) fn new(target: String, credentials: Option<&str>) -> Self {
        let authorization = credentials.map(|c| {
            let decoded = percent_decode(c);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(decoded)
            )
        });
        Tunnel {
            target,
            authorization,
        }
    }

    fn request(&self) -> String {
        let mut req = format!(
            "CONNECT {t} HTTP/1.1\r\nHost: {t}\r\nProxy-Connection: keep-alive\r\n",
            t = self.target
        );
        if let Some(auth) = &self.authorization {
            req.push_str("Proxy-Authorization: ");
            req.push_str(auth);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        req
    }
}

fn refused(why: String) -> Box<Error> {
    Error::explain(ErrorType::ConnectProxyFailure, why)
}

#[async_trait]
impl L4Connect for Tunnel {
    async fn connect(&self, addr: &SocketAddr) -> Result<Stream> {
        let SocketAddr::Inet(proxy) = addr else {
            return Err(refused("the proxy must be a TCP address".into()));
        };
        let mut tcp = TcpStream::connect(proxy).await.or_err(
            ErrorType::ConnectRefused,
            "connecting to the outbound proxy",
        )?;
        let _ = tcp.set_nodelay(true);
        tcp.write_all(self.request().as_bytes())
            .await
            .or_err(ErrorType::ConnectProxyFailure, "sending CONNECT")?;
        // Read the response head byte-exactly: nothing after its blank line may be consumed,
        // as it belongs to the tunnel (the upstream's first bytes).
        let mut head = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_HEAD {
                return Err(refused("the proxy's CONNECT response is too long".into()));
            }
            let n = tcp.read(&mut byte).await.or_err(
                ErrorType::ConnectProxyFailure,
                "reading the CONNECT response",
            )?;
            if n == 0 {
                return Err(refused("the proxy closed the connection".into()));
            }
            head.push(byte[0]);
        }
        let status = head
            .split(|b| *b == b' ')
            .nth(1)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.parse::<u16>().ok());
        match status {
            Some(200..=299) => Ok(Stream::from(tcp)),
            Some(407) => Err(refused(
                "the outbound proxy wants credentials (407); check the proxy URL's user:password"
                    .into(),
            )),
            Some(code) => Err(refused(format!(
                "the outbound proxy refused the tunnel with {code}"
            ))),
            None => Err(refused("the proxy's CONNECT response is not HTTP".into())),
        }
    }
}

/// `%XX` escapes in URL credentials (`p%40ss` → `p@ss`); anything malformed stays as written.
fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_basic_and_decoded() {
        let t = Tunnel::new("api.openai.com:443".into(), Some("user:p%40ss"));
        let req = t.request();
        assert!(
            req.starts_with("CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n")
        );
        // base64("user:p@ss")
        assert!(req.contains("Proxy-Authorization: Basic dXNlcjpwQHNz\r\n"));
        assert!(!format!("{t:?}").contains("Basic"));
        assert_eq!(percent_decode("a%2"), b"a%2");
    }
}
