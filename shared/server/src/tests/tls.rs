//! The listener over TLS and mutual TLS, with the test certificates of
//! `shared/testkit/fixtures/tls` (scripts/gen-test-certs.sh).

use retention_config::{PeerTlsSettings, ServerTlsSettings};

use super::*;

fn fixture(name: &str) -> String {
    format!(
        "{}/../testkit/fixtures/tls/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Trusting the suite's CA, presenting `identity`'s certificate if given.
fn client(ca: &str, identity: Option<&str>) -> PeerTlsSettings {
    PeerTlsSettings {
        ca_path: fixture(ca),
        cert_path: identity
            .map(|i| fixture(&format!("{i}.pem")))
            .unwrap_or_default(),
        key_path: identity
            .map(|i| fixture(&format!("{i}.key")))
            .unwrap_or_default(),
        server_name: String::new(),
    }
}

fn tls_options(client_ca: bool) -> ServeOptions {
    let mut opts = options(
        Duration::from_secs(5),
        Duration::from_secs(1),
        Duration::ZERO,
    );
    opts.tls = ServerTlsSettings {
        cert_path: fixture("server.pem"),
        key_path: fixture("server.key"),
        client_ca_path: if client_ca {
            fixture("ca.pem")
        } else {
            String::new()
        },
    };
    opts
}

/// Whether an authorised call through `address` with `tls` gets an answer; a
/// refused handshake shows on connect or on the first call, depending on when
/// the server reads the client's certificate.
async fn answered(address: &str, tls: &PeerTlsSettings) -> Result<(), String> {
    let endpoint = peer_endpoint(address, tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    let ch = endpoint.connect().await.map_err(|e| format!("{e:?}"))?;
    call_slow(ch, &token(&["t.call"]), 0)
        .await
        .map(|_| ())
        .map_err(|s| format!("{s:?}"))
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_configured_ca() {
    let mut srv = Running::start(tls_options(true)).await;
    srv.health.mark_ready(&[]).await;
    let https = format!("https://localhost:{}", srv.addr.port());

    answered(&https, &client("ca.pem", Some("client")))
        .await
        .expect("a client certificate from the CA is let in");
    // By IP address too: the certificate names 127.0.0.1.
    answered(
        &format!("https://127.0.0.1:{}", srv.addr.port()),
        &client("ca.pem", Some("client")),
    )
    .await
    .expect("the certificate's IP address");

    let refused = [
        (
            "no client certificate",
            https.clone(),
            client("ca.pem", None),
        ),
        (
            "a certificate from another CA",
            https.clone(),
            client("ca.pem", Some("rogue-client")),
        ),
        (
            "a client not trusting the server's CA",
            https.clone(),
            client("rogue-ca.pem", Some("client")),
        ),
        (
            "plaintext",
            format!("http://localhost:{}", srv.addr.port()),
            client("ca.pem", Some("client")),
        ),
    ];
    for (case, address, tls) in refused {
        let outcome = tokio::time::timeout(Duration::from_secs(10), answered(&address, &tls))
            .await
            .unwrap_or_else(|_| panic!("{case}: neither answered nor refused within 10 s"));
        assert!(outcome.is_err(), "{case}: was let in");
        eprintln!("{case}: refused: {}", outcome.unwrap_err());
    }

    // The refusals did not hurt the listener.
    answered(&https, &client("ca.pem", Some("client")))
        .await
        .expect("still serving good clients");
    srv.shutdown();
    srv.server.await.unwrap().unwrap();
}

#[tokio::test]
async fn server_only_tls_needs_no_client_certificate() {
    let mut srv = Running::start(tls_options(false)).await;
    srv.health.mark_ready(&[]).await;
    let https = format!("https://localhost:{}", srv.addr.port());
    answered(&https, &client("ca.pem", None))
        .await
        .expect("TLS without a client certificate");
    let plaintext = tokio::time::timeout(
        Duration::from_secs(10),
        answered(
            &format!("http://localhost:{}", srv.addr.port()),
            &client("ca.pem", None),
        ),
    )
    .await
    .expect("refused within 10 s");
    assert!(
        plaintext.is_err(),
        "a plaintext call reached a TLS listener"
    );
    srv.shutdown();
    srv.server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_certificate_file_stops_startup_naming_the_setting() {
    let mut opts = tls_options(true);
    opts.tls.key_path = fixture("no-such.key");
    let srv = Running::start(opts).await;
    let err = srv
        .server
        .await
        .unwrap()
        .expect_err("serving without its key");
    assert!(
        err.to_string().contains("server.tls.key_path") && err.to_string().contains("no-such.key"),
        "{err}"
    );
}
