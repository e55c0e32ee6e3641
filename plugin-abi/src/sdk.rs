//! The plugin SDK: FlaskBB's authentication and event interfaces as Rust traits, and
//! the [`crate::export_plugin!`] macro that maps a type implementing some of them onto
//! the hooks of the stable ABI.
//!
//! A plugin author writes ordinary Rust here: `&str`, `String`, `Result`, `Option`.
//! The SDK converts to and from the FFI types, and catches a panic inside a hook so it
//! reaches the daemon as a [`HookError::Failed`] instead of ending the process.

use std::{
    cell::RefCell,
    fmt,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Once,
    time::Duration,
};

use abi_stable::std_types::{RBox, RErr, RNone, ROk, ROption, RResult, RSome, RStr, RString};
use serde::de::DeserializeOwned;

use crate::abi::{AbiError, AbiValue, ErrorBox, HostRef, ValueBox, WrapOutcome};
pub use crate::abi::{HookCall, LogLevel, Post, Tier, Topic, User};
pub use crate::hooks;

/// Why a hook did not answer normally. The first three are FlaskBB's control flow:
/// they end the chain and reach the client with their reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookError {
    /// Halts authentication (or reauthentication) with a reason the user may see.
    StopAuthentication {
        /// For the person logging in.
        reason: String,
    },
    /// From `flaskbb_reauth_failed`: the client must log the user out.
    ForceLogout {
        /// For the person logged out.
        reason: String,
    },
    /// From a `save_before` event hook: the save must not happen.
    Rejected {
        /// For the person who wrote the post.
        reason: String,
    },
    /// Anything else went wrong: the request fails closed with an internal error.
    Failed {
        /// What failed, for the log.
        message: String,
    },
    /// The hook is not implemented by this plugin (the daemon skips it).
    NotImplemented,
}

impl HookError {
    /// `StopAuthentication` with `reason`.
    pub fn stop(reason: impl Into<String>) -> Self {
        HookError::StopAuthentication {
            reason: reason.into(),
        }
    }
    /// `ForceLogout` with `reason`.
    pub fn force_logout(reason: impl Into<String>) -> Self {
        HookError::ForceLogout {
            reason: reason.into(),
        }
    }
    /// `Rejected` with `reason`.
    pub fn rejected(reason: impl Into<String>) -> Self {
        HookError::Rejected {
            reason: reason.into(),
        }
    }
    /// `Failed` with `message`.
    pub fn failed(message: impl Into<String>) -> Self {
        HookError::Failed {
            message: message.into(),
        }
    }

    /// Converts for the boundary.
    pub fn into_abi(self) -> ErrorBox {
        match self {
            HookError::StopAuthentication { reason } => AbiError::StopAuthentication {
                reason: reason.into(),
            },
            HookError::ForceLogout { reason } => AbiError::ForceLogout {
                reason: reason.into(),
            },
            HookError::Rejected { reason } => AbiError::Rejected {
                reason: reason.into(),
            },
            HookError::Failed { message } => AbiError::Failed {
                message: message.into(),
            },
            HookError::NotImplemented => AbiError::NotImplemented,
        }
        .boxed()
    }

    /// Converts from the boundary. A variant from a newer `plugin-abi` that this build
    /// does not know becomes `Failed`, so it fails closed.
    pub fn from_abi(err: &ErrorBox) -> Self {
        match err.as_enum() {
            Ok(AbiError::NotImplemented) => HookError::NotImplemented,
            Ok(AbiError::StopAuthentication { reason }) => HookError::stop(reason.as_str()),
            Ok(AbiError::ForceLogout { reason }) => HookError::force_logout(reason.as_str()),
            Ok(AbiError::Rejected { reason }) => HookError::rejected(reason.as_str()),
            Ok(AbiError::Failed { message }) => HookError::failed(message.as_str()),
            Err(_) => HookError::failed(format!(
                "returned an error kind this daemon does not know (discriminant {})",
                err.get_discriminant()
            )),
        }
    }
}

impl fmt::Display for HookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HookError::StopAuthentication { reason } => write!(f, "StopAuthentication: {reason}"),
            HookError::ForceLogout { reason } => write!(f, "ForceLogout: {reason}"),
            HookError::Rejected { reason } => write!(f, "Rejected: {reason}"),
            HookError::Failed { message } => write!(f, "failed: {message}"),
            HookError::NotImplemented => f.write_str("not implemented"),
        }
    }
}

impl std::error::Error for HookError {}

/// What every hook returns.
pub type HookResult<T> = Result<T, HookError>;

