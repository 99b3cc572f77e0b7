//! `SlimAction`, `ActionsPayload` and `SummaryPayload`: Python objects that own the
//! core's decoded payloads. Decoding, `to_text()` and the canonical JSON are the
//! core's; `to_dict()`/`from_dict()` go through that JSON.
//!
//! They behave as the published 0.13.0's dataclasses: 0.13.0's constructor order,
//! its defaults for fields a payload lacks (`""`, `0`, `0.0`), assignable fields,
//! `==` over what the fields show, and a `__dataclass_fields__` so that
//! `dataclasses.fields`, `asdict`, `astuple` and `replace` work on them. They stay
//! native objects rather than Python dataclasses so that a callback receives a
//! payload without the binding building a Python object per action (the actions
//! list is built when read).

use std::sync::atomic::{AtomicBool, Ordering};

use autoplay_sdk::models::Properties;
use autoplay_sdk::{ActionsPayload, Event, SlimAction, SummaryPayload, TextStyle};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};
use tracing::warn;

use crate::errors;

fn json_dumps(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<String> {
    py.import("json")?.call_method1("dumps", (obj,))?.extract()
}

fn json_loads<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// The process-wide `to_text()` style (`set_text_style`): indexed when set.
static INDEXED_TEXT: AtomicBool = AtomicBool::new(false);

fn text_style(py: Python<'_>, style: Option<&str>) -> PyResult<TextStyle> {
    match style {
        None if INDEXED_TEXT.load(Ordering::Relaxed) => Ok(TextStyle::Indexed),
        None => Ok(TextStyle::Numbered),
        Some("numbered") => Ok(TextStyle::Numbered),
        Some("indexed" | "0.13") => Ok(TextStyle::Indexed),
        Some(other) => Err(errors::invalid(
            py,
            format!(
                "style {other:?}: use \"numbered\" (1. <description> \u{2014} <url>) or \"indexed\" ([<index>] <type>: <description> \u{2014} <url>, 0.13.0's)"
            ),
        )),
    }
}

/// Sets the style `to_text()` uses when not given one: `"numbered"` (the default,
/// `1. <description> — <url>`) or `"indexed"` (0.13.0's
/// `[<index>] <type>: <description> — <url>`).
#[pyfunction]
pub(crate) fn set_text_style(py: Python<'_>, style: &str) -> PyResult<()> {
    let indexed = text_style(py, Some(style))? == TextStyle::Indexed;
    INDEXED_TEXT.store(indexed, Ordering::Relaxed);
    Ok(())
}

/// One dataclass field: name, annotation, default (a list or dict stands for a
/// `default_factory` of its type).
type FieldSpec<'py> = (&'static str, &'static str, Bound<'py, PyAny>);

/// The `__dataclass_fields__` of a shadow dataclass with these fields (made by
/// `dataclasses.make_dataclass`, so the `Field` objects are the real thing).
fn dataclass_fields(py: Python<'_>, name: &str, spec: Vec<FieldSpec<'_>>) -> PyResult<Py<PyAny>> {
    let util = py.import("autoplay_sdk._util")?;
    Ok(util
        .call_method1("dataclass_fields", (name, spec))?
        .unbind())
}

fn match_args<'py>(py: Python<'py>, names: &[&str]) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(py, names)
}

/// `Name(field=repr, ...)` over the dataclass fields, as a dataclass's repr.
fn dataclass_repr(obj: &Bound<'_, PyAny>, name: &str, fields: &[&str]) -> PyResult<String> {
    let mut out = format!("{name}(");
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(field);
        out.push('=');
        out.push_str(&obj.getattr(*field)?.repr()?.to_string());
    }
    out.push(')');
    Ok(out)
}

fn replace_via_dataclasses<'py>(
    obj: &Bound<'py, PyAny>,
    changes: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    obj.py()
        .import("dataclasses")?
        .call_method("replace", (obj,), changes)
}

