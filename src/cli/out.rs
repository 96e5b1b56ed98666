//! Standard output for every verb. `println!` panics when the reader went
//! away (`agent-runtime audit list | head -1`); these helpers end the process
//! quietly instead, with status 0, as ripgrep and fd do (GNU tools die of
//! SIGPIPE, which a shell reports as 141; exiting 0 keeps `set -o pipefail`
//! scripts that only wanted the first lines working). Any other write error
//! (a full disk behind `>`) is reported on stderr with status 1.

use std::io::Write;

/// Writes `args` and a newline to stdout (what `outln!` expands to).
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        failed(&e)
    }
}

/// Writes `args` to stdout without a newline and flushes it.
pub fn text(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        failed(&e)
    }
}

/// Writes raw bytes to stdout and flushes them.
pub fn bytes(b: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(b).and_then(|()| out.flush()) {
        failed(&e)
    }
}

/// Ends the process after a failed write to stdout: quietly (status 0) when
/// the reader closed the pipe, else with the error on stderr (status 1).
pub fn failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0)
    }
    eprintln!("agent-runtime: cannot write to standard output: {e}");
    std::process::exit(1)
}
