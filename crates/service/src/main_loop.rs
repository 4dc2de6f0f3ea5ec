//! The body of a daemon's or CLI's `main`.

use std::fmt::Display;
use std::process::ExitCode;

/// Runs `main` on a multi-threaded tokio runtime. An error is printed as `error: ...` (with its
/// causes, for `anyhow` errors) and the process exits with status 1.
pub fn block_on_main<E: Display>(main: impl Future<Output = Result<(), E>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(main);
    // Blocking work still running (a proof on a blocking thread) does not hold the exit up:
    // everything that matters is on disk before it is acted on.
    runtime.shutdown_timeout(std::time::Duration::from_secs(3));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
