//! A fake of the OpenAI Responses API: a real HTTP server on 127.0.0.1 answering
//! `POST /v1/responses` from a script (one entry per request, in order), in the real wire
//! format: SSE `event: <type>` / `data: <json>` frames, or an error status with the
//! `{"error": {...}}` body. It records every request for assertions.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// 200 with these events, then the body ends.
    Stream(Vec<Value>),
    /// 200 with these events, then the body stays open (nothing more is sent).
    StreamThenHang(Vec<Value>),
    /// An error status with headers and a JSON body.
    Error {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Value,
    },
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The JSON body.
    pub body: Value,
    /// The `Authorization` header.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Scripted>>,
    requests: Mutex<Vec<Recorded>>,
    /// Set when the body of a hanging stream is dropped (the client went away).
    hang_dropped: Arc<AtomicBool>,
}

/// The running fake; stops when dropped.
pub struct FakeOpenAi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeOpenAi {
    /// Starts the fake on a free port with an empty script.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/responses", post(respond))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// What `OPENAI_BASE_URL` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Adds an answer to the script.
    pub fn push(&self, scripted: Scripted) {
        lock(&self.shared.script).push_back(scripted);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.requests).clone()
    }

    /// Waits until `n` requests have arrived.
    pub async fn wait_for_requests(&self, n: usize) {
        for _ in 0..500 {
            if lock(&self.shared.requests).len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the fake never received {n} requests");
    }

    /// Whether a hanging stream's body was dropped because the client left.
    pub fn hanging_stream_dropped(&self) -> bool {
        self.shared.hang_dropped.load(Ordering::SeqCst)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn respond(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    lock(&shared.requests).push(Recorded {
        body,
        authorization,
    });
    let next = lock(&shared.script).pop_front();
    match next {
        Some(Scripted::Stream(events)) => sse(Body::from_stream(frames(&events))),
        Some(Scripted::StreamThenHang(events)) => {
            let guard = DropFlag(shared.hang_dropped.clone());
            let body = frames(&events)
                .chain(futures_util::stream::pending())
                .map(move |frame| {
                    let _keep = &guard;
                    frame
                });
            sse(Body::from_stream(body))
        }
        Some(Scripted::Error {
            status,
            headers,
            body,
        }) => {
            let mut response = (
                StatusCode::from_u16(status).unwrap(),
                [("content-type", "application/json")],
                body.to_string(),
            )
                .into_response();
            for (name, value) in headers {
                response.headers_mut().insert(name, value.parse().unwrap());
            }
            response
        }
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": {"message": "the fake has no scripted answer left", "type": "fake"}})
                .to_string(),
        )
            .into_response(),
    }
}

fn sse(body: Body) -> Response {
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The SSE frames of `events`, each `event: <type>\ndata: <json>\n\n`.
fn frames(events: &[Value]) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + use<> {
    let frames: Vec<Result<Bytes, Infallible>> = events
        .iter()
        .map(|event| {
            let kind = event["type"].as_str().unwrap_or("message");
            Ok(Bytes::from(format!("event: {kind}\ndata: {event}\n\n")))
        })
        .collect();
    futures_util::stream::iter(frames)
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
