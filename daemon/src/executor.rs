//! Where requests' chains run, with a timeout per hook call: the worker pool, and the
//! caller's own thread under a watch.
//!
//! The pool runs what is long (bcrypt, store work, a chain that has been slow), off the
//! async threads: jobs are served first come, first served by four threads per core
//! (the daemon sizes it so; a login's thread mostly waits on `password::lanes`).
//! When a hook call runs past the timeout, the waiter answers at once. A call that can
//! be ended (an isolated instance's: its host is killed) is cancelled and its thread
//! comes back. An in-process call cannot be ended: the request is abandoned, and a
//! replacement thread takes the stuck one's place, so a hung plugin never starves the
//! others. At most `max_stuck` threads may be stuck at once; beyond that new requests
//! are refused with a clear error until one returns.
//!
//! A short chain (an event through word filters: a few microseconds) costs less than
//! the two thread hand-offs the pool would add, so [`Executor::run_here`] runs it on
//! the caller's thread, a connection's async task, and a watch thread enforces the
//! same timeout from outside: it cancels a call that can be ended, and abandons one
//! that cannot, handing the request's answer (and the connection) to a callback, so
//! the client is answered on time while the call runs on. Until an abandoned call
//! returns, nothing more runs that way: the async threads are never all lost.

use std::{
    cell::Cell,
    collections::VecDeque,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Condvar, Mutex,
    },
    time::Duration,
};

use tokio::sync::oneshot;

use crate::{
    hook::Hook,
    request::{Finish, GaveUp, Request},
};

type Job = Box<dyn FnOnce() + Send>;

/// Why a job gave no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ExecError {
    /// A hook call ran past `daemon.hook_timeout_ms`.
    #[error("instance {instance:?} did not answer {hook} within {timeout_ms} ms")]
    Timeout {
        instance: Arc<str>,
        hook: Hook,
        timeout_ms: u64,
    },
    /// Too many hook calls are hung: new requests are refused.
    #[error("{0} hook calls are hung past their timeout; refusing new requests until one returns")]
    Overloaded(usize),
    /// The job panicked (the panic's message).
    #[error("internal error: {0}")]
    Panicked(String),
    /// The daemon is shutting down.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// The jobs waiting, and the workers.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Workers waiting for a job.
    idle: usize,
    /// Workers alive (stuck ones included until they retire).
    workers: usize,
}

struct Inner {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Threads the pool keeps; above them it grows while jobs wait ([`Queue`]).
    base_workers: usize,
    /// The most threads it grows to.
    max_workers: usize,
    /// Runs on callers' threads right now, and the most allowed at once.
    here_running: AtomicUsize,
    here_limit: AtomicUsize,
    stuck: AtomicUsize,
    max_stuck: usize,
    shutdown: AtomicBool,
    watch: Watch,
}

/// Runs on callers' threads that the watch thread keeps an eye on.
struct Watch {
    state: Mutex<WatchState>,
    wake: Condvar,
    /// Calls run here that were abandoned and have not returned yet.
    stuck_here: AtomicUsize,
}

#[derive(Default)]
struct WatchState {
    next_id: u64,
    runs: Vec<Watched>,
    /// Runs begun since the watch last looked: while there are, it keeps looking.
    started: u64,
    /// The watch thread is waiting with no deadline: a new run must wake it.
    idle: bool,
    /// How often the watch looks while runs come and go: half the shortest timeout,
    /// so a call is seen well before its deadline.
    tick: Option<Duration>,
    stop: bool,
}

/// One run on a caller's thread.
struct Watched {
    id: u64,
    req: Arc<Request>,
    timeout: Duration,
    /// Set once the watch acted on it (the timeout it answered).
    timed_out: Option<ExecError>,
    /// Given the request's timeout when its hung call is abandoned: answers the client.
    on_abandon: Option<OnAbandon>,
}

/// What to do with a request whose call, run on a caller's thread, was abandoned: the
/// caller is stuck in it, so this answers the client (with the timeout given).
pub(crate) type OnAbandon = Box<dyn FnOnce(ExecError) + Send>;

/// How a run on the caller's thread ended.
#[derive(Debug)]
pub(crate) enum Here<T> {
    /// It finished in time (or failed as a job fails: a panic).
    Done(Result<T, ExecError>),
    /// A call ran past the timeout and was ended: answer this.
    TimedOut(ExecError),
    /// A call ran past the timeout and could not be ended: the request was given to
    /// the `OnAbandon` callback; the caller drops everything of it.
    Abandoned,
}

