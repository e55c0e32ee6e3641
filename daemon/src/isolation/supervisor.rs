//! The daemon's side of isolated instances: their plugin host process, the lanes their
//! calls run on, and what happens when the host dies or hangs.
//!
//! A [`Supervisor`] belongs to one host of one generation: every isolated instance of
//! one library with one sandbox (each made separately in the host, with its own
//! configuration and state). Consecutive impls of a chain served by the same host run
//! in one round trip ([`Supervisor::call_chain`]). It starts the host when
//! the generation is built (the manifest comes from there: the daemon never maps the
//! library), and again at the first call after the host died. Every death is logged
//! with its cause. Only hosts that fail to start, or die before they were given a
//! call, count towards a back-off (five within a minute back the instance off for a minute,
//! during which its calls fail closed naming the reason), as a service manager
//! throttles only what cannot start: a host that served and then died on a call is
//! replaced at once, and the address that sent the call (its `remote_addr`) is the
//! one held back: after five such calls within a minute, its calls of this instance
//! fail closed until the minute is over. A call past its timeout kills the
//! host (through the request's [`Cancel`]): the request answers at once and no thread
//! stays stuck. When the generation goes, the host is told to exit (its control channel
//! closes) and killed if it has not after a grace period.

use std::{
    collections::{BTreeMap, VecDeque},
    io,
    os::fd::{AsRawFd, OwnedFd},
    os::unix::{net::UnixStream, process::CommandExt, process::ExitStatusExt},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak},
    time::{Duration, Instant},
};

use plugin_abi::{abi::LogLevel, sdk::HookError};

use crate::{
    hook::Hook,
    instance::{CallCx, Instance},
    ipc::{
        self, page::Page, pipe::Pipe, Answer, AsyncLane, ChainAnswer, Down, HostCall, HostValue,
        Init, Lane, Started, Up, WireError, WireUser,
    },
    request::{Blame, Cancel, Request},
};

/// Deaths within this window count towards a back-off.
const DEATH_WINDOW: Duration = Duration::from_secs(60);
/// This many deaths within [`DEATH_WINDOW`] back the host's instances off.
const MAX_DEATHS: usize = 5;
/// How long a backed-off instance fails closed before its host is tried again.
const BACKOFF: Duration = Duration::from_secs(60);
/// Calls from one address that killed a host within [`DEATH_WINDOW`] after which
/// that address's calls of the host's instances fail closed.
const MAX_FAULTS: usize = 5;
/// Addresses remembered at most (the oldest are forgotten first): a flood of made-up
/// addresses must not grow the daemon without bound.
const MAX_FAULT_ADDRESSES: usize = 4096;
/// How long a retired host (its generation is gone) has to exit before it is killed.
const RETIRE_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for a host that closed a lane to finish dying.
const DEATH_GRACE: Duration = Duration::from_secs(2);

static HOST_PROGRAM: OnceLock<PathBuf> = OnceLock::new();

/// The plugin hosts of this process that have not been reaped, by pid.
static HOSTS: Mutex<BTreeMap<u32, Arc<str>>> = Mutex::new(BTreeMap::new());

/// The instances (their names joined by commas) whose plugin host `pid` is, if it is
/// one of this daemon's (the server refuses `org.flaskbb.Admin` to it).
pub(crate) fn host_of(pid: u32) -> Option<Arc<str>> {
    lock(&HOSTS).get(&pid).cloned()
}

/// Runs hosts from `program` instead of this process's own binary: for programs that
/// embed the daemon's parts (the benchmarks), whose own binary has no host mode.
pub(crate) fn set_host_program(program: PathBuf) {
    let _ = HOST_PROGRAM.set(program);
}

/// The binary a host runs: this process's own, through `/proc/self/exe`, so that a
/// host always speaks this daemon's protocol even after the file was upgraded on disk.
fn host_program() -> PathBuf {
    HOST_PROGRAM
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind these locks stays consistent across a panic; go on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the host said about itself when it first started.
#[derive(Debug, Clone)]
pub(crate) struct Ready {
    /// The library's manifest.
    pub manifest: ipc::Manifest,
    /// The `plugin-abi` version it was built against.
    pub abi_version: String,
    /// How far landlock narrowed the host's filesystem.
    pub landlock: String,
}

/// An isolated instance's host as `ListPlugins` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostStatus {
    /// `running`, `stopped` (a new host starts at the next call) or `backed-off`.
    pub state: &'static str,
    /// The running host's process id.
    pub pid: Option<u32>,
    /// Hosts started after the first.
    pub restarts: u32,
    /// How the last host ended, and when backed off, until when.
    pub last_exit: Option<String>,
    /// Round trips to its hosts so far (a run of several impls in one counts once).
    pub round_trips: u64,
    /// Of those, runs sent down the host's pipe behind another (`crate::ipc::pipe`).
    pub pipelined: u64,
    /// The instances the host serves.
    pub instances: Vec<String>,
}

/// Why a host did not start.
#[derive(Debug, Clone)]
pub(crate) struct StartError {
    /// One line, naming the library and, when one failed, the instance.
    pub message: String,
    /// The instance (its place in [`Init::instances`]) whose making failed, if one did.
    pub instance: Option<u32>,
}

/// Whom a host's log lines name: its instance (`instance="x"`), or for a host shared
/// by several, the host by its instances (`host_instances="f1, f2"`), never one of them
/// alone for what may be another's.
#[derive(Clone)]
struct Who {
    single: Option<Arc<str>>,
    shared: Option<Arc<str>>,
}

impl Who {
    fn of(init: &Init) -> Who {
        match init.instances.as_slice() {
            [one] => Who {
                single: Some(one.name.as_str().into()),
                shared: None,
            },
            all => Who {
                single: None,
                shared: Some(
                    all.iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                        .into(),
                ),
            },
        }
    }

    /// The instance, for a host of one.
    fn instance(&self) -> Option<&str> {
        self.single.as_deref()
    }

    /// The instances, for a shared host.
    fn shared(&self) -> Option<&str> {
        self.shared.as_deref()
    }
}

/// Why a run of impls in one host failed, and in which of them (its place in the run,
/// as the host last said on the lane's page, bounded by the run's length).
#[derive(Debug)]
pub(crate) struct RunError {
    /// The error, as for a single call.
    pub error: HookError,
    /// The impl of the run it is blamed on.
    pub step: usize,
}

