//! Which template suits a script, and what the data template should grow by for it: a cheap
//! scan of its import statements.
//!
//! A heuristic, and a safe one: a script sent to the plain template that imports numpy after
//! all just imports it itself (slower, equally correct), and one sent to the data template by a
//! false match only carries modules it does not use. Growth only ever names modules that exist
//! in the runtime (the caller's `is_module` says which), so a typo in a script's import cannot
//! make a template fail to start.

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

/// The script's import statements, one per line: a text that routes as the script does,
/// which a session keeps so that its later calls go where its earlier imports went.
pub fn import_statements(script: &str) -> Vec<String> {
    script
        .lines()
        .flat_map(|line| line.split(';'))
        .map(str::trim)
        .filter(|statement| !imported_modules(statement).is_empty())
        .map(str::to_owned)
        .collect()
}

/// What the data template should grow by for `script`: for each module of `on_demand` whose
/// package the script imports, that module, and every module of the package the script imports
/// that `is_module` finds (`scipy.stats` for `import scipy.stats`, `sklearn.linear_model` for
/// `from sklearn import linear_model`). In the order first met, without duplicates.
pub fn growth(script: &str, on_demand: &[String], is_module: impl Fn(&str) -> bool) -> Vec<String> {
    let imported: Vec<String> = script
        .lines()
        .flat_map(|line| line.split(';'))
        .flat_map(imported_names)
        .collect();
    let mut wanted: Vec<String> = Vec::new();
    for entry in on_demand {
        let package = top_level(entry);
        let mut of_package = imported.iter().filter(|name| top_level(name) == package);
        let Some(first) = of_package.next() else {
            continue;
        };
        let candidates = std::iter::once(first).chain(of_package);
        let found = candidates.filter(|name| *name != entry && is_public(name) && is_module(name));
        for module in std::iter::once(entry.clone()).chain(found.cloned()) {
            if !wanted.contains(&module) {
                wanted.push(module);
            }
        }
    }
    // Importing `scipy.stats` imports `scipy`: a package whose submodule is wanted goes.
    let covered = |module: &String| {
        let prefix = format!("{module}.");
        wanted.iter().any(|other| other.starts_with(&prefix))
    };
    wanted.iter().filter(|m| !covered(m)).cloned().collect()
}

/// Every name a statement imports that may be a module: `import a.b` gives `a.b`; `from a
/// import b, c` gives `a`, `a.b` and `a.c` (`b` and `c` may be attributes, not modules).
/// Relative imports name nothing of the runtime's.
fn imported_names(statement: &str) -> Vec<String> {
    let statement = statement.trim();
    if let Some(rest) = statement.strip_prefix("from ") {
        let Some((package, names)) = rest.split_once(" import ") else {
            return Vec::new();
        };
        let package = package.trim();
        if package.starts_with('.') || package.is_empty() {
            return Vec::new();
        }
        let names = names.trim().trim_start_matches('(').trim_end_matches(')');
        let members = names
            .split(',')
            .filter_map(|item| item.split_whitespace().next())
            .filter(|name| *name != "*")
            .map(|name| format!("{package}.{name}"));
        return std::iter::once(package.to_owned()).chain(members).collect();
    }
    imported_modules(statement)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// A dotted name of identifiers, none private: a module a script may make a template import.
fn is_public(name: &str) -> bool {
    name.split('.').all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
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

    #[test]
    fn import_statements_route_as_their_script() {
        let script =
            "import pandas as pd; x = 1\nfor i in range(2):\n    from numpy import array\n";
        let kept = import_statements(script).join("\n");
        assert_eq!(kept, "import pandas as pd\nfrom numpy import array");
        assert!(imports_any(&kept, &data()));
        assert!(import_statements("x = 1\n").is_empty());
    }

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
    fn growth_names_the_on_demand_modules_and_the_submodules_imported() {
        let on_demand: Vec<String> = ["matplotlib.pyplot", "scipy", "sklearn"]
            .map(String::from)
            .into();
        let exists = |name: &str| !name.contains("nope") && !name.ends_with("Regression");
        let script = "import numpy\nimport scipy.stats as st\n\
                      from sklearn.linear_model import LinearRegression\n\
                      from sklearn import (svm, nope)\nimport scipy._lib\nfrom . import x\n";
        assert_eq!(
            growth(script, &on_demand, exists),
            ["scipy.stats", "sklearn.linear_model", "sklearn.svm"]
        );
        let plots = "import matplotlib.pyplot as plt\nimport matplotlib";
        assert_eq!(growth(plots, &on_demand, exists), ["matplotlib.pyplot"]);
        assert!(growth("import numpy, pandas", &on_demand, exists).is_empty());
        assert_eq!(growth("import scipy", &on_demand, exists), ["scipy"]);
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
