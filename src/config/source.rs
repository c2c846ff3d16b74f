//! Where `run` and `check` took the config from, named in the banner and in `check`'s verdict:
//! with three possible sources (a file, openai-forward's variables, the built-in default) an
//! operator must never have to guess which one is in force.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `-c FILE`.
    File(String),
    /// openai-forward's variables: which of the process environment and `./.env` set any.
    Environment { process: bool, dotenv: bool },
    /// Nothing set: `/` → https://api.openai.com on 0.0.0.0:8000.
    Default,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => f.write_str(path),
            ConfigSource::Environment {
                process: true,
                dotenv: true,
            } => f.write_str("openai-forward variables from the process environment and ./.env"),
            ConfigSource::Environment { dotenv: true, .. } => {
                f.write_str("openai-forward variables from ./.env")
            }
            ConfigSource::Environment { .. } => {
                f.write_str("openai-forward variables from the process environment")
            }
            ConfigSource::Default => f.write_str("built-in default"),
        }
    }
}
