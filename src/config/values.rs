//! How a setting's text becomes a typed value: the checks the service has always made, written
//! as clap value parsers so that `--flag` and its environment variable go through the same one.
//!
//! Each parser returns the typed value (a `Duration`, a `ByteSize` in its declared unit), so no
//! bare number whose unit must be guessed leaves this module.

use std::ffi::OsStr;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::{Arg, Command};

use crate::limits::ByteSize;
use crate::sandbox::Isolation;

/// The longest any of the service's time settings may be.
const MAX_SECONDS: f64 = 3600.0;
/// SigV4 presigned URLs are valid for at most 7 days.
const MAX_URL_TTL_S: u64 = 7 * 24 * 3600;

/// Wraps a parser so that surrounding whitespace is ignored and a blank value means the declared
/// default. Deployment templates often set a variable to "" rather than leave it out (SAM's
/// `!Ref` of an empty parameter, say), and the service has always read that as "unset".
#[derive(Clone, Debug)]
pub struct Lenient<P>(pub P);

impl<P: TypedValueParser> TypedValueParser for Lenient<P> {
    type Value = P::Value;

    fn parse_ref(
        &self,
        cmd: &Command,
        arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let Some(text) = value.to_str() else {
            return self.0.parse_ref(cmd, arg, value);
        };
        let default = arg.and_then(|arg| arg.get_default_values().first());
        match default {
            Some(default) if text.trim().is_empty() => self.0.parse_ref(cmd, arg, default),
            _ => self.0.parse_ref(cmd, arg, OsStr::new(text.trim())),
        }
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        self.0.possible_values()
    }
}

/// Any number type; the message is the one operators have always seen.
pub fn number<T: FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| "not a valid number".to_owned())
}

/// A count that must be at least 1 (processes, open files).
pub fn count(text: &str) -> Result<u32, String> {
    match number::<u32>(text)? {
        0 => Err("must be at least 1".into()),
        count => Ok(count),
    }
}

/// How many connections at once, at least 1.
pub fn connections(text: &str) -> Result<usize, String> {
    count(text).map(|n| n as usize)
}

/// Spare forks per template: a few at most, each holds an execution's resources while it waits.
pub fn spare_forks(text: &str) -> Result<usize, String> {
    match number::<usize>(text)? {
        count @ 0..=8 => Ok(count),
        _ => Err("must be between 0 and 8".into()),
    }
}

/// A size in KiB, at least 1.
pub fn kib(text: &str) -> Result<ByteSize, String> {
    count(text).map(|n| ByteSize::kib(u64::from(n)))
}

/// A size in MiB, at least 1.
pub fn mib(text: &str) -> Result<ByteSize, String> {
    count(text).map(|n| ByteSize::mib(u64::from(n)))
}

/// Seconds, fractions allowed, above 0 and at most an hour.
pub fn seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = number(text)?;
    // Written so that NaN fails too.
    if !(seconds > 0.0 && seconds <= MAX_SECONDS) {
        return Err("must be between 0 and 3600 seconds".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Milliseconds, any whole number.
pub fn millis(text: &str) -> Result<Duration, String> {
    number(text).map(Duration::from_millis)
}

/// A presigned URL's lifetime: whole seconds, 1 to 7 days' worth.
pub fn url_ttl(text: &str) -> Result<Duration, String> {
    let seconds: u64 = number(text)?;
    if !(1..=MAX_URL_TTL_S).contains(&seconds) {
        return Err(format!("must be between 1 and {MAX_URL_TTL_S} seconds"));
    }
    Ok(Duration::from_secs(seconds))
}

/// Executions at once: `auto` for two per core, otherwise a number (0 counts as 1).
pub fn concurrency(text: &str) -> Result<usize, String> {
    match text {
        "auto" => Ok(default_concurrency()),
        _ => number::<usize>(text).map(|n| n.max(1)),
    }
}

/// Two executions per core: most of a script's life is CPU-bound, and the rest (starting,
/// waiting on pipes) overlaps well with another's.
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |cores| cores.get() * 2)
}

/// An on/off switch, spelled the ways the seeds' deployment instructions spell it.
pub fn switch(text: &str) -> Result<bool, String> {
    match text {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" => Ok(false),
        _ => Err("expected 1 or 0".into()),
    }
}

/// An on/off switch that may also be left to the platform: `auto` is `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AutoSwitch(pub Option<bool>);

