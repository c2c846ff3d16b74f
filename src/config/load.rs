//! Reading a config file: size and encoding checks, YAML parsing, then the schema decoder.
//! Whatever the input (empty, binary, huge, an alias bomb), the result is a list of problems,
//! never a panic.

use super::decode::{Decoder, EnvLookup, Node};
use super::model::Config;
use super::problems::{ConfigError, Problems};
use super::schema::decode_config;

/// A config is a few KiB; anything this large is the wrong file (and parsing it costs memory).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Load and validate the config at `path`, resolving `${VAR}` from the process environment.
pub fn load_file(path: &str) -> Result<Config, ConfigError> {
    let read_err = |source| ConfigError::Read {
        path: path.to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_CONFIG_BYTES {
        let mut list = Problems::default();
        let why = format!(
            "the file is {:.1} MiB; a config may be at most {} MiB (is this the right file?)",
            meta.len() as f64 / (1 << 20) as f64,
            MAX_CONFIG_BYTES >> 20
        );
        list.add("", None, why);
        return Err(ConfigError::Invalid {
            path: path.to_string(),
            list,
        });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    let env = |name: &str| std::env::var(name).ok();
    parse_bytes(&bytes, &env).map_err(|list| ConfigError::Invalid {
        path: path.to_string(),
        list,
    })
}

/// Parse and validate a document held in memory.
pub fn parse_bytes(bytes: &[u8], env: EnvLookup<'_>) -> Result<Config, Problems> {
    let mut problems = Problems::default();
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let why = format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.valid_up_to()
            );
            problems.add("", None, why);
            return Err(problems);
        }
    };
    if text.trim().is_empty() {
        problems.add("", None, "the file is empty; it needs at least `routes`");
        return Err(problems);
    }
    // serde_yaml bounds recursion depth and alias expansion ("repetition limit exceeded"), so an
    // alias bomb is an error here rather than a memory blow-up.
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!(" (line {}, column {})", l.line(), l.column()))
                .unwrap_or_default();
            problems.add("", None, format!("not valid YAML{at}: {e}"));
            return Err(problems);
        }
    };
    let mut decoder = Decoder::new(env);
    #[cfg(test)]
    super::decode::audit::take_unread();
    let decoded = decode_config(&mut decoder, &Node::root(&value));
    #[cfg(test)]
    {
        let unread = super::decode::audit::take_unread();
        assert!(
            decoded.is_none() || unread.is_empty(),
            "declared keys {unread:?} were accepted but never read"
        );
    }
    match decoded {
        Some(mut config) => {
            config.secrets = decoder.secrets;
            Ok(config)
        }
        None => {
            decoder.problems.mask(&decoder.secrets);
            Err(decoder.problems)
        }
    }
}

#[cfg(test)]
mod tests {
    /// The shipped example sets nearly every key: decoding it runs the key-table audit (see
    /// `decode.rs`) over each section it has.
    #[test]
    fn the_example_reads_every_key_it_sets() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/llm-forward.example.yaml");
        let text = std::fs::read(path).unwrap();
        // Its secrets come from ${VARS}: each gets a distinct stand-in.
        let env = |name: &str| Some(format!("test-secret-{name}"));
        super::parse_bytes(&text, &env).unwrap();
    }
}