fn reduce_via_dict<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyTuple>> {
    let py = obj.py();
    let from_dict = obj.get_type().getattr("from_dict")?;
    let data = obj.call_method0("to_dict")?;
    PyTuple::new(py, [from_dict, PyTuple::new(py, [data])?.into_any()])
}

fn properties_from(py: Python<'_>, p: Option<&Bound<'_, PyAny>>) -> PyResult<Properties> {
    match p {
        None => Ok(Properties::default()),
        Some(p) if p.is_none() => Ok(Properties::default()),
        Some(p) => Properties::from_json(&json_dumps(py, p)?)
            .map_err(|e| errors::invalid(py, format!("properties: {e}"))),
    }
}

const SLIM_FIELDS: &[&str] = &[
    "title",
    "description",
    "canonical_url",
    "index",
    "type",
    "timestamp_start",
    "timestamp_end",
    "raw_url",
    "session_id",
    "user_id",
    "email",
    "conversation_id",
    "ts",
    "properties",
];

/// One UI action.
#[pyclass(module = "autoplay_sdk", name = "SlimAction")]
#[derive(Clone)]
pub(crate) struct PySlimAction {
    pub(crate) inner: SlimAction,
}

/// Equal when every field reads the same from Python: an absent `index` equals 0,
/// an absent `raw_url` equals `""`, as their getters show them.
fn slim_eq(a: &SlimAction, b: &SlimAction) -> bool {
    a.event_type == b.event_type
        && a.title == b.title
        && a.description == b.description
        && a.canonical_url == b.canonical_url
        && a.raw_url.as_deref().unwrap_or("") == b.raw_url.as_deref().unwrap_or("")
        && a.ts == b.ts
        && a.properties == b.properties
        && a.index.unwrap_or(0) == b.index.unwrap_or(0)
        && a.timestamp_start.unwrap_or(0.0) == b.timestamp_start.unwrap_or(0.0)
        && a.timestamp_end.unwrap_or(0.0) == b.timestamp_end.unwrap_or(0.0)
        && a.session_id == b.session_id
        && a.user_id == b.user_id
        && a.email == b.email
        && a.conversation_id == b.conversation_id
}

fn type_or_event_type(
    py: Python<'_>,
    r#type: Option<String>,
    event_type: Option<String>,
) -> PyResult<String> {
    match (r#type, event_type) {
        (Some(t), Some(e)) if t != e => Err(errors::invalid(
            py,
            format!("type {t:?} and event_type {e:?} differ; they are one field, give one"),
        )),
        (Some(t), _) => Ok(t),
        (None, e) => Ok(e.unwrap_or_default()),
    }
}

