//! How a request ends, whatever interface it came by: an [`Answer`] (a reply, or a
//! [`Failure`] the transport turns into the interface's `InternalError`), and
//! [`run_request`], which runs a request's work on the executor under the hook
//! timeout and commits what a timed-out request had queued.

use std::{sync::Arc, time::Duration};

use flaskbbd_protocol::wire::Reply;

use crate::{daemon::Daemon, executor::ExecError, request::Request};

/// A request failed closed: a plugin, the store or the pool failed. The client gets
/// the interface's `InternalError(message)`; the log gets the cause.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The interface whose `InternalError` the client gets.
    pub(crate) interface: &'static str,
    /// What the client is told (the log gets the cause).
    pub(crate) message: String,
}

impl Failure {
    /// A failure of `interface` that tells the client `message`.
    pub(crate) fn new(interface: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            interface,
            message: message.into(),
        }
    }
}

/// What a method answers: a reply (success or one of the interface's named errors),
/// or a failure.
pub(crate) enum Answer {
    /// The method's reply.
    Reply(Reply),
    /// The request failed closed.
    Failed(Failure),
}

impl From<Reply> for Answer {
    fn from(r: Reply) -> Answer {
        Answer::Reply(r)
    }
}

impl From<Failure> for Answer {
    fn from(f: Failure) -> Answer {
        Answer::Failed(f)
    }
}

/// Runs `f` for a request on the executor; on a timeout, commits what the request had
/// queued so far (the hung call can no longer add to it) and fails.
pub(crate) async fn run_request<T: Send + 'static>(
    d: &Arc<Daemon>,
    iface: &'static str,
    req: Arc<Request>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failure> {
    let timeout = Duration::from_millis(d.config().daemon.hook_timeout_ms);
    match d.executor.run(req.clone(), timeout, f).await {
        Ok(v) => {
            hold_back(&req).await;
            Ok(v)
        }
        Err(e @ ExecError::Timeout { .. }) => Err(timed_out(d, iface, req, e).await),
        Err(e) => Err(Failure::new(iface, e.to_string())),
    }
}

/// A request of `iface` that timed out: commits what it had queued so far (the hung
/// call can no longer add to it) and fails.
pub(crate) async fn timed_out(
    d: &Arc<Daemon>,
    iface: &'static str,
    req: Arc<Request>,
    e: ExecError,
) -> Failure {
    // Logged by the commit; the answer is the timeout either way.
    let _ = d.executor.run_plain(move || req.commit()).await;
    Failure::new(iface, e.to_string())
}

/// Holds the answer back when a plugin (a rate limiter) asked: waits here, on the
/// async side, holding no thread.
pub(crate) async fn hold_back(req: &Request) {
    let delay = req.answer_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}
