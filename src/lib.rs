//! llm-forward: a high-performance LLM API gateway on Cloudflare Pingora.
//!
//! The binary is a thin shell over this library (`cli` → `config` → `server`), so tests and
//! embedders start the very same gateway in-process. The request pipeline lives in `proxy`, one
//! module per Pingora phase; pure logic (config, routing) never sees a Pingora type.
//!
//! # Layout
//!
//! Dependencies point down this list: below `proxy`, only `metrics` names a `proxy` type (the
//! `GatewayError` it labels outcomes with).
//!
//! | Layer | Modules |
//! |---|---|
//! | Shell | `main.rs` → `cli` (`run`, `check`, `import-env`, `convert`) → `server` (Pingora server, listeners, signals, upgrade) and `admin` (second service: `/metrics`, console) |
//! | Request pipeline | `proxy`: `impl ProxyHttp` as a table of hooks; `proxy/ctx` (per-request state, by concern); one module per phase: `route`, `auth`, `limits`, `body`/`preread`, `cache`, `forward`, `failover`, `stream`, `finish`, `observe` |
//! | Runtime state | `state` (built once from a validated config: routes, pools, limiters, cache, metrics), `keys`, `limits`, `upstream` (peers, DNS, breakers, TLS trust, CONNECT tunnel), `cache_store`, `chatlog`, `telemetry`, `metrics` |
//! | Pure logic | `config` (decode, validate, import-env), `routing`, `access`, `cors`, `credentials`, `cache_key`, `openai` (request/response/stream fields, body edits), `sse`, `tokens`, `model_names`, `multipart`, `request_id`, `logfmt`, `convert` |

pub mod access;
pub(crate) mod admin;
#[cfg(test)]
mod alloc_count;
pub(crate) mod banner;
pub(crate) mod cache_key;
pub(crate) mod cache_store;
pub(crate) mod chatlog;
pub mod cli;
pub mod config;
pub(crate) mod convert;
pub(crate) mod cors;
pub(crate) mod credentials;
pub(crate) mod cutoff;
pub(crate) mod head_deadline;
pub mod keys;
pub mod limits;
pub mod logfmt;
pub(crate) mod metrics;
pub(crate) mod model_names;
pub(crate) mod multipart;
pub mod openai;
pub(crate) mod proxy;
pub(crate) mod redis_conn;
pub(crate) mod request_id;
pub mod routing;
pub mod server;
#[cfg(test)]
mod source_tree;
pub mod sse;
pub(crate) mod state;
pub(crate) mod telemetry;
pub mod tokens;
pub(crate) mod upstream;
pub(crate) mod utc_text;
