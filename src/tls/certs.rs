//! The certificates a TLS server presents and the CA it verifies clients
//! against: read from their files, checked (the key matches the first
//! certificate, every file parses), made into a `rustls::ServerConfig`,
//! and swapped whole on a reload. A new connection takes the configuration
//! current when it is accepted and keeps it for its life, so a reload
//! changes nothing for connections already open.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use log::{error, info};
use parking_lot::RwLock;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::settings::{ClientAuth, Settings, TlsVersion};

/// The server's TLS configuration, reloadable.
pub struct Certs {
    settings: Settings,
    current: RwLock<Arc<ServerConfig>>,
    /// The first certificate's notAfter, in seconds since the epoch.
    expiry: AtomicI64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
}

/// What loading the files gave.
struct Loaded {
    config: Arc<ServerConfig>,
    expiry: i64,
}

/// Reads and checks the files `settings` names, as the server will at the
/// start: for `linepool serve --check`, and to refuse bad files before
/// anything starts. The error is one line naming the flag and the file.
pub fn check(settings: &Settings) -> Result<(), String> {
    load(settings).map(|_| ())
}

impl Certs {
    /// Loads the files `settings` names.
    pub fn load(settings: &Settings) -> Result<Arc<Certs>, String> {
        let loaded = load(settings)?;
        Ok(Arc::new(Certs {
            settings: settings.clone(),
            current: RwLock::new(loaded.config),
            expiry: AtomicI64::new(loaded.expiry),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        }))
    }

    /// The configuration for a connection accepted now.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        self.current.read().clone()
    }

    /// Reads the same files again; if they are good, new connections get
    /// them from now on. If not, the old ones stay and the error is logged
    /// (one line) and returned.
    pub fn reload(&self) -> Result<(), String> {
        match load(&self.settings) {
            Ok(loaded) => {
                *self.current.write() = loaded.config;
                self.expiry.store(loaded.expiry, Ordering::Relaxed);
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                info!(
                    "tls certificates reloaded cert={} not_after={}",
                    self.settings.cert.display(),
                    loaded.expiry
                );
                Ok(())
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                error!("tls reload failed, keeping the old certificates error={e:?}");
                Err(e)
            }
        }
    }

    /// When the certificate presented now expires, in seconds since the
    /// epoch.
    pub fn expiry(&self) -> i64 {
        self.expiry.load(Ordering::Relaxed)
    }

    /// Reloads that succeeded and that failed.
    pub fn reloads(&self) -> (u64, u64) {
        (
            self.reloads_ok.load(Ordering::Relaxed),
            self.reloads_failed.load(Ordering::Relaxed),
        )
    }
}

fn load(settings: &Settings) -> Result<Loaded, String> {
    let chain = read_certs(&settings.cert, "--tls-cert")?;
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .map_err(|e| pem_error(e, "--tls-key", &settings.key, "private key"))?;
    let expiry = not_after(&chain[0]).ok_or_else(|| {
        format!(
            "--tls-cert {}: the first certificate does not parse",
            settings.cert.display()
        )
    })?;
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let provider = super::provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(path, "--tls-client-ca")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("--tls-client-ca {}: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match settings.client_auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("--tls-client-ca {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "--tls-key {} does not go with --tls-cert {}: {e}",
            settings.key.display(),
            settings.cert.display()
        )
    })?;
    // No 0-RTT: early data can be replayed, and a line protocol has no
    // way to say which messages are safe to replay. (The default, said.)
    config.max_early_data_size = 0;
    Ok(Loaded {
        config: Arc::new(config),
        expiry,
    })
}

/// Every certificate in a PEM file; at least one.
fn read_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(e, flag, path, "certificate"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e, flag, path, "certificate"))?;
    if certs.is_empty() {
        return Err(format!(
            "{flag} {}: no certificate in the file",
            path.display()
        ));
    }
    Ok(certs)
}

fn pem_error(e: pem::Error, flag: &str, path: &Path, what: &str) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read {flag} {}: {e}", path.display()),
        pem::Error::NoItemsFound => format!("{flag} {}: no {what} in the file", path.display()),
        other => format!("{flag} {}: not a PEM {what} ({other:?})", path.display()),
    }
}

/// A certificate's notAfter, in seconds since the epoch.
fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.timestamp())
}

/// The names a client certificate goes by, for `--admin-cert` and logs:
/// its DNS and URI subject alternative names or, lacking those, its
/// common name.
pub(crate) fn names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = match parsed.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(n) | GeneralName::URI(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty()
        && let Some(cn) = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
    {
        names.push(cn.to_string());
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    fn cert(sans: Vec<SanType>, cn: &str) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = sans;
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().clone()
    }

    #[test]
    fn names_are_the_dns_and_uri_alternative_names_else_the_common_name() {
        let uri = SanType::URI("spiffe://ops/admin".try_into().expect("uri"));
        let dns = SanType::DnsName("admin.example".try_into().expect("dns"));
        let ip = SanType::IpAddress("192.0.2.1".parse().expect("ip"));
        assert_eq!(
            names(&cert(vec![dns, uri, ip.clone()], "ignored")),
            ["admin.example", "spiffe://ops/admin"]
        );
        assert_eq!(names(&cert(vec![], "ops tool")), ["ops tool"]);
        // An IP address alone is not a name: the common name stands.
        assert_eq!(names(&cert(vec![ip], "by cn")), ["by cn"]);
    }

    #[test]
    fn a_missing_file_is_one_line_naming_the_flag_and_the_file() {
        let settings = Settings::new("/nonexistent/cert.pem", "/nonexistent/key.pem");
        let error = check(&settings).expect_err("missing files");
        assert!(
            error.starts_with("cannot read --tls-cert /nonexistent/cert.pem: "),
            "{error}"
        );
        assert!(!error.contains('\n'));
    }
}
