//! The HTTP client for downloads and uploads, built the first time it is used.
//!
//! Building a `reqwest::Client` sets up TLS (the root store, the rustls configuration)
//! and the connection pool. Most sessions never download or upload anything, so the
//! runtime does not pay for it (in resident memory and start-up time) until a request
//! needs it. Clones share one client, and so its connection pool.

use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Bound on establishing a connection (the transfer itself is bounded by the caller).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A cloneable handle to one lazily built [`reqwest::Client`]; dereferences to it.
#[derive(Clone)]
pub struct HttpClient {
    inner: Arc<Inner>,
}

struct Inner {
    client: OnceLock<reqwest::Client>,
    build: fn() -> reqwest::Client,
}

impl HttpClient {
    /// A handle whose client `build` makes on first use.
    pub fn lazy(build: fn() -> reqwest::Client) -> Self {
        Self {
            inner: Arc::new(Inner {
                client: OnceLock::new(),
                build,
            }),
        }
    }

    /// Whether the client has been built yet.
    pub fn is_built(&self) -> bool {
        self.inner.client.get().is_some()
    }

    /// The client, built now if this is the first use.
    pub fn get(&self) -> &reqwest::Client {
        self.inner.client.get_or_init(self.inner.build)
    }
}

impl Default for HttpClient {
    /// The runtime's client (see [`runtime_client`]), built on first use.
    fn default() -> Self {
        Self::lazy(runtime_client)
    }
}

impl From<reqwest::Client> for HttpClient {
    /// A handle to an already built client.
    fn from(client: reqwest::Client) -> Self {
        let cell = OnceLock::new();
        let _ = cell.set(client);
        Self {
            inner: Arc::new(Inner {
                client: cell,
                build: reqwest::Client::new,
            }),
        }
    }
}

impl Deref for HttpClient {
    type Target = reqwest::Client;

    fn deref(&self) -> &reqwest::Client {
        self.get()
    }
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("built", &self.is_built())
            .finish()
    }
}

/// The client the runtime downloads and uploads with: a connect timeout and the
/// runtime's user agent.
pub fn runtime_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("runtimeuse/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_on_first_use_and_shared_by_clones() {
        let lazy = HttpClient::default();
        let clone = lazy.clone();
        assert!(!lazy.is_built() && !clone.is_built());
        let first: *const reqwest::Client = clone.get();
        assert!(lazy.is_built(), "clones share the cell");
        assert!(std::ptr::eq(first, &*lazy));
    }

    #[test]
    fn a_given_client_is_ready() {
        assert!(HttpClient::from(reqwest::Client::new()).is_built());
    }
}
