//! The daemon's core: one [`Daemon`] holds the plugin generation requests use, the
//! store, the worker pool and the counts of what it is
//! serving; it builds and swaps generations (start, reload, `SetPluginEnabled`,
//! another daemon's registry change).
//!
//! It knows nothing of sockets, Varlink or systemd: `runtime` runs it (the socket, the
//! signals, the watchdog, the registry poll), `server` is its transport and counts
//! connections into its [`Traffic`], and a [`Lifecycle`] (systemd's notifier) is told
//! when it reloads.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, RwLock,
    },
    time::Duration,
};

use flaskbbd_bcrypt::MAX_LANES;

use crate::{
    config::Config,
    executor::{ExecError, Executor, Here, OnAbandon},
    generation::{BuildError, Generation},
    loader::Loader,
    password::{lanes::Lanes, Verifier},
    proto::Context,
    request::Request,
    store::Store,
};

/// What the daemon tells whoever supervises it (systemd's notify protocol, or
/// nothing) about its state.
pub(crate) trait Lifecycle: Send + Sync {
    /// It is reloading its configuration.
    fn reloading(&self);
    /// It serves, in the state `status` describes.
    fn ready(&self, status: &str);
    /// It has stopped accepting and is finishing what it has.
    fn stopping(&self);
    /// Its request path answers (a watchdog's keep-alive).
    fn watchdog(&self);
}

/// Connections open and requests being served right now: the transport counts them
/// (a [`Counted`] while each lives), the core reads them for its gauges.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    open: AtomicUsize,
    busy: AtomicUsize,
}

impl Traffic {
    /// Counts an open connection until the guard is dropped.
    pub(crate) fn connection(self: &Arc<Self>) -> Counted {
        Counted::new(self.clone(), |t| &t.open)
    }

    /// Counts a request being served until the guard is dropped.
    pub(crate) fn request(self: &Arc<Self>) -> Counted {
        Counted::new(self.clone(), |t| &t.busy)
    }

    /// Connections open now.
    pub(crate) fn connections(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Requests being served now, across all connections.
    pub(crate) fn in_flight(&self) -> usize {
        self.busy.load(Ordering::Acquire)
    }

    /// Whether the daemon serves one client calling in turn: at most
    /// [`QUIET_CONNECTIONS`] open, and no request in flight beyond the caller's `own`
    /// (0 between requests, 1 within one). Then it spends a little to answer that one
    /// sooner (the connection's poll for its next call, a plugin host's lane on the
    /// caller's CPU); when busier its threads and cores have better things to do.
    pub(crate) fn is_quiet(&self, own: usize) -> bool {
        self.connections() <= QUIET_CONNECTIONS && self.in_flight() <= own
    }
}

/// The most connections open for the daemon to count as quiet ([`Traffic::is_quiet`]):
/// one client's, and, say, a watchdog's.
pub(crate) const QUIET_CONNECTIONS: usize = 2;

/// One connection or request counted in [`Traffic`] while it lives.
pub(crate) struct Counted {
    traffic: Arc<Traffic>,
    counter: fn(&Traffic) -> &AtomicUsize,
}

impl Counted {
    fn new(traffic: Arc<Traffic>, counter: fn(&Traffic) -> &AtomicUsize) -> Counted {
        counter(&traffic).fetch_add(1, Ordering::AcqRel);
        Counted { traffic, counter }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.counter)(&self.traffic).fetch_sub(1, Ordering::AcqRel);
    }
}

/// Everything a request needs, shared by all connections.
pub(crate) struct Daemon {
    /// The configuration file, read again on reload.
    pub config_path: PathBuf,
    generation: RwLock<Arc<Generation>>,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Runs requests off the async threads, with their timeouts.
    pub executor: Executor,
    /// Opens plugin libraries, the same bytes once.
    pub loader: Loader,
    next_generation: AtomicU64,
    own_uid: u32,
    /// The service manager, when there is one.
    pub notifier: Box<dyn Lifecycle>,
    /// Connections and requests being served, counted by the transport.
    pub traffic: Arc<Traffic>,
    /// One reload at a time.
    reloading: std::sync::Mutex<()>,
    /// The `plugin_registry` states last acted on by [`Daemon::sync_registry`].
    registry_seen: std::sync::Mutex<Option<HashMap<String, bool>>>,
}

/// Why enabling or disabling an instance did not take effect.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetEnabledError {
    /// The instance's state could not be saved.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The generation with the change could not be built; the change was undone.
    #[error("{0}")]
    Reload(String),
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// The configuration could not be read or is wrong.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store could not be opened (its message is part of this one, not a source).
    #[error("database: {0}")]
    Store(crate::store::StoreError),
    /// The plugin generation could not be built (the message lists each problem; it
    /// is not also the error's source, or it would be printed twice).
    #[error("plugins:\n{0}")]
    Plugins(BuildError),
    /// Anything else (the runtime, the socket, signals), with what failed.
    #[error("{0}")]
    Other(String),
}

