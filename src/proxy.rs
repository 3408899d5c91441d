//! The PROXY protocol header (version 1, text, or version 2, binary) that a
//! load balancer such as HAProxy sends first on every connection to name
//! the real client. Parsing is pure (`ppp` does the work): bytes in, the
//! header's length and the client's address out. [`HeaderReader`] reads
//! one from a non-blocking source, in as many pieces as it comes.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};

use ppp::{HeaderResult, PartialResult, v1, v2};

/// The longest header accepted: a version 2 header with a few TLVs fits
/// easily; a longer one is refused rather than buffered.
pub(crate) const MAX_HEADER: usize = 4096;

/// The longest version 1 header, by the protocol's definition.
const V1_MAX: usize = 107;

/// What the bytes received so far hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// The start of a header; more bytes are needed.
    Incomplete,
    /// A whole header of `len` bytes. `client` is the address it carries,
    /// or `None` when it carries none (`UNKNOWN`, `LOCAL`: a health check
    /// by the proxy itself), in which case the connection's own peer stands.
    Header {
        /// The header's length in bytes.
        len: usize,
        /// The client's address, if the header names one.
        client: Option<SocketAddr>,
    },
    /// Not a PROXY protocol header.
    Invalid,
}

/// Looks for a header at the start of `bytes`.
pub(crate) fn parse(bytes: &[u8]) -> Parsed {
    // A version 1 header is one line of at most 107 bytes, judged only
    // once its line has ended: before that, `ppp` can take a prefix for an
    // error (a header cut right after the source port, say), and a client
    // whose header came in two segments would be refused.
    if bytes.starts_with(b"PROXY") && !bytes.windows(2).any(|w| w == b"\r\n") {
        return if bytes.len() <= V1_MAX {
            Parsed::Incomplete
        } else {
            Parsed::Invalid
        };
    }
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        // A version 1 header whose line has ended (see above) cannot be
        // mended by more bytes.
        let v1_over = bytes.starts_with(b"PROXY");
        return if bytes.len() < MAX_HEADER && !v1_over {
            Parsed::Incomplete
        } else {
            Parsed::Invalid
        };
    }
    match result {
        HeaderResult::V1(Ok(header)) => Parsed::Header {
            len: header.header.len(),
            client: match header.addresses {
                v1::Addresses::Tcp4(a) => {
                    Some((IpAddr::V4(a.source_address), a.source_port).into())
                }
                v1::Addresses::Tcp6(a) => {
                    Some((IpAddr::V6(a.source_address), a.source_port).into())
                }
                v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(header)) => Parsed::Header {
            len: header.len(),
            client: match (header.command, header.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some((IpAddr::V4(a.source_address), a.source_port).into())
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some((IpAddr::V6(a.source_address), a.source_port).into())
                }
                _ => None,
            },
        },
        HeaderResult::V1(Err(_)) | HeaderResult::V2(Err(_)) => Parsed::Invalid,
    }
}

/// Reads a PROXY protocol header from a non-blocking source, keeping what
/// has come so far between calls.
#[derive(Debug, Default)]
pub(crate) struct HeaderReader {
    bytes: Vec<u8>,
}

/// A whole header, read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// The client's address, if the header names one.
    pub(crate) client: Option<SocketAddr>,
    /// What came after the header: the protocol's first bytes.
    pub(crate) rest: Vec<u8>,
}

/// Why there is no header.
#[derive(Debug)]
pub(crate) enum HeaderError {
    /// The connection ended before the header did.
    Ended,
    /// What came is not a PROXY protocol header.
    Invalid,
    /// Reading failed.
    Io(io::Error),
}

