//! API keys: several at once, each with a name, so a key can be rotated (old and new both
//! accepted for a while, under one name) and each caller told apart in logs and metrics by its
//! key's name, never by the key. They come from `API_KEY` (one key, named `default`),
//! `API_KEYS` and `API_KEYS_FILE` (a mounted secret), all read once at start.
//!
//! Two spellings, so the keys can come straight from a secret store: `NAME=KEY` entries
//! separated by commas or newlines (blank lines and `#` comments skipped), or a JSON object
//! `{"NAME": "KEY", ...}`, which is how Secrets Manager's and Secret Manager's consoles store
//! key/value pairs (a name's value may be a list of keys, its rotation). No error message ever
//! quotes a key.

use std::ffi::OsStr;
use std::path::Path;

use clap::builder::TypedValueParser;
use clap::error::ErrorKind;
use serde_json::Value;

/// The name `API_KEY`'s key goes by.
pub const DEFAULT_NAME: &str = "default";
/// Longest name: it is a label in metrics and a field in every log line of its requests.
const MAX_NAME_CHARS: usize = 64;
/// Longest key; longer ones are surely something else pasted by mistake.
const MAX_KEY_CHARS: usize = 512;

/// A key; never printed, not even in debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// A key and the name its caller goes by. Several keys may share a name (a rotation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedKey {
    pub name: String,
    pub key: ApiKey,
}

/// Keys as one setting gave them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyList(pub Vec<NamedKey>);

/// Every key a request may present; none means no key is asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiKeys(pub Vec<NamedKey>);

impl ApiKeys {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The distinct names, in the order first given.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for entry in &self.0 {
            if !names.contains(&entry.name.as_str()) {
                names.push(&entry.name);
            }
        }
        names
    }
}

/// What the caller of one key name may use at once and per minute; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyQuota {
    pub max_concurrency: Option<u32>,
    pub rate_per_min: Option<u32>,
}

/// `API_KEYS`: the text itself. Its own parser rather than a function, because clap's message
/// for a refused value quotes the value, and this one is a secret.
#[derive(Clone, Copy, Debug)]
pub struct KeyListParser;

impl TypedValueParser for KeyListParser {
    type Value = KeyList;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<KeyList, clap::Error> {
        let refused = |reason: String| {
            let flag = arg.and_then(clap::Arg::get_long).unwrap_or("api-keys");
            let variable = flag.to_uppercase().replace('-', "_");
            let message = format!("invalid value for '--{flag} <{variable}>': {reason}\n");
            clap::Error::raw(ErrorKind::ValueValidation, message).with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| refused("not UTF-8".into()))?;
        parse(text).map(KeyList).map_err(refused)
    }
}

/// `API_KEYS_FILE`: the file at this path, read now (a blank path means none).
pub fn key_file(path: &str) -> Result<KeyList, String> {
    if path.is_empty() {
        return Ok(KeyList::default());
    }
    let text = std::fs::read_to_string(Path::new(path))
        .map_err(|error| format!("cannot read {path}: {error}"))?;
    let list = parse(&text).map_err(|error| format!("{path}: {error}"))?;
    if list.is_empty() {
        return Err(format!("{path} holds no key"));
    }
    Ok(KeyList(list))
}

/// Either spelling (see the module's comment).
pub fn parse(text: &str) -> Result<Vec<NamedKey>, String> {
    let text = text.trim();
    let keys = if text.starts_with('{') {
        from_json(text)?
    } else {
        from_entries(text)?
    };
    for (index, entry) in keys.iter().enumerate() {
        if keys[..index].iter().any(|earlier| earlier.key == entry.key) {
            return Err(format!(
                "the key of {:?} is given twice: one key must name one caller",
                entry.name
            ));
        }
    }
    Ok(keys)
}

