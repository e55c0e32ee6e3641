//! The methods of `org.flaskbb.Auth`, `org.flaskbb.Events`, `org.flaskbb.Admin` and
//! `org.varlink.service`: parameters in, work on the executor, reply out.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;

use flaskbbd_protocol::methods::{
    parse, AdminCall, AuthCall, EventCall, Method, ServiceCall, ADMIN, AUTH, EVENTS,
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

/// The interfaces this service provides, and their descriptions.
pub const INTERFACES: &[(&str, &str)] = &[
    (
        "org.varlink.service",
        include_str!("../../varlink/org.varlink.service.varlink"),
    ),
    (
        "org.flaskbb.Auth",
        include_str!("../../varlink/org.flaskbb.Auth.varlink"),
    ),
    (
        "org.flaskbb.Events",
        include_str!("../../varlink/org.flaskbb.Events.varlink"),
    ),
    (
        "org.flaskbb.Admin",
        include_str!("../../varlink/org.flaskbb.Admin.varlink"),
    ),
];

fn internal(iface: &str, message: impl Into<String>) -> Reply {
    Reply::error(
        &format!("{iface}.InternalError"),
        json!({ "message": message.into() }),
    )
}

/// Handles one call; logs its method, outcome and duration (never its parameters).
pub async fn dispatch(d: &Arc<Daemon>, call: Call, admin: bool) -> Reply {
    let started = Instant::now();
    let name = format!("{}.{}", call.interface, call.method);
    // A peer outside `admin_uids` learns nothing of Admin, not even its parameters.
    let reply = if call.interface == ADMIN && !admin {
        Reply::error(&format!("{ADMIN}.PermissionDenied"), json!({}))
    } else {
        match parse(call) {
            Ok(method) => run(d, method).await,
            Err(reply) => reply,
        }
    };
    let outcome = reply.error_name().unwrap_or("ok");
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    match &reply {
        // A fault: logged with its cause (error messages never carry parameters).
        Reply::Err { error, parameters } if error.ends_with(".InternalError") => {
            tracing::error!(
                method = name,
                outcome,
                duration_ms,
                cause = parameters["message"].as_str().unwrap_or(""),
                "request failed"
            );
        }
        _ => tracing::info!(method = name, outcome, duration_ms, "request"),
    }
    reply
}

async fn run(d: &Arc<Daemon>, method: Method) -> Reply {
    match method {
        Method::Service(ServiceCall::GetInfo) => Reply::ok(json!({
            "vendor": "flaskbbd",
            "product": "flaskbbd",
            "version": env!("CARGO_PKG_VERSION"),
            "url": "https://flaskbb.org",
            "interfaces": INTERFACES.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        })),
        Method::Service(ServiceCall::GetInterfaceDescription { interface }) => {
            match INTERFACES.iter().find(|(n, _)| *n == interface) {
                Some((_, text)) => Reply::ok(json!({ "description": text })),
                None => Reply::error(
                    errors::INTERFACE_NOT_FOUND,
                    json!({ "interface": interface }),
                ),
            }
        }
        Method::Auth(call) => auth(d, call).await,
        Method::Events(call) => event(d, call).await,
        Method::Admin(call) => admin_method(d, call).await,
    }
}

/// Runs `f` for a request on the executor; on a timeout, commits what the request had
/// queued so far (the hung call can no longer add to it) and answers an internal error.
async fn run_request<T: Send + 'static>(
    d: &Arc<Daemon>,
    iface: &str,
    req: Arc<Request>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Reply> {
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
                let ops = req.take_ops();
                if !ops.is_empty() {
                    let store = req.store.clone();
                    if let Ok(Err(ce)) = d.executor.run_plain(move || store.commit(&ops)).await {
                        tracing::error!("commit after a timeout failed: {ce}");
                    }
                }
            }
            Err(internal(iface, e.to_string()))
        }
    }
}

