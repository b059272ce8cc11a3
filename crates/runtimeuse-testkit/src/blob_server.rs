//! A loopback HTTP server standing in for a file host (GET) and object storage with
//! presigned URLs (PUT). Bodies are streamed both ways so gigabyte files stay cheap.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::sync::Notify;

/// Bodies up to this size are kept in memory for assertions (unless
/// [`BlobServer::set_keep_body_limit`] says otherwise); larger ones only by length and
/// checksum.
const KEEP_BODY_LIMIT: u64 = 64 * 1024 * 1024;

/// One received `PUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// Bytes received.
    pub len: u64,
    /// FNV-1a 64 of the body (see [`checksum`]).
    pub checksum: u64,
    /// The body, when at most 64 MiB.
    pub body: Option<Vec<u8>>,
}

enum Source {
    Bytes(Vec<u8>),
    File(PathBuf),
    Status(u16),
}

#[derive(Default)]
struct Shared {
    files: HashMap<String, Source>,
    put_failures: HashMap<String, Vec<u16>>,
    uploads: HashMap<String, Vec<Upload>>,
    put_attempts: HashMap<String, u32>,
    put_content_lengths: HashMap<String, Vec<Option<u64>>>,
    get_count: HashMap<String, u32>,
    keep_body_limit: Option<u64>,
}

/// The server. Dropping it does not stop it; it lives until the test's runtime ends.
#[derive(Clone)]
pub struct BlobServer {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    changed: Arc<Notify>,
}

/// FNV-1a over `bytes`, continuing from `state` (start with [`FNV_OFFSET`]).
pub fn checksum_update(mut state: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        state ^= u64::from(*b);
        state = state.wrapping_mul(0x0100_0000_01b3);
    }
    state
}

/// Initial state of [`checksum_update`].
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a 64 of a whole buffer.
pub fn checksum(bytes: &[u8]) -> u64 {
    checksum_update(FNV_OFFSET, bytes)
}

impl BlobServer {
    /// Starts a server on 127.0.0.1 with a free port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let server = Self {
            addr,
            shared: Arc::default(),
            changed: Arc::new(Notify::new()),
        };
        let app = Router::new().fallback(handle).with_state(server.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        server
    }

    /// `http://127.0.0.1:PORT/<path>` (path without a leading slash).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves `bytes` at `GET /<path>`.
    pub fn serve_bytes(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        self.lock()
            .files
            .insert(key(path), Source::Bytes(bytes.into()));
    }

    /// Serves a file from disk (streamed) at `GET /<path>`.
    pub fn serve_file(&self, path: &str, file: impl Into<PathBuf>) {
        self.lock()
            .files
            .insert(key(path), Source::File(file.into()));
    }

    /// Answers `GET /<path>` with this status and an empty body.
    pub fn serve_status(&self, path: &str, status: u16) {
        self.lock().files.insert(key(path), Source::Status(status));
    }

    /// The next `PUT`s to `/<path>` are answered with these statuses, in order, before
    /// uploads are accepted.
    pub fn fail_puts(&self, path: &str, statuses: &[u16]) {
        self.lock()
            .put_failures
            .insert(key(path), statuses.to_vec());
    }

    /// Successful uploads received at `/<path>`, oldest first.
    pub fn uploads(&self, path: &str) -> Vec<Upload> {
        self.lock()
            .uploads
            .get(&key(path))
            .cloned()
            .unwrap_or_default()
    }

    /// All paths that received at least one successful upload.
    pub fn uploaded_paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.lock().uploads.keys().cloned().collect();
        paths.sort();
        paths
    }

    /// Number of `PUT` attempts at `/<path>`, failed ones included.
    pub fn put_attempts(&self, path: &str) -> u32 {
        self.lock()
            .put_attempts
            .get(&key(path))
            .copied()
            .unwrap_or(0)
    }

    /// The `Content-Length` header of every `PUT` at `/<path>` (failed attempts
    /// included), oldest first; `None` where it was absent (a chunked body).
    pub fn put_content_lengths(&self, path: &str) -> Vec<Option<u64>> {
        self.lock()
            .put_content_lengths
            .get(&key(path))
            .cloned()
            .unwrap_or_default()
    }

    /// Keeps received bodies in memory only up to `limit` bytes (default 64 MiB); set it
    /// low when a test measures the memory of a large upload.
    pub fn set_keep_body_limit(&self, limit: u64) {
        self.lock().keep_body_limit = Some(limit);
    }

    /// Number of `GET`s of `/<path>`.
    pub fn get_count(&self, path: &str) -> u32 {
        self.lock().get_count.get(&key(path)).copied().unwrap_or(0)
    }

    /// Waits until `/<path>` has at least `count` successful uploads; panics after `timeout`.
    pub async fn wait_for_uploads(
        &self,
        path: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<Upload> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let uploads = self.uploads(path);
            if uploads.len() >= count {
                return uploads;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "timed out waiting for {count} upload(s) at /{path}; have {}: {:?}",
                    uploads.len(),
                    self.uploaded_paths()
                );
            }
        }
    }
}

