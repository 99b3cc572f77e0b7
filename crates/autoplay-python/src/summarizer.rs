//! `SessionSummarizer` and `_SummaryAccumulator`: the core's per-session
//! accumulation (`SessionAccumulator`), with Python callables for the LLM call,
//! `format_actions` and `on_summary`. The async summarizer (`_async.py`) drives
//! `_SummaryAccumulator` and makes its LLM call on the event loop.

use autoplay_sdk::summarizer::{
    DEFAULT_THRESHOLD, SessionAccumulator, SummaryBatch, format_actions as numbered_actions,
};
use autoplay_sdk::{ActionsPayload, SummaryPayload};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::errors;
use crate::logging::log_callback_error;
use crate::models::{PyActionsPayload, PySummaryPayload};

// The Python signatures spell the default threshold out (a literal shows in them).
const _: () = assert!(DEFAULT_THRESHOLD == 10);

/// 0.13.0's `DEFAULT_PROMPT`, word for word: a program written for 0.13.0 that
/// relies on the default sends its LLM the same prompt here.
pub(crate) const DEFAULT_PROMPT: &str = "\
You are summarising a user's in-app session for a RAG pipeline.
Your summary will be embedded and stored in a vector database to provide
context for a chatbot or AI assistant.

Write a concise 2-3 sentence summary of what the user did, focusing on:
- Which features or pages they visited
- What actions they performed
- Any clear intent or goal you can infer

Actions:
{actions}

Summary:";

/// `template.format(actions=actions)`: the prompt is a `str.format` template, as in
/// 0.13.0, so `{{` and `}}` are literal braces (a prompt asking for `{{json}}`).
fn format_prompt(py: Python<'_>, template: &str, actions: &str) -> PyResult<String> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("actions", actions)?;
    PyString::new(py, template)
        .call_method("format", (), Some(&kwargs))?
        .extract()
}

fn text_of(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    match obj.extract::<String>() {
        Ok(s) => Ok(s),
        Err(_) => Ok(obj.str()?.to_string()),
    }
}

/// The core payload of a Python `ActionsPayload`; `None` for anything else.
pub(crate) fn actions_of(payload: &Bound<'_, PyAny>) -> Option<ActionsPayload> {
    let actions = payload.cast::<PyActionsPayload>().ok()?;
    Some(actions.borrow().inner.clone())
}

fn payload_list<'py>(py: Python<'py>, payloads: &[ActionsPayload]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for p in payloads {
        list.append(Py::new(py, PyActionsPayload::from_core(p.clone()))?)?;
    }
    Ok(list)
}

fn accumulator(
    py: Python<'_>,
    threshold: i64,
    prompt: Option<String>,
    max_sessions: Option<i64>,
) -> PyResult<SessionAccumulator> {
    if threshold < 1 {
        return Err(errors::invalid(
            py,
            format!("threshold must be >= 1, got {threshold}"),
        ));
    }
    let max_sessions = match max_sessions {
        Some(n) if n < 1 => {
            return Err(errors::invalid(
                py,
                format!("max_sessions must be >= 1 or None, got {n}"),
            ));
        }
        n => n.map(|n| n as usize),
    };
    // As 0.13.0: an empty prompt is the default one.
    let prompt = prompt
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_PROMPT.to_owned());
    // Checked here, so that a template `str.format` cannot fill fails at
    // construction rather than at every summary (0.13.0 logs it then).
    if let Err(e) = format_prompt(py, &prompt, "") {
        return Err(errors::invalid(
            py,
            format!(
                "prompt is a str.format template with one field, {{actions}}; write other \
                 braces doubled ({{{{ and }}}}): {}",
                e.value(py)
            ),
        ));
    }
    SessionAccumulator::new(threshold as usize, prompt, max_sessions)
        .map_err(|e| errors::to_py(py, e))
}

/// The prompt of a batch: the template formatted with `actions=` the text of
/// `format_actions(payloads)` when given, else the core's numbered list. `Err`
/// (logged) when `format_actions` raised.
fn render(
    py: Python<'_>,
    acc: &SessionAccumulator,
    format_actions: Option<&Py<PyAny>>,
    batch: &SummaryBatch,
) -> Result<String, ()> {
    let (text, what) = match format_actions {
        None => (
            Ok(numbered_actions(batch.payloads())),
            "the summarizer's prompt",
        ),
        Some(format) => (
            payload_list(py, batch.payloads())
                .and_then(|list| format.call1(py, (list,)))
                .and_then(|r| text_of(r.bind(py))),
            "the summarizer's format_actions",
        ),
    };
    match text.and_then(|text| format_prompt(py, acc.prompt_template(), &text)) {
        Ok(prompt) => Ok(prompt),
        Err(e) => {
            log_callback_error(py, what, e);
            Err(())
        }
    }
}

/// Summarises each session every `threshold` actions with `llm(prompt) -> str`.
#[pyclass(module = "autoplay_sdk", name = "SessionSummarizer", subclass)]
pub(crate) struct PySessionSummarizer {
    acc: SessionAccumulator,
    llm: Py<PyAny>,
    format_actions: Option<Py<PyAny>>,
    /// `on_summary(session_id, summary)`, called after each summary; assignable.
    #[pyo3(get, set)]
    pub(crate) on_summary: Option<Py<PyAny>>,
}

