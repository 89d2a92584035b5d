//! The environment every script sees, in every sandbox: one table, so nsjail's jail (passed as
//! `--env` flags after the policy) and compat's cleared environment cannot drift. Nothing of the
//! service's own environment, and above all no credentials, ever reaches a script.

use std::ffi::OsString;
use std::path::Path;

/// Variables whose values are the same everywhere.
const FIXED: [(&str, &str); 7] = [
    ("LANG", "C.UTF-8"),
    ("PYTHONIOENCODING", "utf-8"),
    // The runtime is read-only: never try to write bytecode into it.
    ("PYTHONDONTWRITEBYTECODE", "1"),
    // One BLAS thread: the CPU limit is per process, and threads would only fight over it.
    ("OPENBLAS_NUM_THREADS", "1"),
    ("OMP_NUM_THREADS", "1"),
    ("MKL_NUM_THREADS", "1"),
    // Plots render to files (Agg), never to a display.
    ("MPLBACKEND", "Agg"),
];

/// The whole environment of a sandbox's harness, whose Python runtime is at `python_dir` (as
/// the sandbox sees it) and whose HOME and TMPDIR are `home`.
pub fn script_environment(python_dir: &Path, home: &Path) -> Vec<(OsString, OsString)> {
    let mut path = python_dir.join("bin").into_os_string();
    path.push(":/usr/bin:/bin");
    // matplotlib's prebuilt font cache, read-only in the layer (layer/build.sh), so a first
    // plot does not spend seconds building one.
    let mpl_config = python_dir.join("etc/matplotlib");
    let mut env = vec![
        ("PATH".into(), path),
        ("HOME".into(), home.into()),
        ("TMPDIR".into(), home.into()),
        ("MPLCONFIGDIR".into(), mpl_config.into()),
    ];
    env.extend(FIXED.map(|(key, value)| (key.into(), value.into())));
    env
}

/// The variables that differ between a template and its executions: where they write.
pub fn home_variables(home: &Path) -> Vec<(String, String)> {
    let home = home.to_string_lossy().into_owned();
    ["HOME", "TMPDIR"]
        .map(|key| (key.to_owned(), home.clone()))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_names_the_runtime_and_home_and_nothing_of_the_service() {
        let env = script_environment(Path::new("/opt/python"), Path::new("/tmp"));
        let get = |key: &str| {
            env.iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value.to_string_lossy().into_owned())
        };
        assert_eq!(
            get("PATH").as_deref(),
            Some("/opt/python/bin:/usr/bin:/bin")
        );
        assert_eq!(get("HOME").as_deref(), Some("/tmp"));
        assert_eq!(
            get("MPLCONFIGDIR").as_deref(),
            Some("/opt/python/etc/matplotlib")
        );
        assert_eq!(env.len(), 11);
        assert!(get("AWS_SECRET_ACCESS_KEY").is_none());
    }
}
