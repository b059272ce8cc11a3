//! `runtimeuse_client._native`: the Rust core of the Python package `runtimeuse_client`.
//!
//! The WebSocket, message parsing and request state machine are the Rust client's
//! (`runtimeuse-client`), run on a Tokio runtime owned by this module. Each call is
//! exposed to Python as an [`EventStream`](stream::NativeEventStream) of `(kind, payload)`
//! items that the Python layer awaits; it runs the user's callbacks on the caller's event
//! loop and raises the package's exceptions. Nothing here blocks the event loop: every
//! wait happens on the Tokio runtime and resolves an `asyncio` future through the loop's
//! [`bridge`], whose design keeps every Tokio thread away from the interpreter.

mod bridge;
mod client;
mod convert;
mod logs;
mod options;
mod stream;
mod transport;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logs::install();
    m.add_class::<client::NativeClient>()?;
    m.add_class::<client::NativeSession>()?;
    m.add_class::<stream::NativeEventStream>()?;
    m.add_class::<stream::ArtifactRequest>()?;
    m.add_class::<bridge::LoopBridge>()?;
    m.add_class::<options::LateAnswer>()?;
    m.add_class::<transport::TransportEnd>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
