//! Why a TLS handshake failed, as one snake_case word: the reason logs give
//! and `linepool_tls_handshake_failures_total{reason}` counts.

use rustls::{CertificateError, Error};

/// Why a handshake failed. docs/metrics.md lists the reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The client's first byte is not a TLS handshake record: a plaintext
    /// client on a TLS port.
    PlaintextOnTlsPort,
    /// The client's handshake messages do not parse or break the protocol.
    BadClientHello,
    /// No version, cipher suite or group in common (a TLS 1.2 client under
    /// `--tls-min-version 1.3`, say).
    PeerIncompatible,
    /// Client certificates are required and the client presented none.
    NoClientCertificate,
    /// The client's certificate has expired (or is not valid yet).
    CertificateExpired,
    /// The client's certificate is not signed by `--tls-client-ca`.
    UnknownCa,
    /// The client's certificate is unusable for another reason.
    BadCertificate,
    /// The client ended the handshake with an alert (it does not trust
    /// our certificate, say).
    AlertReceived,
    /// Not finished within `--tls-handshake-timeout`.
    HandshakeTimeout,
    /// The client closed the connection during the handshake.
    ClosedDuringHandshake,
    /// A socket error during the handshake.
    IoError,
    /// Anything else `rustls` refused.
    Other,
}

impl Failure {
    /// Every reason, in the order of the counters.
    pub const ALL: [Failure; 12] = [
        Failure::PlaintextOnTlsPort,
        Failure::BadClientHello,
        Failure::PeerIncompatible,
        Failure::NoClientCertificate,
        Failure::CertificateExpired,
        Failure::UnknownCa,
        Failure::BadCertificate,
        Failure::AlertReceived,
        Failure::HandshakeTimeout,
        Failure::ClosedDuringHandshake,
        Failure::IoError,
        Failure::Other,
    ];

    /// The reason as logs and metrics give it.
    pub fn name(self) -> &'static str {
        match self {
            Failure::PlaintextOnTlsPort => "plaintext_on_tls_port",
            Failure::BadClientHello => "bad_client_hello",
            Failure::PeerIncompatible => "peer_incompatible",
            Failure::NoClientCertificate => "no_client_certificate",
            Failure::CertificateExpired => "certificate_expired",
            Failure::UnknownCa => "unknown_ca",
            Failure::BadCertificate => "bad_certificate",
            Failure::AlertReceived => "alert_received",
            Failure::HandshakeTimeout => "handshake_timeout",
            Failure::ClosedDuringHandshake => "closed_during_handshake",
            Failure::IoError => "io_error",
            Failure::Other => "other",
        }
    }

    /// The counter's index in [`Failure::ALL`].
    pub fn index(self) -> usize {
        Failure::ALL
            .iter()
            .position(|&f| f == self)
            .unwrap_or(Failure::ALL.len() - 1)
    }

    /// The reason for an error `rustls` gave while processing the client's
    /// handshake.
    pub(crate) fn of(error: &Error) -> Failure {
        match error {
            Error::InvalidMessage(_)
            | Error::PeerMisbehaved(_)
            | Error::InappropriateMessage { .. }
            | Error::InappropriateHandshakeMessage { .. } => Failure::BadClientHello,
            Error::PeerIncompatible(_) => Failure::PeerIncompatible,
            Error::NoCertificatesPresented => Failure::NoClientCertificate,
            Error::InvalidCertificate(e) => match e {
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => Failure::CertificateExpired,
                CertificateError::UnknownIssuer => Failure::UnknownCa,
                _ => Failure::BadCertificate,
            },
            Error::AlertReceived(_) => Failure::AlertReceived,
            _ => Failure::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_snake_case_and_indexed_in_order() {
        for (i, failure) in Failure::ALL.iter().enumerate() {
            assert_eq!(failure.index(), i);
            let name = failure.name();
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert_eq!(Failure::ALL.iter().filter(|f| f.name() == name).count(), 1);
        }
    }

    #[test]
    fn certificate_errors_have_their_own_reasons() {
        let expired = Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(Failure::of(&expired), Failure::CertificateExpired);
        let unknown = Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(Failure::of(&unknown), Failure::UnknownCa);
        assert_eq!(
            Failure::of(&Error::NoCertificatesPresented),
            Failure::NoClientCertificate
        );
    }
}