/// The pool. Cloning shares it.
#[derive(Clone)]
pub(crate) struct Executor {
    inner: Arc<Inner>,
}

thread_local! {
    /// Set on a worker whose job was abandoned: a replacement already exists, so it exits.
    static RETIRE: Cell<bool> = const { Cell::new(false) };
}

impl Executor {
    /// Starts `workers` threads. The pool grows past them, up to eight times as many
    /// (at least [`MIN_MAX_WORKERS`]), while jobs wait with every thread busy: a call
    /// that hangs until its timeout (a plugin host that spins, a slow directory) holds
    /// its thread, and must not hold the requests queued behind it. The extra threads
    /// exit after [`EXTRA_IDLE`] without work.
    pub(crate) fn new(workers: usize, max_stuck: usize) -> Executor {
        let workers = workers.max(1);
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            base_workers: workers,
            max_workers: (workers * 8).max(MIN_MAX_WORKERS),
            here_running: AtomicUsize::new(0),
            here_limit: AtomicUsize::new(usize::MAX),
            stuck: AtomicUsize::new(0),
            max_stuck,
            shutdown: AtomicBool::new(false),
            watch: Watch {
                state: Mutex::new(WatchState::default()),
                wake: Condvar::new(),
                stuck_here: AtomicUsize::new(0),
            },
        });
        lock(&inner.queue).workers = workers;
        for _ in 0..workers {
            spawn_worker(inner.clone());
        }
        let weak = Arc::downgrade(&inner);
        let watch = std::thread::Builder::new()
            .name("flaskbbd-watch".into())
            .spawn(move || watch_loop(weak));
        if let Err(e) = watch {
            // Without the watch nothing may run here; the pool does it all.
            tracing::error!("cannot start the watch thread: {e}");
            inner
                .watch
                .stuck_here
                .store(usize::MAX / 2, Ordering::Release);
        }
        Executor { inner }
    }

    /// At most `n` requests run on callers' threads at once (the async threads less
    /// one: however many calls there hang until their timeout, one thread is always
    /// left to read, route and answer the rest).
    pub(crate) fn set_here_limit(&self, n: usize) {
        self.inner.here_limit.store(n.max(1), Ordering::Release);
    }

    /// Whether a request may run on the caller's thread now: not while a call run that
    /// way is stuck (each holds an async thread), nor while too many are stuck at all,
    /// nor while the most allowed at once already do. A `true` takes one of those
    /// places: the caller must then call [`Executor::run_here`], which gives it back.
    pub(crate) fn can_run_here(&self) -> bool {
        if self.inner.watch.stuck_here.load(Ordering::Acquire) != 0
            || self.stuck() >= self.inner.max_stuck
            || self.inner.shutdown.load(Ordering::Acquire)
        {
            return false;
        }
        let limit = self.inner.here_limit.load(Ordering::Acquire);
        self.inner
            .here_running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Runs `f` for `req` on this thread, with each hook call of the request watched
    /// from outside: past `timeout`, a call that can be ended is (the answer is
    /// [`Here::TimedOut`]); one that cannot is abandoned, counted as stuck, and
    /// `on_abandon` is called at once from the watch thread with the timeout, while
    /// this thread stays in the call until it returns ([`Here::Abandoned`]).
    /// For short work only: an async caller is blocked meanwhile. Only after
    /// [`Executor::can_run_here`] said yes.
    pub(crate) fn run_here<T>(
        &self,
        req: &Arc<Request>,
        timeout: Duration,
        f: impl FnOnce() -> T,
        on_abandon: OnAbandon,
    ) -> Here<T> {
        /// Gives back the place `can_run_here` took, however the run ends.
        struct Place<'a>(&'a AtomicUsize);
        impl Drop for Place<'_> {
            fn drop(&mut self) {
                let _ = self
                    .0
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            }
        }
        let _place = Place(&self.inner.here_running);
        let id = self.watch(req, timeout, Some(on_abandon));
        let r = catch_unwind(AssertUnwindSafe(f));
        let r = r.map_err(|p| ExecError::Panicked(panic_message(&*p)));
        self.unwatch(id, req, r, false)
    }

    /// Runs `fut`, a request's chain that only crosses to plugin hosts, on this async
    /// task, watched as [`Executor::run_here`]'s runs are: past `timeout` the call's
    /// host is killed (its lane's end is the call's, and the answer
    /// [`Here::TimedOut`]). No thread waits meanwhile, so such runs take no place
    /// among those on callers' threads and need no takeover: a call that cannot be
    /// ended yet (its host still starting when its timeout passes: it is then not
    /// sent, see [`Request::arm_cancel`]) is answered with its timeout once it
    /// returns, never [`Here::Abandoned`]. A panic on the way fails the request as in
    /// `run_here`.
    pub(crate) async fn run_crossing<T>(
        &self,
        req: &Arc<Request>,
        timeout: Duration,
        fut: impl std::future::Future<Output = T>,
    ) -> Here<T> {
        let id = self.watch(req, timeout, None);
        // Should the task be dropped before the chain returns (the runtime shutting
        // down), its run leaves the watch, which must not act on a call nobody awaits.
        let _off = OffWatch {
            watch: &self.inner.watch,
            id,
        };
        // A panic in the daemon's own code on the way (the crossing's, or a host API
        // call it serves) fails this request as one in `run_here` does, rather than
        // unwinding the connection's task and leaving its client unanswered.
        let mut fut = std::pin::pin!(fut);
        let r = std::future::poll_fn(|cx| {
            match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
                Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
                Ok(std::task::Poll::Ready(r)) => std::task::Poll::Ready(Ok(r)),
                Err(p) => std::task::Poll::Ready(Err(ExecError::Panicked(panic_message(&*p)))),
            }
        })
        .await;
        self.unwatch(id, req, r, true)
    }

    /// Puts `req`'s run on the watch; its id.
    fn watch(&self, req: &Arc<Request>, timeout: Duration, on_abandon: Option<OnAbandon>) -> u64 {
        let watch = &self.inner.watch;
        let mut st = lock(&watch.state);
        let id = st.next_id;
        st.next_id += 1;
        st.started += 1;
        let tick = (timeout / 2).max(Duration::from_millis(1));
        st.tick = Some(st.tick.map_or(tick, |t| t.min(tick)));
        st.runs.push(Watched {
            id,
            req: req.clone(),
            timeout,
            timed_out: None,
            on_abandon,
        });
        if st.idle {
            st.idle = false;
            watch.wake.notify_one();
        }
        id
    }

    /// Takes run `id` off the watch once it returned `r`: how it ended. An abandoned
    /// run is [`Here::Abandoned`] (its client was answered when it was abandoned),
    /// unless `answer_late`: then its timeout is the answer now.
    fn unwatch<T>(
        &self,
        id: u64,
        req: &Request,
        r: Result<T, ExecError>,
        answer_late: bool,
    ) -> Here<T> {
        let watch = &self.inner.watch;
        let finish = req.finish();
        let watched = {
            let mut st = lock(&watch.state);
            let at = st.runs.iter().position(|w| w.id == id);
            at.map(|i| st.runs.swap_remove(i))
        };
        let timed_out = watched.and_then(|w| w.timed_out);
        match finish {
            Finish::Finished => Here::Done(r),
            Finish::Cancelled => Here::TimedOut(timed_out.unwrap_or(ExecError::Panicked(
                "a hook call was cancelled without a timeout".into(),
            ))),
            Finish::Abandoned => {
                self.inner.stuck.fetch_sub(1, Ordering::AcqRel);
                watch.stuck_here.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!(
                    "an abandoned hook call returned; requests run on the async threads again"
                );
                match timed_out {
                    Some(e) if answer_late => Here::TimedOut(e),
                    _ => Here::Abandoned,
                }
            }
        }
    }

    /// Jobs waiting for a worker thread right now.
    pub(crate) fn queued(&self) -> usize {
        lock(&self.inner.queue).jobs.len()
    }

    /// Worker threads alive right now.
    #[cfg(test)]
    fn workers(&self) -> usize {
        lock(&self.inner.queue).workers
    }

    /// Hook calls stuck past their timeout right now.
    pub(crate) fn stuck(&self) -> usize {
        self.inner.stuck.load(Ordering::Acquire)
    }

    /// Runs `f` for `req` on the pool and waits for it; answers `Timeout` as soon as one
    /// hook call of the request has run longer than `timeout`.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        req: Arc<Request>,
        timeout: Duration,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ExecError> {
        let stuck = self.stuck();
        if stuck >= self.inner.max_stuck {
            return Err(ExecError::Overloaded(stuck));
        }
        let (tx, mut rx) = oneshot::channel();
        let job_req = req.clone();
        let inner = self.inner.clone();
        self.submit(Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f));
            if job_req.finish() == Finish::Abandoned {
                // Abandoned while we ran: our replacement is already serving.
                inner.stuck.fetch_sub(1, Ordering::AcqRel);
                RETIRE.with(|r| r.set(true));
            }
            let _ = tx.send(r);
        }))?;
        loop {
            let wait = match req.current() {
                Some(c) => timeout.saturating_sub(c.since.elapsed()),
                None => timeout,
            };
            tokio::select! {
                r = &mut rx => {
                    return match r {
                        Ok(Ok(v)) => Ok(v),
                        Ok(Err(p)) => Err(ExecError::Panicked(panic_message(&*p))),
                        Err(_) => Err(ExecError::ShuttingDown),
                    };
                }
                _ = tokio::time::sleep(wait) => {
                    let Some(c) = req.current() else { continue };
                    if c.since.elapsed() < timeout {
                        continue;
                    }
                    let timeout_ms = timeout.as_millis() as u64;
                    crate::metrics::global().hook_timeout(&c.instance, c.hook);
                    let timed_out = ExecError::Timeout {
                        instance: c.instance.clone(),
                        hook: c.hook,
                        timeout_ms,
                    };
                    match req.give_up() {
                        GaveUp::Cancelled => {
                            tracing::error!(
                                instance = %c.instance, hook = %c.hook, timeout_ms,
                                "hook call timed out; its plugin host is killed and replaced"
                            );
                            return Err(timed_out);
                        }
                        GaveUp::Abandoned => {
                            self.inner.stuck.fetch_add(1, Ordering::AcqRel);
                            lock(&self.inner.queue).workers += 1;
                            spawn_worker(self.inner.clone());
                            tracing::error!(
                                instance = %c.instance, hook = %c.hook, timeout_ms,
                                "hook call timed out; the request fails and the call is left to finish on its own thread"
                            );
                            return Err(timed_out);
                        }
                        GaveUp::Finished => {}
                    }
                }
            }
        }
    }

    /// Runs `f` on the pool without a request (no timeout): store work for the CLI and
    /// admin methods.
    pub(crate) async fn run_plain<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ExecError> {
        let (tx, rx) = oneshot::channel();
        self.submit(Box::new(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(f)));
        }))?;
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(p)) => Err(ExecError::Panicked(panic_message(&*p))),
            Err(_) => Err(ExecError::ShuttingDown),
        }
    }

    fn submit(&self, job: Job) -> Result<(), ExecError> {
        if self.inner.shutdown.load(Ordering::Acquire) {
            return Err(ExecError::ShuttingDown);
        }
        let mut q = lock(&self.inner.queue);
        q.jobs.push_back(job);
        // Every idle thread already has a job to take: one more thread, up to the cap.
        let grow = q.jobs.len() > q.idle && q.workers < self.inner.max_workers;
        if grow {
            q.workers += 1;
        }
        drop(q);
        if grow {
            spawn_worker(self.inner.clone());
        }
        self.inner.ready.notify_one();
        Ok(())
    }

    /// Lets the workers exit once the queue is empty.
    pub(crate) fn shutdown(&self) {
        self.inner.shutdown.store(true, Ordering::Release);
        self.inner.ready.notify_all();
        lock(&self.inner.watch.state).stop = true;
        self.inner.watch.wake.notify_one();
    }
}