/// The value a chain produced, as a [`HookWrapper`] sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No result (a hook whose result is ignored, or a firstresult hook nobody answered).
    Nothing,
    /// A firstresult hook's user.
    User(User),
    /// `flaskbb_reauth_attempt`'s success.
    True,
    /// A save_before chain's post.
    Post(Post),
    /// A save_before chain's topic.
    Topic(Topic),
}

impl Value {
    /// Converts for the boundary.
    pub fn into_abi(self) -> ValueBox {
        match self {
            Value::Nothing => AbiValue::Nothing,
            Value::User(u) => AbiValue::User(RBox::new(u)),
            Value::True => AbiValue::True,
            Value::Post(p) => AbiValue::Post(RBox::new(p)),
            Value::Topic(t) => AbiValue::Topic(RBox::new(t)),
        }
        .boxed()
    }

    /// Converts from the boundary; `None` for a kind of value this build does not know.
    pub fn from_abi(value: &ValueBox) -> Option<Self> {
        Some(match value.as_enum().ok()? {
            AbiValue::Nothing => Value::Nothing,
            AbiValue::User(u) => Value::User((**u).clone()),
            AbiValue::True => Value::True,
            AbiValue::Post(p) => Value::Post((**p).clone()),
            AbiValue::Topic(t) => Value::Topic((**t).clone()),
        })
    }
}

impl AbiValue {
    /// Wraps the value for the boundary.
    pub fn boxed(self) -> ValueBox {
        abi_stable::nonexhaustive_enum::NonExhaustive::new(self)
    }
}

/// The outcome of a whole chain, as a [`HookWrapper`] sees it after the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The chain's value, or the error that ended it.
    pub result: Result<Value, HookError>,
    /// The instance whose answer or error decided the outcome, if one did.
    pub decided_by: Option<String>,
    /// How long the chain took.
    pub duration: Duration,
}

impl Outcome {
    /// Converts for the boundary.
    pub fn into_abi(self) -> WrapOutcome {
        WrapOutcome {
            result: match self.result {
                Ok(v) => ROk(v.into_abi()),
                Err(e) => RErr(e.into_abi()),
            },
            decided_by: self.decided_by.map(RString::from).into(),
            duration_us: self.duration.as_micros().min(u128::from(u64::MAX)) as u64,
        }
    }

    /// Converts from the boundary.
    pub fn from_abi(outcome: &WrapOutcome) -> Self {
        Outcome {
            result: match &outcome.result {
                ROk(v) => Value::from_abi(v).ok_or_else(|| {
                    HookError::failed(
                        "a wrapper returned a kind of value this daemon does not know",
                    )
                }),
                RErr(e) => Err(HookError::from_abi(e)),
            },
            decided_by: outcome
                .decided_by
                .as_ref()
                .map(|s| s.to_string())
                .into_option(),
            duration: Duration::from_micros(outcome.duration_us),
        }
    }
}

/// What a hook can ask of the daemon during one call: the request context, the user
/// store, the instance's own key-value store, and the log.
pub struct Ctx<'a> {
    host: HostRef<'a>,
}

impl<'a> Ctx<'a> {
    #[doc(hidden)]
    pub fn new(host: HostRef<'a>) -> Self {
        Ctx { host }
    }

