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
mod tests {
    use super::*;

    #[test]
    fn the_server_speaks_in_the_clients_framing() {
        let mut out = Vec::new();
        Framing::Lines.say(b"ERR idle timeout", &mut out);
        assert_eq!(out, b"ERR idle timeout\n");
        out.clear();
        Framing::LengthPrefixed.say(b"ERR idle timeout", &mut out);
        assert_eq!(out, b"\0\0\0\x10ERR idle timeout");
    }

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

    /// Every message (or error) a reader yields for `chunks`, end of input
    /// included.
    fn collect(framing: Framing, max: usize, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut source = Chunks(chunks.iter().map(|c| c.to_vec()).collect());
        let mut reader = Reader::new(framing, max);
        let mut out = Vec::new();
        loop {
            while let Some(msg) = reader.next_message() {
                let failed = msg.is_err();
                out.push(msg.map(<[u8]>::to_vec));
                if failed {
                    return out;
                }
            }
            if reader.fill(&mut source).expect("read") == 0 {
                if let Some(rest) = reader.take_rest() {
                    out.push(rest.map(<[u8]>::to_vec));
                }
                return out;
            }
        }
    }

    /// Every line (or error) for `chunks`, as text.
    fn lines(max_line: usize, chunks: &[&[u8]]) -> Vec<Result<String, FrameError>> {
        collect(Framing::Lines, max_line, chunks)
            .into_iter()
            .map(|line| line.map(|bytes| text(&bytes)))
            .collect()
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).expect("lines are UTF-8")
    }

    fn ok(s: &str) -> Result<String, FrameError> {
        Ok(s.to_string())
    }

    #[test]
    fn preloaded_bytes_come_first() {
        let mut reader = Reader::lines(100);
        reader.preload(b"one\ntw");
        assert_eq!(reader.next_message(), Some(Ok(&b"one"[..])));
        assert_eq!(reader.next_message(), None);
        reader
            .fill(&mut Chunks(vec![b"o\n".to_vec()]))
            .expect("read");
        assert_eq!(reader.next_message(), Some(Ok(&b"two"[..])));
    }

    #[test]
    fn a_long_preload_is_kept_whole() {
        let mut bytes = b"x".repeat(3000);
        bytes.extend_from_slice(b"\nrest");
        let mut reader = Reader::lines(4000);
        reader.preload(&bytes);
        assert_eq!(reader.next_message(), Some(Ok(&b"x".repeat(3000)[..])));
        assert_eq!(reader.next_message(), None);
        assert_eq!(reader.take_rest(), Some(Ok(&b"rest"[..])));
    }

    /// `filled` says whether a read took all the room there was, which is
    /// what tells the core that more input may wait in the socket (the
    /// poller, edge-triggered, would not say so again).
    #[test]
    fn a_read_that_fills_the_room_says_so() {
        let mut reader = Reader::lines(100_000);
        reader
            .fill(&mut Chunks(vec![b"short\n".to_vec()]))
            .expect("read");
        assert!(!reader.filled());
        assert_eq!(reader.next_message(), Some(Ok(&b"short"[..])));
        assert_eq!(reader.next_message(), None);
        // More than the buffer holds: the read fills it.
        let n = reader
            .fill(&mut Chunks(vec![b"y".repeat(10_000)]))
            .expect("read");
        assert_eq!(n, INITIAL_CAPACITY);
        assert!(reader.filled());
        // A read that comes back short after that does not.
        let mut rest = Chunks(vec![b"y\n".to_vec()]);
        assert_eq!(reader.next_message(), None);
        reader.fill(&mut rest).expect("read");
        assert!(!reader.filled());
    }

    /// A partial line left at the end of a full buffer moves to its front
    /// and is completed by the next reads.
    #[test]
    fn a_partial_line_at_the_end_of_a_full_buffer_moves_to_the_front() {
        let line = |c: u8| {
            let mut l = vec![c; 700];
            l.push(b'\n');
            l
        };
        let input = [line(b'a'), line(b'b'), line(b'c')].concat();
        let got = collect(Framing::Lines, 1000, &[&input]);
        let expected = [
            Ok(vec![b'a'; 700]),
            Ok(vec![b'b'; 700]),
            Ok(vec![b'c'; 700]),
        ];
        assert!(
            got == expected,
            "{} messages, not the three lines",
            got.len()
        );
        // Moved by a single byte (an empty line first), with the next read
        // starting with the line's end.
        let mut input = b"\n".to_vec();
        input.extend_from_slice(&[b'd'; INITIAL_CAPACITY - 1]);
        input.extend_from_slice(b"\ne\n");
        let got = collect(Framing::Lines, 2000, &[&input]);
        let expected = [
            Ok(vec![]),
            Ok(vec![b'd'; INITIAL_CAPACITY - 1]),
            Ok(b"e".to_vec()),
        ];
        assert!(
            got == expected,
            "{} messages, not the three lines",
            got.len()
        );
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
            [ok("ok"), Err(FrameError::TooLong)]
        );
    }

    #[test]
    fn over_long_line_without_newline_is_refused_early() {
        // Five bytes and no newline cannot be a line of at most three bytes.
        let mut source = Chunks(vec![b"abcde".to_vec()]);
        let mut reader = Reader::lines(3);
        reader.fill(&mut source).expect("read");
        assert_eq!(reader.next_message(), Some(Err(FrameError::TooLong)));
    }

    #[test]
    fn memory_stays_bounded_without_newline() {
        let mut reader = Reader::lines(100_000);
        let mut endless = io::repeat(b'x');
        for _ in 0..100 {
            if let Some(Err(e)) = reader.next_message() {
                assert_eq!(e, FrameError::TooLong);
                assert!(reader.buf.len() <= 100_002);
                return;
            }
            reader.fill(&mut endless).expect("read");
        }
        panic!("an endless line was never refused");
    }

    #[test]
    fn invalid_utf8_after_an_ascii_read_is_still_refused() {
        assert_eq!(
            lines(100, &[b"plain ascii\nand a partial ", b"\xc3(\nnever\n"]),
            [ok("plain ascii"), Err(FrameError::InvalidUtf8)]
        );
        assert_eq!(
            lines(100, &[b"ascii\n", b"caf\xc3\xa9\n", b"more\n"]),
            [ok("ascii"), ok("café"), ok("more")]
        );
        // An ASCII read after a bad byte does not vouch for the bad byte.
        assert_eq!(
            lines(100, &[b"\xff", b"\nabc\n"]),
            [Err(FrameError::InvalidUtf8)]
        );
    }

    #[test]
    fn invalid_utf8_is_refused_after_earlier_lines() {
        assert_eq!(
            lines(100, &[b"fine\n\xff\xfe\nnever\n"]),
            [ok("fine"), Err(FrameError::InvalidUtf8)]
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

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write_frame(&mut out, payload);
        out
    }

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, FrameError>> {
        collect(Framing::LengthPrefixed, max, chunks)
    }

    #[test]
    fn frames_split_and_coalesced() {
        let mut input = frame(b"hello");
        input.extend(frame(b""));
        input.extend(frame(&[0, 10, 255, 13]));
        let expected = [Ok(b"hello".to_vec()), Ok(vec![]), Ok(vec![0, 10, 255, 13])];
        assert_eq!(frames(100, &[&input]), expected);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(frames(100, &bytes), expected);
    }

    #[test]
    fn frame_over_the_limit_is_refused_from_its_prefix() {
        let mut input = frame(b"ok");
        input.extend_from_slice(&1000u32.to_be_bytes());
        assert_eq!(
            frames(999, &[&input]),
            [Ok(b"ok".to_vec()), Err(FrameError::TooLong)]
        );
    }

    #[test]
    fn frame_cut_short_is_truncated() {
        let input = frame(b"hello");
        assert_eq!(frames(100, &[&input[..6]]), [Err(FrameError::Truncated)]);
        assert_eq!(frames(100, &[&input[..2]]), [Err(FrameError::Truncated)]);
    }

    #[test]
    fn large_frame_grows_the_buffer_to_fit() {
        let payload = vec![7u8; 200_000];
        assert_eq!(frames(200_000, &[&frame(&payload)]), [Ok(payload)]);
    }

    /// Properties over any input cut into any reads: the reader gives what
    /// one read of the whole input gives, and what a plain model of the
    /// framing says.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        type Messages = Vec<Result<Vec<u8>, FrameError>>;

        /// A source that hands out `bytes` cut at `cuts`, each read taking
        /// at most what the reader has room for.
        struct Cut {
            bytes: Vec<u8>,
            at: usize,
            cuts: Vec<usize>,
        }

        impl Read for Cut {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let next = self
                    .cuts
                    .iter()
                    .copied()
                    .find(|&c| c > self.at)
                    .unwrap_or(self.bytes.len())
                    .min(self.bytes.len());
                let n = (next - self.at).min(buf.len());
                buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
                self.at += n;
                Ok(n)
            }
        }

        /// What the reader makes of `bytes` read in pieces ending at `cuts`,
        /// up to the first error, as the core uses it: messages until none
        /// is left, then a read, and at the end of input the rest.
        fn read_all(framing: Framing, max: usize, bytes: &[u8], cuts: &[usize]) -> Messages {
            let mut cuts = cuts.to_vec();
            cuts.sort_unstable();
            let mut source = Cut {
                bytes: bytes.to_vec(),
                at: 0,
                cuts,
            };
            let mut reader = Reader::new(framing, max);
            let mut got = Vec::new();
            loop {
                while let Some(message) = reader.next_message() {
                    let failed = message.is_err();
                    got.push(message.map(<[u8]>::to_vec));
                    if failed {
                        return got;
                    }
                }
                if reader.fill(&mut source).expect("reads never fail") == 0 {
                    got.extend(reader.take_rest().map(|m| m.map(<[u8]>::to_vec)));
                    return got;
                }
            }
        }

        /// The line framing as the docs state it, written plainly.
        fn model_lines(bytes: &[u8], max: usize) -> Messages {
            let check = |line: &[u8]| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.len() > max {
                    Err(FrameError::TooLong)
                } else if std::str::from_utf8(line).is_err() {
                    Err(FrameError::InvalidUtf8)
                } else {
                    Ok(line.to_vec())
                }
            };
            let mut got = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                let (line, after) = match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => (&rest[..i], &rest[i + 1..]),
                    None => (rest, &rest[rest.len()..]),
                };
                let message = check(line);
                let failed = message.is_err();
                got.push(message);
                if failed {
                    break;
                }
                rest = after;
            }
            got
        }

        /// The length-prefixed framing as the docs state it.
        fn model_frames(bytes: &[u8], max: usize) -> Messages {
            let mut got = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                let Some(prefix) = rest.get(..4) else {
                    got.push(Err(FrameError::Truncated));
                    break;
                };
                let len = u32::from_be_bytes(prefix.try_into().expect("four bytes")) as usize;
                if len > max {
                    got.push(Err(FrameError::TooLong));
                    break;
                }
                let Some(body) = rest.get(4..4 + len) else {
                    got.push(Err(FrameError::Truncated));
                    break;
                };
                got.push(Ok(body.to_vec()));
                rest = &rest[4 + len..];
            }
            got
        }

        /// Bytes that make lines interesting: endings, `\r`, and the parts
        /// of a two-byte UTF-8 sequence, alone or in order; and runs long
        /// enough to fill, move and grow the reader's buffer (1 KiB at
        /// first).
        fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
            let byte = prop::sample::select(vec![b'a', b'b', b'\n', b'\r', 0xc3, 0xa9, 0xff]);
            let run = (0usize..1500, prop::sample::select(vec![b'a', 0xc3, 0xa9]))
                .prop_map(|(len, fill)| vec![fill; len]);
            let piece = prop_oneof![
                4 => prop::collection::vec(byte, 0..40),
                1 => run,
            ];
            prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
        }

        /// Frames, whole or not, with lengths around the limit, and junk.
        fn frame_bytes() -> impl Strategy<Value = Vec<u8>> {
            let frame = (0usize..40, any::<u8>()).prop_map(|(len, fill)| {
                let mut out = Vec::new();
                write_frame(&mut out, &vec![fill; len]);
                out
            });
            let junk = prop::collection::vec(any::<u8>(), 0..6);
            prop::collection::vec(prop_oneof![4 => frame, 1 => junk], 0..20)
                .prop_map(|parts| parts.concat())
        }

        proptest! {
            #[test]
            fn lines_come_out_the_same_however_the_input_is_cut(
                bytes in line_bytes(),
                cuts in prop::collection::vec(any::<usize>(), 0..40),
                max in prop_oneof![0usize..40, 1000usize..3000],
            ) {
                let cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
                let whole = read_all(Framing::Lines, max, &bytes, &[]);
                prop_assert_eq!(&read_all(Framing::Lines, max, &bytes, &cuts), &whole);
                prop_assert_eq!(whole, model_lines(&bytes, max));
            }

            #[test]
            fn frames_come_out_the_same_however_the_input_is_cut(
                bytes in frame_bytes(),
                cuts in prop::collection::vec(0usize..800, 0..40),
                max in 0usize..48,
            ) {
                let whole = read_all(Framing::LengthPrefixed, max, &bytes, &[]);
                prop_assert_eq!(
                    &read_all(Framing::LengthPrefixed, max, &bytes, &cuts),
                    &whole
                );
                prop_assert_eq!(whole, model_frames(&bytes, max));
            }

            #[test]
            fn long_lines_are_refused_wherever_they_are_cut(
                max in 0usize..2000,
                off_by in -2isize..=2,
                cuts in prop::collection::vec(0usize..2004, 0..20),
                ending in prop::sample::select(vec![&b"\n"[..], b"\r\n", b"\r", b""]),
            ) {
                // A line of about `max` bytes with each ending; at the very
                // end of the input a `\r` or nothing ends it too.
                let len = max.saturating_add_signed(off_by);
                let cuts: Vec<usize> = cuts.iter().map(|c| c % (len + 3)).collect();
                let mut bytes = vec![b'x'; len];
                bytes.extend_from_slice(ending);
                let expected = if len == 0 && ending.is_empty() {
                    vec![]
                } else if len > max {
                    vec![Err(FrameError::TooLong)]
                } else {
                    vec![Ok(vec![b'x'; len])]
                };
                prop_assert_eq!(read_all(Framing::Lines, max, &bytes, &cuts), expected);
            }
        }
    }
}
