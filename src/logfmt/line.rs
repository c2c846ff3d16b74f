//! One log line per request without the logger's per-record work. The access line is written
//! for every request, and going through `log` and env_logger cost ~11 % of a proxied request's
//! instructions (callgrind): the record's formatting machinery, a timestamp built from scratch,
//! and, when stderr is not a terminal, a pass over every byte to strip colour escapes that a
//! plain line never holds. [`write`] formats the message into a buffer kept per thread and,
//! when the binary said its stderr takes plain lines ([`enable_direct_stderr`]), writes it
//! there itself in env_logger's default format, byte for byte the same
//! (`[2026-12-03T08:57:25Z INFO  access] …`), in one `write` under the stderr lock as
//! env_logger does (so lines of different threads never interleave). Otherwise (a terminal,
//! where env_logger colours the header; colours forced; a library user's own logger) the
//! message goes through `log` as before.

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Set once at startup by the binary, after it installed env_logger.
static DIRECT: AtomicBool = AtomicBool::new(false);

/// Lines are written straight to stderr from now on, if env_logger writes them there without
/// colours: stderr is not a terminal (or `RUST_LOG_STYLE=never`), and neither
/// `RUST_LOG_STYLE=always` nor `CLICOLOR_FORCE` asks for colours anyway (the rules env_logger
/// and anstream apply when the logger is built). Call only with env_logger's default format
/// installed on stderr.
pub fn enable_direct_stderr() {
    use std::io::IsTerminal;
    let style = std::env::var("RUST_LOG_STYLE").unwrap_or_default();
    let forced = std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| !v.is_empty());
    let plain = match style.as_str() {
        "never" => true,
        "always" => false,
        _ => !forced && !std::io::stderr().is_terminal(),
    };
    DIRECT.store(plain, Ordering::Relaxed);
}

/// The line buffer and the last second's timestamp, per thread.
struct Scratch {
    line: String,
    second: u64,
    stamp: [u8; 20],
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch { line: String::new(), second: u64::MAX, stamp: [0; 20] })
    };
}

/// Write one INFO line for `target`, its message written by `message` (which must not write a
/// newline: every client-supplied value goes through [`super::Field`]). Callers check
/// `log::log_enabled!` first; this does not filter again.
pub fn write(target: &str, message: impl FnOnce(&mut String) -> std::fmt::Result) {
    let direct = DIRECT.load(Ordering::Relaxed);
    let mut message = Some(message);
    let _ = SCRATCH.try_with(|s| {
        // Taken only when the buffer is free (not re-entered from a `Display` that logs).
        let (Ok(mut s), Some(message)) = (s.try_borrow_mut(), message.take()) else {
            return;
        };
        let s = &mut *s;
        s.line.clear();
        if direct {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if now != s.second {
                s.second = now;
                s.stamp = rfc3339_seconds(now);
            }
            header(&mut s.line, &s.stamp, target);
        }
        if message(&mut s.line).is_err() {
            return;
        }
        if direct {
            s.line.push('\n');
            let _ = std::io::stderr().lock().write_all(s.line.as_bytes());
        } else {
            log::info!(target: target, "{}", s.line);
        }
        // A rare huge line (a long path) does not stay allocated for the thread's life.
        if s.line.capacity() > 16 << 10 {
            s.line = String::new();
        }
    });
    if let Some(message) = message {
        // Re-entered, or the thread is ending: the ordinary way.
        let mut line = String::new();
        if message(&mut line).is_ok() {
            log::info!(target: target, "{line}");
        }
    }
}

/// env_logger's default header of an INFO record: `[<timestamp> INFO  <target>] `.
fn header(line: &mut String, stamp: &[u8; 20], target: &str) {
    line.push('[');
    line.push_str(std::str::from_utf8(stamp).unwrap_or(""));
    line.push_str(" INFO  ");
    line.push_str(target);
    line.push_str("] ");
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC), as env_logger writes its default
/// timestamp (past year 9999, which no clock reaches, the year's last four digits).
fn rfc3339_seconds(secs: u64) -> [u8; 20] {
    let mut text = Vec::with_capacity(20);
    crate::utc_text::push_date_time(&mut text, secs, b'Z');
    let mut out = [0u8; 20];
    if text.len() == 20 {
        out.copy_from_slice(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{header, rfc3339_seconds};
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::{SystemTime, UNIX_EPOCH};

    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// The direct line is the bytes env_logger (as `main` sets it up, uncoloured) writes for
    /// the same record.
    #[test]
    fn the_direct_line_is_env_loggers_line() {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let logger = env_logger::Builder::new()
            .filter_level(log::LevelFilter::Info)
            .write_style(env_logger::WriteStyle::Never)
            .target(env_logger::Target::Pipe(Box::new(Capture(
                captured.clone(),
            ))))
            .build();
        let message = "GET /v1/models status=200 route=/ client=127.0.0.1 ms=0.4";
        loop {
            captured.lock().unwrap().clear();
            let before = now();
            log::Log::log(
                &logger,
                &log::Record::builder()
                    .args(format_args!("{message}"))
                    .level(log::Level::Info)
                    .target("access")
                    .build(),
            );
            if now() != before {
                continue; // a second boundary: the stamps may differ, try again
            }
            let mut ours = String::new();
            header(&mut ours, &rfc3339_seconds(before), "access");
            ours.push_str(message);
            ours.push('\n');
            let theirs = String::from_utf8(captured.lock().unwrap().clone()).unwrap();
            assert_eq!(ours, theirs);
            break;
        }
    }

    #[test]
    fn timestamps_match_env_loggers_default() {
        for (secs, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (951_868_799, "2000-02-29T23:59:59Z"),
            (1_709_251_199, "2024-02-29T23:59:59Z"),
            (1_796_284_645, "2026-12-03T07:57:25Z"),
            (4_102_444_800, "2100-01-01T00:00:00Z"),
        ] {
            assert_eq!(std::str::from_utf8(&rfc3339_seconds(secs)).unwrap(), text);
        }
    }
}
