//! `SlimAction`, `ActionsPayload` and `SummaryPayload`: Python objects that own the
//! core's decoded payloads. Decoding, `to_text()` and the canonical JSON are the
//! core's; `to_dict()`/`from_dict()` go through that JSON.

use autoplay_sdk::models::Properties;
use autoplay_sdk::{ActionsPayload, Event, SlimAction, SummaryPayload};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString};

use crate::errors;

fn json_dumps(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<String> {
    py.import("json")?.call_method1("dumps", (obj,))?.extract()
}

fn json_loads<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

fn repr_str(py: Python<'_>, value: &str) -> String {
    PyString::new(py, value)
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| format!("{value:?}"))
}

fn repr_opt(py: Python<'_>, value: Option<&str>) -> String {
    value.map_or_else(|| "None".to_owned(), |v| repr_str(py, v))
}

fn repr_f64(value: Option<f64>) -> String {
    value.map_or_else(|| "None".to_owned(), |v| format!("{v:?}"))
}

/// One UI action.
#[pyclass(module = "autoplay_sdk", name = "SlimAction", eq)]
#[derive(Clone, PartialEq)]
pub(crate) struct PySlimAction {
    pub(crate) inner: SlimAction,
}

#[pymethods]
impl PySlimAction {
    #[new]
    #[pyo3(signature = (title="", description="", canonical_url="", event_type="", ts=None, properties=None, raw_url=None, index=None, timestamp_start=None, timestamp_end=None, session_id=None, user_id=None, email=None, conversation_id=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        title: &str,
        description: &str,
        canonical_url: &str,
        event_type: &str,
        ts: Option<String>,
        properties: Option<&Bound<'_, PyAny>>,
        raw_url: Option<String>,
        index: Option<u64>,
        timestamp_start: Option<f64>,
        timestamp_end: Option<f64>,
        session_id: Option<String>,
        user_id: Option<String>,
        email: Option<String>,
        conversation_id: Option<String>,
    ) -> PyResult<Self> {
        let properties = match properties {
            None => Properties::default(),
            Some(p) if p.is_none() => Properties::default(),
            Some(p) => Properties::from_json(&json_dumps(py, p)?)
                .map_err(|e| errors::invalid(py, format!("properties: {e}")))?,
        };
        // Every field is set today; the update keeps a field the core adds later
        // defaulting here rather than breaking the build.
        #[allow(clippy::needless_update)]
        Ok(Self {
            inner: SlimAction {
                event_type: event_type.into(),
                title: title.into(),
                description: description.into(),
                canonical_url: canonical_url.into(),
                raw_url: raw_url.map(Into::into),
                ts: ts.map(Into::into),
                properties,
                index,
                timestamp_start,
                timestamp_end,
                session_id: session_id.map(Into::into),
                user_id: user_id.map(Into::into),
                email: email.map(Into::into),
                conversation_id: conversation_id.map(Into::into),
                ..SlimAction::default()
            },
        })
    }

    #[getter]
    fn title(&self) -> &str {
        &self.inner.title
    }
    #[getter]
    fn description(&self) -> &str {
        &self.inner.description
    }
    #[getter]
    fn canonical_url(&self) -> &str {
        &self.inner.canonical_url
    }
    #[getter]
    fn event_type(&self) -> &str {
        &self.inner.event_type
    }
    #[getter]
    fn ts(&self) -> Option<&str> {
        self.inner.ts.as_deref()
    }
    #[getter]
    fn raw_url(&self) -> Option<&str> {
        self.inner.raw_url.as_deref()
    }
    #[getter]
    fn properties<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, self.inner.properties.as_json())
    }
    #[getter]
    fn index(&self) -> Option<u64> {
        self.inner.index
    }
    #[getter]
    fn timestamp_start(&self) -> Option<f64> {
        self.inner.timestamp_start
    }
    #[getter]
    fn timestamp_end(&self) -> Option<f64> {
        self.inner.timestamp_end
    }
    #[getter]
    fn session_id(&self) -> Option<&str> {
        self.inner.session_id.as_deref()
    }
    #[getter]
    fn user_id(&self) -> Option<&str> {
        self.inner.user_id.as_deref()
    }
    #[getter]
    fn email(&self) -> Option<&str> {
        self.inner.email.as_deref()
    }
    #[getter]
    fn conversation_id(&self) -> Option<&str> {
        self.inner.conversation_id.as_deref()
    }

    /// `<description> — <canonical_url>` (the title when the description is empty).
    fn to_text(&self) -> String {
        self.inner.to_text()
    }

    /// The canonical JSON object as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let json = serde_json::to_string(&self.inner)
            .map_err(|e| errors::runtime(format!("serialising: {e}")))?;
        json_loads(py, &json)
    }

    /// Builds an action from a dict of any wire shape.
    #[classmethod]
    fn from_dict(
        _cls: &Bound<'_, pyo3::types::PyType>,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let json = json_dumps(py, data)?;
        let inner: SlimAction = serde_json::from_str(&json)
            .map_err(|e| errors::invalid(py, format!("not a SlimAction: {e}")))?;
        Ok(Self { inner })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "SlimAction(event_type={}, title={}, description={}, canonical_url={})",
            repr_str(py, &self.inner.event_type),
            repr_str(py, &self.inner.title),
            repr_str(py, &self.inner.description),
            repr_str(py, &self.inner.canonical_url),
        )
    }
}

