//! Every call into Python from a thread Python did not create goes through here.
//!
//! Two things are decided here:
//!
//! - **Never after finalisation began.** A thread that takes the GIL while the
//!   interpreter finalises is ended by CPython with `pthread_exit`, which unwinds
//!   through Rust frames and aborts the process (SIGABRT); once finalisation is over,
//!   PyO3 panics instead ("The Python interpreter is not initialized"). So the
//!   package's exit hook ([`close`]), which runs before finalisation, shuts a gate:
//!   from then on no Rust thread enters Python, and the hook waits (bounded) for the
//!   calls already inside to leave. `Py_IsFinalizing` is checked as well, for exits
//!   that skip the hook.
//! - **Cheaply, on the worker threads.** On a thread Python did not create, every
//!   `PyGILState_Ensure`/`Release` pair builds and tears down a Python thread state.
//!   A worker calls into Python once per event, so [`attach`] keeps the thread state
//!   for the thread's lifetime: one `PyGILState_Ensure` that is never released, with
//!   the GIL let go at once. Later attaches then only take and drop the lock.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// Set by [`close`]: no Rust thread may enter Python any more.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// Calls from Rust threads that passed the gate and have not left yet.
static INSIDE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static PINNED: Cell<bool> = const { Cell::new(false) };
}

/// Leaves the gate when dropped, also on a panic.
struct Inside;

impl Inside {
    /// Enters the gate, or `None` when Python may no longer be called.
    fn enter() -> Option<Inside> {
        // Counted before the flag is read (both SeqCst): `close` sets the flag and
        // then waits for the count, so it never misses a call that got through.
        INSIDE.fetch_add(1, Ordering::SeqCst);
        let inside = Inside;
        if CLOSED.load(Ordering::SeqCst) || finalizing() {
            return None;
        }
        Some(inside)
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `Python::attach` for a thread that will call into Python many times (a worker);
/// `None`, without touching Python, once the interpreter is shutting down.
pub(crate) fn attach<F, R>(f: F) -> Option<R>
where
    F: for<'py> FnOnce(Python<'py>) -> R,
{
    let _inside = Inside::enter()?;
    PINNED.with(|pinned| {
        if !pinned.get() {
            pinned.set(true);
            // SAFETY: the interpreter is initialised and not finalising (checked by
            // the gate, which finalisation cannot pass until we leave). `PyGILState_Ensure`
            // gives this thread a thread state and the GIL; `PyEval_SaveThread` releases
            // the GIL and keeps the thread state, which later `PyGILState_Ensure`/`Release`
            // pairs (inside `Python::attach`) reuse. The state is reclaimed with the
            // interpreter.
            unsafe {
                if pyo3::ffi::Py_IsInitialized() != 0 {
                    let _ = pyo3::ffi::PyGILState_Ensure();
                    pyo3::ffi::PyEval_SaveThread();
                }
            }
        }
    });
    Python::try_attach(f)
}

/// `Python::attach` for an occasional call (a hook, a log record): no thread state
/// is kept. `None` once the interpreter is shutting down.
pub(crate) fn attach_once<F, R>(f: F) -> Option<R>
where
    F: for<'py> FnOnce(Python<'py>) -> R,
{
    let _inside = Inside::enter()?;
    Python::try_attach(f)
}

/// Shuts the gate, then waits with the GIL released (up to `timeout`) for the calls
/// already inside to leave. Returns whether they all did.
pub(crate) fn close(py: Python<'_>, timeout: Duration) -> bool {
    CLOSED.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + timeout;
    py.detach(|| {
        while INSIDE.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    })
}

/// `Py_IsFinalizing()`, looked up at run time: the stable ABI this module is built
/// for (3.10) does not have it (3.13 added it; 3.10 to 3.12 export `_Py_IsFinalizing`).
fn finalizing() -> bool {
    type IsFinalizing = unsafe extern "C" fn() -> c_int;
    static FUNCTION: OnceLock<Option<IsFinalizing>> = OnceLock::new();
    let function = FUNCTION.get_or_init(|| {
        [c"Py_IsFinalizing", c"_Py_IsFinalizing"]
            .into_iter()
            .find_map(|name| {
                let address = lookup(name.as_ptr());
                // SAFETY: both names are CPython's `int (void)` function of that name.
                (!address.is_null())
                    .then(|| unsafe { std::mem::transmute::<*mut c_void, IsFinalizing>(address) })
            })
    });
    // SAFETY: the function reads the runtime's state; CPython documents it as callable
    // from any thread, attached or not.
    function.is_some_and(|f| unsafe { f() } != 0)
}

#[cfg(unix)]
fn lookup(name: *const c_char) -> *mut c_void {
    unsafe extern "C" {
        fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    }
    // RTLD_DEFAULT: the global scope, where the interpreter's symbols are.
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    let global = -2isize as *mut c_void;
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    let global = std::ptr::null_mut();
    // SAFETY: `name` is a NUL-terminated string; dlsym only reads it.
    unsafe { dlsym(global, name) }
}

#[cfg(not(unix))]
fn lookup(_name: *const c_char) -> *mut c_void {
    // Elsewhere only the exit hook's gate guards finalisation.
    std::ptr::null_mut()
}
