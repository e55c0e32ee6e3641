//! Hook chains: each hook's impls in call order ([`order`]) and the one loop that
//! calls them (as pluggy's `_multicall`).
//!
//! A chain is built once per plugin generation and never changes. Calling it: the
//! wrappers' "before" parts in order, then the impls until one decides (a firstresult
//! answer, or an error that ends the chain), then the wrappers' "after" parts in
//! reverse, each of which sees the outcome and may replace it. A failure (error value,
//! panic, an error kind the hook does not accept) ends the chain and names the
//! instance; the caller fails the request closed.

pub mod order;

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
    time::Instant,
};

use plugin_abi::{
    abi::{self, HookCall, Tier},
    sdk::{HookError, HookResult, Outcome, Value},
};

use crate::{
    hook::{Accepts, Hook},
    instance::{CallCx, Instance},
    proto::{ChainEntry, HookChain},
    request::Request,
};

/// One impl in a chain.
#[derive(Clone)]
pub struct Entry {
    pub instance: Arc<Instance>,
    pub tier: Tier,
    pub priority: i32,
}

/// One hook's chain.
#[derive(Clone)]
pub struct Chain {
    pub hook: Hook,
    pub wrappers: Vec<Entry>,
    pub impls: Vec<Entry>,
}

/// A hook's arguments.
pub enum Input<'a> {
    Authenticate {
        identifier: &'a str,
        secret: &'a str,
    },
    PostAuthenticate {
        user: &'a abi::User,
    },
    AuthenticationFailed {
        identifier: &'a str,
    },
    ReauthAttempt {
        user: &'a abi::User,
        secret: &'a str,
    },
    PostReauth {
        user: &'a abi::User,
    },
    ReauthFailed {
        user: &'a abi::User,
    },
    PostSaveBefore {
        post: abi::Post,
    },
    PostSaveAfter {
        post: &'a abi::Post,
        is_new: bool,
    },
    TopicSaveBefore {
        topic: abi::Topic,
    },
    TopicSaveAfter {
        topic: &'a abi::Topic,
        is_new: bool,
    },
    UserRegistered {
        username: &'a str,
    },
}

impl Input<'_> {
    /// The hook these are the arguments of.
    pub fn hook(&self) -> Hook {
        match self {
            Input::Authenticate { .. } => Hook::Authenticate,
            Input::PostAuthenticate { .. } => Hook::PostAuthenticate,
            Input::AuthenticationFailed { .. } => Hook::AuthenticationFailed,
            Input::ReauthAttempt { .. } => Hook::ReauthAttempt,
            Input::PostReauth { .. } => Hook::PostReauth,
            Input::ReauthFailed { .. } => Hook::ReauthFailed,
            Input::PostSaveBefore { .. } => Hook::PostSaveBefore,
            Input::PostSaveAfter { .. } => Hook::PostSaveAfter,
            Input::TopicSaveBefore { .. } => Hook::TopicSaveBefore,
            Input::TopicSaveAfter { .. } => Hook::TopicSaveAfter,
            Input::UserRegistered { .. } => Hook::UserRegistered,
        }
    }

    /// The arguments as JSON for wrappers: never the secret.
    fn args_json(&self) -> String {
        use serde_json::json;
        let user = |u: &abi::User| json!({ "id": u.id, "username": u.username.as_str() });
        match self {
            Input::Authenticate { identifier, .. } | Input::AuthenticationFailed { identifier } => {
                json!({ "identifier": identifier })
            }
            Input::PostAuthenticate { user: u }
            | Input::ReauthAttempt { user: u, .. }
            | Input::PostReauth { user: u }
            | Input::ReauthFailed { user: u } => json!({ "user": user(u) }),
            Input::PostSaveBefore { post } => json!({ "post": { "id": post.id.into_option(), "topic_id": post.topic_id.into_option() } }),
            Input::PostSaveAfter { post, is_new } => {
                json!({ "post": { "id": post.id.into_option(), "topic_id": post.topic_id.into_option() }, "is_new": is_new })
            }
            Input::TopicSaveBefore { topic } => json!({ "topic": { "id": topic.id.into_option(), "title": topic.title.as_str() } }),
            Input::TopicSaveAfter { topic, is_new } => {
                json!({ "topic": { "id": topic.id.into_option(), "title": topic.title.as_str() }, "is_new": is_new })
            }
            Input::UserRegistered { username } => json!({ "username": username }),
        }
        .to_string()
    }

    /// The value a chain starts from: save_before hooks thread their object through.
    fn initial_value(&self) -> Value {
        match self {
            Input::PostSaveBefore { post } => Value::Post(post.clone()),
            Input::TopicSaveBefore { topic } => Value::Topic(topic.clone()),
            _ => Value::Nothing,
        }
    }
}

