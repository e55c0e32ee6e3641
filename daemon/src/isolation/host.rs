//! The plugin host process (`flaskbbd plugin-host`, started by the daemon): loads one
//! library, confines itself, makes the instances the daemon gave it (every isolated
//! instance of that library with that sandbox), and serves their calls.
//!
//! Its stdin is the control channel. It reads [`Init`], limits itself (memory, no new
//! privileges, no core files), loads the library with the daemon's loader and checks,
//! narrows the filesystem and the system calls, makes each instance (each with its own
//! configuration and state, as in the daemon's process), and answers [`Started`]. Then
//! each file descriptor the daemon sends is a lane, served by a thread of its own: a
//! call of one instance, or a run of several impls of one chain ([`Down::Chain`]) in
//! one round trip. When the control channel closes, the daemon is done with it (or
//! gone): it waits for its lanes to close, drops the instances and exits.

use std::{
    collections::VecDeque,
    io::{self, Write},
    os::fd::AsFd,
    os::unix::net::UnixStream,
    process::ExitCode,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use abi_stable::{
    erased_types::TD_Opaque,
    std_types::{RErr, ROk, ROption, RResult, RStr, RString, RVec, Tuple2},
};
use plugin_abi::{
    abi::{self, ErrorBox, HookCall, Host, HostRef, LogLevel, PluginBox},
    sdk::{HookError, Outcome},
};

use super::sandbox;
use crate::{
    ipc::{
        self, page::Page, Answer, Arg, ChainAnswer, Down, HostCall, HostValue, Init, Lane, Started,
        Step, Up, WireError, WireUser,
    },
    proto::{convert, Context},
};

/// The stack of a lane's thread (as a spawned Rust thread's default).
const LANE_STACK: usize = 2 << 20;
/// How long a host whose daemon let it go waits for its lanes' calls to end.
const EXIT_DEADLINE: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The host's main: exit status 0 when the daemon let it go, 1 when the instance
/// could not be started (the daemon has the reason), 2 when not started by a daemon.
pub(crate) fn main() -> ExitCode {
    // Nothing of the daemon's but the control channel and the log: a descriptor that
    // lacked close-on-exec must not reach the plugin. (Lanes arrive later.)
    // SAFETY: close_range on descriptors this process does not use; where the kernel
    // lacks it (before 5.9) it fails and changes nothing.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
    let (control, mut reader, init) = match control_channel() {
        Ok(c) => c,
        Err(e) => return not_started(&e.to_string()),
    };
    let (plugin, started) = match start(&init, &mut reader) {
        Ok(ok) => ok,
        Err((message, instance)) => {
            let _ = ipc::send(&mut reader, &Started::Failed { message, instance });
            return ExitCode::from(1);
        }
    };
    if ipc::send(&mut reader, &started).is_err() {
        return ExitCode::from(1);
    }
    let served = Arc::new(Served {
        made: plugin
            .into_iter()
            .zip(&init.instances)
            .map(|(plugin, i)| Made {
                plugin,
                instance: i.name.as_str().into(),
                config_json: i.config_json.as_str().into(),
            })
            .collect(),
    });
    let names = init
        .instances
        .iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let mut lanes = Vec::new();
    loop {
        match ipc::recv_fds(&control) {
            Ok(fds) => lanes.extend(start_lane(&served, &names, fds)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => {
                eprintln!("flaskbbd-plugin-host {names}: control channel: {e}");
                break;
            }
        }
    }
    let_go(lanes, served)
}

/// The control channel (stdin): one handle that receives lanes, one that reads and
/// answers, and the [`Init`] the daemon sent on it.
fn control_channel() -> io::Result<(UnixStream, UnixStream, Init)> {
    let control = UnixStream::from(io::stdin().as_fd().try_clone_to_owned()?);
    let mut reader = control.try_clone()?;
    let init: Init = ipc::recv(&mut reader)?;
    Ok((control, reader, init))
}

/// Serves the lane the daemon sent as `fds` (the socket it reads, the socket it
/// writes, and the page it shares with the daemon) on a thread of its own, which it
/// answers. Anything else closes here, as does a lane whose page or thread fails
/// (said on stderr, under the instances' `names`); the daemon sees the call fail.
fn start_lane(
    served: &Arc<Served>,
    names: &str,
    fds: Vec<std::os::fd::OwnedFd>,
) -> Option<std::thread::JoinHandle<()>> {
    let Ok([rx, tx, page]) = <[_; 3]>::try_from(fds) else {
        eprintln!("flaskbbd-plugin-host {names}: a lane came without its three descriptors");
        return None;
    };
    let page = match Page::map(&page) {
        Ok(page) => page,
        Err(e) => {
            eprintln!("flaskbbd-plugin-host {names}: cannot map a lane's page: {e}");
            return None;
        }
    };
    let s = served.clone();
    let lane = Lane::split(UnixStream::from(rx), UnixStream::from(tx), Some(page));
    let spawned = std::thread::Builder::new()
        .name("lane".into())
        .stack_size(LANE_STACK)
        .spawn(move || serve_lane(&s, lane));
    match spawned {
        Ok(t) => Some(t),
        // The lane closes with the closure; the daemon sees the call fail.
        Err(e) => {
            eprintln!("flaskbbd-plugin-host {names}: cannot start a lane thread: {e}");
            None
        }
    }
}

/// The end, once the daemon is done with this host (or gone). Its lanes close with
/// the control channel: lets the calls on them end and the instances drop, unless a
/// call is stuck in the plugin, which must not keep the process (and a core) alive.
fn let_go(lanes: Vec<std::thread::JoinHandle<()>>, served: Arc<Served>) -> ExitCode {
    let stuck = std::thread::Builder::new()
        .name("exit-deadline".into())
        .spawn(|| {
            std::thread::sleep(EXIT_DEADLINE);
            // SAFETY: _exit ends the process at once, running nothing of the plugin's.
            unsafe { libc::_exit(0) }
        });
    if stuck.is_err() {
        // SAFETY: as above; without a deadline thread, end now.
        unsafe { libc::_exit(0) }
    }
    for t in lanes {
        let _ = t.join();
    }
    drop(served);
    ExitCode::SUCCESS
}

fn not_started(detail: &str) -> ExitCode {
    let _ = writeln!(
        io::stderr(),
        "flaskbbd plugin-host: {detail}\nthe daemon starts this for an isolated plugin instance (isolation = \"process\"); it is not run by hand"
    );
    ExitCode::from(2)
}

/// Confines the process, loads the library and makes the instances; on failure, why
/// and which instance failed (when one did).
fn start(
    init: &Init,
    control: &mut UnixStream,
) -> Result<(Vec<PluginBox>, Started), (String, Option<u32>)> {
    let library = init.library.display();
    sandbox::limit(&init.sandbox).map_err(|e| {
        (
            format!("plugin {library}: the plugin host cannot limit itself: {e}"),
            None,
        )
    })?;
    let lib =
        crate::loader::open_as(&init.mapped, &init.library).map_err(|e| (e.to_string(), None))?;
    let landlock = sandbox::confine(&init.sandbox).map_err(|e| {
        (
            format!("plugin {library}: the plugin host cannot confine itself: {e}"),
            None,
        )
    })?;
    let mut plugins = Vec::with_capacity(init.instances.len());
    for (i, instance) in init.instances.iter().enumerate() {
        // Said first, so that the daemon knows whose `new` it was if the host dies in
        // it (an abort, a crash) and cannot answer.
        let making = Started::Making {
            instance: u32::try_from(i).unwrap_or(u32::MAX),
        };
        ipc::send(control, &making).map_err(|e| {
            (
                format!("plugin {library}: the plugin host cannot talk to the daemon: {e}"),
                None,
            )
        })?;
        let plugin = lib
            .instantiate(&instance.name, &instance.config_json, &init.base_dir)
            .map_err(|e| (e.to_string(), u32::try_from(i).ok()))?;
        plugins.push(plugin);
    }
    sandbox::drop_capabilities().map_err(|e| {
        (
            format!("plugin {library}: the plugin host cannot drop its capabilities: {e}"),
            None,
        )
    })?;
    Ok((
        plugins,
        Started::Ready {
            manifest: ipc::Manifest::of(&lib.manifest),
            abi_version: lib.abi_version.clone(),
            landlock,
        },
    ))
}

/// What every lane serves: the host's instances, by their place in [`Init::instances`].
struct Served {
    made: Vec<Made>,
}

/// One instance of the host, with its own configuration and state.
struct Made {
    plugin: PluginBox,
    instance: RString,
    config_json: RString,
}

impl Served {
    /// The instance at `of`, or the error for a daemon that named one it never made.
    fn get(&self, of: u32) -> Result<&Made, WireError> {
        self.made.get(of as usize).ok_or_else(|| {
            WireError::Failed(format!(
                "the daemon called instance {of} of a plugin host that has {}",
                self.made.len()
            ))
        })
    }
}

/// Serves calls on one lane until the daemon closes it.
fn serve_lane(s: &Served, lane: Lane) {
    let page = lane.page().cloned();
    if let Some(page) = &page {
        // Which thread serves this lane, for the daemon to place it (see
        // `crate::ipc::placement`).
        // SAFETY: gettid takes nothing.
        page.set_thread(unsafe { libc::gettid() } as u32);
    }
    // The plugin may call the host API from threads of its own during a call.
    let lane = Mutex::new(HostLane {
        lane,
        backlog: VecDeque::new(),
    });
    let mut runs = 0u32;
    loop {
        let down: Down = match lock(&lane).next_run() {
            // A reply when no host call waits for one: the daemon never sends it, and
            // answering it would answer a run that is not this one. Dropped.
            Ok(Down::Reply(_)) => continue,
            Ok(down) => down,
            Err(_) => return,
        };
        // The run's number on the lane; the daemon may have taken it back to send it
        // on another lane (`crate::ipc::pipe`): then it is skipped, unanswered.
        let number = runs;
        runs = runs.wrapping_add(1);
        if let Some(page) = &page {
            if !page.claim(number) {
                continue;
            }
            page.begin_run(runs);
        }
        let up = match down {
            Down::Chain {
                of,
                hook,
                args,
                draft,
                firstresult,
                context,
            } => Up::ChainDone(run_chain(
                s,
                &lane,
                page.as_deref(),
                &context,
                ChainRun {
                    of: &of,
                    hook: &hook,
                    args,
                    draft,
                    firstresult,
                },
            )),
            other => Up::Done(serve_one(s, &lane, other)),
        };
        if lock(&lane).lane.send(&up).is_err() {
            return;
        }
    }
}

/// A host's end of a lane, with the runs the daemon sent ahead: a lane carries one
/// run at a time or, when the daemon pipelines runs onto it (`crate::ipc::pipe`),
/// several in order, so a run's host call may find the next run's frame before its
/// [`Down::Reply`].
struct HostLane {
    lane: Lane,
    /// Runs read while a host call waited for its reply, in the order they came.
    backlog: VecDeque<Down>,
}

impl HostLane {
    /// The next run to serve: the first of the backlog, else the next frame.
    fn next_run(&mut self) -> io::Result<Down> {
        match self.backlog.pop_front() {
            Some(down) => Ok(down),
            None => self.lane.recv(),
        }
    }

    /// The reply to the host call just sent; runs that come first wait in the backlog.
    fn reply(&mut self) -> io::Result<Result<HostValue, WireError>> {
        loop {
            match self.lane.recv::<Down>()? {
                Down::Reply(r) => return Ok(r),
                run => self.backlog.push_back(run),
            }
        }
    }
}

/// One call of one instance.
fn serve_one(s: &Served, lane: &Mutex<HostLane>, down: Down) -> Result<Answer, WireError> {
    match down {
        Down::Call {
            of,
            hook,
            args,
            context,
        } => {
            let made = s.get(of)?;
            let remote = Remote::new(lane, made, &context, 0);
            dispatch(&made.plugin, remote.as_host(), &hook, args)
        }
        Down::WrapBefore {
            of,
            hook,
            args_json,
            context,
        } => {
            let made = s.get(of)?;
            let remote = Remote::new(lane, made, &context, 0);
            let call = HookCall {
                hook: hook.into(),
                args_json: args_json.into(),
            };
            from_abi(made.plugin.wrap_before(remote.as_host(), &call)).map(|()| Answer::Nothing)
        }
        Down::WrapAfter {
            of,
            hook,
            args_json,
            context,
            outcome,
        } => {
            let made = s.get(of)?;
            let remote = Remote::new(lane, made, &context, 0);
            let call = HookCall {
                hook: hook.into(),
                args_json: args_json.into(),
            };
            let after =
                made.plugin
                    .wrap_after(remote.as_host(), &call, Outcome::from(outcome).into_abi());
            Ok(Answer::Outcome(Outcome::from_abi(&after).into()))
        }
        Down::Chain { .. } | Down::Reply(_) => Err(WireError::Failed(
            "the plugin host received a message with no call waiting for it".into(),
        )),
    }
}

/// A [`Down::Chain`]'s parts.
struct ChainRun<'a> {
    of: &'a [u32],
    hook: &'a str,
    args: Vec<Arg>,
    draft: Option<u32>,
    firstresult: bool,
}

/// Runs consecutive impls of one chain as the daemon's chain loop would, in one round
/// trip: each impl gets the draft the one before returned; a firstresult answer or an
/// error (other than "not implemented") ends the run.
/// Before each impl it writes the impl's step to the lane's `page`, so that the daemon
/// knows whom to blame when the host dies or hangs in it.
fn run_chain(
    s: &Served,
    lane: &Mutex<HostLane>,
    page: Option<&Page>,
    context: &Context,
    run: ChainRun<'_>,
) -> ChainAnswer {
    let ChainRun {
        of,
        hook,
        mut args,
        draft,
        firstresult,
    } = run;
    let mut steps = Vec::with_capacity(of.len());
    let mut value = None;
    for (step, &i) in of.iter().enumerate() {
        if let Some(page) = page {
            page.set_step(u32::try_from(step).unwrap_or(u32::MAX));
        }
        let started = std::time::Instant::now();
        let r = s.get(i).and_then(|made| {
            let remote = Remote::new(lane, made, context, step as u32);
            // The arguments are cloned for all but the last impl: each impl consumes
            // its own, and a draft is replaced by what the impl returned.
            let call_args = if step + 1 == of.len() {
                std::mem::take(&mut args)
            } else {
                args.clone()
            };
            dispatch(&made.plugin, remote.as_host(), hook, call_args)
        });
        let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        match r {
            Ok(answer) => {
                let is_value = answer.is_value();
                steps.push(Step {
                    result: Ok(is_value),
                    ns,
                });
                if is_value {
                    if let Some(slot) = draft.and_then(|d| args.get_mut(d as usize)) {
                        match &answer {
                            Answer::Post(p) => *slot = Arg::Post(p.clone()),
                            Answer::Topic(t) => *slot = Arg::Topic(t.clone()),
                            _ => {}
                        }
                    }
                    value = Some(answer);
                    if firstresult {
                        break;
                    }
                }
            }
            Err(WireError::NotImplemented) => steps.push(Step {
                result: Err(WireError::NotImplemented),
                ns,
            }),
            Err(e) => {
                steps.push(Step { result: Err(e), ns });
                break;
            }
        }
    }
    ChainAnswer { steps, value }
}

fn from_abi<T>(r: RResult<T, ErrorBox>) -> Result<T, WireError> {
    match r {
        ROk(v) => Ok(v),
        RErr(e) => Err(HookError::from_abi(&e).into()),
    }
}

/// The host API across the lane: what the host knows (the instance, its
/// configuration, the request's context) is answered here; the rest asks the daemon,
/// naming the impl of a chain run (`step`) that asks.
struct Remote<'a> {
    lane: &'a Mutex<HostLane>,
    served: &'a Made,
    context: &'a Context,
    step: u32,
}