/// One host process.
struct Proc {
    pid: u32,
    /// It was given a call: its death is no start-up failure but that call's doing
    /// (or a call's at the same moment), however soon it came.
    called: std::sync::atomic::AtomicBool,
    control: Mutex<UnixStream>,
    idle: Mutex<Vec<Lane>>,
    /// Idle lanes of calls that wait as async tasks ([`Supervisor::call_chain_async`]).
    idle_async: Mutex<Vec<AsyncLane>>,
    /// The lane that carries several awaited runs at once while it keeps up
    /// ([`Pipe`]); made at the first call that is not quiet.
    pipe: Mutex<Option<Arc<Pipe>>>,
    life: Mutex<Life>,
    ended: Condvar,
}

#[derive(Default)]
struct Life {
    /// The process has exited (and may be reaped): its pid must not be signalled.
    exited: bool,
    /// How it ended, once reaped.
    cause: Option<String>,
    /// Why the daemon killed it, when it did.
    killed_for: Option<String>,
    /// Its supervisor has counted its death (toward the back-off).
    counted: bool,
    /// Its generation is gone: its exit is expected.
    retiring: bool,
}

impl Proc {
    /// Kills the process (unless it has exited already), recording why.
    fn kill(&self, why: String) {
        let mut life = lock(&self.life);
        if life.exited {
            return;
        }
        life.killed_for.get_or_insert(why);
        // SAFETY: plain kill(2). The pid is ours and not yet reaped (reaping happens
        // only after `exited` is set, under this lock), so it cannot have been reused.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGKILL);
        }
    }

    /// Waits up to `wait` for the process to be reaped; its exit cause.
    fn wait_cause(&self, wait: Duration) -> Option<String> {
        let life = lock(&self.life);
        let (life, _) = self
            .ended
            .wait_timeout_while(life, wait, |l| l.cause.is_none())
            .unwrap_or_else(|e| e.into_inner());
        life.cause.clone()
    }

    /// Waits up to `wait` for its supervisor to have counted its death.
    fn wait_counted(&self, wait: Duration) {
        let life = lock(&self.life);
        let _ = self
            .ended
            .wait_timeout_while(life, wait, |l| !l.counted)
            .unwrap_or_else(|e| e.into_inner());
    }

    /// Whether its supervisor has counted its death.
    fn is_counted(&self) -> bool {
        lock(&self.life).counted
    }

    /// Running and not being killed: fit for a new call.
    fn is_alive(&self) -> bool {
        let life = lock(&self.life);
        !life.exited && life.killed_for.is_none()
    }

    /// An idle lane, or a new one handed to the host (its two sockets and its page).
    fn lane(&self) -> io::Result<Lane> {
        if let Some(lane) = lock(&self.idle).pop() {
            return Ok(lane);
        }
        // A socketpair per direction (see `Lane::split`), and the shared page.
        let (down_ours, down_theirs) = UnixStream::pair()?;
        let (up_theirs, up_ours) = UnixStream::pair()?;
        let (page, page_fd) = Page::create()?;
        ipc::send_fds(
            &lock(&self.control),
            &[
                down_theirs.as_raw_fd(),
                up_theirs.as_raw_fd(),
                page_fd.as_raw_fd(),
            ],
        )?;
        Ok(Lane::split(up_ours, down_ours, Some(page)))
    }

    /// Kills the host for sending `e` (on `way`: a lane, its pipe): what is no message,
    /// or an answer to a call it was not given.
    fn kill_unreadable(&self, way: &str, e: &io::Error) {
        self.kill(format!(
            "was killed by the daemon: it sent an unreadable message on {way} ({e})"
        ));
    }

    /// The pipe to send an awaited run down ([`Pipe`]), made on first use; `None` while
    /// it does not keep up (or a lane for it could not be opened): the run then takes
    /// a lane of its own.
    fn pipe(self: &Arc<Self>) -> Option<Arc<Pipe>> {
        let mut slot = lock(&self.pipe);
        if slot.as_ref().is_some_and(|p| p.is_done()) {
            *slot = None;
        }
        if let Some(pipe) = &*slot {
            return pipe.takes(PIPE_MOST, PIPE_STALL).then(|| pipe.clone());
        }
        let proc = Arc::downgrade(self);
        let unreadable = move |e: &io::Error| {
            if let Some(proc) = proc.upgrade() {
                proc.kill_unreadable("its pipe", e);
            }
        };
        let lane = self.lane().and_then(AsyncLane::of).ok()?;
        let pipe = Arc::new(Pipe::of(lane, unreadable));
        *slot = Some(pipe.clone());
        Some(pipe)
    }

    /// Tells the host to exit (its control channel and idle lanes close) and kills it
    /// if it has not after [`RETIRE_GRACE`].
    fn retire(self: &Arc<Self>) {
        lock(&self.life).retiring = true;
        lock(&self.idle).clear();
        lock(&self.idle_async).clear();
        if let Some(pipe) = lock(&self.pipe).take() {
            pipe.close();
        }
        let _ = lock(&self.control).shutdown(std::net::Shutdown::Both);
        let proc = self.clone();
        let spawned = std::thread::Builder::new()
            .name("flaskbbd-retire".into())
            .spawn(move || {
                if proc.wait_cause(RETIRE_GRACE).is_none() {
                    proc.kill("retired with its generation".into());
                }
            });
        if spawned.is_err() {
            self.kill("retired with its generation".into());
        }
    }
}

/// The first thing the host says about `run` in `pipe` of host `proc`. Behind another
/// run: every [`PIPE_STALL`] until the host begins this one, the runs it has not begun
/// are taken back (this one among them, which then hears so). A host whose page says
/// what cannot be is killed (and the run hears of its death).
async fn first_heard(pipe: &Pipe, run: &mut ipc::pipe::Run, proc: &Proc) -> io::Result<Up> {
    loop {
        if !run.behind || pipe.has_begun(run.number) {
            return run.next().await;
        }
        if let Ok(heard) = tokio::time::timeout(PIPE_STALL, run.next()).await {
            return heard;
        }
        match pipe.take_back() {
            Ok(0) => {}
            Ok(taken) => tracing::debug!(
                host = proc.pid,
                "took back {taken} runs waiting in the pipe behind a slow one: each goes on a lane of its own"
            ),
            Err(lie) => {
                proc.kill(format!("was killed by the daemon: {lie}"));
                // Its death ends the run; nothing is taken back meanwhile.
                return run.next().await;
            }
        }
    }
}

/// The most runs a [`Pipe`] holds before a run takes a lane of its own.
const PIPE_MOST: usize = 8;

/// How long a run may have been in the host before the next run goes round it (on a
/// lane of its own) rather than waiting behind it, and how long a run waits behind
/// another before it takes back the runs the host has not begun: fifty times what the
/// shipped five filters take, so only a run that is slow sends the others round (the
/// runtime's timers tick in milliseconds).
const PIPE_STALL: Duration = Duration::from_millis(1);

