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
//! It implements every hook (generated from the hook table in `flaskbbd-hooks`, so a
//! hook added there is one it implements); a hook without an entry in `on` behaves as
//! `none`. When the operator makes it a wrapper of a hook (`wrapper = true` in
//! `flaskbb.toml`), its action applies to the outcome after the chain. Every call
//! appends one JSON line to `trace` (never the secret).

#![forbid(unsafe_code)]

use std::{collections::HashMap, fs::OpenOptions, io::Write, path::PathBuf, time::Duration};

use plugin_abi::{
    hooks::{Hook, Returns},
    prelude::*,
};
use serde::Deserialize;
use serde_json::{json, Value as Json};

/// What one hook does, from `on.<hook>`. Every parameter has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
enum Action {
    None,
    ReturnUser {
        user: String,
    },
    ReturnTrue,
    Stop {
        #[serde(default = "defaults::stop")]
        reason: String,
    },
    ForceLogout {
        #[serde(default = "defaults::force_logout")]
        reason: String,
    },
    Reject {
        #[serde(default = "defaults::reject")]
        reason: String,
    },
    Error {
        #[serde(default = "defaults::error")]
        message: String,
    },
    Panic {
        #[serde(default = "defaults::panic")]
        message: String,
    },
    Sleep {
        #[serde(default = "defaults::sleep_ms")]
        ms: u64,
    },
    /// Adds `text` to the end of a post's text (a topic's first post's): written as
    /// the operator wrote it, so it is Markdown there (FlaskBB renders `*x*` as
    /// emphasis); unlike `wordfilter`'s mask, nothing of the member's is replaced.
    Append {
        #[serde(default = "defaults::append")]
        text: String,
    },
}

/// The parameters an action takes when the configuration leaves them out.
mod defaults {
    /// `stop`'s message.
    pub(crate) fn stop() -> String {
        "Stopped by the scripted plugin.".into()
    }
    /// `force_logout`'s message.
    pub(crate) fn force_logout() -> String {
        "Logged out by the scripted plugin.".into()
    }
    /// `reject`'s message.
    pub(crate) fn reject() -> String {
        "Rejected by the scripted plugin.".into()
    }
    /// `error`'s message.
    pub(crate) fn error() -> String {
        "the scripted plugin's configured error".into()
    }
    /// `panic`'s message.
    pub(crate) fn panic() -> String {
        "the scripted plugin's configured panic".into()
    }
    /// `sleep`'s milliseconds.
    pub(crate) fn sleep_ms() -> u64 {
        1000
    }
    /// `append`'s text.
    pub(crate) fn append() -> String {
        " [scripted]".into()
    }
}