impl<'a> Remote<'a> {
    fn new(
        lane: &'a Mutex<HostLane>,
        served: &'a Made,
        context: &'a Context,
        step: u32,
    ) -> Remote<'a> {
        Remote {
            lane,
            served,
            context,
            step,
        }
    }

    fn as_host(&self) -> HostRef<'_> {
        abi::Host_TO::from_ptr(self, TD_Opaque)
    }

    /// A call the daemon answers.
    fn ask(&self, call: HostCall) -> Result<HostValue, WireError> {
        let lost = |e: io::Error| {
            WireError::Failed(format!(
                "the daemon could not be asked ({e}): the call is ending"
            ))
        };
        let mut lane = lock(self.lane);
        lane.lane
            .send(&Up::Host {
                step: self.step,
                call,
            })
            .map_err(lost)?;
        lane.reply().map_err(lost)?
    }

    /// A call the daemon does not answer.
    fn tell(&self, call: HostCall) {
        let _ = lock(self.lane).lane.send(&Up::Host {
            step: self.step,
            call,
        });
    }
}

fn to_abi<T>(r: Result<T, WireError>) -> RResult<T, ErrorBox> {
    match r {
        Ok(v) => ROk(v),
        Err(e) => RErr(HookError::from(e).into_abi()),
    }
}

