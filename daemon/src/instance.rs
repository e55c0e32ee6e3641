//! Hook impl instances as chains hold them: built-ins implement [`Hooks`] natively;
//! an in-process plugin instance implements it by calling its ABI vtable with a
//! [`HostShim`] that serves the plugin's host API from the running request. An
//! isolated one is `isolation`'s impl (above this module: it knows nothing of
//! isolation), which sends the call to its plugin host and serves the same host API
//! ([`CallCx`]'s methods) across the boundary.

use std::{any::Any, sync::Arc};

use abi_stable::{
    erased_types::TD_Opaque,
    std_types::{RErr, ROk, ROption, RResult, RStr, RString, RVec, Tuple2},
};
use plugin_abi::{
    abi::{self, ErrorBox, HookCall, Host, LogLevel, PluginBox},
    sdk::{HookError, HookResult, Outcome},
};

use crate::{
    hook::Hook,
    loader::Library,
    proto::convert,
    request::Request,
    store::{Op, PenaltyKey, MAX_PENALTY_SUBJECT},
};

/// Where an instance comes from.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// Compiled into the daemon.
    Builtin,
    /// A library mapped in the daemon.
    Plugin(Arc<Library>),
    /// A library mapped by a plugin host (its path as configured).
    Isolated(std::path::PathBuf),
}

impl Origin {
    /// `builtin`, or the library's path.
    pub(crate) fn describe(&self) -> String {
        match self {
            Origin::Builtin => "builtin".into(),
            Origin::Plugin(lib) => lib.path.display().to_string(),
            Origin::Isolated(path) => path.display().to_string(),
        }
    }
}

/// One instance: a built-in, or one `[[plugin]]` table made from a library.
pub(crate) struct Instance {
    /// Its name: the `[[plugin]]` table's `name`, or the built-in's.
    pub name: Arc<str>,
    /// Where its code comes from.
    pub origin: Origin,
    /// Its configuration as JSON, as the instance was given it.
    pub config_json: String,
    /// Its impls of the hooks.
    pub hooks: Box<dyn Hooks>,
}

/// What an impl sees of the call it is in.
pub(crate) struct CallCx<'a> {
    /// The request the call is part of.
    pub req: &'a Request,
    /// The instance called.
    pub instance: &'a Instance,
    /// The hook called.
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

