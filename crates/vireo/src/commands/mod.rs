//! One module per command group; each turns parsed arguments into client calls and output.

mod events;
mod host;
mod migrate;
mod net;
mod pool;
mod serve;
mod snapshot;
mod vm;
mod volume;

use clap::{ArgMatches, CommandFactory};

use crate::cli::{Cli, Command};
use crate::connection;
use crate::output;

pub async fn run(cli: Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args, cli.connection.socket).await,
        Command::Vm(command) => vm::run(command, connection::endpoint(&cli.connection, matches)?).await,
        Command::Pool(command) => pool::run(command, connection::endpoint(&cli.connection, matches)?).await,
        Command::Volume(command) => volume::run(command, connection::endpoint(&cli.connection, matches)?).await,
        Command::Snapshot(command) => snapshot::run(command, connection::endpoint(&cli.connection, matches)?).await,
        Command::Net(command) => net::run(command, connection::endpoint(&cli.connection, matches)?).await,
        Command::Host(command) => host::run(command, connection::endpoint(&cli.connection, matches)?).await,
        Command::Events(args) => events::run(args, connection::endpoint(&cli.connection, matches)?).await,
        Command::Completions { shell } => {
            // Generated into memory first: clap_complete panics when its writer fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "vireo", &mut script);
            output::write_stdout(&script)
        }
    }
}