/// What a chain call produced and who decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainOutcome {
    pub result: Result<Value, HookError>,
    pub decided_by: Option<Arc<str>>,
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".into()
    }
}

impl Chain {
    /// Calls the chain for one request; `input` must be this chain's hook's (use
    /// `Generation::call`, which picks the chain from the input).
    pub fn call(&self, req: &Request, input: Input<'_>) -> ChainOutcome {
        debug_assert_eq!(input.hook(), self.hook, "arguments of another hook");
        if self.wrappers.is_empty() {
            return self.call_impls(req, input);
        }
        let started = Instant::now();
        let call = HookCall {
            hook: self.hook.name().into(),
            args_json: input.args_json().into(),
        };
        let mut entered = 0;
        let mut outcome = None;
        for w in &self.wrappers {
            let r = self.run_one(req, &w.instance, |cx| {
                w.instance.hooks.wrap_before(cx, &call)
            });
            match r {
                Ok(()) | Err(HookError::NotImplemented) => entered += 1,
                Err(e) => {
                    outcome = Some(ChainOutcome {
                        result: Err(as_failure(self.hook, e)),
                        decided_by: Some(w.instance.name.clone()),
                    });
                    break;
                }
            }
        }
        let mut outcome = match outcome {
            Some(o) => o,
            None => self.call_impls(req, input),
        };
        for w in self.wrappers[..entered].iter().rev() {
            if req.is_abandoned() {
                break;
            }
            let seen = Outcome {
                result: outcome.result.clone(),
                decided_by: outcome.decided_by.as_deref().map(str::to_owned),
                duration: started.elapsed(),
            };
            let instance = &w.instance;
            req.enter(&instance.name, self.hook);
            let cx = CallCx {
                req,
                instance,
                hook: self.hook,
            };
            let after = catch_unwind(AssertUnwindSafe(|| {
                instance.hooks.wrap_after(&cx, &call, seen)
            }));
            req.leave();
            outcome = match after {
                Ok(o) => ChainOutcome {
                    decided_by: o.decided_by.map(Arc::from),
                    result: o.result.map_err(|e| as_failure(self.hook, e)),
                },
                Err(p) => ChainOutcome {
                    result: Err(HookError::failed(panic_text(p))),
                    decided_by: Some(instance.name.clone()),
                },
            };
        }
        outcome
    }

