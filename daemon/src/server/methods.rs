//! The methods of `org.flaskbb.Auth`, `org.flaskbb.Events`, `org.flaskbb.Admin` and
//! `org.varlink.service`: parameters in, work on the executor, an [`Answer`] out.

use std::{
    borrow::Cow,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::json;

use flaskbbd_protocol::{
    methods::{
        decode_event, parse, AdminCall, AuthCall, EventCall, Method, ServiceCall, ACCOUNT, ADMIN,
        AUTH, EVENTS,
    },
    passkey::PasskeyCall,
    replies::{
        self, account as account_errors, admin as admin_errors, auth as auth_errors,
        events as event_errors, AuthenticationFailed, GetInfoReply, GetInterfaceDescriptionReply,
        GetMetricsReply, GetStatusReply, GetUserReply, InternalError, ListHooksReply,
        ListPluginsReply, Message, Reason, Rejected, UnlockReply, UserReply,
    },
    INTERFACES,
};

use super::{
    wire::{self, errors, BadMessage, Call, Reply},
    Daemon,
};
use crate::{
    answer::{hold_back, run_request, timed_out, Answer, Failure},
    auth::{AuthError, AuthenticationManager, PluginAuthenticationManager, ReauthenticateManager},
    daemon::SetEnabledError,
    events::{self, EventAnswer, EventError},
    executor::{ExecError, Here, OnAbandon},
    generation::Generation,
    proto::Context,
    request::Request,
    store::StoreError,
};

/// A call read off a connection and parsed, with its name and when it arrived.
pub(crate) struct Parsed {
    name: Cow<'static, str>,
    started: Instant,
    method: Result<Method, Answer>,
}

/// Decodes and parses one message, with its `oneway` flag; an event call by the fast
/// path when it can be, else by the full one. The error is the reply to a message
/// that is not a call.
pub(crate) fn decode(message: &[u8], peer: Peer) -> Result<(Parsed, bool), BadMessage> {
    if let Some((call, oneway)) = decode_event(message) {
        let parsed = Parsed {
            name: Cow::Borrowed(call.full_name()),
            started: Instant::now(),
            method: Ok(Method::Events(call)),
        };
        return Ok((parsed, oneway));
    }
    let call = wire::decode(message)?;
    let oneway = call.oneway;
    Ok((parse_call(call, peer), oneway))
}

/// Who is calling, as far as the guarded interfaces care; read once per connection
/// from its peer credentials.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer {
    /// The peer's uid, when the kernel told it.
    pub(crate) uid: Option<u32>,
    /// May call `org.flaskbb.Admin` (`daemon.admin_uids`).
    pub(crate) admin: bool,
    /// May call `org.flaskbb.Account` (`daemon.forum_uids`).
    pub(crate) forum: bool,
}

/// Parses one call; a peer outside `admin_uids` learns nothing of Admin, not even its
/// parameters, and one outside `forum_uids` nothing of Account but the key to set.
fn parse_call(call: Call, peer: Peer) -> Parsed {
    let started = Instant::now();
    let name = Cow::Owned(format!("{}.{}", call.interface, call.method));
    let method = if call.interface == ADMIN && !peer.admin {
        Err(Reply::error(admin_errors::PERMISSION_DENIED, json!({})).into())
    } else if call.interface == ACCOUNT && !peer.forum {
        let uid = peer
            .uid
            .map_or_else(|| "(unknown)".to_owned(), |u| u.to_string());
        let message = format!(
            "uid {uid} may not call {ACCOUNT}: it is for the forum only; add the uid FlaskBB runs as to daemon.forum_uids in flaskbb.toml"
        );
        Err(Reply::error(
            account_errors::PERMISSION_DENIED,
            json!(Message { message }),
        )
        .into())
    } else {
        parse(call).map_err(Answer::from)
    };
    Parsed {
        name,
        started,
        method,
    }
}

/// Handles one call (on the pool where it has work); logs its method, outcome and
/// duration (never its parameters), and a failure with its cause.
pub(crate) async fn dispatch(d: &Arc<Daemon>, parsed: Parsed) -> Reply {
    let answer = match parsed.method {
        Ok(method) => run(d, method).await,
        Err(answer) => answer,
    };
    logged(&parsed.name, parsed.started, answer)
}