fn unexpected<T>() -> Result<T, WireError> {
    Err(WireError::Failed(
        "the daemon's reply does not fit the host call".into(),
    ))
}

fn user_reply(r: Result<HostValue, WireError>) -> RResult<ROption<abi::User>, ErrorBox> {
    to_abi(r.and_then(|v| match v {
        HostValue::User(u) => Ok(u.map(|u| u.to_abi()).into()),
        _ => unexpected(),
    }))
}

impl Host for Remote<'_> {
    fn instance_name(&self) -> RString {
        self.served.instance.clone()
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        self.tell(HostCall::Log {
            level: level.0,
            message: message.to_string(),
        });
    }

    fn find_user(&self, identifier: RStr<'_>) -> RResult<ROption<abi::User>, ErrorBox> {
        user_reply(self.ask(HostCall::FindUser {
            identifier: identifier.to_string(),
        }))
    }

    fn find_user_by_id(&self, id: i64) -> RResult<ROption<abi::User>, ErrorBox> {
        user_reply(self.ask(HostCall::FindUserById { id }))
    }

    fn context(&self, key: RStr<'_>) -> ROption<RString> {
        self.context
            .get(key.as_str())
            .map(|v| RString::from(v.as_str()))
            .into()
    }

    fn context_all(&self) -> RVec<Tuple2<RString, RString>> {
        self.context
            .iter()
            .map(|(k, v)| Tuple2(RString::from(k.as_str()), RString::from(v.as_str())))
            .collect()
    }

    fn config_json(&self) -> RString {
        self.served.config_json.clone()
    }

    fn store_get(&self, key: RStr<'_>) -> RResult<ROption<RString>, ErrorBox> {
        to_abi(
            self.ask(HostCall::StoreGet {
                key: key.to_string(),
            })
            .and_then(|v| match v {
                HostValue::Text(t) => Ok(t.map(RString::from).into()),
                _ => unexpected(),
            }),
        )
    }

    fn store_set(&self, key: RStr<'_>, value: ROption<RStr<'_>>) -> RResult<(), ErrorBox> {
        to_abi(
            self.ask(HostCall::StoreSet {
                key: key.to_string(),
                value: value.map(|v| v.to_string()).into_option(),
            })
            .and_then(|v| match v {
                HostValue::Unit => Ok(()),
                _ => unexpected(),
            }),
        )
    }

    fn store_swap(
        &self,
        key: RStr<'_>,
        expected: ROption<RStr<'_>>,
        value: ROption<RStr<'_>>,
    ) -> RResult<bool, ErrorBox> {
        to_abi(
            self.ask(HostCall::StoreSwap {
                key: key.to_string(),
                expected: expected.map(|v| v.to_string()).into_option(),
                value: value.map(|v| v.to_string()).into_option(),
            })
            .and_then(|v| match v {
                HostValue::Flag(done) => Ok(done),
                _ => unexpected(),
            }),
        )
    }

    fn provision_user(&self, username: RStr<'_>, email: RStr<'_>) -> RResult<abi::User, ErrorBox> {
        to_abi(
            self.ask(HostCall::ProvisionUser {
                username: username.to_string(),
                email: email.to_string(),
            })
            .and_then(|v| match v {
                HostValue::Provisioned(u) => Ok(u.to_abi()),
                _ => unexpected(),
            }),
        )
    }

    fn delay_answer(&self, ms: u64) {
        self.tell(HostCall::DelayAnswer { ms });
    }

    fn ask_for(&self, key: RStr<'_>) {
        self.tell(HostCall::AskFor {
            key: key.to_string(),
        });
    }

    fn penalty_get(&self, key: RStr<'_>) -> RResult<u32, ErrorBox> {
        to_abi(
            self.ask(HostCall::PenaltyGet {
                key: key.to_string(),
            })
            .and_then(|v| match v {
                HostValue::Count(n) => Ok(n),
                _ => unexpected(),
            }),
        )
    }

    fn penalty_add(&self, key: RStr<'_>, window_ms: u64) -> RResult<(), ErrorBox> {
        to_abi(
            self.ask(HostCall::PenaltyAdd {
                key: key.to_string(),
                window_ms,
            })
            .and_then(|v| match v {
                HostValue::Unit => Ok(()),
                _ => unexpected(),
            }),
        )
    }

    fn penalty_clear(&self, key: RStr<'_>) -> RResult<(), ErrorBox> {
        to_abi(
            self.ask(HostCall::PenaltyClear {
                key: key.to_string(),
            })
            .and_then(|v| match v {
                HostValue::Unit => Ok(()),
                _ => unexpected(),
            }),
        )
    }
}

