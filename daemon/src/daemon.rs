//! The daemon's core: one [`Daemon`] holds the plugin generation requests use, the
//! store, the worker pool and the authentication flows; it builds and swaps
//! generations (start, reload, `SetPluginEnabled`, another daemon's registry change).
//! [`serve`] runs it: binds (or takes) the socket, starts the background tasks
//! (signals, the systemd watchdog, the registry poll), serves until SIGTERM, drains.
//!
//! The server (`server`) is its transport; this module knows nothing of Varlink.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{atomic::AtomicU64, Arc, RwLock},
    time::Duration,
};

use flaskbbd_bcrypt::MAX_LANES;
use tokio::sync::watch;

use crate::{
    auth::PluginAuthenticationManager,
    config::Config,
    executor::Executor,
    generation::{BuildError, Generation},
    loader::Loader,
    password::{lanes::Lanes, Verifier},
    server,
    store::Store,
    systemd,
};

/// Everything a request needs, shared by all connections.
pub struct Daemon {
    pub config_path: PathBuf,
    generation: RwLock<Arc<Generation>>,
    pub store: Arc<dyn Store>,
    pub executor: Executor,
    pub loader: Loader,
    pub auth: Arc<PluginAuthenticationManager>,
    next_generation: AtomicU64,
    own_uid: u32,
    /// The service manager, when there is one.
    pub notifier: crate::systemd::Notifier,
    /// One reload at a time.
    reloading: std::sync::Mutex<()>,
    /// The `plugin_registry` states last acted on by [`Daemon::sync_registry`].
    registry_seen: std::sync::Mutex<Option<HashMap<String, bool>>>,
}

/// Why enabling or disabling an instance did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum SetEnabledError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Reload(String),
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store could not be opened (its message is part of this one, not a source).
    #[error("database: {0}")]
    Store(crate::store::StoreError),
    /// The plugin generation could not be built (the message lists each problem; it
    /// is not also the error's source, or it would be printed twice).
    #[error("plugins:\n{0}")]
    Plugins(BuildError),
    #[error("{0}")]
    Other(String),
}

impl Daemon {
    /// Reads the configuration, opens (and migrates) the store, and builds the first
    /// plugin generation.
    pub fn start(config_path: &Path) -> Result<Arc<Daemon>, StartError> {
        let config = Arc::new(Config::load(config_path)?);
        for warning in crate::store::loose_files(
            &config.database.url,
            config.database.schema,
            &config.base_dir,
        ) {
            tracing::warn!("{warning}");
        }
        let store = crate::store::open(
            &config.database.url,
            config.database.schema,
            &config.base_dir,
            config.database.connect_timeout(),
        )?;
        let loader = Loader::with_cache(config.plugins.cache_dir.clone());
        // One verification slot per worker (core); every generation's verifier shares it.
        let pool = Arc::new(Lanes::new(
            config.daemon.worker_count(),
            config.auth.bcrypt_lanes,
        ));
        warn_if_logins_near_timeout(&pool, &config);
        let verifier = Arc::new(
            Verifier::with_pool(config.auth.bcrypt_cost, pool)
                .map_err(|e| StartError::Other(e.to_string()))?,
        );
        let generation = build_generation(1, config.clone(), &loader, &*store, verifier)?;
        let pruned = loader.prune_cache();
        if pruned > 0 {
            tracing::info!(removed = pruned, dir = %config.plugins.cache_dir.display(), "removed plugin copies no longer in use");
        }
        // Request threads mostly wait on bcrypt: enough of them that every slot can
        // fill its lanes at the most lanes a reload may set.
        let executor = Executor::new(
            config.daemon.worker_count() * MAX_LANES,
            config.daemon.max_stuck_calls,
        );
        // The async threads are worker_count().max(2): one always stays free.
        executor.set_here_limit(config.daemon.worker_count().max(2) - 1);
        Ok(Arc::new(Daemon {
            config_path: config.path.clone(),
            generation: RwLock::new(Arc::new(generation)),
            store,
            executor,
            loader,
            auth: Arc::new(PluginAuthenticationManager),
            next_generation: AtomicU64::new(2),
            own_uid: effective_uid(),
            notifier: crate::systemd::Notifier::from_env(),
            reloading: std::sync::Mutex::new(()),
            registry_seen: std::sync::Mutex::new(None),
        }))
    }

