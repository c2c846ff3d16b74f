//! Prometheus' text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per family,
//! then one line per sample, label values escaped (`\\`, `\"`, `\n`).

use super::histogram::Snapshot;
use std::fmt::{Display, Write};

pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Default)]
pub(crate) struct Exposition {
    out: String,
}

impl Exposition {
    pub(crate) fn into_string(self) -> String {
        self.out
    }

    /// Start a family: `kind` is `counter`, `gauge` or `histogram`.
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    pub(crate) fn histogram(&mut self, name: &str, labels: &[(&str, &str)], s: &Snapshot) {
        for (le, count) in &s.buckets {
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le.to_string()));
            let _ = writeln!(self.out, " {count}");
        }
        let _ = write!(self.out, "{name}_bucket");
        self.labels(labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", s.count);
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", s.sum);
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", s.count);
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(k);
            self.out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_label_values() {
        let mut e = Exposition::default();
        e.family("x_total", "counter", "X.");
        e.sample("x_total", &[("route", "/a\"b\\c\nd"), ("k", "v")], 3);
        e.sample("y", &[], 1.5);
        assert_eq!(
            e.into_string(),
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{route=\"/a\\\"b\\\\c\\nd\",k=\"v\"} 3\ny 1.5\n"
        );
    }
}
