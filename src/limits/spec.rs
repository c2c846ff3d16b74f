//! Limit strings in openai-forward's syntax (that of the `limits` library): `60/minute`,
//! `100/2minutes`, `10 per 30 seconds`, several joined by `;` (`60/minute;600/hour`), and `inf`
//! for no limit. Pure parsing.

use std::time::Duration;

/// One window: at most `count` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub count: u64,
    pub window: Duration,
}

/// All windows of a limit string; empty means unlimited (`inf`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LimitSpec(pub Vec<Window>);

impl LimitSpec {
    pub fn is_unlimited(&self) -> bool {
        self.0.is_empty()
    }
}

pub fn parse_limit(text: &str) -> Result<LimitSpec, String> {
    let mut windows = Vec::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        if part.to_ascii_lowercase().starts_with("inf") {
            continue;
        }
        windows.push(parse_window(part)?);
    }
    if windows.is_empty() && !text.trim().to_ascii_lowercase().starts_with("inf") {
        return Err(
            "expected a limit such as 60/minute, 100/2minutes or 60/minute;600/hour (or inf)"
                .into(),
        );
    }
    windows.sort_by_key(|w| w.window);
    Ok(LimitSpec(windows))
}

fn parse_window(part: &str) -> Result<Window, String> {
    let bad = || {
        format!(
            "{part:?} is not a limit; expected e.g. 60/minute, 100/2minutes or 10 per 30 seconds"
        )
    };
    let lower = part.to_ascii_lowercase();
    let (count, per) = lower
        .split_once('/')
        .or_else(|| lower.split_once(" per "))
        .ok_or_else(bad)?;
    let count: u64 = count.trim().parse().map_err(|_| bad())?;
    let per = per.trim();
    let digits = per.find(|c: char| !c.is_ascii_digit()).unwrap_or(per.len());
    let (n, unit) = per.split_at(digits);
    let n: u64 = if n.is_empty() {
        1
    } else {
        n.parse().map_err(|_| bad())?
    };
    let unit_secs = match unit.trim().trim_end_matches('s') {
        "second" | "sec" => 1,
        "minute" | "min" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "month" => 30 * 86_400,
        "year" => 365 * 86_400,
        _ => return Err(bad()),
    };
    if n == 0 || count == 0 {
        return Err(format!(
            "{part:?}: a count and a window of at least 1 (use `inf` for no limit)"
        ));
    }
    Ok(Window {
        count,
        window: Duration::from_secs(n.saturating_mul(unit_secs)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(count: u64, secs: u64) -> Window {
        Window {
            count,
            window: Duration::from_secs(secs),
        }
    }

    #[test]
    fn openai_forward_syntax() {
        assert_eq!(parse_limit("100/minute").unwrap().0, vec![w(100, 60)]);
        assert_eq!(parse_limit("100/2minutes").unwrap().0, vec![w(100, 120)]);
        assert_eq!(
            parse_limit("60/minute;600/hour").unwrap().0,
            vec![w(60, 60), w(600, 3600)]
        );
        assert_eq!(parse_limit("10 per 30 seconds").unwrap().0, vec![w(10, 30)]);
        assert_eq!(parse_limit("5/Second").unwrap().0, vec![w(5, 1)]);
        assert!(parse_limit("inf").unwrap().is_unlimited());
        assert!(parse_limit("INFINITE").unwrap().is_unlimited());
        for bad in [
            "",
            "100",
            "100/fortnight",
            "x/minute",
            "0/minute",
            "10/0minutes",
        ] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }
}
