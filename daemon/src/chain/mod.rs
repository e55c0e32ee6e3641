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

use serde_json::json;

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

/// An `Input` field's type, by the hook table's argument kinds: references to what
/// the caller holds, except the draft a save_before chain starts from, which it owns.
macro_rules! input_arg {
    ($l:lifetime, Str) => { &$l str };
    ($l:lifetime, Secret) => { &$l str };
    ($l:lifetime, User) => { &$l abi::User };
    ($l:lifetime, Post) => { &$l abi::Post };
    ($l:lifetime, Topic) => { &$l abi::Topic };
    ($l:lifetime, DraftPost) => { abi::Post };
    ($l:lifetime, DraftTopic) => { abi::Topic };
    ($l:lifetime, Bool) => { bool };
}

/// One argument handed to an impl: the caller's, or for a draft the chain's current
/// value (what the impl before returned).
macro_rules! impl_arg {
    (DraftPost, $arg:ident, $value:ident) => {{
        let _ = $arg;
        match $value {
            Value::Post(p) => p,
            _ => return Ok(None),
        }
    }};
    (DraftTopic, $arg:ident, $value:ident) => {{
        let _ = $arg;
        match $value {
            Value::Topic(t) => t,
            _ => return Ok(None),
        }
    }};
    ($kind:ident, $arg:ident, $value:ident) => {
        *$arg
    };
}

/// The value a chain starts from, when the argument is its draft.
macro_rules! draft_value {
    (DraftPost, $arg:ident) => {
        Some(Value::Post($arg.clone()))
    };
    (DraftTopic, $arg:ident) => {
        Some(Value::Topic($arg.clone()))
    };
    ($kind:ident, $arg:ident) => {{
        let _ = $arg;
        None
    }};
}

/// One argument as a wrapper sees it in the call's JSON; never the secret.
macro_rules! arg_json {
    ($map:ident, Secret, $arg:ident) => {
        let _ = $arg;
    };
    ($map:ident, User, $arg:ident) => {
        $map.insert(
            stringify!($arg).into(),
            json!({ "id": $arg.id, "username": $arg.username.as_str() }),
        );
    };
    ($map:ident, Post, $arg:ident) => {
        $map.insert(
            stringify!($arg).into(),
            json!({ "id": $arg.id.into_option(), "topic_id": $arg.topic_id.into_option() }),
        );
    };
    ($map:ident, DraftPost, $arg:ident) => {
        arg_json!($map, Post, $arg);
    };
    ($map:ident, Topic, $arg:ident) => {
        $map.insert(
            stringify!($arg).into(),
            json!({ "id": $arg.id.into_option(), "title": $arg.title.as_str() }),
        );
    };
    ($map:ident, DraftTopic, $arg:ident) => {
        arg_json!($map, Topic, $arg);
    };
    ($map:ident, $kind:ident, $arg:ident) => {
        $map.insert(stringify!($arg).into(), json!($arg));
    };
}

macro_rules! declare_inputs {
    (pass: [], prefix: [$($prefix:tt)*], appended: [$($appended:tt)*] $(,)?) => {
        declare_inputs!(@rows $($prefix)* $($appended)*);
    };
    (@rows $(
        $hook:ident {
            name: $name:literal, constant: $constant:ident, method: $method:ident,
            args: ($($arg:ident : $kind:ident),*), returns: $returns:ident,
            firstresult: $first:literal, accepts: $accepts:ident,
            sdk: $sdk_trait:ident :: $sdk_method:ident, wire: $wire:ident,
            since: $since:literal, doc: $doc:literal $(,)?
        },
    )*) => {
        /// A hook's arguments (one variant per hook of the hook table).
        pub enum Input<'a> {
            $(
                #[doc = $doc]
                $hook { $($arg: input_arg!('a, $kind)),* },
            )*
        }

        impl Input<'_> {
            /// The hook these are the arguments of.
            pub fn hook(&self) -> Hook {
                match self {
                    $(Input::$hook { .. } => Hook::$hook,)*
                }
            }

            /// The arguments as JSON for wrappers: never the secret.
            fn args_json(&self) -> String {
                let mut map = serde_json::Map::new();
                match self {
                    $(Input::$hook { $($arg),* } => { $(arg_json!(map, $kind, $arg);)* })*
                }
                serde_json::Value::Object(map).to_string()
            }

            /// The value a chain starts from: save_before hooks thread their draft
            /// through.
            fn initial_value(&self) -> Value {
                match self {
                    $(Input::$hook { $($arg),* } => {
                        None$(.or(draft_value!($kind, $arg)))*.unwrap_or(Value::Nothing)
                    })*
                }
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
                $(Input::$hook { $($arg),* } => {
                    ChainValue::into_value(h.$method(cx, $(impl_arg!($kind, $arg, value)),*)?)
                })*
            })
        }
    };
}

flaskbbd_hooks::for_each_hook!(declare_inputs);

/// What an impl's answer contributes to its chain.
trait ChainValue {
    fn into_value(self) -> Option<Value>;
}

impl ChainValue for () {
    fn into_value(self) -> Option<Value> {
        None
    }
}

impl ChainValue for Option<abi::User> {
    fn into_value(self) -> Option<Value> {
        self.map(Value::User)
    }
}

impl ChainValue for bool {
    fn into_value(self) -> Option<Value> {
        self.then_some(Value::True)
    }
}

impl ChainValue for abi::Post {
    fn into_value(self) -> Option<Value> {
        Some(Value::Post(self))
    }
}

impl ChainValue for abi::Topic {
    fn into_value(self) -> Option<Value> {
        Some(Value::Topic(self))
    }
}

/// What a chain call produced and who decided it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainOutcome {
    /// The hook whose chain this is the outcome of.
    pub hook: Hook,
    /// The chain's value, or the error that ended it.
    pub result: Result<Value, HookError>,
    /// The instance whose answer or error decided the outcome, if one did.
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
                        hook: self.hook,
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
                    hook: self.hook,
                    decided_by: o.decided_by.map(Arc::from),
                    result: o.result.map_err(|e| as_failure(self.hook, e)),
                },
                Err(p) => ChainOutcome {
                    hook: self.hook,
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
                        hook: self.hook,
                        result: Ok(v),
                        decided_by: Some(e.instance.name.clone()),
                    };
                }
                Ok(Some(v)) => value = v,
                Ok(None) | Err(HookError::NotImplemented) => {}
                Err(err) => {
                    return ChainOutcome {
                        hook: self.hook,
                        result: Err(as_failure(self.hook, err)),
                        decided_by: Some(e.instance.name.clone()),
                    };
                }
            }
        }
        ChainOutcome {
            hook: self.hook,
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
