//! `vireo serve`: set up the data directory, the store and the listeners,
//! recover running VMs, then serve the API until SIGINT/SIGTERM. VMs keep
//! running when the daemon stops; the next daemon re-attaches to them.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::middleware::from_fn_with_state;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::{Mode, umask};
use tokio::net::{TcpListener, UnixListener};
use vireo_store::SqliteStore;

use crate::api::{AppState, Peer, metrics_router, observed, require_token, router};
use crate::audit::AuditLog;
use crate::logging::LogFormat;
use crate::manager::VmManager;
use crate::token::ApiToken;

pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub listen: Option<SocketAddr>,
    /// Also serve `GET /metrics` alone, without a token, on this address.
    pub metrics_listen: Option<SocketAddr>,
    /// Create the `default` NAT network on first start (when running as root).
    pub default_network: bool,
    pub log_format: LogFormat,
    /// How often every VM is sampled for `GET /v1/vms/{name}/history`.
    pub history_interval: std::time::Duration,
}

pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    crate::logging::init(opts.log_format);
    // Everything the daemon creates (database, token, sockets, logs) is private to its user.
    umask(Mode::from_bits_truncate(0o077));
    create_private_dir(&opts.data_dir)?;
    let _lock = lock_data_dir(&opts.data_dir)?;
    let store = SqliteStore::open(&opts.data_dir.join("vireo.db"))?;
    let token = ApiToken::load_or_create(&opts.data_dir)?;
    let audit = Arc::new(AuditLog::open(&opts.data_dir)?);
    let qemu_binary = vireo_qemu::find_qemu_binary()?;
    create_private_dir(&opts.data_dir.join("vms"))?;
    let manager = VmManager::new(Arc::new(store), qemu_binary, vireo_qemu::gather_accel_facts(), &opts.data_dir);
    let default_pool = opts.data_dir.join("pools").join(crate::manager::DEFAULT_POOL);
    manager.ensure_default_pool(default_pool).await.map_err(|e| anyhow::anyhow!(e.message()))?;
    manager.remove_storage_leftovers().await.map_err(|e| anyhow::anyhow!(e.message()))?;
    manager.restore_networks().await.map_err(|e| anyhow::anyhow!(e.message()))?;
    if opts.default_network
        && nix::unistd::geteuid().is_root()
        && let Err(err) = manager.ensure_default_network().await
    {
        tracing::warn!(error = %err.message(), "cannot create the default network; VMs can still use other networks");
    }
    manager.recover().await.map_err(|e| anyhow::anyhow!(e.message()))?;
    manager.start_history(opts.history_interval);

    // Event streams never end by themselves; graceful shutdown would wait for them forever.
    let events = manager.events().clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        events.close();
    });
    let state = AppState::new(manager);
    let api = router(state.clone());
    // Every listener is bound before any serves: once the Unix socket answers, the
    // TCP ones do too (scripts and tests wait on the socket), and a port already
    // taken stops the daemon before it accepts anything.
    let tcp = bind_tcp(opts.listen).await?;
    let metrics = bind_tcp(opts.metrics_listen).await?;
    let unix = bind_unix_socket(&opts.socket)?;
    tracing::info!(socket = %opts.socket.display(), data_dir = %opts.data_dir.display(), "serving");
    let mut servers = tokio::task::JoinSet::new();
    // The web console's files need no token (they hold no data); the API behind them does on TCP.
    let unix_app =
        observed(vireo_web::router().merge(api.clone()), audit.clone()).into_make_service_with_connect_info::<Peer>();
    servers.spawn(axum::serve(unix, unix_app).with_graceful_shutdown(shutdown_signal()).into_future());
    if let (Some(tcp), Some(addr)) = (tcp, opts.listen) {
        tracing::info!(%addr, "serving on TCP (bearer token required)");
        // Outside the token check, so refused calls are logged and audited too.
        let api = api.layer(from_fn_with_state(token, require_token));
        let app = observed(vireo_web::router().merge(api), audit).into_make_service_with_connect_info::<Peer>();
        servers.spawn(axum::serve(tcp, app).with_graceful_shutdown(shutdown_signal()).into_future());
    }
    if let (Some(metrics), Some(addr)) = (metrics, opts.metrics_listen) {
        tracing::info!(%addr, "serving metrics on TCP (read-only, no token)");
        servers
            .spawn(axum::serve(metrics, metrics_router(state)).with_graceful_shutdown(shutdown_signal()).into_future());
    }
    while let Some(result) = servers.join_next().await {
        result.context("API server task failed")?.context("API server failed")?;
    }
    let _ = std::fs::remove_file(&opts.socket);
    tracing::info!("stopped; VMs keep running");
    Ok(())
}

async fn bind_tcp(addr: Option<SocketAddr>) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = addr else { return Ok(None) };
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    Ok(Some(listener))
}

fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("cannot create directory {}", path.display()))
}

/// One daemon per data directory: a second one would fight over the same VMs.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<Flock<File>> {
    let path = data_dir.join("daemon.lock");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| anyhow::anyhow!("another vireo daemon already uses {} ({errno})", data_dir.display()))
}

fn bind_unix_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!("{} is in use by another daemon", path.display());
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot remove stale socket {}", path.display())),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir(parent)?;
    }
    UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
