//! TLS for client mode, and the only place it is configured: a rustls `ClientConfig` (ring
//! provider) from `--verify-ssl`, plugged into ureq as a connector, plus a resolver that knows
//! `localhost` without /etc/hosts.
//! - verify (default): Mozilla's roots bundled by webpki-roots, so an empty container works;
//! - `--verify-ssl PATH`: only the CAs of that PEM bundle (unreadable or empty = start-up error);
//! - `--no-verify-ssl`: any certificate is accepted, but the handshake signatures are still
//!   checked, so the peer must hold the key of the certificate it shows.
//!
//! This module knows nothing of MCP, headers or credentials.

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, StreamOwned};
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
    TransportAdapter,
};

use crate::config::TlsVerify;
use crate::error::Error;

/// The rustls configuration for `verify`.
pub fn client_config(verify: &TlsVerify) -> Result<Arc<ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("TLS set-up", e.to_string()))?;
    let config = match verify {
        TlsVerify::Verify => builder.with_root_certificates(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        TlsVerify::CaBundle(path) => builder.with_root_certificates(roots_from_pem(path)?),
        TlsVerify::NoVerify => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            })),
    };
    Ok(Arc::new(config.with_no_client_auth()))
}

fn tls_error(path: &str, reason: String) -> Error {
    Error::Config {
        path: path.to_string(),
        reason,
    }
}

fn roots_from_pem(path: &Path) -> Result<RootCertStore, Error> {
    let shown = path.display().to_string();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(&shown, format!("cannot read CA bundle: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(&shown, format!("invalid PEM in CA bundle: {e}")))?;
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(tls_error(
            &shown,
            "no usable CA certificate in the bundle".into(),
        ));
    }
    Ok(store)
}

/// `--no-verify-ssl`: trusts any certificate chain, still verifies handshake signatures.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Wraps ureq's TCP transport in TLS for `https://` URLs, with our `ClientConfig`.
pub struct TlsConnector {
    config: Arc<ClientConfig>,
}

impl TlsConnector {
    pub fn new(config: Arc<ClientConfig>) -> TlsConnector {
        TlsConnector { config }
    }
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsConnector")
    }
}

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let host = details
            .uri
            .host()
            .ok_or_else(|| ureq::Error::BadUri("no host".into()))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| ureq::Error::Tls("invalid TLS server name"))?;
        let mut conn = ClientConnection::new(self.config.clone(), name)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        sock.set_timeout(details.timeout);
        conn.complete_io(&mut sock)?;
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

/// An HTTP/1.1 transport over rustls (the shape of ureq's own `RustlsTransport`).
pub struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}

/// Resolves `localhost` to the loopback addresses itself (a bare container has no /etc/hosts);
/// every other name goes to ureq's default resolver.
#[derive(Debug, Default)]
pub struct LocalhostResolver {
    fallback: DefaultResolver,
}

impl Resolver for LocalhostResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        match localhost_addrs(uri) {
            Some(addrs) => {
                let mut out = self.empty();
                for addr in addrs {
                    out.push(addr);
                }
                Ok(out)
            }
            None => self.fallback.resolve(uri, config, timeout),
        }
    }
}

fn localhost_addrs(uri: &Uri) -> Option<[SocketAddr; 2]> {
    let host = uri.host()?;
    if !host.eq_ignore_ascii_case("localhost") {
        return None;
    }
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    Some([
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_is_loopback_without_dns() {
        let uri: Uri = "http://LocalHost:8080/mcp".parse().unwrap();
        let addrs = localhost_addrs(&uri).unwrap();
        assert_eq!(addrs[0], "127.0.0.1:8080".parse().unwrap());
        assert_eq!(addrs[1], "[::1]:8080".parse().unwrap());
        let uri: Uri = "https://localhost/".parse().unwrap();
        assert_eq!(localhost_addrs(&uri).unwrap()[0].port(), 443);
        let uri: Uri = "http://example.com/".parse().unwrap();
        assert!(localhost_addrs(&uri).is_none());
    }

    #[test]
    fn a_missing_ca_bundle_is_a_config_error() {
        let err = client_config(&TlsVerify::CaBundle("/nonexistent/ca.pem".into()))
            .expect_err("a missing file is an error");
        assert!(err.to_string().contains("cannot read CA bundle"), "{err}");
        assert!(client_config(&TlsVerify::Verify).is_ok());
        assert!(client_config(&TlsVerify::NoVerify).is_ok());
    }
}