fn key(path: &str) -> String {
    path.trim_start_matches('/').to_owned()
}

async fn handle(State(server): State<BlobServer>, request: Request) -> Response {
    let path = key(request.uri().path());
    match *request.method() {
        Method::GET => get(&server, &path).await,
        Method::PUT => put(&server, &path, request).await,
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn get(server: &BlobServer, path: &str) -> Response {
    let source = {
        let mut shared = server.lock();
        *shared.get_count.entry(path.to_owned()).or_default() += 1;
        match shared.files.get(path) {
            None => None,
            Some(Source::Bytes(b)) => Some(Source::Bytes(b.clone())),
            Some(Source::File(p)) => Some(Source::File(p.clone())),
            Some(Source::Status(s)) => Some(Source::Status(*s)),
        }
    };
    match source {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Source::Status(s)) => StatusCode::from_u16(s)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        Some(Source::Bytes(b)) => b.into_response(),
        Some(Source::File(p)) => match tokio::fs::File::open(&p).await {
            Ok(file) => {
                let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
                // Large reads: the default 4 KiB makes gigabyte bodies slow in debug builds.
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
                let mut headers = HeaderMap::new();
                headers.insert(header::CONTENT_LENGTH, len.into());
                (headers, Body::from_stream(stream)).into_response()
            }
            Err(_) => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

async fn put(server: &BlobServer, path: &str, request: Request) -> Response {
    let content_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let (failure, keep_limit) = {
        let mut shared = server.lock();
        *shared.put_attempts.entry(path.to_owned()).or_default() += 1;
        shared
            .put_content_lengths
            .entry(path.to_owned())
            .or_default()
            .push(content_length);
        let keep_limit = shared.keep_body_limit.unwrap_or(KEEP_BODY_LIMIT);
        let failure = shared.put_failures.get_mut(path).and_then(|list| {
            if list.is_empty() {
                None
            } else {
                Some(list.remove(0))
            }
        });
        (failure, keep_limit)
    };
    if let Some(status) = failure {
        server.changed.notify_waiters();
        return StatusCode::from_u16(status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response();
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut stream = request.into_body().into_data_stream();
    let mut len = 0u64;
    let mut sum = FNV_OFFSET;
    let mut body = Some(Vec::new());
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        len += chunk.len() as u64;
        sum = checksum_update(sum, &chunk);
        if len > keep_limit {
            body = None;
        } else if let Some(b) = body.as_mut() {
            b.extend_from_slice(&chunk);
        }
    }
    server
        .lock()
        .uploads
        .entry(path.to_owned())
        .or_default()
        .push(Upload {
            content_type,
            len,
            checksum: sum,
            body,
        });
    server.changed.notify_waiters();
    StatusCode::OK.into_response()
}
