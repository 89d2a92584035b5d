//! The repository's built pieces the tests run: its root, the sandbox layer and the tools
//! `tools/install.sh` installs. Each fails loudly when missing: a test never skips for it.

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The built layer (`make layer`): tests need real nsjail and Python.
pub fn layer_dir() -> PathBuf {
    let dir = repo_root().join("layer/out");
    assert!(
        dir.join("nsjail/bin/nsjail").is_file() && dir.join("python/bin/python3").is_file(),
        "the sandbox layer is not built at {}: run `make layer` (tests need real nsjail and Python)",
        dir.display()
    );
    dir
}

/// A tool installed under `.tools/` (`make tools`).
pub fn tool(relative: &str) -> PathBuf {
    let path = repo_root().join(".tools").join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `make tools` (tools/install.sh installs it)",
        path.display()
    );
    path
}
