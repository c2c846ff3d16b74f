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
pub mod admin;
pub mod banner;
pub mod cache_key;
pub mod cache_store;
pub mod chatlog;
pub mod cli;
pub mod config;
pub mod convert;
pub mod cors;
pub mod credentials;
pub mod cutoff;
pub mod head_deadline;
pub mod keys;
pub mod limits;
pub mod logfmt;
pub mod metrics;
pub mod model_names;
pub mod multipart;
pub mod openai;
pub mod proxy;
pub mod redis_conn;
pub mod request_id;
pub mod routing;
pub mod server;
pub mod sse;
pub mod state;
pub mod telemetry;
pub mod tokens;
pub mod upstream;
