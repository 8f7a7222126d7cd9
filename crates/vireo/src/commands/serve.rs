//! `vireo serve`: resolve the daemon's paths and hand over to `vireo-server`.

use std::path::PathBuf;

use vireo_client::{default_data_dir, default_socket};

use crate::cli::ServeArgs;
use crate::paths::{absolute, current_dir};

/// `socket` is the global `--socket` (or `VIREO_SOCKET`), shared with the clients.
pub async fn run(args: ServeArgs, socket: Option<PathBuf>) -> anyhow::Result<()> {
    // The daemon hands paths to QEMU and must not depend on the directory it was started from.
    let cwd = current_dir()?;
    let data_dir = absolute(&cwd, &args.data_dir.unwrap_or_else(default_data_dir));
    let socket = absolute(&cwd, &socket.unwrap_or_else(|| default_socket(&data_dir)));
    let default_network = !args.no_default_network;
    let log_format = args.log_format;
    vireo_server::serve(vireo_server::ServeOptions {
        data_dir,
        socket,
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        default_network,
        log_format,
        history_interval: std::time::Duration::from_secs(args.history_interval),
    })
    .await
}