#[pymethods]
impl PySlimAction {
    #[new]
    #[pyo3(signature = (title="", description="", canonical_url="", index=None, r#type=None, timestamp_start=None, timestamp_end=None, raw_url=None, session_id=None, user_id=None, email=None, conversation_id=None, *, event_type=None, ts=None, properties=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        title: &str,
        description: &str,
        canonical_url: &str,
        index: Option<u64>,
        r#type: Option<String>,
        timestamp_start: Option<f64>,
        timestamp_end: Option<f64>,
        raw_url: Option<String>,
        session_id: Option<String>,
        user_id: Option<String>,
        email: Option<String>,
        conversation_id: Option<String>,
        event_type: Option<String>,
        ts: Option<String>,
        properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let event_type = type_or_event_type(py, r#type, event_type)?;
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
                properties: properties_from(py, properties)?,
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

    #[classattr]
    fn __dataclass_fields__(py: Python<'_>) -> PyResult<Py<PyAny>> {
        let s = |v: &str| PyString::new(py, v).into_any();
        let none = || py.None().into_bound(py);
        dataclass_fields(
            py,
            "SlimAction",
            vec![
                ("title", "str", s("")),
                ("description", "str", s("")),
                ("canonical_url", "str", s("")),
                ("index", "int", 0i64.into_pyobject(py)?.into_any()),
                ("type", "str", s("")),
                (
                    "timestamp_start",
                    "float",
                    0.0f64.into_pyobject(py)?.into_any(),
                ),
                (
                    "timestamp_end",
                    "float",
                    0.0f64.into_pyobject(py)?.into_any(),
                ),
                ("raw_url", "str", s("")),
                ("session_id", "Optional[str]", none()),
                ("user_id", "Optional[str]", none()),
                ("email", "Optional[str]", none()),
                ("conversation_id", "Optional[str]", none()),
                ("ts", "Optional[str]", none()),
                ("properties", "Dict[str, Any]", PyDict::new(py).into_any()),
            ],
        )
    }

    #[classattr]
    fn __match_args__(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
        match_args(py, SLIM_FIELDS)
    }

    #[getter]
    fn get_title(&self) -> &str {
        &self.inner.title
    }
    #[setter]
    fn set_title(&mut self, value: String) {
        self.inner.title = value.into();
    }
    #[getter]
    fn get_description(&self) -> &str {
        &self.inner.description
    }
    #[setter]
    fn set_description(&mut self, value: String) {
        self.inner.description = value.into();
    }
    #[getter]
    fn get_canonical_url(&self) -> &str {
        &self.inner.canonical_url
    }
    #[setter]
    fn set_canonical_url(&mut self, value: String) {
        self.inner.canonical_url = value.into();
    }
    /// The event type (`pageview`, `click`, ...): the page's name of `type`.
    #[getter]
    fn get_event_type(&self) -> &str {
        &self.inner.event_type
    }
    #[setter]
    fn set_event_type(&mut self, value: String) {
        self.inner.event_type = value.into();
    }
    /// The event type: 0.13.0's name of `event_type` (the same value).
    #[getter]
    fn get_type(&self) -> &str {
        &self.inner.event_type
    }
    #[setter]
    fn set_type(&mut self, value: String) {
        self.inner.event_type = value.into();
    }
    #[getter]
    fn get_ts(&self) -> Option<&str> {
        self.inner.ts.as_deref()
    }
    #[setter]
    fn set_ts(&mut self, value: Option<String>) {
        self.inner.ts = value.map(Into::into);
    }
    /// The page as visited; `""` when the payload had none (0.13.0's default).
    #[getter]
    fn get_raw_url(&self) -> &str {
        self.inner.raw_url.as_deref().unwrap_or("")
    }
    #[setter]
    fn set_raw_url(&mut self, value: Option<String>) {
        self.inner.raw_url = value.map(Into::into);
    }
    #[getter]
    fn get_properties<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_loads(py, self.inner.properties.as_json())
    }
    #[setter]
    fn set_properties(&mut self, py: Python<'_>, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        self.inner.properties = properties_from(py, value)?;
        Ok(())
    }
    /// Position in the session; 0 when the payload had none (0.13.0's default).
    #[getter]
    fn get_index(&self) -> u64 {
        self.inner.index.unwrap_or(0)
    }
    #[setter]
    fn set_index(&mut self, value: Option<u64>) {
        self.inner.index = value;
    }
    /// Unix seconds; 0.0 when the payload had none (0.13.0's default).
    #[getter]
    fn get_timestamp_start(&self) -> f64 {
        self.inner.timestamp_start.unwrap_or(0.0)
    }
    #[setter]
    fn set_timestamp_start(&mut self, value: Option<f64>) {
        self.inner.timestamp_start = value;
    }
    /// Unix seconds; 0.0 when the payload had none (0.13.0's default).
    #[getter]
    fn get_timestamp_end(&self) -> f64 {
        self.inner.timestamp_end.unwrap_or(0.0)
    }
    #[setter]
    fn set_timestamp_end(&mut self, value: Option<f64>) {
        self.inner.timestamp_end = value;
    }
    #[getter]
    fn get_session_id(&self) -> Option<&str> {
        self.inner.session_id.as_deref()
    }
    #[setter]
    fn set_session_id(&mut self, value: Option<String>) {
        self.inner.session_id = value.map(Into::into);
    }
    #[getter]
    fn get_user_id(&self) -> Option<&str> {
        self.inner.user_id.as_deref()
    }
    #[setter]
    fn set_user_id(&mut self, value: Option<String>) {
        self.inner.user_id = value.map(Into::into);
    }
    #[getter]
    fn get_email(&self) -> Option<&str> {
        self.inner.email.as_deref()
    }
    #[setter]
    fn set_email(&mut self, value: Option<String>) {
        self.inner.email = value.map(Into::into);
    }
    #[getter]
    fn get_conversation_id(&self) -> Option<&str> {
        self.inner.conversation_id.as_deref()
    }
    #[setter]
    fn set_conversation_id(&mut self, value: Option<String>) {
        self.inner.conversation_id = value.map(Into::into);
    }

