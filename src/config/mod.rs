//! Configuration: one YAML file (or openai-forward's environment variables), decoded into typed
//! structs with every problem reported at once, each with its YAML path.

mod decode;
mod ip_list;
mod load;
mod model;
mod model_auth;
mod model_route;
mod model_upstream;
mod problems;
pub mod redact;
mod schema;
mod schema_admin;
mod schema_auth;
mod schema_cache;
mod schema_limits;
mod schema_redis;
mod schema_routes;
mod schema_telemetry;
mod schema_upstreams;
mod source;
pub mod units;
mod validate;

pub use load::{load_file, parse_bytes, MAX_CONFIG_BYTES};
pub use model::*;
pub use model_upstream::*;
pub use problems::{ConfigError, Problem, Problems};
pub use schema_cache::{CacheBackendConfig, CacheConfig, CacheRouteConfig};
pub use source::ConfigSource;

mod dotenv;
pub mod emit;
pub mod openai_forward;
mod openai_forward_vars;
