//! The wrong transport: a plaintext client on a TLS port, a TLS client on
//! a plaintext port, and what the server says of each.

use crate::pki::{Pki, TlsClient, tls_server};
use crate::support::{BinServer, TestServer, run_bin_within, scrape_until};

/// `linepool client` on a TLS port, whose server closes without a byte,
/// says it is probably a TLS port and exits 1.
#[test]
fn a_plaintext_client_on_a_tls_port_is_told_to_try_tls() {
    let pki = Pki::new("plain-client");
    let server = tls_server(&pki, |_| {});
    let port = server.addr.port().to_string();
    for protocol in ["ack", "framed"] {
        let (status, text) = run_bin_within(
            &["client", "--port", &port, "--protocol", protocol],
            &[],
            b"a\n",
        );
        assert_eq!(status.code(), Some(1), "{protocol}: {text}");
        assert_eq!(
            text, "linepool: the server closed without a reply: is it a TLS port? try --tls\n",
            "{protocol}"
        );
    }
}

/// A plaintext client that says nothing to a plaintext server that closes
/// is no TLS mistake: it exits 0 without a word.
#[test]
fn a_silent_close_after_no_input_is_no_error() {
    let server = TestServer::default();
    let port = server.addr.port().to_string();
    let (status, text) = run_bin_within(&["client", "--port", &port], &[], b"");
    assert_eq!(status.code(), Some(0), "{text}");
    assert_eq!(text, "");
}

/// `linepool client --tls` on a plaintext port says the handshake was not
/// answered and exits 1.
#[test]
fn a_tls_client_on_a_plaintext_port_is_told_so() {
    let pki = Pki::new("tls-client");
    let server = TestServer::default();
    let port = server.addr.port().to_string();
    let ca = pki.ca_pem.display().to_string();
    let (status, text) = run_bin_within(
        &["client", "--port", &port, "--tls", "--tls-ca", &ca],
        &[],
        b"a\n",
    );
    assert_eq!(status.code(), Some(1), "{text}");
    assert_eq!(
        text,
        "linepool: the server did not answer the TLS handshake: a plaintext port, or a full one?\n"
    );
}

/// A ClientHello on a plaintext port closes that client without a word,
/// with a warning that says so and its own client-error kind; the port
/// goes on serving lines.
#[test]
fn a_tls_handshake_on_a_plaintext_port_is_named_and_counted() {
    let pki = Pki::new("plain-port");
    let mut server = BinServer::start(&["--metrics", "127.0.0.1:0"]);
    let metrics = server.metrics();
    let tried = TlsClient::connect(server.addr, pki.client_config(None));
    assert!(tried.is_err(), "a handshake succeeded on a plaintext port");
    let warning = server.wait_log("tls handshake on a plaintext port");
    assert!(
        warning.contains("[WARN] tls handshake on a plaintext port, closing peer=127.0.0.1:"),
        "{warning}"
    );
    server.wait_log("reason=tls_on_plaintext");
    let key = r#"linepool_client_errors_total{kind="tls_on_plaintext"}"#;
    let samples = scrape_until(metrics, |s| s.get(key) == Some(&1.0));
    assert_eq!(samples.get(key), Some(&1.0), "{key}");
    assert_eq!(
        samples.get(r#"linepool_client_errors_total{kind="invalid_utf8"}"#),
        Some(&0.0)
    );
    let mut client = server.connect();
    client.send_line("still here");
    client.expect("ACK: still here\n");
}

/// The startup line says `tls=on` and the client-certificate mode on a
/// TLS server, and nothing of TLS on a plaintext one.
#[test]
fn the_listening_line_says_tls_and_the_client_cert_mode() {
    let pki = Pki::new("listening");
    let (cert, key, ca) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
        pki.ca_pem.display().to_string(),
    );
    let tls = ["--tls-cert", &cert, "--tls-key", &key];
    for (extra, says) in [
        (&[][..], " tls=on client_cert=none"),
        (&["--tls-client-ca", &ca], " tls=on client_cert=required"),
        (
            &["--tls-client-ca", &ca, "--tls-client-auth", "optional"],
            " tls=on client_cert=optional",
        ),
    ] {
        let mut args = tls.to_vec();
        args.extend_from_slice(extra);
        let mut server = BinServer::start(&args);
        let line = server.wait_log("listening on ");
        assert!(line.ends_with(says), "{extra:?}: {line}");
    }
    let mut plain = BinServer::start(&[]);
    let line = plain.wait_log("listening on ");
    assert!(line.ends_with("overload=block"), "{line}");
}
