//! The daemon's runtime, on the transport side: `flaskbbd serve` starts the
//! [`Daemon`], binds (or takes from systemd) the socket, starts the background tasks
//! (signals, the systemd watchdog, the registry poll, the pruning of expired failure
//! counts, the metrics listener), serves until SIGTERM or SIGINT, and drains. As
//! mini-redis's `server::run`, it owns the listeners and the shutdown; the core it
//! runs knows nothing of them.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::sync::watch;

use crate::{
    daemon::{Daemon, StartError},
    server, systemd,
};

/// Runs the daemon on the configuration at `config_path` until SIGTERM or SIGINT, then
/// drains: the work of `flaskbbd serve`.
pub(crate) fn serve(config_path: &Path) -> Result<(), StartError> {
    let files = crate::process::raise_open_files_limit();
    let daemon = Daemon::start(config_path, Box::new(systemd::Notifier::from_env()))?;
    let config = daemon.config();
    let wanted = config.daemon.max_connections as u64 + 64;
    if files < wanted {
        tracing::warn!(
            open_files = files,
            max_connections = config.daemon.max_connections,
            "the open-files limit is below daemon.max_connections: raise LimitNOFILE (or ulimit -n), or lower max_connections"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.daemon.worker_count().max(2))
        .enable_all()
        .build()
        .map_err(|e| StartError::Other(format!("starting the async runtime: {e}")))?;
    let served = runtime.block_on(run(daemon));
    // Drained: what is left is at most a thread stuck in a hung plugin call (its
    // request long answered), which is not waited for.
    runtime.shutdown_timeout(Duration::from_millis(500));
    served
}

/// Serves on the socket systemd passed, or on `daemon.socket`, with the background
/// tasks beside it; returns once drained after SIGTERM/SIGINT.
async fn run(daemon: Arc<Daemon>) -> Result<(), StartError> {
    let config = daemon.config();
    // Bound first: a port taken fails the start before the socket exists.
    let metrics = match config.metrics.address() {
        Some(addr) => Some((
            addr,
            tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                StartError::Other(format!(
                    "{}: metrics.listen: cannot listen on {addr}: {e} (choose a free port, or remove metrics.listen)",
                    config.path.display()
                ))
            })?,
        )),
        None => None,
    };
    // Under socket activation systemd owns the socket file; else we bind and own it.
    let (listener, owned) = match systemd::listen_socket().map_err(StartError::Other)? {
        Some(l) => (
            tokio::net::UnixListener::from_std(l)
                .map_err(|e| StartError::Other(format!("the socket systemd passed: {e}")))?,
            None,
        ),
        None => {
            let socket = config.daemon.socket.clone();
            let listener = server::bind(&socket, config.daemon.socket_mode_bits())
                .map_err(StartError::Other)?;
            (listener, Some(socket))
        }
    };
    let address = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(signals(daemon.clone(), stop).await?);
    if let (Some(interval), Some(socket)) = (systemd::watchdog_interval(), address.clone()) {
        tokio::spawn(watchdog(daemon.clone(), socket, interval));
    }
    if config.daemon.registry_poll_ms > 0 {
        tokio::spawn(registry_poll(
            daemon.clone(),
            Duration::from_millis(config.daemon.registry_poll_ms),
        ));
    }
    tokio::spawn(prune_penalties(daemon.clone(), PRUNE_EVERY));
    if let Some((addr, listener)) = metrics {
        tracing::info!(address = %addr, "serving metrics at /metrics");
        let d = daemon.clone();
        tokio::spawn(crate::metrics::serve(listener, move || d.metrics_text()));
    }
    let shown = address
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(unnamed)".into());
    tracing::info!(socket = %shown, generation = daemon.generation().id, activated = owned.is_none(), "listening");
    daemon
        .notifier
        .ready(&format!("{} on {shown}", daemon.status_line()));
    server::serve(daemon.clone(), listener, stopped).await;
    if let Some(socket) = owned {
        let _ = std::fs::remove_file(&socket);
    }
    daemon.shutdown();
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP reloads; SIGTERM or SIGINT tells the server to stop accepting and drain.
/// Installs the handlers now (so a signal sent right after READY is not lost) and
/// returns the task that waits for them.
async fn signals(
    d: Arc<Daemon>,
    stop: watch::Sender<bool>,
) -> Result<impl std::future::Future<Output = ()>, StartError> {
    use tokio::signal::unix::{signal, SignalKind};
    let install = |kind: SignalKind| {
        signal(kind).map_err(|e| StartError::Other(format!("installing a signal handler: {e}")))
    };
    let (mut term, mut int, mut hup) = (
        install(SignalKind::terminate())?,
        install(SignalKind::interrupt())?,
        install(SignalKind::hangup())?,
    );
    Ok(async move {
        loop {
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading {}", d.config_path.display());
                    let d2 = d.clone();
                    let _ = tokio::task::spawn_blocking(move || d2.reload()).await;
                    continue;
                }
            };
            tracing::info!("{which}: no new connections; finishing requests in flight");
            d.notifier.stopping();
            let _ = stop.send(true);
            break;
        }
    })
}

/// Pets systemd's watchdog every `interval`, but only while the request path answers.
async fn watchdog(d: Arc<Daemon>, socket: PathBuf, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        match server::probe(&d, &socket, interval).await {
            Ok(()) => d.notifier.watchdog(),
            Err(e) => tracing::error!(
                "watchdog: the request path did not answer ({e}); not petting the watchdog"
            ),
        }
    }
}

/// How often expired failure counts are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Deletes expired failure counts now and every `every`, so that a flood of failures
/// for names that do not exist (each counted, as known ones are) leaves no lasting
/// rows. Every daemon on a store does it; a delete of nothing costs little.
async fn prune_penalties(d: Arc<Daemon>, every: Duration) {
    loop {
        let d2 = d.clone();
        match tokio::task::spawn_blocking(move || d2.prune_penalties()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!("pruned {n} expired failure count(s)"),
            Ok(Err(e)) => tracing::warn!("pruning expired failure counts: {e}"),
            Err(e) => tracing::error!("pruning expired failure counts panicked: {e}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Picks up instances enabled or disabled through another daemon on the same store.
async fn registry_poll(d: Arc<Daemon>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let d2 = d.clone();
        match tokio::task::spawn_blocking(move || d2.sync_registry()).await {
            Ok(Err(e)) => tracing::warn!("checking plugin_registry: {e}"),
            Err(e) => tracing::error!("checking plugin_registry panicked: {e}"),
            Ok(Ok(_)) => {}
        }
    }
}