    /// `<description> — <canonical_url>` (the title when the description is empty);
    /// with `style="indexed"` (or after `set_text_style("indexed")`) 0.13.0's
    /// `[<index>] <type>: <description> — <canonical_url>`.
    #[pyo3(signature = (style=None))]
    fn to_text(&self, py: Python<'_>, style: Option<&str>) -> PyResult<String> {
        Ok(self.inner.to_text_styled(text_style(py, style)?))
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
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let json = json_dumps(py, data)?;
        let inner: SlimAction = serde_json::from_str(&json)
            .map_err(|e| errors::invalid(py, format!("not a SlimAction: {e}")))?;
        Ok(Self { inner })
    }

    /// `copy.replace` (3.13): `dataclasses.replace`.
    #[pyo3(signature = (**changes))]
    fn __replace__<'py>(
        slf: &Bound<'py, Self>,
        changes: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        replace_via_dataclasses(slf.as_any(), changes)
    }

    /// Pickles through the canonical dict (dataclasses pickle; so do these).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        reduce_via_dict(slf.as_any())
    }

    fn __copy__(&self) -> Self {
        self.clone()
    }

    fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> Self {
        self.clone()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = other.py();
        Ok(match other.cast::<Self>() {
            Ok(o) => slim_eq(&self.inner, &o.borrow().inner)
                .into_pyobject(py)?
                .to_owned()
                .into_any()
                .unbind(),
            Err(_) => py.NotImplemented(),
        })
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        dataclass_repr(slf.as_any(), "SlimAction", SLIM_FIELDS)
    }
}

/// A batch of UI actions from one session.
#[pyclass(module = "autoplay_sdk", name = "ActionsPayload")]
#[derive(Clone)]
pub(crate) struct PyActionsPayload {
    pub(crate) inner: ActionsPayload,
}

impl PyActionsPayload {
    /// A payload object for a payload the core decoded.
    pub(crate) fn from_core(inner: ActionsPayload) -> Self {
        Self { inner }
    }
}

const ACTIONS_FIELDS: &[&str] = &[
    "product_id",
    "session_id",
    "user_id",
    "email",
    "actions",
    "count",
    "forwarded_at",
    "conversation_id",
    "ts",
];

