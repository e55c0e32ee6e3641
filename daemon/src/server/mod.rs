//! The Varlink server, the daemon's transport: the socket, one task per connection,
//! each method handed to the [`Daemon`], and graceful shutdown.
//!
//! Requests on one connection are answered in order (replies to pipelined calls in one
//! write); connections run in parallel. The work of a request runs on the daemon's
//! executor: on its pool; for an event whose chain only crosses to plugin hosts, on
//! the connection's task, which awaits the hosts' answers without holding its thread;
//! or, for an event whose chain has been short, right on the connection's task under
//! the executor's watch (a hung call there hands the connection to a new task,
//! `take_over`). A malformed message gets an error (and a
//! close where the stream cannot be trusted) and disturbs no other connection.
//! SIGTERM/SIGINT stop accepting, let every connection finish the request it is in,
//! and return.
//!
//! Connections are bounded in total (`daemon.max_connections`: more wait in the
//! listen queue) and per peer uid (`daemon.max_connections_per_uid`: more of that uid
//! are answered `PermissionDenied` and closed at once), so that one local user cannot
//! hold every connection. A message begun must end within `daemon.message_timeout_ms`
//! or its connection is closed; a connection idle between messages stays open (a
//! client's pooled connection), bounded by its uid's share.

pub(crate) mod methods;
mod reader;
pub(crate) use flaskbbd_protocol::wire;

use std::{
    collections::HashMap,
    io,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{unix::OwnedWriteHalf, unix::UCred, UnixListener, UnixStream},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
};

use self::reader::ConnReader;
use crate::{
    daemon::{Counted, Daemon, Traffic},
    executor::{Here, OnAbandon},
};

