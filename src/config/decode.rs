//! A small schema walker over `serde_yaml::Value` that records every problem instead of stopping
//! at the first. serde's `deny_unknown_fields` reports one error and no path; a gateway operator
//! deserves the whole list, each with its YAML path, the value and a suggestion for typos.
//!
//! Strings may reference the environment as `${NAME}` (secrets stay out of the file); an unset
//! variable is a problem at that path. Problems echo such a string as written, never expanded,
//! and values expanded into URLs are recorded so printed output can mask them.

use super::problems::Problems;
use super::redact::Secrets;
use super::units;
use serde_yaml::{Mapping, Value};
use std::time::Duration;

/// A value in the document and the path that leads to it.
#[derive(Clone)]
pub(super) struct Node<'a> {
    pub value: &'a Value,
    pub path: String,
}

/// A mapping whose keys were checked against the schema.
///
/// A section's table of keys (the `allowed` of [`Decoder::fields`]) is the one list of its
/// keys: the unknown-key errors and their suggestions come from it, and in tests every read
/// is checked against it both ways. Reading a key the table does not declare panics (it could
/// never be set: it would be reported unknown), and so does a document that decodes without a
/// problem while a key that is present and declared was never read (it would be accepted and
/// silently ignored); see `load::parse_bytes`.
pub(super) struct Fields<'a> {
    map: &'a Mapping,
    path: String,
    #[cfg(test)]
    audit: audit::Audit,
}

/// Lets `${VAR}` look-ups be replaced in tests and by `import-env`.
pub(super) type EnvLookup<'e> = &'e dyn Fn(&str) -> Option<String>;

/// The decoding context: where problems go and how `${VAR}` is resolved.
pub(super) struct Decoder<'e> {
    pub problems: Problems,
    /// `${VAR}` values expanded into URLs (`redact.rs`).
    pub secrets: Secrets,
    env: EnvLookup<'e>,
}

impl<'e> Decoder<'e> {
    pub(super) fn new(env: EnvLookup<'e>) -> Self {
        Decoder {
            problems: Problems::default(),
            secrets: Secrets::default(),
            env,
        }
    }

    pub(super) fn problem(&mut self, path: &str, value: Option<&Value>, why: impl Into<String>) {
        self.problems.add(path, value.map(show), why);
    }

