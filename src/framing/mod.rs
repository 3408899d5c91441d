//! Message framing with a size limit: bytes in, messages out.
//!
//! [`Reader`] owns one buffer. [`Reader::fill`] reads once into its free
//! space; [`Reader::next_message`] hands out every complete message already
//! buffered, without copying and without allocating. Two framings share the
//! buffer logic: lines ending in `\n` (checked whole for length and UTF-8, so
//! a multi-byte character split across two reads is never a problem), and
//! frames of a 4-byte big-endian length followed by that many bytes. Memory
//! stays bounded by the limit however much a client sends.

use std::io::{self, Read};

/// The buffer's size for a fresh connection: enough for the short messages
/// of an interactive client, and cheap for thousands of idle connections.
const INITIAL_CAPACITY: usize = 1024;

/// The buffer grows (doubling) up to this size for a client whose reads fill
/// it, so that pipelined input is taken in large reads.
const READ_TARGET: usize = 64 * 1024;

/// Bytes in a frame's length prefix.
const PREFIX: usize = 4;

/// How a byte stream is cut into messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// UTF-8 lines ending in `\n`; a `\r` right before the end belongs to
    /// the line ending. The last line may end at end of input instead.
    Lines,
    /// A 4-byte big-endian length, then that many bytes of any value.
    LengthPrefixed,
}

impl Framing {
    /// Appends a line of text from the server (an error, a refusal) in
    /// this framing: the text and `\n` for lines, a frame whose payload is
    /// the text for length-prefixed messages, whose framing has no text
    /// channel of its own.
    pub fn say(self, text: &[u8], out: &mut Vec<u8>) {
        match self {
            Framing::Lines => {
                out.extend_from_slice(text);
                out.push(b'\n');
            }
            Framing::LengthPrefixed => write_frame(out, text),
        }
    }
}

/// Why a message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The message is longer than the limit.
    TooLong,
    /// A line that is not valid UTF-8.
    InvalidUtf8,
    /// The input ended inside a frame.
    Truncated,
}

/// Splits a byte stream into messages of at most `max` bytes (a line's
/// ending and a frame's prefix not counted).
pub struct Reader {
    framing: Framing,
    buf: Vec<u8>,
    /// Start of the first byte not yet handed out.
    start: usize,
    /// End of the bytes read so far.
    end: usize,
    /// Lines: bytes from `start` up to here are known to hold no `\n`.
    scanned: usize,
    /// Lines: bytes from `start` up to here are known to be ASCII, so lines
    /// that end before it need no UTF-8 check of their own.
    ascii: usize,
    max: usize,
    /// The last read filled all the free space: more input is likely waiting.
    filled: bool,
}

impl Reader {
    /// An empty reader for `framing` that refuses messages over `max` bytes.
    pub fn new(framing: Framing, max: usize) -> Self {
        Reader {
            framing,
            buf: Vec::new(),
            start: 0,
            end: 0,
            scanned: 0,
            ascii: 0,
            max,
            filled: false,
        }
    }

    /// An empty line reader.
    pub fn lines(max: usize) -> Self {
        Reader::new(Framing::Lines, max)
    }

    /// The largest the buffer grows: a full message with its framing, or
    /// the read target if that is larger.
    fn limit(&self) -> usize {
        let overhead = match self.framing {
            Framing::Lines => 2,
            Framing::LengthPrefixed => PREFIX,
        };
        self.max.saturating_add(overhead).max(READ_TARGET)
    }

    /// How this reader cuts messages.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The bytes read and not yet handed out as messages.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Whether part of a message has been read but not its end.
    pub fn has_partial(&self) -> bool {
        self.start < self.end
    }

    /// Puts bytes already read elsewhere (what followed a PROXY protocol
    /// header) in front of whatever is read next. Only for a fresh reader.
    pub fn preload(&mut self, bytes: &[u8]) {
        debug_assert!(self.end == 0, "preload into a reader in use");
        let len = (bytes.len() + 1).max(INITIAL_CAPACITY);
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        self.buf[..bytes.len()].copy_from_slice(bytes);
        self.start = 0;
        self.end = bytes.len();
        self.scanned = 0;
        self.ascii = 0;
    }

    /// Whether the last [`fill`](Reader::fill) filled all the free space,
    /// so that more input may be waiting.
    pub fn filled(&self) -> bool {
        self.filled
    }