/// Logs how a call ended and turns its answer into the reply.
fn logged(name: &str, started: Instant, answer: Answer) -> Reply {
    match answer {
        Answer::Reply(reply) => {
            log_answered(name, started, outcome_of(&reply));
            reply
        }
        Answer::Failed(Failure { interface, message }) => {
            let outcome = replies::internal_error(interface);
            let took = crate::metrics::global().request(name, &outcome, started);
            let duration_ms = took.as_secs_f64() * 1000.0;
            tracing::error!(
                method = name,
                outcome,
                duration_ms,
                cause = message.as_str(),
                "request failed"
            );
            Reply::error(&outcome, json!(InternalError { message }))
        }
    }
}

/// The outcome an answered call counts and logs under: `ok`, the error's name, or
/// [`crate::metrics::SECOND_STEP`] for a right password whose second step is pending
/// (an `AuthenticationFailed` carrying a `pending_login` token, which is no failure).
fn outcome_of(reply: &Reply) -> &str {
    match reply {
        Reply::Err { parameters, .. } if parameters.get("pending_login").is_some() => {
            crate::metrics::SECOND_STEP
        }
        Reply::Err { error, .. } => error,
        Reply::Ok(_) => "ok",
    }
}

/// Counts and logs an answered call.
///
/// An event answered `ok` logs at debug level, everything else at info: events are the
/// forum's own traffic (every post saved, every topic viewed), at rates where a line
/// each costs the daemon more than some chains do (a write per call: with it, the
/// shipped isolated chain did 0.80–0.92× the calls at 16 clients, docs/benchmarks.md)
/// and would flood the journal (journald drops a service's messages past its rate
/// limit, 10,000 in 30 s by default, warnings and errors with them). Their counts and
/// durations are in the metrics; logins, account and admin calls, and every event a
/// plugin refused or that failed are still logged one line each.
fn log_answered(name: &str, started: Instant, outcome: &str) {
    let took = crate::metrics::global().request(name, outcome, started);
    let routine = outcome == "ok"
        && name
            .strip_prefix(EVENTS)
            .is_some_and(|method| method.starts_with('.'));
    let duration_ms = took.as_secs_f64() * 1000.0;
    if routine {
        tracing::debug!(method = name, outcome, duration_ms, "request");
    } else {
        tracing::info!(method = name, outcome, duration_ms, "request");
    }
}

/// The chain of an event whose recent requests took less than this runs on the
/// connection's own thread; a longer one runs on the pool. An async thread should
/// not be held much longer between two waits; two thread hand-offs cost about 20 µs.
const SHORT_CHAIN: Duration = Duration::from_micros(500);

/// An event call that runs on the connection's own task: on its thread, or awaiting
/// plugin hosts.
pub(crate) struct HereEvent {
    call: EventCall,
    generation: Arc<Generation>,
    /// What answers it once the chain has run.
    pub(crate) pending: Pending,
}

/// An event run on the connection's thread, to be answered: [`Pending::finish`], or
/// [`Pending::abandoned`] by whoever took the connection over from a hung call.
#[derive(Clone)]
pub(crate) struct Pending {
    name: Cow<'static, str>,
    started: Instant,
    req: Arc<Request>,
}

impl Parsed {
    /// Where the call runs: on this task, awaiting its hosts, when it is an event
    /// whose chain only crosses to plugin hosts; on this thread, when it is an event
    /// whose chain has been short lately and nothing stands in the way (see
    /// `executor`); else through [`dispatch`].
    pub(crate) fn route(self, d: &Daemon) -> Route {
        match self.method {
            Ok(Method::Events(call)) => {
                let generation = d.generation();
                let hook = events::hook_of(&call);
                let crosses = generation.chain(hook).crosses_only();
                // Short first: a yes from can_run_here takes a place that only
                // run_here gives back.
                if crosses || generation.cost(hook).short(SHORT_CHAIN) && d.can_run_here() {
                    let event = HereEvent {
                        call,
                        generation,
                        pending: Pending {
                            name: self.name,
                            started: self.started,
                            req: d.request(Context::new()),
                        },
                    };
                    if crosses {
                        Route::Cross(event)
                    } else {
                        Route::Here(event)
                    }
                } else {
                    Route::Pool(Parsed {
                        method: Ok(Method::Events(call)),
                        ..self
                    })
                }
            }
            method => Route::Pool(Parsed { method, ..self }),
        }
    }
}

