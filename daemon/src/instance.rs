//! Hook impl instances as chains hold them: built-ins implement [`Hooks`] natively;
//! a plugin instance implements it by calling its ABI vtable with a [`HostShim`] that
//! serves the plugin's host API from the running request.

use std::sync::Arc;

use abi_stable::{
    erased_types::TD_Opaque,
    std_types::{RErr, ROk, ROption, RResult, RStr, RString, RVec, Tuple2},
};
use plugin_abi::{
    abi::{self, ErrorBox, HookCall, Host, LogLevel, PluginBox},
    sdk::{HookError, HookResult, Outcome},
};

use crate::{hook::Hook, loader::Library, proto::convert, request::Request, store::Op};

/// Where an instance comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    Builtin,
    Plugin(Arc<Library>),
}

impl Origin {
    /// `builtin`, or the library's path.
    pub fn describe(&self) -> String {
        match self {
            Origin::Builtin => "builtin".into(),
            Origin::Plugin(lib) => lib.path.display().to_string(),
        }
    }
}

/// One instance: a built-in, or one `[[plugin]]` table made from a library.
pub struct Instance {
    pub name: Arc<str>,
    pub origin: Origin,
    pub config_json: String,
    pub hooks: Box<dyn Hooks>,
}

/// What an impl sees of the call it is in.
pub struct CallCx<'a> {
    pub req: &'a Request,
    pub instance: &'a Instance,
    pub hook: Hook,
}

fn not_implemented<T>() -> HookResult<T> {
    Err(HookError::NotImplemented)
}

/// Runs `$body` with `$host`, the host API of the call `$cx`, for the plugin.
macro_rules! with_host {
    ($cx:ident, |$host:ident| $body:expr) => {{
        let shim = HostShim { cx: $cx };
        let $host = abi::Host_TO::from_ptr(&shim, TD_Opaque);
        $body
    }};
}

/// A hook argument's type in the daemon, by the hook table's argument kinds.
macro_rules! host_arg {
    (Str) => {
        &str
    };
    (Secret) => {
        &str
    };
    (User) => {
        &abi::User
    };
    (Post) => {
        &abi::Post
    };
    (Topic) => {
        &abi::Topic
    };
    (DraftPost) => {
        &abi::Post
    };
    (DraftTopic) => {
        &abi::Topic
    };
    (Bool) => {
        bool
    };
}

/// A hook answer's type in the daemon, by the hook table's `returns`.
macro_rules! host_returns {
    (Nothing) => { () };
    (User) => { Option<abi::User> };
    (True) => { bool };
    (Post) => { abi::Post };
    (Topic) => { abi::Topic };
}

macro_rules! declare_hooks_trait {
    (pass: [], prefix: [$($prefix:tt)*], appended: [$($appended:tt)*] $(,)?) => {
        declare_hooks_trait!(@rows $($prefix)* $($appended)*);
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
        /// One method per hook (generated from the hook table), with FlaskBB's
        /// arguments; unimplemented hooks answer `NotImplemented` and the chain skips
        /// them. Built-ins implement it natively, plugin instances through
        /// [`PluginHooks`].
        pub trait Hooks: Send + Sync {
            $(
                #[doc = $doc]
                fn $method(
                    &self,
                    cx: &CallCx<'_>,
                    $($arg: host_arg!($kind)),*
                ) -> HookResult<host_returns!($returns)> {
                    let _ = (cx, $($arg,)*);
                    not_implemented()
                }
            )*
            /// A wrapper's part before the chain.
            fn wrap_before(&self, cx: &CallCx<'_>, call: &HookCall) -> HookResult<()> {
                let _ = (cx, call);
                not_implemented()
            }
            /// A wrapper's part after the chain: the outcome, or a replacement.
            fn wrap_after(&self, cx: &CallCx<'_>, call: &HookCall, outcome: Outcome) -> Outcome {
                let _ = (cx, call);
                outcome
            }
        }

        impl Hooks for PluginHooks {
            $(
                fn $method(
                    &self,
                    cx: &CallCx<'_>,
                    $($arg: host_arg!($kind)),*
                ) -> HookResult<host_returns!($returns)> {
                    with_host!(cx, |h| from_abi(self.0.$method(h, $($arg.into()),*))
                        .map(plugin_abi::sdk::FromAbi::from_abi))
                }
            )*
            fn wrap_before(&self, cx: &CallCx<'_>, call: &HookCall) -> HookResult<()> {
                with_host!(cx, |h| from_abi(self.0.wrap_before(h, call)))
            }
            fn wrap_after(&self, cx: &CallCx<'_>, call: &HookCall, outcome: Outcome) -> Outcome {
                with_host!(cx, |h| Outcome::from_abi(&self.0.wrap_after(
                    h,
                    call,
                    outcome.into_abi()
                )))
            }
        }
    };
}

flaskbbd_hooks::for_each_hook!(declare_hooks_trait);

/// The host API for one plugin call.
pub struct HostShim<'a> {
    cx: &'a CallCx<'a>,
}

fn abi_err(e: HookError) -> ErrorBox {
    e.into_abi()
}