/// The supervisor's record of its hosts (one at a time).
#[derive(Default)]
struct State {
    proc: Option<Arc<Proc>>,
    deaths: VecDeque<Instant>,
    restarts: u32,
    last_exit: Option<String>,
    backoff_until: Option<Instant>,
    /// Calls that killed a host, by the address that sent them.
    faults: std::collections::HashMap<String, VecDeque<Instant>>,
}

/// One plugin host (the isolated instances of one library with one sandbox),
/// restarted as needed.
pub(crate) struct Supervisor {
    /// The instances' names, joined, for the host's command line and the admin check.
    instance: Arc<str>,
    /// Whom the log names for the host.
    who: Who,
    init: Init,
    round_trips: std::sync::atomic::AtomicU64,
    /// Of those, runs sent down a host's [`Pipe`] behind another.
    pipelined: std::sync::atomic::AtomicU64,
    start_timeout: Duration,
    state: Mutex<State>,
    me: Weak<Supervisor>,
}

impl Supervisor {
    /// Starts the host for `init`'s instances and waits (up to `start_timeout`) for it
    /// to load the library and make them; the error says why it did not, and which
    /// instance failed when one did.
    pub(crate) fn start(
        init: Init,
        start_timeout: Duration,
    ) -> Result<(Arc<Supervisor>, Ready), StartError> {
        let sup = Arc::new_cyclic(|me| Supervisor {
            who: Who::of(&init),
            instance: init
                .instances
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
                .into(),
            init,
            round_trips: std::sync::atomic::AtomicU64::new(0),
            pipelined: std::sync::atomic::AtomicU64::new(0),
            start_timeout,
            state: Mutex::new(State::default()),
            me: me.clone(),
        });
        let mut st = lock(&sup.state);
        match sup.spawn() {
            Ok((proc, ready)) => {
                st.proc = Some(proc);
                drop(st);
                Ok((sup, ready))
            }
            Err((proc, error)) => {
                // Reported as the generation's build error, not as a crash.
                if let Some(p) = proc {
                    lock(&p.life).retiring = true;
                    p.kill("failed to start".into());
                }
                Err(error)
            }
        }
    }

    /// Starts one host and does the handshake. On failure, the process (if it was
    /// started) and why.
    #[allow(clippy::type_complexity)]
    fn spawn(&self) -> Result<(Arc<Proc>, Ready), (Option<Arc<Proc>>, StartError)> {
        let fail = |message: String| {
            (
                None,
                StartError {
                    message,
                    instance: None,
                },
            )
        };
        let (ours, theirs) = UnixStream::pair()
            .map_err(|e| fail(format!("cannot make the plugin host's channel: {e}")))?;
        let mut child = self.launch(theirs).map_err(fail)?;
        for (stream, pipe) in [
            ("stdout", child.stdout.take().map(OwnedFd::from)),
            ("stderr", child.stderr.take().map(OwnedFd::from)),
        ] {
            if let Some(pipe) = pipe {
                forward_output(&self.who, child.id(), stream, pipe);
            }
        }
        let control = ours
            .try_clone()
            .map_err(|e| fail(format!("cannot use the plugin host's channel: {e}")))?;
        lock(&HOSTS).insert(child.id(), self.instance.clone());
        let proc = Arc::new(Proc {
            pid: child.id(),
            called: std::sync::atomic::AtomicBool::new(false),
            control: Mutex::new(control),
            idle: Mutex::new(Vec::new()),
            idle_async: Mutex::new(Vec::new()),
            pipe: Mutex::new(None),
            life: Mutex::new(Life::default()),
            ended: Condvar::new(),
        });
        let (reaped, me) = (proc.clone(), self.me.clone());
        let watcher = std::thread::Builder::new()
            .name("flaskbbd-host-reaper".into())
            .spawn(move || reap(child, &reaped, &me));
        if let Err(e) = watcher {
            proc.kill("no thread to watch it".into());
            return Err((
                Some(proc),
                StartError {
                    message: format!("cannot start a thread to watch the plugin host: {e}"),
                    instance: None,
                },
            ));
        }
        let handshake = self.handshake(ours);
        self.started(proc, handshake)
    }

    /// Starts the plugin host's process with `theirs` (the other end of its control
    /// channel) as its stdin and its output piped, in an environment of its own; on
    /// failure, why.
    fn launch(&self, theirs: UnixStream) -> Result<Child, String> {
        let program = host_program();
        Command::new(&program)
            .arg0("flaskbbd-plugin-host")
            .args(["plugin-host", "--instance", &self.instance])
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            // Its output is read and logged under the instance's name, never written
            // where the daemon's own log lines go.
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Hosts do not talk to the service manager or take sockets from it.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            // Few malloc arenas: each reserves address space the memory limit counts.
            .env("MALLOC_ARENA_MAX", "2")
            .spawn()
            .map_err(|e| format!("cannot start the plugin host ({}): {e}", program.display()))
    }

    /// What the `handshake` with the started host `proc` comes to: the host ready, or
    /// why not, with the process (killed, and its cause of death said, when the
    /// handshake broke; a refusal leaves it to the caller).
    #[allow(clippy::type_complexity)]
    fn started(
        &self,
        proc: Arc<Proc>,
        handshake: Result<Ready, Handshake>,
    ) -> Result<(Arc<Proc>, Ready), (Option<Arc<Proc>>, StartError)> {
        match handshake {
            Ok(ready) => Ok((proc, ready)),
            Err(Handshake::Refused(message, instance)) => {
                Err((Some(proc), StartError { message, instance }))
            }
            Err(Handshake::Broken(detail, making)) => {
                proc.kill(format!("did not finish starting: {detail}"));
                let cause = proc
                    .wait_cause(DEATH_GRACE)
                    .unwrap_or_else(|| "did not exit".into());
                let during = match making.and_then(|i| self.init.instances.get(i as usize)) {
                    Some(i) => format!("while making instance {:?} (its new)", i.name),
                    None => "while loading it".into(),
                };
                Err((
                    Some(proc),
                    StartError {
                        message: format!(
                            "plugin {}: the plugin host {cause} {during}",
                            self.init.library.display()
                        ),
                        instance: making,
                    },
                ))
            }
        }
    }

