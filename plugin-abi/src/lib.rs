//! `flaskbbd-plugin-abi`: the stable ABI between the flaskbbd daemon and its plugins,
//! and the SDK plugin authors write against.
//!
//! - [`abi`]: the FFI-safe types, the [`abi::Plugin`] vtable with one method per FlaskBB
//!   hook, the [`abi::Host`] API the daemon hands to each call, and the root module.
//! - [`sdk`]: FlaskBB's interfaces (`AuthenticationProvider`, …) as Rust traits and
//!   [`export_plugin!`], which maps a type onto the hooks and catches its panics.
//! - [`hooks`]: the hook names, as FlaskBB spells them.
//! - [`testing`]: an in-memory host for unit-testing a plugin's hooks.
//!
//! A plugin crate is a `cdylib` depending on this crate and on `abi_stable`; see
//! `docs/writing-plugins.md` and `plugins/hello` in the repository.

pub mod abi;
pub mod hooks;
pub mod sdk;
pub mod testing;

/// Everything a plugin's source file needs: `use plugin_abi::prelude::*;`.
pub mod prelude {
    pub use crate::export_plugin;
    pub use crate::sdk::hook_traits::*;
    pub use crate::sdk::{
        Ctx, HookCall, HookError, HookOrder, HookResult, HookWrapper, Init, LogLevel, Outcome,
        PluginInstance, Post, Tier, Topic, User, Value,
    };
}

/// Items the macros name; not part of the API authors use.
#[doc(hidden)]
pub mod reexports {
    pub use abi_stable::{
        erased_types::TD_Opaque,
        prefix_type::PrefixTypeTrait,
        std_types::{RErr, ROk, ROption, RResult, RStr},
    };
    /// The hook table's kinds (for `sdk_arg!`).
    #[doc(hidden)]
    pub use flaskbbd_hooks::__arg_kind;
}
