//! What the operator chose for TLS: plain data, checked when the
//! certificates are loaded.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Default time a client has to finish its TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS settings of a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The certificate chain, PEM, the server's own certificate first.
    pub cert: PathBuf,
    /// The private key of the first certificate, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates, PEM, that client certificates are verified against.
    pub client_ca: Option<PathBuf>,
    /// Whether a client must present a certificate (only with `client_ca`).
    pub client_auth: ClientAuth,
    /// The lowest TLS version accepted.
    pub min_version: TlsVersion,
    /// How long a client has to finish its handshake.
    pub handshake_timeout: Duration,
}

impl Settings {
    /// Settings for this certificate and key, with the defaults for the rest.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Settings {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
            client_auth: ClientAuth::Required,
            min_version: TlsVersion::V1_2,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Whether clients present certificates, named as the flags name it:
    /// `required` or `optional` (`--tls-client-auth`), or `none` without
    /// `--tls-client-ca`.
    pub fn client_cert_mode(&self) -> &'static str {
        match (&self.client_ca, self.client_auth) {
            (None, _) => "none",
            (Some(_), ClientAuth::Required) => "required",
            (Some(_), ClientAuth::Optional) => "optional",
        }
    }
}

/// What the startup `listening` line adds for TLS: ` tls=on
/// client_cert=MODE` when the server speaks it, nothing otherwise.
pub struct ListeningFields<'a>(pub Option<&'a Settings>);

impl fmt::Display for ListeningFields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(settings) => write!(f, " tls=on client_cert={}", settings.client_cert_mode()),
            None => Ok(()),
        }
    }
}

/// Whether clients must present a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client without a certificate the CA signed fails its handshake.
    Required,
    /// A client may present none; one it presents must verify.
    Optional,
}

/// The lowest TLS version a server accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    V1_2,
    /// TLS 1.3 only.
    V1_3,
}

impl FromStr for TlsVersion {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            other => Err(format!(
                "unknown TLS version '{other}' (expected 1.2 or 1.3)"
            )),
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        })
    }
}
