//! The runtime's packages: the scripts a data user writes first answer (scipy, scikit-learn, a
//! parquet and an Excel file in), `GET /packages` lists exactly what the lock pins, and a module
//! the runtime lacks answers with `missing_module` and a hint, apart from a mistake in the
//! script. An operator's own package: `packages_operator.rs`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::support::{Kind, Service};

/// Writes a small table as parquet and as Excel under outputs/, for the next request to read.
const WRITE_TABLES: &str = r#"
import pandas as pd
def main():
    df = pd.DataFrame({"x": [1, 2, 3, 4], "y": [3, 5, 7, 9]})
    df.to_parquet("outputs/data.parquet", index=False)
    df.to_excel("outputs/data.xlsx", index=False)
    return len(df)
"#;

/// The first imports a data script fails on without the fuller default set.
const READ_AND_FIT: &str = r#"
import pandas as pd
import scipy.stats, sklearn.linear_model
def main():
    table = pd.read_parquet("data.parquet")
    sheet = pd.read_excel("data.xlsx")
    model = sklearn.linear_model.LinearRegression().fit(table[["x"]], table["y"])
    fit = scipy.stats.linregress(sheet["x"], sheet["y"])
    return {
        "rows": [len(table), len(sheet)],
        "same": bool(table.equals(sheet)),
        "slope": round(float(model.coef_[0]), 6),
        "r": round(float(fit.rvalue), 6),
        "markdown": table.head(1).to_markdown(index=False),
    }
"#;

async fn data_scripts_read_parquet_and_excel_and_fit_models(kind: Kind) {
    let service = Service::start(kind).await;
    let written = service.run(WRITE_TABLES).await;
    assert_eq!(written.expect_result(), &json!(4), "{}", written.body);
    let files: Vec<Value> = written.body["files"]
        .as_array()
        .expect("output files")
        .iter()
        .map(|file| {
            let name = file["path"].as_str().expect("a path");
            json!({
                "path": name.trim_start_matches("outputs/"),
                "content_base64": file["content_base64"],
            })
        })
        .collect();
    assert_eq!(files.len(), 2, "{}", written.body);
    let reply = service
        .execute(json!({"script": READ_AND_FIT, "files": files}))
        .await;
    assert_eq!(
        reply.expect_result(),
        &json!({
            "rows": [4, 4],
            "same": true,
            "slope": 2.0,
            "r": 1.0,
            "markdown": "|   x |   y |\n|----:|----:|\n|   1 |   3 |",
        }),
        "{}",
        reply.body
    );
    service.assert_still_healthy().await;
}

async fn packages_lists_what_the_lock_pins(kind: Kind) {
    let service = Service::start(kind).await;
    let reply = service.get("/packages").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let python = reply.body["python"].as_str().expect("a python version");
    assert!(python.starts_with("3.11."), "{}", reply.body);
    let listed: BTreeMap<String, String> = reply.body["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|package| {
            let name = package["name"].as_str().expect("a name");
            let version = package["version"].as_str().expect("a version");
            (canonical(name), version.to_owned())
        })
        .collect();
    assert_eq!(listed, locked_pins(&lock_text()), "{}", reply.body);
    for name in [
        "numpy",
        "pandas",
        "matplotlib",
        "scipy",
        "scikit-learn",
        "pyarrow",
        "openpyxl",
    ] {
        assert!(listed.contains_key(name), "{name} is not listed");
    }
    let sklearn = reply.body["packages"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "scikit-learn"))
        .expect("scikit-learn");
    assert_eq!(sklearn["modules"], json!(["sklearn"]));
}

async fn a_module_the_runtime_lacks_answers_a_hint(kind: Kind) {
    let service = Service::start(kind).await;
    let missing = service
        .run("import pyexec_not_installed\ndef main():\n    return 1\n")
        .await;
    missing.expect_error(422, "EXCEPTION");
    assert_eq!(missing.body["where"], "module", "{}", missing.body);
    assert_eq!(missing.body["exception_type"], "ModuleNotFoundError");
    assert_eq!(missing.body["missing_module"], "pyexec_not_installed");
    let hint = missing.body["hint"].as_str().expect("a hint");
    assert!(hint.contains("'pyexec_not_installed'"), "{hint}");
    assert!(hint.contains("GET /packages"), "{hint}");
    // A submodule of an installed package that does not exist is the script's mistake.
    let mistake = service
        .run("import numpy.pyexec_nope\ndef main():\n    return 1\n")
        .await;
    mistake.expect_error(422, "EXCEPTION");
    assert!(
        mistake.body.get("missing_module").is_none(),
        "{}",
        mistake.body
    );
    assert!(mistake.body.get("hint").is_none(), "{}", mistake.body);
    // pandas' "Missing optional dependency" ImportError names a package the runtime lacks.
    let optional = service
        .run(
            "import pandas as pd\ndef main():\n    \
             return pd.read_parquet('x.parquet', engine='fastparquet')\n",
        )
        .await;
    optional.expect_error(422, "EXCEPTION");
    assert_eq!(optional.body["where"], "main", "{}", optional.body);
    assert_eq!(optional.body["exception_type"], "ImportError");
    assert_eq!(optional.body["missing_module"], "fastparquet");
}

/// The lock the layer was built from.
pub fn lock_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/layer/requirements.txt");
    std::fs::read_to_string(path).expect("layer/requirements.txt")
}

/// `name==version` lines of a lock, by canonical name.
pub fn locked_pins(lock: &str) -> BTreeMap<String, String> {
    lock.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once("==")?;
            let version = rest.split([' ', '\\', ';']).next()?;
            (!name.starts_with([' ', '#'])).then(|| (canonical(name), version.to_owned()))
        })
        .collect()
}

/// As PEP 503 compares names.
pub fn canonical(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

for_each_sandbox!(
    data_scripts_read_parquet_and_excel_and_fit_models,
    packages_lists_what_the_lock_pins,
    a_module_the_runtime_lacks_answers_a_hint,
);
