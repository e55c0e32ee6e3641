//! FlaskBB's event hooks as clients fire them: an `org.flaskbb.Events` call runs its
//! hook's chain (generated from the hook table: each event method is a hook), and
//! commits the request's changes once at the end. A save_before chain hands the post
//! or topic from impl to impl and answers the final one, or `Rejected` naming the
//! instance; the other events run every impl.

use flaskbbd_protocol::methods::EventCall;
use plugin_abi::sdk::{HookError, Value};

use crate::{
    chain::{ChainOutcome, Input},
    generation::Generation,
    hook::Hook,
    proto::{convert, Post, Topic},
    request::Request,
};

/// How an event request ended, when not normally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A `save_before` chain refused the save.
    #[error("instance {plugin:?} rejected the save: {reason}")]
    Rejected {
        /// The instance that refused.
        plugin: String,
        /// Why, for the person who wrote the post.
        reason: String,
    },
    /// A plugin or the store failed: the request failed closed.
    #[error("internal error: {message}")]
    Internal {
        /// What failed, naming the instance and hook.
        message: String,
    },
}

/// What an event answers: nothing, or the draft as its chain left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventAnswer {
    /// An event whose result is ignored.
    Nothing,
    /// `PostSaveBefore`'s post, to be saved.
    Post(Post),
    /// `TopicSaveBefore`'s topic, to be saved.
    Topic(Topic),
}

impl EventAnswer {
    /// The chain's value in place of this draft, when it is one of the same kind (a
    /// wrapper may have replaced the outcome with something else: then the draft as
    /// sent stands).
    fn replaced_by(self, value: Value) -> EventAnswer {
        match (self, value) {
            (EventAnswer::Post(_), Value::Post(p)) => EventAnswer::Post(convert::post_from_abi(&p)),
            (EventAnswer::Topic(_), Value::Topic(t)) => {
                EventAnswer::Topic(convert::topic_from_abi(&t))
            }
            (answer, _) => answer,
        }
    }
}

impl From<Post> for EventAnswer {
    fn from(post: Post) -> EventAnswer {
        EventAnswer::Post(post)
    }
}

impl From<Topic> for EventAnswer {
    fn from(topic: Topic) -> EventAnswer {
        EventAnswer::Topic(topic)
    }
}

/// An `Input` field from the converted argument (a view's `args`, `flaskbbd-hooks`):
/// the draft is moved in, a flag copied, the rest lent.
macro_rules! input_field {
    (draft, $arg:ident) => {
        $arg
    };
    (copied, $arg:ident) => {
        $arg
    };
    ($mode:ident, $arg:ident) => {
        &$arg
    };
}

/// The answer before the chain runs: the draft as sent, or nothing.
macro_rules! draft_answer {
    (draft $base:ident, $arg:ident) => {
        Some(EventAnswer::from($arg.clone()))
    };
    ($mode:ident $base:ident, $arg:ident) => {
        None::<EventAnswer>
    };
}

// One arm per hook clients fire (the table's `wired` rows); each argument converted
// from what the client sent by the daemon's kind table (`ipc::base_kind!`).
macro_rules! declare_fire {
    ($(
        $hook:ident {
            wire: $wire:ident,
            args: ($($arg:ident : $mode:ident $base:ident),*),
        }
    )*) => {
        /// Runs the chain of the hook `call` fires; the request's changes wait in it
        /// for [`commit`].
        pub(crate) fn run(g: &Generation, req: &Request, call: EventCall) -> Result<EventAnswer, EventError> {
            match call {
                $(
                    EventCall::$wire { $($arg),* } => {
                        let answer = None$(.or(draft_answer!($mode $base, $arg)))*.unwrap_or(EventAnswer::Nothing);
                        $(let $arg = crate::ipc::base_kind!(from_proto, $base, $arg);)*
                        let o = g.call(req, Input::$hook { $($arg: input_field!($mode, $arg)),* });
                        outcome(o).map(|v| answer.replaced_by(v))
                    }
                )*
            }
        }

        /// [`run`] for a chain that only crosses to plugin hosts
        /// ([`Chain::crosses_only`](crate::chain::Chain::crosses_only)): the task awaits
        /// each host's answer without holding its thread.
        pub(crate) async fn run_crossing(g: &Generation, req: &Request, call: EventCall) -> Result<EventAnswer, EventError> {
            match call {
                $(
                    EventCall::$wire { $($arg),* } => {
                        let answer = None$(.or(draft_answer!($mode $base, $arg)))*.unwrap_or(EventAnswer::Nothing);
                        $(let $arg = crate::ipc::base_kind!(from_proto, $base, $arg);)*
                        let o = g.call_crossing(req, Input::$hook { $($arg: input_field!($mode, $arg)),* }).await;
                        outcome(o).map(|v| answer.replaced_by(v))
                    }
                )*
            }
        }

        /// The hook an event call fires.
        pub(crate) fn hook_of(call: &EventCall) -> Hook {
            match call {
                $(EventCall::$wire { .. } => Hook::$hook,)*
            }
        }
    };
}

flaskbbd_hooks::for_each_hook! {
    rows: wired,
    fields: [wire, args],
    then: declare_fire,
}

/// Runs the chain of the hook `call` fires, then commits the request's changes.
pub(crate) fn fire(
    g: &Generation,
    req: &Request,
    call: EventCall,
) -> Result<EventAnswer, EventError> {
    let answer = run(g, req, call);
    commit(req, answer)
}

/// Commits the request's changes (whatever the chain answered: a failed chain's
/// earlier impls' changes stand, as for authentication); a failed commit fails the
/// request.
pub(crate) fn commit(
    req: &Request,
    answer: Result<EventAnswer, EventError>,
) -> Result<EventAnswer, EventError> {
    req.commit().map_err(|e| EventError::Internal {
        message: e.to_string(),
    })?;
    answer
}

/// Maps a chain's outcome to the event's.
fn outcome(o: ChainOutcome) -> Result<Value, EventError> {
    match o.result {
        Ok(v) => Ok(v),
        Err(HookError::Rejected { reason }) => Err(EventError::Rejected {
            plugin: o.decided_by.as_deref().unwrap_or("").to_owned(),
            reason,
        }),
        Err(e) => {
            let message = match e {
                HookError::Failed { message } => message,
                other => other.to_string(),
            };
            let instance = o.decided_by.as_deref().unwrap_or("-");
            let hook = o.hook;
            tracing::error!(hook = hook.name(), instance, "{message}");
            Err(EventError::Internal {
                message: format!("instance {instance:?} failed in {hook}: {message}"),
            })
        }
    }
}