/// Where a call runs.
pub(crate) enum Route {
    /// An event, on the connection's thread.
    Here(HereEvent),
    /// An event whose chain only crosses to plugin hosts, on the connection's task,
    /// which awaits them ([`HereEvent::cross`]).
    Cross(HereEvent),
    /// Anything else, through [`dispatch`] (the pool where it has work).
    Pool(Parsed),
}

/// How an event run on the connection's thread ended, before its commit.
pub(crate) type HereOutcome = Here<Result<EventAnswer, EventError>>;

impl HereEvent {
    /// Runs the chain here, watched (see [`crate::executor::Executor::run_here`]);
    /// `on_abandon` gets the timeout of a call that hangs.
    pub(crate) fn run(self, d: &Daemon, on_abandon: OnAbandon) -> (Pending, HereOutcome) {
        let HereEvent {
            call,
            generation: g,
            pending,
        } = self;
        let hook = events::hook_of(&call);
        let req = &pending.req;
        let outcome = d.run_here(req, || events::run(&g, req, call), on_abandon);
        // From the call's arrival: decoding is the same for every chain.
        g.cost(hook).record(pending.started.elapsed());
        (pending, outcome)
    }

    /// Runs a chain that only crosses to plugin hosts on this task, watched (see
    /// [`crate::executor::Executor::run_crossing`]): while a host works, the thread
    /// serves other connections. Never [`Here::Abandoned`].
    pub(crate) async fn cross(self, d: &Daemon) -> (Pending, HereOutcome) {
        let HereEvent {
            call,
            generation: g,
            pending,
        } = self;
        let hook = events::hook_of(&call);
        let req = &pending.req;
        req.set_near(d.traffic.is_quiet(1));
        let outcome = d
            .run_crossing(req, events::run_crossing(&g, req, call))
            .await;
        g.cost(hook).record(pending.started.elapsed());
        (pending, outcome)
    }
}

impl Pending {
    /// Finishes an event run here: commits its changes (on the pool, as a store
    /// write may block), holds the answer back if a plugin asked, logs it, and
    /// appends the reply to `out` (none for a oneway call).
    pub(crate) async fn finish(
        self,
        d: &Arc<Daemon>,
        outcome: HereOutcome,
        out: Option<&mut Vec<u8>>,
    ) {
        let outcome = match outcome {
            Here::Done(Ok(answer)) => {
                let answer = if self.req.has_changes() {
                    let req = self.req.clone();
                    match d.blocking(move || events::commit(&req, answer)).await {
                        Ok(a) => a,
                        Err(e) => Err(EventError::Internal {
                            message: e.to_string(),
                        }),
                    }
                } else {
                    answer
                };
                hold_back(&self.req).await;
                answer
            }
            Here::Done(Err(e)) => Err(EventError::Internal {
                message: e.to_string(),
            }),
            Here::TimedOut(e) => {
                let answer = timed_out(d, EVENTS, self.req, e).await.into();
                let reply = logged(&self.name, self.started, answer);
                if let Some(out) = out {
                    reply.encode_into(out);
                }
                return;
            }
            // The abandoned request is answered by `abandoned`.
            Here::Abandoned => return,
        };
        // The saved draft goes straight to the wire: no JSON tree between.
        if let Ok(EventAnswer::Post(_) | EventAnswer::Topic(_)) = &outcome {
            log_answered(&self.name, self.started, "ok");
            match (&outcome, out) {
                (Ok(EventAnswer::Post(post)), Some(out)) => encode_draft("post", post, out),
                (Ok(EventAnswer::Topic(topic)), Some(out)) => encode_draft("topic", topic, out),
                _ => {}
            }
            return;
        }
        let reply = logged(&self.name, self.started, event_answer(outcome));
        if let Some(out) = out {
            reply.encode_into(out);
        }
    }

    /// Answers an event whose hung call was abandoned, from wherever the connection
    /// went on: commits what it queued before, logs, and gives the reply.
    pub(crate) async fn abandoned(self, d: &Arc<Daemon>, e: ExecError) -> Reply {
        let answer = timed_out(d, EVENTS, self.req, e).await.into();
        logged(&self.name, self.started, answer)
    }
}