    fn handshake(&self, mut control: UnixStream) -> Result<Ready, Handshake> {
        let broken = |e: io::Error, making: Option<u32>| {
            Handshake::Broken(
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        format!("no answer within {} ms", self.start_timeout.as_millis())
                    }
                    _ => e.to_string(),
                },
                making,
            )
        };
        control
            .set_read_timeout(Some(self.start_timeout))
            .map_err(|e| broken(e, None))?;
        ipc::send(&mut control, &self.init).map_err(|e| broken(e, None))?;
        // The instance whose `new` runs now, as the host last said.
        let mut making = None;
        loop {
            match ipc::recv::<Started>(&mut control).map_err(|e| broken(e, making))? {
                Started::Making { instance } => {
                    making = Some(instance).filter(|&i| (i as usize) < self.init.instances.len());
                }
                Started::Ready {
                    manifest,
                    abi_version,
                    landlock,
                } => {
                    return Ok(Ready {
                        manifest,
                        abi_version,
                        landlock,
                    })
                }
                Started::Failed { message, instance } => {
                    let instance = instance.filter(|&i| (i as usize) < self.init.instances.len());
                    return Err(Handshake::Refused(message, instance));
                }
            }
        }
    }

    /// The running host when there is one fit for a call, without waiting for anything:
    /// not even for the state's lock, which [`Supervisor::running`] holds while a new
    /// host starts (up to `daemon.start_timeout`), so that an async thread never waits
    /// there (`None` then: the caller waits in `running`, off the async threads).
    fn running_now(&self) -> Option<Arc<Proc>> {
        let st = match self.state.try_lock() {
            Ok(st) => st,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        st.proc.clone().filter(|p| p.is_alive())
    }

    /// The running host, starting a new one if the last one died (unless backed off).
    fn running(&self) -> Result<Arc<Proc>, HookError> {
        let mut st = lock(&self.state);
        if let Some(p) = st.proc.clone() {
            if p.is_alive() {
                return Ok(p);
            }
            if !p.is_counted() {
                // The last host is dying or dead, its death not yet counted by its
                // reaper: count it first, so that a death that brings on the back-off
                // is not followed by a new host (the reliability test found a call
                // right after a fifth death starting one).
                drop(st);
                p.wait_counted(DEATH_GRACE);
                st = lock(&self.state);
                if let Some(p) = st.proc.as_ref().filter(|p| p.is_alive()) {
                    return Ok(p.clone());
                }
            }
        }
        let now = Instant::now();
        if let Some(until) = st.backoff_until {
            if now < until {
                return Err(HookError::failed(format!(
                    "backed off: its plugin host failed to start {MAX_DEATHS} times within {} s (last: {}); it is tried again in {} s",
                    DEATH_WINDOW.as_secs(),
                    st.last_exit.as_deref().unwrap_or("unknown"),
                    (until - now).as_secs() + 1
                )));
            }
            st.backoff_until = None;
            st.deaths.clear();
        }
        // Concurrent callers wait here for the same new host.
        match self.spawn() {
            Ok((proc, _)) => {
                st.restarts += 1;
                st.proc = Some(proc.clone());
                tracing::info!(
                    instance = self.who.instance(),
                    host_instances = self.who.shared(),
                    pid = proc.pid,
                    restarts = st.restarts,
                    "started a new plugin host"
                );
                Ok(proc)
            }
            Err((proc, StartError { message, .. })) => {
                if let Some(p) = proc {
                    // Counted here, not again by its reaper.
                    lock(&p.life).retiring = true;
                    p.kill("failed to start".into());
                }
                st.last_exit = Some(message.clone());
                self.count_start_failure(&mut st, &message);
                Err(HookError::failed(format!(
                    "a new plugin host could not be started: {message}"
                )))
            }
        }
    }

    /// A host ended (reported by its reaper): record it, unless it was retired.
    fn on_exit(&self, proc: &Arc<Proc>, cause: &str) {
        // The state first: a failed start marks its process retiring under this lock.
        let mut st = lock(&self.state);
        if lock(&proc.life).retiring {
            tracing::debug!(
                instance = self.who.instance(),
                host_instances = self.who.shared(),
                pid = proc.pid,
                cause,
                "retired plugin host ended"
            );
            return;
        }
        if st.proc.as_ref().is_some_and(|p| Arc::ptr_eq(p, proc)) {
            st.proc = None;
        }
        st.last_exit = Some(cause.to_owned());
        if proc.called.load(std::sync::atomic::Ordering::Acquire) {
            tracing::error!(
                instance = self.who.instance(),
                host_instances = self.who.shared(),
                pid = proc.pid,
                cause,
                "plugin host died; the next call starts a new one"
            );
            return;
        }
        self.count_start_failure(&mut st, cause);
    }

    /// A host that did not start, or died before it was given a call: five within
    /// [`DEATH_WINDOW`] back the instance off.
    fn count_start_failure(&self, st: &mut State, cause: &str) {
        let now = Instant::now();
        st.deaths.push_back(now);
        while st
            .deaths
            .front()
            .is_some_and(|t| now.duration_since(*t) > DEATH_WINDOW)
        {
            st.deaths.pop_front();
        }
        if st.deaths.len() >= MAX_DEATHS {
            st.backoff_until = Some(now + BACKOFF);
            tracing::error!(
                instance = self.who.instance(),
                host_instances = self.who.shared(),
                cause,
                "plugin host failed to start (or died before it was given a call) {} times within {} s; the instance fails closed for {} s",
                st.deaths.len(),
                DEATH_WINDOW.as_secs(),
                BACKOFF.as_secs()
            );
        } else {
            tracing::error!(
                instance = self.who.instance(),
                host_instances = self.who.shared(),
                cause,
                "plugin host failed to start or died before it was given a call; the next call starts a new one"
            );
        }
    }

    /// Whether calls from `address` killed a host [`MAX_FAULTS`] times within
    /// [`DEATH_WINDOW`]: the refusal, naming why and until when.
    fn held_back(&self, address: &str) -> Option<HookError> {
        let mut st = lock(&self.state);
        let now = Instant::now();
        let faults = st.faults.get_mut(address)?;
        while faults
            .front()
            .is_some_and(|t| now.duration_since(*t) > DEATH_WINDOW)
        {
            faults.pop_front();
        }
        if faults.is_empty() {
            st.faults.remove(address);
            return None;
        }
        (faults.len() >= MAX_FAULTS).then(|| {
            let until = faults[faults.len() - MAX_FAULTS] + DEATH_WINDOW;
            HookError::failed(format!(
                "held back: calls from {address} killed its plugin host {} times within {} s; its calls are refused for {} s more",
                faults.len(),
                DEATH_WINDOW.as_secs(),
                until.saturating_duration_since(now).as_secs() + 1
            ))
        })
    }

    /// Counts a call from `address` that killed (or went down with) the host.
    fn count_fault(&self, address: &str) {
        let mut st = lock(&self.state);
        let now = Instant::now();
        if !st.faults.contains_key(address) && st.faults.len() >= MAX_FAULT_ADDRESSES {
            // Forget the address whose last fault is oldest.
            let oldest = st
                .faults
                .iter()
                .min_by_key(|(_, f)| f.back().copied())
                .map(|(a, _)| a.clone());
            if let Some(a) = oldest {
                st.faults.remove(&a);
            }
        }
        let faults = st.faults.entry(address.to_owned()).or_default();
        faults.push_back(now);
        while faults.len() > MAX_FAULTS {
            faults.pop_front();
        }
        if faults.len() >= MAX_FAULTS {
            tracing::warn!(
                instance = self.who.instance(),
                host_instances = self.who.shared(),
                address,
                "calls from this address killed the plugin host {} times within {} s; its calls of the instance are refused until then",
                faults.len(),
                DEATH_WINDOW.as_secs()
            );
        }
    }

    /// The host as `ListPlugins` shows it.
    pub(crate) fn status(&self) -> HostStatus {
        let st = lock(&self.state);
        let now = Instant::now();
        let alive = st.proc.as_ref().filter(|p| p.is_alive());
        let (state, last_exit) = match st.backoff_until.filter(|u| *u > now) {
            Some(until) => (
                "backed-off",
                Some(format!(
                    "{} (backed off for {} s more)",
                    st.last_exit.as_deref().unwrap_or("unknown"),
                    (until - now).as_secs() + 1
                )),
            ),
            None => (
                if alive.is_some() {
                    "running"
                } else {
                    "stopped"
                },
                st.last_exit.clone(),
            ),
        };
        HostStatus {
            state,
            pid: alive.map(|p| p.pid),
            restarts: st.restarts,
            last_exit,
            round_trips: self.round_trips.load(std::sync::atomic::Ordering::Relaxed),
            pipelined: self.pipelined.load(std::sync::atomic::Ordering::Relaxed),
            instances: self.init.instances.iter().map(|i| i.name.clone()).collect(),
        }
    }

    /// Runs one call (`down`) of an instance for the request in `cx`, serving the
    /// host API the plugin calls meanwhile.
    pub(crate) fn call(&self, cx: &CallCx<'_>, down: &Down) -> Result<Answer, HookError> {
        match self.exchange(Callers::One(cx), down).map_err(|e| e.error)? {
            Up::Done(result) => result.map_err(HookError::from),
            other => Err(HookError::failed(format!(
                "the plugin host answered a call with {other:?}"
            ))),
        }
    }

    /// Runs consecutive impls of one chain (`down`, a [`Down::Chain`] of `instances`,
    /// which this host serves, in that order) in one round trip, serving the host API
    /// each calls meanwhile as that instance's. A failure says which impl of the run it
    /// is blamed on: the one the host was in when it died, hung or broke the lane.
    pub(crate) fn call_chain(
        &self,
        req: &Request,
        hook: Hook,
        instances: &[&Instance],
        down: &Down,
    ) -> Result<ChainAnswer, RunError> {
        let callers = Callers::Run {
            req,
            hook,
            instances,
        };
        run_answer(self.exchange(callers, down)?, instances.len())
    }

    /// [`Supervisor::call_chain`] for an async task: the task, not its thread, waits
    /// for the host's answer (an [`AsyncLane`]), so a chain that crosses holds no thread
    /// while the host works. What may block (starting a host, the store work of a host
    /// API call, waiting for a dead host's cause) runs in `block_in_place`, which moves
    /// the thread's other tasks away first. The timeout is the request's, as on the
    /// blocking path: past it the watch kills the host through the request's
    /// [`Cancel`], and the lane's end is this call's.
    pub(crate) async fn call_chain_async(
        &self,
        req: &Request,
        hook: Hook,
        instances: &[&Instance],
        down: &Down,
    ) -> Result<ChainAnswer, RunError> {
        let callers = Callers::Run {
            req,
            hook,
            instances,
        };
        let address = self.sender(&callers)?;
        let up = self
            .call_host_async(&callers, down, address.as_deref())
            .await?;
        run_answer(up, instances.len())
    }

    /// Sends `down` to the host and serves the host API until its last message.
    fn exchange(&self, callers: Callers<'_>, down: &Down) -> Result<Up, RunError> {
        let address = self.sender(&callers)?;
        self.call_host(&callers, down, address.as_deref())
    }

    /// The address the call came from (its bucket), unless it is held back for the
    /// host's deaths it caused (then the refusal).
    fn sender(&self, callers: &Callers<'_>) -> Result<Option<String>, RunError> {
        // Events carry no client address: only logins' senders can be held back.
        let address = callers
            .req()
            .context
            .get("remote_addr")
            .map(|a| plugin_abi::sdk::address_bucket(a))
            .filter(|a| !a.is_empty());
        match address.as_deref().and_then(|a| self.held_back(a)) {
            Some(refused) => Err(RunError {
                error: refused,
                step: 0,
            }),
            None => Ok(address),
        }
    }

    fn call_host(
        &self,
        callers: &Callers<'_>,
        down: &Down,
        address: Option<&str>,
    ) -> Result<Up, RunError> {
        let at_start = |error| RunError { error, step: 0 };
        let proc = self.running().map_err(at_start)?;
        let mut lane = match proc.lane() {
            Ok(lane) => lane,
            Err(e) => return Err(at_start(self.no_lane(&proc, address, e))),
        };
        let page = lane.page().cloned();
        if !self.arm(callers, &proc, page.as_ref()) {
            lock(&proc.idle).push(lane);
            return Err(at_start(given_up()));
        }
        let failed = |error| blamed(error, page.as_ref(), callers.len());
        if let Err(e) = lane.send(down) {
            return Err(failed(self.lost(&proc, address, &e.to_string())));
        }
        loop {
            match lane.recv::<Up>() {
                Ok(Up::Host { step, call }) => {
                    let answers = call.answers();
                    let reply = callers.serve(step, call, serve);
                    if answers {
                        if let Err(e) = lane.send(&Down::Reply(reply)) {
                            return Err(failed(self.lost(&proc, address, &e.to_string())));
                        }
                    }
                }
                Err(e) => return Err(failed(self.broke(&proc, address, e))),
                Ok(done) => {
                    lock(&proc.idle).push(lane);
                    return Ok(done);
                }
            }
        }
    }

    /// [`Supervisor::call_host`] with the task waiting instead of its thread.
    async fn call_host_async(
        &self,
        callers: &Callers<'_>,
        down: &Down,
        address: Option<&str>,
    ) -> Result<Up, RunError> {
        use tokio::task::block_in_place;
        let at_start = |error| RunError { error, step: 0 };
        let proc = match self.running_now() {
            Some(proc) => proc,
            None => block_in_place(|| self.running()).map_err(at_start)?,
        };
        let mut proc = proc;
        if !callers.req().is_near() {
            if let Some(pipe) = proc.pipe() {
                if let Some(answered) = self
                    .call_by_pipe(callers, &proc, &pipe, down, address)
                    .await
                {
                    return answered;
                }
                // Not sent, or taken back unbegun: it goes on a lane of its own, of a
                // new host if this one died meanwhile.
                self.round_trips
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                proc = match self.running_now() {
                    Some(proc) => proc,
                    None => block_in_place(|| self.running()).map_err(at_start)?,
                };
            }
        }
        let idle = lock(&proc.idle_async).pop();
        let mut lane = match idle.map_or_else(|| proc.lane().and_then(AsyncLane::of), Ok) {
            Ok(lane) => lane,
            Err(e) => return Err(at_start(block_in_place(|| self.no_lane(&proc, address, e)))),
        };
        let page = lane.page().cloned();
        if !self.arm(callers, &proc, page.as_ref()) {
            lock(&proc.idle_async).push(lane);
            return Err(at_start(given_up()));
        }
        let failed = |error| blamed(error, page.as_ref(), callers.len());
        lane.place(proc.pid, callers.req().is_near());
        if let Err(e) = lane.send(down).await {
            let lost = block_in_place(|| self.lost(&proc, address, &e.to_string()));
            return Err(failed(lost));
        }
        loop {
            match lane.recv::<Up>().await {
                Ok(Up::Host { step, call }) => {
                    let answers = call.answers();
                    let reply = callers.serve(step, call, serve_on_task);
                    if answers {
                        if let Err(e) = lane.send(&Down::Reply(reply)).await {
                            let lost = block_in_place(|| self.lost(&proc, address, &e.to_string()));
                            return Err(failed(lost));
                        }
                    }
                }
                Err(e) => return Err(failed(block_in_place(|| self.broke(&proc, address, e)))),
                Ok(done) => {
                    lock(&proc.idle_async).push(lane);
                    return Ok(done);
                }
            }
        }
    }

    /// [`Supervisor::call_host_async`] down `proc`'s [`Pipe`]: the run goes after those
    /// already in it, and the task waits for what the pipe's reader hands it. A run
    /// that waits behind another for longer than [`PIPE_STALL`] takes back those the
    /// host has not begun (itself among them, unless the host began it meanwhile):
    /// `None` when this one was, for the caller to send it on a lane of its own.
    async fn call_by_pipe(
        &self,
        callers: &Callers<'_>,
        proc: &Arc<Proc>,
        pipe: &Pipe,
        down: &Down,
        address: Option<&str>,
    ) -> Option<Result<Up, RunError>> {
        use tokio::task::block_in_place;
        let at_start = |error| Some(Err(RunError { error, step: 0 }));
        if !self.arm(callers, proc, None) {
            return at_start(given_up());
        }
        let mut run = match pipe.send(down, PIPE_STALL).await {
            Ok(run) => run,
            // Nothing was sent: the pipe takes no more runs.
            Err(e) if ipc::pipe::is_taken_back(&e) => return None,
            Err(e) => return at_start(block_in_place(|| self.lost(proc, address, &e.to_string()))),
        };
        // The host is in this run while the page counts it begun: only then do its
        // steps name one of this run's impls.
        let page = pipe.page().cloned();
        let number = run.number.wrapping_add(1);
        let ours = move |page: &Page| page.runs() == number;
        if let (Some(page), Some(names)) = (page.clone(), callers.names()) {
            callers.req().arm_blame(Blame(Arc::new(move || {
                ours(&page)
                    .then(|| names.get(page.step() as usize).cloned())
                    .flatten()
            })));
        }
        let failed = |error| {
            Some(Err(blamed(
                error,
                page.as_ref().filter(|p| ours(p)),
                callers.len(),
            )))
        };
        let mut heard = first_heard(pipe, &mut run, proc).await;
        loop {
            match heard {
                Ok(Up::Host { step, call }) => {
                    let answers = call.answers();
                    let reply = callers.serve(step, call, serve_on_task);
                    if answers {
                        if let Err(e) = run.reply(reply).await {
                            return failed(block_in_place(|| {
                                self.lost(proc, address, &e.to_string())
                            }));
                        }
                    }
                }
                Err(e) if ipc::pipe::is_taken_back(&e) => return None,
                Err(e) => return failed(block_in_place(|| self.broke(proc, address, e))),
                Ok(done) => {
                    if run.behind {
                        self.pipelined
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return Some(Ok(done));
                }
            }
            heard = run.next().await;
        }
    }

    /// Arms the request's current call for a conversation with `proc`: past its
    /// timeout the host is killed, and a timeout or a death is blamed on the impl of a
    /// run the host is in (it writes the step to the lane's `page` before each impl).
    /// False when the request's timeout passed already (while the host started): the
    /// call must not be sent, since nothing would end it should it hang.
    #[must_use]
    fn arm(&self, callers: &Callers<'_>, proc: &Arc<Proc>, page: Option<&Arc<Page>>) -> bool {
        let (killer, hook) = (proc.clone(), callers.hook());
        let armed = callers.req().arm_cancel(Cancel(Arc::new(move || {
            killer.kill(format!(
                "was killed by the daemon: {hook} ran past daemon.hook_timeout_ms"
            ))
        })));
        if !armed {
            return false;
        }
        if let (Some(page), Some(names)) = (page, callers.names()) {
            page.set_step(0);
            let page = page.clone();
            callers.req().arm_blame(Blame(Arc::new(move || {
                names.get(page.step() as usize).cloned()
            })));
        }
        proc.called
            .store(true, std::sync::atomic::Ordering::Release);
        self.round_trips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        true
    }

    /// The error for a call for which no lane could be opened to `proc`.
    fn no_lane(&self, proc: &Arc<Proc>, address: Option<&str>, e: io::Error) -> HookError {
        self.lost(proc, address, &format!("no lane could be opened: {e}"))
    }

    /// The error for a call whose lane broke (`e`: the host closed it, or sent what is
    /// no message, for which it is killed).
    fn broke(&self, proc: &Arc<Proc>, address: Option<&str>, e: io::Error) -> HookError {
        if e.kind() == io::ErrorKind::InvalidData {
            proc.kill_unreadable("a lane", &e);
        }
        self.lost(proc, address, &e.to_string())
    }

    /// The error for a call whose host went away mid-call, once the host is gone; the
    /// call's sender (`address`) has one more fault.
    fn lost(&self, proc: &Arc<Proc>, address: Option<&str>, detail: &str) -> HookError {
        if let Some(a) = address {
            self.count_fault(a);
        }
        let cause = match proc.wait_cause(DEATH_GRACE) {
            Some(cause) => cause,
            None => {
                // The lane broke but the process lives on: it cannot be trusted.
                proc.kill(format!(
                    "was killed by the daemon: its lane broke mid-call ({detail})"
                ));
                proc.wait_cause(DEATH_GRACE)
                    .unwrap_or_else(|| "did not exit after SIGKILL".into())
            }
        };
        let shared = if self.init.instances.len() > 1 {
            format!(", which serves {}", self.instance.replace(',', ", "))
        } else {
            String::new()
        };
        HookError::failed(format!(
            "its plugin host (pid {}{shared}) {cause}; a new one starts at the next call",
            proc.pid
        ))
    }
}

/// Whose host API calls a lane's conversation serves: one instance's call, or each
/// impl's of a run of a chain.
enum Callers<'a> {
    One(&'a CallCx<'a>),
    Run {
        req: &'a Request,
        hook: Hook,
        instances: &'a [&'a Instance],
    },
}

