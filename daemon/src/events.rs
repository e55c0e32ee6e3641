//! FlaskBB's event hooks: a save_before chain hands the post or topic from impl to impl
//! and answers the final one, or `Rejected` naming the instance; the other events run
//! every impl. Like authentication, a request commits its changes once at the end.

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
    #[error("instance {plugin:?} rejected the save: {reason}")]
    Rejected { plugin: String, reason: String },
    #[error("internal error: {message}")]
    Internal { message: String },
}

fn finish<T>(
    req: &Request,
    hook: Hook,
    o: ChainOutcome,
    value: impl FnOnce(Value) -> T,
) -> Result<T, EventError> {
    let answer = match o.result {
        Ok(v) => Ok(value(v)),
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
            tracing::error!(hook = hook.name(), instance, "{message}");
            Err(EventError::Internal {
                message: format!("instance {instance:?} failed in {hook}: {message}"),
            })
        }
    };
    let ops = req.take_ops();
    req.store.commit(&ops).map_err(|e| EventError::Internal {
        message: format!("the request's changes could not be saved: {e}"),
    })?;
    answer
}

/// `flaskbb_event_post_save_before`: the post as the chain left it.
pub fn post_save_before(g: &Generation, req: &Request, post: &Post) -> Result<Post, EventError> {
    let o = g.call(
        req,
        Input::PostSaveBefore {
            post: convert::post_to_abi(post),
        },
    );
    finish(req, Hook::PostSaveBefore, o, |v| match v {
        Value::Post(p) => convert::post_from_abi(&p),
        _ => post.clone(),
    })
}

/// `flaskbb_event_post_save_after`.
pub fn post_save_after(
    g: &Generation,
    req: &Request,
    post: &Post,
    is_new: bool,
) -> Result<(), EventError> {
    let abi = convert::post_to_abi(post);
    let o = g.call(req, Input::PostSaveAfter { post: &abi, is_new });
    finish(req, Hook::PostSaveAfter, o, drop)
}

/// `flaskbb_event_topic_save_before`: the topic as the chain left it.
pub fn topic_save_before(
    g: &Generation,
    req: &Request,
    topic: &Topic,
) -> Result<Topic, EventError> {
    let o = g.call(
        req,
        Input::TopicSaveBefore {
            topic: convert::topic_to_abi(topic),
        },
    );
    finish(req, Hook::TopicSaveBefore, o, |v| match v {
        Value::Topic(t) => convert::topic_from_abi(&t),
        _ => topic.clone(),
    })
}

/// `flaskbb_event_topic_save_after`.
pub fn topic_save_after(
    g: &Generation,
    req: &Request,
    topic: &Topic,
    is_new: bool,
) -> Result<(), EventError> {
    let abi = convert::topic_to_abi(topic);
    let o = g.call(
        req,
        Input::TopicSaveAfter {
            topic: &abi,
            is_new,
        },
    );
    finish(req, Hook::TopicSaveAfter, o, drop)
}

/// `flaskbb_event_user_registered`.
pub fn user_registered(g: &Generation, req: &Request, username: &str) -> Result<(), EventError> {
    let o = g.call(req, Input::UserRegistered { username });
    finish(req, Hook::UserRegistered, o, drop)
}
