//! How results of the Tokio side reach an `asyncio` event loop without a Tokio thread
//! ever touching the interpreter.
//!
//! A Tokio worker that attaches to Python (to resolve a future, call a callback or drop an
//! object) can do so while the interpreter finalizes, and CPython then aborts the process
//! (`PyGILState_Release … finalizing`) or crashes. So no thread of ours ever attaches:
//! a finished Rust future leaves its result, as Rust data, in the queue of the
//! [`LoopBridge`] of the loop that awaits it, and writes one byte to a socket pair that the
//! loop watches (`loop.add_reader`). The loop's own thread, already attached, then drains
//! the queue: it converts the results to Python objects and resolves the `asyncio`
//! futures. Once the interpreter is gone nobody drains, and nothing is left that could
//! touch it. Waking the loop through its selector also spares every result a hand-over of
//! the interpreter lock between threads.

use std::collections::HashMap;
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_util::FutureExt;
use pyo3::IntoPyObjectExt;
use pyo3::exceptions::{PyOSError, PyRuntimeError};
use pyo3::prelude::*;

/// The Tokio runtime shared by every client of this process. Its threads never attach to
/// the interpreter (see the module documentation), so it may outlive it.
pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let workers = std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(2);
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("runtimeuse-client")
                .enable_all()
                .build()
                .map_err(|e| format!("could not start the Tokio runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| PyRuntimeError::new_err(e.clone()))
}

/// Work for the loop thread, built on any thread from Rust data only.
pub(crate) type LoopTask = Box<dyn FnOnce(Python<'_>) -> PyResult<()> + Send>;

/// Turns a finished future's output into the Python result, on the loop thread.
type Deliver = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

enum Queued {
    /// Resolves the pending future `id`.
    Resolve { id: u64, deliver: Deliver },
    /// Runs on the loop thread; an error is reported to the loop's exception handler.
    Run(LoopTask),
}

/// The part of a bridge that Tokio tasks hold: no Python object in it.
pub(crate) struct BridgeQueue {
    queue: Mutex<Pending>,
    writer: UnixStream,
}

/// What waits for the loop thread.
#[derive(Default)]
struct Pending {
    items: Vec<Queued>,
    /// Whether a wake-up byte was written since the loop last took the items: spares a
    /// write per result when the loop is behind. Kept under the same lock as `items`, so
    /// that an item pushed after the loop took the others always writes a new byte.
    woken: bool,
}

impl BridgeQueue {
    fn push(&self, item: Queued) {
        let wake = {
            let mut pending = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            pending.items.push(item);
            !std::mem::replace(&mut pending.woken, true)
        };
        if wake {
            // Non-blocking: a full socket already holds a wake-up, and a loop that is gone
            // has nobody to wake.
            let _ = (&self.writer).write(&[1]);
        }
    }

    /// The items queued so far; the next push wakes the loop again.
    fn take(&self) -> Vec<Queued> {
        let mut pending = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        pending.woken = false;
        std::mem::take(&mut pending.items)
    }

    /// Runs `task` on the loop thread, soon.
    pub(crate) fn run_on_loop(&self, task: LoopTask) {
        self.push(Queued::Run(task));
    }
}

/// The link between the Tokio runtime and one `asyncio` event loop (one per loop, made by
/// the Python layer, which registers [`LoopBridge::fileno`] with `loop.add_reader`).
#[pyclass(module = "runtimeuse_client._native", name = "LoopBridge", frozen)]
pub(crate) struct LoopBridge {
    shared: Arc<BridgeQueue>,
    reader: UnixStream,
    /// `weakref.ref(loop)`: the bridge must not keep its loop alive.
    event_loop: Py<PyAny>,
    /// The `asyncio` futures not yet resolved, by id; touched on the loop thread only.
    pending: Mutex<HashMap<u64, Py<PyAny>>>,
    next_id: AtomicU64,
}

#[pymethods]
impl LoopBridge {
    #[new]
    fn new(event_loop: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (reader, writer) = UnixStream::pair().map_err(os_error)?;
        reader.set_nonblocking(true).map_err(os_error)?;
        writer.set_nonblocking(true).map_err(os_error)?;
        let weakref = event_loop.py().import("weakref")?.getattr("ref")?;
        Ok(Self {
            shared: Arc::new(BridgeQueue {
                queue: Mutex::new(Pending::default()),
                writer,
            }),
            reader,
            event_loop: weakref.call1((event_loop,))?.unbind(),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// The file descriptor the loop watches for readability.
    fn fileno(&self) -> i32 {
        self.reader.as_raw_fd()
    }

    /// Resolves the futures whose results arrived and runs the queued work (the loop's
    /// reader callback).
    fn drain(&self, py: Python<'_>) -> PyResult<()> {
        // The wake-up bytes are read before the items are taken: a byte written after
        // this read stays for the next drain, and an item pushed after the take writes one.
        let mut buf = [0u8; 64];
        loop {
            match (&self.reader).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
        let items = self.shared.take();
        for item in items {
            match item {
                Queued::Resolve { id, deliver } => {
                    let future = self
                        .pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&id);
                    if let Some(future) = future {
                        resolve(py, future.bind(py), deliver)?;
                    }
                }
                Queued::Run(task) => {
                    if let Err(error) = task(py) {
                        report(py, &self.event_loop, error);
                    }
                }
            }
        }
        Ok(())
    }
}

impl LoopBridge {
    /// The queue half, for Tokio tasks that hand work to this loop.
    pub(crate) fn queue(&self) -> Arc<BridgeQueue> {
        Arc::clone(&self.shared)
    }

    /// An `asyncio` future of this bridge's loop resolved with `future`'s output.
    ///
    /// `future` is polled once here, on the calling thread: when it is ready at once (the
    /// events were already buffered) no thread is woken at all. Otherwise it goes on as a
    /// Tokio task. Dropping the `asyncio` future early does not stop it.
    pub(crate) fn spawn<'py, F, T>(&self, py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        let event_loop = self.event_loop.bind(py).call0()?;
        if event_loop.is_none() {
            return Err(PyRuntimeError::new_err(
                "the event loop of this bridge is gone",
            ));
        }
        let py_future = event_loop.call_method0(pyo3::intern!(py, "create_future"))?;
        let runtime = runtime()?;
        let mut future = Box::pin(AssertUnwindSafe(future).catch_unwind());
        let first = {
            let _runtime = runtime.enter();
            future
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
        };
        if let Poll::Ready(output) = first {
            resolve(py, &py_future, deliver_output(output))?;
            return Ok(py_future);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, py_future.clone().unbind());
        let queue = Arc::clone(&self.shared);
        runtime.spawn(async move {
            let output = future.await;
            queue.push(Queued::Resolve {
                id,
                deliver: deliver_output(output),
            });
        });
        Ok(py_future)
    }
}

fn deliver_output<T>(output: std::thread::Result<PyResult<T>>) -> Deliver
where
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    Box::new(move |py| match output {
        Ok(result) => result.and_then(|value| value.into_py_any(py)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(PyRuntimeError::new_err(format!(
                "runtimeuse_client: internal error: {what}"
            )))
        }
    })
}

/// Sets the result (or exception) of `future` unless it is already done (cancelled).
fn resolve(py: Python<'_>, future: &Bound<'_, PyAny>, deliver: Deliver) -> PyResult<()> {
    if future
        .call_method0(pyo3::intern!(py, "done"))?
        .is_truthy()?
    {
        return Ok(());
    }
    match deliver(py) {
        Ok(value) => future.call_method1(pyo3::intern!(py, "set_result"), (value,))?,
        Err(error) => {
            future.call_method1(pyo3::intern!(py, "set_exception"), (error.into_value(py),))?
        }
    };
    Ok(())
}

/// Hands an error of queued work to the loop's exception handler.
fn report(py: Python<'_>, event_loop: &Py<PyAny>, error: PyErr) {
    let handled = event_loop.bind(py).call0().and_then(|event_loop| {
        if event_loop.is_none() {
            return Ok(());
        }
        let context = pyo3::types::PyDict::new(py);
        context.set_item("message", "runtimeuse_client: a queued callback failed")?;
        context.set_item("exception", error.clone_ref(py).into_value(py))?;
        event_loop.call_method1("call_exception_handler", (context,))?;
        Ok(())
    });
    if handled.is_err() {
        error.print(py);
    }
}

fn os_error(error: std::io::Error) -> PyErr {
    PyOSError::new_err(error.to_string())
}
