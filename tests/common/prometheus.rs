//! Reading `GET /metrics` the way Prometheus would: with the Prometheus project's own
//! text-format parser (`prometheus_client`, pinned in tools/requirements-metrics.txt and run by
//! tests/metrics/parse.py), never with one of our own. A text it refuses fails the test.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The parsed exposition: every sample of every family.
#[derive(Debug)]
pub struct Exposition {
    families: Vec<Value>,
}

impl Exposition {
    /// Parses `text`; panics with the parser's message when it refuses it.
    pub fn parse(text: &str) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = root.join(".tools/venv/bin/python");
        assert!(
            python.is_file(),
            "{} is missing: run `make tools` (tools/install.sh installs prometheus-client)",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(root.join("tests/metrics/parse.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the parser starts");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("text written");
        drop(stdin);
        let output = child.wait_with_output().expect("the parser ends");
        assert!(
            output.status.success(),
            "prometheus_client refused the exposition: {}\n{text}",
            String::from_utf8_lossy(&output.stderr)
        );
        let parsed: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        let families = parsed["families"].as_array().cloned().unwrap_or_default();
        Self { families }
    }

    /// The family's type (`counter`, `gauge`, `histogram`), if it is there.
    pub fn kind(&self, family: &str) -> Option<String> {
        let found = self.families.iter().find(|f| f["name"] == family)?;
        found["type"].as_str().map(str::to_owned)
    }

    /// The value of the sample `name` whose labels include `labels`, summed over the others
    /// (0 when there is none, as Prometheus reads an absent series).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.families
            .iter()
            .flat_map(|family| family["samples"].as_array().cloned().unwrap_or_default())
            .filter(|sample| sample["name"] == name)
            .filter(|sample| {
                labels
                    .iter()
                    .all(|(key, value)| sample["labels"][*key].as_str() == Some(*value))
            })
            .filter_map(|sample| sample["value"].as_f64())
            .sum()
    }
}