fn from_json(text: &str) -> Result<Vec<NamedKey>, String> {
    // serde_json's messages give a line and column, never the text itself.
    let object: serde_json::Map<String, Value> = serde_json::from_str(text)
        .map_err(|error| format!("not a JSON object of names and keys: {error}"))?;
    let mut keys = Vec::new();
    for (name, value) in object {
        let not_keys = || format!("the key of {name:?} is not a string or a list of strings");
        match value {
            Value::String(key) => keys.push(named(&name, &key)?),
            Value::Array(list) if !list.is_empty() => {
                for key in list {
                    keys.push(named(&name, key.as_str().ok_or_else(not_keys)?)?);
                }
            }
            _ => return Err(not_keys()),
        }
    }
    Ok(keys)
}

fn from_entries(text: &str) -> Result<Vec<NamedKey>, String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|entry| !entry.is_empty() && !entry.starts_with('#'))
        .enumerate()
        .map(|(index, entry)| match entry.split_once('=') {
            Some((name, key)) => named(name.trim(), key.trim()),
            None => Err(format!("entry {} is not NAME=KEY", index + 1)),
        })
        .collect()
}

fn named(name: &str, key: &str) -> Result<NamedKey, String> {
    let name_ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !name_ok {
        return Err(format!(
            "{name:?} is not a key name (letters, digits, _ - . and at most {MAX_NAME_CHARS})"
        ));
    }
    // A bearer token (RFC 6750) is visible ASCII without spaces.
    let key_ok =
        !key.is_empty() && key.len() <= MAX_KEY_CHARS && key.bytes().all(|b| b.is_ascii_graphic());
    if !key_ok {
        return Err(format!(
            "the key of {name:?} must be 1 to {MAX_KEY_CHARS} visible ASCII characters"
        ));
    }
    Ok(NamedKey {
        name: name.to_owned(),
        key: ApiKey(key.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(keys: &[NamedKey]) -> Vec<&str> {
        keys.iter().map(|k| k.name.as_str()).collect()
    }

    #[test]
    fn entries_and_json_give_the_same_keys() {
        let entries = parse("alice=k-1, bob = k-2\n# old\nalice=k-3\n").expect("valid");
        assert_eq!(names(&entries), ["alice", "bob", "alice"]);
        assert_eq!(entries[1].key, ApiKey("k-2".into()));
        let json = parse(r#"{"alice": "k-1", "bob": "k-2"}"#).expect("valid");
        assert_eq!(names(&json), ["alice", "bob"]);
        let rotation = parse(r#"{"alice": ["k-1", "k-3"]}"#).expect("valid");
        assert_eq!(names(&rotation), ["alice", "alice"]);
        assert_eq!(ApiKeys(entries).names(), ["alice", "bob"]);
    }

    #[test]
    fn errors_never_quote_a_key() {
        for bad in [
            "alice",
            "al ice=secret-1",
            "alice=sec ret",
            "alice=secret-1,bob=secret-1",
            r#"{"alice": 1}"#,
            r#"{"alice": []}"#,
            r#"{"alice": ["secret-1", 2]}"#,
            "{not json secret-1",
        ] {
            let error = parse(bad).expect_err(bad);
            assert!(
                !error.contains("secret") && !error.contains("sec ret"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_file_is_read_once_and_must_hold_a_key() {
        let file = tempfile::NamedTempFile::new().expect("a file");
        std::fs::write(file.path(), "{\"ci\": \"k-9\"}\n").expect("written");
        let path = file.path().to_str().expect("utf-8");
        assert_eq!(names(&key_file(path).expect("valid").0), ["ci"]);
        std::fs::write(file.path(), "\n# nothing\n").expect("written");
        assert!(key_file(path).is_err());
        assert!(key_file("/nonexistent/keys").is_err());
        assert_eq!(key_file(""), Ok(KeyList::default()));
    }

    #[test]
    fn a_key_is_never_printed() {
        let key = ApiKey("s3cret".into());
        assert!(!format!("{key:?}").contains("s3cret"));
    }
}
