//! The methods of `org.flaskbb.Auth`, `org.flaskbb.Events`, `org.flaskbb.Admin` and
//! `org.varlink.service`: parameters in, work on the executor, reply out.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;

use super::{
    wire::{errors, Call, Params, Reply},
    Daemon,
};
use crate::{
    auth::{AuthError, AuthenticationManager, ReauthenticateManager},
    events::{self, EventError},
    executor::ExecError,
    proto::{Context, Post, Topic},
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

const AUTH: &str = "org.flaskbb.Auth";
const EVENTS: &str = "org.flaskbb.Events";
const ADMIN: &str = "org.flaskbb.Admin";

fn internal(iface: &str, message: impl Into<String>) -> Reply {
    Reply::error(
        &format!("{iface}.InternalError"),
        json!({ "message": message.into() }),
    )
}

/// Handles one call; logs its method, outcome and duration (never its parameters).
pub async fn dispatch(d: &Arc<Daemon>, call: Call, admin: bool) -> Reply {
    let started = Instant::now();
    let method = format!("{}.{}", call.interface, call.method);
    let reply = match call.interface.as_str() {
        "org.varlink.service" => service(&call),
        AUTH => auth(d, call).await,
        EVENTS => event(d, call).await,
        ADMIN if !admin => Reply::error(&format!("{ADMIN}.PermissionDenied"), json!({})),
        ADMIN => admin_method(d, call).await,
        other => Reply::error(errors::INTERFACE_NOT_FOUND, json!({ "interface": other })),
    };
    let outcome = reply.error_name().unwrap_or("ok");
    tracing::info!(
        method,
        outcome,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    reply
}

fn not_found(call: &Call) -> Reply {
    Reply::error(
        errors::METHOD_NOT_FOUND,
        json!({ "method": format!("{}.{}", call.interface, call.method) }),
    )
}

fn service(call: &Call) -> Reply {
    let run = || -> Result<Reply, Reply> {
        match call.method.as_str() {
            "GetInfo" => {
                Params::new(call.parameters.clone(), &[])?;
                Ok(Reply::ok(json!({
                    "vendor": "flaskbbd",
                    "product": "flaskbbd",
                    "version": env!("CARGO_PKG_VERSION"),
                    "url": "https://flaskbb.org",
                    "interfaces": INTERFACES.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
                })))
            }
            "GetInterfaceDescription" => {
                let mut p = Params::new(call.parameters.clone(), &["interface"])?;
                let name: String = p.req("interface")?;
                match INTERFACES.iter().find(|(n, _)| *n == name) {
                    Some((_, text)) => Ok(Reply::ok(json!({ "description": text }))),
                    None => Ok(Reply::error(
                        errors::INTERFACE_NOT_FOUND,
                        json!({ "interface": name }),
                    )),
                }
            }
            _ => Ok(not_found(call)),
        }
    };
    run().unwrap_or_else(|e| e)
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

async fn auth(d: &Arc<Daemon>, call: Call) -> Reply {
    let reply = match call.method.as_str() {
        "Authenticate" => authenticate(d, call).await,
        "Reauthenticate" => reauthenticate(d, call).await,
        _ => return not_found(&call),
    }
    .unwrap_or_else(|e| e);
    // The same delay for every kind of failure, never on success, without a thread.
    let delay = d.config().auth.failure_delay_ms;
    if delay > 0 && matches!(&reply, Reply::Err { error, .. } if error.starts_with(AUTH)) {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    reply
}

fn auth_reply<T>(r: Result<T, AuthError>, ok: impl FnOnce(T) -> Reply) -> Reply {
    match r {
        Ok(v) => ok(v),
        Err(AuthError::Failed { reason }) => Reply::error(
            &format!("{AUTH}.AuthenticationFailed"),
            json!({ "reason": reason }),
        ),
        Err(AuthError::ForceLogout { reason }) => {
            Reply::error(&format!("{AUTH}.ForceLogout"), json!({ "reason": reason }))
        }
        Err(AuthError::Internal { message }) => internal(AUTH, message),
    }
}

async fn authenticate(d: &Arc<Daemon>, call: Call) -> Result<Reply, Reply> {
    let mut p = Params::new(call.parameters, &["identifier", "secret", "context"])?;
    let identifier: String = p.req("identifier")?;
    let secret: String = p.req("secret")?;
    let context: Context = p.opt("context")?.unwrap_or_default();
    let g = d.generation();
    let req = Request::new(d.store.clone(), context);
    let (manager, r2) = (d.auth.clone(), req.clone());
    let r = run_request(d, AUTH, req, move || {
        manager.authenticate(&g, &r2, &identifier, &secret)
    })
    .await?;
    Ok(auth_reply(r, |user| Reply::ok(json!({ "user": user }))))
}

async fn reauthenticate(d: &Arc<Daemon>, call: Call) -> Result<Reply, Reply> {
    let mut p = Params::new(call.parameters, &["user_id", "secret", "context"])?;
    let user_id: i64 = p.req("user_id")?;
    let secret: String = p.req("secret")?;
    let context: Context = p.opt("context")?.unwrap_or_default();
    let g = d.generation();
    let req = Request::new(d.store.clone(), context);
    let (manager, r2) = (d.auth.clone(), req.clone());
    let r = run_request(d, AUTH, req, move || {
        manager.reauthenticate(&g, &r2, user_id, &secret)
    })
    .await?;
    Ok(auth_reply(r, |()| Reply::empty()))
}

fn event_reply<T>(r: Result<T, EventError>, ok: impl FnOnce(T) -> Reply) -> Reply {
    match r {
        Ok(v) => ok(v),
        Err(EventError::Rejected { plugin, reason }) => Reply::error(
            &format!("{EVENTS}.Rejected"),
            json!({ "plugin": plugin, "reason": reason }),
        ),
        Err(EventError::Internal { message }) => internal(EVENTS, message),
    }
}

async fn event(d: &Arc<Daemon>, call: Call) -> Reply {
    let run = async {
        let g = d.generation();
        let req = Request::new(d.store.clone(), Context::new());
        let r2 = req.clone();
        Ok(match call.method.as_str() {
            "PostSaveBefore" => {
                let post: Post = Params::new(call.parameters, &["post"])?.req("post")?;
                let r = run_request(d, EVENTS, req, move || {
                    events::post_save_before(&g, &r2, &post)
                })
                .await?;
                event_reply(r, |post| Reply::ok(json!({ "post": post })))
            }
            "PostSaveAfter" => {
                let mut p = Params::new(call.parameters, &["post", "is_new"])?;
                let (post, is_new): (Post, bool) = (p.req("post")?, p.req("is_new")?);
                let r = run_request(d, EVENTS, req, move || {
                    events::post_save_after(&g, &r2, &post, is_new)
                })
                .await?;
                event_reply(r, |()| Reply::empty())
            }
            "TopicSaveBefore" => {
                let topic: Topic = Params::new(call.parameters, &["topic"])?.req("topic")?;
                let r = run_request(d, EVENTS, req, move || {
                    events::topic_save_before(&g, &r2, &topic)
                })
                .await?;
                event_reply(r, |topic| Reply::ok(json!({ "topic": topic })))
            }
            "TopicSaveAfter" => {
                let mut p = Params::new(call.parameters, &["topic", "is_new"])?;
                let (topic, is_new): (Topic, bool) = (p.req("topic")?, p.req("is_new")?);
                let r = run_request(d, EVENTS, req, move || {
                    events::topic_save_after(&g, &r2, &topic, is_new)
                })
                .await?;
                event_reply(r, |()| Reply::empty())
            }
            "UserRegistered" => {
                let username: String =
                    Params::new(call.parameters, &["username"])?.req("username")?;
                let r = run_request(d, EVENTS, req, move || {
                    events::user_registered(&g, &r2, &username)
                })
                .await?;
                event_reply(r, |()| Reply::empty())
            }
            _ => not_found(&call),
        })
    };
    run.await.unwrap_or_else(|e: Reply| e)
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

async fn admin_method(d: &Arc<Daemon>, call: Call) -> Reply {
    let run = async {
        Ok(match call.method.as_str() {
            "CreateUser" => {
                let mut p = Params::new(
                    call.parameters,
                    &["username", "email", "password", "activated"],
                )?;
                let username: String = p.req("username")?;
                let email: String = p.req("email")?;
                let password: String = p.req("password")?;
                let activated: bool = p.opt("activated")?.unwrap_or(false);
                if username.trim().is_empty() || username.len() > 200 || username.contains('\0') {
                    return Err(Reply::invalid("username"));
                }
                if !email.contains('@') || email.len() > 200 || email.contains('\0') {
                    return Err(Reply::invalid("email"));
                }
                let (store, verifier, schema) = (
                    d.store.clone(),
                    d.generation().verifier.clone(),
                    d.config().database.schema,
                );
                let hash = d
                    .executor
                    .run_plain(move || verifier.hash_for(schema, &password))
                    .await
                    .map_err(|e| internal(ADMIN, e.to_string()))?;
                let hash = hash.map_err(|_| Reply::invalid("password"))?;
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
            "GetUser" => {
                let identifier: String =
                    Params::new(call.parameters, &["identifier"])?.req("identifier")?;
                let store = d.store.clone();
                match on_pool(d, move || store.find_user(&identifier)).await? {
                    Some(r) => Reply::ok(json!({ "user": r.user })),
                    None => Reply::error(&format!("{ADMIN}.NoSuchUser"), json!({})),
                }
            }
            "SetPassword" => {
                let mut p = Params::new(call.parameters, &["user_id", "password"])?;
                let (user_id, password): (i64, String) = (p.req("user_id")?, p.req("password")?);
                let (store, verifier, schema) = (
                    d.store.clone(),
                    d.generation().verifier.clone(),
                    d.config().database.schema,
                );
                let hash = d
                    .executor
                    .run_plain(move || verifier.hash_for(schema, &password))
                    .await
                    .map_err(|e| internal(ADMIN, e.to_string()))?;
                let hash = hash.map_err(|_| Reply::invalid("password"))?;
                on_pool(d, move || store.set_password(user_id, &hash)).await?;
                Reply::empty()
            }
            "SetActivated" => {
                let mut p = Params::new(call.parameters, &["user_id", "activated"])?;
                let (user_id, on): (i64, bool) = (p.req("user_id")?, p.req("activated")?);
                let store = d.store.clone();
                on_pool(d, move || store.set_activated(user_id, on)).await?;
                Reply::empty()
            }
            "SetBanned" => {
                let mut p = Params::new(call.parameters, &["user_id", "banned"])?;
                let (user_id, on): (i64, bool) = (p.req("user_id")?, p.req("banned")?);
                let store = d.store.clone();
                on_pool(d, move || store.set_banned(user_id, on)).await?;
                Reply::empty()
            }
            "ListPlugins" => {
                Params::new(call.parameters, &[])?;
                Reply::ok(json!({ "plugins": d.generation().plugins() }))
            }
            "ListHooks" => {
                Params::new(call.parameters, &[])?;
                Reply::ok(json!({ "hooks": d.generation().describe() }))
            }
            "SetPluginEnabled" => {
                let mut p = Params::new(call.parameters, &["name", "enabled"])?;
                let (name, enabled): (String, bool) = (p.req("name")?, p.req("enabled")?);
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
            "Reload" => {
                Params::new(call.parameters, &[])?;
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
            _ => not_found(&call),
        })
    };
    run.await.unwrap_or_else(|e: Reply| e)
}