/// A batch of UI actions from one session.
#[pyclass(module = "autoplay_sdk", name = "ActionsPayload", eq)]
#[derive(Clone, PartialEq)]
pub(crate) struct PyActionsPayload {
    pub(crate) inner: ActionsPayload,
}

fn extract_actions(py: Python<'_>, actions: &Bound<'_, PyAny>) -> PyResult<Vec<SlimAction>> {
    let mut out = Vec::new();
    for item in actions.try_iter()? {
        let item = item?;
        if let Ok(action) = item.cast::<PySlimAction>() {
            out.push(action.borrow().inner.clone());
        } else {
            let json = json_dumps(py, &item)?;
            out.push(
                serde_json::from_str(&json)
                    .map_err(|e| errors::invalid(py, format!("not an action: {e}")))?,
            );
        }
    }
    Ok(out)
}

#[pymethods]
impl PyActionsPayload {
    #[new]
    #[pyo3(signature = (session_id=None, actions=None, product_id=None, user_id=None, email=None, ts=None, forwarded_at=None, count=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        session_id: Option<String>,
        actions: Option<&Bound<'_, PyAny>>,
        product_id: Option<String>,
        user_id: Option<String>,
        email: Option<String>,
        ts: Option<String>,
        forwarded_at: Option<f64>,
        count: Option<u64>,
    ) -> PyResult<Self> {
        // `count` is accepted for compatibility; it is always the length of `actions`.
        let _ = count;
        let actions = match actions {
            Some(a) if !a.is_none() => extract_actions(py, a)?,
            _ => Vec::new(),
        };
        Ok(Self {
            inner: ActionsPayload {
                product_id: product_id.map(Into::into),
                session_id: session_id.map(Into::into),
                user_id: user_id.map(Into::into),
                email: email.map(Into::into),
                ts: ts.map(Into::into),
                forwarded_at,
                actions,
            },
        })
    }

    #[getter]
    fn product_id(&self) -> Option<&str> {
        self.inner.product_id.as_deref()
    }
    #[getter]
    fn session_id(&self) -> Option<&str> {
        self.inner.session_id.as_deref()
    }
    #[getter]
    fn user_id(&self) -> Option<&str> {
        self.inner.user_id.as_deref()
    }
    #[getter]
    fn email(&self) -> Option<&str> {
        self.inner.email.as_deref()
    }
    #[getter]
    fn ts(&self) -> Option<&str> {
        self.inner.ts.as_deref()
    }
    #[getter]
    fn forwarded_at(&self) -> Option<f64> {
        self.inner.forwarded_at
    }
    #[getter]
    fn count(&self) -> usize {
        self.inner.count()
    }
    #[getter]
    fn actions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .inner
            .actions
            .iter()
            .map(|a| Py::new(py, PySlimAction { inner: a.clone() }))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
    /// `"actions"`.
    #[getter]
    fn r#type(&self) -> &'static str {
        autoplay_sdk::models::ACTIONS_TYPE
    }

    /// `Session <id> — <N> actions` and one numbered line per action.
    fn to_text(&self) -> String {
        self.inner.to_text()
    }

    /// The canonical JSON object as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, &self.inner.to_json())
    }

    /// The canonical JSON text.
    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    /// Builds a payload from a dict of any wire shape.
    #[classmethod]
    fn from_dict(
        _cls: &Bound<'_, pyo3::types::PyType>,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let json = json_dumps(py, data)?;
        let inner: ActionsPayload = serde_json::from_str(&json)
            .map_err(|e| errors::invalid(py, format!("not an actions payload: {e}")))?;
        Ok(Self { inner })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "ActionsPayload(product_id={}, session_id={}, user_id={}, email={}, count={}, forwarded_at={})",
            repr_opt(py, self.inner.product_id.as_deref()),
            repr_opt(py, self.inner.session_id.as_deref()),
            repr_opt(py, self.inner.user_id.as_deref()),
            repr_opt(py, self.inner.email.as_deref()),
            self.inner.count(),
            repr_f64(self.inner.forwarded_at),
        )
    }
}

