//! Line framing with a length limit: bytes in, lines out.
//!
//! [`LineReader`] owns one buffer. [`LineReader::fill`] reads once into its
//! free space; [`LineReader::next_line`] hands out every complete line already
//! buffered, without copying and without allocating. Lines are checked here,
//! whole, so a multi-byte character split across two reads is never a problem,
//! and memory stays bounded by the limit however much a client sends without a
//! newline.

use std::io::{self, Read};

/// The buffer's size for a fresh connection: enough for the short lines of
/// an interactive client, and cheap for thousands of idle connections.
const INITIAL_CAPACITY: usize = 1024;

/// The buffer grows (doubling) up to this size for a client whose reads fill
/// it, so that pipelined input is taken in large reads.
const READ_TARGET: usize = 64 * 1024;

/// Why a line was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError {
    /// The line is longer than the limit.
    TooLong,
    /// The line is not valid UTF-8.
    InvalidUtf8,
}

/// Splits a byte stream into lines of at most `max_line` bytes.
///
/// A line ends at `\n`, or at end of input for the last one; a `\r` right
/// before that end belongs to the line ending. The length limit counts the
/// line without its ending.
pub struct LineReader {
    buf: Vec<u8>,
    /// Start of the first byte not yet handed out.
    start: usize,
    /// End of the bytes read so far.
    end: usize,
    /// Bytes from `start` up to here are known to hold no `\n`.
    scanned: usize,
    max_line: usize,
    /// The last read filled all the free space: more input is likely waiting.
    filled: bool,
}

impl LineReader {
    /// An empty reader that refuses lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        LineReader {
            buf: Vec::new(),
            start: 0,
            end: 0,
            scanned: 0,
            max_line,
            filled: false,
        }
    }

    /// The largest the buffer grows: a full line plus `\r\n`, or the read
    /// target if that is larger.
    fn limit(&self) -> usize {
        self.max_line.saturating_add(2).max(READ_TARGET)
    }

    /// Whether part of a line has been read but not its end.
    pub fn has_partial(&self) -> bool {
        self.start < self.end
    }

    /// Reads once from `source` into the buffer and returns how many bytes
    /// came in; 0 means end of input. Call it only after [`next_line`]
    /// returned `None`, so that the buffer holds at most one partial line.
    ///
    /// [`next_line`]: LineReader::next_line
    pub fn fill<R: Read>(&mut self, source: &mut R) -> io::Result<usize> {
        self.make_room();
        let n = source.read(&mut self.buf[self.end..])?;
        self.filled = self.end + n == self.buf.len();
        self.end += n;
        Ok(n)
    }

    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
        } else if self.start > 0 && self.end == self.buf.len() {
            // Move the partial line to the front instead of growing.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        // Grow when a partial line fills the buffer, or when the last read
        // filled it. `next_line` refuses a partial line before it reaches
        // the line limit, so growing stops at `limit()`.
        let full = self.end == self.buf.len();
        if (full || self.filled) && self.buf.len() < self.limit() {
            let len = (self.buf.len() * 2).clamp(INITIAL_CAPACITY, self.limit());
            self.buf.resize(len, 0);
        }
        self.filled = false;
        debug_assert!(self.end < self.buf.len(), "fill called with a full buffer");
    }

    /// The next complete line in the buffer, if any. Once it returns an error
    /// the connection should be closed: the reader does not resynchronise.
    pub fn next_line(&mut self) -> Option<Result<&str, LineError>> {
        let pending = &self.buf[self.scanned..self.end];
        let Some(offset) = pending.iter().position(|&b| b == b'\n') else {
            self.scanned = self.end;
            // With no `\n` yet, `max_line + 1` bytes may still be a full line
            // and its `\r`; one byte more cannot be.
            if self.end - self.start > self.max_line.saturating_add(1) {
                return Some(Err(LineError::TooLong));
            }
            return None;
        };
        let newline = self.scanned + offset;
        let line_start = self.start;
        self.start = newline + 1;
        self.scanned = self.start;
        Some(check(&self.buf[line_start..newline], self.max_line))
    }

    /// At end of input: the last line if it had no `\n`. Empties the reader.
    pub fn take_rest(&mut self) -> Option<Result<&str, LineError>> {
        if !self.has_partial() {
            return None;
        }
        let (start, end) = (self.start, self.end);
        self.start = end;
        self.scanned = end;
        Some(check(&self.buf[start..end], self.max_line))
    }
}

