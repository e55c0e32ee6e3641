//! `scripted`: a flaskbbd plugin whose behaviour per hook comes from its configuration,
//! for tests and for operators trying out a chain (as PAM ships pam_permit, pam_deny
//! and pam_exec).
//!
//! ```toml
//! [[plugin]]
//! name = "deny"
//! library = "scripted"
//! config = { trace = "var/trace.jsonl", on = { flaskbb_authenticate = { action = "stop", reason = "no" } } }
//! ```
//!
//! It implements every hook; a hook without an entry in `on` behaves as `none`. When
//! the operator makes it a wrapper of a hook (`wrapper = true` in `flaskbb.toml`), its
//! action applies to the outcome after the chain. Every call appends one JSON line to
//! `trace` (never the secret).

use std::{collections::HashMap, fs::OpenOptions, io::Write, path::PathBuf, time::Duration};

use plugin_abi::prelude::*;
use serde::Deserialize;
use serde_json::{json, Value as Json};

/// What one hook does, from `on.<hook>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum Action {
    None,
    ReturnUser { user: String },
    ReturnTrue,
    Stop { reason: String },
    ForceLogout { reason: String },
    Reject { reason: String },
    Error { message: String },
    Panic { message: String },
    Sleep { ms: u64 },
    Append { text: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    trace: Option<PathBuf>,
    #[serde(default)]
    on: HashMap<String, Action>,
}

/// One configured instance.
pub struct Scripted {
    instance: String,
    trace: Option<PathBuf>,
    on: HashMap<String, Action>,
}

impl PluginInstance for Scripted {
    fn new(init: &Init) -> Result<Self, String> {
        let config: Config = init.config()?;
        for (hook, action) in &config.on {
            if !plugin_abi::hooks::ALL.contains(&hook.as_str()) {
                return Err(format!(
                    "config key on.{hook}: no such hook; hooks are {}",
                    plugin_abi::hooks::ALL.join(", ")
                ));
            }
            let fits = match action {
                Action::ReturnUser { .. } => hook == plugin_abi::hooks::AUTHENTICATE,
                Action::ReturnTrue => hook == plugin_abi::hooks::REAUTH_ATTEMPT,
                Action::Append { .. } => {
                    hook == plugin_abi::hooks::POST_SAVE_BEFORE
                        || hook == plugin_abi::hooks::TOPIC_SAVE_BEFORE
                }
                _ => true,
            };
            if !fits {
                return Err(format!(
                    "config key on.{hook}: action {action:?} does not apply to {hook}"
                ));
            }
        }
        Ok(Scripted {
            instance: init.instance().to_owned(),
            trace: config.trace.map(|p| init.resolve_path(p)),
            on: config.on,
        })
    }
}

impl Scripted {
    fn trace(&self, hook: &str, args: Json) -> HookResult<()> {
        let Some(path) = &self.trace else {
            return Ok(());
        };
        let mut line = json!({ "instance": self.instance, "hook": hook, "args": args }).to_string();
        line.push('\n');
        // One write of the whole line with O_APPEND: lines from concurrent calls never interleave.
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| {
                HookError::failed(format!(
                    "cannot append to trace file {}: {e}",
                    path.display()
                ))
            })
    }

    /// Runs the action configured for `hook`: `Ok(None)` when it has no value to give,
    /// `Ok(Some(text))` for `append`, `Ok(Some(""))` for `return_true`.
    fn act(&self, hook: &str, args: Json) -> HookResult<Option<Action>> {
        self.trace(hook, args)?;
        match self.on.get(hook).cloned().unwrap_or(Action::None) {
            Action::None => Ok(None),
            Action::Stop { reason } => Err(HookError::stop(reason)),
            Action::ForceLogout { reason } => Err(HookError::force_logout(reason)),
            Action::Reject { reason } => Err(HookError::rejected(reason)),
            Action::Error { message } => Err(HookError::failed(message)),
            Action::Panic { message } => panic!("{message}"),
            Action::Sleep { ms } => {
                std::thread::sleep(Duration::from_millis(ms));
                Ok(None)
            }
            other => Ok(Some(other)),
        }
    }
}

fn user_json(user: &User) -> Json {
    json!({ "id": user.id, "username": user.username.as_str() })
}

fn post_json(post: &Post) -> Json {
    json!({ "id": post.id.into_option(), "content": post.content.as_str() })
}

fn topic_json(topic: &Topic) -> Json {
    json!({ "id": topic.id.into_option(), "title": topic.title.as_str() })
}

impl AuthenticationProvider for Scripted {
    fn authenticate(
        &self,
        cx: &Ctx<'_>,
        identifier: &str,
        _secret: &str,
    ) -> HookResult<Option<User>> {
        match self.act(
            plugin_abi::hooks::AUTHENTICATE,
            json!({ "identifier": identifier }),
        )? {
            Some(Action::ReturnUser { user }) => match cx.find_user(&user)? {
                Some(u) => Ok(Some(u)),
                None => Err(HookError::failed(format!(
                    "return_user: no user {user:?} in the store"
                ))),
            },
            _ => Ok(None),
        }
    }
}

impl PostAuthenticationHandler for Scripted {
    fn handle_post_auth(&self, _cx: &Ctx<'_>, user: &User) -> HookResult<()> {
        self.act(
            plugin_abi::hooks::POST_AUTHENTICATE,
            json!({ "user": user_json(user) }),
        )
        .map(drop)
    }
}