/// The fewest threads the pool may grow to.
const MIN_MAX_WORKERS: usize = 64;

/// How long a thread above the pool's base size waits for work before it exits.
const EXTRA_IDLE: Duration = Duration::from_secs(10);

/// How long the watch thread sleeps when nothing runs on callers' threads.
const IDLE_LOOK: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes a run off the watch when dropped, if it is still on it.
struct OffWatch<'a> {
    watch: &'a Watch,
    id: u64,
}

impl Drop for OffWatch<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.watch.state);
        if let Some(at) = st.runs.iter().position(|w| w.id == self.id) {
            st.runs.swap_remove(at);
        }
    }
}

/// The watch thread: looks at the runs on callers' threads, sleeps until the next
/// deadline (or a tick while runs come and go, or until woken when none do), and acts
/// on each call past its timeout. Ends with the pool.
fn watch_loop(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(inner) = inner.upgrade() else { return };
        let watch = &inner.watch;
        let mut st = lock(&watch.state);
        if st.stop {
            return;
        }
        let now = std::time::Instant::now();
        let tick = st.tick.unwrap_or(Duration::from_millis(100));
        let mut next = now + tick;
        let mut acted = Vec::new();
        for w in st.runs.iter_mut().filter(|w| w.timed_out.is_none()) {
            let Some(c) = w.req.current() else { continue };
            let due = c.since + w.timeout;
            if due > now {
                next = next.min(due);
                continue;
            }
            crate::metrics::global().hook_timeout(&c.instance, c.hook);
            let timed_out = ExecError::Timeout {
                instance: c.instance.clone(),
                hook: c.hook,
                timeout_ms: w.timeout.as_millis() as u64,
            };
            // Recorded before the request is given up, so its thread, which takes the
            // run out under this lock, finds it.
            w.timed_out = Some(timed_out.clone());
            match w.req.give_up() {
                GaveUp::Cancelled => tracing::error!(
                    instance = %c.instance, hook = %c.hook, timeout_ms = w.timeout.as_millis() as u64,
                    "hook call timed out; its plugin host is killed and replaced"
                ),
                GaveUp::Abandoned => {
                    inner.stuck.fetch_add(1, Ordering::AcqRel);
                    watch.stuck_here.fetch_add(1, Ordering::AcqRel);
                    tracing::error!(
                        instance = %c.instance, hook = %c.hook, timeout_ms = w.timeout.as_millis() as u64,
                        "hook call timed out; the request fails and the call is left to finish on its thread (requests run on the pool until it returns)"
                    );
                    acted.extend(w.on_abandon.take().map(|f| (f, timed_out)));
                }
                GaveUp::Finished => {}
            }
        }
        if !acted.is_empty() {
            drop(st);
            for (answer, timed_out) in acted {
                answer(timed_out);
            }
            continue;
        }
        let wait = if st.runs.is_empty() && st.started == 0 {
            // Nothing ran since the last look: wait to be woken by the next run (and
            // look now and then whether the pool still exists).
            st.idle = true;
            IDLE_LOOK
        } else {
            next.saturating_duration_since(now)
        };
        st.started = 0;
        let _ = watch.wake.wait_timeout(st, wait);
    }
}

