//! The `autoplay_sdk._native` extension module: a thin PyO3 binding over the
//! `autoplay-sdk` crate. All stream handling (HTTP, SSE parsing, decoding,
//! reconnects, queueing, summarising, RAG plumbing) is the Rust core's; this crate
//! converts values and runs Python callbacks.

use pyo3::prelude::*;

mod aio;
mod buffer;
mod client;
mod context;
mod errors;
mod gil;
mod logging;
mod models;
mod options;
mod rag;
mod summarizer;

/// Decoding is allocation-heavy; mimalloc keeps it fast and the heap compact.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long the exit hook waits for calls into Python from Rust threads to return
/// once every client has stopped (a callback of a client that outlived its drain).
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The exit hook, run before the interpreter finalises: stops and joins every running
/// client, then shuts the gate through which Rust threads call into Python.
#[pyfunction]
fn _shutdown(py: Python<'_>) {
    client::stop_all_at_exit(py);
    aio::stop_all_at_exit(py);
    gil::close(py, EXIT_GRACE);
}

/// Registers `hook` to run at interpreter exit before threads are joined and before
/// finalisation: `threading._register_atexit` (3.9+) runs while every thread can still
/// take the GIL; plain `atexit` is the fallback where it is missing.
fn register_exit_hook(m: &Bound<'_, PyModule>, hook: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = m.py();
    let registered = py
        .import("threading")
        .and_then(|t| t.getattr("_register_atexit"))
        .and_then(|register| register.call1((hook,)));
    if registered.is_err() {
        py.import("atexit")?.call_method1("register", (hook,))?;
    }
    Ok(())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::install();
    let hook = wrap_pyfunction!(_shutdown, m)?;
    m.add_function(hook.clone())?;
    register_exit_hook(m, hook.as_any())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<models::PySlimAction>()?;
    m.add_class::<models::PyActionsPayload>()?;
    m.add_class::<models::PySummaryPayload>()?;
    m.add_class::<client::PyConnectorClient>()?;
    aio::register(m)?;
    m.add_class::<buffer::PyEventBuffer>()?;
    m.add("DEFAULT_PROMPT", summarizer::DEFAULT_PROMPT)?;
    m.add_class::<summarizer::PySessionSummarizer>()?;
    m.add_class::<summarizer::PySummaryAccumulator>()?;
    m.add_class::<summarizer::PySummaryBatch>()?;
    m.add_class::<context::PyContextStore>()?;
    m.add_class::<rag::PyRagPipeline>()?;
    m.add_function(wrap_pyfunction!(models::decode_payload, m)?)?;
    m.add_function(wrap_pyfunction!(models::set_text_style, m)?)?;
    m.add_function(wrap_pyfunction!(logging::refresh_log_level, m)?)?;
    Ok(())
}
