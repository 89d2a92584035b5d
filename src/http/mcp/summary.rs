//! The text a `run_python` result opens with: the outcome as a model without structured
//! content support reads it, and the cutting that keeps every part within its share of the
//! reply.

use std::fmt::Write as _;

use super::outcome::Outcome;

/// Of a cut text, the share kept from its start (the rest is kept from its end, where the last
/// output and the final error usually are).
const HEAD_SHARE: f64 = 0.75;

/// `text` if it has at most `max_chars` characters; otherwise its start and end around a
/// marker that says how much was cut and why.
pub fn cut(text: &str, max_chars: usize) -> String {
    let total = text.chars().count();
    if total <= max_chars {
        return text.to_owned();
    }
    let head = (max_chars as f64 * HEAD_SHARE) as usize;
    let tail = max_chars - head;
    let omitted = total - head - tail;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(total - tail).collect();
    format!(
        "{start}\n[... {omitted} characters cut here: too long for this reply; write large \
         output to a file under outputs/ or print less ...]\n{end}"
    )
}

/// The readable summary: outcome first, then result, output, files and usage.
pub fn render(outcome: &Outcome) -> String {
    let mut text = String::new();
    if outcome.ok {
        let result = match &outcome.result {
            serde_json::Value::String(cut_result) if outcome.truncated.result => cut_result.clone(),
            value => value.to_string(),
        };
        let _ = writeln!(text, "Result: {result}");
        section(&mut text, "Display", outcome.display.as_deref());
    } else {
        let code = outcome.code.as_deref().unwrap_or("ERROR");
        let error = outcome.error.as_deref().unwrap_or("the code failed");
        let _ = writeln!(text, "Error {code}: {error}");
        section(&mut text, "Traceback", outcome.traceback.as_deref());
        if let Some(seconds) = outcome.retry_after_s {
            let _ = writeln!(text, "Retry after {seconds} s.");
        }
    }
    section(&mut text, "stdout", Some(&outcome.stdout));
    section(&mut text, "stderr", Some(&outcome.stderr));
    for file in &outcome.files {
        let how = match file.returned_as.as_str() {
            "image" => "returned as an image",
            "listed" => "too large to return here",
            _ => "returned as an embedded resource",
        };
        let _ = writeln!(
            text,
            "File {} ({}, {} bytes): {how}",
            file.path, file.content_type, file.bytes
        );
    }
    if let Some(usage) = &outcome.usage {
        let _ = write!(text, "Took {} ms", usage.wall_ms);
        if let Some(cpu) = usage.cpu_ms {
            let _ = write!(text, ", {cpu} ms of CPU");
        }
        if let Some(peak) = usage.peak_memory_bytes {
            let _ = write!(
                text,
                ", {} MiB of memory at most",
                peak.div_ceil(1024 * 1024)
            );
        }
        let _ = writeln!(text, ".");
    }
    text
}

/// A titled block, left out when empty.
fn section(text: &mut String, title: &str, body: Option<&str>) {
    let Some(body) = body.filter(|body| !body.is_empty()) else {
        return;
    };
    let _ = write!(text, "{title}:\n{body}");
    if !body.ends_with('\n') {
        text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(cut("hello", 5), "hello");
    }

    #[test]
    fn long_text_keeps_its_start_and_end_around_a_marker() {
        let text: String = ('a'..='z').cycle().take(1000).collect();
        let kept = cut(&text, 100);
        assert!(kept.starts_with(&text[..75]), "{kept}");
        assert!(kept.ends_with(&text[975..]), "{kept}");
        assert!(kept.contains("900 characters cut here"), "{kept}");
    }

    #[test]
    fn cutting_respects_characters() {
        let kept = cut(&"é".repeat(50), 10);
        assert!(kept.starts_with("ééééééé\n"), "{kept}");
    }

    #[test]
    fn a_failure_reads_code_error_and_traceback_first() {
        let outcome = Outcome {
            code: Some("EXCEPTION".into()),
            error: Some("the cell raised ValueError: no".into()),
            traceback: Some("Traceback...\nValueError: no\n".into()),
            stdout: "partial\n".into(),
            ..Outcome::default()
        };
        let text = render(&outcome);
        assert!(
            text.starts_with("Error EXCEPTION: the cell raised ValueError: no\nTraceback:\n"),
            "{text}"
        );
        assert!(text.contains("stdout:\npartial\n"), "{text}");
    }
}