impl AuthenticationFailureHandler for Scripted {
    fn handle_authentication_failure(&self, _cx: &Ctx<'_>, identifier: &str) -> HookResult<()> {
        self.act(
            plugin_abi::hooks::AUTHENTICATION_FAILED,
            json!({ "identifier": identifier }),
        )
        .map(drop)
    }
}

impl ReauthenticateProvider for Scripted {
    fn reauthenticate(&self, _cx: &Ctx<'_>, user: &User, _secret: &str) -> HookResult<bool> {
        let action = self.act(
            plugin_abi::hooks::REAUTH_ATTEMPT,
            json!({ "user": user_json(user) }),
        )?;
        Ok(matches!(action, Some(Action::ReturnTrue)))
    }
}

impl PostReauthenticateHandler for Scripted {
    fn handle_post_reauth(&self, _cx: &Ctx<'_>, user: &User) -> HookResult<()> {
        self.act(
            plugin_abi::hooks::POST_REAUTH,
            json!({ "user": user_json(user) }),
        )
        .map(drop)
    }
}

impl ReauthenticateFailureHandler for Scripted {
    fn handle_reauth_failure(&self, _cx: &Ctx<'_>, user: &User) -> HookResult<()> {
        self.act(
            plugin_abi::hooks::REAUTH_FAILED,
            json!({ "user": user_json(user) }),
        )
        .map(drop)
    }
}

impl PostSaveBeforeHandler for Scripted {
    fn post_save_before(&self, _cx: &Ctx<'_>, mut post: Post) -> HookResult<Post> {
        if let Some(Action::Append { text }) = self.act(
            plugin_abi::hooks::POST_SAVE_BEFORE,
            json!({ "post": post_json(&post) }),
        )? {
            post.content.push_str(&text);
        }
        Ok(post)
    }
}

impl PostSaveAfterHandler for Scripted {
    fn post_save_after(&self, _cx: &Ctx<'_>, post: &Post, is_new: bool) -> HookResult<()> {
        self.act(
            plugin_abi::hooks::POST_SAVE_AFTER,
            json!({ "post": post_json(post), "is_new": is_new }),
        )
        .map(drop)
    }
}

impl TopicSaveBeforeHandler for Scripted {
    fn topic_save_before(&self, _cx: &Ctx<'_>, mut topic: Topic) -> HookResult<Topic> {
        if let Some(Action::Append { text }) = self.act(
            plugin_abi::hooks::TOPIC_SAVE_BEFORE,
            json!({ "topic": topic_json(&topic) }),
        )? {
            let mut content = topic.content.map(|c| c.to_string()).unwrap_or_default();
            content.push_str(&text);
            topic.content = Some(content.into()).into();
        }
        Ok(topic)
    }
}

impl TopicSaveAfterHandler for Scripted {
    fn topic_save_after(&self, _cx: &Ctx<'_>, topic: &Topic, is_new: bool) -> HookResult<()> {
        self.act(
            plugin_abi::hooks::TOPIC_SAVE_AFTER,
            json!({ "topic": topic_json(topic), "is_new": is_new }),
        )
        .map(drop)
    }
}

impl UserRegisteredHandler for Scripted {
    fn user_registered(&self, _cx: &Ctx<'_>, username: &str) -> HookResult<()> {
        self.act(
            plugin_abi::hooks::USER_REGISTERED,
            json!({ "username": username }),
        )
        .map(drop)
    }
}

/// As a wrapper (only where `flaskbb.toml` says `wrapper = true` for a hook), the
/// configured action replaces the chain's outcome.
impl HookWrapper for Scripted {
    const WRAPS: &'static [&'static str] = &[];

    fn before(&self, _cx: &Ctx<'_>, call: &HookCall) -> HookResult<()> {
        self.trace(call.hook.as_str(), json!({ "phase": "before" }))
    }

    fn after(&self, cx: &Ctx<'_>, call: &HookCall, outcome: Outcome) -> Outcome {
        let seen = match &outcome.result {
            Ok(v) => json!({ "ok": format!("{v:?}").split('(').next().unwrap_or("") }),
            Err(e) => json!({ "err": e.to_string() }),
        };
        let hook = call.hook.as_str();
        let result = match self.act(
            hook,
            json!({ "phase": "after", "outcome": seen, "decided_by": outcome.decided_by }),
        ) {
            Ok(None) => return outcome,
            Ok(Some(Action::ReturnTrue)) => Ok(Value::True),
            Ok(Some(Action::ReturnUser { user })) => match cx.find_user(&user) {
                Ok(Some(u)) => Ok(Value::User(u)),
                Ok(None) => Err(HookError::failed(format!(
                    "return_user: no user {user:?} in the store"
                ))),
                Err(e) => Err(e),
            },
            Ok(Some(_)) => return outcome,
            Err(e) => Err(e),
        };
        Outcome {
            result,
            decided_by: Some(self.instance.clone()),
            duration: outcome.duration,
        }
    }
}

export_plugin! {
    plugin: Scripted,
    name: "scripted",
    description: "Behaviour per hook from configuration: none, return_user, return_true, stop, \
                  force_logout, reject, error, panic, sleep, append; traces every call",
    hooks: [
        AuthenticationProvider,
        PostAuthenticationHandler,
        AuthenticationFailureHandler,
        ReauthenticateProvider,
        PostReauthenticateHandler,
        ReauthenticateFailureHandler,
        PostSaveBeforeHandler,
        PostSaveAfterHandler,
        TopicSaveBeforeHandler,
        TopicSaveAfterHandler,
        UserRegisteredHandler,
        HookWrapper,
    ],
}