/// Binds the socket at `path` with `mode`. A stale socket file left by a crash is
/// replaced; one a live daemon answers on is not stolen; anything else is not touched.
pub(crate) fn bind(path: &Path, mode: u32) -> Result<UnixListener, String> {
    if let Some(dir) = path.parent() {
        // A directory made here is private but for the search (x) permission of
        // whoever `mode` lets connect: the socket is reachable as configured, and
        // nothing else in its directory can be listed.
        let search = (if mode & 0o070 != 0 { 0o010 } else { 0 })
            | (if mode & 0o007 != 0 { 0o001 } else { 0 });
        crate::files::create_dir_all(dir, crate::files::DIR_MODE | search)
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
pub(crate) async fn serve(
    daemon: Arc<Daemon>,
    listener: UnixListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let max = daemon.config().daemon.max_connections;
    let limit = Arc::new(Semaphore::new(max));
    let shares = Arc::new(Shares::default());
    // A permit not used by a refused connection serves the next one.
    let mut spare = None;
    loop {
        let permit = match spare.take() {
            Some(p) => p,
            None => tokio::select! {
                p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.changed() => break,
            },
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    spare = Some(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let cred = stream.peer_cred().ok();
        // The share as configured now: a reload applies to new connections.
        let per_uid = daemon.config().daemon.per_uid_limit();
        let Some(share) = shares.take(cred.map(|c| c.uid()), per_uid) else {
            shares.refuse(stream, cred, per_uid);
            spare = Some(permit);
            continue;
        };
        tokio::spawn(connection(
            daemon.clone(),
            stream,
            cred,
            Held {
                _permit: permit,
                _share: share,
            },
            shutdown.clone(),
        ));
    }
    drop(listener);
    drop(spare);
    // Each open connection holds a permit (wherever it is served: a connection whose
    // hung call was abandoned goes on in another task), so all permits back means all
    // connections closed.
    let open = max - limit.available_permits();
    if open > 0 {
        tracing::info!(
            connections = open,
            "draining: waiting for requests in flight"
        );
    }
    let _ = limit
        .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
        .await;
}

/// The read buffer of one connection, in bytes.
const READ_BUFFER: usize = 1024;

/// The key of peers whose credentials could not be read: they share one share.
const UNKNOWN_UID: u32 = u32::MAX;

/// The connections each peer uid holds, against `daemon.max_connections_per_uid`.
#[derive(Default)]
struct Shares {
    state: Mutex<SharesState>,
}

#[derive(Default)]
struct SharesState {
    open: HashMap<u32, usize>,
    /// Connections open, and the most open at once since memory was last trimmed.
    total: usize,
    peak: usize,
    /// Refusals not yet logged, and when the last log line was written: a flood of
    /// refused connections writes a line a second, not one each.
    refused: usize,
    logged: Option<Instant>,
}

impl Shares {
    fn lock(&self) -> std::sync::MutexGuard<'_, SharesState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for one more connection of `uid`, or None when it holds its share of
    /// `per_uid`.
    fn take(self: &Arc<Self>, uid: Option<u32>, per_uid: usize) -> Option<Share> {
        let uid = uid.unwrap_or(UNKNOWN_UID);
        let mut state = self.lock();
        let open = state.open.entry(uid).or_insert(0);
        if *open >= per_uid {
            return None;
        }
        *open += 1;
        state.total += 1;
        state.peak = state.peak.max(state.total);
        Some(Share {
            shares: self.clone(),
            uid,
        })
    }

    /// Answers a connection over its uid's share `PermissionDenied` (before it asks
    /// anything: a client reads it as the reply to its first call) and closes it.
    fn refuse(&self, stream: UnixStream, cred: Option<UCred>, per_uid: usize) {
        let uid = cred.map(|c| c.uid());
        let reason = format!(
            "uid {} already holds {} connections, its share of the daemon's (daemon.max_connections_per_uid): close idle ones, or raise the share",
            uid.map_or_else(|| "(unknown)".to_owned(), |u| u.to_string()),
            per_uid
        );
        let mut reply = Vec::new();
        wire::Reply::error(
            wire::errors::PERMISSION_DENIED,
            serde_json::json!({ "reason": reason }),
        )
        .encode_into(&mut reply);
        // One small write into the socket's empty buffer, without waiting: a client
        // that never reads does not hold the accept loop.
        if let Ok(s) = stream.into_std() {
            let _ = std::io::Write::write(&mut &s, &reply);
        }
        let mut state = self.lock();
        state.refused += 1;
        let now = Instant::now();
        if state
            .logged
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            tracing::warn!(
                uid,
                pid = cred.and_then(|c| c.pid()),
                refused = state.refused,
                share = per_uid,
                "refused connections of a uid that holds its share (daemon.max_connections_per_uid)"
            );
            state.refused = 0;
            state.logged = Some(now);
        }
    }
}

/// One connection's place in its uid's share; given back when dropped.
struct Share {
    shares: Arc<Shares>,
    uid: u32,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut state = self.shares.lock();
        if let Some(open) = state.open.get_mut(&self.uid) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                state.open.remove(&self.uid);
            }
        }
        state.total = state.total.saturating_sub(1);
        // Most of a flood's connections have closed: give their memory back.
        if state.peak >= TRIM_AFTER && state.total <= state.peak / 4 {
            let total = state.total;
            let peak = std::mem::replace(&mut state.peak, total);
            drop(state);
            give_back_memory(peak);
        }
    }
}

/// Memory is trimmed when the connections open fall to a quarter of a peak of at
/// least this many.
const TRIM_AFTER: usize = 1024;

/// Returns the allocator's free memory to the system after `peak` connections were
/// open. glibc keeps what the connections' tasks and buffers freed in its arenas
/// (16,000 idle connections closed left the daemon's RSS 20 MB above its idle
/// figure; trimming gives back most of it: docs/operations.md), and a peak's worth
/// is worth the few milliseconds the trim takes, on a blocking thread.
fn give_back_memory(peak: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let trim = move || {
            // SAFETY: malloc_trim only releases free pages of glibc's own arenas,
            // under their locks; it touches no memory in use.
            unsafe { libc::malloc_trim(0) };
            tracing::debug!(
                peak,
                "connections closed: free memory returned to the system"
            );
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(trim);
            }
            Err(_) => trim(),
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = peak;
}

/// What a connection holds while it is open: its place under
/// `daemon.max_connections` and in its uid's share. Fields drop in order: the share is
/// given back before the permit, so the connection the permit lets in next never finds
/// its uid's share still counting this closed one (and is never refused for it).
struct Held {
    _share: Share,
    _permit: OwnedSemaphorePermit,
}

