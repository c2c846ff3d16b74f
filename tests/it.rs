//! The integration tests, one binary: each file in `tests/` is a module of this crate, so the
//! library and the shared kit in `tests/common` are compiled and linked once instead of once per
//! file (see the README's test section for the measured difference). A new file in `tests/` must
//! be added below; `every_test_file_is_a_module` fails until it is.

// Test and benchmark code may unwrap, expect and panic (a failed assumption is a failed run),
// and its helpers are `pub` for the modules that share them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

mod common;
// `fuzz/invariants.rs` (a module of sse_corpus) names the parser `crate::sse` and
// `crate::openai`, as in the fuzz target, which compiles those files in.
use llm_forward::{openai, sse};

mod access;
mod bodies;
mod cache;
mod cache_backends;
mod cache_live;
mod cache_twin;
mod chatlogs;
mod cli;
mod config_check;
mod console;
mod continuation;
mod env_mode;
mod failover;
mod faults;
mod forwarding;
mod keys;
mod limits;
mod log_integrity;
mod metrics;
mod migrate;
mod model_lists;
mod paths;
mod peak_memory;
mod redis_tls;
mod request_ids;
mod resilience;
mod routing;
mod secrets;
mod signals;
mod slow_clients;
mod sse_corpus;
mod tls;
mod tracing;
mod upgrade;

/// `autotests = false` (Cargo.toml) means a test file not listed above would never be compiled:
/// refuse that instead of silently running fewer tests.
#[test]
fn every_test_file_is_a_module() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let this = std::fs::read_to_string(format!("{dir}/it.rs")).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(module) = name.strip_suffix(".rs").filter(|m| *m != "it") {
            assert!(
                this.lines().any(|l| l == format!("mod {module};")),
                "tests/{name} is not compiled: add `mod {module};` to tests/it.rs"
            );
        }
    }
}