    /// This instance's name in `flaskbb.toml`.
    pub fn instance_name(&self) -> String {
        self.host.instance_name().into()
    }
    /// Logs at `level` through the daemon, tagged with this instance and the hook.
    pub fn log(&self, level: LogLevel, message: &str) {
        self.host.log(level, message.into());
    }
    /// Logs at info level.
    pub fn info(&self, message: &str) {
        self.log(LogLevel::INFO, message)
    }
    /// Logs at warning level.
    pub fn warn(&self, message: &str) {
        self.log(LogLevel::WARN, message)
    }
    /// Finds a user by username or email.
    pub fn find_user(&self, identifier: &str) -> HookResult<Option<User>> {
        match self.host.find_user(identifier.into()) {
            ROk(u) => Ok(u.into_option()),
            RErr(e) => Err(HookError::from_abi(&e)),
        }
    }
    /// Finds a user by id.
    pub fn find_user_by_id(&self, id: i64) -> HookResult<Option<User>> {
        match self.host.find_user_by_id(id) {
            ROk(u) => Ok(u.into_option()),
            RErr(e) => Err(HookError::from_abi(&e)),
        }
    }
    /// One value of the request context (`remote_addr`, `user_agent`, `otp`, …).
    pub fn context(&self, key: &str) -> Option<String> {
        self.host
            .context(key.into())
            .map(String::from)
            .into_option()
    }
    /// The whole request context, as the client sent it.
    pub fn context_all(&self) -> Vec<(String, String)> {
        self.host
            .context_all()
            .into_iter()
            .map(|t| (t.0.into(), t.1.into()))
            .collect()
    }
    /// A value from this instance's key-value store.
    pub fn store_get(&self, key: &str) -> HookResult<Option<String>> {
        match self.host.store_get(key.into()) {
            ROk(v) => Ok(v.map(String::from).into_option()),
            RErr(e) => Err(HookError::from_abi(&e)),
        }
    }
    /// Sets a value in this instance's key-value store (committed with the request).
    pub fn store_set(&self, key: &str, value: &str) -> HookResult<()> {
        self.store_write(key, RSome(value.into()))
    }
    /// Deletes a value from this instance's key-value store (committed with the request).
    pub fn store_delete(&self, key: &str) -> HookResult<()> {
        self.store_write(key, RNone)
    }
    /// Replaces this instance's value for `key` with `value` (`None`: deletes it)
    /// only if the store still holds `expected` (`None`: nothing), at once and
    /// atomically; whether it did. Of two concurrent swaps from one value exactly one
    /// succeeds, on every daemon sharing the store: use it to take something once (a
    /// one-time code, a recovery code). A daemon older than plugin-abi 1.4.0 answers
    /// [`HookError`] `NotImplemented`.
    pub fn store_swap(
        &self,
        key: &str,
        expected: Option<&str>,
        value: Option<&str>,
    ) -> HookResult<bool> {
        let expected = expected.map(RStr::from).into();
        let value = value.map(RStr::from).into();
        match self.host.store_swap(key.into(), expected, value) {
            ROk(done) => Ok(done),
            RErr(e) => Err(HookError::from_abi(&e)),
        }
    }
    /// Creates (or finds) the local user for an identity this plugin vouched for:
    /// activated, Member group, no local password. Committed at once.
    pub fn provision_user(&self, username: &str, email: &str) -> HookResult<User> {
        match self.host.provision_user(username.into(), email.into()) {
            ROk(u) => Ok(u),
            RErr(e) => Err(HookError::from_abi(&e)),
        }
    }
    /// Holds this request's answer back by at least `ms` milliseconds, without
    /// holding a thread.
    pub fn delay_answer(&self, ms: u64) {
        self.host.delay_answer(ms)
    }
    /// Tells the client that this sign-in could go further with `key` in the request
    /// context: an `AuthenticationFailed` answer lists it in `ask` (the `totp` plugin
    /// asks for `otp`, so the forum's login page shows a field for the code).
    pub fn ask_for(&self, key: &str) {
        self.host.ask_for(key.into())
    }
    /// Failures counted under `key` in this instance's penalty counts (0 once their
    /// window has passed): shared by every daemon on the store, kept across restarts
    /// and reloads. A key is at most 255 bytes, without NUL.
    pub fn penalty(&self, key: &str) -> HookResult<u32> {
        match self.host.penalty_get(key.into()) {
            ROk(n) => Ok(n),
            RErr(e) => Err(HookError::from_abi(&e)),
        }
    }
    /// Counts one failure under `key` when the request commits (an atomic increment,
    /// so concurrent requests on any daemon each count); the count starts again at 1
    /// when the last failure is older than `window`.
    pub fn add_penalty(&self, key: &str, window: std::time::Duration) -> HookResult<()> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        match self.host.penalty_add(key.into(), window_ms) {
            ROk(()) => Ok(()),
            RErr(e) => Err(HookError::from_abi(&e)),
        }
    }
    /// Forgets the failures counted under `key` when the request commits.
    pub fn clear_penalty(&self, key: &str) -> HookResult<()> {
        match self.host.penalty_clear(key.into()) {
            ROk(()) => Ok(()),
            RErr(e) => Err(HookError::from_abi(&e)),
        }
    }
    fn store_write(&self, key: &str, value: ROption<RStr<'_>>) -> HookResult<()> {
        match self.host.store_set(key.into(), value) {
            ROk(()) => Ok(()),
            RErr(e) => Err(HookError::from_abi(&e)),
        }
    }
}

