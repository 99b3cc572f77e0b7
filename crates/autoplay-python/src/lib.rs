//! The `autoplay_sdk._native` extension module: a thin PyO3 binding over the
//! `autoplay-sdk` crate. All stream handling (HTTP, SSE parsing, decoding,
//! reconnects, queueing, summarising, RAG plumbing) is the Rust core's; this crate
//! converts values and runs Python callbacks.

use pyo3::prelude::*;

mod aio;
mod buffer;
mod client;
mod errors;
mod gil;
mod logging;
mod models;
mod rag;
mod summarizer;

/// Decoding is allocation-heavy; mimalloc keeps it fast and the heap compact.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::install();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<models::PySlimAction>()?;
    m.add_class::<models::PyActionsPayload>()?;
    m.add_class::<models::PySummaryPayload>()?;
    m.add_class::<client::PyConnectorClient>()?;
    aio::register(m)?;
    m.add_class::<buffer::PyEventBuffer>()?;
    m.add_class::<summarizer::PySessionSummarizer>()?;
    m.add_class::<rag::PyRagPipeline>()?;
    m.add_function(wrap_pyfunction!(models::decode_payload, m)?)?;
    m.add_function(wrap_pyfunction!(logging::refresh_log_level, m)?)?;
    Ok(())
}
