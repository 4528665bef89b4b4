//! TLS for the gRPC listener and for calls to peer services, from the PEM files
//! the settings name. The files are read at startup, so a wrong path stops the
//! service with the setting's name rather than failing every handshake later.

use std::time::Duration;

use retention_config::{PeerTlsSettings, ServerTlsSettings};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// A handshake that has not finished by then is dropped, so a client that opens
/// connections and stalls cannot hold them.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{setting} {path:?}: {source}")]
    File {
        setting: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("peer endpoint {endpoint:?}: {source}")]
    Endpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
}

fn read(setting: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::File {
        setting,
        path: path.to_string(),
        source,
    })
}

/// The listener's TLS, None when no certificate is configured (plaintext). With
/// `client_ca_path` a client must present a certificate chaining to it.
pub fn server_tls(s: &ServerTlsSettings) -> Result<Option<ServerTlsConfig>, TlsError> {
    if !s.enabled() {
        return Ok(None);
    }
    let identity = Identity::from_pem(
        read("server.tls.cert_path", &s.cert_path)?,
        read("server.tls.key_path", &s.key_path)?,
    );
    let mut config = ServerTlsConfig::new()
        .identity(identity)
        .timeout(HANDSHAKE_TIMEOUT);
    if !s.client_ca_path.is_empty() {
        config = config.client_ca_root(Certificate::from_pem(read(
            "server.tls.client_ca_path",
            &s.client_ca_path,
        )?));
    }
    Ok(Some(config))
}

/// TLS for calls to a peer: its CA, this service's certificate when one is
/// configured (for peers requiring mutual TLS), and the name to verify.
pub fn peer_tls(s: &PeerTlsSettings) -> Result<ClientTlsConfig, TlsError> {
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("peer_tls.ca_path", &s.ca_path)?))
        .timeout(HANDSHAKE_TIMEOUT);
    if !s.cert_path.is_empty() {
        config = config.identity(Identity::from_pem(
            read("peer_tls.cert_path", &s.cert_path)?,
            read("peer_tls.key_path", &s.key_path)?,
        ));
    }
    if !s.server_name.is_empty() {
        config = config.domain_name(s.server_name.clone());
    }
    Ok(config)
}

/// An endpoint for a peer's address: `https://` calls go over TLS per `tls`,
/// `http://` ones stay plaintext (embedded mode, or a mesh doing TLS).
pub fn peer_endpoint(address: &str, tls: &PeerTlsSettings) -> Result<Endpoint, TlsError> {
    let failed = |source| TlsError::Endpoint {
        endpoint: address.to_string(),
        source,
    };
    let endpoint = Endpoint::from_shared(address.to_string()).map_err(failed)?;
    if address.starts_with("https://") {
        endpoint.tls_config(peer_tls(tls)?).map_err(failed)
    } else {
        Ok(endpoint)
    }
}