    /// Reads once from `source` into the buffer and returns how many bytes
    /// came in; 0 means end of input. Call it only after [`next_message`]
    /// returned `None`, so that the buffer holds at most one partial message.
    ///
    /// [`next_message`]: Reader::next_message
    pub fn fill<R: Read>(&mut self, source: &mut R) -> io::Result<usize> {
        self.make_room();
        let n = source.read(&mut self.buf[self.end..])?;
        self.filled = self.end + n == self.buf.len();
        // One check over the whole read is far cheaper than one per line;
        // a read with any other byte leaves its lines to be checked one by
        // one.
        if self.ascii == self.end && self.buf[self.end..self.end + n].is_ascii() {
            self.ascii += n;
        }
        self.end += n;
        Ok(n)
    }

    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
            self.ascii = 0;
        } else if self.start > 0 && self.end == self.buf.len() {
            // Move the partial message to the front instead of growing.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.ascii = self.ascii.saturating_sub(self.start);
            self.start = 0;
        }
        // Grow when a partial message fills the buffer, or when the last
        // read filled it. `next_message` refuses a message over the limit
        // before it is complete, so growing stops at `limit()`.
        let full = self.end == self.buf.len();
        if (full || self.filled) && self.buf.len() < self.limit() {
            let len = (self.buf.len() * 2).clamp(INITIAL_CAPACITY, self.limit());
            self.buf.resize(len, 0);
        }
        self.filled = false;
        debug_assert!(self.end < self.buf.len(), "fill called with a full buffer");
    }

    /// The next complete message in the buffer, if any. Once it returns an
    /// error the connection should be closed: the reader does not
    /// resynchronise.
    pub fn next_message(&mut self) -> Option<Result<&[u8], FrameError>> {
        match self.framing {
            Framing::Lines => self.next_line(),
            Framing::LengthPrefixed => self.next_frame(),
        }
    }

    fn next_line(&mut self) -> Option<Result<&[u8], FrameError>> {
        let pending = &self.buf[self.scanned..self.end];
        let Some(offset) = memchr::memchr(b'\n', pending) else {
            self.scanned = self.end;
            // With no `\n` yet, `max + 1` bytes may still be a full line and
            // its `\r`; one byte more cannot be.
            if self.end - self.start > self.max.saturating_add(1) {
                return Some(Err(FrameError::TooLong));
            }
            return None;
        };
        let newline = self.scanned + offset;
        let line_start = self.start;
        self.start = newline + 1;
        self.scanned = self.start;
        let line = &self.buf[line_start..newline];
        if newline < self.ascii {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            return Some(if line.len() > self.max {
                Err(FrameError::TooLong)
            } else {
                Ok(line)
            });
        }
        Some(check_line(line, self.max))
    }

    fn next_frame(&mut self) -> Option<Result<&[u8], FrameError>> {
        let pending = &self.buf[self.start..self.end];
        let prefix: [u8; PREFIX] = pending.get(..PREFIX)?.try_into().ok()?;
        let len = u32::from_be_bytes(prefix) as usize;
        if len > self.max {
            return Some(Err(FrameError::TooLong));
        }
        if pending.len() < PREFIX + len {
            return None;
        }
        let body = self.start + PREFIX;
        self.start = body + len;
        self.scanned = self.start;
        Some(Ok(&self.buf[body..body + len]))
    }

    /// At end of input: the last line if it had no `\n`, or `Truncated` if
    /// a frame was cut short. Empties the reader.
    pub fn take_rest(&mut self) -> Option<Result<&[u8], FrameError>> {
        if !self.has_partial() {
            return None;
        }
        let (start, end) = (self.start, self.end);
        self.start = end;
        self.scanned = end;
        self.ascii = 0;
        Some(match self.framing {
            Framing::Lines => check_line(&self.buf[start..end], self.max),
            Framing::LengthPrefixed => Err(FrameError::Truncated),
        })
    }
}

/// Strips a `\r` line ending and checks length and encoding.
fn check_line(line: &[u8], max: usize) -> Result<&[u8], FrameError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max {
        return Err(FrameError::TooLong);
    }
    match std::str::from_utf8(line) {
        Ok(_) => Ok(line),
        Err(_) => Err(FrameError::InvalidUtf8),
    }
}

/// Appends `payload` to `out` as one length-prefixed frame.
pub fn write_frame(out: &mut Vec<u8>, payload: &[u8]) {
    // Payloads are bounded by the message limit, far below 4 GiB.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
