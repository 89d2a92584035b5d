//! The inventory read from a small venv laid out as pip lays one out.

use std::fs;
use std::path::Path;

use super::*;

/// A dist-info with `metadata` and either a top_level.txt or a RECORD.
fn dist(site: &Path, dir: &str, metadata: &str, top_level: Option<&str>, record: &str) {
    let dir = site.join(dir);
    fs::create_dir_all(&dir).expect("dist-info");
    fs::write(dir.join("METADATA"), metadata).expect("METADATA");
    fs::write(dir.join("RECORD"), record).expect("RECORD");
    if let Some(top_level) = top_level {
        fs::write(dir.join("top_level.txt"), top_level).expect("top_level.txt");
    }
}

fn venv() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let site = root.path().join("lib/python3.11/site-packages");
    fs::create_dir_all(&site).expect("site-packages");
    fs::write(
        root.path().join("pyvenv.cfg"),
        "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n",
    )
    .expect("pyvenv.cfg");
    dist(
        &site,
        "numpy-2.2.6.dist-info",
        "Name: numpy\nVersion: 2.2.6\n",
        None,
        "numpy/__init__.py,,\nnumpy.libs/x.so,,\n",
    );
    dist(
        &site,
        "scipy-1.17.1.dist-info",
        "Name: scipy\nVersion: 1.17.1\nRequires-Dist: numpy<2.6,>=1.25.2\n",
        None,
        "scipy/__init__.py,,\n",
    );
    dist(
        &site,
        "scikit_learn-1.9.1.dist-info",
        "Name: scikit-learn\nVersion: 1.9.1\nRequires-Dist: scipy>=1.10\n\
         Requires-Dist: joblib>=1.3\n",
        None,
        "sklearn/__init__.py,,\n",
    );
    dist(
        &site,
        "joblib-1.6.0.dist-info",
        "Name: joblib\nVersion: 1.6.0\n",
        Some("joblib\n"),
        "",
    );
    dist(
        &site,
        "openpyxl-3.1.5.dist-info",
        "Name: openpyxl\nVersion: 3.1.5\nRequires-Dist: et-xmlfile\n",
        Some("openpyxl\n"),
        "",
    );
    root
}

#[test]
fn reads_python_version_and_every_distribution_sorted() {
    let venv = venv();
    let packages = Packages::read(venv.path()).expect("an inventory");
    assert_eq!(packages.python, "3.11.2");
    let names: Vec<&str> = packages.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["joblib", "numpy", "openpyxl", "scikit-learn", "scipy"]
    );
    assert_eq!(packages.packages[3].modules, ["sklearn"]);
    assert_eq!(packages.packages[3].version, "1.9.1");
    assert!(packages.pins().contains(&"scipy==1.17.1".to_owned()));
}

#[test]
fn modules_needing_numpy_are_those_of_its_dependents_transitively() {
    let venv = venv();
    let packages = Packages::read(venv.path()).expect("an inventory");
    let preload = ["numpy".to_owned(), "pandas".to_owned()];
    assert_eq!(packages.modules_needing(&preload), ["scipy", "sklearn"]);
    assert!(packages
        .modules_needing(&["matplotlib.pyplot".to_owned()])
        .is_empty());
}

#[test]
fn a_directory_that_is_no_venv_is_an_error() {
    let empty = tempfile::tempdir().expect("tempdir");
    assert!(Packages::read(empty.path()).is_err());
    fs::write(empty.path().join("pyvenv.cfg"), "version = 3.11.2\n").expect("pyvenv.cfg");
    let error = Packages::read(empty.path()).expect_err("no site-packages");
    assert!(error.to_string().contains("site-packages"), "{error}");
}

#[test]
fn a_module_is_a_package_a_file_or_an_extension_in_site_packages() {
    let venv = venv();
    let site = venv.path().join("lib/python3.11/site-packages");
    fs::create_dir_all(site.join("scipy/stats")).expect("dirs");
    fs::write(site.join("scipy/__init__.py"), "").expect("init");
    fs::write(site.join("scipy/stats/__init__.py"), "").expect("init");
    fs::write(site.join("scipy/fft.py"), "").expect("module");
    fs::write(
        site.join("scipy/_ufuncs.cpython-311-x86_64-linux-gnu.so"),
        "",
    )
    .expect("so");
    fs::create_dir_all(site.join("scipy/datadir")).expect("a directory, no package");
    let packages = Packages::read(venv.path()).expect("an inventory");
    for module in ["scipy", "scipy.stats", "scipy.fft", "scipy._ufuncs"] {
        assert!(packages.has_module(module), "{module}");
    }
    for module in [
        "scipy.datadir",
        "scipy.nope",
        "scipy..stats",
        "scipy/stats",
        "../x",
        "",
    ] {
        assert!(!packages.has_module(module), "{module}");
    }
}
