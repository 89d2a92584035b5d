//! What the runtime can import: its Python version and every installed distribution with its
//! version and top-level modules, read once at start from the layer's own metadata (the venv's
//! `pyvenv.cfg` and each `*.dist-info`), never from a list kept by hand. `GET /packages` and the
//! MCP tool's description show it; the templates' routing learns from it which distributions
//! build on the preloaded ones ([`Packages::modules_needing`]), so a package added through
//! `layer/requirements.in` is routed without a code change.

mod metadata;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use metadata::{canonical, Distribution};

#[derive(Debug, Error)]
pub enum PackagesError {
    #[error("cannot read the runtime's {what} in {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the runtime at {0} has no lib/python3.*/site-packages")]
    NoSitePackages(PathBuf),
}

/// The runtime's Python and its distributions, sorted by name.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Packages {
    /// The interpreter's version, e.g. `3.11.2`.
    pub python: String,
    pub packages: Vec<Package>,
    /// The venv's site-packages, where [`Packages::has_module`] looks.
    #[serde(skip)]
    site: PathBuf,
}

/// One installed distribution.
#[derive(Clone, Debug, Serialize)]
pub struct Package {
    /// As its metadata spells it (`scikit-learn`).
    pub name: String,
    pub version: String,
    /// The top-level modules a script imports it by (`sklearn`).
    pub modules: Vec<String>,
    /// Canonical names of the distributions it requires.
    #[serde(skip)]
    requires: Vec<String>,
}

impl Packages {
    /// Reads the venv at `python_dir` (the layer's `python/`).
    pub fn read(python_dir: &Path) -> Result<Self, PackagesError> {
        let read = |what, path: PathBuf| {
            std::fs::read_to_string(&path).map_err(|source| PackagesError::Read {
                what,
                path,
                source,
            })
        };
        let python = python_version(&read("pyvenv.cfg", python_dir.join("pyvenv.cfg"))?);
        let site = site_packages(python_dir)?;
        let entries = std::fs::read_dir(&site).map_err(|source| PackagesError::Read {
            what: "site-packages",
            path: site.clone(),
            source,
        })?;
        let mut packages = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let dir = entry.path();
            if dir.extension().is_none_or(|ext| ext != "dist-info") {
                continue;
            }
            let Some(dist) = metadata::parse_metadata(&read("METADATA", dir.join("METADATA"))?)
            else {
                tracing::warn!(dir = %dir.display(), "a distribution without a name or version: left out");
                continue;
            };
            let modules = match std::fs::read_to_string(dir.join("top_level.txt")) {
                Ok(text) => metadata::parse_top_level(&text),
                Err(_) => metadata::modules_in_record(&read("RECORD", dir.join("RECORD"))?),
            };
            packages.push(Package::new(dist, modules));
        }
        packages.sort_by_key(|package| canonical(&package.name));
        Ok(Self {
            python,
            packages,
            site,
        })
    }

    /// Whether `module` (dotted, of identifiers) is a module of the runtime's site-packages: a
    /// package's directory with its `__init__.py`, a `.py` file or an extension module. Reads
    /// only the directory it would be in.
    pub fn has_module(&self, module: &str) -> bool {
        let parts: Vec<&str> = module.split('.').collect();
        if parts.iter().any(|part| {
            part.is_empty() || !part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }) {
            return false;
        }
        let Some((last, parents)) = parts.split_last() else {
            return false;
        };
        let dir = parents
            .iter()
            .fold(self.site.clone(), |dir, part| dir.join(part));
        if dir.join(last).join("__init__.py").is_file() || dir.join(format!("{last}.py")).is_file()
        {
            return true;
        }
        // An extension module: `name.cpython-311-x86_64-linux-gnu.so`, `name.abi3.so`, `name.so`.
        let prefix = format!("{last}.");
        std::fs::read_dir(&dir)
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .any(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.starts_with(&prefix) && name.ends_with(".so")
            })
    }

    /// The top-level modules of every distribution that requires, directly or through others,
    /// one providing a module of `modules` (by its top-level package): scipy and scikit-learn
    /// for numpy. A script importing one of those imports the preloaded modules too.
    pub fn modules_needing(&self, modules: &[String]) -> Vec<String> {
        let top_levels: BTreeSet<&str> = modules
            .iter()
            .map(|module| module.split('.').next().unwrap_or(module))
            .collect();
        let by_name: HashMap<String, &Package> = self
            .packages
            .iter()
            .map(|package| (canonical(&package.name), package))
            .collect();
        let mut needed: BTreeSet<String> = by_name
            .iter()
            .filter(|(_, package)| {
                package
                    .modules
                    .iter()
                    .any(|m| top_levels.contains(m.as_str()))
            })
            .map(|(name, _)| name.clone())
            .collect();
        // Grow the set until no distribution outside it requires one inside it.
        loop {
            let more: Vec<String> = by_name
                .iter()
                .filter(|(name, package)| {
                    !needed.contains(*name) && package.requires.iter().any(|r| needed.contains(r))
                })
                .map(|(name, _)| name.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            needed.extend(more);
        }
        let mut found: Vec<String> = needed
            .iter()
            .flat_map(|name| by_name[name].modules.iter().cloned())
            .filter(|module| !top_levels.contains(module.as_str()))
            .collect();
        found.sort();
        found
    }

    /// `name==version` of each distribution, for a description.
    pub fn pins(&self) -> Vec<String> {
        self.packages
            .iter()
            .map(|package| format!("{}=={}", package.name, package.version))
            .collect()
    }
}

impl Package {
    fn new(dist: Distribution, modules: Vec<String>) -> Self {
        Self {
            name: dist.name,
            version: dist.version,
            modules,
            requires: dist.requires,
        }
    }
}

/// `version` (or, from newer venvs, `version_info`) of a `pyvenv.cfg`.
fn python_version(config: &str) -> String {
    let value = |key: &str| {
        config.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_owned())
        })
    };
    value("version")
        .or_else(|| value("version_info"))
        .unwrap_or_default()
}

fn site_packages(python_dir: &Path) -> Result<PathBuf, PackagesError> {
    let lib = python_dir.join("lib");
    std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("site-packages"))
        .find(|site| {
            site.is_dir()
                && site
                    .parent()
                    .and_then(Path::file_name)
                    .is_some_and(|name| name.to_string_lossy().starts_with("python3"))
        })
        .ok_or_else(|| PackagesError::NoSitePackages(python_dir.to_owned()))
}

#[cfg(test)]
mod tests;