async fn auth(d: &Arc<Daemon>, mut call: AuthCall) -> Reply {
    let (AuthCall::Authenticate { context, .. } | AuthCall::Reauthenticate { context, .. }) =
        &mut call;
    let req = Request::new(d.store.clone(), std::mem::take(context));
    let (g, manager, r2) = (d.generation(), d.auth.clone(), req.clone());
    let reply = run_request(d, AUTH, req, move || match call {
        AuthCall::Authenticate {
            identifier, secret, ..
        } => auth_reply(
            &r2,
            manager.authenticate(&g, &r2, &identifier, &secret),
            |user| Reply::ok(json!({ "user": user })),
        ),
        AuthCall::Reauthenticate {
            user_id, secret, ..
        } => auth_reply(
            &r2,
            manager.reauthenticate(&g, &r2, user_id, &secret),
            |()| Reply::empty(),
        ),
    })
    .await
    .unwrap_or_else(|reply| reply);
    // The same delay for every kind of failure, never on success, without a thread.
    let delay = d.config().auth.failure_delay_ms;
    if delay > 0 && matches!(&reply, Reply::Err { error, .. } if error.starts_with(AUTH)) {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    reply
}

fn auth_reply<T>(req: &Request, r: Result<T, AuthError>, ok: impl FnOnce(T) -> Reply) -> Reply {
    match r {
        Ok(v) => ok(v),
        Err(AuthError::Failed { reason }) => {
            // What plugins asked the client for (a second factor's `otp`), if anything.
            let asked = req.asked();
            let parameters = if asked.is_empty() {
                json!({ "reason": reason })
            } else {
                json!({ "reason": reason, "ask": asked })
            };
            Reply::error(&format!("{AUTH}.AuthenticationFailed"), parameters)
        }
        Err(AuthError::ForceLogout { reason }) => {
            Reply::error(&format!("{AUTH}.ForceLogout"), json!({ "reason": reason }))
        }
        Err(AuthError::Internal { message }) => internal(AUTH, message),
    }
}

async fn event(d: &Arc<Daemon>, call: EventCall) -> Reply {
    let req = Request::new(d.store.clone(), Context::new());
    let (g, r2) = (d.generation(), req.clone());
    run_request(d, EVENTS, req, move || match events::fire(&g, &r2, call) {
        Ok(EventAnswer::Nothing) => Reply::empty(),
        Ok(EventAnswer::Post(post)) => Reply::ok(json!({ "post": post })),
        Ok(EventAnswer::Topic(topic)) => Reply::ok(json!({ "topic": topic })),
        Err(EventError::Rejected { plugin, reason }) => Reply::error(
            &format!("{EVENTS}.Rejected"),
            json!({ "plugin": plugin, "reason": reason }),
        ),
        Err(EventError::Internal { message }) => internal(EVENTS, message),
    })
    .await
    .unwrap_or_else(|reply| reply)
}

fn admin_store_error(e: StoreError) -> Reply {
    match e {
        StoreError::UserExists => Reply::error(&format!("{ADMIN}.UserExists"), json!({})),
        StoreError::NoSuchUser => Reply::error(&format!("{ADMIN}.NoSuchUser"), json!({})),
        other => internal(ADMIN, other.to_string()),
    }
}

/// Runs store work on the executor and maps its errors.
async fn on_pool<T: Send + 'static>(
    d: &Arc<Daemon>,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Reply> {
    match d.executor.run_plain(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(admin_store_error(e)),
        Err(e) => Err(internal(ADMIN, e.to_string())),
    }
}

/// Hashes `password` the way the configured schema stores it, on the executor.
async fn hash_password(d: &Arc<Daemon>, password: String) -> Result<String, Reply> {
    let (verifier, schema) = (d.generation().verifier.clone(), d.config().database.schema);
    d.executor
        .run_plain(move || verifier.hash_for(schema, &password))
        .await
        .map_err(|e| internal(ADMIN, e.to_string()))?
        .map_err(|_| Reply::invalid("password"))
}

async fn admin_method(d: &Arc<Daemon>, call: AdminCall) -> Reply {
    let run = async {
        let store = d.store.clone();
        Ok(match call {
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
                Reply::ok(json!({ "user": user.user }))
            }
            AdminCall::GetUser { identifier } => {
                match on_pool(d, move || store.find_user(&identifier)).await? {
                    Some(r) => Reply::ok(json!({ "user": r.user })),
                    None => Reply::error(&format!("{ADMIN}.NoSuchUser"), json!({})),
                }
            }
            AdminCall::SetPassword { user_id, password } => {
                let hash = hash_password(d, password).await?;
                on_pool(d, move || store.set_password(user_id, &hash)).await?;
                Reply::empty()
            }
            AdminCall::SetActivated { user_id, activated } => {
                on_pool(d, move || store.set_activated(user_id, activated)).await?;
                Reply::empty()
            }
            AdminCall::SetBanned { user_id, banned } => {
                on_pool(d, move || store.set_banned(user_id, banned)).await?;
                Reply::empty()
            }
            AdminCall::ListPlugins => Reply::ok(json!({ "plugins": d.generation().plugins() })),
            AdminCall::ListHooks => Reply::ok(json!({ "hooks": d.generation().describe() })),
            AdminCall::SetPluginEnabled { name, enabled } => {
                if !d.config().known_instance_names().contains(&name) {
                    return Ok(Reply::error(
                        &format!("{ADMIN}.NoSuchPlugin"),
                        json!({ "name": name }),
                    ));
                }
                let d2 = d.clone();
                match d
                    .executor
                    .run_plain(move || d2.set_plugin_enabled(&name, enabled))
                    .await
                {
                    Ok(Ok(())) => Reply::empty(),
                    Ok(Err(super::SetEnabledError::Reload(reason))) => Reply::error(
                        &format!("{ADMIN}.ReloadFailed"),
                        json!({ "reason": reason }),
                    ),
                    Ok(Err(super::SetEnabledError::Store(e))) => admin_store_error(e),
                    Err(e) => internal(ADMIN, e.to_string()),
                }
            }
            AdminCall::Reload => {
                let d2 = d.clone();
                match d.executor.run_plain(move || d2.reload()).await {
                    Ok(Ok(_)) => Reply::empty(),
                    Ok(Err(reason)) => {
                        tracing::error!(
                            "reload failed; the current generation keeps serving: {reason}"
                        );
                        Reply::error(
                            &format!("{ADMIN}.ReloadFailed"),
                            json!({ "reason": reason }),
                        )
                    }
                    Err(e) => internal(ADMIN, e.to_string()),
                }
            }
        })
    };
    run.await.unwrap_or_else(|e: Reply| e)
}
