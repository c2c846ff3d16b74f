//! The floor under llm-forward's per-request cost: the smallest Pingora 0.9.1 proxy there is
//! (every request to one plain-HTTP upstream, no filter of its own), run with the gateway's
//! server settings (one thread, per-thread runtime). `bench/load.sh` measures it as the
//! `pingora-floor` target beside nginx and the gateway, so what Pingora's HTTP/1 path costs and
//! what the gateway adds on top are told apart in every run.
//!
//! ```text
//! cargo run --release --example pingora_floor -- --listen 127.0.0.1:8001 --upstream 127.0.0.1:9000
//! ```

// Test and benchmark code may unwrap, expect and panic (a failed assumption is a failed run),
// and its helpers are `pub` for the modules that share them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    unreachable_pub
)]

use async_trait::async_trait;
use pingora_core::modules::http::HttpModules;
use pingora_core::server::configuration::{Opt, ServerConf};
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};
use std::net::SocketAddr;
use std::process::exit;

const USAGE: &str = "usage: pingora_floor --listen ADDR:PORT --upstream ADDR:PORT";

struct Floor {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    /// None, as in the gateway (Pingora's default is a switched-off compression module).
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora_core::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let (mut listen, mut upstream) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().and_then(|v| v.parse::<SocketAddr>().ok());
        match flag.as_str() {
            "--listen" => listen = value,
            "--upstream" => upstream = value,
            _ => {
                eprintln!("pingora_floor: unknown argument {flag}\n{USAGE}");
                exit(2)
            }
        }
    }
    let (Some(listen), Some(upstream)) = (listen, upstream) else {
        eprintln!("pingora_floor: --listen and --upstream take ADDR:PORT\n{USAGE}");
        exit(2)
    };
    // Its own pid file and upgrade socket, so it never meets another Pingora's.
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        pid_file: format!("/tmp/pingora_floor.{}.pid", listen.port()),
        upgrade_sock: format!("/tmp/pingora_floor.{}.sock", listen.port()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let mut service = pingora_proxy::http_proxy_service(&server.configuration, Floor { upstream });
    service.add_tcp(&listen.to_string());
    server.add_service(service);
    server.run_forever()
}