/// Appends the reply `{"parameters":{key: draft}}` and its NUL to `out`: a saved post
/// or topic encoded straight from its type.
fn encode_draft<T: serde::Serialize>(key: &str, draft: &T, out: &mut Vec<u8>) {
    #[derive(serde::Serialize)]
    struct Wire<'a, T> {
        parameters: std::collections::BTreeMap<&'a str, &'a T>,
    }
    let start = out.len();
    let wire = Wire {
        parameters: [(key, draft)].into(),
    };
    if serde_json::to_writer(&mut *out, &wire).is_err() {
        // A post or topic always serializes: this is not reached.
        out.truncate(start);
        out.extend_from_slice(br#"{"parameters":{}}"#);
    }
    out.push(0);
}

async fn run(d: &Arc<Daemon>, method: Method) -> Answer {
    match method {
        Method::Service(ServiceCall::GetInfo) => Reply::ok(GetInfoReply {
            vendor: "flaskbbd".into(),
            product: "flaskbbd".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            url: "https://flaskbb.org".into(),
            interfaces: INTERFACES.iter().map(|(n, _)| (*n).to_owned()).collect(),
        })
        .into(),
        Method::Service(ServiceCall::GetInterfaceDescription { interface }) => {
            match INTERFACES.iter().find(|(n, _)| *n == interface) {
                Some((_, text)) => Reply::ok(GetInterfaceDescriptionReply {
                    description: (*text).to_owned(),
                }),
                None => Reply::error(
                    errors::INTERFACE_NOT_FOUND,
                    json!({ "interface": interface }),
                ),
            }
            .into()
        }
        Method::Auth(call) => auth(d, call).await,
        Method::Events(call) => event(d, call).await,
        Method::Admin(call) => admin_method(d, call).await,
        Method::Account(call) => crate::account::call(d, call).await,
        Method::Passkey(PasskeyCall::FinishSignIn {
            ceremony,
            credential,
            context,
        }) => passkey_sign_in(d, ceremony, credential, context).await,
        Method::Passkey(call) => crate::passkey::call(d, call).await,
    }
}