/// A prose summary of a session.
#[pyclass(module = "autoplay_sdk", name = "SummaryPayload", eq)]
#[derive(Clone, PartialEq)]
pub(crate) struct PySummaryPayload {
    pub(crate) inner: SummaryPayload,
}

#[pymethods]
impl PySummaryPayload {
    #[new]
    #[pyo3(signature = (session_id=None, summary="", replaces=0, product_id=None, ts=None, forwarded_at=None))]
    fn new(
        session_id: Option<String>,
        summary: &str,
        replaces: u64,
        product_id: Option<String>,
        ts: Option<String>,
        forwarded_at: Option<f64>,
    ) -> Self {
        Self {
            inner: SummaryPayload {
                product_id: product_id.map(Into::into),
                session_id: session_id.map(Into::into),
                summary: summary.into(),
                replaces,
                ts: ts.map(Into::into),
                forwarded_at,
            },
        }
    }

    #[getter]
    fn product_id(&self) -> Option<&str> {
        self.inner.product_id.as_deref()
    }
    #[getter]
    fn session_id(&self) -> Option<&str> {
        self.inner.session_id.as_deref()
    }
    #[getter]
    fn summary(&self) -> &str {
        &self.inner.summary
    }
    /// The README's name of `summary`.
    #[getter]
    fn content(&self) -> &str {
        &self.inner.summary
    }
    #[getter]
    fn replaces(&self) -> u64 {
        self.inner.replaces
    }
    #[getter]
    fn ts(&self) -> Option<&str> {
        self.inner.ts.as_deref()
    }
    #[getter]
    fn forwarded_at(&self) -> Option<f64> {
        self.inner.forwarded_at
    }
    /// `"summary"`.
    #[getter]
    fn r#type(&self) -> &'static str {
        autoplay_sdk::models::SUMMARY_TYPE
    }

    /// The summary text itself.
    fn to_text(&self) -> String {
        self.inner.to_text()
    }

    /// The canonical JSON object as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, &self.inner.to_json())
    }

    /// The canonical JSON text.
    fn to_json(&self) -> String {
        self.inner.to_json()
    }

    /// Builds a summary from a dict of any wire shape (`summary` or `content`).
    #[classmethod]
    fn from_dict(
        _cls: &Bound<'_, pyo3::types::PyType>,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let json = json_dumps(py, data)?;
        let inner: SummaryPayload = serde_json::from_str(&json)
            .map_err(|e| errors::invalid(py, format!("not a summary payload: {e}")))?;
        Ok(Self { inner })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "SummaryPayload(product_id={}, session_id={}, replaces={}, summary={})",
            repr_opt(py, self.inner.product_id.as_deref()),
            repr_opt(py, self.inner.session_id.as_deref()),
            self.inner.replaces,
            repr_str(py, &self.inner.summary),
        )
    }
}

/// The Python object for a decoded event.
pub(crate) fn event_to_py(py: Python<'_>, event: Event) -> PyResult<Py<PyAny>> {
    Ok(match event {
        Event::Actions(inner) => Py::new(py, PyActionsPayload { inner })?.into_any(),
        Event::Summary(inner) => Py::new(py, PySummaryPayload { inner })?.into_any(),
    })
}

/// Decodes a payload (JSON text, or a dict) whose `type` says its kind.
#[pyfunction]
pub(crate) fn decode_payload(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let json = if let Ok(text) = data.extract::<String>() {
        text
    } else {
        json_dumps(py, data)?
    };
    let event = Event::from_json(&json).map_err(|e| errors::invalid(py, e.to_string()))?;
    event_to_py(py, event)
}

/// A small dict describing an event (for `on_drop`): `type`, `session_id`, `product_id`.
pub(crate) fn drop_dict<'py>(
    py: Python<'py>,
    kind: &str,
    session_id: Option<&str>,
    product_id: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("type", kind)?;
    dict.set_item("session_id", session_id)?;
    dict.set_item("product_id", product_id)?;
    Ok(dict)
}