/// One client connection and all that serving it needs; it moves to another task when
/// the task serving it is stuck in a hung hook call.
struct Conn {
    reader: ConnReader,
    writer: OwnedWriteHalf,
    /// The message being read.
    buf: Vec<u8>,
    /// Replies not yet written: those to pipelined calls go out together.
    out: Vec<u8>,
    uid: Option<u32>,
    pid: Option<i32>,
    /// Which of the guarded interfaces the peer may call.
    peer: methods::Peer,
    _held: Held,
    _open: Counted,
}

async fn connection(
    daemon: Arc<Daemon>,
    stream: UnixStream,
    cred: Option<UCred>,
    held: Held,
    shutdown: watch::Receiver<bool>,
) {
    let uid = cred.map(|c| c.uid());
    let mut admin = daemon.is_admin(uid);
    let mut forum = daemon.is_forum(uid);
    // A plugin host runs as the daemon's own user, which is always an admin and a
    // forum peer: a plugin that reaches the socket (sandbox.network) must become
    // neither.
    if let Some(instance) = cred
        .and_then(|c| c.pid())
        .and_then(|pid| crate::isolation::supervisor::host_of(pid as u32))
    {
        if admin {
            tracing::warn!(
                instance = &*instance,
                "the plugin host of this instance connected to the daemon's socket; org.flaskbb.Admin and org.flaskbb.Account are refused to it"
            );
        }
        admin = false;
        forum = false;
    }
    let (rd, writer) = stream.into_split();
    // Idle connections cost little: a small read buffer (a message longer than it is
    // read in several steps), and the request's state boxed only while it runs.
    let conn = Conn {
        reader: ConnReader::new(rd, READ_BUFFER),
        writer,
        buf: Vec::new(),
        out: Vec::new(),
        uid,
        pid: cred.and_then(|c| c.pid()),
        peer: methods::Peer { uid, admin, forum },
        _held: held,
        _open: daemon.traffic.connection(),
    };
    serve_connection(daemon, conn, shutdown).await;
}

/// Answers the calls on `conn`, in order, until the client closes it, sends what
/// cannot be trusted, or the daemon stops.
async fn serve_connection(daemon: Arc<Daemon>, mut conn: Conn, shutdown: watch::Receiver<bool>) {
    let max = daemon.config().daemon.max_message_bytes;
    let within = Duration::from_millis(daemon.config().daemon.message_timeout_ms);
    // One wait for the stop for the connection's whole life, not one per message.
    let mut stop_rx = shutdown.clone();
    let stop = stop_rx.changed();
    tokio::pin!(stop);
    loop {
        if *shutdown.borrow() {
            break;
        }
        if !conn.out.is_empty() && !has_message(conn.reader.buffer()) {
            // Nothing more is waiting to be answered at once: send what is due.
            if !flush(&mut conn).await {
                break;
            }
            poll_for_next(&daemon.traffic, &mut conn);
        }
        let read = tokio::select! {
            r = read_within(&mut conn.reader, &mut conn.buf, max, within) => r,
            _ = &mut stop => break,
        };
        let _busy = daemon.traffic.request();
        conn = match read {
            Ok(false) => break,
            Ok(true) => match answer_message(&daemon, conn, &shutdown).await {
                Next::Serve(c) => c,
                Next::Close(c) => {
                    conn = c;
                    break;
                }
                Next::Gone => return,
            },
            Err(e) => {
                refuse_unreadable(&mut conn, e, within);
                break;
            }
        };
        // A connection that once sent a large message does not keep its buffers.
        if conn.buf.capacity() > READ_BUFFER * 16 {
            conn.buf = Vec::new();
        }
    }
    if !conn.out.is_empty() {
        flush(&mut conn).await;
    }
    let _ = conn.writer.shutdown().await;
}

/// What became of a connection after one message.
enum Next {
    /// It goes on.
    Serve(Conn),
    /// It is closed once its replies are written (the stream cannot be trusted).
    Close(Conn),
    /// Another task took it over from a hung call, and answers it from now on.
    Gone,
}

