//! The Varlink server, the daemon's transport: the socket, one task per connection,
//! each method handed to the [`Daemon`], and graceful shutdown.
//!
//! Requests on one connection are answered in order; connections run in parallel; the
//! work of a request runs on the daemon's executor, never on the async threads. A malformed
//! message gets an error (and a close where the stream cannot be trusted) and disturbs
//! no other connection. SIGTERM/SIGINT stop accepting, let every connection finish
//! the request it is in, and return.

mod methods;
pub use flaskbbd_protocol::wire;

use std::{
    io,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::Path,
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{watch, Semaphore},
    task::JoinSet,
};

use crate::daemon::Daemon;

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
    let cred = stream.peer_cred().ok();
    let uid = cred.map(|c| c.uid());
    let mut admin = daemon.is_admin(uid);
    // A plugin host runs as the daemon's own user, which is always an admin: a plugin
    // that reaches the socket (sandbox.network) must not become one.
    if let Some(instance) = cred
        .and_then(|c| c.pid())
        .and_then(|pid| crate::isolation::supervisor::host_of(pid as u32))
    {
        if admin {
            tracing::warn!(
                instance = &*instance,
                "the plugin host of this instance connected to the daemon's socket; org.flaskbb.Admin is refused to it"
            );
        }
        admin = false;
    }
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
