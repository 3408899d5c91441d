//! The request lines a load run sends, made so that every reply can be
//! checked against the exact request it answers.

use std::io::Write;

/// Writes request number `seq` of connection `conn` into `out`: the ids,
/// then dots up to `len` bytes. Never a newline, never a command.
pub fn write_request(out: &mut Vec<u8>, conn: u64, seq: u64, len: usize) {
    let start = out.len();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "c{conn}-{seq}-");
    let written = out.len() - start;
    if written > len {
        out.truncate(start + len);
    } else {
        out.resize(start + len, b'.');
    }
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
