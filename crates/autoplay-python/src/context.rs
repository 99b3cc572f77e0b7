//! `_ContextStore`: the core's `ContextStore` (recent actions and the latest summary
//! of a session as prompt context). `autoplay_sdk.context.context_store` wraps it in
//! 0.13.0's `ContextStore` and `AsyncContextStore` signatures.

use std::time::Duration;

use autoplay_sdk::context_store::{ContextQuery, ContextStore, DEFAULT_MAX_STORED_ACTIONS};
use pyo3::prelude::*;

use crate::errors;
use crate::summarizer::actions_of;

// The Python signature spells the default out (a literal shows in it).
const _: () = assert!(DEFAULT_MAX_STORED_ACTIONS == 1000);

fn window(py: Python<'_>, name: &str, seconds: Option<f64>) -> PyResult<Option<Duration>> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(errors::invalid(py, format!("{name} must be > 0, got {s}"))),
    }
}

fn count(py: Python<'_>, name: &str, n: Option<i64>) -> PyResult<Option<usize>> {
    match n {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(n as usize)),
        Some(n) => Err(errors::invalid(py, format!("{name} must be >= 1, got {n}"))),
    }
}

/// Per-session context for query-time enrichment (the core's `ContextStore`).
#[pyclass(module = "autoplay_sdk._native", name = "_ContextStore", frozen)]
pub(crate) struct PyContextStore {
    inner: ContextStore,
}

#[pymethods]
impl PyContextStore {
    #[new]
    #[pyo3(signature = (
        *, include_summary=true, include_actions=true, lookback_seconds=None,
        max_actions=None, max_sessions=None, max_stored_actions=1000
    ))]
    fn new(
        py: Python<'_>,
        include_summary: bool,
        include_actions: bool,
        lookback_seconds: Option<f64>,
        max_actions: Option<i64>,
        max_sessions: Option<i64>,
        max_stored_actions: i64,
    ) -> PyResult<Self> {
        let mut b = ContextStore::builder()
            .include_summary(include_summary)
            .include_actions(include_actions);
        if let Some(w) = window(py, "lookback_seconds", lookback_seconds)? {
            b = b.lookback(w);
        }
        if let Some(n) = count(py, "max_actions", max_actions)? {
            b = b.max_actions(n);
        }
        if let Some(n) = count(py, "max_sessions", max_sessions)? {
            b = b.max_sessions(n);
        }
        let stored = count(py, "max_stored_actions", Some(max_stored_actions))?;
        b = b.max_stored_actions(stored.unwrap_or(DEFAULT_MAX_STORED_ACTIONS));
        Ok(Self {
            inner: b.build().map_err(|e| errors::to_py(py, e))?,
        })
    }

    /// Stores an actions payload for its session (other payloads are ignored).
    fn add(&self, payload: &Bound<'_, PyAny>) {
        if let Some(payload) = actions_of(payload) {
            self.inner.add(&payload);
        }
    }

    /// Stores the latest summary of a session.
    fn set_summary(&self, session_id: &str, summary: &str) {
        self.inner.set_summary(session_id, summary);
    }

    /// The session's context. `lookback` and `max_actions` are `None` for the
    /// store's default, or a 1-tuple with the override (`(None,)`: no bound).
    #[pyo3(signature = (
        session_id, product_id=None, include_summary=None, include_actions=None,
        lookback=None, max_actions=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn get(
        &self,
        py: Python<'_>,
        session_id: &str,
        product_id: Option<&str>,
        include_summary: Option<bool>,
        include_actions: Option<bool>,
        lookback: Option<(Option<f64>,)>,
        max_actions: Option<(Option<i64>,)>,
    ) -> PyResult<String> {
        let query = self.query(
            py,
            product_id,
            include_summary,
            include_actions,
            lookback,
            max_actions,
        )?;
        Ok(self.inner.get(session_id, &query))
    }

    /// `query` with the session's context in front (as `get`'s arguments).
    #[pyo3(signature = (
        session_id, query, product_id=None, include_summary=None, include_actions=None,
        lookback=None, max_actions=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn enrich(
        &self,
        py: Python<'_>,
        session_id: &str,
        query: &str,
        product_id: Option<&str>,
        include_summary: Option<bool>,
        include_actions: Option<bool>,
        lookback: Option<(Option<f64>,)>,
        max_actions: Option<(Option<i64>,)>,
    ) -> PyResult<String> {
        let q = self.query(
            py,
            product_id,
            include_summary,
            include_actions,
            lookback,
            max_actions,
        )?;
        Ok(self.inner.enrich(session_id, query, &q))
    }

    /// Forgets a session's summary and its actions (under `product_id`, and without
    /// a product).
    #[pyo3(signature = (session_id, product_id=None))]
    fn reset(&self, session_id: &str, product_id: Option<&str>) {
        self.inner.reset(session_id, product_id);
    }

    /// Sessions with stored actions or a summary, sorted.
    #[getter]
    fn active_sessions(&self) -> Vec<String> {
        self.inner.active_sessions()
    }

    #[getter]
    fn lookback_seconds(&self) -> Option<f64> {
        self.inner.lookback().map(|d| d.as_secs_f64())
    }

    #[getter]
    fn max_actions(&self) -> Option<usize> {
        self.inner.max_actions()
    }

    #[getter]
    fn max_sessions(&self) -> Option<usize> {
        self.inner.max_sessions()
    }

    #[getter]
    fn max_stored_actions(&self) -> usize {
        self.inner.max_stored_actions()
    }

    #[getter]
    fn include_summary(&self) -> bool {
        self.inner.include_summary()
    }

    #[getter]
    fn include_actions(&self) -> bool {
        self.inner.include_actions()
    }
}

impl PyContextStore {
    fn query<'a>(
        &self,
        py: Python<'_>,
        product_id: Option<&'a str>,
        include_summary: Option<bool>,
        include_actions: Option<bool>,
        lookback: Option<(Option<f64>,)>,
        max_actions: Option<(Option<i64>,)>,
    ) -> PyResult<ContextQuery<'a>> {
        Ok(ContextQuery {
            product_id,
            include_summary,
            include_actions,
            lookback: lookback
                .map(|(s,)| window(py, "lookback_seconds", s))
                .transpose()?,
            max_actions: max_actions
                .map(|(n,)| count(py, "max_actions", n))
                .transpose()?,
        })
    }
}
