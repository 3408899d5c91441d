//! Properties over any input cut into any reads: the reader gives what
//! one read of the whole input gives, and what a plain model of the
//! framing says.

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
