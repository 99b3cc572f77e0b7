//! `autoplay`: tail a connector stream (`listen`), run a connector (`connector`), or
//! see the whole system work offline (`demo`).
//!
//! A thin shell: flags are parsed here and handed to `autoplay_sdk` (the client) and
//! `autoplay_connector` (the server).

mod cli;
mod connector;
mod demo;
mod listen;
mod output;
mod signal;
mod traffic;

use std::fmt;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

/// Exit status of a fatal HTTP status or bad arguments (clap uses 2 for usage errors too).
const EXIT_USAGE: u8 = 2;
/// Exit status of everything else that went wrong (retries exhausted, I/O).
const EXIT_FAILURE: u8 = 1;

/// What ends a command early: a message for stderr and an exit status.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    /// Bad arguments or a fatal HTTP status: status 2.
    pub fn usage(message: impl fmt::Display) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.to_string(),
        }
    }

    /// Anything else: status 1.
    pub fn failure(message: impl fmt::Display) -> Self {
        Self {
            code: EXIT_FAILURE,
            message: message.to_string(),
        }
    }
}

impl From<autoplay_sdk::Error> for CliError {
    fn from(e: autoplay_sdk::Error) -> Self {
        use autoplay_sdk::Error;
        match e {
            // The SDK's advice names its own option; here it is a flag or a variable.
            Error::FatalStatus {
                status: 401,
                ref url,
                credentials_sent: false,
            } => CliError::usage(format!(
                "no token: pass --token or set AUTOPLAY_TOKEN (the connector answered 401 Unauthorized for {url})"
            )),
            Error::FatalStatus { .. } | Error::InvalidConfig(_) => CliError::usage(e),
            _ => CliError::failure(e),
        }
    }
}

/// glibc's fast bins off, before any thread starts: a connector frees small
/// blocks (parsed webhooks, Redis replies) among large ones (bodies, pipelines),
/// and each large request or free then merges the fast bins again
/// (`malloc_consolidate`, `unlink_chunk`: a fifth of the connector's CPU under
/// Redis ingest). Without them small frees go to the per-thread cache and are
/// merged as they come. Measured in `docs/performance.md` ("Connector: glibc's
/// fast bins off"); other allocators (musl, a `#[global_allocator]`) have no
/// such option.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets a parameter of glibc's allocator; called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MXFAST, 0);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    // Exits 2 on bad arguments, 0 for --help and --version.
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Connector(_) => "info",
        // The engine's warnings (fatal status, giving up, oversized event) repeat what
        // the CLI already says on stderr, through the hooks and the final error.
        Command::Listen(_) | Command::Demo(_) => "warn,autoplay_sdk::engine=error",
    };
    if let Err(e) = init_logging(cli.log_level.as_deref(), default_filter) {
        return report(e);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return report(CliError::failure(format!("cannot start the runtime: {e}"))),
    };
    let result = runtime.block_on(async {
        let shutdown = signal::Shutdown::install()
            .map_err(|e| CliError::failure(format!("cannot install signal handlers: {e}")))?;
        match cli.command {
            Command::Listen(args) => listen::run(args, shutdown).await,
            Command::Connector(args) => connector::run(args, shutdown).await,
            Command::Demo(args) => demo::run(args, shutdown).await,
        }
    });
    // Do not wait on background work (a DNS lookup, a reconnect delay) to exit.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

fn report(e: CliError) -> ExitCode {
    output::status(format_args!("error: {}", e.message));
    ExitCode::from(e.code)
}

/// Logs go to stderr; `--log-level` wins over `RUST_LOG`, which wins over the default.
fn init_logging(flag: Option<&str>, default: &str) -> Result<(), CliError> {
    let filter = match flag {
        Some(spec) => EnvFilter::try_new(spec)
            .map_err(|e| CliError::usage(format!("invalid --log-level {spec:?}: {e}")))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default)),
    };
    // Colours only for a terminal that has not asked for none.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    Ok(())
}
