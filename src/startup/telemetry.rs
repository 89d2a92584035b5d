//! Structured logs in the platform's own shape, decided once from the settings (see
//! `observe::logs`): Cloud Logging's fields on Cloud Run, Lambda's format and level on Lambda.

use std::io::IsTerminal;

use crate::config::Config;
use crate::observe::logs::{self, LogStyle};

/// Installs the global subscriber, writing to stderr.
pub fn init(config: &Config) {
    let terminal = std::io::stderr().is_terminal();
    let style = LogStyle::choose(&config.logs, config.platform, terminal);
    logs::init(style, logs::filter(&config.logs, config.platform));
}
