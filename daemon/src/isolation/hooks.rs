//! An isolated instance as a chain calls it: [`IsolatedHooks`] implements the
//! instance's [`Hooks`] by sending each call to its plugin host over a lane (the
//! [`Supervisor`]'s), and turns the host's answer back into the hook's.

use std::{any::Any, sync::Arc};

use plugin_abi::{
    abi::{self, HookCall},
    sdk::{HookError, HookResult, Outcome},
};

use super::supervisor::Supervisor;
use crate::{
    hook::Hook,
    instance::{host_arg, host_returns, CallCx, Hooks},
    ipc::{Answer, Down},
    proto::convert,
};

/// An isolated instance as chains call it: every hook crosses to its host, which
/// knows it by its place among the host's instances (`of`).
pub(crate) struct IsolatedHooks {
    /// The instance's host.
    pub host: Arc<Supervisor>,
    /// Its place in the host's [`Init::instances`](ipc::Init::instances).
    pub of: u32,
}

impl dyn Hooks {
    /// The plugin host an isolated instance runs in (a chain runs consecutive
    /// impls of one host in one round trip); `None` for the others.
    pub(crate) fn isolated(&self) -> Option<&IsolatedHooks> {
        (self as &dyn Any).downcast_ref()
    }
}

/// A plugin host's answer as the chain takes it, by the hook table's `returns`.
macro_rules! from_answer {
    (Nothing, $hook:expr, $a:expr) => {
        match $a {
            Answer::Nothing => Ok(()),
            other => mismatched($hook, &other),
        }
    };
    (User, $hook:expr, $a:expr) => {
        match $a {
            Answer::User(u) => Ok(u.map(|u| u.to_abi())),
            other => mismatched($hook, &other),
        }
    };
    (True, $hook:expr, $a:expr) => {
        match $a {
            Answer::True(t) => Ok(t),
            other => mismatched($hook, &other),
        }
    };
    (Post, $hook:expr, $a:expr) => {
        match $a {
            Answer::Post(p) => Ok(convert::post_to_abi(&p)),
            other => mismatched($hook, &other),
        }
    };
    (Topic, $hook:expr, $a:expr) => {
        match $a {
            Answer::Topic(t) => Ok(convert::topic_to_abi(&t)),
            other => mismatched($hook, &other),
        }
    };
}

/// A plugin host answered a call with the wrong kind of value.
fn mismatched<T>(hook: Hook, answer: &Answer) -> HookResult<T> {
    Err(HookError::failed(format!(
        "the plugin host answered {hook} with {answer:?}, which is not its kind of answer"
    )))
}

macro_rules! declare_isolated_hooks {
    ($(
        $hook:ident {
            name: $name:literal,
            method: $method:ident,
            args: ($($arg:ident : $mode:ident $base:ident),*),
            returns: $returns:ident,
        }
    )*) => {
        impl Hooks for IsolatedHooks {
            $(
                fn $method(
                    &self,
                    cx: &CallCx<'_>,
                    $($arg: host_arg!($mode $base)),*
                ) -> HookResult<host_returns!($returns)> {
                    let down = Down::Call {
                        of: self.of,
                        hook: $name.into(),
                        args: vec![$(crate::ipc::base_kind!(to_wire, $base, &$arg)),*],
                        context: cx.req.context.clone(),
                    };
                    from_answer!($returns, cx.hook, self.host.call(cx, &down)?)
                }
            )*
            fn wrap_before(&self, cx: &CallCx<'_>, call: &HookCall) -> HookResult<()> {
                let down = Down::WrapBefore {
                    of: self.of,
                    hook: call.hook.to_string(),
                    args_json: call.args_json.to_string(),
                    context: cx.req.context.clone(),
                };
                from_answer!(Nothing, cx.hook, self.host.call(cx, &down)?)
            }
            fn wrap_after(&self, cx: &CallCx<'_>, call: &HookCall, outcome: Outcome) -> Outcome {
                let duration = outcome.duration;
                let down = Down::WrapAfter {
                    of: self.of,
                    hook: call.hook.to_string(),
                    args_json: call.args_json.to_string(),
                    context: cx.req.context.clone(),
                    outcome: outcome.into(),
                };
                let failed = |e: HookError| Outcome {
                    result: Err(e),
                    decided_by: Some(cx.instance.name.to_string()),
                    duration,
                };
                match self.host.call(cx, &down) {
                    Ok(Answer::Outcome(o)) => o.into(),
                    Ok(other) => failed(HookError::failed(format!(
                        "the plugin host answered a wrapper's after part with {other:?}"
                    ))),
                    Err(e) => failed(e),
                }
            }
        }
    };
}

flaskbbd_hooks::for_each_hook! {
    rows: all,
    fields: [name, method, args, returns],
    then: declare_isolated_hooks,
}