async fn auth(d: &Arc<Daemon>, mut call: AuthCall) -> Answer {
    let (AuthCall::Authenticate { context, .. } | AuthCall::Reauthenticate { context, .. }) =
        &mut call;
    let req = d.request(std::mem::take(context));
    let (g, manager, r2) = (d.generation(), PluginAuthenticationManager, req.clone());
    // Whether the answer is a right password's pending second step.
    let second_step = Arc::new(AtomicBool::new(false));
    let pending = second_step.clone();
    let answer = run_request(d, AUTH, req, move || match call {
        AuthCall::Authenticate {
            identifier, secret, ..
        } => {
            let outcome = manager.authenticate(&g, &r2, &identifier, &secret);
            if let Err(AuthError::SecondStep { counted: false, .. }) = &outcome {
                pending.store(true, Ordering::Relaxed);
            }
            auth_answer(&r2, outcome, |user| Reply::ok(UserReply { user }))
        }
        AuthCall::Reauthenticate {
            user_id, secret, ..
        } => {
            r2.require_second_factor();
            let outcome = manager.reauthenticate(&g, &r2, user_id, &secret);
            auth_answer(&r2, outcome, |()| Reply::empty())
        }
    })
    .await
    .unwrap_or_else(Answer::from);
    // The same delay for every kind of failure, never on success (nor on a right
    // password whose second step is pending), without a thread.
    let delay = d.config().auth.failure_delay_ms;
    let failed = match &answer {
        Answer::Reply(r) => r.error_name().is_some() && !second_step.load(Ordering::Relaxed),
        Answer::Failed(_) => true,
    };
    if delay > 0 && failed {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    answer
}

/// An authentication flow's outcome as `org.flaskbb.Auth` answers it: `ok` of the
/// value, or `AuthenticationFailed` (with what plugins asked for, and a pending
/// second step's token), `ForceLogout`, or a failure.
pub(crate) fn auth_answer<T>(
    req: &Request,
    r: Result<T, AuthError>,
    ok: impl FnOnce(T) -> Reply,
) -> Answer {
    match r {
        Ok(v) => ok(v).into(),
        Err(AuthError::Failed { reason }) => {
            // What plugins asked the client for (a second factor's `otp`), if anything.
            let asked = req.asked();
            let failed = AuthenticationFailed {
                reason,
                ask: (!asked.is_empty()).then_some(asked),
                pending_login: None,
            };
            Reply::error(auth_errors::AUTHENTICATION_FAILED, json!(failed)).into()
        }
        Err(AuthError::SecondStep { reason, token, .. }) => {
            let failed = AuthenticationFailed {
                reason,
                ask: Some(req.asked()),
                pending_login: Some(token),
            };
            Reply::error(auth_errors::AUTHENTICATION_FAILED, json!(failed)).into()
        }
        Err(AuthError::ForceLogout { reason }) => {
            Reply::error(auth_errors::FORCE_LOGOUT, json!(Reason { reason })).into()
        }
        Err(AuthError::Internal { message }) => Failure::new(AUTH, message).into(),
    }
}

/// `FinishPasskeySignIn`: the passkey's checks and its member's login on the pool
/// ([`crate::passkey::sign_in`]), answered as `Authenticate` is, with the same failure
/// delay.
async fn passkey_sign_in(
    d: &Arc<Daemon>,
    ceremony: String,
    credential: String,
    context: Context,
) -> Answer {
    let webauthn = match crate::passkey::relying_party(d, AUTH) {
        Ok(w) => w,
        Err(answer) => return answer,
    };
    let req = crate::passkey::sign_in_request(d, context);
    let (g, r2) = (d.generation(), req.clone());
    let answer = run_request(d, AUTH, req, move || {
        let outcome = crate::passkey::sign_in(
            &g,
            &PluginAuthenticationManager,
            &r2,
            &webauthn,
            &ceremony,
            &credential,
        );
        auth_answer(&r2, outcome, |user| Reply::ok(UserReply { user }))
    })
    .await
    .unwrap_or_else(Answer::from);
    let delay = d.config().auth.failure_delay_ms;
    let failed = match &answer {
        Answer::Reply(r) => r.error_name().is_some(),
        Answer::Failed(_) => true,
    };
    if delay > 0 && failed {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    answer
}

async fn event(d: &Arc<Daemon>, call: EventCall) -> Answer {
    let req = d.request(Context::new());
    let (g, r2) = (d.generation(), req.clone());
    let hook = events::hook_of(&call);
    run_request(d, EVENTS, req, move || {
        // The chain's own time, measured here too, so that a chain that was long and is
        // short again comes back to the connection's thread (the time waited in the
        // pool's queue, behind logins say, is not the chain's).
        let ran = Instant::now();
        let answer = event_answer(events::fire(&g, &r2, call));
        g.cost(hook).record(ran.elapsed());
        answer
    })
    .await
    .unwrap_or_else(Answer::from)
}

/// What an event's outcome answers.
fn event_answer(outcome: Result<EventAnswer, EventError>) -> Answer {
    match outcome {
        Ok(EventAnswer::Nothing) => Reply::empty().into(),
        Ok(EventAnswer::Post(post)) => Reply::ok(json!({ "post": post })).into(),
        Ok(EventAnswer::Topic(topic)) => Reply::ok(json!({ "topic": topic })).into(),
        Err(EventError::Rejected { plugin, reason }) => {
            Reply::error(event_errors::REJECTED, json!(Rejected { plugin, reason })).into()
        }
        Err(EventError::Internal { message }) => Failure::new(EVENTS, message).into(),
    }
}

/// A store error as an admin method answers it: the interface's named errors for what
/// the caller asked wrong, a failure for the rest.
fn admin_store_error(e: StoreError) -> Answer {
    match e {
        StoreError::UserExists => Reply::error(admin_errors::USER_EXISTS, json!({})).into(),
        StoreError::NoSuchUser => Reply::error(admin_errors::NO_SUCH_USER, json!({})).into(),
        other => Failure::new(ADMIN, other.to_string()).into(),
    }
}

/// Runs a blocking step of the core on the pool; a step that did not run fails.
async fn on_pool<T: Send + 'static>(
    d: &Arc<Daemon>,
    f: impl FnOnce(&Daemon) -> T + Send + 'static,
) -> Result<T, Answer> {
    let d2 = d.clone();
    d.blocking(move || f(&d2))
        .await
        .map_err(|e| Failure::new(ADMIN, e.to_string()).into())
}

/// Runs a store step of the core on the pool and maps its errors.
async fn on_store<T: Send + 'static>(
    d: &Arc<Daemon>,
    f: impl FnOnce(&Daemon) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Answer> {
    on_pool(d, f).await?.map_err(admin_store_error)
}

/// Hashes `password` the way the configured schema stores it, on the pool.
async fn hash_password(d: &Arc<Daemon>, password: String) -> Result<String, Answer> {
    on_pool(d, move |d| d.hash_for_store(&password))
        .await?
        .ok_or_else(|| Reply::invalid("password").into())
}

async fn admin_method(d: &Arc<Daemon>, call: AdminCall) -> Answer {
    let answer = match call {
        AdminCall::CreateUser {
            username,
            email,
            password,
            activated,
        } => create_user(d, username, email, password, activated).await,
        AdminCall::GetUser { identifier } => on_store(d, move |d| d.user_and_lock(&identifier))
            .await
            .map(|found| match found {
                Some((user, lock)) => Reply::ok(GetUserReply { user, lock }),
                None => Reply::error(admin_errors::NO_SUCH_USER, json!({})),
            }),
        AdminCall::Unlock {
            identifier,
            address,
        } => on_store(d, move |d| d.unlock(&identifier, address.as_deref()))
            .await
            .map(|cleared| Reply::ok(UnlockReply { cleared })),
        AdminCall::SetPassword { user_id, password } => match hash_password(d, password).await {
            Ok(hash) => on_store(d, move |d| d.set_password_hash(user_id, &hash))
                .await
                .map(|()| Reply::empty()),
            Err(answer) => Err(answer),
        },
        AdminCall::SetActivated { user_id, activated } => {
            on_store(d, move |d| d.set_activated(user_id, activated))
                .await
                .map(|()| Reply::empty())
        }
        AdminCall::SetBanned { user_id, banned } => {
            on_store(d, move |d| d.set_banned(user_id, banned))
                .await
                .map(|()| Reply::empty())
        }
        AdminCall::ListPlugins => Ok(Reply::ok(ListPluginsReply {
            plugins: d.generation().plugins(),
        })),
        AdminCall::ListHooks => Ok(Reply::ok(ListHooksReply {
            hooks: d.generation().describe(),
        })),
        AdminCall::GetMetrics => Ok(Reply::ok(GetMetricsReply {
            text: d.metrics_text(),
        })),
        AdminCall::GetStatus => Ok(Reply::ok(GetStatusReply { status: d.status() })),
        AdminCall::SetPluginEnabled { name, enabled } => {
            return set_plugin_enabled(d, name, enabled).await
        }
        AdminCall::Reload => on_pool(d, |d| d.reload())
            .await
            .map(|reloaded| match reloaded {
                Ok(_) => Reply::empty(),
                // Daemon::reload has logged why.
                Err(reason) => Reply::error(admin_errors::RELOAD_FAILED, json!(Reason { reason })),
            }),
    };
    answer.map_or_else(|e| e, Answer::from)
}

/// `CreateUser`: the password hashed on the pool, then the user stored.
async fn create_user(
    d: &Arc<Daemon>,
    username: String,
    email: String,
    password: String,
    activated: bool,
) -> Result<Reply, Answer> {
    let hash = hash_password(d, password).await?;
    let user = on_store(d, move |d| d.create_user(username, email, hash, activated)).await?;
    Ok(Reply::ok(UserReply { user }))
}

/// `SetPluginEnabled`: only a configured instance; recorded, then reloaded.
async fn set_plugin_enabled(d: &Arc<Daemon>, name: String, enabled: bool) -> Answer {
    if !d.config().known_instance_names().contains(&name) {
        return Reply::error(admin_errors::NO_SUCH_PLUGIN, json!({ "name": name })).into();
    }
    match on_pool(d, move |d| d.set_plugin_enabled(&name, enabled)).await {
        Ok(Ok(())) => Reply::empty().into(),
        Ok(Err(SetEnabledError::Reload(reason))) => {
            Reply::error(admin_errors::RELOAD_FAILED, json!(Reason { reason })).into()
        }
        Ok(Err(SetEnabledError::Store(e))) => admin_store_error(e),
        Err(answer) => answer,
    }
}