impl<'a> Callers<'a> {
    fn req(&self) -> &'a Request {
        match self {
            Callers::One(cx) => cx.req,
            Callers::Run { req, .. } => req,
        }
    }

    fn hook(&self) -> Hook {
        match self {
            Callers::One(cx) => cx.hook,
            Callers::Run { hook, .. } => *hook,
        }
    }

    /// The names of a run's instances, in call order (`None` for a single call).
    fn names(&self) -> Option<Arc<[Arc<str>]>> {
        match self {
            Callers::One(_) => None,
            Callers::Run { instances, .. } => {
                Some(instances.iter().map(|i| i.name.clone()).collect())
            }
        }
    }

    /// How many impls the conversation serves.
    fn len(&self) -> usize {
        match self {
            Callers::One(_) => 1,
            Callers::Run { instances, .. } => instances.len(),
        }
    }

    /// Serves a host API `call` the impl at `step` made, with `serve`; an error when the
    /// conversation has no such step.
    fn serve(
        &self,
        step: u32,
        call: HostCall,
        serve: fn(&CallCx<'_>, HostCall) -> Result<HostValue, WireError>,
    ) -> Result<HostValue, WireError> {
        match self.cx(step) {
            Some(cx) => serve(&cx, call),
            None => Err(WireError::Failed(format!(
                "the plugin host asked for step {step} of a run that has none"
            ))),
        }
    }

    /// The call context of the run's impl at `step` (a single call's for any step).
    fn cx(&self, step: u32) -> Option<CallCx<'a>> {
        match self {
            Callers::One(cx) => Some(CallCx {
                req: cx.req,
                instance: cx.instance,
                hook: cx.hook,
            }),
            Callers::Run {
                req,
                hook,
                instances,
            } => instances.get(step as usize).map(|instance| CallCx {
                req,
                instance,
                hook: *hook,
            }),
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(proc) = lock(&self.state).proc.take() {
            proc.retire();
        }
    }
}

