//! The files side of `convert`: route directories in, `chat_<name>.json` files out, read oldest
//! log first and streamed one entry at a time into a temporary file renamed into place.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::entry::{ConvertStats, Converter};
use crate::chatlog::{log_files, route_slug};

/// One written output file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RouteOutput {
    /// The route prefix, from the records (or guessed from the directory name).
    pub route: String,
    /// The `chat_<name>.json` file written.
    pub path: PathBuf,
    /// The log files read, oldest first.
    pub sources: Vec<PathBuf>,
    pub stats: ConvertStats,
}

/// The output file name openai-forward gives a route: `chat_<route with / → _, trimmed>.json`,
/// `chat_openai.json` for the root route. Characters other than ASCII letters, digits, `-`, `.`
/// and `_` also become `_`, so the name is always one plain path component.
pub(crate) fn output_file_name(route: &str) -> String {
    let name: String = route
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_matches('_');
    format!(
        "chat_{}.json",
        if name.is_empty() { "openai" } else { name }
    )
}

#[cfg(test)] // a convenience for the tests; the CLI reports per route
/// Converts every route directory under `log_dir` (or `log_dir` itself, when it holds log
/// files) into `out_dir/chat_<name>.json`, reading rotated files oldest first. Returns the
/// files written.
pub(crate) fn convert_dir(log_dir: &Path, out_dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(convert_dir_report(log_dir, out_dir)?
        .into_iter()
        .map(|o| o.path)
        .collect())
}

/// [`convert_dir`] with per-route counts, for the CLI to print. Route directories are handled
/// in name order; when two routes map to the same openai-forward name (`/` and `/openai` are
/// both `openai`), the later one is written as `chat_<directory>.json` instead, with a warning.
pub(crate) fn convert_dir_report(log_dir: &Path, out_dir: &Path) -> io::Result<Vec<RouteOutput>> {
    let mut route_dirs = Vec::new();
    if log_files(log_dir).map_err(|e| at(log_dir, e))?.is_empty() {
        for entry in fs::read_dir(log_dir).map_err(|e| at(log_dir, e))? {
            let entry = entry.map_err(|e| at(log_dir, e))?;
            if entry
                .file_type()
                .map_err(|e| at(&entry.path(), e))?
                .is_dir()
            {
                route_dirs.push(entry.path());
            }
        }
        route_dirs.sort();
    } else {
        route_dirs.push(log_dir.to_path_buf());
    }

    fs::create_dir_all(out_dir).map_err(|e| at(out_dir, e))?;
    let mut taken = HashSet::new();
    let mut outputs = Vec::new();
    for (n, dir) in route_dirs.into_iter().enumerate() {
        let sources = log_files(&dir).map_err(|e| at(&dir, e))?;
        if sources.is_empty() {
            continue;
        }
        // Entries stream into a temporary file; its final name needs the route, which is only
        // known once records have been read.
        let tmp = out_dir.join(format!(".chat_convert_{n}.tmp"));
        let mut converter = Converter::new();
        if let Err(e) = convert_sources(&sources, &mut converter, &tmp) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let dir_slug = route_slug(&dir.file_name().unwrap_or_default().to_string_lossy());
        let route = match converter.route() {
            Some(route) => route.to_owned(),
            None if dir_slug == "root" => "/".to_owned(),
            None => format!("/{dir_slug}"),
        };
        let name = pick_name(&route, &dir_slug, &mut taken);
        let path = out_dir.join(name);
        fs::rename(&tmp, &path).map_err(|e| at(&path, e))?;
        let stats = converter.stats();
        log::info!(
            "convert {route}: {} chats → {} ({} skipped, {} malformed)",
            stats.converted,
            path.display(),
            stats.skipped,
            stats.malformed
        );
        outputs.push(RouteOutput {
            route,
            path,
            sources,
            stats,
        });
    }
    Ok(outputs)
}

/// The io error, with the path it concerns (a bare "No such file or directory" helps nobody).
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Converts `sources` in order into the JSON array file `tmp`, fsynced.
fn convert_sources(sources: &[PathBuf], converter: &mut Converter, tmp: &Path) -> io::Result<()> {
    let file = File::create(tmp).map_err(|e| at(tmp, e))?;
    let mut out = ArrayWriter::new(BufWriter::new(file));
    let mut line = Vec::new();
    for source in sources {
        let mut reader = BufReader::new(File::open(source).map_err(|e| at(source, e))?);
        loop {
            line.clear();
            // Bytes, not `lines()`: a line of invalid UTF-8 is a malformed record, not an abort.
            if reader
                .read_until(b'\n', &mut line)
                .map_err(|e| at(source, e))?
                == 0
            {
                break;
            }
            if let Some(entry) = converter.convert_line(&line) {
                out.push(&entry).map_err(|e| at(tmp, e))?;
            }
        }
    }
    let file = out
        .finish()
        .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
        .map_err(|e| at(tmp, e))?;
    file.sync_all().map_err(|e| at(tmp, e))
}

/// Writes a JSON array one entry at a time, byte for byte as `serde_json::to_writer_pretty`
/// writes the whole array (2-space indent, `[]` when empty, no trailing newline). An entry is
/// pretty-printed on its own and indented one level: raw newlines in pretty JSON only ever
/// separate lines (inside strings they are escaped), so prefixing each line is exact.
pub(super) struct ArrayWriter<W: Write> {
    out: W,
    entries: u64,
    scratch: Vec<u8>,
}

impl<W: Write> ArrayWriter<W> {
    pub(super) fn new(out: W) -> Self {
        Self {
            out,
            entries: 0,
            scratch: Vec::new(),
        }
    }

    pub(super) fn push<T: Serialize>(&mut self, entry: &T) -> io::Result<()> {
        self.scratch.clear();
        serde_json::to_writer_pretty(&mut self.scratch, entry)?;
        self.out
            .write_all(if self.entries == 0 { b"[\n" } else { b",\n" })?;
        for (i, line) in self.scratch.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.out.write_all(b"\n")?;
            }
            self.out.write_all(b"  ")?;
            self.out.write_all(line)?;
        }
        self.entries += 1;
        Ok(())
    }

    pub(super) fn finish(mut self) -> io::Result<W> {
        self.out
            .write_all(if self.entries == 0 { b"[]" } else { b"\n]" })?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn pick_name(route: &str, dir_slug: &str, taken: &mut HashSet<String>) -> String {
    let preferred = output_file_name(route);
    if taken.insert(preferred.clone()) {
        return preferred;
    }
    let mut n = 1u32;
    loop {
        let candidate = if n == 1 {
            format!("chat_{dir_slug}.json")
        } else {
            format!("chat_{dir_slug}_{n}.json")
        };
        if taken.insert(candidate.clone()) {
            log::warn!(
                "convert {route}: {preferred} is taken by another route, writing {candidate}"
            );
            return candidate;
        }
        n += 1;
    }
}
