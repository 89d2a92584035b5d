//! Decimal numbers read and written without an allocator: the supervisor's arguments, the
//! hand-over, /proc's stat lines and its report's header.

/// A short line built on the stack; what does not fit is dropped (nothing written here is
/// longer than its capacity: a path of /proc, a header of a few numbers).
#[derive(Debug)]
pub struct Line {
    bytes: [u8; 256],
    len: usize,
}

impl Line {
    pub const fn new() -> Self {
        Self {
            bytes: [0; 256],
            len: 0,
        }
    }

    pub fn push(&mut self, text: &[u8]) {
        let fits = text.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + fits].copy_from_slice(&text[..fits]);
        self.len += fits;
    }

    pub fn push_number(&mut self, mut number: u64) {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (number % 10) as u8;
            number /= 10;
            if number == 0 {
                break;
            }
        }
        self.push(&digits[start..]);
    }

    /// A number, or `null` for none.
    pub fn push_number_or_null(&mut self, number: Option<u64>) {
        match number {
            Some(number) => self.push_number(number),
            None => self.push(b"null"),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A decimal number of ASCII digits only; None for anything else, or one over u64's range.
pub fn parse(word: &[u8]) -> Option<u64> {
    if word.is_empty() {
        return None;
    }
    word.iter().try_fold(0u64, |number, &byte| {
        let digit = byte.checked_sub(b'0').filter(|digit| *digit < 10)?;
        number.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_go_both_ways() {
        for number in [0, 7, 10, 4096, u64::MAX] {
            let mut line = Line::new();
            line.push_number(number);
            assert_eq!(parse(line.as_bytes()), Some(number));
        }
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"12x"), None);
        assert_eq!(parse(b"-1"), None);
        assert_eq!(parse(b"18446744073709551616"), None);
    }

    #[test]
    fn a_line_keeps_what_fits() {
        let mut line = Line::new();
        line.push(b"/proc/");
        line.push_number_or_null(None);
        assert_eq!(line.as_bytes(), b"/proc/null");
        for _ in 0..100 {
            line.push(b"0123456789");
        }
        assert_eq!(line.as_bytes().len(), 256);
    }
}
