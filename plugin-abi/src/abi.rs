//! The FFI-safe types that cross the boundary between the daemon and a plugin.
//!
//! Everything here is `#[derive(StableAbi)]` and checked by abi_stable when a plugin
//! is loaded. Rules for changing this module in a 1.x release (see `CHANGELOG.md`):
//! plain structs and exhaustive enums never change; hooks are appended to [`Plugin`]
//! after the last prefix field, with a default body; error and value variants are
//! added to the `NonExhaustive` enums only; fields are appended to [`PluginMod`] only.
//! Plugin authors do not use this module directly: the [`crate::sdk`] wraps it.

// abi_stable's derives generate `Foo_Ref`-style names and impls inside constants.
#![allow(non_camel_case_types, non_local_definitions)]

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    nonexhaustive_enum::{NonExhaustive, NonExhaustiveFor},
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, ROption, RResult, RStr, RString, RVec, Tuple2},
    StableAbi,
};

/// A forum user as plugins see it (never with the password hash).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// FlaskBB's `users.id`.
    pub id: i64,
    /// The username.
    pub username: RString,
    /// The email address.
    pub email: RString,
    /// Whether the account is activated.
    pub activated: bool,
    /// Failed logins since the last success.
    pub login_attempts: i32,
    /// RFC 3339, UTC.
    pub last_failed_login: ROption<RString>,
    /// RFC 3339, UTC.
    pub date_joined: RString,
    /// The primary group's id.
    pub primary_group_id: ROption<i64>,
    /// Names of the primary and secondary groups.
    pub groups: RVec<RString>,
    /// True when any of the user's groups is a banned group.
    pub banned: bool,
}

/// A post as FlaskBB hands it to `flaskbb_event_post_save_*`. For a new post the
/// before-hook runs before user, topic and date are set, so those are optional.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Default)]
pub struct Post {
    /// The post's id, once saved.
    pub id: ROption<i64>,
    /// The topic it belongs to.
    pub topic_id: ROption<i64>,
    /// The author's id.
    pub user_id: ROption<i64>,
    /// The author's name.
    pub username: ROption<RString>,
    /// The text (Markdown, as FlaskBB stores it).
    pub content: RString,
    /// RFC 3339, UTC.
    pub date_created: ROption<RString>,
}

/// A topic as FlaskBB hands it to `flaskbb_event_topic_save_*`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq, Default)]
pub struct Topic {
    /// The topic's id, once saved.
    pub id: ROption<i64>,
    /// The forum it belongs to.
    pub forum_id: ROption<i64>,
    /// The title.
    pub title: RString,
    /// The author's id.
    pub user_id: ROption<i64>,
    /// The author's name.
    pub username: ROption<RString>,
    /// The content of the topic's first post, when the caller has it.
    pub content: ROption<RString>,
}

/// Where a hook impl sits in its chain: pluggy's `tryfirst` / normal / `trylast`.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tier(pub u8);

impl Tier {
    /// Before the normal impls (pluggy's `tryfirst`).
    pub const TRYFIRST: Tier = Tier(0);
    /// Unmarked.
    pub const NORMAL: Tier = Tier(1);
    /// After the normal impls (pluggy's `trylast`).
    pub const TRYLAST: Tier = Tier(2);

    /// The name used in `flaskbb.toml` and in `flaskbbd hooks`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::TRYFIRST => "tryfirst",
            Tier::NORMAL => "normal",
            Tier::TRYLAST => "trylast",
            _ => "unknown",
        }
    }

    /// Parses a tier name as written in `flaskbb.toml`.
    pub fn from_name(name: &str) -> Option<Tier> {
        match name {
            "tryfirst" => Some(Tier::TRYFIRST),
            "normal" => Some(Tier::NORMAL),
            "trylast" => Some(Tier::TRYLAST),
            _ => None,
        }
    }
}

