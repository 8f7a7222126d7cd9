//! `vireo`: the daemon (`vireo serve`) and the command-line client in one binary.
//!
//! This crate owns the command line: parsing (`cli`), choosing the daemon to talk to
//! (`connection`), building specs from flags and files (`spec_args`), the commands
//! themselves (`commands`), the console attach (`console`), what gets printed
//! (`output`) and progress on a terminal (`progress`). It holds no VM logic: the
//! daemon lives in `vireo-server`, and the client commands only speak the REST API
//! through `vireo-client`.
//!
//! Every failure ends as exactly one `error: ...` line on stderr and exit code 1;
//! usage errors keep clap's own report and exit code 2.

mod cli;
mod commands;
mod connection;
mod console;
mod output;
mod paths;
mod progress;
mod spec_args;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::Cli;

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            return fail(&anyhow::Error::new(err).context("cannot start the async runtime"));
        }
    };
    let result = runtime.block_on(commands::run(cli, &matches));
    // Tokio reads stdin on a blocking thread that only returns after the next keystroke;
    // waiting for it would hang the exit after a console detach.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.downcast_ref::<output::StdoutClosed>().is_some() => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

fn fail(err: &anyhow::Error) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "error: {}", error_line(err));
    ExitCode::FAILURE
}

/// The error and its causes on one line, each cause added only if the text so far does
/// not already say it (client errors quote their source themselves).
fn error_line(err: &anyhow::Error) -> String {
    let mut line = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        let core = text.split(" (os error ").next().unwrap_or(&text);
        if !line.contains(core) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line.lines().map(str::trim).filter(|part| !part.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn error_line_joins_causes_once() {
        let io = std::io::Error::from_raw_os_error(2);
        let err = Err::<(), _>(io).context("cannot read spec.toml").unwrap_err();
        assert_eq!(error_line(&err), "cannot read spec.toml: No such file or directory (os error 2)");
        let client = vireo_client::ClientError::Connect {
            target: "/s.sock".into(),
            source: std::io::Error::from_raw_os_error(111),
        };
        let line = error_line(&anyhow::Error::new(client));
        assert_eq!(line, "cannot reach the vireo daemon at /s.sock: Connection refused (is `vireo serve` running?)");
        assert_eq!(error_line(&anyhow::anyhow!("two\n  lines")), "two lines");
    }
}
