//! Taking the GIL from the core's worker threads, cheaply.
//!
//! On a thread Python did not create, every `PyGILState_Ensure`/`Release` pair
//! builds and tears down a Python thread state. A worker calls into Python once per
//! event, so each worker keeps its thread state for its lifetime instead: one
//! `PyGILState_Ensure` that is never released, with the GIL itself let go at once.
//! Later `Python::attach` calls then only take and drop the lock.

use std::cell::Cell;

use pyo3::prelude::*;

thread_local! {
    static PINNED: Cell<bool> = const { Cell::new(false) };
}

/// `Python::attach` for a thread that will call into Python many times.
pub(crate) fn attach<F, R>(f: F) -> R
where
    F: for<'py> FnOnce(Python<'py>) -> R,
{
    PINNED.with(|pinned| {
        if !pinned.get() {
            pinned.set(true);
            // SAFETY: the interpreter is initialised (this extension module is loaded
            // in it). `PyGILState_Ensure` gives this thread a thread state and the
            // GIL; `PyEval_SaveThread` releases the GIL and keeps the thread state,
            // which later `PyGILState_Ensure`/`Release` pairs (inside
            // `Python::attach`) reuse. The state is reclaimed with the interpreter.
            unsafe {
                if pyo3::ffi::Py_IsInitialized() != 0 {
                    let _ = pyo3::ffi::PyGILState_Ensure();
                    pyo3::ffi::PyEval_SaveThread();
                }
            }
        }
    });
    Python::attach(f)
}