/// One hook a plugin implements, with the default ordering the operator may override.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct HookDecl {
    /// FlaskBB's hook name, e.g. `flaskbb_authenticate`.
    pub hook: RString,
    /// Its tier.
    pub tier: Tier,
    /// Its priority within the tier (higher runs first).
    pub priority: i32,
    /// Instance names this impl must run before.
    pub before: RVec<RString>,
    /// Instance names this impl must run after.
    pub after: RVec<RString>,
    /// A wrapper runs around the whole chain instead of in it.
    pub wrapper: bool,
}

/// What a plugin library says about itself; read before any instance is made.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct Manifest {
    /// The plugin's name.
    pub name: RString,
    /// The plugin's own version (its crate's).
    pub version: RString,
    /// What it does, in one line.
    pub description: RString,
    /// The hooks it implements, with their default order.
    pub hooks: RVec<HookDecl>,
    /// `cfg!(panic = "unwind")` in the plugin's own build. The daemon refuses a
    /// plugin built with `panic = "abort"`: it could not contain a panic.
    pub panic_unwind: bool,
}

/// The errors a hook returns. `NotImplemented` is what a hook the plugin does not
/// implement answers (including hooks newer than the plugin's `plugin-abi`).
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 8], traits(Debug, Clone, PartialEq))))]
#[non_exhaustive]
pub enum AbiError {
    /// The plugin does not implement the hook.
    NotImplemented,
    /// FlaskBB's `StopAuthentication`.
    StopAuthentication {
        /// For the person logging in.
        reason: RString,
    },
    /// FlaskBB's `ForceLogout`.
    ForceLogout {
        /// For the person logged out.
        reason: RString,
    },
    /// A save refused.
    Rejected {
        /// For the person who wrote the post.
        reason: RString,
    },
    /// Anything else: the request fails closed.
    Failed {
        /// What failed, for the log.
        message: RString,
    },
}

/// [`AbiError`] as it crosses the boundary: a newer plugin may send variants this
/// build does not know, which the daemon treats as a failure.
pub type ErrorBox = NonExhaustiveFor<AbiError>;

impl AbiError {
    /// Wraps the error for the boundary.
    pub fn boxed(self) -> ErrorBox {
        NonExhaustive::new(self)
    }
}

/// What a chain produced, as a wrapper sees it after the chain has run.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
#[sabi(kind(WithNonExhaustive(size = [usize; 8], traits(Debug, Clone, PartialEq))))]
#[non_exhaustive]
pub enum AbiValue {
    /// No result (a hook whose result is ignored, or a firstresult hook nobody answered).
    Nothing,
    /// A firstresult hook's user.
    User(RBox<User>),
    /// `flaskbb_reauth_attempt`'s success.
    True,
    /// A save_before chain's post.
    Post(RBox<Post>),
    /// A save_before chain's topic.
    Topic(RBox<Topic>),
}

/// [`AbiValue`] as it crosses the boundary.
pub type ValueBox = NonExhaustiveFor<AbiValue>;

/// One call of a hook chain, as a wrapper sees it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct HookCall {
    /// FlaskBB's name of the hook.
    pub hook: RString,
    /// The call's arguments as a JSON object, never with the secret.
    pub args_json: RString,
}

/// The outcome of a chain as a wrapper sees it (and may replace).
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct WrapOutcome {
    /// The chain's value, or the error that ended it.
    pub result: RResult<ValueBox, ErrorBox>,
    /// The instance whose answer or error decided the outcome, if one did.
    pub decided_by: ROption<RString>,
    /// How long the chain took, in microseconds.
    pub duration_us: u64,
}

/// Severity of a message a plugin logs through the host.
#[repr(transparent)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLevel(pub u8);

impl LogLevel {
    /// Something failed.
    pub const ERROR: LogLevel = LogLevel(1);
    /// Something looks wrong.
    pub const WARN: LogLevel = LogLevel(2);
    /// What happened.
    pub const INFO: LogLevel = LogLevel(3);
    /// Detail for finding a problem.
    pub const DEBUG: LogLevel = LogLevel(4);
}