pub fn auto_switch(text: &str) -> Result<AutoSwitch, String> {
    match text {
        "auto" => Ok(AutoSwitch(None)),
        _ => switch(text)
            .map(|on| AutoSwitch(Some(on)))
            .map_err(|_| "expected 1, 0 or auto".into()),
    }
}

/// Whole seconds up to a day (a header's max-age), 0 included.
pub fn whole_seconds(text: &str) -> Result<Duration, String> {
    match number::<u64>(text)? {
        seconds @ 0..=86_400 => Ok(Duration::from_secs(seconds)),
        _ => Err("must be between 0 and 86400 seconds".into()),
    }
}

/// Browser origins, exactly as a browser sends them in `Origin`: a scheme, a host and maybe a
/// port, with no path and no trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origins(pub Vec<String>);

pub fn origins(text: &str) -> Result<Origins, String> {
    let origins: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(str::to_owned)
        .collect();
    match origins.iter().find(|origin| !is_origin(origin)) {
        Some(bad) => Err(format!(
            "{bad:?} is not an origin (scheme://host[:port], nothing after it; `*` is not \
             accepted: list the origins)"
        )),
        None => Ok(Origins(origins)),
    }
}

fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    let host_chars =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && rest.chars().all(host_chars)
        && !rest.starts_with(['.', '-', ':'])
}

/// A comma-separated list of isolation layers (`none` for the empty set).
pub fn isolation(text: &str) -> Result<Isolation, String> {
    Isolation::parse(text)
}

/// Importable top-level module names, comma-separated; they are passed to the harness, so
/// nothing but identifiers and dots gets through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Modules(pub Vec<String>);

pub fn modules(text: &str) -> Result<Modules, String> {
    // A blank value means the default (see `Lenient`), so "none" says none.
    if text.trim() == "none" {
        return Ok(Modules(Vec::new()));
    }
    let modules: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    match modules.iter().find(|name| !is_module_name(name)) {
        Some(bad) => Err(format!("{bad:?} is not a module name")),
        None => Ok(Modules(modules)),
    }
}

fn is_module_name(name: &str) -> bool {
    name.split('.').all(|part| {
        part.chars()
            .next()
            .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
            && part.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_stay_within_an_hour() {
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert!(seconds("0").is_err());
        assert!(seconds("-1").is_err());
        assert!(seconds("3601").is_err());
        assert!(seconds("NaN").is_err());
        assert_eq!(seconds("soon"), Err("not a valid number".into()));
    }

    #[test]
    fn sizes_carry_their_unit_and_are_never_zero() {
        assert_eq!(kib("2"), Ok(ByteSize::kib(2)));
        assert_eq!(mib("3"), Ok(ByteSize::mib(3)));
        assert_eq!(kib("0"), Err("must be at least 1".into()));
        assert!(mib("-1").is_err());
    }

    #[test]
    fn url_lifetimes_are_within_sigv4s_week() {
        assert_eq!(url_ttl("60"), Ok(Duration::from_secs(60)));
        assert!(url_ttl("0").is_err());
        assert!(url_ttl("604801").is_err());
    }

    #[test]
    fn concurrency_is_at_least_one() {
        assert_eq!(concurrency("0"), Ok(1));
        assert_eq!(concurrency("3"), Ok(3));
        assert!(concurrency("auto").is_ok_and(|n| n >= 2));
        assert!(concurrency("many").is_err());
    }

    #[test]
    fn switches_and_modules() {
        assert_eq!(switch("yes"), Ok(true));
        assert_eq!(switch("0"), Ok(false));
        assert!(switch("maybe").is_err());
        let parsed = modules("numpy, scipy.stats,").expect("valid");
        assert_eq!(parsed.0, ["numpy", "scipy.stats"]);
        assert!(modules("numpy;rm -rf").is_err());
        assert!(modules("1numpy").is_err());
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        let parsed = origins("https://app.example.com, http://localhost:3000").expect("valid");
        assert_eq!(
            parsed.0,
            ["https://app.example.com", "http://localhost:3000"]
        );
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/",
            "ftp://x",
            "https://",
        ] {
            assert!(origins(bad).is_err(), "{bad}");
        }
        assert_eq!(auto_switch("auto"), Ok(AutoSwitch(None)));
        assert_eq!(auto_switch("1"), Ok(AutoSwitch(Some(true))));
        assert!(auto_switch("maybe").is_err());
        assert_eq!(whole_seconds("0"), Ok(Duration::ZERO));
        assert!(whole_seconds("1.5").is_err());
    }
}
