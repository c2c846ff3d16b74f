//! llm-forward: a high-performance LLM API gateway on Cloudflare Pingora.
//!
//! The binary is a thin shell over this library (`cli` → `config` → `server`), so tests and
//! embedders start the very same gateway in-process. The request pipeline lives in [`proxy`], one
//! module per Pingora phase; pure logic (config, routing) never sees a Pingora type.

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
