//! The Varlink server: the socket, one task per connection, and graceful shutdown.
//!
//! Requests on one connection are answered in order; connections run in parallel; the
//! work of a request runs on the [`Executor`], never on the async threads. A malformed
//! message gets an error (and a close where the stream cannot be trusted) and disturbs
//! no other connection. SIGTERM/SIGINT stop accepting, let every connection finish
//! the request it is in, and return.

mod methods;
pub use flaskbbd_protocol::wire;

use std::{
    collections::HashMap,
    io,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{atomic::AtomicU64, Arc, RwLock},
    time::Duration,
};

use tokio::{
    io::{AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{watch, Semaphore},
    task::JoinSet,
};

use crate::{
    auth::PluginAuthenticationManager,
    config::Config,
    executor::Executor,
    generation::{BuildError, Generation},
    loader::Loader,
    password::Verifier,
    store::Store,
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
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Reload(String),
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("plugins:\n{0}")]
    Plugins(#[from] BuildError),
    #[error("{0}")]
    Other(String),
}

impl Daemon {
    /// Reads the configuration, opens (and migrates) the store, and builds the first
    /// plugin generation.
    pub fn start(config_path: &Path) -> Result<Arc<Daemon>, StartError> {
        let config = Arc::new(Config::load(config_path)?);
        let store = crate::store::open(
            &config.database.url,
            config.database.schema,
            &config.base_dir,
            config.database.connect_timeout(),
        )?;
        let loader = Loader::with_cache(config.plugins.cache_dir.clone());
        let verifier = Arc::new(
            Verifier::new(config.auth.bcrypt_cost).map_err(|e| StartError::Other(e.to_string()))?,
        );
        let generation = build_generation(1, config.clone(), &loader, &*store, verifier)?;
        let pruned = loader.prune_cache();
        if pruned > 0 {
            tracing::info!(removed = pruned, dir = %config.plugins.cache_dir.display(), "removed plugin copies no longer in use");
        }
        let executor = Executor::new(config.daemon.worker_count(), config.daemon.max_stuck_calls);
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
        let g = build_generation(id, config, &self.loader, &*self.store, verifier)
            .map_err(|e| e.to_string())?;
        *self.generation.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(g);
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
            Verifier::new(config.auth.bcrypt_cost)
                .map(Arc::new)
                .map_err(|e| e.to_string())
        }
    }

    /// Whether a peer with `uid` may call `org.flaskbb.Admin`.
    pub fn is_admin(&self, uid: Option<u32>) -> bool {
        uid.is_some_and(|u| u == self.own_uid || self.config().daemon.admin_uids.contains(&u))
    }
}

fn registry_states(store: &dyn Store) -> Result<HashMap<String, bool>, crate::store::StoreError> {
    Ok(store.plugin_states()?.into_iter().collect())
}

/// A generation from `config`, with the run-time states in `plugin_registry`.
fn build_generation(
    id: u64,
    config: Arc<Config>,
    loader: &Loader,
    store: &dyn Store,
    verifier: Arc<Verifier>,
) -> Result<Generation, StartError> {
    let states = registry_states(store)?;
    Ok(Generation::build(id, config, loader, verifier, &states)?)
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Binds the socket at `path` with `mode`. A stale socket file left by a crash is
/// replaced; one a live daemon answers on is not stolen; anything else is not touched.
pub fn bind(path: &Path, mode: u32) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the socket directory {}: {e}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(format!("{} exists and is not a socket; refusing to replace it (fix daemon.socket)", path.display()));
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(format!(
                    "{} is in use: another flaskbbd is serving on it (stop it, or choose another daemon.socket)",
                    path.display()
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                tracing::info!(socket = %path.display(), "replacing a stale socket file");
                std::fs::remove_file(path).map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
            }
            Err(e) => return Err(format!("cannot probe existing socket {}: {e}", path.display())),
        },
        Err(_) => {}
    }
    // Create the socket file with no more than `mode` from the start (a umask for the
    // bind), so it is never reachable with wider permissions, then set exactly `mode`.
    // SAFETY: umask only swaps the process's file-creation mask.
    let previous = unsafe { libc::umask(!mode & 0o777) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the mask.
    unsafe { libc::umask(previous) };
    let listener = bound.map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set mode {mode:o} on {}: {e}", path.display()))?;
    Ok(listener)
}