/// Takes the next argument, of the base kind the hook table says (a view's `args`,
/// `flaskbbd-hooks`; the daemon's kind table, `ipc::base_kind!`, reads it), or
/// answers that the daemon sent arguments that do not fit.
macro_rules! take_arg {
    ($args:ident, $hook:expr, $base:ident) => {
        match $args
            .next()
            .and_then(|a| crate::ipc::base_kind!(from_wire, $base, a))
        {
            Some(v) => v,
            None => return bad_args($hook),
        }
    };
}

/// An impl's answer as it crosses back, by the hook table's `returns`.
macro_rules! answer {
    (Nothing, $v:ident) => {{
        let () = $v;
        Answer::Nothing
    }};
    (User, $v:ident) => {
        Answer::User($v.into_option().map(|u| WireUser::of(&u)))
    };
    (True, $v:ident) => {
        Answer::True($v)
    };
    (Post, $v:ident) => {
        Answer::Post(convert::post_from_abi(&$v))
    };
    (Topic, $v:ident) => {
        Answer::Topic(convert::topic_from_abi(&$v))
    };
}

fn bad_args(hook: &str) -> Result<Answer, WireError> {
    Err(WireError::Failed(format!(
        "the daemon sent arguments that do not fit {hook}"
    )))
}

macro_rules! declare_dispatch {
    ($(
        $hook:ident {
            name: $name:literal,
            method: $method:ident,
            args: ($($arg:ident : $mode:ident $base:ident),*),
            returns: $returns:ident,
        }
    )*) => {
        /// Calls the instance's impl of the hook named `hook` (generated from the hook
        /// table).
        fn dispatch(
            plugin: &PluginBox,
            host: HostRef<'_>,
            hook: &str,
            args: Vec<Arg>,
        ) -> Result<Answer, WireError> {
            #[allow(unused_mut, unused_variables)]
            let mut args = args.into_iter();
            match hook {
                $($name => {
                    $(let $arg = take_arg!(args, hook, $base);)*
                    let v = from_abi(plugin.$method(host, $(crate::ipc::base_kind!(to_vtable, $base, $arg)),*))?;
                    Ok(answer!($returns, v))
                })*
                other => Err(WireError::Failed(format!(
                    "this plugin host does not know the hook {other}"
                ))),
            }
        }
    };
}

flaskbbd_hooks::for_each_hook! {
    rows: all,
    fields: [name, method, args, returns],
    then: declare_dispatch,
}
