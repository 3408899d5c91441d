//! The chat bus's envelope: what one instance publishes on the room's
//! channel, as one JSON object. Pure: encoding and decoding, no I/O.
//!
//! ```text
//! {"v":1,"id":"5f0c9a1e7d3b2a64","seq":42,"at":1764612345678901,"kind":"said","name":"ann","line":"hello all"}
//! ```
//!
//! `v` is the format's version (a receiver drops any other), `id` the
//! sending process's random instance id, `seq` its sequence number (1, 2,
//! ... in publishing order), `at` the time the line was taken, in
//! microseconds since the Unix epoch. The kinds are `said` (`name`,
//! `line`), `joined` and `left` (`name`), `beat` and `hello` (`members`:
//! every name the instance holds, and `hears`: whether its subscription
//! is up, so that it hears what is published now; absent means no; a
//! `hello` asks every other instance for a `beat` at once), and `bye`
//! (the instance stops).

use serde::{Deserialize, Serialize};

/// The version this build speaks.
pub const VERSION: u32 = 1;

/// One message on the bus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The format's version.
    pub v: u32,
    /// The sending instance.
    pub id: String,
    /// The sender's sequence number.
    pub seq: u64,
    /// When it was taken, microseconds since the Unix epoch.
    pub at: u64,
    /// What it says.
    #[serde(flatten)]
    pub body: Body,
}

/// What an envelope says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Body {
    /// A member said a line.
    Said {
        /// Who.
        name: String,
        /// What, without its line ending.
        line: String,
    },
    /// A member joined.
    Joined {
        /// Who.
        name: String,
    },
    /// A member left.
    Left {
        /// Who.
        name: String,
    },
    /// The instance is alive and holds these members.
    Beat {
        /// Every member of the instance.
        members: Vec<String>,
        /// Its subscription is up.
        #[serde(default)]
        hears: bool,
    },
    /// The instance has (re)subscribed, or is back on Redis: a beat that
    /// asks for everyone's.
    Hello {
        /// Every member of the instance.
        members: Vec<String>,
        /// Its subscription is up.
        #[serde(default)]
        hears: bool,
    },
    /// The instance stops: its members are gone.
    Bye,
}

/// Why a payload was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Not an envelope at all.
    Garbage,
    /// An envelope of another version.
    Version,
}

impl Envelope {
    /// The envelope as the bytes published.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a payload; anything that is not an envelope of this version
    /// is refused, never a panic.
    pub fn decode(payload: &[u8]) -> Result<Envelope, Unreadable> {
        let envelope: Envelope =
            serde_json::from_slice(payload).map_err(|_| Unreadable::Garbage)?;
        if envelope.v != VERSION {
            return Err(Unreadable::Version);
        }
        Ok(envelope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(body: Body) -> Envelope {
        Envelope {
            v: VERSION,
            id: "5f0c9a1e7d3b2a64".into(),
            seq: 42,
            at: 1_764_612_345_678_901,
            body,
        }
    }

    #[test]
    fn a_said_line_has_the_documented_form() {
        let said = envelope(Body::Said {
            name: "ann".into(),
            line: "hello all".into(),
        });
        assert_eq!(
            String::from_utf8(said.encode()).expect("utf-8"),
            r#"{"v":1,"id":"5f0c9a1e7d3b2a64","seq":42,"at":1764612345678901,"kind":"said","name":"ann","line":"hello all"}"#
        );
    }

    #[test]
    fn every_kind_reads_back() {
        for body in [
            Body::Said {
                name: "a\"b".into(),
                line: "é \\ \u{1}".into(),
            },
            Body::Joined { name: "ann".into() },
            Body::Left { name: "ann".into() },
            Body::Beat {
                members: vec!["ann".into(), "bob".into()],
                hears: true,
            },
            Body::Hello {
                members: vec![],
                hears: false,
            },
            Body::Bye,
        ] {
            let sent = envelope(body);
            assert_eq!(Envelope::decode(&sent.encode()), Ok(sent));
        }
    }

    #[test]
    fn a_beat_without_hears_does_not_hear() {
        let beat = br#"{"v":1,"id":"x","seq":1,"at":0,"kind":"beat","members":["ann"]}"#;
        assert_eq!(
            Envelope::decode(beat).map(|e| e.body),
            Ok(Body::Beat {
                members: vec!["ann".into()],
                hears: false
            })
        );
    }

    #[test]
    fn garbage_and_other_versions_are_refused() {
        for payload in [
            &b""[..],
            b"hello",
            b"{}",
            b"\xff\xfe",
            br#"{"v":1,"id":"x","seq":1,"at":0,"kind":"shout"}"#,
            br#"{"v":1,"id":"x","seq":-1,"at":0,"kind":"bye"}"#,
        ] {
            assert_eq!(Envelope::decode(payload), Err(Unreadable::Garbage));
        }
        let other = br#"{"v":2,"id":"x","seq":1,"at":0,"kind":"bye"}"#;
        assert_eq!(Envelope::decode(other), Err(Unreadable::Version));
    }
}