/// The client a failure is counted against, from the request context's
/// `remote_addr`: an IPv4 address as it is, an IPv6 address as its /64 network
/// (one subscriber's whole allocation: counting single IPv6 addresses would give an
/// attacker 2^64 fresh ones), an IPv4-mapped IPv6 address as the IPv4 one. Text that
/// is no address is kept (trimmed, at most 64 bytes), so it still counts as one client.
pub fn address_bucket(remote_addr: &str) -> String {
    use std::net::IpAddr;
    let text = remote_addr.trim();
    // "[::1]:443" and "1.2.3.4:5678" as some proxies write them: the port is no client.
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.split_once(']'))
        .map(|(a, _)| a)
        .unwrap_or(text);
    // "1.2.3.4:5678" as some proxies write it; a zone names an interface, not a client.
    let bare = match bare.rsplit_once(':') {
        Some((host, port)) if host.contains('.') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => bare,
    };
    let bare = bare.split_once('%').map_or(bare, |(a, _)| a);
    let parsed = bare
        .parse::<IpAddr>()
        .ok()
        .or_else(|| dotted_decimal(bare).map(IpAddr::V4))
        .or_else(|| {
            // An IPv4-mapped address with a leading-zero octet, which the IPv6 parser
            // refuses as it refuses the bare IPv4 one.
            let v4 = bare
                .get(..7)?
                .eq_ignore_ascii_case("::ffff:")
                .then(|| &bare[7..])?;
            dotted_decimal(v4).map(IpAddr::V4)
        });
    match parsed {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
        None => {
            let mut end = text.len().min(64);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text[..end].to_lowercase()
        }
    }
}

/// Four dotted decimal octets, leading zeros allowed (which the standard parser
/// refuses, as it cannot tell whether they were meant as octal).
fn dotted_decimal(text: &str) -> Option<std::net::Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts
        .next()
        .is_none()
        .then(|| std::net::Ipv4Addr::from(octets))
}

/// How a hook impl is ordered by default; the operator can override every field in
/// `flaskbb.toml`.
#[derive(Debug, Clone, Copy)]
pub struct HookOrder {
    /// The tier.
    pub tier: Tier,
    /// The priority within the tier (higher runs first).
    pub priority: i32,
    /// Instance names this impl must run before.
    pub before: &'static [&'static str],
    /// Instance names this impl must run after.
    pub after: &'static [&'static str],
}

impl HookOrder {
    /// Normal tier, priority 0, no constraints.
    pub const NORMAL: HookOrder = HookOrder {
        tier: Tier::NORMAL,
        priority: 0,
        before: &[],
        after: &[],
    };
    /// `tryfirst`, priority 0.
    pub const TRYFIRST: HookOrder = HookOrder {
        tier: Tier::TRYFIRST,
        ..HookOrder::NORMAL
    };
    /// `trylast`, priority 0.
    pub const TRYLAST: HookOrder = HookOrder {
        tier: Tier::TRYLAST,
        ..HookOrder::NORMAL
    };

    /// This order with `priority`.
    pub const fn with_priority(self, priority: i32) -> Self {
        HookOrder { priority, ..self }
    }

    #[doc(hidden)]
    pub fn decl(self, hook: &str, wrapper: bool) -> crate::abi::HookDecl {
        crate::abi::HookDecl {
            hook: hook.into(),
            tier: self.tier,
            priority: self.priority,
            before: self.before.iter().map(|s| RString::from(*s)).collect(),
            after: self.after.iter().map(|s| RString::from(*s)).collect(),
            wrapper,
        }
    }
}

/// How an instance is made: its name and its configuration.
pub struct Init {
    instance: String,
    config_json: String,
    base_dir: std::path::PathBuf,
}

impl Init {
    #[doc(hidden)]
    pub fn new(instance: &str, config_json: &str, base_dir: &str) -> Self {
        Init {
            instance: instance.to_owned(),
            config_json: config_json.to_owned(),
            base_dir: base_dir.into(),
        }
    }
    /// `path` as written in the configuration, made absolute against the directory of
    /// `flaskbb.toml` when it is relative.
    pub fn resolve_path(&self, path: impl AsRef<std::path::Path>) -> std::path::PathBuf {
        self.base_dir.join(path)
    }
    /// The instance's name in `flaskbb.toml`.
    pub fn instance(&self) -> &str {
        &self.instance
    }
    /// The instance's `config` table as JSON (`{}` when it has none).
    pub fn config_json(&self) -> &str {
        &self.config_json
    }
    /// The instance's `config` table, deserialized into `T`. A key `T` does not have
    /// is refused (a typo in a security setting must not go unnoticed), and every
    /// error names the key it is about: `config key words: invalid type: integer
    /// `3`, expected a sequence`. The daemon adds the line of `flaskbb.toml` the key is
    /// on, and prints the message once, with the instance and library.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, String> {
        let value: serde_json::Value = serde_json::from_str(&self.config_json)
            .map_err(|e| format!("config: not a table the daemon could pass on: {e}"))?;
        let mut unknown = Vec::new();
        let mut note = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let parsed =
            serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut note));
        match parsed {
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                Err(if path == "." {
                    format!("config: {inner}")
                } else {
                    format!("config key {path}: {inner}")
                })
            }
            Ok(_) if !unknown.is_empty() => Err(unknown
                .iter()
                .map(|k| format!("config key {k}: not a key of this plugin (a typo? its documentation lists its keys)"))
                .collect::<Vec<_>>()
                .join("; ")),
            Ok(config) => Ok(config),
        }
    }
}

