//! The integration tests' mock OpenAI-compatible upstream as a standalone server, for benchmarks
//! and the Python SDK check.
//!
//! ```text
//! cargo run --release --example mock_upstream -- [--listen 127.0.0.1:0] [--threads N]
//!     [--stream EVENTS:INTERVAL_MS]
//! ```
//!
//! It answers as `Behavior::OpenAi` with request recording off, prints exactly one line
//! `listening on 127.0.0.1:PORT` to stdout once it accepts connections, and runs until killed.
//! `--threads` sets the tokio worker threads (default 1, leaving the other core of a 2-core
//! machine to the gateway). `--stream` makes requests that name the model `stream-bench` get a
//! slow numbered stream instead (`Behavior::chat_stream`: EVENTS chat chunks whose contents are
//! `"t0 "`, `"t1 "`, …, each INTERVAL_MS after the one before, the first too, then
//! `data: [DONE]`), for `bench/streams.sh` and `examples/stream_load.rs`; other models are
//! answered as before.

// Test and benchmark code may unwrap, expect and panic (a failed assumption is a failed run),
// and its helpers are `pub` for the modules that share them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    unreachable_pub
)]

#[path = "../tests/common/mock.rs"]
mod mock;

use std::io::Write;
use std::net::SocketAddr;
use std::process::exit;

const USAGE: &str =
    "usage: mock_upstream [--listen ADDR:PORT] [--threads N] [--stream EVENTS:INTERVAL_MS]";
/// The model whose requests get the `--stream` answer.
const STREAM_MODEL: &str = "stream-bench";

/// Prints `message` and the usage to stderr, then exits with status 2.
fn fail(message: &str) -> ! {
    eprintln!("mock_upstream: {message}\n{USAGE}");
    exit(2)
}

fn main() {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut threads = 1usize;
    let mut stream = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || inline.clone().or_else(|| args.next());
        match flag.as_str() {
            "--listen" => {
                let v = value().unwrap_or_else(|| fail("--listen needs ADDR:PORT"));
                listen = v
                    .parse()
                    .unwrap_or_else(|_| fail(&format!("bad address {v:?}")));
            }
            "--threads" => {
                let v = value().unwrap_or_else(|| fail("--threads needs a number"));
                threads = match v.parse() {
                    Ok(n) if n > 0 => n,
                    _ => fail(&format!("bad thread count {v:?}")),
                };
            }
            "--stream" => {
                let v = value().unwrap_or_else(|| fail("--stream needs EVENTS:INTERVAL_MS"));
                let parsed = v
                    .split_once(':')
                    .and_then(|(n, ms)| Some((n.parse().ok()?, ms.parse().ok()?)));
                let (events, ms): (usize, u64) =
                    parsed.unwrap_or_else(|| fail(&format!("bad --stream {v:?}")));
                stream = Some(mock::Behavior::ForModel {
                    model: STREAM_MODEL.to_owned(),
                    behavior: Box::new(mock::Behavior::chat_stream(
                        events,
                        std::time::Duration::from_millis(ms),
                    )),
                });
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("cannot build the runtime: {e}")));
    runtime.block_on(async {
        let upstream = mock::MockUpstream::try_start_on(listen)
            .await
            .unwrap_or_else(|e| fail(&format!("cannot listen on {listen}: {e}")));
        upstream.set_recording(false);
        if let Some(behavior) = stream {
            upstream.set_behavior(behavior);
        }
        let mut stdout = std::io::stdout().lock();
        let printed = writeln!(stdout, "listening on {}", upstream.addr());
        if printed.and_then(|()| stdout.flush()).is_err() {
            exit(1);
        }
        drop(stdout);
        std::future::pending::<()>().await;
    });
}