fn spawn_worker(inner: Arc<Inner>) {
    let worker = inner.clone();
    let spawned = std::thread::Builder::new()
        .name("flaskbbd-worker".into())
        .spawn(move || worker_loop(&worker));
    if let Err(e) = spawned {
        lock(&inner.queue).workers -= 1;
        tracing::error!("cannot start a worker thread: {e}");
    }
}

/// One worker: takes jobs until the pool shuts down, its job was abandoned (its
/// replacement serves), or it is one too many and has been idle for [`EXTRA_IDLE`].
fn worker_loop(inner: &Inner) {
    loop {
        let job = {
            let mut q = lock(&inner.queue);
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    break j;
                }
                if inner.shutdown.load(Ordering::Acquire) {
                    q.workers -= 1;
                    return;
                }
                q.idle += 1;
                let (back, waited) = inner
                    .ready
                    .wait_timeout(q, EXTRA_IDLE)
                    .unwrap_or_else(|e| e.into_inner());
                q = back;
                q.idle -= 1;
                if waited.timed_out() && q.jobs.is_empty() && q.workers > inner.base_workers {
                    q.workers -= 1;
                    return;
                }
            }
        };
        job();
        if RETIRE.with(|r| r.get()) {
            lock(&inner.queue).workers -= 1;
            return;
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    plugin_abi::sdk::panic_payload(p)
        .unwrap_or("a worker panicked")
        .to_owned()
}

