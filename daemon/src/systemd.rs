//! Running under systemd: the notify protocol (`READY=1`, `RELOADING=1`,
//! `STOPPING=1`, `STATUS=`, `WATCHDOG=1`), socket activation (`LISTEN_FDS`), and the
//! watchdog interval. Without systemd every call here does nothing.

use std::{
    os::{
        fd::{FromRawFd, RawFd},
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram, UnixListener},
    },
    time::Duration,
};

/// Sends state changes to `$NOTIFY_SOCKET`.
pub(crate) struct Notifier {
    target: Option<SocketAddr>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
    pub(crate) fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|v| {
            let s = v.to_string_lossy().into_owned();
            let addr = match s.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
                None => SocketAddr::from_pathname(&s),
            };
            addr.map_err(|e| tracing::warn!("NOTIFY_SOCKET={s:?} is unusable: {e}"))
                .ok()
        });
        Notifier { target }
    }

    /// Sends `state` (newline-separated assignments).
    pub(crate) fn notify(&self, state: &str) {
        let Some(addr) = &self.target else { return };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), addr));
        if let Err(e) = sent {
            tracing::warn!("cannot notify the service manager: {e}");
        }
    }

    /// `READY=1` with a status line.
    pub(crate) fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={status}"));
    }

    /// `RELOADING=1` with the monotonic time systemd expects beside it.
    pub(crate) fn reloading(&self) {
        self.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading the configuration",
            monotonic_usec()
        ));
    }

    /// `STOPPING=1`.
    pub(crate) fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping: finishing requests in flight");
    }

    /// `WATCHDOG=1`.
    pub(crate) fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }
}

/// `CLOCK_MONOTONIC` in microseconds.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is meant for us.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// The first socket passed by systemd (`LISTEN_PID`/`LISTEN_FDS`), when one was passed
/// to this process. The variables are removed so children do not see them.
pub(crate) fn listen_socket() -> Result<Option<UnixListener>, String> {
    let pid_ok = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let fds: usize = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    for v in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    if !pid_ok || fds == 0 {
        return Ok(None);
    }
    if fds > 1 {
        tracing::warn!("systemd passed {fds} sockets; serving the first, ignoring the rest");
    }
    const SD_LISTEN_FDS_START: RawFd = 3;
    // SAFETY: systemd hands this fd to us, open, as the first passed socket.
    let listener = unsafe { UnixListener::from_raw_fd(SD_LISTEN_FDS_START) };
    listener
        .local_addr()
        .map_err(|e| format!("the socket passed by systemd (fd 3) is not a Unix socket: {e}"))?;
    // SAFETY: fcntl on the fd we now own.
    unsafe { libc::fcntl(SD_LISTEN_FDS_START, libc::F_SETFD, libc::FD_CLOEXEC) };
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("socket from systemd: {e}"))?;
    Ok(Some(listener))
}

impl crate::daemon::Lifecycle for Notifier {
    fn reloading(&self) {
        Notifier::reloading(self);
    }

    fn ready(&self, status: &str) {
        Notifier::ready(self, status);
    }

    fn stopping(&self) {
        Notifier::stopping(self);
    }

    fn watchdog(&self) {
        Notifier::watchdog(self);
    }
}
