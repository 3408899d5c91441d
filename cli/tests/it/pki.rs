//! Certificates made at test time (no private key is committed): a CA, a
//! server certificate for `localhost` and 127.0.0.1 signed by it, client
//! certificates by name, written as PEM files to a fresh directory; a
//! rustls client over a real socket with a deadline on every read; and a
//! TLS server to test against.

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType,
    date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::support::Setup;

use crate::support::{DEADLINE, TestServer, scrape_until};

/// A CA and the files of a server certificate it signed, in a directory
/// removed on drop.
pub struct Pki {
    pub dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub ca_pem: PathBuf,
    /// The server's chain (its certificate, then the CA's), PEM.
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A fresh CA named `name` and a server certificate it signed.
    pub fn new(name: &str) -> Pki {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "linepool-tls-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, ca.as_ref().pem()).expect("write");
        let mut pki = Pki {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            dir,
            ca,
            ca_pem,
        };
        pki.server_cert("server");
        pki
    }

    /// Writes a new server certificate and key to the same paths (a
    /// renewal); `cn` tells it apart.
    pub fn server_cert(&mut self, cn: &str) {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        let chain = format!("{}{}", cert.pem(), self.ca.as_ref().pem());
        std::fs::write(&self.cert, chain).expect("write");
        std::fs::write(&self.key, key.serialize_pem()).expect("write");
    }

    /// A client certificate named `name` (a DNS subject alternative name),
    /// written as `<file>.pem` and `<file>.key`; `expired` makes one whose
    /// validity ended in 2001.
    pub fn client_cert(&self, file: &str, name: &str, expired: bool) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec![name.to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        if expired {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.ca).expect("sign");
        let (cert_path, key_path) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write");
        std::fs::write(&key_path, key.serialize_pem()).expect("write");
        (cert_path, key_path)
    }

    /// The flags that serve TLS with these files and ask clients for a
    /// certificate of this CA.
    pub fn server_args(&self) -> Vec<String> {
        let path = |p: &PathBuf| p.display().to_string();
        vec![
            "--tls-cert".to_string(),
            path(&self.cert),
            "--tls-key".to_string(),
            path(&self.key),
            "--tls-client-ca".to_string(),
            path(&self.ca_pem),
        ]
    }

    /// The server's TLS settings for the library.
    pub fn settings(&self) -> linepool::tls::Settings {
        linepool::tls::Settings::new(&self.cert, &self.key)
    }

    /// A client configuration trusting this CA, with a client certificate
    /// if given.
    pub fn client_config(&self, identity: Option<&(PathBuf, PathBuf)>) -> ClientConfig {
        client_config(
            &self.ca_pem,
            identity,
            &[&rustls::version::TLS13, &rustls::version::TLS12],
        )
    }

    /// Connects and shakes hands as a client of this CA.
    pub fn connect(&self, addr: SocketAddr) -> TlsClient {
        TlsClient::connect(addr, self.client_config(None)).expect("handshake")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client configuration trusting `ca`, speaking `versions`.
pub fn client_config(
    ca: &Path,
    identity: Option<&(PathBuf, PathBuf)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("add");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .expect("cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("certs");
            let key = PrivateKeyDer::from_pem_file(key).expect("key");
            builder.with_client_auth_cert(chain, key).expect("identity")
        }
    }
}

/// A TLS line client. Every read fails after [`DEADLINE`].
pub struct TlsClient {
    reader: BufReader<StreamOwned<ClientConnection, TcpStream>>,
}

impl TlsClient {
    /// Connects and completes the handshake, or says why it failed.
    pub fn connect(addr: SocketAddr, config: ClientConfig) -> io::Result<TlsClient> {
        let socket = TcpStream::connect(addr)?;
        TlsClient::over(socket, config)
    }

    /// Shakes hands over a socket connected by hand (after a PROXY
    /// header, say).
    pub fn over(socket: TcpStream, config: ClientConfig) -> io::Result<TlsClient> {
        socket.set_read_timeout(Some(DEADLINE))?;
        let name = ServerName::try_from("localhost").expect("name");
        let conn = ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(conn, socket);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsClient {
            reader: BufReader::new(stream),
        })
    }

    fn stream(&mut self) -> &mut StreamOwned<ClientConnection, TcpStream> {
        self.reader.get_mut()
    }

    /// The common name of the certificate the server presented.
    pub fn server_cn(&mut self) -> String {
        let der = self.stream().conn.peer_certificates().expect("certs")[0].clone();
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("parse");
        let cn = cert.subject().iter_common_name().next().expect("cn");
        cn.as_str().expect("text").to_string()
    }

    /// The TLS version agreed.
    pub fn version(&mut self) -> Option<rustls::ProtocolVersion> {
        self.stream().conn.protocol_version()
    }

    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        let stream = self.stream();
        stream.write_all(bytes.as_ref()).expect("send");
        stream.flush().expect("flush");
    }

    pub fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\n"));
    }

    /// Sends `bytes`, or says why it could not.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.stream();
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// The next `n` bytes, or why they did not come.
    pub fn try_read(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut got = vec![0u8; n];
        self.reader.read_exact(&mut got).map(|()| got)
    }

    /// Asserts that the next bytes are exactly `expected`.
    pub fn expect(&mut self, expected: &str) {
        let mut got = vec![0u8; expected.len()];
        if let Err(e) = self.reader.read_exact(&mut got) {
            panic!("expected {expected:?}: {e}");
        }
        assert_eq!(String::from_utf8_lossy(&got), expected);
    }

    /// The next `n` bytes.
    pub fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        self.reader.read_exact(&mut got).expect("bytes");
        got
    }

    /// Reads until the server's end: `Ok` with what came if it sent
    /// `close_notify`, `Err` if the stream ended without it.
    pub fn rest(&mut self) -> io::Result<Vec<u8>> {
        let mut all = Vec::new();
        self.reader.read_to_end(&mut all).map(|_| all)
    }

    /// Asserts that the server closes in order (with `close_notify`) and
    /// says nothing more.
    pub fn expect_closed(&mut self) {
        let rest = self.rest().expect("an orderly close with close_notify");
        assert!(rest.is_empty(), "got {:?}", String::from_utf8_lossy(&rest));
    }

    /// Sends `bytes` and close_notify in one flight, leaving the socket
    /// open (no FIN).
    pub fn send_and_close_notify(&mut self, bytes: &[u8]) {
        let stream = self.stream();
        stream.conn.writer().write_all(bytes).expect("buffer");
        stream.conn.send_close_notify();
        while stream.conn.wants_write() {
            stream.conn.write_tls(&mut stream.sock).expect("send");
        }
    }

    /// The socket underneath.
    pub fn socket(&mut self) -> &TcpStream {
        &self.stream().sock
    }
}

/// A server speaking TLS with `pki`'s certificate, with metrics, and the
/// defaults changed by `configure`.
pub fn tls_server(pki: &Pki, configure: impl FnOnce(&mut Setup)) -> TestServer {
    let settings = pki.settings();
    TestServer::with_metrics(|c| {
        c.tls = Some(settings);
        configure(c);
    })
}

/// Waits until the server has counted `n` handshake failures for `reason`.
pub fn failures_counted(server: &TestServer, reason: &str, n: f64) {
    let key = format!("linepool_tls_handshake_failures_total{{reason=\"{reason}\"}}");
    let samples = scrape_until(server.metrics(), |s| s.get(&key) == Some(&n));
    assert_eq!(samples.get(&key), Some(&n), "{key}");
}