/// What the daemon offers a plugin during a hook call: it is made for each call and
/// must not be kept past it.
#[sabi_trait]
pub trait Host: Send + Sync {
    /// The instance name this call is for (as in `flaskbb.toml`).
    fn instance_name(&self) -> RString;
    /// Logs through the daemon's log, tagged with the instance and hook.
    fn log(&self, level: LogLevel, message: RStr<'_>);
    /// A user by username or email, case as stored.
    fn find_user(&self, identifier: RStr<'_>) -> RResult<ROption<User>, ErrorBox>;
    /// A user by id.
    fn find_user_by_id(&self, id: i64) -> RResult<ROption<User>, ErrorBox>;
    /// One value of the request context the client sent (`remote_addr`, `otp`, …).
    fn context(&self, key: RStr<'_>) -> ROption<RString>;
    /// The whole request context.
    fn context_all(&self) -> RVec<Tuple2<RString, RString>>;
    /// The instance's configuration (its `config` table in `flaskbb.toml`) as JSON.
    fn config_json(&self) -> RString;
    /// A value from the instance's own key-value store.
    fn store_get(&self, key: RStr<'_>) -> RResult<ROption<RString>, ErrorBox>;
    /// Sets (or with `RNone`, deletes) a value in the instance's own key-value store.
    /// Written when the request commits, together with the request's other changes.
    #[sabi(last_prefix_field)]
    fn store_set(&self, key: RStr<'_>, value: ROption<RStr<'_>>) -> RResult<(), ErrorBox>;
    /// Creates (or finds, when it exists) a local user for an identity an external
    /// provider vouched for: activated, in the Member group, with no local password.
    /// Written at once, so the user has an id. Added in plugin-abi 1.1.0.
    fn provision_user(&self, _username: RStr<'_>, _email: RStr<'_>) -> RResult<User, ErrorBox> {
        RResult::RErr(AbiError::NotImplemented.boxed())
    }
    /// Asks the daemon to hold this request's answer back by at least `ms`
    /// milliseconds, without holding a thread (a rate limiter's penalty). Added in
    /// plugin-abi 1.1.0.
    fn delay_answer(&self, _ms: u64) {}
    /// Tells the client that this request could go further with `key` in its
    /// context (a second factor's `otp`): an `AuthenticationFailed` answer then lists
    /// it in `ask`, so that a login page can show the field. Added in plugin-abi 1.2.0.
    fn ask_for(&self, _key: RStr<'_>) {}
    /// Failures counted under `key` in this instance's penalty counts, shared by every
    /// daemon on the store and kept across restarts; 0 once the window they were
    /// counted with has passed since the last one. Reads the store, not this request's
    /// own pending counts. Added in plugin-abi 1.3.0.
    fn penalty_get(&self, _key: RStr<'_>) -> RResult<u32, ErrorBox> {
        not_implemented()
    }
    /// Counts one failure under `key`, at the request's commit, in one atomic upsert:
    /// the count restarts at 1 when the last failure is older than `window_ms`.
    /// Added in plugin-abi 1.3.0.
    fn penalty_add(&self, _key: RStr<'_>, _window_ms: u64) -> RResult<(), ErrorBox> {
        not_implemented()
    }
    /// Forgets the failures counted under `key`, at the request's commit. Added in
    /// plugin-abi 1.3.0.
    fn penalty_clear(&self, _key: RStr<'_>) -> RResult<(), ErrorBox> {
        not_implemented()
    }
    /// Replaces this instance's value for `key` with `value` (`RNone`: deletes it)
    /// only if it is still `expected` (`RNone`: absent), at once and atomically in
    /// the store, not at the request's commit; answers whether it did. Of two
    /// concurrent swaps from one value, on any daemon on the store, exactly one
    /// succeeds: what makes a one-time code single-use. Compares with the store as
    /// committed (not this request's own pending `store_set`s). Added in plugin-abi
    /// 1.4.0; an older daemon answers `NotImplemented`.
    fn store_swap(
        &self,
        _key: RStr<'_>,
        _expected: ROption<RStr<'_>>,
        _value: ROption<RStr<'_>>,
    ) -> RResult<bool, ErrorBox> {
        not_implemented()
    }
}

/// The host as handed to one hook call.
pub type HostRef<'a> = Host_TO<'a, abi_stable::sabi_types::RRef<'a, ()>>;

fn not_implemented<T>() -> RResult<T, ErrorBox> {
    RResult::RErr(AbiError::NotImplemented.boxed())
}

/// The types of a hook's arguments in the vtable, by the hook table's base kinds (a
/// view's `args`, `flaskbbd-hooks`): the SDK's ABI table. `Secret`, `DraftPost` and
/// `DraftTopic` name the same types by the kinds the table writes.
pub mod arg {
    use abi_stable::std_types::RStr;

    /// Text the client sent.
    pub type Str<'a> = RStr<'a>;
    /// A forum user.
    pub type User<'a> = &'a super::User;
    /// A post.
    pub type Post<'a> = &'a super::Post;
    /// A topic.
    pub type Topic<'a> = &'a super::Topic;
    /// A flag (the vtable writes it `bool`: see `declare_plugin_trait`).
    pub type Bool<'a> = bool;

    /// The password.
    pub type Secret<'a> = Str<'a>;
    /// A post about to be saved.
    pub type DraftPost<'a> = Post<'a>;
    /// A topic about to be saved.
    pub type DraftTopic<'a> = Topic<'a>;
}

/// The types of a hook's answer in the vtable, by the hook table's `returns`.
pub mod ret {
    use abi_stable::std_types::ROption;

    /// Nothing (the chain ignores results).
    pub type Nothing = ();
    /// A firstresult hook's user, or nothing to let the next impl try.
    pub type User = ROption<super::User>;
    /// A firstresult hook's `true`, or `false` to let the next impl try.
    pub type True = bool;
    /// The post, possibly changed.
    pub type Post = super::Post;
    /// The topic, possibly changed.
    pub type Topic = super::Topic;
}

// The trait is built by munching the table into method signatures first and handing
// the finished body to `#[sabi_trait]` (an attribute sees its input before any macro
// in it expands). A `Bool` argument is written `bool`: abi_stable counts a function's
// lifetimes from its syntax, and `arg::Bool<'_>` would add one that 1.0's `bool` did
// not have (the layout check then refuses 1.0 plugins). The wrapper's parts sit
// between 1.0's hooks and the hooks added since (`optional`); a required hook after
// an optional one matches no rule.
macro_rules! declare_plugin_trait {
    ($($hook:ident $row:tt)*) => {
        declare_plugin_trait!(@required [] $($hook $row)*);
    };
    // 1.0's hooks, in 1.0's order.
    (@required $methods:tt
        $hook:ident {
            method: $method:ident,
            args: ($($arg:ident : $mode:ident $base:ident),*),
            returns: $returns:ident,
            since: $since:literal,
            optional: false,
            doc: $doc:literal,
        }
        $($rest:tt)*
    ) => {
        declare_plugin_trait!(@params $methods [$method $returns $since $doc] [] []
            $($arg: $base,)* ; [@required] $($rest)*);
    };
    // The last of 1.0's hooks: the wrapper's parts, the last prefix field.
    (@required [$($methods:tt)*] $($rest:tt)*) => {
        declare_plugin_trait!(@optional [
            $($methods)*
            /// A wrapper's part before the chain runs. An error here ends the call.
            fn wrap_before(&self, _host: HostRef<'_>, _call: &HookCall) -> RResult<(), ErrorBox> {
                not_implemented()
            }
            /// A wrapper's part after the chain ran: sees the outcome and returns it, or
            /// a replacement.
            #[sabi(last_prefix_field)]
            fn wrap_after(
                &self,
                _host: HostRef<'_>,
                _call: &HookCall,
                outcome: WrapOutcome,
            ) -> WrapOutcome {
                outcome
            }
        ] $($rest)*);
    };
    // The hooks added since, in the order they were added.
    (@optional
        $methods:tt
        $hook:ident {
            method: $method:ident,
            args: ($($arg:ident : $mode:ident $base:ident),*),
            returns: $returns:ident,
            since: $since:literal,
            optional: true,
            doc: $doc:literal,
        }
        $($rest:tt)*
    ) => {
        declare_plugin_trait!(@params $methods [$method $returns $since $doc] [] []
            $($arg: $base,)* ; [@optional] $($rest)*);
    };
    (@optional [$($methods:tt)*]) => {
        /// One plugin instance: one method per FlaskBB hook (generated from the hook
        /// table in `flaskbbd-hooks`), and a wrapper's two parts. Every method has a
        /// default body that answers `NotImplemented`, and methods after the last
        /// prefix field are optional in the vtable, so a plugin built against an older
        /// 1.x answers `NotImplemented` for hooks added later.
        #[sabi_trait]
        pub trait Plugin: Send + Sync {
            $($methods)*
        }
    };
    // A row's arguments are done: emit its method, go on with the rows.
    (@params [$($methods:tt)*] [$method:ident $returns:ident $since:literal $doc:literal]
        [$($params:tt)*] [$($names:tt)*] ; [$($state:tt)*] $($rest:tt)*) => {
        declare_plugin_trait!($($state)* [
            $($methods)*
            #[doc = $doc]
            #[doc = concat!("\n\nSince plugin-abi ", $since, ".")]
            fn $method(&self, _host: HostRef<'_>, $($params)*) -> RResult<ret::$returns, ErrorBox> {
                let _ = ($($names)*);
                not_implemented()
            }
        ] $($rest)*);
    };
    (@params $methods:tt $meta:tt [$($params:tt)*] [$($names:tt)*] $arg:ident : Bool, $($more:tt)*) => {
        declare_plugin_trait!(@params $methods $meta [$($params)* $arg: bool,] [$($names)* $arg,] $($more)*);
    };
    (@params $methods:tt $meta:tt [$($params:tt)*] [$($names:tt)*] $arg:ident : $base:ident, $($more:tt)*) => {
        declare_plugin_trait!(@params $methods $meta [$($params)* $arg: arg::$base<'_>,] [$($names)* $arg,] $($more)*);
    };
}

flaskbbd_hooks::for_each_hook! {
    rows: all,
    fields: [method, args, returns, since, optional, doc],
    then: declare_plugin_trait,
}

/// A plugin instance as the daemon holds it.
pub type PluginBox = Plugin_TO<'static, RBox<()>>;

/// The root module every plugin library exports (through [`crate::export_plugin!`]).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginMod_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The library's manifest.
    pub manifest: extern "C" fn() -> Manifest,
    /// Makes one instance from its name in `flaskbb.toml`, its `config` table as JSON,
    /// and the directory of `flaskbb.toml` (what relative paths in `config` are
    /// relative to).
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn(
        instance: RStr<'_>,
        config_json: RStr<'_>,
        base_dir: RStr<'_>,
    ) -> RResult<PluginBox, ErrorBox>,
}

impl RootModule for PluginMod_Ref {
    declare_root_module_statics! {PluginMod_Ref}
    const BASE_NAME: &'static str = "flaskbbd_plugin";
    const NAME: &'static str = "flaskbbd plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// The Cargo package name of this crate, as abi_stable records it in layouts: the
/// daemon uses it to tell "a plugin of another version" from "not a flaskbbd plugin".
pub const ABI_PACKAGE: &str = env!("CARGO_PKG_NAME");