/// Decodes the message read into `conn.buf`, runs it (on this thread or through
/// [`methods::dispatch`]) and queues its reply.
async fn answer_message(
    daemon: &Arc<Daemon>,
    mut conn: Conn,
    shutdown: &watch::Receiver<bool>,
) -> Next {
    match methods::decode(&conn.buf, conn.peer) {
        Ok((parsed, oneway)) => {
            match parsed.route(daemon) {
                methods::Route::Here(event) => {
                    match run_here(daemon, conn, event, oneway, shutdown).await {
                        Some(c) => conn = c,
                        None => return Next::Gone,
                    }
                }
                methods::Route::Cross(event) => {
                    let (pending, outcome) = Box::pin(event.cross(daemon)).await;
                    let out = (!oneway).then_some(&mut conn.out);
                    pending.finish(daemon, outcome, out).await;
                }
                methods::Route::Pool(parsed) => {
                    let reply = Box::pin(methods::dispatch(daemon, parsed)).await;
                    if !oneway {
                        reply.encode_into(&mut conn.out);
                    }
                }
            }
            // A pipelining client must not keep this thread from others.
            tokio::task::coop::consume_budget().await;
            Next::Serve(conn)
        }
        Err(bad) => {
            crate::metrics::global().request(
                crate::metrics::INVALID_METHOD,
                // A refusal is an error reply; were it ever none, it is still no
                // success.
                bad.reply
                    .error_name()
                    .unwrap_or(wire::errors::INVALID_PARAMETER),
                std::time::Instant::now(),
            );
            bad.reply.encode_into(&mut conn.out);
            if bad.fatal {
                Next::Close(conn)
            } else {
                Next::Serve(conn)
            }
        }
    }
}

/// Runs an event's chain on this thread. Should a call in it hang, the watch gives
/// the connection to a new task, which answers the timeout and goes on serving it:
/// then `None`, and this task is done with the connection.
async fn run_here(
    daemon: &Arc<Daemon>,
    conn: Conn,
    event: methods::HereEvent,
    oneway: bool,
    shutdown: &watch::Receiver<bool>,
) -> Option<Conn> {
    let slot = Arc::new(std::sync::Mutex::new(Some(conn)));
    let on_abandon = take_over(daemon, &slot, &event.pending, oneway, shutdown);
    let (pending, outcome) = event.run(daemon, on_abandon);
    if matches!(outcome, Here::Abandoned) {
        return None;
    }
    let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    let mut conn = taken?;
    let out = (!oneway).then_some(&mut conn.out);
    pending.finish(daemon, outcome, out).await;
    Some(conn)
}

/// Answers a message that could not be read, before its connection is closed: one
/// left unfinished past `daemon.message_timeout_ms`, or one too long (a stream that
/// failed gets no answer).
fn refuse_unreadable(conn: &mut Conn, read: Read, within: Duration) {
    let (uid, pid) = (conn.uid, conn.pid);
    match read {
        Read::Stalled => {
            tracing::warn!(
                uid,
                pid,
                timeout_ms = within.as_millis() as u64,
                "closing a connection that left a message unfinished past daemon.message_timeout_ms"
            );
            refuse_message(
                &mut conn.out,
                format!(
                    "message not finished within daemon.message_timeout_ms ({} ms)",
                    within.as_millis()
                ),
            );
        }
        Read::Failed(wire::ReadError::TooLarge(n)) => {
            tracing::warn!(
                uid,
                "closing a connection that sent a message over {n} bytes"
            );
            refuse_message(
                &mut conn.out,
                format!("message longer than daemon.max_message_bytes ({n})"),
            );
        }
        Read::Failed(e) => {
            tracing::debug!(uid, "connection ended: {e}");
        }
    }
}

/// Why no message came off a connection.
enum Read {
    /// A message was begun and not finished within `daemon.message_timeout_ms`.
    Stalled,
    Failed(wire::ReadError),
}

/// Reads the next message into `buf`, as [`wire::read_message`]: waiting for its
/// first byte has no bound (a pooled connection sits idle between calls), but once it
/// has begun the message must end `within`.
async fn read_within(
    reader: &mut ConnReader,
    buf: &mut Vec<u8>,
    max: usize,
    within: Duration,
) -> Result<bool, Read> {
    if !has_message(reader.buffer()) {
        // The wait for a message to begin (or for the end of the stream).
        reader
            .fill_buf()
            .await
            .map_err(|e| Read::Failed(e.into()))?;
        if !has_message(reader.buffer()) {
            return match tokio::time::timeout(within, wire::read_message(reader, buf, max)).await {
                Ok(r) => r.map_err(Read::Failed),
                Err(_) => Err(Read::Stalled),
            };
        }
    }
    wire::read_message(reader, buf, max)
        .await
        .map_err(Read::Failed)
}