enum Handshake {
    /// The host answered: it could not load or make an instance (which, if one).
    Refused(String, Option<u32>),
    /// The host died or did not answer (while making this instance, if it said so).
    Broken(String, Option<u32>),
}

/// The longest line of a host's output logged whole; the rest of it is cut.
const OUTPUT_LINE: usize = 1024;
/// Lines of one stream of one host logged per second at most; past that they are
/// counted, and the count is logged, so that a plugin cannot flood the journal.
const OUTPUT_RATE: u32 = 50;

/// Reads a host's `stream` until it closes (the host exited) and logs each line as
/// the instance's output (a shared host's as the host's, naming its instances, once:
/// which of them wrote a line is not known), escaped (no line of it can pass for the daemon's own),
/// cut to [`OUTPUT_LINE`] bytes and at most [`OUTPUT_RATE`] a second. The pipe is
/// always drained, so a chatty plugin never blocks on it.
fn forward_output(who: &Who, pid: u32, stream: &'static str, pipe: OwnedFd) {
    use std::io::BufRead;
    let who = who.clone();
    let read = move || {
        let mut reader = io::BufReader::with_capacity(4096, std::fs::File::from(pipe));
        let mut line = Vec::new();
        let (mut second, mut logged, mut dropped) = (Instant::now(), 0u32, 0u64);
        loop {
            line.clear();
            // Up to the newline, keeping at most OUTPUT_LINE bytes of it.
            let mut cut = false;
            loop {
                let buf = match reader.fill_buf() {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return,
                };
                if buf.is_empty() {
                    if line.is_empty() {
                        return;
                    }
                    break;
                }
                let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (buf.len(), false),
                };
                let room = OUTPUT_LINE.saturating_sub(line.len());
                cut |= take > room;
                line.extend_from_slice(&buf[..take.min(room)]);
                reader.consume(take);
                if done {
                    break;
                }
            }
            if second.elapsed() >= Duration::from_secs(1) {
                if dropped > 0 {
                    tracing::warn!(
                        instance = who.instance(),
                        host_instances = who.shared(),
                        pid,
                        stream,
                        dropped,
                        "plugin host wrote more than {OUTPUT_RATE} lines a second; these were not logged"
                    );
                }
                (second, logged, dropped) = (Instant::now(), 0, 0);
            }
            if logged >= OUTPUT_RATE {
                dropped += 1;
                continue;
            }
            logged += 1;
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            tracing::info!(
                instance = who.instance(),
                host_instances = who.shared(),
                pid,
                stream,
                cut,
                output = ?text,
                "plugin host output"
            );
        }
    };
    let spawned = std::thread::Builder::new()
        .name(format!("flaskbbd-host-{stream}"))
        .spawn(read);
    if let Err(e) = spawned {
        // The pipe closes with the closure: the host's writes fail, nothing blocks.
        tracing::warn!(
            pid,
            stream,
            "cannot start a thread to read a plugin host's output: {e}"
        );
    }
}