impl Action {
    /// Whether the action makes sense as an impl of `hook`.
    fn fits(&self, hook: Hook) -> bool {
        match self {
            Action::ReturnUser { .. } => hook.returns() == Returns::User,
            Action::ReturnTrue => hook.returns() == Returns::True,
            Action::Append { .. } => matches!(hook.returns(), Returns::Post | Returns::Topic),
            _ => true,
        }
    }
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
        for (name, action) in &config.on {
            let Some(hook) = Hook::from_name(name) else {
                return Err(format!(
                    "config key on.{name}: no such hook; hooks are {}",
                    plugin_abi::hooks::ALL.join(", ")
                ));
            };
            if !action.fits(hook) {
                return Err(format!(
                    "config key on.{name}: action {action:?} does not apply to {name}"
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

    /// Traces the call and runs the action configured for `hook`: an error for the
    /// actions that end the chain, `None` when there is no value to give, else the
    /// action that makes one (`return_user`, `return_true`, `append`).
    fn act(&self, hook: &str, args: Json) -> HookResult<Option<Action>> {
        self.trace(hook, args)?;
        match self.on.get(hook).cloned().unwrap_or(Action::None) {
            Action::None => Ok(None),
            Action::Stop { reason } => Err(HookError::stop(reason)),
            Action::ForceLogout { reason } => Err(HookError::force_logout(reason)),
            Action::Reject { reason } => Err(HookError::rejected(reason)),
            Action::Error { message } => Err(HookError::failed(message)),
            // Panicking is this action's whole job: it shows the daemon containing a
            // plugin's panic.
            #[allow(clippy::panic)]
            Action::Panic { message } => panic!("{message}"),
            Action::Sleep { ms } => {
                std::thread::sleep(Duration::from_millis(ms));
                Ok(None)
            }
            other => Ok(Some(other)),
        }
    }
}

/// The post or topic a save_before call hands on.
enum Draft {
    Post(Post),
    Topic(Topic),
}

/// An impl's answer from its action, by the hook's answer type.
trait Answer: Sized {
    fn answer(action: Option<Action>, cx: &Ctx<'_>, draft: Option<Draft>) -> HookResult<Self>;
}

impl Answer for () {
    fn answer(_: Option<Action>, _: &Ctx<'_>, _: Option<Draft>) -> HookResult<()> {
        Ok(())
    }
}

impl Answer for bool {
    fn answer(action: Option<Action>, _: &Ctx<'_>, _: Option<Draft>) -> HookResult<bool> {
        Ok(matches!(action, Some(Action::ReturnTrue)))
    }
}

impl Answer for Option<User> {
    fn answer(action: Option<Action>, cx: &Ctx<'_>, _: Option<Draft>) -> HookResult<Self> {
        match action {
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

impl Answer for Post {
    fn answer(action: Option<Action>, _: &Ctx<'_>, draft: Option<Draft>) -> HookResult<Post> {
        let Some(Draft::Post(mut post)) = draft else {
            return Err(HookError::failed("a post hook without its post"));
        };
        if let Some(Action::Append { text }) = action {
            post.content.push_str(&text);
        }
        Ok(post)
    }
}

impl Answer for Topic {
    fn answer(action: Option<Action>, _: &Ctx<'_>, draft: Option<Draft>) -> HookResult<Topic> {
        let Some(Draft::Topic(mut topic)) = draft else {
            return Err(HookError::failed("a topic hook without its topic"));
        };
        if let Some(Action::Append { text }) = action {
            let mut content = topic.content.map(|c| c.to_string()).unwrap_or_default();
            content.push_str(&text);
            topic.content = Some(content.into()).into();
        }
        Ok(topic)
    }
}

/// What the trace does with an argument of each base kind (a view's `args`,
/// `flaskbbd-hooks`): how it shows it, and for a draft the `Draft` that keeps it.
macro_rules! base_kind {
    (trace, Str, $a:ident) => {
        json!($a)
    };
    (trace, Bool, $a:ident) => {
        json!($a)
    };
    (trace, User, $a:ident) => {
        json!({ "id": $a.id, "username": $a.username.as_str() })
    };
    (trace, Post, $a:ident) => {
        json!({ "id": $a.id.into_option(), "content": $a.content.as_str() })
    };
    (trace, Topic, $a:ident) => {
        json!({ "id": $a.id.into_option(), "title": $a.title.as_str() })
    };
    (draft, Post) => {
        Draft::Post
    };
    (draft, Topic) => {
        Draft::Topic
    };
}

/// One argument in the trace line (never the secret); a draft is kept for the answer.
macro_rules! trace_arg {
    ($args:ident, $draft:ident, secret $base:ident, $arg:ident) => {
        let _ = $arg;
    };
    ($args:ident, $draft:ident, draft $base:ident, $arg:ident) => {
        $args.insert(stringify!($arg).into(), base_kind!(trace, $base, $arg));
        $draft = Some(base_kind!(draft, $base)($arg));
    };
    ($args:ident, $draft:ident, $mode:ident $base:ident, $arg:ident) => {
        $args.insert(stringify!($arg).into(), base_kind!(trace, $base, $arg));
    };
}

macro_rules! implement_every_hook {
    ($(
        $hook:ident {
            name: $name:literal,
            args: ($($arg:ident : $mode:ident $base:ident),*),
            returns: $returns:ident,
            sdk: $sdk_trait:ident :: $sdk_method:ident,
        }
    )*) => {
        $(
            impl $sdk_trait for Scripted {
                #[allow(unused_mut, unused_assignments)]
                fn $sdk_method(
                    &self,
                    cx: &Ctx<'_>,
                    $($arg: plugin_abi::sdk_arg!($mode $base)),*
                ) -> HookResult<plugin_abi::sdk_returns!($returns)> {
                    let mut args = serde_json::Map::new();
                    let mut draft: Option<Draft> = None;
                    $(trace_arg!(args, draft, $mode $base, $arg);)*
                    let action = self.act($name, Json::Object(args))?;
                    Answer::answer(action, cx, draft)
                }
            }
        )*

        export_plugin! {
            plugin: Scripted,
            name: "scripted",
            description: "Behaviour per hook from configuration: none, return_user, return_true, stop, \
                          force_logout, reject, error, panic, sleep, append; traces every call",
            hooks: [$($sdk_trait,)* HookWrapper],
        }
    };
}

flaskbbd_hooks::for_each_hook! {
    rows: all,
    fields: [name, args, returns, sdk],
    then: implement_every_hook,
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