/// Serves `listener` until `shutdown` turns true, then drains: no new connections,
/// each connection finishes its current request, and this returns when all are done.
pub async fn serve(
    daemon: Arc<Daemon>,
    listener: UnixListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(daemon.config().daemon.max_connections));
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let (d, rx) = (daemon.clone(), shutdown.clone());
        tasks.spawn(async move {
            connection(d, stream, rx).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    // Reap the connections that already ended, so the count is of open ones.
    while tasks.try_join_next().is_some() {}
    let open = tasks.len();
    if open > 0 {
        tracing::info!(
            connections = open,
            "draining: waiting for requests in flight"
        );
    }
    while tasks.join_next().await.is_some() {}
}

/// The read buffer of one connection, in bytes.
const READ_BUFFER: usize = 1024;

async fn connection(daemon: Arc<Daemon>, stream: UnixStream, mut shutdown: watch::Receiver<bool>) {
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let admin = daemon.is_admin(uid);
    let max = daemon.config().daemon.max_message_bytes;
    let (rd, mut wr) = stream.into_split();
    // Idle connections cost little: a small read buffer (a message longer than it is
    // read in several steps), and the request's state boxed only while it runs.
    let mut reader = BufReader::with_capacity(READ_BUFFER, rd);
    let mut buf = Vec::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let read = tokio::select! {
            r = wire::read_message(&mut reader, &mut buf, max) => r,
            _ = shutdown.changed() => break,
        };
        let (reply, close) = match read {
            Ok(false) => break,
            Ok(true) => match wire::decode(&buf) {
                Ok(call) => {
                    let oneway = call.oneway;
                    let reply = Box::pin(methods::dispatch(&daemon, call, admin)).await;
                    (if oneway { None } else { Some(reply) }, false)
                }
                Err(bad) => (Some(bad.reply), bad.fatal),
            },
            Err(wire::ReadError::TooLarge(n)) => {
                tracing::warn!(
                    uid,
                    "closing a connection that sent a message over {n} bytes"
                );
                (
                    Some(wire::Reply::error(
                        wire::errors::INVALID_PARAMETER,
                        serde_json::json!({ "parameter": "message", "reason": format!("message longer than daemon.max_message_bytes ({n})") }),
                    )),
                    true,
                )
            }
            Err(e) => {
                tracing::debug!(uid, "connection ended: {e}");
                break;
            }
        };
        if let Some(r) = reply {
            if let Err(e) = wr.write_all(&r.encode()).await {
                tracing::debug!(uid, "client went away before its answer: {e}");
                break;
            }
        }
        if close {
            break;
        }
        // A connection that once sent a large message does not keep its buffer.
        if buf.capacity() > READ_BUFFER * 16 {
            buf = Vec::new();
        }
    }
    let _ = wr.shutdown().await;
}

/// Proves the request path still answers, for the watchdog: a real call through the
/// socket (accept, connection task, dispatch) and a store query on the worker pool.
pub async fn probe(daemon: &Daemon, socket: &Path, within: Duration) -> Result<(), String> {
    let check = async {
        let mut s = UnixStream::connect(socket)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(&wire::encode_call(
            "org.varlink.service.GetInfo",
            &serde_json::json!({}),
        ))
        .await
        .map_err(|e| format!("write: {e}"))?;
        let mut reply = Vec::new();
        wire::read_message(&mut BufReader::new(s), &mut reply, READ_BUFFER * 64)
            .await
            .map_err(|e| format!("read: {e}"))?;
        match wire::Reply::decode(&reply) {
            Ok(wire::Reply::Ok(_)) => {}
            Ok(wire::Reply::Err { error, .. }) => return Err(format!("answered {error}")),
            Err(e) => return Err(e),
        }
        let store = daemon.store.clone();
        match daemon
            .executor
            .run_plain(move || store.find_user_by_id(0))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("store: {e}")),
            Err(e) => Err(format!("worker pool: {e}")),
        }
    };
    tokio::time::timeout(within, check)
        .await
        .map_err(|_| format!("no answer within {within:?}"))?
}