/// Waits for the host to exit, records how, and tells its supervisor (if it still
/// exists). Its own thread: the first to learn of a death.
fn reap(mut child: Child, proc: &Arc<Proc>, supervisor: &Weak<Supervisor>) {
    // Wait without reaping, so that the pid stays ours until `exited` is set.
    loop {
        // SAFETY: siginfo_t is plain data; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with a struct we own.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                child.id(),
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break;
        }
    }
    let killed_for = {
        let mut life = lock(&proc.life);
        life.exited = true;
        life.killed_for.clone()
    };
    let cause = match child.wait() {
        Ok(status) => describe_exit(status, killed_for.as_deref()),
        Err(e) => format!("ended (its status could not be read: {e})"),
    };
    // Reaped: the pid may be reused from now on.
    lock(&HOSTS).remove(&proc.pid);
    lock(&proc.life).cause = Some(cause.clone());
    proc.ended.notify_all();
    if let Some(sup) = supervisor.upgrade() {
        sup.on_exit(proc, &cause);
    }
    lock(&proc.life).counted = true;
    proc.ended.notify_all();
}

/// How a host ended, in words: "was killed by signal 11 (SIGSEGV)", "exited with
/// status 3", or why the daemon killed it.
fn describe_exit(status: ExitStatus, killed_for: Option<&str>) -> String {
    match (status.signal(), killed_for) {
        (Some(libc::SIGKILL), Some(why)) => why.to_owned(),
        (Some(sig), _) => {
            let name = match sig {
                libc::SIGSEGV => "SIGSEGV",
                libc::SIGABRT => "SIGABRT",
                libc::SIGKILL => "SIGKILL",
                libc::SIGBUS => "SIGBUS",
                libc::SIGILL => "SIGILL",
                libc::SIGFPE => "SIGFPE",
                libc::SIGTERM => "SIGTERM",
                libc::SIGSYS => "SIGSYS",
                _ => "",
            };
            let what = if name.is_empty() {
                format!("was killed by signal {sig}")
            } else {
                format!("was killed by signal {sig} ({name})")
            };
            if sig == libc::SIGKILL {
                // Not the daemon: the kernel's OOM killer, or an operator.
                format!("{what}, not by the daemon (the kernel's out-of-memory killer?)")
            } else {
                what
            }
        }
        (None, _) => match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "ended".into(),
        },
    }
}

