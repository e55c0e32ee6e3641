//! The methods of `org.flaskbb.Auth`, `org.flaskbb.Events`, `org.flaskbb.Admin` and
//! `org.varlink.service`: parameters in, work on the executor, an [`Answer`] out.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;

use flaskbbd_protocol::{
    methods::{parse, AdminCall, AuthCall, EventCall, Method, ServiceCall, ADMIN, AUTH, EVENTS},
    INTERFACES,
};

use super::{
    wire::{errors, Call, Reply},
    Daemon,
};
use crate::{
    auth::{AuthError, AuthenticationManager, ReauthenticateManager},
    events::{self, EventAnswer, EventError},
    executor::ExecError,
    proto::Context,
    request::Request,
    store::{NewUser, StoreError},
};

/// A request failed closed: a plugin, the store or the pool failed. The client gets
/// the interface's `InternalError(message)`; the log gets the cause.
#[derive(Debug)]
pub(crate) struct Failure {
    interface: &'static str,
    message: String,
}

impl Failure {
    fn new(interface: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            interface,
            message: message.into(),
        }
    }
}

/// What a method answers: a reply (success or one of the interface's named errors),
/// or a failure.
pub(crate) enum Answer {
    Reply(Reply),
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

/// Handles one call; logs its method, outcome and duration (never its parameters),
/// and a failure with its cause.
pub(crate) async fn dispatch(d: &Arc<Daemon>, call: Call, admin: bool) -> Reply {
    let started = Instant::now();
    let name = format!("{}.{}", call.interface, call.method);
    // A peer outside `admin_uids` learns nothing of Admin, not even its parameters.
    let answer = if call.interface == ADMIN && !admin {
        Reply::error(&format!("{ADMIN}.PermissionDenied"), json!({})).into()
    } else {
        match parse(call) {
            Ok(method) => run(d, method).await,
            Err(reply) => reply.into(),
        }
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    match answer {
        Answer::Reply(reply) => {
            let outcome = reply.error_name().unwrap_or("ok");
            tracing::info!(method = name, outcome, duration_ms, "request");
            reply
        }
        Answer::Failed(Failure { interface, message }) => {
            let outcome = format!("{interface}.InternalError");
            tracing::error!(
                method = name,
                outcome,
                duration_ms,
                cause = message.as_str(),
                "request failed"
            );
            Reply::error(&outcome, json!({ "message": message }))
        }
    }
}

async fn run(d: &Arc<Daemon>, method: Method) -> Answer {
    match method {
        Method::Service(ServiceCall::GetInfo) => Reply::ok(json!({
            "vendor": "flaskbbd",
            "product": "flaskbbd",
            "version": env!("CARGO_PKG_VERSION"),
            "url": "https://flaskbb.org",
            "interfaces": INTERFACES.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        }))
        .into(),
        Method::Service(ServiceCall::GetInterfaceDescription { interface }) => {
            match INTERFACES.iter().find(|(n, _)| *n == interface) {
                Some((_, text)) => Reply::ok(json!({ "description": text })),
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
    }
}

/// Runs `f` for a request on the executor; on a timeout, commits what the request had
/// queued so far (the hung call can no longer add to it) and fails.
async fn run_request<T: Send + 'static>(
    d: &Arc<Daemon>,
    iface: &'static str,
    req: Arc<Request>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failure> {
    let timeout = Duration::from_millis(d.config().daemon.hook_timeout_ms);
    match d.executor.run(req.clone(), timeout, f).await {
        Ok(v) => {
            // A plugin (a rate limiter) asked to hold the answer back: wait here, on
            // the async side, holding no thread.
            let delay = req.answer_delay();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(v)
        }
        Err(e) => {
            if matches!(e, ExecError::Timeout { .. }) {
                // Logged by the commit; the answer is the timeout either way.
                let _ = d.executor.run_plain(move || req.commit()).await;
            }
            Err(Failure::new(iface, e.to_string()))
        }
    }
}

async fn auth(d: &Arc<Daemon>, mut call: AuthCall) -> Answer {
    let (AuthCall::Authenticate { context, .. } | AuthCall::Reauthenticate { context, .. }) =
        &mut call;
    let req = Request::new(d.store.clone(), std::mem::take(context));
    let (g, manager, r2) = (d.generation(), d.auth.clone(), req.clone());
    let answer = run_request(d, AUTH, req, move || match call {
        AuthCall::Authenticate {
            identifier, secret, ..
        } => auth_answer(
            &r2,
            manager.authenticate(&g, &r2, &identifier, &secret),
            |user| Reply::ok(json!({ "user": user })),
        ),
        AuthCall::Reauthenticate {
            user_id, secret, ..
        } => auth_answer(
            &r2,
            manager.reauthenticate(&g, &r2, user_id, &secret),
            |()| Reply::empty(),
        ),
    })
    .await
    .unwrap_or_else(Answer::from);
    // The same delay for every kind of failure, never on success, without a thread.
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

fn auth_answer<T>(req: &Request, r: Result<T, AuthError>, ok: impl FnOnce(T) -> Reply) -> Answer {
    match r {
        Ok(v) => ok(v).into(),
        Err(AuthError::Failed { reason }) => {
            // What plugins asked the client for (a second factor's `otp`), if anything.
            let asked = req.asked();
            let parameters = if asked.is_empty() {
                json!({ "reason": reason })
            } else {
                json!({ "reason": reason, "ask": asked })
            };
            Reply::error(&format!("{AUTH}.AuthenticationFailed"), parameters).into()
        }
        Err(AuthError::ForceLogout { reason }) => {
            Reply::error(&format!("{AUTH}.ForceLogout"), json!({ "reason": reason })).into()
        }
        Err(AuthError::Internal { message }) => Failure::new(AUTH, message).into(),
    }
}

async fn event(d: &Arc<Daemon>, call: EventCall) -> Answer {
    let req = Request::new(d.store.clone(), Context::new());
    let (g, r2) = (d.generation(), req.clone());
    run_request(d, EVENTS, req, move || match events::fire(&g, &r2, call) {
        Ok(EventAnswer::Nothing) => Reply::empty().into(),
        Ok(EventAnswer::Post(post)) => Reply::ok(json!({ "post": post })).into(),
        Ok(EventAnswer::Topic(topic)) => Reply::ok(json!({ "topic": topic })).into(),
        Err(EventError::Rejected { plugin, reason }) => Reply::error(
            &format!("{EVENTS}.Rejected"),
            json!({ "plugin": plugin, "reason": reason }),
        )
        .into(),
        Err(EventError::Internal { message }) => Failure::new(EVENTS, message).into(),
    })
    .await
    .unwrap_or_else(Answer::from)
}

/// A store error as an admin method answers it: the interface's named errors for what
/// the caller asked wrong, a failure for the rest.
fn admin_store_error(e: StoreError) -> Answer {
    match e {
        StoreError::UserExists => Reply::error(&format!("{ADMIN}.UserExists"), json!({})).into(),
        StoreError::NoSuchUser => Reply::error(&format!("{ADMIN}.NoSuchUser"), json!({})).into(),
        other => Failure::new(ADMIN, other.to_string()).into(),
    }
}

/// Runs store work on the executor and maps its errors.
async fn on_pool<T: Send + 'static>(
    d: &Arc<Daemon>,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Answer> {
    match d.executor.run_plain(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(admin_store_error(e)),
        Err(e) => Err(Failure::new(ADMIN, e.to_string()).into()),
    }
}

/// Hashes `password` the way the configured schema stores it, on the executor.
async fn hash_password(d: &Arc<Daemon>, password: String) -> Result<String, Answer> {
    let (verifier, schema) = (d.generation().verifier.clone(), d.config().database.schema);
    d.executor
        .run_plain(move || verifier.hash_for(schema, &password))
        .await
        .map_err(|e| Answer::from(Failure::new(ADMIN, e.to_string())))?
        .map_err(|_| Reply::invalid("password").into())
}

async fn admin_method(d: &Arc<Daemon>, call: AdminCall) -> Answer {
    let run = async {
        let store = d.store.clone();
        Ok::<Answer, Answer>(match call {
            AdminCall::CreateUser {
                username,
                email,
                password,
                activated,
            } => {
                let hash = hash_password(d, password).await?;
                let user = on_pool(d, move || {
                    store.create_user(&NewUser {
                        username,
                        email,
                        password_hash: Some(hash),
                        activated,
                        primary_group_id: crate::store::MEMBER_GROUP,
                    })
                })
                .await?;
                Reply::ok(json!({ "user": user.user })).into()
            }
            AdminCall::GetUser { identifier } => {
                match on_pool(d, move || store.find_user(&identifier)).await? {
                    Some(r) => Reply::ok(json!({ "user": r.user })),
                    None => Reply::error(&format!("{ADMIN}.NoSuchUser"), json!({})),
                }
                .into()
            }
            AdminCall::SetPassword { user_id, password } => {
                let hash = hash_password(d, password).await?;
                on_pool(d, move || store.set_password(user_id, &hash)).await?;
                Reply::empty().into()
            }
            AdminCall::SetActivated { user_id, activated } => {
                on_pool(d, move || store.set_activated(user_id, activated)).await?;
                Reply::empty().into()
            }
            AdminCall::SetBanned { user_id, banned } => {
                on_pool(d, move || store.set_banned(user_id, banned)).await?;
                Reply::empty().into()
            }
            AdminCall::ListPlugins => {
                Reply::ok(json!({ "plugins": d.generation().plugins() })).into()
            }
            AdminCall::ListHooks => Reply::ok(json!({ "hooks": d.generation().describe() })).into(),
            AdminCall::SetPluginEnabled { name, enabled } => {
                if !d.config().known_instance_names().contains(&name) {
                    return Ok(Reply::error(
                        &format!("{ADMIN}.NoSuchPlugin"),
                        json!({ "name": name }),
                    )
                    .into());
                }
                let d2 = d.clone();
                match d
                    .executor
                    .run_plain(move || d2.set_plugin_enabled(&name, enabled))
                    .await
                {
                    Ok(Ok(())) => Reply::empty().into(),
                    Ok(Err(crate::daemon::SetEnabledError::Reload(reason))) => Reply::error(
                        &format!("{ADMIN}.ReloadFailed"),
                        json!({ "reason": reason }),
                    )
                    .into(),
                    Ok(Err(crate::daemon::SetEnabledError::Store(e))) => admin_store_error(e),
                    Err(e) => Failure::new(ADMIN, e.to_string()).into(),
                }
            }
            AdminCall::Reload => {
                let d2 = d.clone();
                match d.executor.run_plain(move || d2.reload()).await {
                    Ok(Ok(_)) => Reply::empty().into(),
                    // Daemon::reload has logged why.
                    Ok(Err(reason)) => Reply::error(
                        &format!("{ADMIN}.ReloadFailed"),
                        json!({ "reason": reason }),
                    )
                    .into(),
                    Err(e) => Failure::new(ADMIN, e.to_string()).into(),
                }
            }
        })
    };
    run.await.unwrap_or_else(|e| e)
}
