//! Measuring a response envelope and moving its large fields out of it, byte for byte.
//!
//! The envelope is handled as an ordered map of raw JSON values, so fields this module does not
//! know about pass through untouched and `result` keeps exactly the bytes the harness produced.

use indexmap::IndexMap;
use serde_json::value::RawValue;

/// The fields that may be large enough to be worth moving out, in envelope order.
pub const OFFLOADABLE: [&str; 3] = ["result", "stdout", "stderr"];

/// What may be moved out: one of the [`OFFLOADABLE`] fields, or the content of one output file
/// (by its index in `files`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    Field(&'static str),
    File(usize),
}

/// One output file in the envelope, its fields kept as they are.
type FileEntry = IndexMap<String, Box<RawValue>>;

/// Room kept for the `<field>_url` and `<field>_bytes` entries that replace a moved field.
const REPLACEMENT_RESERVE: u64 = 4096;

/// What a response may cost before it is too large to return inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub limit: u64,
    /// Under Lambda the envelope travels as a JSON string inside the platform's own JSON
    /// (`"body": "..."`), so every quote and backslash counts twice against the cap.
    pub escaped: bool,
}

impl Budget {
    pub fn cost(&self, text: &str) -> u64 {
        if self.escaped {
            escaped_len(text)
        } else {
            text.len() as u64
        }
    }

    pub fn fits(&self, text: &str) -> bool {
        self.cost(text) <= self.limit
    }
}

/// The length of `text` written as a JSON string (without its quotes), as serde_json writes it.
fn escaped_len(text: &str) -> u64 {
    text.bytes()
        .map(|byte| match byte {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// A serialized envelope, field by field.
#[derive(Debug)]
pub struct Envelope {
    fields: IndexMap<String, Box<RawValue>>,
}

impl Envelope {
    pub fn parse(body: &str) -> serde_json::Result<Self> {
        Ok(Self {
            fields: serde_json::from_str(body)?,
        })
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(&self.fields)
    }

    /// The raw JSON of a field, if present.
    pub fn raw(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(|value| value.get())
    }

    /// The output files, each an ordered map of raw fields (none when absent or not a list).
    pub fn files(&self) -> Vec<FileEntry> {
        self.raw("files")
            .and_then(|raw| serde_json::from_str(raw).ok())
            .unwrap_or_default()
    }

    /// The pieces to move out, largest first, until what is left is estimated to fit.
    pub fn plan(&self, budget: Budget, total: u64) -> Vec<Piece> {
        let fields = OFFLOADABLE
            .iter()
            .filter_map(|&name| Some((Piece::Field(name), budget.cost(self.raw(name)?))));
        let files = self
            .files()
            .into_iter()
            .enumerate()
            .filter_map(|(index, file)| {
                let content = file.get("content_base64")?;
                Some((Piece::File(index), budget.cost(content.get())))
            });
        let mut candidates: Vec<(Piece, u64)> = fields
            .chain(files)
            .filter(|&(_, cost)| cost > REPLACEMENT_RESERVE)
            .collect();
        candidates.sort_by_key(|&(_, cost)| std::cmp::Reverse(cost));
        let mut remaining = total;
        let mut chosen = Vec::new();
        for (name, cost) in candidates {
            if remaining <= budget.limit {
                break;
            }
            remaining = remaining.saturating_sub(cost) + REPLACEMENT_RESERVE;
            chosen.push(name);
        }
        chosen
    }

    /// Replaces the content of output file `index` with `null`, followed by `content_url`
    /// (its `bytes` already say how large it is).
    pub fn replace_file(&mut self, index: usize, url: &str) -> serde_json::Result<()> {
        let mut files = self.files();
        let Some(file) = files.get_mut(index) else {
            return Ok(());
        };
        let Some(position) = file.get_index_of("content_base64") else {
            return Ok(());
        };
        file.insert("content_base64".into(), raw(&serde_json::Value::Null)?);
        file.shift_insert(position + 1, "content_url".into(), raw(&url)?);
        self.set("files", &files)
    }

    /// Replaces `field` with `null`, followed by `<field>_url` and `<field>_bytes`.
    pub fn replace(&mut self, field: &str, url: &str, bytes: u64) -> serde_json::Result<()> {
        let Some(index) = self.fields.get_index_of(field) else {
            return Ok(());
        };
        self.fields
            .insert(field.to_owned(), raw(&serde_json::Value::Null)?);
        self.fields
            .shift_insert(index + 1, format!("{field}_url"), raw(&url)?);
        self.fields
            .shift_insert(index + 2, format!("{field}_bytes"), raw(&bytes)?);
        Ok(())
    }

    /// Adds a field at the end (or replaces one of the same name in place).
    pub fn set(&mut self, field: &str, value: &impl serde::Serialize) -> serde_json::Result<()> {
        self.fields.insert(field.to_owned(), raw(value)?);
        Ok(())
    }
}

fn raw(value: &impl serde::Serialize) -> serde_json::Result<Box<RawValue>> {
    RawValue::from_string(serde_json::to_string(value)?)
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod file_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Budget = Budget {
        limit: 12_500,
        escaped: false,
    };

    #[test]
    fn escaping_is_counted_as_serde_json_writes_it() {
        for text in [
            "plain",
            "a\"b\\c",
            "line\nbreak\ttab",
            "nul\u{0}bell\u{7}",
            "é€😀",
        ] {
            let written = serde_json::to_string(text).expect("string");
            assert_eq!(escaped_len(text), written.len() as u64 - 2, "{text:?}");
        }
    }

    #[test]
    fn replacing_keeps_order_and_the_other_bytes() {
        let body = r#"{"result":[1.0,2],"stdout":"hi","sandbox":"nsjail"}"#;
        let mut envelope = Envelope::parse(body).expect("json");
        envelope
            .replace("result", "https://x/y", 7)
            .expect("replace");
        assert_eq!(
            envelope.to_json().expect("json"),
            r#"{"result":null,"result_url":"https://x/y","result_bytes":7,"stdout":"hi","sandbox":"nsjail"}"#
        );
    }

    #[test]
    fn the_plan_moves_the_largest_fields_first_and_only_as_many_as_needed() {
        let big = "x".repeat(8_000);
        let bigger = format!("\"{}\"", "y".repeat(9_000));
        let body = serde_json::json!({
            "result": serde_json::from_str::<serde_json::Value>(&bigger).expect("json"),
            "stdout": big,
            "stderr": "",
        })
        .to_string();
        let envelope = Envelope::parse(&body).expect("json");
        let total = PLAIN.cost(&body);
        assert_eq!(envelope.plan(PLAIN, total), vec![Piece::Field("result")]);
        let tight = Budget {
            limit: 5_000,
            ..PLAIN
        };
        assert_eq!(
            envelope.plan(tight, total),
            vec![Piece::Field("result"), Piece::Field("stdout")]
        );
    }
}
