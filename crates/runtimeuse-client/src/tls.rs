//! Dialling, with TLS for `wss://` URLs when the `tls` feature is on.

use tokio_tungstenite::tungstenite::{
    self,
    handshake::client::{Request, Response},
};

use crate::connection::WsStream;

/// An open WebSocket and the runtime's `101` response.
pub(crate) type Dialled = (WsStream, Response);

/// Opens the WebSocket. rustls uses the ring provider and the webpki roots, chosen
/// explicitly so that it works whatever other rustls providers the binary links.
#[cfg(feature = "tls")]
pub(crate) async fn dial(request: Request) -> Result<Dialled, tungstenite::Error> {
    use std::sync::{Arc, OnceLock};

    static CONFIG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        match rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
        {
            Ok(builder) => Some(Arc::new(
                builder.with_root_certificates(roots).with_no_client_auth(),
            )),
            Err(e) => {
                tracing::warn!("TLS is unavailable: {e}");
                None
            }
        }
    });
    let connector = config.clone().map(tokio_tungstenite::Connector::Rustls);
    tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector).await
}

/// Opens the WebSocket; without the `tls` feature only `ws://` works.
#[cfg(not(feature = "tls"))]
pub(crate) async fn dial(request: Request) -> Result<Dialled, tungstenite::Error> {
    tokio_tungstenite::connect_async_with_config(request, None, true).await
}