    /// Check that `node` is a mapping whose keys are all in `allowed`.
    pub(super) fn fields<'a>(&mut self, node: &Node<'a>, allowed: &[&str]) -> Option<Fields<'a>> {
        let map = match node.value {
            Value::Mapping(m) => m,
            Value::Null => return None,
            other => {
                self.problem(
                    &node.path,
                    Some(other),
                    "expected a mapping of keys to values",
                );
                return None;
            }
        };
        for key in map.keys() {
            match key.as_str() {
                Some(k) if allowed.contains(&k) => {}
                Some(k) => {
                    let path = join(&node.path, k);
                    let why = match suggest(k, allowed) {
                        Some(s) => format!("unknown key; did you mean `{s}`?"),
                        None => format!("unknown key; expected one of: {}", allowed.join(", ")),
                    };
                    self.problems.add(path, None, why);
                }
                None => self.problem(&node.path, Some(key), "keys must be strings"),
            }
        }
        Some(Fields {
            map,
            path: node.path.clone(),
            #[cfg(test)]
            audit: audit::Audit::new(map, allowed),
        })
    }

    pub(super) fn string(&mut self, node: &Node<'_>) -> Option<String> {
        match node.value {
            Value::String(s) => self.expand(&node.path, s),
            Value::Number(n) => Some(n.to_string()),
            other => {
                self.problem(&node.path, Some(other), "expected a string");
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, node: &Node<'_>) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(*b),
            other => {
                self.problem(&node.path, Some(other), "expected true or false");
                None
            }
        }
    }

    /// The entries of a mapping with user-chosen keys (pool and tenant names), in order.
    pub(super) fn entries<'a>(&mut self, node: &Node<'a>) -> Option<Vec<(String, Node<'a>)>> {
        let Value::Mapping(map) = node.value else {
            self.problem(
                &node.path,
                Some(node.value),
                "expected a mapping of names to values",
            );
            return None;
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, value) in map {
            let name = match k {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    self.problem(&node.path, Some(other), "names must be strings");
                    continue;
                }
            };
            let path = if node.path.is_empty() {
                name.clone()
            } else {
                format!("{}.{name}", node.path)
            };
            out.push((name, Node { value, path }));
        }
        Some(out)
    }

    pub(super) fn uint(&mut self, node: &Node<'_>, min: u64, max: u64) -> Option<u64> {
        match node.value.as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let why = format!("expected a whole number from {min} to {max}");
                self.problem(&node.path, Some(node.value), why);
                None
            }
        }
    }

    pub(super) fn duration(&mut self, node: &Node<'_>) -> Option<Duration> {
        self.parsed(node, units::parse_duration)
    }

    pub(super) fn size(&mut self, node: &Node<'_>) -> Option<u64> {
        self.parsed(node, units::parse_size)
    }

    /// A string (or number) turned into `T` by `parse`, whose error becomes the problem's reason.
    pub(super) fn parsed<T>(
        &mut self,
        node: &Node<'_>,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.string(node)?;
        match parse(&text) {
            Ok(v) => Some(v),
            Err(why) => {
                // As written: `${VAR}` rather than the secret it stands for.
                let shown = match node.value {
                    Value::String(raw) if raw.contains("${") => raw.clone(),
                    _ => text,
                };
                self.problems.add(node.path.clone(), Some(shown), why);
                None
            }
        }
    }

    /// The items of a sequence, each with its indexed path.
    pub(super) fn seq<'a>(&mut self, node: &Node<'a>) -> Vec<Node<'a>> {
        let Value::Sequence(items) = node.value else {
            self.problem(&node.path, Some(node.value), "expected a list");
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .map(|(i, value)| Node {
                value,
                path: format!("{}[{i}]", node.path),
            })
            .collect()
    }

    fn expand(&mut self, path: &str, s: &str) -> Option<String> {
        if !s.contains("${") {
            return Some(s.to_string());
        }
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.problems
                    .add(path, None, "unterminated `${`; write ${NAME}");
                return None;
            };
            let name = &after[..end];
            match (self.env)(name) {
                Some(v) => {
                    if s.contains("://") {
                        self.secrets.add(&v);
                    }
                    out.push_str(&v)
                }
                None => {
                    // The value is not echoed: it names a secret's variable, which is fine, but the
                    // surrounding string might be a secret itself.
                    self.problems.add(
                        path,
                        None,
                        format!("environment variable {name} is not set"),
                    );
                    return None;
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }
}

impl<'a> Node<'a> {
    pub(super) fn root(value: &'a Value) -> Self {
        Node {
            value,
            path: String::new(),
        }
    }
}

impl<'a> Fields<'a> {
    /// The value at `key`, if present and not null.
    pub(super) fn get(&self, key: &str) -> Option<Node<'a>> {
        #[cfg(test)]
        self.audit.read(key, &self.path);
        let value = self.map.get(key)?;
        if value.is_null() {
            return None;
        }
        Some(Node {
            value,
            path: join(&self.path, key),
        })
    }

    pub(super) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

#[cfg(test)]
pub(super) mod audit;

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A short rendering of a YAML value for messages.
fn show(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("!{}", t.tag),
    };
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(77).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// The allowed key closest to a typo, when it is close enough to be the likely intent.
fn suggest<'k>(typo: &str, allowed: &[&'k str]) -> Option<&'k str> {
    let typo = typo.to_ascii_lowercase();
    allowed
        .iter()
        .map(|k| (edit_distance(&typo, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance (the config's and the env variables' "did you mean").
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests;