impl HeaderReader {
    /// Reads what `source` has now. Returns the header once it is whole,
    /// or `None` when the source has nothing more yet (it said
    /// `WouldBlock`) and the header is still incomplete.
    pub(crate) fn read_from(
        &mut self,
        mut source: impl Read,
    ) -> Result<Option<Header>, HeaderError> {
        let mut chunk = [0u8; 1024];
        loop {
            match source.read(&mut chunk) {
                Ok(0) => return Err(HeaderError::Ended),
                Ok(n) => self.bytes.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(HeaderError::Io(e)),
            }
            match parse(&self.bytes) {
                Parsed::Incomplete => {}
                Parsed::Invalid => return Err(HeaderError::Invalid),
                Parsed::Header { len, client } => {
                    let rest = self.bytes.split_off(len);
                    self.bytes = Vec::new();
                    return Ok(Some(Header { client, rest }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Option<SocketAddr> {
        Some(text.parse().expect("address"))
    }

    /// A version 2 header: PROXY, TCP over IPv4, from 192.0.2.7:4242.
    fn v2_ipv4() -> Vec<u8> {
        let mut h = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
        h.extend_from_slice(&[192, 0, 2, 7, 127, 0, 0, 1]);
        h.extend_from_slice(&4242u16.to_be_bytes());
        h.extend_from_slice(&8000u16.to_be_bytes());
        h
    }

    #[test]
    fn version_1_names_the_client() {
        let header = b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 8000\r\n";
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(b"hello\n");
        assert_eq!(
            parse(&bytes),
            Parsed::Header {
                len: header.len(),
                client: addr("192.0.2.7:4242")
            }
        );
        let v6 = b"PROXY TCP6 2001:db8::1 ::1 4242 8000\r\n";
        assert_eq!(
            parse(v6),
            Parsed::Header {
                len: v6.len(),
                client: addr("[2001:db8::1]:4242")
            }
        );
        let unknown = b"PROXY UNKNOWN\r\n";
        assert_eq!(
            parse(unknown),
            Parsed::Header {
                len: unknown.len(),
                client: None
            }
        );
    }

    #[test]
    fn version_2_names_the_client() {
        let mut bytes = v2_ipv4();
        let len = bytes.len();
        bytes.extend_from_slice(b"hello\n");
        assert_eq!(
            parse(&bytes),
            Parsed::Header {
                len,
                client: addr("192.0.2.7:4242")
            }
        );
        // LOCAL: the proxy's own health check carries no client.
        let mut local = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(
            parse(&local),
            Parsed::Header {
                len: 16,
                client: None
            }
        );
    }

    #[test]
    fn a_header_cut_short_is_incomplete() {
        // Every cut, of both address families: `ppp` alone took the TCP6
        // one cut right after its source port for an error.
        let v1s: [&[u8]; 2] = [
            b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 8000\r\n",
            b"PROXY TCP6 1000:1000:1000:1000:1000:1000:1000:1000 ::1 10000 8000\r\n",
        ];
        for v1 in v1s {
            for cut in 1..v1.len() {
                assert_eq!(parse(&v1[..cut]), Parsed::Incomplete, "v1 cut at {cut}");
            }
        }
        let v2 = v2_ipv4();
        for cut in [1, 12, 16, v2.len() - 1] {
            assert_eq!(parse(&v2[..cut]), Parsed::Incomplete, "v2 cut at {cut}");
        }
    }

    #[test]
    fn a_version_2_header_longer_than_the_limit_is_refused() {
        // The signature, PROXY over TCP/IPv4, and a length of 0xffff.
        let mut h = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        h.resize(MAX_HEADER - 1, 0);
        assert_eq!(parse(&h), Parsed::Incomplete);
        h.push(0);
        assert_eq!(parse(&h), Parsed::Invalid);
    }

    /// A source that says each of `answers` once, then would block.
    struct Says(std::collections::VecDeque<io::Result<Vec<u8>>>);

    impl Read for &mut Says {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.pop_front() {
                Some(Ok(piece)) => {
                    buf[..piece.len()].copy_from_slice(&piece);
                    Ok(piece.len())
                }
                Some(Err(e)) => Err(e),
                None => Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    #[test]
    fn an_interrupted_read_is_made_again_and_a_failed_one_ends_it() {
        let header = b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 8000\r\n".to_vec();
        let mut source = Says([Err(io::ErrorKind::Interrupted.into()), Ok(header.clone())].into());
        let read = HeaderReader::default().read_from(&mut source);
        assert_eq!(
            read.expect("no error").expect("whole").client,
            addr("192.0.2.7:4242")
        );
        let mut source = Says(
            [
                Ok(header[..5].to_vec()),
                Err(io::ErrorKind::ConnectionReset.into()),
            ]
            .into(),
        );
        let read = HeaderReader::default().read_from(&mut source);
        assert!(
            matches!(&read, Err(HeaderError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset),
            "{read:?}"
        );
    }

    #[test]
    fn anything_else_is_invalid() {
        assert_eq!(parse(b"hello world\n"), Parsed::Invalid);
        assert_eq!(parse(b"PROXY TCP4 nonsense here\r\n"), Parsed::Invalid);
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Parsed::Invalid);
    }

    /// A source that gives `pieces` one read at a time, then would block.
    struct Pieces(std::collections::VecDeque<Vec<u8>>);

    impl Read for &mut Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.pop_front() {
                Some(piece) => {
                    buf[..piece.len()].copy_from_slice(&piece);
                    Ok(piece.len())
                }
                None => Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    #[test]
    fn a_header_in_pieces_is_read_whole_and_keeps_what_follows() {
        let mut all = b"PROXY TCP4 192.0.2.7 127.0.0.1 4242 8000\r\n".to_vec();
        all.extend_from_slice(b"hello\n");
        let mut reader = HeaderReader::default();
        let mut source = Pieces(all[..10].iter().map(|&b| vec![b]).collect());
        assert!(reader.read_from(&mut source).expect("no error").is_none());
        let mut source = Pieces([all[10..].to_vec()].into());
        let header = reader.read_from(&mut source).expect("no error");
        assert_eq!(
            header,
            Some(Header {
                client: addr("192.0.2.7:4242"),
                rest: b"hello\n".to_vec()
            })
        );
    }

    #[test]
    fn an_end_or_garbage_before_the_header_is_an_error() {
        let mut source = Pieces([b"PROXY TCP4".to_vec()].into());
        let mut reader = HeaderReader::default();
        assert!(reader.read_from(&mut source).expect("no error").is_none());
        let mut ended: &[u8] = &[];
        assert!(matches!(
            reader.read_from(&mut ended),
            Err(HeaderError::Ended)
        ));
        let mut garbage: &[u8] = b"hello world\n";
        let mut reader = HeaderReader::default();
        assert!(matches!(
            reader.read_from(&mut garbage),
            Err(HeaderError::Invalid)
        ));
    }

    /// Properties over any header, any garbage and any cuts.
    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::net::{Ipv4Addr, Ipv6Addr};

        /// A header and the client it names, in either version.
        fn header() -> impl Strategy<Value = (Vec<u8>, Option<SocketAddr>)> {
            let v4 = (any::<[u8; 4]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port));
            let v6 = (any::<[u8; 16]>(), any::<u16>())
                .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port));
            let client = prop_oneof![v4, v6];
            prop_oneof![
                client.clone().prop_map(|c| (v1(Some(c)), Some(c))),
                client.prop_map(|c| (v2(Some(c)), Some(c))),
                Just((v1(None), None)),
                Just((v2(None), None)),
            ]
        }

        fn v1(client: Option<SocketAddr>) -> Vec<u8> {
            match client {
                Some(SocketAddr::V4(c)) => {
                    format!("PROXY TCP4 {} 127.0.0.1 {} 8000\r\n", c.ip(), c.port())
                }
                Some(SocketAddr::V6(c)) => {
                    format!("PROXY TCP6 {} ::1 {} 8000\r\n", c.ip(), c.port())
                }
                None => "PROXY UNKNOWN\r\n".to_string(),
            }
            .into_bytes()
        }

        fn v2(client: Option<SocketAddr>) -> Vec<u8> {
            let mut h = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
            match client {
                Some(SocketAddr::V4(c)) => {
                    h.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
                    h.extend_from_slice(&c.ip().octets());
                    h.extend_from_slice(&[127, 0, 0, 1]);
                    h.extend_from_slice(&c.port().to_be_bytes());
                    h.extend_from_slice(&8000u16.to_be_bytes());
                }
                Some(SocketAddr::V6(c)) => {
                    h.extend_from_slice(&[0x21, 0x21, 0x00, 36]);
                    h.extend_from_slice(&c.ip().octets());
                    h.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
                    h.extend_from_slice(&c.port().to_be_bytes());
                    h.extend_from_slice(&8000u16.to_be_bytes());
                }
                // LOCAL: the proxy's own health check.
                None => h.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]),
            }
            h
        }

        /// Reads `bytes` cut at `cuts` until the reader has an answer or
        /// the pieces run out; returns the answer and what was not read.
        fn read_cut(bytes: &[u8], cuts: &[usize]) -> (Result<Option<Header>, String>, Vec<u8>) {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.push(bytes.len());
            cuts.sort_unstable();
            cuts.dedup();
            let mut pieces = std::collections::VecDeque::new();
            let mut at = 0;
            for cut in cuts {
                // A read takes at most what the reader asks for.
                for chunk in bytes[at..cut].chunks(1024) {
                    pieces.push_back(chunk.to_vec());
                }
                at = cut;
            }
            // Each read returns one piece; the reader reads until the
            // source would block or it has its answer.
            let mut source = Pieces(pieces);
            let answer = HeaderReader::default().read_from(&mut source);
            let unread = source.0.into_iter().flatten().collect();
            (answer.map_err(|e| format!("{e:?}")), unread)
        }

        proptest! {
            #[test]
            fn a_header_in_any_pieces_names_its_client_and_keeps_what_follows(
                (header, client) in header(),
                after in prop::collection::vec(any::<u8>(), 0..64),
                cuts in prop::collection::vec(any::<usize>(), 0..8),
            ) {
                let mut bytes = header.clone();
                bytes.extend_from_slice(&after);
                let (answer, unread) = read_cut(&bytes, &cuts);
                let got = answer.expect("a header").expect("a whole header");
                prop_assert_eq!(got.client, client);
                let mut rest = got.rest;
                rest.extend_from_slice(&unread);
                prop_assert_eq!(rest, after);
            }

            #[test]
            fn garbage_is_refused_or_waited_for_the_same_however_it_is_cut(
                bytes in prop::collection::vec(any::<u8>(), 0..300),
                cuts in prop::collection::vec(any::<usize>(), 0..8),
            ) {
                let (whole, _) = read_cut(&bytes, &[]);
                let (cut, _) = read_cut(&bytes, &cuts);
                let describe = |a: &Result<Option<Header>, String>| match a {
                    Ok(Some(h)) => format!("header {:?}", h.client),
                    Ok(None) => "incomplete".to_string(),
                    Err(e) => e.clone(),
                };
                prop_assert_eq!(describe(&cut), describe(&whole));
            }

            #[test]
            fn a_proxy_prefix_of_any_length_never_panics(
                (header, _) in header(),
                cut in any::<usize>(),
                junk in prop::collection::vec(any::<u8>(), 0..40),
            ) {
                let mut bytes = header[..cut % (header.len() + 1)].to_vec();
                bytes.extend_from_slice(&junk);
                let _ = parse(&bytes);
            }
        }
    }
}
