//! LF-framed lines with a hard bound, for reading what Asterisk writes over AGI.
//!
//! Only LF ends a line (design.md §3a: readers that also end lines at CR fall for a
//! caller's `%0D%0D`). A line longer than the bound is not buffered: its bytes are
//! dropped up to the next LF and it is reported as [`Line::TooLong`], so a hostile
//! 64 KiB value costs no more memory than the bound.

/// One framed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The line's bytes, without the LF.
    Text(Vec<u8>),
    /// A line over the bound; its bytes were dropped.
    TooLong,
}

/// Accumulates bytes and yields complete lines.
#[derive(Debug)]
pub struct LineBuffer {
    buf: Vec<u8>,
    max_line: usize,
    /// Inside an over-long line: drop bytes until the next LF.
    discarding: bool,
}

impl LineBuffer {
    pub fn new(max_line: usize) -> LineBuffer {
        LineBuffer {
            buf: Vec::new(),
            max_line,
            discarding: false,
        }
    }

    /// Adds bytes read from the peer.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line, if one is buffered.
    pub fn next_line(&mut self) -> Option<Line> {
        loop {
            match memchr_lf(&self.buf) {
                Some(end) => {
                    let line: Vec<u8> = self.buf.drain(..=end).take(end).collect();
                    if std::mem::take(&mut self.discarding) || line.len() > self.max_line {
                        return Some(Line::TooLong);
                    }
                    return Some(Line::Text(line));
                }
                None if self.buf.len() > self.max_line => {
                    // No LF within the bound: start dropping, report at the LF.
                    self.buf.clear();
                    self.discarding = true;
                }
                None => return None,
            }
            if self.buf.is_empty() {
                return None;
            }
        }
    }

    /// Bytes of a line not yet complete (for telling a clean EOF from a cut one).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.discarding
    }
}

fn memchr_lf(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Option<Line> {
        Some(Line::Text(s.as_bytes().to_vec()))
    }

    #[test]
    fn splits_on_lf_only() {
        let mut b = LineBuffer::new(100);
        b.extend(b"a\rb\n\nc");
        assert_eq!(b.next_line(), text("a\rb"));
        assert_eq!(b.next_line(), text(""));
        assert_eq!(b.next_line(), None);
        assert!(b.has_partial());
        b.extend(b"d\n");
        assert_eq!(b.next_line(), text("cd"));
        assert!(!b.has_partial());
    }

    #[test]
    fn over_long_lines_are_dropped_and_reported_once() {
        let mut b = LineBuffer::new(8);
        b.extend(&[b'x'; 20]);
        assert_eq!(b.next_line(), None);
        b.extend(&[b'x'; 20]);
        b.extend(b"yy\nok\n");
        assert_eq!(b.next_line(), Some(Line::TooLong));
        assert_eq!(b.next_line(), text("ok"));
        b.extend(b"123456789\n");
        assert_eq!(b.next_line(), Some(Line::TooLong));
        b.extend(b"12345678\n");
        assert_eq!(b.next_line(), text("12345678"));
    }
}