/// A plugin type: made once per instance from its configuration.
pub trait PluginInstance: Sized + Send + Sync + 'static {
    /// Makes an instance; an error here refuses the plugin at load with this message.
    fn new(init: &Init) -> Result<Self, String>;
}

/// A hook argument's type in the SDK, by its mode and base kind as a view of the hook
/// table hands it on (`flaskbbd-hooks`): `sdk_arg!(secret Str)` is `&str`,
/// `sdk_arg!(draft Post)` an owned `Post`; or by the kind the table writes:
/// `sdk_arg!(Secret)` is `&str`. For plugins that implement hooks from the table
/// itself, as `scripted` implements every hook.
#[macro_export]
macro_rules! sdk_arg {
    // Lent (and secret) arguments are borrowed; a draft is the impl's own copy.
    (lent $base:ident) => { &$crate::sdk_arg!(@type $base) };
    (secret $base:ident) => { &$crate::sdk_arg!(@type $base) };
    (draft $base:ident) => { $crate::sdk_arg!(@type $base) };
    (copied $base:ident) => { $crate::sdk_arg!(@type $base) };
    // The SDK's type of each base kind: the SDK's kind table.
    (@type Str) => { str };
    (@type User) => { $crate::sdk::User };
    (@type Post) => { $crate::sdk::Post };
    (@type Topic) => { $crate::sdk::Topic };
    (@type Bool) => { bool };
    // A kind as the table writes it: its mode and base kind from the table's kinds.
    ($kind:ident) => { $crate::reexports::__arg_kind!($kind [$crate::sdk_arg]) };
}

/// A hook answer's type in the SDK, by the hook table's `returns`: `sdk_returns!(User)`
/// is `Option<User>`.
#[macro_export]
macro_rules! sdk_returns {
    (Nothing) => { () };
    (User) => { Option<$crate::sdk::User> };
    (True) => { bool };
    (Post) => { $crate::sdk::Post };
    (Topic) => { $crate::sdk::Topic };
}

macro_rules! declare_sdk_traits {
    ($(
        $hook:ident {
            name: $name:literal,
            args: ($($arg:ident : $mode:ident $base:ident),*),
            returns: $returns:ident,
            sdk: $sdk_trait:ident :: $sdk_method:ident,
            since: $since:literal,
            doc: $doc:literal,
        }
    )*) => {
        $(
            #[doc = $doc]
            #[doc = concat!(
                "\n\nImplement it and list `", stringify!($sdk_trait),
                "` in `export_plugin!`'s `hooks`. Since plugin-abi ", $since, "."
            )]
            pub trait $sdk_trait: Send + Sync {
                /// The impl's place in its chain unless `flaskbb.toml` says otherwise.
                const ORDER: HookOrder = HookOrder::NORMAL;
                #[doc = concat!("The impl of `", $name, "`.")]
                fn $sdk_method(
                    &self,
                    cx: &Ctx<'_>,
                    $($arg: crate::sdk_arg!($mode $base)),*
                ) -> HookResult<crate::sdk_returns!($returns)>;
            }
        )*

        /// Every hook's SDK trait, for the prelude.
        pub mod hook_traits {
            pub use super::{$($sdk_trait),*};
        }
    };
}

flaskbbd_hooks::for_each_hook! {
    rows: all,
    fields: [name, args, returns, sdk, since, doc],
    then: declare_sdk_traits,
}

/// Converts a hook's argument from its vtable type to its SDK type (`RStr` to `&str`,
/// a draft post to an owned one); the identity otherwise.
#[doc(hidden)]
pub trait FromAbi<A> {
    /// The conversion.
    fn from_abi(a: A) -> Self;
}

impl<T> FromAbi<T> for T {
    fn from_abi(a: T) -> T {
        a
    }
}

impl<'a> FromAbi<RStr<'a>> for &'a str {
    fn from_abi(a: RStr<'a>) -> &'a str {
        a.as_str()
    }
}

