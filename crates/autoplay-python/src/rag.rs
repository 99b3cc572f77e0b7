//! `RagPipeline`: the core's pipeline with Python `embed` and `upsert` callables.
//!
//! The core types vectors as `Vec<f32>`; to hand `upsert` exactly what `embed`
//! returned (a list of floats, a numpy array, ...) the Python vector is kept aside
//! on the calling thread between the two calls.

use std::cell::RefCell;
use std::sync::Arc;

use autoplay_sdk::rag::{RagMetadata, RagPipeline};
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyTuple};

use crate::logging::log_callback_error;
use crate::models::{PyActionsPayload, PySummaryPayload};
use crate::summarizer::PySessionSummarizer;

thread_local! {
    static VECTOR: RefCell<Option<Py<PyAny>>> = const { RefCell::new(None) };
}

/// Embeds each payload's `to_text()` and upserts it into your vector store, with
/// 0.13.0's ids (`{session}:actions:{forwarded_at}`, `{session}:summary:{forwarded_at}`,
/// `{session}:client-summary` for the summarizer's summaries) and metadata
/// (`session_id`, `type`, `forwarded_at`).
#[pyclass(module = "autoplay_sdk", name = "RagPipeline", subclass)]
pub(crate) struct PyRagPipeline {
    inner: Arc<RagPipeline>,
    summarizer: Option<Py<PySessionSummarizer>>,
}

#[pymethods]
impl PyRagPipeline {
    #[new]
    #[pyo3(signature = (embed, upsert, summarizer=None))]
    fn new(
        py: Python<'_>,
        embed: &Bound<'_, PyAny>,
        upsert: &Bound<'_, PyAny>,
        summarizer: Option<Py<PySessionSummarizer>>,
    ) -> PyResult<Self> {
        let embed = embed.clone().unbind();
        let upsert = upsert.clone().unbind();
        let inner = RagPipeline::new(
            move |text: &str| -> Result<Vec<f32>, String> {
                Python::attach(|py| match embed.call1(py, (text,)) {
                    Ok(vector) => {
                        VECTOR.with(|slot| *slot.borrow_mut() = Some(vector));
                        Ok(Vec::new())
                    }
                    Err(e) => {
                        log_callback_error(py, "the pipeline's embed", e);
                        Err("embed raised".to_owned())
                    }
                })
            },
            move |id: &str, _vector: Vec<f32>, meta: RagMetadata| -> Result<(), String> {
                Python::attach(|py| {
                    let vector = VECTOR
                        .with(|slot| slot.borrow_mut().take())
                        .unwrap_or_else(|| py.None());
                    let result = (|| {
                        let metadata = PyDict::new(py);
                        metadata.set_item("session_id", meta.session_id.as_str())?;
                        metadata.set_item("type", meta.kind)?;
                        if meta.kind != "ClientSummary" {
                            metadata.set_item("forwarded_at", meta.forwarded_at)?;
                        }
                        upsert.call1(py, (id, vector, metadata))
                    })();
                    match result {
                        Ok(_) => Ok(()),
                        Err(e) => {
                            log_callback_error(py, "the pipeline's upsert", e);
                            Err("upsert raised".to_owned())
                        }
                    }
                })
            },
        );
        let inner = Arc::new(inner);
        if let Some(summarizer) = &summarizer {
            // As 0.13.0: the pipeline becomes the summarizer's on_summary, so each
            // summary it makes (through the pipeline or not) is upserted as the
            // session's rolling client summary.
            let mut summarizer = summarizer.borrow_mut(py);
            if summarizer.on_summary.is_some() {
                crate::logging::logger(py)?.call_method1(
                    "warning",
                    ("RagPipeline: replacing the summarizer's on_summary; the previous callback is no longer called",),
                )?;
            }
            let pipeline = inner.clone();
            let hook = PyCFunction::new_closure(
                py,
                Some(c"upsert_client_summary"),
                None,
                move |args: &Bound<'_, PyTuple>,
                      _kwargs: Option<&Bound<'_, PyDict>>|
                      -> PyResult<()> {
                    let (session_id, summary): (String, String) = args.extract()?;
                    let payload = autoplay_sdk::SummaryPayload {
                        session_id: Some(session_id.into()),
                        summary: summary.into(),
                        ..Default::default()
                    };
                    // embed and upsert are Python: they run with the GIL held here.
                    pipeline.on_client_summary(&payload);
                    Ok(())
                },
            )?;
            summarizer.on_summary = Some(hook.into_any().unbind());
        }
        Ok(Self { inner, summarizer })
    }

    /// Handles an actions batch (wire it as `on_actions`).
    fn on_actions(&self, py: Python<'_>, payload: &Bound<'_, PyAny>) -> PyResult<()> {
        let payload = payload.cast::<PyActionsPayload>()?.borrow().inner.clone();
        match &self.summarizer {
            Some(summarizer) => {
                // Its on_summary (this pipeline, unless reassigned) upserts the summary.
                summarizer.borrow(py).add_payload(py, &payload);
            }
            None => self.inner.on_actions(&payload),
        }
        Ok(())
    }

    /// Handles a summary (wire it as `on_summary`).
    fn on_summary(&self, payload: &Bound<'_, PyAny>) -> PyResult<()> {
        let payload = payload.cast::<PySummaryPayload>()?.borrow().inner.clone();
        self.inner.on_summary(&payload);
        Ok(())
    }

    /// Documents upserted so far.
    #[getter]
    fn upserted_count(&self) -> u64 {
        self.inner.upserted_count()
    }

    /// Documents lost to an `embed` or `upsert` error so far.
    #[getter]
    fn failed_count(&self) -> u64 {
        self.inner.failed_count()
    }

    #[getter]
    fn summarizer(&self, py: Python<'_>) -> Option<Py<PySessionSummarizer>> {
        self.summarizer.as_ref().map(|s| s.clone_ref(py))
    }
}
