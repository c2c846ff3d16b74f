//! Config problems: every mistake found in one pass, each with its YAML path, the bad value and
//! why it is wrong. `check` prints them all; `run` refuses to start while any remain.

use std::fmt;

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where, as a YAML path: `routes[1].timeouts.connect`. Empty for the document itself.
    pub path: String,
    /// The offending value as written (absent for missing keys and for secrets).
    pub value: Option<String>,
    /// Why it is wrong, and what would be right.
    pub why: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(document)"
        } else {
            &self.path
        };
        match &self.value {
            Some(v) => write!(f, "{path}: {v:?}: {}", self.why),
            None => write!(f, "{path}: {}", self.why),
        }
    }
}

/// All problems found in a config, in document order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Record a problem. A URL in `value` loses its credentials and query values: a problem is
    /// printed, and those are where URLs carry passwords and keys.
    pub fn add(&mut self, path: impl Into<String>, value: Option<String>, why: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            value: value.map(|v| super::redact::redact_url(&v).into_owned()),
            why: why.into(),
        });
    }

    /// Mask `secrets` in every value and reason.
    pub fn mask(&mut self, secrets: &super::redact::Secrets) {
        if secrets.is_empty() {
            return;
        }
        for p in &mut self.0 {
            p.why = secrets.mask(&p.why).into_owned();
            if let Some(v) = &mut p.value {
                *v = secrets.mask(v).into_owned();
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded: the file itself, or what is in it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {problems} problem(s):\n{list}", problems = .list.len())]
    Invalid { path: String, list: Problems },
}
