//! Finding the layer: nsjail, its policy, the Python runtime and the harness (built by
//! `layer/build.sh`).
//!
//! Looked for in `LAYER_DIR` when set, then `/opt` (where both images put it, as a Lambda layer
//! would be), then the repository's own build output, so the release binary run from a checkout
//! needs no configuration.

use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LayerError {
    #[error("LAYER_DIR={0} is not a built layer (missing {1}); run `make layer`")]
    NotALayer(PathBuf, &'static str),
    #[error("no built layer in {searched}; run `make layer` or set LAYER_DIR")]
    NotFound { searched: String },
}

/// The paths of a built layer on the host.
#[derive(Clone, Debug)]
pub struct Layer {
    pub root: PathBuf,
}

/// Files every sandbox needs, relative to the layer root.
const REQUIRED: [&str; 3] = ["python/bin/python3", "harness/harness.py", "etc/nsjail.cfg"];

impl Layer {
    pub fn locate(configured: Option<&Path>) -> Result<Self, LayerError> {
        if let Some(dir) = configured {
            // Made absolute here, against the service's working directory: the sandboxes run
            // the runtime from other ones (compat's scratch directory), where a relative path
            // names nothing.
            let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.into());
            return match missing_file(&absolute) {
                None => Ok(Self { root: absolute }),
                Some(file) => Err(LayerError::NotALayer(dir.into(), file)),
            };
        }
        let candidates = default_candidates();
        candidates
            .iter()
            .find(|dir| missing_file(dir).is_none())
            .map(|dir| Self { root: dir.clone() })
            .ok_or_else(|| LayerError::NotFound {
                searched: candidates
                    .iter()
                    .map(|dir| dir.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub fn nsjail(&self) -> PathBuf {
        self.root.join("nsjail/bin/nsjail")
    }
    pub fn nsjail_config(&self) -> PathBuf {
        self.root.join("etc/nsjail.cfg")
    }
    /// The venv with numpy and pandas.
    pub fn python_dir(&self) -> PathBuf {
        self.root.join("python")
    }
    pub fn harness_dir(&self) -> PathBuf {
        self.root.join("harness")
    }
}

fn missing_file(dir: &Path) -> Option<&'static str> {
    REQUIRED.into_iter().find(|file| !dir.join(file).is_file())
}

fn default_candidates() -> Vec<PathBuf> {
    let mut candidates = vec![PathBuf::from("/opt")];
    // target/{release,debug}/python-executor -> the checkout's layer/out.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(checkout) = exe.ancestors().nth(3) {
            candidates.push(checkout.join("layer/out"));
        }
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("layer/out"));
    candidates.dedup();
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_directory_must_be_a_layer() {
        let empty = tempfile::tempdir().expect("tempdir");
        let error = Layer::locate(Some(empty.path())).expect_err("empty dir is no layer");
        assert!(error.to_string().contains("python/bin/python3"), "{error}");
    }

    /// A relative `LAYER_DIR` names the layer from the service's working directory, whichever
    /// directory a sandbox later runs in.
    #[test]
    fn a_relative_configured_directory_is_made_absolute() {
        let cwd = std::env::current_dir().expect("a working directory");
        let layer = tempfile::tempdir_in(&cwd).expect("tempdir");
        for file in REQUIRED {
            let path = layer.path().join(file);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, "").expect("write");
        }
        let relative = layer.path().strip_prefix(&cwd).expect("inside the cwd");
        let found = Layer::locate(Some(relative)).expect("a layer");
        assert!(found.root.is_absolute(), "{}", found.root.display());
        assert_eq!(found.root, layer.path());
    }

    #[test]
    fn the_repository_build_output_is_a_candidate() {
        let candidates = default_candidates();
        assert!(candidates.iter().any(|dir| dir.ends_with("layer/out")));
        assert_eq!(candidates[0], PathBuf::from("/opt"));
    }
}