/// A hook argument's type in the daemon, by its mode (a view's `args`,
/// `flaskbbd-hooks`): borrowed, but for a flag; the type is the daemon's kind table's
/// (`ipc::base_kind!`).
macro_rules! host_arg {
    (copied $base:ident) => {
        crate::ipc::base_kind!(ty, $base)
    };
    ($mode:ident $base:ident) => {
        &crate::ipc::base_kind!(ty, $base)
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

// What an impl of `Hooks` elsewhere (`isolation`'s) spells its methods' types with.
pub(crate) use {host_arg, host_returns};

macro_rules! declare_hooks_trait {
    ($(
        $hook:ident {
            name: $name:literal,
            method: $method:ident,
            args: ($($arg:ident : $mode:ident $base:ident),*),
            returns: $returns:ident,
            doc: $doc:literal,
        }
    )*) => {
        /// One method per hook (generated from the hook table), with FlaskBB's
        /// arguments; unimplemented hooks answer `NotImplemented` and the chain skips
        /// them. Built-ins implement it natively, in-process plugin instances through
        /// [`PluginHooks`], isolated ones through `isolation`'s `IsolatedHooks` (which
        /// a chain finds among the others with `isolated()`, a method `isolation`
        /// gives `dyn Hooks`: the `Any` bound is what lets it ask).
        pub(crate) trait Hooks: Any + Send + Sync {
            $(
                #[doc = $doc]
                fn $method(
                    &self,
                    cx: &CallCx<'_>,
                    $($arg: host_arg!($mode $base)),*
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
                    $($arg: host_arg!($mode $base)),*
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

flaskbbd_hooks::for_each_hook! {
    rows: all,
    fields: [name, method, args, returns, doc],
    then: declare_hooks_trait,
}

/// The host API for one plugin call: what a plugin may ask of the daemon while its
/// hook runs, for an in-process instance through [`HostShim`] and for an isolated one
/// across its host's lane (`isolation`), with the same semantics.
impl CallCx<'_> {
    /// Logs through the daemon's log, tagged with the instance and hook.
    pub(crate) fn log(&self, level: LogLevel, msg: &str) {
        let (instance, hook) = (&*self.instance.name, self.hook.name());
        match level {
            LogLevel::ERROR => tracing::error!(instance, hook, "{msg}"),
            LogLevel::WARN => tracing::warn!(instance, hook, "{msg}"),
            LogLevel::DEBUG => tracing::debug!(instance, hook, "{msg}"),
            _ => tracing::info!(instance, hook, "{msg}"),
        }
    }

    /// A user by username or email (looked up once per request).
    pub(crate) fn find_user(&self, identifier: &str) -> HookResult<Option<abi::User>> {
        self.req
            .find_user(identifier)
            .map(|u| u.map(|r| convert::user_to_abi(&r.user, r.banned)))
            .map_err(store_failed)
    }

    /// A user by id.
    pub(crate) fn find_user_by_id(&self, id: i64) -> HookResult<Option<abi::User>> {
        self.req
            .store
            .find_user_by_id(id)
            .map(|u| u.map(|r| convert::user_to_abi(&r.user, r.banned)))
            .map_err(store_failed)
    }

    /// A value of the instance's key-value store, seeing the request's own writes.
    pub(crate) fn store_get(&self, key: &str) -> HookResult<Option<String>> {
        self.req.kv_get(&self.instance.name, key)
    }

    /// Swaps the instance's value for `key` from `expected` to `value` at once, in
    /// one atomic step of the store ([`crate::store::Store::kv_swap`]); whether it did.
    pub(crate) fn store_swap(
        &self,
        key: &str,
        expected: Option<&str>,
        value: Option<&str>,
    ) -> HookResult<bool> {
        // Written at once: a call of a request that already ended (it timed out, and
        // was answered) must not use anything up.
        if self.req.is_abandoned() {
            return Err(HookError::failed(
                "the request this call belongs to has already ended (it timed out)",
            ));
        }
        self.req
            .store
            .kv_swap(&self.instance.name, key, expected, value)
            .map_err(store_failed)
    }

    /// Queues a write (or with `None`, a delete) of the instance's key-value store for
    /// the request's commit.
    pub(crate) fn store_set(&self, key: &str, value: Option<&str>) -> HookResult<()> {
        if key.contains('\0') || value.is_some_and(|v| v.contains('\0')) {
            return Err(HookError::failed(
                "store_set: keys and values cannot contain NUL characters",
            ));
        }
        self.req.push(Op::KvSet {
            plugin: self.instance.name.to_string(),
            key: key.to_owned(),
            value: value.map(str::to_owned),
        })
    }

    /// Creates (or finds) a local user for an identity an external provider vouched
    /// for; written at once, so that the user has an id.
    pub(crate) fn provision_user(&self, username: &str, email: &str) -> HookResult<abi::User> {
        if self.req.is_abandoned() {
            return Err(HookError::failed(
                "the request this call belongs to has already ended (it timed out)",
            ));
        }
        if username.contains('\0') || email.contains('\0') {
            return Err(HookError::failed(
                "provision_user: a username or email cannot contain NUL",
            ));
        }
        let store = &self.req.store;
        let found = match store.find_user(username) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => store
                .create_user(&crate::store::NewUser {
                    username: username.to_owned(),
                    email: email.to_owned(),
                    password_hash: None,
                    activated: true,
                    primary_group_id: crate::store::MEMBER_GROUP,
                })
                .or_else(|e| match e {
                    // Another request provisioned it meanwhile.
                    crate::store::StoreError::UserExists => store
                        .find_user(username)
                        .and_then(|u| u.ok_or(crate::store::StoreError::UserExists)),
                    other => Err(other),
                }),
            Err(e) => Err(e),
        };
        let r = found.map_err(store_failed)?;
        // An earlier lookup in this request may have cached "no such user".
        self.req.forget_user(username);
        tracing::info!(
            instance = &*self.instance.name,
            user_id = r.user.id,
            "provisioned a local user"
        );
        Ok(convert::user_to_abi(&r.user, r.banned))
    }

    /// Holds the request's answer back by at least `ms`.
    pub(crate) fn delay_answer(&self, ms: u64) {
        self.req.delay_answer(ms);
    }

    /// Tells the client the request could go further with `key` in its context.
    pub(crate) fn ask_for(&self, key: &str) {
        self.req.ask_for(&self.instance.name, key);
    }

    /// The instance's penalty row for `key`, refusing keys the column cannot hold.
    fn penalty_key(&self, call: &str, key: &str) -> HookResult<PenaltyKey> {
        if key.contains('\0') || key.len() > MAX_PENALTY_SUBJECT {
            return Err(HookError::failed(format!(
                "{call}: a penalty key is at most {MAX_PENALTY_SUBJECT} bytes, without NUL"
            )));
        }
        Ok(PenaltyKey::new(
            &format!("plugin:{}", self.instance.name),
            key,
            "",
        ))
    }

    /// Failures counted under the instance's `key`, live ones only.
    pub(crate) fn penalty_get(&self, key: &str) -> HookResult<u32> {
        let key = self.penalty_key("penalty_get", key)?;
        let rows = self
            .req
            .store
            .penalties(&key.kind, &key.subject, Some(&[""]), chrono::Utc::now())
            .map_err(store_failed)?;
        Ok(rows.first().map_or(0, |p| p.failures))
    }

    /// Queues one failure under the instance's `key` for the request's commit.
    pub(crate) fn penalty_add(&self, key: &str, window_ms: u64) -> HookResult<()> {
        let key = self.penalty_key("penalty_add", key)?;
        self.req.push(Op::AddPenalty {
            key,
            at_ms: chrono::Utc::now().timestamp_millis(),
            window_ms: i64::try_from(window_ms).unwrap_or(i64::MAX),
        })
    }

    /// Queues forgetting the instance's `key` for the request's commit.
    pub(crate) fn penalty_clear(&self, key: &str) -> HookResult<()> {
        let key = self.penalty_key("penalty_clear", key)?;
        self.req.push(Op::ClearPenalty { key })
    }
}

fn store_failed(e: crate::store::StoreError) -> HookError {
    HookError::failed(e.to_string())
}

/// The host API handed to an in-process plugin for one call.
pub(crate) struct HostShim<'a> {
    cx: &'a CallCx<'a>,
}

/// A host API answer for the vtable.
fn to_abi<T>(r: HookResult<T>) -> RResult<T, ErrorBox> {
    match r {
        Ok(v) => ROk(v),
        Err(e) => RErr(e.into_abi()),
    }
}

impl Host for HostShim<'_> {
    fn instance_name(&self) -> RString {
        RString::from(&*self.cx.instance.name)
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        self.cx.log(level, message.as_str());
    }

    fn find_user(&self, identifier: RStr<'_>) -> RResult<ROption<abi::User>, ErrorBox> {
        to_abi(self.cx.find_user(identifier.as_str()).map(ROption::from))
    }

    fn find_user_by_id(&self, id: i64) -> RResult<ROption<abi::User>, ErrorBox> {
        to_abi(self.cx.find_user_by_id(id).map(ROption::from))
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
        to_abi(
            self.cx
                .store_get(key.as_str())
                .map(|v| v.map(RString::from).into()),
        )
    }

    fn store_set(&self, key: RStr<'_>, value: ROption<RStr<'_>>) -> RResult<(), ErrorBox> {
        to_abi(
            self.cx
                .store_set(key.as_str(), value.map(|v| v.as_str()).into_option()),
        )
    }

    fn store_swap(
        &self,
        key: RStr<'_>,
        expected: ROption<RStr<'_>>,
        value: ROption<RStr<'_>>,
    ) -> RResult<bool, ErrorBox> {
        to_abi(self.cx.store_swap(
            key.as_str(),
            expected.map(|v| v.as_str()).into_option(),
            value.map(|v| v.as_str()).into_option(),
        ))
    }

    fn provision_user(&self, username: RStr<'_>, email: RStr<'_>) -> RResult<abi::User, ErrorBox> {
        to_abi(self.cx.provision_user(username.as_str(), email.as_str()))
    }

    fn delay_answer(&self, ms: u64) {
        self.cx.delay_answer(ms);
    }

    fn ask_for(&self, key: RStr<'_>) {
        self.cx.ask_for(key.as_str());
    }

    fn penalty_get(&self, key: RStr<'_>) -> RResult<u32, ErrorBox> {
        to_abi(self.cx.penalty_get(key.as_str()))
    }

    fn penalty_add(&self, key: RStr<'_>, window_ms: u64) -> RResult<(), ErrorBox> {
        to_abi(self.cx.penalty_add(key.as_str(), window_ms))
    }

    fn penalty_clear(&self, key: RStr<'_>) -> RResult<(), ErrorBox> {
        to_abi(self.cx.penalty_clear(key.as_str()))
    }
}

/// A plugin instance behind its vtable.
pub(crate) struct PluginHooks(pub PluginBox);

fn from_abi<T>(r: RResult<T, ErrorBox>) -> HookResult<T> {
    match r {
        ROk(v) => Ok(v),
        RErr(e) => Err(HookError::from_abi(&e)),
    }
}
