//! The framing's tests: examples of each rule (the properties are in
//! `properties.rs`).

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