    /// Runs one impl with the request's current-call slot set, containing a panic on
    /// the daemon's side (a plugin's own panics are caught inside the plugin).
    fn run_one<T>(
        &self,
        req: &Request,
        instance: &Arc<Instance>,
        f: impl FnOnce(&CallCx<'_>) -> HookResult<T>,
    ) -> HookResult<T> {
        if req.is_abandoned() {
            return Err(HookError::failed("the request had already timed out"));
        }
        req.enter(&instance.name, self.hook);
        let cx = CallCx {
            req,
            instance,
            hook: self.hook,
        };
        let started = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
        let r = catch_unwind(AssertUnwindSafe(|| f(&cx)))
            .unwrap_or_else(|p| Err(HookError::failed(panic_text(p))));
        req.leave();
        if let Some(t) = started {
            let outcome = match &r {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.to_string(),
            };
            tracing::debug!(
                instance = &*instance.name,
                hook = self.hook.name(),
                outcome,
                duration_us = t.elapsed().as_micros() as u64,
                "hook call"
            );
        }
        r
    }

    fn call_impls(&self, req: &Request, input: Input<'_>) -> ChainOutcome {
        let mut value = input.initial_value();
        for e in &self.impls {
            let r = self.run_one(req, &e.instance, |cx| {
                dispatch(&*e.instance.hooks, cx, &input, &value)
            });
            match r {
                Ok(Some(v)) if self.hook.firstresult() => {
                    return ChainOutcome {
                        result: Ok(v),
                        decided_by: Some(e.instance.name.clone()),
                    };
                }
                Ok(Some(v)) => value = v,
                Ok(None) | Err(HookError::NotImplemented) => {}
                Err(err) => {
                    return ChainOutcome {
                        result: Err(as_failure(self.hook, err)),
                        decided_by: Some(e.instance.name.clone()),
                    };
                }
            }
        }
        ChainOutcome {
            result: Ok(value),
            decided_by: None,
        }
    }

    /// The chain as `flaskbbd hooks` shows it.
    pub fn describe(&self) -> HookChain {
        let entry = |e: &Entry, wrapper| ChainEntry {
            instance: e.instance.name.to_string(),
            tier: e.tier.name().into(),
            priority: e.priority,
            wrapper,
            origin: e.instance.origin.describe(),
        };
        HookChain {
            hook: self.hook.name().into(),
            impls: self
                .wrappers
                .iter()
                .map(|e| entry(e, true))
                .chain(self.impls.iter().map(|e| entry(e, false)))
                .collect(),
        }
    }
}

/// Keeps the control-flow errors this hook accepts; any other one fails closed.
fn as_failure(hook: Hook, e: HookError) -> HookError {
    let accepted = matches!(
        (&e, hook.accepts()),
        (HookError::StopAuthentication { .. }, Accepts::Stop)
            | (HookError::ForceLogout { .. }, Accepts::ForceLogout)
            | (HookError::Rejected { .. }, Accepts::Rejected)
            | (HookError::Failed { .. }, _)
    );
    if accepted {
        e
    } else {
        HookError::failed(format!("returned {e}, which {hook} does not accept"))
    }
}

/// Calls the impl's method for this hook; `Some` is a value for the chain.
fn dispatch(
    h: &dyn crate::instance::Hooks,
    cx: &CallCx<'_>,
    input: &Input<'_>,
    value: &Value,
) -> HookResult<Option<Value>> {
    Ok(match input {
        Input::Authenticate { identifier, secret } => {
            h.authenticate(cx, identifier, secret)?.map(Value::User)
        }
        Input::PostAuthenticate { user } => h.post_authenticate(cx, user).map(|()| None)?,
        Input::AuthenticationFailed { identifier } => {
            h.authentication_failed(cx, identifier).map(|()| None)?
        }
        Input::ReauthAttempt { user, secret } => {
            h.reauth_attempt(cx, user, secret)?.then_some(Value::True)
        }
        Input::PostReauth { user } => h.post_reauth(cx, user).map(|()| None)?,
        Input::ReauthFailed { user } => h.reauth_failed(cx, user).map(|()| None)?,
        Input::PostSaveBefore { .. } => match value {
            Value::Post(p) => Some(Value::Post(h.post_save_before(cx, p)?)),
            _ => None,
        },
        Input::PostSaveAfter { post, is_new } => {
            h.post_save_after(cx, post, *is_new).map(|()| None)?
        }
        Input::TopicSaveBefore { .. } => match value {
            Value::Topic(t) => Some(Value::Topic(h.topic_save_before(cx, t)?)),
            _ => None,
        },
        Input::TopicSaveAfter { topic, is_new } => {
            h.topic_save_after(cx, topic, *is_new).map(|()| None)?
        }
        Input::UserRegistered { username } => h.user_registered(cx, username).map(|()| None)?,
    })
}
