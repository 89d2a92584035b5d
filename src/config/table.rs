//! The README's settings table, rendered from the clap declarations, so the two cannot drift: a
//! test compares the README's section between the markers with this rendering and fails with
//! the command that regenerates it.

use std::fmt::Write as _;

use clap::{Arg, Command};

/// Opens the generated section of README.md.
pub const BEGIN: &str =
    "<!-- settings: generated from src/config/settings.rs; regenerate with `UPDATE_README=1 cargo test --lib readme` -->";
/// Closes it.
pub const END: &str = "<!-- settings: end -->";

/// One Markdown table per help heading, in declaration order.
pub fn markdown(command: &Command) -> String {
    let mut out = String::new();
    let mut heading: Option<&str> = None;
    for arg in command.get_arguments().filter(|arg| documented(arg)) {
        if arg.get_help_heading() != heading || out.is_empty() {
            heading = arg.get_help_heading();
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(out, "**{}**\n", heading.unwrap_or("Settings"));
            out.push_str("| variable | flag | default | meaning |\n| --- | --- | --- | --- |\n");
        }
        let _ = writeln!(out, "{}", row(arg));
    }
    out
}

/// A setting a deployer may set: it has a variable and is not hidden.
fn documented(arg: &Arg) -> bool {
    arg.get_env().is_some() && !arg.is_hide_set()
}

fn row(arg: &Arg) -> String {
    let variable = arg
        .get_env()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    let flag = arg.get_long().unwrap_or_default();
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|value| format!("`{}`", value.to_string_lossy()))
        .collect();
    let default = if defaults.is_empty() {
        "unset".to_owned()
    } else {
        defaults.join(", ")
    };
    let meaning = arg.get_help().map(ToString::to_string).unwrap_or_default();
    // A `|` would end the cell, and `<key>` would vanish as an HTML tag.
    let meaning = meaning
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!("| `{variable}` | `--{flag}` | {default} | {meaning} |")
}

/// The README with its generated section replaced by `table`; `None` without both markers.
pub fn splice(readme: &str, table: &str) -> Option<String> {
    let start = readme.find(BEGIN)? + BEGIN.len();
    let end = start + readme[start..].find(END)?;
    Some(format!("{}\n{}{}", &readme[..start], table, &readme[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn readme_settings_table_is_generated_from_the_declarations() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).expect("README.md is readable");
        let table = markdown(&super::super::command());
        let expected = splice(&readme, &table).expect("README.md has the settings markers");
        if std::env::var_os("UPDATE_README").is_some() {
            std::fs::write(&path, &expected).expect("README.md is writable");
            return;
        }
        assert!(
            readme == expected,
            "README.md's settings table differs from src/config/settings.rs; \
             regenerate it with `UPDATE_README=1 cargo test --lib readme` and commit the result"
        );
    }

    #[test]
    fn rows_show_variable_flag_default_and_meaning() {
        let command = super::super::command();
        let table = markdown(&command);
        assert!(table.contains("| `MAX_TIMEOUT_S` | `--max-timeout-s` | `15` | "));
        assert!(table.contains("| `API_KEY` | `--api-key` | unset | "));
        assert!(
            !table.contains("AWS_LAMBDA_RUNTIME_API"),
            "hidden settings stay out"
        );
    }

    #[test]
    fn splicing_keeps_what_surrounds_the_markers() {
        let readme = format!("before\n{BEGIN}\nold\n{END}\nafter\n");
        let spliced = splice(&readme, "new\n").expect("markers");
        assert_eq!(spliced, format!("before\n{BEGIN}\nnew\n{END}\nafter\n"));
        assert_eq!(splice("no markers", "new"), None);
    }
}