#[cfg(test)]
mod tests {
    //! The pool with plain closures standing in for hook calls: the request's
    //! current-call slot is what names a hung impl.

    use super::*;
    use crate::testing::Setup;

    const TIMEOUT: Duration = Duration::from_millis(150);

    /// A job that says it is running `instance`'s user_registered impl for `ms`.
    fn hook_call(req: &Arc<Request>, instance: &str, ms: u64) -> impl FnOnce() + Send + 'static {
        let (req, instance): (Arc<Request>, Arc<str>) = (req.clone(), instance.into());
        move || {
            req.enter(&instance, Hook::UserRegistered);
            std::thread::sleep(Duration::from_millis(ms));
            req.leave();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_that_wait_do_not_hold_the_jobs_behind_them() {
        // One base thread: four jobs that each wait for all four to be running at
        // once can only finish if the pool grows.
        let exec = Executor::new(1, 4);
        let running = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..4)
            .map(|_| {
                let (exec, running) = (exec.clone(), running.clone());
                tokio::spawn(async move {
                    exec.run_plain(move || {
                        running.fetch_add(1, Ordering::AcqRel);
                        let until = std::time::Instant::now() + Duration::from_secs(20);
                        while running.load(Ordering::Acquire) < 4 {
                            if std::time::Instant::now() > until {
                                return false;
                            }
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        true
                    })
                    .await
                })
            })
            .collect();
        for job in jobs {
            assert!(
                job.await.unwrap().unwrap(),
                "the four jobs never ran at once"
            );
        }
        assert!(exec.workers() >= 4);
    }

    #[test]
    fn places_on_callers_threads_are_limited_and_given_back() {
        let s = Setup::new("exec-here-limit", "");
        let exec = Executor::new(1, 4);
        exec.set_here_limit(1);
        assert!(exec.can_run_here());
        assert!(!exec.can_run_here(), "a second place past the limit of one");
        let req = s.request();
        let r = exec.run_here(&req, TIMEOUT, || 7, Box::new(|_| {}));
        assert!(matches!(r, Here::Done(Ok(7))));
        assert!(exec.can_run_here(), "the place was not given back");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_past_its_timeout_answers_at_once_naming_the_impl() {
        let s = Setup::new("exec-timeout", "");
        let exec = Executor::new(1, 4);
        let req = s.request();
        let started = std::time::Instant::now();
        let err = exec
            .run(req.clone(), TIMEOUT, hook_call(&req, "slow", 1500))
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            err.to_string(),
            "instance \"slow\" did not answer flaskbb_event_user_registered within 150 ms"
        );
        assert!(req.is_abandoned());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_call_does_not_starve_the_pool_and_its_thread_retires_after() {
        let s = Setup::new("exec-starve", "");
        // One worker: it is the stuck one, so the next job needs its replacement.
        let exec = Executor::new(1, 4);
        let req = s.request();
        assert!(exec
            .run(req.clone(), TIMEOUT, hook_call(&req, "slow", 800))
            .await
            .is_err());
        assert_eq!(exec.stuck(), 1);
        assert_eq!(exec.run(s.request(), TIMEOUT, || 42).await.unwrap(), 42);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(exec.stuck(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_max_stuck_calls_new_requests_are_refused() {
        let s = Setup::new("exec-overload", "");
        let exec = Executor::new(1, 1);
        let req = s.request();
        assert!(exec
            .run(req.clone(), TIMEOUT, hook_call(&req, "slow", 800))
            .await
            .is_err());
        let refused = exec.run(s.request(), TIMEOUT, || ()).await;
        assert!(
            matches!(refused, Err(ExecError::Overloaded(1))),
            "{refused:?}"
        );
    }

    #[test]
    fn a_run_here_that_finishes_in_time_is_done() {
        let s = Setup::new("here-done", "");
        let exec = Executor::new(1, 4);
        let req = s.request();
        let r = exec.run_here(
            &req,
            TIMEOUT,
            hook_call(&req, "quick", 1),
            Box::new(|_| panic!("not abandoned")),
        );
        assert!(matches!(r, Here::Done(Ok(()))), "{r:?}");
        let r = exec.run_here(
            &s.request(),
            TIMEOUT,
            || panic!("job panics"),
            Box::new(|_| {}),
        );
        assert!(
            matches!(&r, Here::Done(Err(ExecError::Panicked(m))) if m == "job panics"),
            "{r:?}"
        );
        assert!(exec.can_run_here());
    }

    #[test]
    fn a_hung_run_here_is_handed_to_its_callback_on_time_and_counted_stuck_until_it_returns() {
        let s = Setup::new("here-hung", "");
        let exec = Executor::new(1, 4);
        let req = s.request();
        let (tx, rx) = std::sync::mpsc::channel();
        let started = std::time::Instant::now();
        let runner = {
            let (exec, req) = (exec.clone(), req.clone());
            std::thread::spawn(move || {
                exec.run_here(
                    &req,
                    TIMEOUT,
                    hook_call(&req, "slow", 1200),
                    Box::new(move |e| {
                        tx.send((e.to_string(), started.elapsed())).unwrap();
                    }),
                )
            })
        };
        let (message, at) = rx.recv().unwrap();
        assert_eq!(
            message,
            "instance \"slow\" did not answer flaskbb_event_user_registered within 150 ms"
        );
        assert!(at >= TIMEOUT && at < Duration::from_millis(1000), "{at:?}");
        // While it hangs: counted stuck, and nothing more runs on callers' threads.
        assert_eq!(exec.stuck(), 1);
        assert!(!exec.can_run_here());
        assert!(req.is_abandoned());
        assert!(matches!(runner.join().unwrap(), Here::Abandoned));
        assert_eq!(exec.stuck(), 0);
        assert!(exec.can_run_here());
    }

    #[test]
    fn a_hung_run_here_that_can_be_ended_is_cancelled_and_answers_the_timeout() {
        let s = Setup::new("here-cancel", "");
        let exec = Executor::new(1, 4);
        let req = s.request();
        let ended = Arc::new(AtomicBool::new(false));
        let job = {
            let (req, ended) = (req.clone(), ended.clone());
            move || {
                req.enter(&Arc::from("isolated"), Hook::UserRegistered);
                let e = ended.clone();
                assert!(req.arm_cancel(crate::request::Cancel(Arc::new(move || {
                    e.store(true, Ordering::SeqCst)
                }))));
                // As an isolated call does: it returns once its host is killed.
                while !ended.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                req.leave();
            }
        };
        let started = std::time::Instant::now();
        let r = exec.run_here(&req, TIMEOUT, job, Box::new(|_| panic!("not abandoned")));
        assert!(
            matches!(&r, Here::TimedOut(e) if e.to_string() == "instance \"isolated\" did not answer flaskbb_event_user_registered within 150 ms"),
            "{r:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(1000));
        assert_eq!(exec.stuck(), 0);
        assert!(exec.can_run_here());
    }

    /// A crossing's call as an isolated call does it: its request enters `instance`,
    /// arms a cancel that ends it (its host killed), and waits as a task until then
    /// or for `ms`.
    async fn crossing(req: &Arc<Request>, instance: &str, ms: u64, cancelled: &Arc<AtomicBool>) {
        req.enter(&Arc::from(instance), Hook::UserRegistered);
        let c = cancelled.clone();
        assert!(req.arm_cancel(crate::request::Cancel(Arc::new(move || {
            c.store(true, Ordering::SeqCst)
        }))));
        let until = std::time::Instant::now() + Duration::from_millis(ms);
        while !cancelled.load(Ordering::SeqCst) && std::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        req.leave();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crossing_past_its_timeout_is_cancelled_and_answers_it_holding_no_place() {
        let s = Setup::new("cross-timeout", "");
        let exec = Executor::new(1, 4);
        exec.set_here_limit(1);
        let req = s.request();
        let cancelled = Arc::new(AtomicBool::new(false));
        let started = std::time::Instant::now();
        let r = exec
            .run_crossing(&req, TIMEOUT, crossing(&req, "isolated", 5000, &cancelled))
            .await;
        assert!(
            matches!(&r, Here::TimedOut(e) if e.to_string() == "instance \"isolated\" did not answer flaskbb_event_user_registered within 150 ms"),
            "{r:?}"
        );
        assert!(cancelled.load(Ordering::SeqCst));
        assert!(started.elapsed() < Duration::from_millis(1000));
        assert_eq!(exec.stuck(), 0);
        // It took no place among the runs on callers' threads, and left none taken.
        assert!(exec.can_run_here());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crossing_in_time_is_done_and_one_dropped_midway_leaves_the_watch() {
        let s = Setup::new("cross-drop", "");
        let exec = Executor::new(1, 4);
        let req = s.request();
        let cancelled = Arc::new(AtomicBool::new(false));
        let r = exec
            .run_crossing(&req, TIMEOUT, async {
                crossing(&req, "quick", 10, &cancelled).await;
                7
            })
            .await;
        assert!(matches!(r, Here::Done(Ok(7))), "{r:?}");
        // A crossing whose task is dropped while it waits (the runtime stopping):
        // the watch must not act on it once its timeout passes.
        let dropped = s.request();
        let fired = Arc::new(AtomicBool::new(false));
        let waited = tokio::time::timeout(
            Duration::from_millis(30),
            exec.run_crossing(&dropped, TIMEOUT, crossing(&dropped, "gone", 5000, &fired)),
        )
        .await;
        assert!(waited.is_err(), "it ended before it was dropped");
        tokio::time::sleep(TIMEOUT * 3).await;
        assert!(
            !fired.load(Ordering::SeqCst),
            "the watch acted on a dropped crossing"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crossing_given_up_while_its_host_starts_is_not_sent_and_answers_its_timeout() {
        let s = Setup::new("cross-starting", "");
        let exec = Executor::new(1, 4);
        let req = s.request();
        let armed = Arc::new(AtomicBool::new(true));
        let r = exec
            .run_crossing(&req, TIMEOUT, {
                let (req, armed) = (req.clone(), armed.clone());
                async move {
                    req.enter(&Arc::from("starting"), Hook::UserRegistered);
                    // Its host starting, past the timeout, before the call is armed.
                    tokio::time::sleep(TIMEOUT * 3).await;
                    let could = req.arm_cancel(crate::request::Cancel(Arc::new(|| {})));
                    armed.store(could, Ordering::SeqCst);
                    req.leave();
                }
            })
            .await;
        assert!(
            matches!(&r, Here::TimedOut(e) if e.to_string() == "instance \"starting\" did not answer flaskbb_event_user_registered within 150 ms"),
            "{r:?}"
        );
        assert!(
            !armed.load(Ordering::SeqCst),
            "a call given up could still be armed (and sent, with nothing to end it)"
        );
        assert_eq!(exec.stuck(), 0);
        assert!(exec.can_run_here());
    }

    #[test]
    fn a_call_is_armed_before_the_watch_gives_it_up_or_learns_it_was() {
        let s = Setup::new("arm-race", "");
        // Armed first: the watch ends the call with its cancel, and does not abandon it.
        let req = s.request();
        req.enter(&Arc::from("armed"), Hook::UserRegistered);
        let ended = Arc::new(AtomicBool::new(false));
        let e = ended.clone();
        assert!(req.arm_cancel(crate::request::Cancel(Arc::new(move || {
            e.store(true, Ordering::SeqCst)
        }))));
        assert_eq!(req.give_up(), GaveUp::Cancelled);
        assert!(ended.load(Ordering::SeqCst));
        // Given up first: arming fails, so the call is not started.
        let req = s.request();
        req.enter(&Arc::from("late"), Hook::UserRegistered);
        assert_eq!(req.give_up(), GaveUp::Abandoned);
        assert!(!req.arm_cancel(crate::request::Cancel(Arc::new(|| {}))));
        // Finished first: nothing to give up.
        let req = s.request();
        req.enter(&Arc::from("done"), Hook::UserRegistered);
        assert_eq!(req.finish(), Finish::Finished);
        assert_eq!(req.give_up(), GaveUp::Finished);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_crossing_fails_its_request_and_leaves_the_watch() {
        let s = Setup::new("cross-panic", "");
        let exec = Executor::new(1, 4);
        let req = s.request();
        // A long timeout: the panic hook (a backtrace, under RUST_BACKTRACE, on a busy
        // machine) may take longer than TIMEOUT, which would make the answer a timeout.
        let r = exec
            .run_crossing(&req, Duration::from_secs(60), async {
                req.enter(&Arc::from("daemon"), Hook::UserRegistered);
                tokio::task::yield_now().await;
                panic!("crossing panics")
            })
            .await;
        assert!(
            matches!(&r, Here::Done(Err(ExecError::Panicked(m))) if m == "crossing panics"),
            "{r:?}"
        );
        tokio::time::sleep(TIMEOUT * 2).await;
        assert_eq!(exec.stuck(), 0);
        assert!(exec.can_run_here());
        assert!(lock(&exec.inner.watch.state).runs.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crossing_that_cannot_be_ended_answers_its_timeout_once_it_returns() {
        let s = Setup::new("cross-abandon", "");
        let exec = Executor::new(1, 4);
        let req = s.request();
        let r = exec
            .run_crossing(&req, TIMEOUT, async {
                // No cancel armed: the watch can only give the request up.
                req.enter(&Arc::from("stubborn"), Hook::UserRegistered);
                tokio::time::sleep(TIMEOUT * 3).await;
                req.leave();
            })
            .await;
        assert!(
            matches!(&r, Here::TimedOut(e) if e.to_string() == "instance \"stubborn\" did not answer flaskbb_event_user_registered within 150 ms"),
            "{r:?}"
        );
        assert_eq!(exec.stuck(), 0);
        assert!(exec.can_run_here());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_is_an_error_and_the_worker_goes_on() {
        let s = Setup::new("exec-panic", "");
        let exec = Executor::new(1, 1);
        let r = exec
            .run(s.request(), TIMEOUT, || panic!("job panics"))
            .await;
        assert!(
            matches!(&r, Err(ExecError::Panicked(m)) if m == "job panics"),
            "{r:?}"
        );
        assert_eq!(exec.run_plain(|| 7).await.unwrap(), 7);
    }
}