fn actions_eq(x: &ActionsPayload, y: &ActionsPayload) -> bool {
    x.product_id.as_deref().unwrap_or("") == y.product_id.as_deref().unwrap_or("")
        && x.session_id == y.session_id
        && x.user_id == y.user_id
        && x.email == y.email
        && x.ts == y.ts
        && x.forwarded_at.unwrap_or(0.0) == y.forwarded_at.unwrap_or(0.0)
        && x.actions.len() == y.actions.len()
        && x.actions.iter().zip(&y.actions).all(|(p, q)| slim_eq(p, q))
        && x.conversation_id == y.conversation_id
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
    #[pyo3(signature = (product_id=None, session_id=None, user_id=None, email=None, actions=None, count=None, forwarded_at=None, conversation_id=None, *, ts=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        product_id: Option<String>,
        session_id: Option<String>,
        user_id: Option<String>,
        email: Option<String>,
        actions: Option<&Bound<'_, PyAny>>,
        count: Option<u64>,
        forwarded_at: Option<f64>,
        conversation_id: Option<String>,
        ts: Option<String>,
    ) -> PyResult<Self> {
        let actions = match actions {
            Some(a) if !a.is_none() => extract_actions(py, a)?,
            _ => Vec::new(),
        };
        if let Some(count) = count
            && count != actions.len() as u64
        {
            // As 0.13.0: the list is authoritative.
            warn!(
                target: "autoplay_sdk::python",
                session_id = session_id.as_deref(),
                "ActionsPayload count={count} does not match len(actions)={}; using len(actions)",
                actions.len()
            );
        }
        Ok(Self {
            inner: ActionsPayload {
                product_id: product_id.map(Into::into),
                session_id: session_id.map(Into::into),
                user_id: user_id.map(Into::into),
                email: email.map(Into::into),
                ts: ts.map(Into::into),
                forwarded_at,
                actions,
                conversation_id: conversation_id.map(Into::into),
            },
        })
    }

    #[classattr]
    fn __dataclass_fields__(py: Python<'_>) -> PyResult<Py<PyAny>> {
        let none = || py.None().into_bound(py);
        dataclass_fields(
            py,
            "ActionsPayload",
            vec![
                ("product_id", "str", PyString::new(py, "").into_any()),
                ("session_id", "Optional[str]", none()),
                ("user_id", "Optional[str]", none()),
                ("email", "Optional[str]", none()),
                ("actions", "List[SlimAction]", PyList::empty(py).into_any()),
                ("count", "int", 0i64.into_pyobject(py)?.into_any()),
                (
                    "forwarded_at",
                    "float",
                    0.0f64.into_pyobject(py)?.into_any(),
                ),
                ("conversation_id", "Optional[str]", none()),
                ("ts", "Optional[str]", none()),
            ],
        )
    }

    #[classattr]
    fn __match_args__(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
        match_args(py, ACTIONS_FIELDS)
    }

    /// The product; `""` when the payload had none (0.13.0's default).
    #[getter]
    fn get_product_id(&self) -> &str {
        self.inner.product_id.as_deref().unwrap_or("")
    }
    #[setter]
    fn set_product_id(&mut self, value: Option<String>) {
        self.inner.product_id = value.map(Into::into);
    }
    #[getter]
    fn get_session_id(&self) -> Option<&str> {
        self.inner.session_id.as_deref()
    }
    #[setter]
    fn set_session_id(&mut self, value: Option<String>) {
        self.inner.session_id = value.map(Into::into);
    }
    #[getter]
    fn get_user_id(&self) -> Option<&str> {
        self.inner.user_id.as_deref()
    }
    #[setter]
    fn set_user_id(&mut self, value: Option<String>) {
        self.inner.user_id = value.map(Into::into);
    }
    #[getter]
    fn get_email(&self) -> Option<&str> {
        self.inner.email.as_deref()
    }
    #[setter]
    fn set_email(&mut self, value: Option<String>) {
        self.inner.email = value.map(Into::into);
    }
    #[getter]
    fn get_ts(&self) -> Option<&str> {
        self.inner.ts.as_deref()
    }
    #[setter]
    fn set_ts(&mut self, value: Option<String>) {
        self.inner.ts = value.map(Into::into);
    }
    /// Unix seconds; 0.0 when the payload had none (0.13.0's default).
    #[getter]
    fn get_forwarded_at(&self) -> f64 {
        self.inner.forwarded_at.unwrap_or(0.0)
    }
    #[setter]
    fn set_forwarded_at(&mut self, value: Option<f64>) {
        self.inner.forwarded_at = value;
    }
    #[getter]
    fn get_conversation_id(&self) -> Option<&str> {
        self.inner.conversation_id.as_deref()
    }
    #[setter]
    fn set_conversation_id(&mut self, value: Option<String>) {
        self.inner.conversation_id = value.map(Into::into);
    }
    /// `len(actions)`, always (read-only: assign `actions` instead).
    #[getter]
    fn count(&self) -> usize {
        self.inner.count()
    }
    /// A new list of copies on each read: assign the attribute to change the actions.
    #[getter]
    fn get_actions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let items = self
            .inner
            .actions
            .iter()
            .map(|a| Py::new(py, PySlimAction { inner: a.clone() }))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
    #[setter]
    fn set_actions(&mut self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner.actions = extract_actions(py, value)?;
        Ok(())
    }
    /// `"actions"`.
    #[getter]
    fn r#type(&self) -> &'static str {
        autoplay_sdk::models::ACTIONS_TYPE
    }

    /// `Session <id> — <N> actions` and one numbered line per action; with
    /// `style="indexed"` (or after `set_text_style("indexed")`) 0.13.0's
    /// `[<index>] <type>: <description> — <canonical_url>` lines.
    #[pyo3(signature = (style=None))]
    fn to_text(&self, py: Python<'_>, style: Option<&str>) -> PyResult<String> {
        Ok(self.inner.to_text_styled(text_style(py, style)?))
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
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let json = json_dumps(py, data)?;
        let inner: ActionsPayload = serde_json::from_str(&json)
            .map_err(|e| errors::invalid(py, format!("not an actions payload: {e}")))?;
        Ok(Self { inner })
    }

    /// Several batches of one session as one (0.13.0's): the actions in order,
    /// re-indexed from 0; product and session from the first; user, email and
    /// conversation from the first that has them; `forwarded_at` the latest.
    /// `ValueError` for an empty list.
    #[classmethod]
    fn merge(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        payloads: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let mut batches = Vec::new();
        for item in payloads.try_iter()? {
            batches.push(item?.cast::<Self>()?.borrow().inner.clone());
        }
        let inner = ActionsPayload::merge(&batches).ok_or_else(|| {
            errors::invalid(py, "ActionsPayload.merge() requires at least one payload")
        })?;
        Ok(Self { inner })
    }

    /// `copy.replace` (3.13): `dataclasses.replace`.
    #[pyo3(signature = (**changes))]
    fn __replace__<'py>(
        slf: &Bound<'py, Self>,
        changes: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        replace_via_dataclasses(slf.as_any(), changes)
    }

    /// Pickles through the canonical dict (dataclasses pickle; so do these).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        reduce_via_dict(slf.as_any())
    }

    fn __copy__(&self) -> Self {
        self.clone()
    }

    fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> Self {
        self.clone()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = other.py();
        Ok(match other.cast::<Self>() {
            Ok(o) => actions_eq(&self.inner, &o.borrow().inner)
                .into_pyobject(py)?
                .to_owned()
                .into_any()
                .unbind(),
            Err(_) => py.NotImplemented(),
        })
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        dataclass_repr(slf.as_any(), "ActionsPayload", ACTIONS_FIELDS)
    }
}

