//! `autoplay_sdk::Error` as the Python exceptions of `autoplay_sdk._errors`.

use autoplay_sdk::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Builds the Python exception for an SDK error.
pub(crate) fn to_py(py: Python<'_>, error: Error) -> PyErr {
    match make(py, &error) {
        Ok(err) => err,
        Err(import_failed) => import_failed,
    }
}

fn make(py: Python<'_>, error: &Error) -> PyResult<PyErr> {
    let module = py.import("autoplay_sdk._errors")?;
    let message = error.to_string();
    let value = match error {
        Error::FatalStatus {
            status,
            url,
            credentials_sent: _,
        } => module
            .getattr("FatalStatusError")?
            .call1((message, *status, url.clone()))?,
        Error::RetriesExhausted {
            attempts,
            url,
            last_failure,
        } => module.getattr("RetriesExhaustedError")?.call1((
            message,
            *attempts,
            url.clone(),
            last_failure.to_string(),
        ))?,
        Error::InvalidConfig(_) => module.getattr("InvalidConfigError")?.call1((message,))?,
        Error::AlreadyRunning => module.getattr("AlreadyRunningError")?.call1((message,))?,
        _ => module.getattr("SdkError")?.call1((message,))?,
    };
    Ok(PyErr::from_value(value))
}

/// An invalid argument, as `InvalidConfigError` (a `ValueError`).
pub(crate) fn invalid(py: Python<'_>, message: impl Into<String>) -> PyErr {
    to_py(py, Error::InvalidConfig(message.into()))
}

/// For failures that are not the SDK's (a thread could not start).
pub(crate) fn runtime(message: impl Into<String>) -> PyErr {
    PyRuntimeError::new_err(message.into())
}