impl PySessionSummarizer {
    /// Summarises a batch: the LLM call (and `format_actions`) with the GIL held,
    /// since both are Python; on failure the batch goes back for the next try.
    pub(crate) fn summarise(&self, py: Python<'_>, batch: SummaryBatch) -> Option<SummaryPayload> {
        let answer = match render(py, &self.acc, self.format_actions.as_ref(), &batch) {
            Err(()) => Err("format_actions raised".to_owned()),
            Ok(prompt) => match self
                .llm
                .call1(py, (prompt,))
                .and_then(|r| text_of(r.bind(py)))
            {
                Ok(text) => Ok(text),
                Err(e) => {
                    log_callback_error(py, "the summarizer's llm", e);
                    Err("the llm callable raised".to_owned())
                }
            },
        };
        let summary = self.acc.conclude(batch, answer)?;
        if let Some(f) = self.on_summary.as_ref().filter(|f| !f.is_none(py)) {
            let session = summary.session_id.as_deref().unwrap_or("unknown");
            if let Err(e) = f.call1(py, (session, summary.summary.as_str())) {
                log_callback_error(py, "the summarizer's on_summary", e);
            }
        }
        Some(summary)
    }

    /// Adds a core payload; the summary when its session reached the threshold.
    pub(crate) fn add_payload(
        &self,
        py: Python<'_>,
        payload: &ActionsPayload,
    ) -> Option<SummaryPayload> {
        let batch = self.acc.push(payload)?;
        self.summarise(py, batch)
    }
}

#[pymethods]
impl PySessionSummarizer {
    #[new]
    #[pyo3(signature = (
        llm, threshold=10, prompt=None, on_summary=None,
        format_actions=None, max_sessions=None
    ))]
    fn new(
        py: Python<'_>,
        llm: Py<PyAny>,
        threshold: i64,
        prompt: Option<String>,
        on_summary: Option<Py<PyAny>>,
        format_actions: Option<Py<PyAny>>,
        max_sessions: Option<i64>,
    ) -> PyResult<Self> {
        Ok(Self {
            acc: accumulator(py, threshold, prompt, max_sessions)?,
            llm,
            format_actions: format_actions.filter(|f| !f.is_none(py)),
            on_summary: on_summary.filter(|f| !f.is_none(py)),
        })
    }

    /// Adds an actions payload; returns the `SummaryPayload` when its session reached
    /// the threshold (after calling `llm` and `on_summary`), else `None`. When `llm`
    /// raises, the actions stay pending for the next try. Other payloads are ignored.
    fn add(&self, py: Python<'_>, payload: &Bound<'_, PyAny>) -> Option<PySummaryPayload> {
        let payload = actions_of(payload)?;
        self.add_payload(py, &payload)
            .map(|inner| PySummaryPayload { inner })
    }

    /// Summarises a session's pending actions now, below the threshold too; without
    /// a session, every session with actions pending (then returns `None`).
    #[pyo3(signature = (session_id=None))]
    fn flush(&self, py: Python<'_>, session_id: Option<&str>) -> Option<PySummaryPayload> {
        match session_id {
            Some(id) => {
                let batch = self.acc.take(id)?;
                self.summarise(py, batch)
                    .map(|inner| PySummaryPayload { inner })
            }
            None => {
                for batch in self.acc.take_all() {
                    self.summarise(py, batch);
                }
                None
            }
        }
    }

    /// The session's pending (not yet summarised) actions as text, by
    /// `format_actions` when given; empty when it has none.
    fn get_context(&self, py: Python<'_>, session_id: &str) -> PyResult<String> {
        match &self.format_actions {
            None => Ok(self.acc.context(session_id)),
            Some(format) => {
                let list = payload_list(py, &self.acc.pending_payloads(session_id))?;
                text_of(format.call1(py, (list,))?.bind(py))
            }
        }
    }

    /// Forgets a session's pending actions without summarising them.
    fn reset(&self, session_id: &str) {
        self.acc.reset(session_id);
    }

    /// Sessions with actions pending, least recently used first.
    #[getter]
    fn active_sessions(&self) -> Vec<String> {
        self.acc.active_sessions()
    }

    /// How many actions of a session wait for a summary.
    fn pending(&self, session_id: &str) -> usize {
        self.acc.pending(session_id)
    }

    /// How many sessions have actions waiting.
    #[getter]
    fn session_count(&self) -> usize {
        self.acc.session_count()
    }

    #[getter]
    fn threshold(&self) -> usize {
        self.acc.threshold()
    }

    #[getter]
    fn prompt(&self) -> &str {
        self.acc.prompt_template()
    }

    #[getter]
    fn max_sessions(&self) -> Option<usize> {
        self.acc.max_sessions()
    }
}

/// A session's actions due for a summary (from `_SummaryAccumulator`).
#[pyclass(module = "autoplay_sdk._native", name = "_SummaryBatch", frozen)]
pub(crate) struct PySummaryBatch {
    batch: std::sync::Mutex<Option<SummaryBatch>>,
    session_id: String,
    action_count: usize,
}