const SUMMARY_FIELDS: &[&str] = &[
    "product_id",
    "session_id",
    "summary",
    "replaces",
    "forwarded_at",
    "ts",
];

/// A prose summary of a session.
#[pyclass(module = "autoplay_sdk", name = "SummaryPayload")]
#[derive(Clone)]
pub(crate) struct PySummaryPayload {
    pub(crate) inner: SummaryPayload,
}

fn summary_eq(x: &SummaryPayload, y: &SummaryPayload) -> bool {
    x.product_id.as_deref().unwrap_or("") == y.product_id.as_deref().unwrap_or("")
        && x.session_id == y.session_id
        && x.summary == y.summary
        && x.replaces == y.replaces
        && x.ts == y.ts
        && x.forwarded_at.unwrap_or(0.0) == y.forwarded_at.unwrap_or(0.0)
}

#[pymethods]
impl PySummaryPayload {
    #[new]
    #[pyo3(signature = (product_id=None, session_id=None, summary="", replaces=0, forwarded_at=None, *, ts=None))]
    fn new(
        product_id: Option<String>,
        session_id: Option<String>,
        summary: &str,
        replaces: u64,
        forwarded_at: Option<f64>,
        ts: Option<String>,
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

    #[classattr]
    fn __dataclass_fields__(py: Python<'_>) -> PyResult<Py<PyAny>> {
        let none = || py.None().into_bound(py);
        dataclass_fields(
            py,
            "SummaryPayload",
            vec![
                ("product_id", "str", PyString::new(py, "").into_any()),
                ("session_id", "Optional[str]", none()),
                ("summary", "str", PyString::new(py, "").into_any()),
                ("replaces", "int", 0i64.into_pyobject(py)?.into_any()),
                (
                    "forwarded_at",
                    "float",
                    0.0f64.into_pyobject(py)?.into_any(),
                ),
                ("ts", "Optional[str]", none()),
            ],
        )
    }

    #[classattr]
    fn __match_args__(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
        match_args(py, SUMMARY_FIELDS)
    }

    /// The product; `""` when the payload had none (0.13.0's default).
    #[getter]
    fn get_product_id(&self) -> &str {
        self.inner.product_id.as_deref().unwrap_or("")
    }
    #[setter]
    fn set_product_id(&mut self, value: Option<String>) {
        self.inner.product_id = value.map(Into::into);
    }
    #[getter]
    fn get_session_id(&self) -> Option<&str> {
        self.inner.session_id.as_deref()
    }
    #[setter]
    fn set_session_id(&mut self, value: Option<String>) {
        self.inner.session_id = value.map(Into::into);
    }
    #[getter]
    fn get_summary(&self) -> &str {
        &self.inner.summary
    }
    #[setter]
    fn set_summary(&mut self, value: String) {
        self.inner.summary = value.into();
    }
    /// The README's name of `summary`.
    #[getter]
    fn get_content(&self) -> &str {
        &self.inner.summary
    }
    #[setter]
    fn set_content(&mut self, value: String) {
        self.inner.summary = value.into();
    }
    #[getter]
    fn get_replaces(&self) -> u64 {
        self.inner.replaces
    }
    #[setter]
    fn set_replaces(&mut self, value: u64) {
        self.inner.replaces = value;
    }
    #[getter]
    fn get_ts(&self) -> Option<&str> {
        self.inner.ts.as_deref()
    }
    #[setter]
    fn set_ts(&mut self, value: Option<String>) {
        self.inner.ts = value.map(Into::into);
    }
    /// Unix seconds; 0.0 when the payload had none (0.13.0's default).
    #[getter]
    fn get_forwarded_at(&self) -> f64 {
        self.inner.forwarded_at.unwrap_or(0.0)
    }
    #[setter]
    fn set_forwarded_at(&mut self, value: Option<f64>) {
        self.inner.forwarded_at = value;
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
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let json = json_dumps(py, data)?;
        let inner: SummaryPayload = serde_json::from_str(&json)
            .map_err(|e| errors::invalid(py, format!("not a summary payload: {e}")))?;
        Ok(Self { inner })
    }

    /// `copy.replace` (3.13): `dataclasses.replace`.
    #[pyo3(signature = (**changes))]
    fn __replace__<'py>(
        slf: &Bound<'py, Self>,
        changes: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        replace_via_dataclasses(slf.as_any(), changes)
    }

    /// Pickles through the canonical dict (dataclasses pickle; so do these).
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        reduce_via_dict(slf.as_any())
    }

    fn __copy__(&self) -> Self {
        self.clone()
    }

    fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> Self {
        self.clone()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let py = other.py();
        Ok(match other.cast::<Self>() {
            Ok(o) => summary_eq(&self.inner, &o.borrow().inner)
                .into_pyobject(py)?
                .to_owned()
                .into_any()
                .unbind(),
            Err(_) => py.NotImplemented(),
        })
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        dataclass_repr(slf.as_any(), "SummaryPayload", SUMMARY_FIELDS)
    }
}

/// The Python object for a decoded event.
pub(crate) fn event_to_py(py: Python<'_>, event: Event) -> PyResult<Py<PyAny>> {
    Ok(match event {
        Event::Actions(inner) => Py::new(py, PyActionsPayload::from_core(inner))?.into_any(),
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