/// A host's answer to a [`Down::Chain`] of `len` impls as the chain takes it.
fn run_answer(up: Up, len: usize) -> Result<ChainAnswer, RunError> {
    match up {
        Up::ChainDone(answer) if answer.steps.len() <= len => Ok(answer),
        other => Err(RunError {
            error: HookError::failed(format!(
                "the plugin host answered a run of {len} impls with {other:?}"
            )),
            step: 0,
        }),
    }
}

/// The error of a call not sent because its request was given up while its host
/// started (the client is answered with the timeout; this is for the log).
fn given_up() -> HookError {
    HookError::failed("not sent: it ran past daemon.hook_timeout_ms while its plugin host started")
}

/// A failed conversation's error, blamed on the impl of a run of `len` the host was in
/// (as it said on the lane's `page`; the first without one).
fn blamed(error: HookError, page: Option<&Arc<Page>>, len: usize) -> RunError {
    RunError {
        error,
        step: page.map_or(0, |p| (p.step() as usize).min(len.saturating_sub(1))),
    }
}

/// [`serve`] on an async task: a call that may wait on the store runs in
/// `block_in_place`, the rest (a log line, a delay asked for) at once.
fn serve_on_task(cx: &CallCx<'_>, call: HostCall) -> Result<HostValue, WireError> {
    match call {
        HostCall::Log { .. } | HostCall::DelayAnswer { .. } | HostCall::AskFor { .. } => {
            serve(cx, call)
        }
        _ => tokio::task::block_in_place(|| serve(cx, call)),
    }
}

/// Serves one host API call for the plugin, from the running request.
fn serve(cx: &CallCx<'_>, call: HostCall) -> Result<HostValue, WireError> {
    let user = |u: Option<plugin_abi::abi::User>| HostValue::User(u.as_ref().map(WireUser::of));
    let r = match call {
        HostCall::Log { level, message } => {
            cx.log(LogLevel(level), &message);
            Ok(HostValue::Unit)
        }
        HostCall::FindUser { identifier } => cx.find_user(&identifier).map(user),
        HostCall::FindUserById { id } => cx.find_user_by_id(id).map(user),
        HostCall::StoreGet { key } => cx.store_get(&key).map(HostValue::Text),
        HostCall::StoreSet { key, value } => cx
            .store_set(&key, value.as_deref())
            .map(|()| HostValue::Unit),
        HostCall::StoreSwap {
            key,
            expected,
            value,
        } => cx
            .store_swap(&key, expected.as_deref(), value.as_deref())
            .map(HostValue::Flag),
        HostCall::ProvisionUser { username, email } => cx
            .provision_user(&username, &email)
            .map(|u| HostValue::Provisioned(WireUser::of(&u))),
        HostCall::DelayAnswer { ms } => {
            cx.delay_answer(ms);
            Ok(HostValue::Unit)
        }
        HostCall::AskFor { key } => {
            cx.ask_for(&key);
            Ok(HostValue::Unit)
        }
        HostCall::PenaltyGet { key } => cx.penalty_get(&key).map(HostValue::Count),
        HostCall::PenaltyAdd { key, window_ms } => {
            cx.penalty_add(&key, window_ms).map(|()| HostValue::Unit)
        }
        HostCall::PenaltyClear { key } => cx.penalty_clear(&key).map(|()| HostValue::Unit),
    };
    r.map_err(WireError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_is_described_by_its_signal_status_or_the_daemons_reason() {
        let signal = |s: i32| ExitStatus::from_raw(s);
        let exited = |c: i32| ExitStatus::from_raw(c << 8);
        assert_eq!(
            describe_exit(signal(libc::SIGSEGV), None),
            "was killed by signal 11 (SIGSEGV)"
        );
        assert_eq!(
            describe_exit(signal(libc::SIGABRT | 0x80), None),
            "was killed by signal 6 (SIGABRT)"
        );
        assert_eq!(describe_exit(exited(3), None), "exited with status 3");
        assert_eq!(
            describe_exit(signal(libc::SIGKILL), Some("was killed by the daemon: x")),
            "was killed by the daemon: x"
        );
        assert_eq!(
            describe_exit(signal(libc::SIGKILL), None),
            "was killed by signal 9 (SIGKILL), not by the daemon (the kernel's out-of-memory killer?)"
        );
        // A reason the daemon had does not hide a different death.
        assert_eq!(
            describe_exit(signal(libc::SIGSEGV), Some("was killed by the daemon: x")),
            "was killed by signal 11 (SIGSEGV)"
        );
        assert_eq!(describe_exit(signal(64), None), "was killed by signal 64");
    }
}