impl<'a> FromAbi<&'a Post> for Post {
    fn from_abi(a: &'a Post) -> Post {
        a.clone()
    }
}

impl<'a> FromAbi<&'a Topic> for Topic {
    fn from_abi(a: &'a Topic) -> Topic {
        a.clone()
    }
}

impl<T> FromAbi<ROption<T>> for Option<T> {
    fn from_abi(a: ROption<T>) -> Option<T> {
        a.into_option()
    }
}

/// Converts a hook's answer from its SDK type to its vtable type (`Option` to
/// `ROption`); the identity otherwise.
#[doc(hidden)]
pub trait IntoAbi<A> {
    /// The conversion.
    fn into_abi(self) -> A;
}

impl<T> IntoAbi<T> for T {
    fn into_abi(self) -> T {
        self
    }
}

impl<T> IntoAbi<ROption<T>> for Option<T> {
    fn into_abi(self) -> ROption<T> {
        self.into()
    }
}

/// A wrapper around whole chains (pluggy's hookwrapper): `before` runs before the
/// first impl, `after` sees the outcome and returns it or a replacement.
pub trait HookWrapper: Send + Sync {
    /// The wrapper's place among the wrappers unless `flaskbb.toml` says otherwise.
    const ORDER: HookOrder = HookOrder::NORMAL;
    /// The hooks this wrapper wraps.
    const WRAPS: &'static [&'static str] = hooks::ALL;
    /// Runs before the chain's first impl; an error ends the call.
    fn before(&self, _cx: &Ctx<'_>, _call: &HookCall) -> HookResult<()> {
        Ok(())
    }
    /// Runs after the chain: returns the outcome, or a replacement.
    fn after(&self, _cx: &Ctx<'_>, _call: &HookCall, outcome: Outcome) -> Outcome {
        outcome
    }
}

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The message a panic carries, when it is text (`panic!("...")` carries a `&str` or a
/// `String`).
pub fn panic_payload(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

/// Installs (once per plugin library) a panic hook that records the panic's message
/// and location for [`guard`] instead of printing it: the daemon logs it, with the
/// instance's name, from the error the hook returns.
#[doc(hidden)]
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = panic_payload(info.payload()).unwrap_or("a panic with a non-string payload");
            let text = match info.location() {
                Some(l) => format!("panicked at {}:{}: {msg}", l.file(), l.line()),
                None => format!("panicked: {msg}"),
            };
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
        }));
    });
}

/// Runs one hook body, turning a panic into `HookError::Failed` with its message.
#[doc(hidden)]
pub fn guard<T>(f: impl FnOnce() -> HookResult<T>) -> RResult<T, ErrorBox> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => ROk(v),
        Ok(Err(e)) => RErr(e.into_abi()),
        Err(_) => {
            let text = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "panicked".to_owned());
            RErr(HookError::failed(text).into_abi())
        }
    }
}

/// Runs a wrapper's `after`, which cannot fail: a panic there becomes a failed outcome.
#[doc(hidden)]
pub fn guard_after(f: impl FnOnce() -> Outcome, decided_by: Option<String>) -> WrapOutcome {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(o) => o.into_abi(),
        Err(_) => {
            let text = LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "panicked".to_owned());
            Outcome {
                result: Err(HookError::failed(text)),
                decided_by,
                duration: Duration::ZERO,
            }
            .into_abi()
        }
    }
}

/// Converts a plugin's `Result<Option<T>>` answer.
#[doc(hidden)]
pub fn ropt<T>(v: Option<T>) -> ROption<T> {
    v.into()
}