/// Strips a `\r` line ending and checks length and encoding.
fn check(line: &[u8], max_line: usize) -> Result<&str, LineError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max_line {
        return Err(LineError::TooLong);
    }
    std::str::from_utf8(line).map_err(|_| LineError::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that hands out its chunks one read at a time.
    struct Chunks(Vec<Vec<u8>>);

    impl Read for Chunks {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let chunk = &mut self.0[0];
            let n = chunk.len().min(out.len());
            out[..n].copy_from_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                self.0.remove(0);
            }
            Ok(n)
        }
    }

    /// Every line (or error) the reader yields for `chunks`, end of input included.
    fn lines(max_line: usize, chunks: &[&[u8]]) -> Vec<Result<String, LineError>> {
        let mut source = Chunks(chunks.iter().map(|c| c.to_vec()).collect());
        let mut reader = LineReader::new(max_line);
        let mut out = Vec::new();
        loop {
            while let Some(line) = reader.next_line() {
                let failed = line.is_err();
                out.push(line.map(str::to_string));
                if failed {
                    return out;
                }
            }
            if reader.fill(&mut source).expect("read") == 0 {
                if let Some(rest) = reader.take_rest() {
                    out.push(rest.map(str::to_string));
                }
                return out;
            }
        }
    }

    fn ok(s: &str) -> Result<String, LineError> {
        Ok(s.to_string())
    }

    #[test]
    fn splits_lines_and_strips_crlf() {
        assert_eq!(
            lines(100, &[b"one\ntwo\r\nthree\n"]),
            [ok("one"), ok("two"), ok("three")]
        );
    }

    #[test]
    fn empty_line_is_a_line() {
        assert_eq!(lines(100, &[b"\n\r\n"]), [ok(""), ok("")]);
    }

    #[test]
    fn a_lone_cr_inside_a_line_is_kept() {
        assert_eq!(lines(100, &[b"a\rb\n"]), [ok("a\rb")]);
    }

    #[test]
    fn partial_lines_join_across_reads() {
        assert_eq!(
            lines(100, &[b"hel", b"lo\r", b"\nwor", b"ld\n"]),
            [ok("hello"), ok("world")]
        );
    }

    #[test]
    fn multibyte_character_split_across_reads() {
        let text = "héllo €\n".as_bytes();
        // Split inside the three bytes of the euro sign.
        let cut = text.len() - 3;
        assert_eq!(lines(100, &[&text[..cut], &text[cut..]]), [ok("héllo €")]);
    }

    #[test]
    fn last_line_without_newline_is_returned_at_eof() {
        assert_eq!(lines(100, &[b"a\nb"]), [ok("a"), ok("b")]);
    }

    #[test]
    fn eof_right_after_cr_ends_the_line_like_crlf() {
        assert_eq!(lines(100, &[b"b\r"]), [ok("b")]);
    }

    #[test]
    fn line_at_the_limit_is_accepted_with_either_ending() {
        assert_eq!(lines(3, &[b"abc\n"]), [ok("abc")]);
        assert_eq!(lines(3, &[b"abc\r\n"]), [ok("abc")]);
        assert_eq!(lines(3, &[b"ab", b"c\r", b"\n"]), [ok("abc")]);
    }

    #[test]
    fn over_long_line_is_refused_after_earlier_lines() {
        assert_eq!(
            lines(3, &[b"ok\nabcd\nlater\n"]),
            [ok("ok"), Err(LineError::TooLong)]
        );
    }

    #[test]
    fn over_long_line_without_newline_is_refused_early() {
        // Five bytes and no newline cannot be a line of at most three bytes.
        let mut source = Chunks(vec![b"abcde".to_vec()]);
        let mut reader = LineReader::new(3);
        reader.fill(&mut source).expect("read");
        assert_eq!(reader.next_line(), Some(Err(LineError::TooLong)));
    }

    #[test]
    fn memory_stays_bounded_without_newline() {
        let mut reader = LineReader::new(100_000);
        let mut endless = io::repeat(b'x');
        for _ in 0..100 {
            if let Some(Err(e)) = reader.next_line() {
                assert_eq!(e, LineError::TooLong);
                assert!(reader.buf.len() <= 100_002);
                return;
            }
            reader.fill(&mut endless).expect("read");
        }
        panic!("an endless line was never refused");
    }

    #[test]
    fn invalid_utf8_is_refused_after_earlier_lines() {
        assert_eq!(
            lines(100, &[b"fine\n\xff\xfe\nnever\n"]),
            [ok("fine"), Err(LineError::InvalidUtf8)]
        );
    }

    #[test]
    fn long_stream_of_short_lines_reuses_the_buffer() {
        let input: Vec<u8> = (0..10_000)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let got = lines(16, &[&input]);
        assert_eq!(got.len(), 10_000);
        assert_eq!(got[9_999], ok("9999"));
    }
}
