//! Reading one installed distribution's metadata (`*.dist-info`, as pip writes it): its name,
//! version and requirements from `METADATA`, and the top-level modules it puts on `sys.path`,
//! from `top_level.txt` when the build backend wrote one, else from the files `RECORD` lists
//! (meson-python, maturin, flit and hatchling write no `top_level.txt`). Pure functions over the
//! files' text, so each is tested on a sample.

/// What one `*.dist-info` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distribution {
    pub name: String,
    pub version: String,
    /// Canonical names of the distributions it needs whatever extras are asked for.
    pub requires: Vec<String>,
}

/// A distribution's name as PEP 503 compares them: lowercase, runs of `-_.` as one `-`.
pub fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The headers of a `METADATA` file (they end at its first blank line); `None` without a name
/// or version.
pub fn parse_metadata(text: &str) -> Option<Distribution> {
    let (mut name, mut version, mut requires) = (None, None, Vec::new());
    for line in text.lines().take_while(|line| !line.is_empty()) {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Name" => name = Some(value.to_owned()),
            "Version" => version = Some(value.to_owned()),
            "Requires-Dist" => requires.extend(required(value)),
            _ => {}
        }
    }
    requires.sort();
    requires.dedup();
    Some(Distribution {
        name: name?,
        version: version?,
        requires,
    })
}

/// The distribution a `Requires-Dist` value names, unless only an extra asks for it. Other
/// markers (a Python version, a platform) are not evaluated: counting such a requirement makes
/// a script go to the data template when it need not, which costs nothing but the choice.
fn required(value: &str) -> Option<String> {
    let (requirement, marker) = value.split_once(';').unwrap_or((value, ""));
    if marker.contains("extra") {
        return None;
    }
    let end = requirement
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(requirement.len());
    let name = requirement[..end].trim();
    (!name.is_empty()).then(|| canonical(name))
}

/// The public top-level modules of a `top_level.txt` (one a line).
pub fn parse_top_level(text: &str) -> Vec<String> {
    public_modules(text.lines().map(str::trim))
}

/// The public top-level modules among the files a `RECORD` lists (CSV: path, hash, size): a
/// package's directory or a module's file at the top of site-packages.
pub fn modules_in_record(text: &str) -> Vec<String> {
    let names = text.lines().filter_map(|line| {
        // A path with a comma in it is quoted, as CSV quotes it.
        let path = match line.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next()?,
            None => line.split(',').next()?,
        };
        match path.split_once('/') {
            Some((directory, _)) => Some(directory),
            None => module_file(path),
        }
    });
    public_modules(names)
}

/// The module a file at the top of site-packages is: `six.py`, `_foo.cpython-311-x86_64-linux-gnu.so`.
fn module_file(file: &str) -> Option<&str> {
    let stem = file.strip_suffix(".py").or_else(|| {
        file.strip_suffix(".so")
            .map(|so| so.split('.').next().unwrap_or(so))
    })?;
    Some(stem)
}

/// Sorted, without duplicates, keeping only names a script can import and would: identifiers
/// (not `numpy.libs`, `foo.dist-info`, `..`) that are not private (`_cffi_backend`) or caches.
fn public_modules<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut modules: Vec<String> = names
        .filter(|name| is_identifier(name) && !name.starts_with('_'))
        .map(str::to_owned)
        .collect();
    modules.sort();
    modules.dedup();
    modules
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_as_pep_503_says() {
        assert_eq!(canonical("scikit_learn"), "scikit-learn");
        assert_eq!(canonical("Python.Dateutil"), "python-dateutil");
        assert_eq!(canonical("et__xmlfile"), "et-xmlfile");
    }

    #[test]
    fn metadata_gives_name_version_and_what_is_always_required() {
        let text = "Metadata-Version: 2.1\nName: scikit-learn\nVersion: 1.9.1\n\
                    Requires-Dist: numpy>=1.24.1\nRequires-Dist: scipy (>=1.10.0)\n\
                    Requires-Dist: joblib>=1.3.0; python_version >= \"3.8\"\n\
                    Requires-Dist: pytest>=7; extra == \"tests\"\n\n\
                    Requires-Dist: not-a-header\n";
        let dist = parse_metadata(text).expect("a distribution");
        assert_eq!(dist.name, "scikit-learn");
        assert_eq!(dist.version, "1.9.1");
        assert_eq!(dist.requires, ["joblib", "numpy", "scipy"]);
        assert_eq!(parse_metadata("Name: x\n"), None);
    }

    #[test]
    fn modules_come_from_the_record_when_no_top_level_txt_lists_them() {
        let record = "numpy/__init__.py,sha256=x,10\nnumpy/linalg/__init__.py,,\n\
                      numpy.libs/libopenblas.so,sha256=y,20\nnumpy-2.2.6.dist-info/RECORD,,\n\
                      ../../../bin/f2py,sha256=z,30\npylab.py,sha256=w,40\n\
                      _cffi_backend.cpython-311-x86_64-linux-gnu.so,,\n\
                      kiwisolver/_cext.cpython-311-x86_64-linux-gnu.so,,\n\
                      __pycache__/pylab.cpython-311.pyc,,\ndistutils-precedence.pth,,\n\
                      \"odd,name/x.py\",,\n";
        assert_eq!(modules_in_record(record), ["kiwisolver", "numpy", "pylab"]);
        assert_eq!(parse_top_level("dateutil\n\n_private\n"), ["dateutil"]);
    }
}
