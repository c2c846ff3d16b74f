//! Test support: the crate's own source files, for the tests that hold a rule over all of them
//! (one list of credential headers, one way to compare secret digests).

use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, and `src/` itself.
pub(crate) fn rust_sources() -> (PathBuf, Vec<PathBuf>) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    assert!(files.len() > 50, "walked {}", src.display());
    (src, files)
}
