//! The start-up banner on stderr: what is listening and where each route goes, so an operator
//! sees at a glance what this process will do (openai-forward prints a similar table).

use crate::config::units::format_duration;
use crate::config::Config;
use std::fmt::Write;

pub fn render(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "llm-forward {}", env!("CARGO_PKG_VERSION"));
    for addr in &config.server.listen {
        let _ = writeln!(out, "  listening   http://{addr}");
    }
    let _ = writeln!(out, "  routes");
    let width = config
        .routes
        .iter()
        .map(|r| r.prefix.len())
        .max()
        .unwrap_or(1);
    for r in &config.routes {
        let t = &r.timeouts;
        let _ = writeln!(
            out,
            "    {:<width$}  ->  {}  [{}]  keys: client's own  timeouts: connect {} read {}  retries: {}",
            r.prefix,
            r.upstream,
            r.kind.as_str(),
            format_duration(t.connect),
            format_duration(t.read),
            r.retry.connect_retries,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn banner_names_every_route() {
        let text = super::render(&crate::config::Config::default());
        assert!(text.contains("http://0.0.0.0:8000"));
        assert!(text.contains("/  ->  https://api.openai.com  [openai]"));
    }
}
