//! The command line: the settings as flags (each also its environment variable, which is how
//! Cloud Run and Lambda give them), `--help`, `--version`, and the `probe` subcommand. With no
//! arguments at all, as Lambda starts it, the binary serves.

use clap::{Parser, Subcommand};

use crate::config::{Config, Settings};

/// Runs untrusted Python scripts' main() in a sandbox, behind POST /execute. Every setting is an
/// environment variable, or the long flag of the same name; none is required.
#[derive(Debug, Parser)]
#[command(name = "python-executor", version, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Option<Command>,
}

const AFTER_HELP: &str = "Logs go to stderr, filtered by RUST_LOG (default info). \
Blank variables count as unset. Without a subcommand the service serves: over HTTP on PORT, \
or to the Lambda Runtime API when AWS_LAMBDA_RUNTIME_API is set.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe the platform and self-test the sandbox as start-up does, print what /health would
    /// say, and exit 1 if scripts would be refused: the first thing to run on a new platform
    Probe {
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    /// The typed configuration the service runs with.
    pub fn config(&self) -> Config {
        self.settings.clone().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_arguments_means_serve_with_the_defaults() {
        let cli = Cli::try_parse_from(["python-executor"]).expect("nothing is required");
        assert!(cli.command.is_none());
    }

    #[test]
    fn flags_set_what_variables_set() {
        let cli = Cli::try_parse_from(["python-executor", "--port", "9000", "probe", "--json"])
            .expect("valid");
        assert_eq!(cli.config().port, 9000);
        assert!(matches!(cli.command, Some(Command::Probe { json: true })));
    }
}
