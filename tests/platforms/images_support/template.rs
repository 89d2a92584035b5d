//! What template.yaml configures for the function, read without a YAML parser: the plain
//! values of its environment variables (not the `!Ref` ones, which are deploy parameters), its
//! memory size and its timeout. Enough for the Lambda image test to run as the template deploys.

use std::fs;

pub struct Template {
    text: String,
}

impl Template {
    pub fn read() -> Self {
        let path = super::repo_root().join("template.yaml");
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Self { text }
    }

    /// The first `key: value` line's value.
    pub fn scalar(&self, key: &str) -> String {
        self.text
            .lines()
            .find_map(|line| line.trim().strip_prefix(&format!("{key}:")))
            .map(|value| unquote(value.trim()))
            .unwrap_or_else(|| panic!("template.yaml has no {key}"))
    }

    /// The function's environment variables with plain values, in the template's order.
    pub fn variables(&self) -> Vec<(String, String)> {
        let mut lines = self.text.lines().skip_while(|l| l.trim() != "Variables:");
        let header = lines
            .next()
            .expect("template.yaml has Environment: Variables:");
        let indent = |line: &str| line.len() - line.trim_start().len();
        let outer = indent(header);
        lines
            .take_while(|line| line.trim().is_empty() || indent(line) > outer)
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.trim(), value.trim()))
            .filter(|(_, value)| !value.starts_with('!'))
            .map(|(key, value)| (key.to_owned(), unquote(value)))
            .collect()
    }
}

fn unquote(value: &str) -> String {
    value.trim_matches('"').trim_matches('\'').to_owned()
}