impl Daemon {
    /// Reads the configuration, opens (and migrates) the store, and builds the first
    /// plugin generation; `notifier` hears of its reloads.
    pub(crate) fn start(
        config_path: &Path,
        notifier: Box<dyn Lifecycle>,
    ) -> Result<Arc<Daemon>, StartError> {
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
            next_generation: AtomicU64::new(2),
            own_uid: crate::process::effective_uid(),
            notifier,
            traffic: Arc::default(),
            reloading: std::sync::Mutex::new(()),
            registry_seen: std::sync::Mutex::new(None),
        }))
    }

    /// The generation new requests use.
    pub(crate) fn generation(&self) -> Arc<Generation> {
        self.generation
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The configuration of the current generation.
    pub(crate) fn config(&self) -> Arc<Config> {
        self.generation().config.clone()
    }

    /// A new request with `context`, on the daemon's store.
    pub(crate) fn request(&self, context: Context) -> Arc<Request> {
        Request::new(self.store.clone(), context)
    }

    /// How long one hook call may run (`daemon.hook_timeout_ms`).
    pub(crate) fn hook_timeout(&self) -> Duration {
        Duration::from_millis(self.config().daemon.hook_timeout_ms)
    }

    /// Whether a request may run on the caller's thread now; a yes must be followed
    /// by [`Daemon::run_here`] (see [`Executor::can_run_here`]).
    pub(crate) fn can_run_here(&self) -> bool {
        self.executor.can_run_here()
    }

    /// Runs `f` for `req` on the caller's thread under the hook timeout, watched
    /// (see [`Executor::run_here`]).
    pub(crate) fn run_here<T>(
        &self,
        req: &Arc<Request>,
        f: impl FnOnce() -> T,
        on_abandon: OnAbandon,
    ) -> Here<T> {
        self.executor
            .run_here(req, self.hook_timeout(), f, on_abandon)
    }

    /// Runs `fut`, a chain that only crosses to plugin hosts, for `req` on this task
    /// under the hook timeout, watched (see [`Executor::run_crossing`]).
    pub(crate) async fn run_crossing<T>(
        &self,
        req: &Arc<Request>,
        fut: impl std::future::Future<Output = T>,
    ) -> Here<T> {
        self.executor
            .run_crossing(req, self.hook_timeout(), fut)
            .await
    }

    /// Runs blocking work that is no request (the store, a hash, a reload) on the
    /// pool and waits for it.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ExecError> {
        self.executor.run_plain(f).await
    }

    /// Stops the worker pool: the server has drained.
    pub(crate) fn shutdown(&self) {
        self.executor.shutdown();
    }

    /// Whether the store answers a query (for the watchdog's probe).
    pub(crate) fn check_store(&self) -> Result<(), crate::store::StoreError> {
        self.store.find_user_by_id(0).map(drop)
    }

    /// Deletes expired failure counts; how many.
    pub(crate) fn prune_penalties(&self) -> Result<usize, crate::store::StoreError> {
        self.store.prune_penalties(chrono::Utc::now())
    }

    /// Re-reads the configuration and swaps in a new generation; on failure the current
    /// one stays. Requests in flight finish on the generation they started with.
    /// Tells the service manager RELOADING, then READY either way (the daemon keeps
    /// serving).
    pub(crate) fn reload(&self) -> Result<u64, String> {
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
    pub(crate) fn set_plugin_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<(), SetEnabledError> {
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
    pub(crate) fn sync_registry(&self) -> Result<bool, String> {
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
        let g = self.generation();
        crate::metrics::Load {
            connections: self.traffic.connections() as u64,
            in_flight: self.traffic.in_flight() as u64,
            queued: self.executor.queued() as u64,
            hashes_queued: g.verifier.pool().queued() as u64,
            stuck_calls: self.executor.stuck() as u64,
            generation: g.id,
        }
    }

    /// Every metric, in the Prometheus text format (`GetMetrics`, `metrics.listen`).
    pub(crate) fn metrics_text(&self) -> String {
        crate::metrics::global().text(self.load())
    }

    /// What the daemon is doing now, for a person (`GetStatus`, `flaskbbd status`).
    pub(crate) fn status(&self) -> crate::proto::Status {
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
    pub(crate) fn status_line(&self) -> String {
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
    pub(crate) fn is_admin(&self, uid: Option<u32>) -> bool {
        uid.is_some_and(|u| u == self.own_uid || self.config().daemon.admin_uids.contains(&u))
    }

    /// Whether a peer with `uid` may call `org.flaskbb.Account`: the daemon's own uid
    /// (which may read the database anyway) and `daemon.forum_uids`.
    pub(crate) fn is_forum(&self, uid: Option<u32>) -> bool {
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
