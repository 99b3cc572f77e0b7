//! `SessionSummarizer`: the core's per-session accumulation and prompt, with a
//! Python `llm` callable.

use autoplay_sdk::summarizer::{DEFAULT_PROMPT, DEFAULT_THRESHOLD, SessionSummarizer};
use pyo3::prelude::*;

use crate::errors;
use crate::logging::log_callback_error;
use crate::models::{PyActionsPayload, PySummaryPayload};

/// Summarises each session every `threshold` actions with `llm(prompt) -> str`.
#[pyclass(module = "autoplay_sdk", name = "SessionSummarizer", subclass)]
pub(crate) struct PySessionSummarizer {
    pub(crate) inner: SessionSummarizer,
    threshold: usize,
    prompt: String,
}

fn text_of(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    match obj.extract::<String>() {
        Ok(s) => Ok(s),
        Err(_) => Ok(obj.str()?.to_string()),
    }
}

#[pymethods]
impl PySessionSummarizer {
    #[new]
    #[pyo3(signature = (llm, threshold=DEFAULT_THRESHOLD, prompt=None, on_summary=None))]
    fn new(
        py: Python<'_>,
        llm: &Bound<'_, PyAny>,
        threshold: usize,
        prompt: Option<String>,
        on_summary: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let llm = llm.clone().unbind();
        let prompt = prompt.unwrap_or_else(|| DEFAULT_PROMPT.to_owned());
        let mut builder =
            SessionSummarizer::builder(move |prompt: &str| -> Result<String, String> {
                Python::attach(
                    |py| match llm.bind(py).call1((prompt,)).and_then(|r| text_of(&r)) {
                        Ok(text) => Ok(text),
                        Err(e) => {
                            log_callback_error(py, "the summarizer's llm", e);
                            Err("the llm callable raised".to_owned())
                        }
                    },
                )
            })
            .threshold(threshold)
            .prompt(prompt.clone());
        if let Some(f) = on_summary.filter(|f| !f.is_none()) {
            let f = f.clone().unbind();
            builder = builder.on_summary(move |session_id: &str, summary: &str| {
                Python::attach(|py| {
                    if let Err(e) = f.call1(py, (session_id, summary)) {
                        log_callback_error(py, "the summarizer's on_summary", e);
                    }
                })
            });
        }
        let inner = builder.build().map_err(|e| errors::to_py(py, e))?;
        Ok(Self {
            inner,
            threshold,
            prompt,
        })
    }

    /// Adds an actions payload; returns the `SummaryPayload` when its session reached
    /// the threshold (after calling `llm` and `on_summary`), else `None`. Other
    /// payloads are ignored.
    fn add(&self, payload: &Bound<'_, PyAny>) -> Option<PySummaryPayload> {
        let actions = payload.cast::<PyActionsPayload>().ok()?;
        let inner = actions.borrow().inner.clone();
        self.inner
            .add(&inner)
            .map(|inner| PySummaryPayload { inner })
    }

    /// Summarises a session's pending actions now, below the threshold too.
    fn flush(&self, session_id: &str) -> Option<PySummaryPayload> {
        self.inner
            .flush(session_id)
            .map(|inner| PySummaryPayload { inner })
    }

    /// How many actions of a session wait for a summary.
    fn pending(&self, session_id: &str) -> usize {
        self.inner.pending(session_id)
    }

    /// How many sessions have actions waiting.
    #[getter]
    fn session_count(&self) -> usize {
        self.inner.session_count()
    }

    #[getter]
    fn threshold(&self) -> usize {
        self.threshold
    }

    #[getter]
    fn prompt(&self) -> &str {
        &self.prompt
    }
}