/// Exports a plugin library: its manifest, and an adapter that maps the SDK traits the
/// type implements onto the ABI's hooks.
///
/// ```ignore
/// plugin_abi::export_plugin! {
///     plugin: Hello,
///     name: "hello",
///     description: "Greets every user who logs in",
///     hooks: [PostAuthenticationHandler],
/// }
/// ```
///
/// Each entry of `hooks` is an SDK trait the type implements, optionally followed by
/// `=> ORDER` to change the trait's default [`HookOrder`] for this library.
#[macro_export]
macro_rules! export_plugin {
    (
        plugin: $ty:ty,
        name: $name:expr,
        description: $desc:expr,
        hooks: [ $( $tr:ident $( => $order:expr )? ),* $(,)? ] $(,)?
    ) => {
        #[doc(hidden)]
        pub struct __FlaskbbdAdapter($ty);

        impl $crate::abi::Plugin for __FlaskbbdAdapter {
            $( $crate::__flaskbbd_methods!($tr, $ty); )*
        }

        #[doc(hidden)]
        pub extern "C" fn __flaskbbd_manifest() -> $crate::abi::Manifest {
            #[allow(unused_mut)]
            let mut hooks: ::std::vec::Vec<$crate::abi::HookDecl> = ::std::vec::Vec::new();
            $(
                {
                    #[allow(unused_variables)]
                    let order = <$ty as $crate::sdk::$tr>::ORDER;
                    $( let order: $crate::sdk::HookOrder = $order; )?
                    $crate::__flaskbbd_decls!($tr, $ty, order, hooks);
                }
            )*
            $crate::abi::Manifest {
                name: ($name).into(),
                version: env!("CARGO_PKG_VERSION").into(),
                description: ($desc).into(),
                hooks: hooks.into(),
                panic_unwind: cfg!(panic = "unwind"),
            }
        }

        #[doc(hidden)]
        pub extern "C" fn __flaskbbd_new(
            instance: $crate::reexports::RStr<'_>,
            config_json: $crate::reexports::RStr<'_>,
            base_dir: $crate::reexports::RStr<'_>,
        ) -> $crate::reexports::RResult<$crate::abi::PluginBox, $crate::abi::ErrorBox> {
            $crate::sdk::install_panic_hook();
            let init =
                $crate::sdk::Init::new(instance.as_str(), config_json.as_str(), base_dir.as_str());
            match $crate::sdk::guard(|| {
                <$ty as $crate::sdk::PluginInstance>::new(&init).map_err($crate::sdk::HookError::failed)
            }) {
                $crate::reexports::ROk(p) => $crate::reexports::ROk($crate::abi::Plugin_TO::from_value(
                    __FlaskbbdAdapter(p),
                    $crate::reexports::TD_Opaque,
                )),
                $crate::reexports::RErr(e) => $crate::reexports::RErr(e),
            }
        }

        // The library's root module, which the daemon's loader reads (exported by its
        // symbol; the module only keeps it out of the plugin crate's public items).
        mod __flaskbbd_root {
            #[::abi_stable::export_root_module]
            pub fn __flaskbbd_root_module() -> $crate::abi::PluginMod_Ref {
                use $crate::reexports::PrefixTypeTrait;
                $crate::abi::PluginMod {
                    manifest: super::__flaskbbd_manifest,
                    new: super::__flaskbbd_new,
                }
                .leak_into_prefix()
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __flaskbbd_decls {
    (HookWrapper, $ty:ty, $order:ident, $hooks:ident) => {
        for h in <$ty as $crate::sdk::HookWrapper>::WRAPS {
            $hooks.push($order.decl(h, true));
        }
    };
    ($tr:ident, $ty:ty, $order:ident, $hooks:ident) => {
        $hooks.push($order.decl($crate::__flaskbbd_hook_name!($tr), false));
    };
}

macro_rules! declare_export_helpers {
    ($d:tt $(
        $hook:ident {
            constant: $constant:ident,
            method: $method:ident,
            args: ($($arg:ident : $mode:ident $base:ident),*),
            returns: $returns:ident,
            sdk: $sdk_trait:ident :: $sdk_method:ident,
        }
    )*) => {
        /// The hook an SDK trait implements, by the trait's name (for the manifest).
        #[doc(hidden)]
        #[macro_export]
        macro_rules! __flaskbbd_hook_name {
            $(
                ($sdk_trait) => { $crate::hooks::$constant };
            )*
        }

        /// The vtable methods of an SDK trait: each converts its arguments, calls the
        /// plugin's impl inside `guard` (a panic becomes an error), converts back.
        #[doc(hidden)]
        #[macro_export]
        macro_rules! __flaskbbd_methods {
            $(
                ($sdk_trait, $d ty:ty) => {
                    fn $method(
                        &self,
                        host: $crate::abi::HostRef<'_>,
                        $($arg: $crate::abi::arg::$base<'_>),*
                    ) -> $crate::reexports::RResult<$crate::abi::ret::$returns, $crate::abi::ErrorBox> {
                        let cx = $crate::sdk::Ctx::new(host);
                        $crate::sdk::guard(|| {
                            <$d ty as $crate::sdk::$sdk_trait>::$sdk_method(
                                &self.0,
                                &cx,
                                $($crate::sdk::FromAbi::from_abi($arg)),*
                            )
                            .map($crate::sdk::IntoAbi::into_abi)
                        })
                    }
                };
            )*
            (HookWrapper, $d ty:ty) => {
                $crate::__flaskbbd_wrapper_methods!($d ty);
            };
        }
    };
}

flaskbbd_hooks::for_each_hook! {
    rows: all,
    fields: [constant, method, args, returns, sdk],
    then: declare_export_helpers,
    pass: [$],
}

/// The vtable methods of [`HookWrapper`].
#[doc(hidden)]
#[macro_export]
macro_rules! __flaskbbd_wrapper_methods {
    ($ty:ty) => {
        fn wrap_before(
            &self,
            host: $crate::abi::HostRef<'_>,
            call: &$crate::abi::HookCall,
        ) -> $crate::reexports::RResult<(), $crate::abi::ErrorBox> {
            let cx = $crate::sdk::Ctx::new(host);
            $crate::sdk::guard(|| <$ty as $crate::sdk::HookWrapper>::before(&self.0, &cx, call))
        }
        fn wrap_after(
            &self,
            host: $crate::abi::HostRef<'_>,
            call: &$crate::abi::HookCall,
            outcome: $crate::abi::WrapOutcome,
        ) -> $crate::abi::WrapOutcome {
            let cx = $crate::sdk::Ctx::new(host);
            let outcome = $crate::sdk::Outcome::from_abi(&outcome);
            let decided_by = outcome.decided_by.clone();
            $crate::sdk::guard_after(
                || <$ty as $crate::sdk::HookWrapper>::after(&self.0, &cx, call, outcome),
                decided_by,
            )
        }
    };
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[test]
    fn addresses_are_counted_per_ipv4_address_and_per_ipv6_64() {
        use super::address_bucket as b;
        assert_eq!(b("203.0.113.7"), "203.0.113.7");
        assert_eq!(b(" 203.0.113.7:5678 "), "203.0.113.7");
        assert_eq!(b("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(b("2001:db8:1:2::ffff"), b("2001:db8:1:2:ab::1"));
        assert_ne!(b("2001:db8:1:2::1"), b("2001:db8:1:3::1"));
        assert_eq!(b("[2001:db8::1]:443"), "2001:db8::/64");
        assert_eq!(b("::ffff:198.51.100.1"), "198.51.100.1");
        assert_eq!(b("not an address"), "not an address");
        assert_eq!(b(&"é".repeat(40)).len(), 64);
    }

    #[test]
    fn one_address_has_one_spelling() {
        use super::address_bucket as b;
        assert_eq!(b("203.0.113.066"), "203.0.113.66");
        assert_eq!(b("203.000.113.66:8080"), "203.0.113.66");
        assert_eq!(b("[::ffff:203.0.113.66]:80"), "203.0.113.66");
        assert_eq!(b("::FFFF:203.0.113.066"), "203.0.113.66");
        assert_eq!(b("2001:DB8:1:2::1"), b("2001:0db8:0001:0002:0:0:0:9"));
        assert_eq!(b("fe80::1%eth0"), "fe80::/64");
        // Not addresses: kept as text, in one case.
        assert_eq!(b("203.0.113.256"), "203.0.113.256");
        assert_eq!(b("203.0.113.0066"), "203.0.113.0066");
        assert_eq!(b("Proxy-A"), b("proxy-a"));
    }

    use super::Init;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Config {
        words: Vec<String>,
        #[serde(default)]
        deny: Vec<String>,
        #[serde(default)]
        limits: Limits,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Limits {
        #[serde(default)]
        max: u32,
    }

    fn config(json: &str) -> Result<Config, String> {
        Init::new("wf", json, ".").config()
    }

    #[test]
    fn a_key_the_plugin_does_not_have_is_refused_by_name() {
        assert_eq!(
            config(r#"{"words": [], "denylist": ["x"], "limits": {"maxx": 1}}"#),
            Err("config key denylist: not a key of this plugin (a typo? its documentation lists its keys); \
                 config key limits.maxx: not a key of this plugin (a typo? its documentation lists its keys)"
                .into())
        );
    }

    #[test]
    fn a_wrong_value_names_its_key_and_a_missing_one_the_table() {
        assert_eq!(
            config(r#"{"words": 3}"#),
            Err("config key words: invalid type: integer `3`, expected a sequence".into())
        );
        assert_eq!(
            config(r#"{"limits": {"max": "ten"}, "words": []}"#),
            Err("config key limits.max: invalid type: string \"ten\", expected u32".into())
        );
        assert_eq!(config("{}"), Err("config: missing field `words`".into()));
    }

    #[test]
    fn a_good_table_deserializes() {
        assert_eq!(
            config(r#"{"words": ["a"]}"#),
            Ok(Config {
                words: vec!["a".into()],
                deny: vec![],
                limits: Limits::default()
            })
        );
    }
}