impl PySummaryBatch {
    fn new(batch: SummaryBatch) -> Self {
        Self {
            session_id: batch.session_id().to_owned(),
            action_count: batch.action_count(),
            batch: std::sync::Mutex::new(Some(batch)),
        }
    }

    fn take(&self, py: Python<'_>) -> PyResult<SummaryBatch> {
        self.batch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| errors::invalid(py, "this batch was concluded already"))
    }
}

#[pymethods]
impl PySummaryBatch {
    #[getter]
    fn session_id(&self) -> &str {
        &self.session_id
    }

    #[getter]
    fn action_count(&self) -> usize {
        self.action_count
    }

    /// The payloads the batch covers, oldest first.
    fn payloads<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let guard = self.batch.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(batch) => payload_list(py, batch.payloads()),
            None => Ok(PyList::empty(py)),
        }
    }
}

/// The core's `SessionAccumulator`, for `AsyncSessionSummarizer`: `push` returns a
/// due batch, `prompt` renders it, `conclude(batch, text_or_None)` makes the summary
/// or (after a failed LLM call, `None`) keeps the batch for the next try.
#[pyclass(module = "autoplay_sdk._native", name = "_SummaryAccumulator", frozen)]
pub(crate) struct PySummaryAccumulator {
    acc: SessionAccumulator,
    format_actions: Option<Py<PyAny>>,
}

#[pymethods]
impl PySummaryAccumulator {
    #[new]
    #[pyo3(signature = (threshold=10, prompt=None, format_actions=None, max_sessions=None))]
    fn new(
        py: Python<'_>,
        threshold: i64,
        prompt: Option<String>,
        format_actions: Option<Py<PyAny>>,
        max_sessions: Option<i64>,
    ) -> PyResult<Self> {
        Ok(Self {
            acc: accumulator(py, threshold, prompt, max_sessions)?,
            format_actions: format_actions.filter(|f| !f.is_none(py)),
        })
    }

    /// Adds an actions payload; the session's batch once it is due. Other payloads
    /// are ignored.
    fn push(&self, payload: &Bound<'_, PyAny>) -> Option<PySummaryBatch> {
        let payload = actions_of(payload)?;
        self.acc.push(&payload).map(PySummaryBatch::new)
    }

    /// Takes a session's pending actions whatever their number.
    fn take(&self, session_id: &str) -> Option<PySummaryBatch> {
        self.acc.take(session_id).map(PySummaryBatch::new)
    }

    /// Takes every session's pending actions.
    fn take_all(&self) -> Vec<PySummaryBatch> {
        self.acc
            .take_all()
            .into_iter()
            .map(PySummaryBatch::new)
            .collect()
    }

    /// The batch's prompt; `None` when `format_actions` raised (logged; the batch is
    /// then kept for the next try).
    fn prompt(&self, py: Python<'_>, batch: &PySummaryBatch) -> PyResult<Option<String>> {
        let inner = batch.take(py)?;
        let rendered = render(py, &self.acc, self.format_actions.as_ref(), &inner);
        let out = rendered.as_ref().ok().cloned();
        match rendered {
            Ok(_) => *batch.batch.lock().unwrap_or_else(|e| e.into_inner()) = Some(inner),
            Err(()) => self.acc.restore(inner),
        }
        Ok(out)
    }

    /// The summary from the LLM's answer, or, with `None` (the call failed), the
    /// batch kept for the next try and `None` returned.
    fn conclude(
        &self,
        py: Python<'_>,
        batch: &PySummaryBatch,
        text: Option<String>,
    ) -> PyResult<Option<PySummaryPayload>> {
        let inner = batch.take(py)?;
        let answer = text.ok_or_else(|| "the llm call failed".to_owned());
        Ok(self
            .acc
            .conclude(inner, answer)
            .map(|inner| PySummaryPayload { inner }))
    }

    /// The session's pending actions as text (by `format_actions` when given).
    fn context(&self, py: Python<'_>, session_id: &str) -> PyResult<String> {
        match &self.format_actions {
            None => Ok(self.acc.context(session_id)),
            Some(format) => {
                let list = payload_list(py, &self.acc.pending_payloads(session_id))?;
                text_of(format.call1(py, (list,))?.bind(py))
            }
        }
    }

    fn reset(&self, session_id: &str) {
        self.acc.reset(session_id);
    }

    /// Sessions with actions pending, least recently used first.
    fn active_sessions(&self) -> Vec<String> {
        self.acc.active_sessions()
    }

    fn pending(&self, session_id: &str) -> usize {
        self.acc.pending(session_id)
    }

    #[getter]
    fn session_count(&self) -> usize {
        self.acc.session_count()
    }

    #[getter]
    fn threshold(&self) -> usize {
        self.acc.threshold()
    }

    #[getter]
    fn prompt_template(&self) -> &str {
        self.acc.prompt_template()
    }

    #[getter]
    fn max_sessions(&self) -> Option<usize> {
        self.acc.max_sessions()
    }
}