fn store_failed(e: crate::store::StoreError) -> ErrorBox {
    abi_err(HookError::failed(e.to_string()))
}

impl Host for HostShim<'_> {
    fn instance_name(&self) -> RString {
        RString::from(&*self.cx.instance.name)
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let (instance, hook, msg) = (
            &*self.cx.instance.name,
            self.cx.hook.name(),
            message.as_str(),
        );
        match level {
            LogLevel::ERROR => tracing::error!(instance, hook, "{msg}"),
            LogLevel::WARN => tracing::warn!(instance, hook, "{msg}"),
            LogLevel::DEBUG => tracing::debug!(instance, hook, "{msg}"),
            _ => tracing::info!(instance, hook, "{msg}"),
        }
    }

    fn find_user(&self, identifier: RStr<'_>) -> RResult<ROption<abi::User>, ErrorBox> {
        match self.cx.req.find_user(identifier.as_str()) {
            Ok(u) => ROk(u.map(|r| convert::user_to_abi(&r.user, r.banned)).into()),
            Err(e) => RErr(store_failed(e)),
        }
    }

    fn find_user_by_id(&self, id: i64) -> RResult<ROption<abi::User>, ErrorBox> {
        match self.cx.req.store.find_user_by_id(id) {
            Ok(u) => ROk(u.map(|r| convert::user_to_abi(&r.user, r.banned)).into()),
            Err(e) => RErr(store_failed(e)),
        }
    }

    fn context(&self, key: RStr<'_>) -> ROption<RString> {
        self.cx
            .req
            .context
            .get(key.as_str())
            .map(|v| RString::from(v.as_str()))
            .into()
    }

    fn context_all(&self) -> RVec<Tuple2<RString, RString>> {
        self.cx
            .req
            .context
            .iter()
            .map(|(k, v)| Tuple2(RString::from(k.as_str()), RString::from(v.as_str())))
            .collect()
    }

    fn config_json(&self) -> RString {
        self.cx.instance.config_json.as_str().into()
    }

    fn store_get(&self, key: RStr<'_>) -> RResult<ROption<RString>, ErrorBox> {
        match self.cx.req.kv_get(&self.cx.instance.name, key.as_str()) {
            Ok(v) => ROk(v.map(RString::from).into()),
            Err(e) => RErr(abi_err(e)),
        }
    }

    fn store_set(&self, key: RStr<'_>, value: ROption<RStr<'_>>) -> RResult<(), ErrorBox> {
        if key.as_str().contains('\0')
            || value
                .into_option()
                .is_some_and(|v| v.as_str().contains('\0'))
        {
            return RErr(abi_err(HookError::failed(
                "store_set: keys and values cannot contain NUL characters",
            )));
        }
        let op = Op::KvSet {
            plugin: self.cx.instance.name.to_string(),
            key: key.to_string(),
            value: value.map(|v| v.to_string()).into_option(),
        };
        match self.cx.req.push(op) {
            Ok(()) => ROk(()),
            Err(e) => RErr(abi_err(e)),
        }
    }

    fn provision_user(&self, username: RStr<'_>, email: RStr<'_>) -> RResult<abi::User, ErrorBox> {
        if self.cx.req.is_abandoned() {
            return RErr(abi_err(HookError::failed(
                "the request this call belongs to has already ended (it timed out)",
            )));
        }
        if username.as_str().contains('\0') || email.as_str().contains('\0') {
            return RErr(abi_err(HookError::failed(
                "provision_user: a username or email cannot contain NUL",
            )));
        }
        let store = &self.cx.req.store;
        let found = match store.find_user(username.as_str()) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => store
                .create_user(&crate::store::NewUser {
                    username: username.to_string(),
                    email: email.to_string(),
                    password_hash: None,
                    activated: true,
                    primary_group_id: crate::store::MEMBER_GROUP,
                })
                .or_else(|e| match e {
                    // Another request provisioned it meanwhile.
                    crate::store::StoreError::UserExists => store
                        .find_user(username.as_str())
                        .and_then(|u| u.ok_or(crate::store::StoreError::UserExists)),
                    other => Err(other),
                }),
            Err(e) => Err(e),
        };
        match found {
            Ok(r) => {
                // An earlier lookup in this request may have cached "no such user".
                self.cx.req.forget_user(username.as_str());
                tracing::info!(
                    instance = &*self.cx.instance.name,
                    user_id = r.user.id,
                    "provisioned a local user"
                );
                ROk(convert::user_to_abi(&r.user, r.banned))
            }
            Err(e) => RErr(store_failed(e)),
        }
    }

    fn delay_answer(&self, ms: u64) {
        self.cx.req.delay_answer(ms);
    }

    fn ask_for(&self, key: RStr<'_>) {
        self.cx.req.ask_for(&self.cx.instance.name, key.as_str());
    }
}

/// A plugin instance behind its vtable.
pub struct PluginHooks(pub PluginBox);

fn from_abi<T>(r: RResult<T, ErrorBox>) -> HookResult<T> {
    match r {
        ROk(v) => Ok(v),
        RErr(e) => Err(HookError::from_abi(&e)),
    }
}
