//! The requests a load run sends, made so that every reply can be checked
//! against the exact request it answers, and how each protocol frames them.

use std::ops::Range;

use super::LoadProtocol;

/// What a server at its connection limit says (`--overload reject`).
const BUSY: &[u8] = b"ERR server busy";

/// Whether `input` starts with the server's "busy" refusal in `protocol`'s
/// framing; returns the bytes it takes up.
pub fn busy(input: &[u8], protocol: LoadProtocol) -> Option<usize> {
    match protocol {
        LoadProtocol::Ack => {
            let line = input.strip_prefix(BUSY)?;
            line.starts_with(b"\n").then_some(BUSY.len() + 1)
        }
        LoadProtocol::Framed => {
            let len = u32::try_from(BUSY.len()).unwrap_or(u32::MAX).to_be_bytes();
            let body = input.strip_prefix(&len[..])?;
            body.starts_with(BUSY).then_some(4 + BUSY.len())
        }
    }
}

/// Appends request `seq` of connection `conn`, framed for `protocol`.
pub fn write_message(out: &mut Vec<u8>, protocol: LoadProtocol, conn: u64, seq: u64, len: usize) {
    match protocol {
        LoadProtocol::Ack => {
            write_request(out, conn, seq, len);
            out.push(b'\n');
        }
        LoadProtocol::Framed => {
            let start = out.len();
            out.extend_from_slice(&[0; 4]);
            write_request(out, conn, seq, len);
            let body = u32::try_from(out.len() - start - 4).unwrap_or(u32::MAX);
            out[start..start + 4].copy_from_slice(&body.to_be_bytes());
        }
    }
}

/// The first complete reply in `input`: the range of its body and how many
/// bytes it takes up.
pub fn split_reply(input: &[u8], protocol: LoadProtocol) -> Option<(Range<usize>, usize)> {
    match protocol {
        LoadProtocol::Ack => {
            let end = input.iter().position(|&b| b == b'\n')?;
            Some((0..end, end + 1))
        }
        LoadProtocol::Framed => {
            let prefix: [u8; 4] = input.get(..4)?.try_into().ok()?;
            let len = u32::from_be_bytes(prefix) as usize;
            let end = 4usize.checked_add(len)?;
            (input.len() >= end).then_some((4..end, end))
        }
    }
}

/// Whether `body` is the right reply to request `seq` of connection `conn`.
pub fn is_reply_to(
    body: &[u8],
    protocol: LoadProtocol,
    conn: u64,
    seq: u64,
    len: usize,
    scratch: &mut Vec<u8>,
) -> bool {
    match protocol {
        LoadProtocol::Ack => is_ack_for(body, conn, seq, len, scratch),
        LoadProtocol::Framed => {
            scratch.clear();
            write_request(scratch, conn, seq, len);
            body == scratch.as_slice()
        }
    }
}

/// Writes request number `seq` of connection `conn` into `out`: the ids,
/// then dots up to `len` bytes. Never a newline, never a command.
pub fn write_request(out: &mut Vec<u8>, conn: u64, seq: u64, len: usize) {
    let start = out.len();
    // Hand-rolled rather than `write!`: this runs twice per request, and the
    // load tool must stay cheaper than the server it measures.
    out.push(b'c');
    push_decimal(out, conn);
    out.push(b'-');
    push_decimal(out, seq);
    out.push(b'-');
    let written = out.len() - start;
    if written > len {
        out.truncate(start + len);
    } else {
        out.resize(start + len, b'.');
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Whether `reply` (without its newline) is the right answer to request
/// `seq` of connection `conn`. `scratch` is reused to avoid allocating.
pub fn is_ack_for(reply: &[u8], conn: u64, seq: u64, len: usize, scratch: &mut Vec<u8>) -> bool {
    scratch.clear();
    scratch.extend_from_slice(b"ACK: ");
    write_request(scratch, conn, seq, len);
    reply == scratch.as_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_asked_length_and_differ() {
        let mut a = Vec::new();
        write_request(&mut a, 3, 17, 32);
        assert_eq!(a.len(), 32);
        assert!(a.starts_with(b"c3-17-"));
        let mut b = Vec::new();
        write_request(&mut b, 3, 18, 32);
        assert_ne!(a, b);
        let mut short = Vec::new();
        write_request(&mut short, 12345, 678, 4);
        assert_eq!(short, b"c123");
        let mut exact = Vec::new();
        write_request(&mut exact, 0, u64::MAX, 40);
        assert_eq!(
            &exact[..],
            format!("c0-{}-{}", u64::MAX, ".".repeat(16)).as_bytes()
        );
    }

    #[test]
    fn busy_is_known_in_either_framing() {
        assert_eq!(busy(b"ERR server busy\nmore", LoadProtocol::Ack), Some(16));
        assert_eq!(busy(b"ERR server busy", LoadProtocol::Ack), None);
        assert_eq!(busy(b"ACK: x\n", LoadProtocol::Ack), None);
        let frame = b"\0\0\0\x0fERR server busy";
        assert_eq!(busy(frame, LoadProtocol::Framed), Some(19));
        assert_eq!(busy(b"ERR server busy\n", LoadProtocol::Framed), None);
    }

    #[test]
    fn framed_requests_round_trip() {
        let mut out = Vec::new();
        write_message(&mut out, LoadProtocol::Framed, 2, 5, 10);
        let (body, used) = split_reply(&out, LoadProtocol::Framed).expect("a whole frame");
        assert_eq!(used, out.len());
        let mut scratch = Vec::new();
        assert!(is_reply_to(
            &out[body.clone()],
            LoadProtocol::Framed,
            2,
            5,
            10,
            &mut scratch
        ));
        assert!(!is_reply_to(
            &out[body],
            LoadProtocol::Framed,
            2,
            6,
            10,
            &mut scratch
        ));
        assert_eq!(
            split_reply(&out[..out.len() - 1], LoadProtocol::Framed),
            None
        );
    }

    #[test]
    fn replies_are_checked_exactly() {
        let mut scratch = Vec::new();
        let mut reply = b"ACK: ".to_vec();
        write_request(&mut reply, 1, 2, 20);
        assert!(is_ack_for(&reply, 1, 2, 20, &mut scratch));
        assert!(!is_ack_for(&reply, 1, 3, 20, &mut scratch));
        reply.push(b'.');
        assert!(!is_ack_for(&reply, 1, 2, 20, &mut scratch));
    }
}
