//! Which template suits a script: a cheap scan of its import statements.
//!
//! A heuristic, and a safe one: a script sent to the plain template that imports numpy after
//! all just imports it itself (slower, equally correct), and one sent to the data template by a
//! false match only carries modules it does not use.

/// Whether the script imports any of `modules` (by top-level package) in an `import` or
/// `from ... import` statement, at any indentation.
pub fn imports_any(script: &str, modules: &[String]) -> bool {
    let wanted: Vec<&str> = modules.iter().map(|module| top_level(module)).collect();
    script
        .lines()
        .flat_map(|line| line.split(';'))
        .flat_map(imported_modules)
        .any(|module| wanted.contains(&top_level(module)))
}

fn top_level(module: &str) -> &str {
    module.split('.').next().unwrap_or(module).trim()
}

/// The modules one statement imports.
fn imported_modules(statement: &str) -> Vec<&str> {
    let statement = statement.trim();
    if let Some(rest) = statement.strip_prefix("import ") {
        return rest
            .split(',')
            .filter_map(|item| item.split_whitespace().next())
            .collect();
    }
    if let Some(rest) = statement.strip_prefix("from ") {
        return rest.split_whitespace().next().into_iter().collect();
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Vec<String> {
        vec!["numpy".into(), "pandas".into()]
    }

    #[test]
    fn finds_imports_anywhere() {
        let seed = "def main():\n    import numpy as np\n    return 1";
        assert!(imports_any(seed, &data()));
        assert!(imports_any("from pandas.api import types", &data()));
        assert!(imports_any("import os, numpy.linalg as la", &data()));
        assert!(imports_any("import os; import pandas", &data()));
    }

    #[test]
    fn a_preloaded_submodule_routes_by_its_package() {
        let preload = vec!["numpy".into(), "matplotlib.pyplot".into()];
        assert!(imports_any("import matplotlib.pyplot as plt", &preload));
        assert!(imports_any("from matplotlib import pyplot", &preload));
        assert!(imports_any("import matplotlib", &preload));
        assert!(!imports_any("import matplotlibx", &preload));
    }

    #[test]
    fn ignores_everything_else() {
        assert!(!imports_any("def main():\n    print('hi')", &data()));
        assert!(!imports_any(
            "import numbers\nfrom pandasx import y",
            &data()
        ));
        assert!(!imports_any("# import pandas\ndef main(): pass", &data()));
    }
}
