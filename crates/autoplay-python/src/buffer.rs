//! `EventBuffer`: the core's bounded, thread-safe buffer holding Python objects.

use std::sync::Arc;

use autoplay_sdk::buffer::{BufferItem, EventBuffer};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::models::PySummaryPayload;

/// A buffered Python payload and its kind.
#[derive(Clone)]
pub(crate) struct Item {
    obj: Arc<Py<PyAny>>,
    summary: bool,
}

impl BufferItem for Item {
    fn is_summary(&self) -> bool {
        self.summary
    }
}

fn is_summary(obj: &Bound<'_, PyAny>) -> bool {
    if obj.is_instance_of::<PySummaryPayload>() {
        return true;
    }
    let kind = if let Ok(dict) = obj.cast::<PyDict>() {
        dict.get_item("type").ok().flatten()
    } else {
        obj.getattr("type").ok()
    };
    kind.and_then(|k| k.extract::<String>().ok())
        .is_some_and(|k| k == "summary")
}

/// Thread-safe in-memory buffer of payloads; full means the oldest is dropped.
#[pyclass(module = "autoplay_sdk", name = "EventBuffer", subclass)]
pub(crate) struct PyEventBuffer {
    inner: EventBuffer<Item>,
    on_drop: Option<Py<PyAny>>,
}

fn to_list<'py>(py: Python<'py>, items: Vec<Item>) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, items.iter().map(|i| i.obj.clone_ref(py)))
}

#[pymethods]
impl PyEventBuffer {
    #[new]
    #[pyo3(signature = (max_size=1000, on_drop=None))]
    fn new(py: Python<'_>, max_size: i64, on_drop: Option<Py<PyAny>>) -> PyResult<Self> {
        if max_size < 0 {
            return Err(crate::errors::invalid(
                py,
                format!("max_size must be >= 0 (0 = unlimited), got {max_size}"),
            ));
        }
        Ok(Self {
            inner: EventBuffer::new(max_size as usize),
            on_drop: on_drop.filter(|f| !f.is_none(py)),
        })
    }

    /// Adds a payload (wire it as a callback). When the buffer is full the oldest
    /// payload is dropped and `on_drop(payload)` is called with it.
    fn add(&self, py: Python<'_>, payload: &Bound<'_, PyAny>) {
        let summary = is_summary(payload);
        let dropped = self.inner.push(Item {
            obj: Arc::new(payload.clone().unbind()),
            summary,
        });
        if let (Some(dropped), Some(on_drop)) = (dropped, &self.on_drop)
            && let Err(e) = on_drop.call1(py, (dropped.obj.clone_ref(py),))
        {
            crate::logging::log_callback_error(py, "EventBuffer's on_drop", e);
        }
    }

    /// Returns every payload, oldest first, and empties the buffer.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        to_list(py, self.inner.drain())
    }

    /// The newest `n` payloads (all with `None`), oldest first, without removing them.
    #[pyo3(signature = (n=None))]
    fn peek<'py>(&self, py: Python<'py>, n: Option<usize>) -> PyResult<Bound<'py, PyList>> {
        to_list(py, self.inner.peek(n))
    }

    /// Drains only actions and/or summaries, keeping the rest in order.
    #[pyo3(signature = (actions=true, summaries=true))]
    fn drain_by_type<'py>(
        &self,
        py: Python<'py>,
        actions: bool,
        summaries: bool,
    ) -> PyResult<Bound<'py, PyList>> {
        to_list(py, self.inner.drain_by_type(actions, summaries))
    }

    /// Removes every payload.
    fn clear(&self) {
        self.inner.clear();
    }

    /// How many payloads are held.
    #[getter]
    fn size(&self) -> usize {
        self.inner.len()
    }

    /// Whether the buffer is empty.
    #[getter]
    fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The capacity; 0 means unbounded.
    #[getter]
    fn max_size(&self) -> usize {
        self.inner.max_size()
    }

    /// Payloads dropped because the buffer was full.
    #[getter]
    fn evicted_count(&self) -> u64 {
        self.inner.evicted_count()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __bool__(&self) -> bool {
        true
    }

    fn __repr__(&self) -> String {
        format!(
            "EventBuffer(size={}, max_size={})",
            self.inner.len(),
            self.inner.max_size()
        )
    }
}