    /// The generation new requests use.
    pub fn generation(&self) -> Arc<Generation> {
        self.generation
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The configuration of the current generation.
    pub fn config(&self) -> Arc<Config> {
        self.generation().config.clone()
    }

    /// Re-reads the configuration and swaps in a new generation; on failure the current
    /// one stays. Requests in flight finish on the generation they started with.
    /// Tells the service manager RELOADING, then READY either way (the daemon keeps
    /// serving).
    pub fn reload(&self) -> Result<u64, String> {
        let _one = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        self.notifier.reloading();
        let result = self.build_next();
        crate::metrics::global().reload(result.is_ok());
        match &result {
            Ok(id) => {
                tracing::info!(generation = id, "reloaded: new plugin generation serving");
                self.notifier.ready(&self.status_line());
            }
            Err(e) => {
                tracing::error!(
                    "reload failed; generation {} keeps serving: {e}",
                    self.generation().id
                );
                let first = e.lines().next().unwrap_or("");
                self.notifier
                    .ready(&format!("reload failed ({first}); {}", self.status_line()));
            }
        }
        result
    }

    fn build_next(&self) -> Result<u64, String> {
        let config = Arc::new(Config::load(&self.config_path).map_err(|e| e.to_string())?);
        let id = self
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let verifier = self.verifier_for(&config)?;
        let lanes = config.auth.bcrypt_lanes;
        let g = build_generation(id, config, &self.loader, &*self.store, verifier.clone())
            .map_err(|e| e.to_string())?;
        *self.generation.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(g);
        verifier.pool().set_lanes(lanes);
        Ok(id)
    }

    /// Enables or disables an instance at once and remembers it in `plugin_registry`:
    /// recorded first, then a new generation is built; if that fails (the plugin does
    /// not load), the record is put back as it was and the current generation stays.
    pub fn set_plugin_enabled(&self, name: &str, enabled: bool) -> Result<(), SetEnabledError> {
        let before = registry_states(&*self.store)?.get(name).copied();
        self.store.set_plugin_enabled(name, enabled)?;
        match self.reload() {
            Ok(_) => Ok(()),
            Err(reason) => {
                let undo = match before {
                    Some(v) => self.store.set_plugin_enabled(name, v),
                    None => self.store.clear_plugin_state(name),
                };
                if let Err(e) = undo {
                    tracing::error!(
                        instance = name,
                        "could not restore plugin_registry after a failed change: {e}"
                    );
                }
                Err(SetEnabledError::Reload(reason))
            }
        }
    }

    /// Rebuilds the generation when `plugin_registry` changed since this daemon last
    /// looked (an instance enabled or disabled through another daemon on the same
    /// database). Returns whether it changed.
    pub fn sync_registry(&self) -> Result<bool, String> {
        let states = registry_states(&*self.store).map_err(|e| e.to_string())?;
        if states == self.generation().registry {
            return Ok(false);
        }
        let mut last = self.registry_seen.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() == Some(&states) {
            // Seen already, and the reload for it failed: do not retry on every poll.
            return Ok(false);
        }
        *last = Some(states);
        drop(last);
        tracing::info!("plugin_registry changed (through another daemon?): reloading");
        self.reload().map(|_| true)
    }

    /// What the daemon's gauges read now.
    fn load(&self) -> crate::metrics::Load {
        let (connections, in_flight) = server::load();
        let g = self.generation();
        crate::metrics::Load {
            connections: connections as u64,
            in_flight: in_flight as u64,
            queued: self.executor.queued() as u64,
            hashes_queued: g.verifier.pool().queued() as u64,
            stuck_calls: self.executor.stuck() as u64,
            generation: g.id,
        }
    }

    /// Every metric, in the Prometheus text format (`GetMetrics`, `metrics.listen`).
    pub fn metrics_text(&self) -> String {
        crate::metrics::global().text(self.load())
    }

    /// What the daemon is doing now, for a person (`GetStatus`, `flaskbbd status`).
    pub fn status(&self) -> crate::proto::Status {
        let metrics = crate::metrics::global();
        let load = self.load();
        let plugins = self
            .generation()
            .plugins()
            .into_iter()
            .map(|plugin| {
                let (calls, failed, mean_ms) = metrics.totals(&plugin.name).read();
                crate::proto::PluginStatus {
                    plugin,
                    calls,
                    failed,
                    mean_ms,
                }
            })
            .collect();
        crate::proto::Status {
            version: env!("CARGO_PKG_VERSION").into(),
            generation: load.generation,
            uptime_seconds: metrics.uptime().as_secs_f64(),
            connections: load.connections,
            in_flight: load.in_flight,
            queued: load.queued,
            hashes_queued: load.hashes_queued,
            stuck_calls: load.stuck_calls,
            last_minute: metrics.last_minute(),
            plugins,
        }
    }

    /// What the daemon is doing, for `STATUS=`.
    pub fn status_line(&self) -> String {
        let g = self.generation();
        let on = g
            .plugins()
            .iter()
            .filter(|p| p.enabled && p.origin != "builtin")
            .count();
        format!("serving generation {} with {on} plugin instance(s)", g.id)
    }

    fn verifier_for(&self, config: &Config) -> Result<Arc<Verifier>, String> {
        let current = self.generation();
        if current.config.auth.bcrypt_cost == config.auth.bcrypt_cost {
            Ok(current.verifier.clone())
        } else {
            let pool = current.verifier.pool();
            warn_if_logins_near_timeout(pool, config);
            Verifier::with_pool(config.auth.bcrypt_cost, pool.clone())
                .map(Arc::new)
                .map_err(|e| e.to_string())
        }
    }

    /// Whether a peer with `uid` may call `org.flaskbb.Admin`.
    pub fn is_admin(&self, uid: Option<u32>) -> bool {
        uid.is_some_and(|u| u == self.own_uid || self.config().daemon.admin_uids.contains(&u))
    }

    /// Whether a peer with `uid` may call `org.flaskbb.Account`: the daemon's own uid
    /// (which may read the database anyway) and `daemon.forum_uids`.
    pub fn is_forum(&self, uid: Option<u32>) -> bool {
        uid.is_some_and(|u| u == self.own_uid || self.config().daemon.forum_uids.contains(&u))
    }
}

/// Logs when, at `config`'s bcrypt cost, a login under load could near the hook
/// timeout (see [`Lanes::timeout_warning`]).
fn warn_if_logins_near_timeout(pool: &Lanes, config: &Config) {
    let timeout = Duration::from_millis(config.daemon.hook_timeout_ms);
    if let Some(w) = pool.timeout_warning(config.auth.bcrypt_cost, timeout) {
        tracing::warn!("{w}");
    }
}

fn registry_states(store: &dyn Store) -> Result<HashMap<String, bool>, crate::store::StoreError> {
    Ok(store.plugin_states()?.into_iter().collect())
}

/// A generation from `config`, with the run-time states in `plugin_registry`.
pub(crate) fn build_generation(
    id: u64,
    config: Arc<Config>,
    loader: &Loader,
    store: &dyn Store,
    verifier: Arc<Verifier>,
) -> Result<Generation, StartError> {
    let states = registry_states(store)?;
    Ok(Generation::build(id, config, loader, verifier, &states)?)
}

impl From<crate::store::StoreError> for StartError {
    fn from(e: crate::store::StoreError) -> StartError {
        StartError::Store(e)
    }
}

impl From<BuildError> for StartError {
    fn from(e: BuildError) -> StartError {
        StartError::Plugins(e)
    }
}

/// The daemon's effective uid.
pub(crate) fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Raises the soft limit on open files to the hard limit: every connection is a file
/// descriptor, and the usual soft limit (1024) is far below `daemon.max_connections`.
/// Returns the limit now in force.
fn raise_open_files_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on our own process with a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

/// Runs the daemon on the configuration at `config_path` until SIGTERM or SIGINT, then
/// drains: the work of `flaskbbd serve`.
pub fn serve(config_path: &Path) -> Result<(), StartError> {
    let files = raise_open_files_limit();
    let daemon = Daemon::start(config_path)?;
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
    daemon.executor.shutdown();
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
        let store = d.store.clone();
        match tokio::task::spawn_blocking(move || store.prune_penalties(chrono::Utc::now())).await {
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
