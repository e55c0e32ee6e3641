//! FlaskBB's hooks as plugins meet them: [`Hook`], each hook's name exactly as
//! `flaskbb.plugins.spec` spells it, and what its chain does with answers and errors.
//! Generated from the table in `flaskbbd-hooks` (`for_each_hook!`), like the ABI's
//! vtable and the SDK's traits.

/// The control-flow error that ends a hook's chain with its reason. Any other error
/// from an impl ends the chain too, but fails the request closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepts {
    /// `StopAuthentication`: the login (or reauthentication) is refused.
    Stop,
    /// `ForceLogout`: the client must log the user out.
    ForceLogout,
    /// `Rejected`: the save must not happen.
    Rejected,
    /// No control-flow error: every impl runs.
    Nothing,
}

/// What an impl's answer contributes to its hook's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returns {
    /// Nothing: the chain ignores results.
    Nothing,
    /// A user (a `firstresult` answer), or nothing to let the next impl try.
    User,
    /// `true` (a `firstresult` answer), or `false` to let the next impl try.
    True,
    /// The post, possibly changed, handed to the next impl.
    Post,
    /// The topic, possibly changed, handed to the next impl.
    Topic,
}

macro_rules! declare_hooks {
    ($(
        $hook:ident {
            name: $name:literal,
            constant: $constant:ident,
            returns: $returns:ident,
            firstresult: $firstresult:literal,
            accepts: $accepts:ident,
            since: $since:literal,
            doc: $doc:literal,
        }
    )*) => {
        $(
            #[doc = concat!("`", $name, "`.")]
            pub const $constant: &str = $name;
        )*

        /// Every hook's name, in the order of the hook table.
        pub const ALL: &[&str] = &[$($name),*];

        /// One FlaskBB hook.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Hook {
            $(
                #[doc = $doc]
                $hook,
            )*
        }

        impl Hook {
            /// Every hook, in the order of the hook table.
            pub const ALL: [Hook; [$($name),*].len()] = [$(Hook::$hook),*];

            /// FlaskBB's name, e.g. `flaskbb_authenticate`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Hook::$hook => $name,)*
                }
            }

            /// The hook called `name`.
            pub fn from_name(name: &str) -> Option<Hook> {
                Hook::ALL.into_iter().find(|h| h.name() == name)
            }

            /// pluggy's `firstresult`: the chain stops at the first answer.
            pub const fn firstresult(self) -> bool {
                match self {
                    $(Hook::$hook => $firstresult,)*
                }
            }

            /// The control-flow error that ends this hook's chain with its reason.
            pub const fn accepts(self) -> Accepts {
                match self {
                    $(Hook::$hook => Accepts::$accepts,)*
                }
            }

            /// What an impl's answer contributes to the chain.
            pub const fn returns(self) -> Returns {
                match self {
                    $(Hook::$hook => Returns::$returns,)*
                }
            }

            /// The plugin-abi version that added the hook.
            pub const fn since(self) -> &'static str {
                match self {
                    $(Hook::$hook => $since,)*
                }
            }
        }
    };
}

flaskbbd_hooks::for_each_hook! {
    rows: all,
    fields: [name, constant, returns, firstresult, accepts, since, doc],
    then: declare_hooks,
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