/// Answers a message that cannot be read (`InvalidParameter` on `message`, with
/// `reason`) and counts it as an invalid method; the caller closes the connection.
fn refuse_message(out: &mut Vec<u8>, reason: String) {
    crate::metrics::global().request(
        crate::metrics::INVALID_METHOD,
        wire::errors::INVALID_PARAMETER,
        std::time::Instant::now(),
    );
    wire::Reply::error(
        wire::errors::INVALID_PARAMETER,
        serde_json::json!({ "parameter": "message", "reason": reason }),
    )
    .encode_into(out);
}

/// A connection is polling its socket for its next call.
static POLLING: AtomicBool = AtomicBool::new(false);

/// How long a connection just answered polls its socket for its next call before it
/// goes to sleep: about one client's turn-around, so that a client calling again at
/// once is read without a sleep and a wake-up of this thread.
const POLL_FOR_NEXT: Duration = Duration::from_micros(30);

/// Polls the socket of `conn` for its next call for up to [`POLL_FOR_NEXT`], when the
/// daemon is quiet ([`Traffic::is_quiet`]: with more connections, others' calls would
/// wait on the polling thread) and no other connection is polling: when the daemon is
/// busy its threads have better things to do, and it never spins more than one
/// thread this way.
fn poll_for_next(traffic: &Traffic, conn: &mut Conn) {
    if !traffic.is_quiet(0) || POLLING.swap(true, Ordering::AcqRel) {
        return;
    }
    let until = std::time::Instant::now() + POLL_FOR_NEXT;
    loop {
        // An error ends the polling; the read that follows meets it again.
        if !matches!(conn.reader.try_fill(), Ok(false)) {
            break;
        }
        if traffic.in_flight() != 0 || std::time::Instant::now() >= until {
            break;
        }
        std::hint::spin_loop();
    }
    POLLING.store(false, Ordering::Release);
}

/// Whether `buffered` holds a whole message (its terminating NUL).
fn has_message(buffered: &[u8]) -> bool {
    buffered.contains(&0)
}

/// Writes the replies due on `conn`; false when the client has gone.
async fn flush(conn: &mut Conn) -> bool {
    let written = conn.writer.write_all(&conn.out).await;
    if conn.out.capacity() > READ_BUFFER * 16 {
        conn.out = Vec::new();
    } else {
        conn.out.clear();
    }
    match written {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(uid = conn.uid, "client went away before its answer: {e}");
            false
        }
    }
}

/// What the watch does when the event `pending` hangs on this connection's thread:
/// a new task takes the connection (in `slot`), answers the timeout, and serves on.
fn take_over(
    daemon: &Arc<Daemon>,
    slot: &Arc<std::sync::Mutex<Option<Conn>>>,
    pending: &methods::Pending,
    oneway: bool,
    shutdown: &watch::Receiver<bool>,
) -> OnAbandon {
    let (daemon, slot, pending, shutdown) = (
        daemon.clone(),
        slot.clone(),
        pending.clone(),
        shutdown.clone(),
    );
    let runtime = tokio::runtime::Handle::current();
    Box::new(move |timed_out| {
        let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut conn) = taken else { return };
        runtime.spawn(async move {
            let reply = pending.abandoned(&daemon, timed_out).await;
            if !oneway {
                reply.encode_into(&mut conn.out);
            }
            resume(daemon, conn, shutdown).await;
        });
    })
}

/// Serves a connection taken over from a stuck task (boxed: the task that serves it
/// is made inside [`serve_connection`]).
fn resume(
    daemon: Arc<Daemon>,
    conn: Conn,
    shutdown: watch::Receiver<bool>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(serve_connection(daemon, conn, shutdown))
}

/// Proves the request path still answers, for the watchdog: a real call through the
/// socket (accept, connection task, dispatch) and a store query on the worker pool.
pub(crate) async fn probe(
    daemon: &Arc<Daemon>,
    socket: &Path,
    within: Duration,
) -> Result<(), String> {
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
        let d = daemon.clone();
        match daemon.blocking(move || d.check_store()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("store: {e}")),
            Err(e) => Err(format!("worker pool: {e}")),
        }
    };
    tokio::time::timeout(within, check)
        .await
        .map_err(|_| format!("no answer within {within:?}"))?
}
