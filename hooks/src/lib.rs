//! FlaskBB's hooks as flaskbbd serves them, declared once.
//!
//! The hook table (in this file) holds one row per hook: its FlaskBB name, its
//! arguments, what an impl returns, whether the chain stops at the first answer
//! (pluggy's `firstresult`), which control-flow error ends the chain, the plugin SDK's
//! trait and method for it, and the Varlink method that fires it, if any. Everything
//! that is per hook is generated from this table: the ABI's vtable slots and the SDK
//! traits (`plugin-abi`), the daemon's hook enum, forwarding, argument records and
//! chain dispatch (`flaskbbd`), and the event methods' parsing (`flaskbbd-protocol`).
//!
//! Adding a hook is one row in `appended` (never in `prefix`, whose order is the
//! 1.0 vtable's), its declaration in the Varlink interface when clients fire it, and
//! its tests; `docs/architecture.md` walks through it.
//!
//! # Reading the table: views
//!
//! A generator does not parse the table's rows itself: it asks [`for_each_hook!`] for
//! a view, the rows it wants with the fields it uses, already normalized:
//!
//! ```text
//! flaskbbd_hooks::for_each_hook! {
//!     rows: all,                              // or `wired`
//!     fields: [name, method, args, returns],  // any of the fields below, in any order
//!     then: declare_dispatch,                 // the generator's macro
//!     pass: [$],                              // optional: tokens put before the rows
//! }
//! ```
//!
//! calls
//!
//! ```text
//! declare_dispatch! {
//!     Authenticate { name: "flaskbb_authenticate", method: authenticate,
//!                    args: (identifier: lent Str, secret: secret Str), returns: User, }
//!     PostAuthenticate { ... }
//!     ...
//! }
//! ```
//!
//! one `Hook { field: value, ... }` per row, each field followed by a comma, in the
//! order `fields` names them. `rows: all` is every hook in the vtable's order (1.0's
//! hooks, then the ones added since, in the order they were added); `rows: wired` only
//! the hooks clients fire through `org.flaskbb.Events`, in the same order. The fields:
//!
//! | field | value |
//! |---|---|
//! | `name` | FlaskBB's name, a string literal: `"flaskbb_authenticate"` |
//! | `constant` | the name constant's identifier: `AUTHENTICATE` |
//! | `method` | the vtable's and the daemon's method: `authenticate` |
//! | `args` | `(name: mode Base, ...)`: each argument's name, mode and base kind (below) |
//! | `returns` | what an impl's answer contributes: `Nothing`, `User`, `True`, `Post`, `Topic` |
//! | `firstresult` | `true` or `false` |
//! | `accepts` | `Stop`, `ForceLogout`, `Rejected` or `Nothing` |
//! | `sdk` | the SDK's trait and method: `AuthenticationProvider::authenticate` |
//! | `wire` | the `org.flaskbb.Events` method, or `none` (in `rows: wired`, never `none`) |
//! | `since` | the plugin-abi version that added the hook: `"1.0.0"` |
//! | `optional` | `false` for plugin-abi 1.0's hooks (the vtable's prefix), `true` for the hooks added since (a plugin built before them answers "not implemented") |
//! | `doc` | the hook's doc, a string literal |
//!
//! # Argument kinds
//!
//! The table writes each argument with its kind; a view hands it on as its base kind
//! (what the value is, and so its type in each crate) and its mode (how a chain passes
//! it on). The kind table is `__arg_kind!` below: a new kind that is an existing base
//! kind in an existing mode is one line there; a new base kind also needs its entry in
//! each crate's one kind table (`docs/architecture.md` lists them).
//!
//! | argument kind | meaning | mode | base |
//! |---|---|---|---|
//! | `Str` | text the client sent (an identifier, a username) | `lent` | `Str` |
//! | `Secret` | the password: never logged, never shown to wrappers | `secret` | `Str` |
//! | `User` | a forum user | `lent` | `User` |
//! | `Post`, `Topic` | a post or topic as saved | `lent` | `Post`, `Topic` |
//! | `DraftPost`, `DraftTopic` | a post or topic about to be saved: each impl gets the one the impl before it returned | `draft` | `Post`, `Topic` |
//! | `Bool` | a flag (`is_new`) | `copied` | `Bool` |
//!
//! The modes: `lent`, the impl borrows the caller's value; `secret`, the same, and it
//! is never logged or shown; `draft`, the chain's value, handed from impl to impl
//! (the impl owns its copy); `copied`, passed by value.
//!
//! `returns` is what an impl's answer contributes to the chain: `Nothing` (ignored),
//! `User` or `True` (a `firstresult` hook's answer), `Post` or `Topic` (the draft,
//! handed on). `accepts` is the one control-flow error that ends the chain with its
//! reason (`Stop` for `StopAuthentication`, `ForceLogout`, `Rejected`, or `Nothing`);
//! any other error fails the request closed.

#![forbid(unsafe_code)]
#![no_std]

/// The hook table: hands `$callback!` the rows as written, preceded by
/// `pass: [...]` (the tokens after the callback, handed through):
///
/// ```text
/// $callback! {
///     pass: [ ... ],
///     prefix: [ $( $Hook { name, constant, method, args, returns, firstresult,
///                          accepts, sdk, wire, since, doc }, )* ],
///     appended: [ ...rows of the same shape... ],
/// }
/// ```
///
/// `prefix` holds the hooks of plugin-abi 1.0's vtable in its order, which never
/// changes; `appended` the hooks added since, in the order they were added (each is
/// optional in the vtable: an older plugin answers "not implemented"). An argument is
/// `name: Kind`. Read it through [`for_each_hook!`]'s views.
#[doc(hidden)]
#[macro_export]
macro_rules! __hook_table {
    ([$($callback:tt)*] $($pass:tt)*) => {
        $($callback)*! {
            pass: [$($pass)*],
            prefix: [
                Authenticate {
                    name: "flaskbb_authenticate",
                    constant: AUTHENTICATE,
                    method: authenticate,
                    args: (identifier: Str, secret: Secret),
                    returns: User,
                    firstresult: true,
                    accepts: Stop,
                    sdk: AuthenticationProvider::authenticate,
                    wire: none,
                    since: "1.0.0",
                    doc: "`flaskbb_authenticate(identifier, secret)`: finds and checks a user by username or email. A user ends the chain; nothing lets the next provider try; `StopAuthentication` ends the login.",
                },
                PostAuthenticate {
                    name: "flaskbb_post_authenticate",
                    constant: POST_AUTHENTICATE,
                    method: post_authenticate,
                    args: (user: User),
                    returns: Nothing,
                    firstresult: false,
                    accepts: Stop,
                    sdk: PostAuthenticationHandler::handle_post_auth,
                    wire: none,
                    since: "1.0.0",
                    doc: "`flaskbb_post_authenticate(user)`: runs once a provider found the user; `StopAuthentication` still refuses the login.",
                },
                AuthenticationFailed {
                    name: "flaskbb_authentication_failed",
                    constant: AUTHENTICATION_FAILED,
                    method: authentication_failed,
                    args: (identifier: Str),
                    returns: Nothing,
                    firstresult: false,
                    accepts: Nothing,
                    sdk: AuthenticationFailureHandler::handle_authentication_failure,
                    wire: none,
                    since: "1.0.0",
                    doc: "`flaskbb_authentication_failed(identifier)`: runs when a login was stopped; every impl runs.",
                },
                ReauthAttempt {
                    name: "flaskbb_reauth_attempt",
                    constant: REAUTH_ATTEMPT,
                    method: reauth_attempt,
                    args: (user: User, secret: Secret),
                    returns: True,
                    firstresult: true,
                    accepts: Stop,
                    sdk: ReauthenticateProvider::reauthenticate,
                    wire: none,
                    since: "1.0.0",
                    doc: "`flaskbb_reauth_attempt(user, secret)`: true confirms a logged-in user's password and ends the chain; false lets the next provider try.",
                },
                PostReauth {
                    name: "flaskbb_post_reauth",
                    constant: POST_REAUTH,
                    method: post_reauth,
                    args: (user: User),
                    returns: Nothing,
                    firstresult: false,
                    accepts: Stop,
                    sdk: PostReauthenticateHandler::handle_post_reauth,
                    wire: none,
                    since: "1.0.0",
                    doc: "`flaskbb_post_reauth(user)`: runs after a successful reauthentication; `StopAuthentication` still refuses it.",
                },
                ReauthFailed {
                    name: "flaskbb_reauth_failed",
                    constant: REAUTH_FAILED,
                    method: reauth_failed,
                    args: (user: User),
                    returns: Nothing,
                    firstresult: false,
                    accepts: ForceLogout,
                    sdk: ReauthenticateFailureHandler::handle_reauth_failure,
                    wire: none,
                    since: "1.0.0",
                    doc: "`flaskbb_reauth_failed(user)`: runs when reauthentication failed; `ForceLogout` makes the client log the user out.",
                },
                PostSaveBefore {
                    name: "flaskbb_event_post_save_before",
                    constant: POST_SAVE_BEFORE,
                    method: post_save_before,
                    args: (post: DraftPost),
                    returns: Post,
                    firstresult: false,
                    accepts: Rejected,
                    sdk: PostSaveBeforeHandler::post_save_before,
                    wire: PostSaveBefore,
                    since: "1.0.0",
                    doc: "`flaskbb_event_post_save_before(post)`: a post about to be saved; each impl returns it, possibly changed, to the next, and the client saves what the last returned. `Rejected` stops the save.",
                },
                PostSaveAfter {
                    name: "flaskbb_event_post_save_after",
                    constant: POST_SAVE_AFTER,
                    method: post_save_after,
                    args: (post: Post, is_new: Bool),
                    returns: Nothing,
                    firstresult: false,
                    accepts: Nothing,
                    sdk: PostSaveAfterHandler::post_save_after,
                    wire: PostSaveAfter,
                    since: "1.0.0",
                    doc: "`flaskbb_event_post_save_after(post, is_new)`: a post was saved (created when `is_new`).",
                },
                TopicSaveBefore {
                    name: "flaskbb_event_topic_save_before",
                    constant: TOPIC_SAVE_BEFORE,
                    method: topic_save_before,
                    args: (topic: DraftTopic),
                    returns: Topic,
                    firstresult: false,
                    accepts: Rejected,
                    sdk: TopicSaveBeforeHandler::topic_save_before,
                    wire: TopicSaveBefore,
                    since: "1.0.0",
                    doc: "`flaskbb_event_topic_save_before(topic)`: a topic about to be saved, handed from impl to impl as for posts. `Rejected` stops the save.",
                },
                TopicSaveAfter {
                    name: "flaskbb_event_topic_save_after",
                    constant: TOPIC_SAVE_AFTER,
                    method: topic_save_after,
                    args: (topic: Topic, is_new: Bool),
                    returns: Nothing,
                    firstresult: false,
                    accepts: Nothing,
                    sdk: TopicSaveAfterHandler::topic_save_after,
                    wire: TopicSaveAfter,
                    since: "1.0.0",
                    doc: "`flaskbb_event_topic_save_after(topic, is_new)`: a topic was saved (created when `is_new`).",
                },
            ],
            appended: [
                UserRegistered {
                    name: "flaskbb_event_user_registered",
                    constant: USER_REGISTERED,
                    method: user_registered,
                    args: (username: Str),
                    returns: Nothing,
                    firstresult: false,
                    accepts: Nothing,
                    sdk: UserRegisteredHandler::user_registered,
                    wire: UserRegistered,
                    since: "1.1.0",
                    doc: "`flaskbb_event_user_registered(username)`: a new member registered.",
                },
            ],
        }
    };
}

/// The hook table, read: a view of its rows, normalized (see the crate's doc for the
/// views and their fields):
///
/// ```text
/// flaskbbd_hooks::for_each_hook! {
///     rows: all | wired,
///     fields: [ field, ... ],
///     then: callback,
///     pass: [ tokens ],   // optional
/// }
/// ```
///
/// calls `callback! { tokens $( $Hook { field: value, ... } )* }`.
///
/// `for_each_hook!(callback)` (or `for_each_hook!(callback, tokens)`) hands the
/// table's rows as written instead, split into `prefix` and `appended`, with
/// `pass: [tokens]` (the form of flaskbbd-hooks 1.0, which plugin-abi 1.2 to 1.4 read).
#[macro_export]
macro_rules! for_each_hook {
    (
        rows: $rows:ident,
        fields: [$($field:ident),* $(,)?],
        then: $($callback:ident)::+
        $(, pass: [$($pass:tt)*])? $(,)?
    ) => {
        $crate::__hook_table! {
            [$crate::__hook_view]
            @view [$rows] [$($field)*] [$($callback)::+] [$($($pass)*)?]
        }
    };
    ($($callback:ident)::+ $(, $($pass:tt)*)?) => {
        $crate::__hook_table! {[$($callback)::+] $($($pass)*)?}
    };
}

/// The kind table: each argument kind as its mode and base kind (see the crate's doc),
/// handed on to `$then!` after the tokens `$k`: `__arg_kind!(DraftPost [m] a b)` is
/// `m! { a b draft Post }`.
#[doc(hidden)]
#[macro_export]
macro_rules! __arg_kind {
    (Str [$($then:tt)*] $($k:tt)*) => { $($then)*! { $($k)* lent Str } };
    (Secret [$($then:tt)*] $($k:tt)*) => { $($then)*! { $($k)* secret Str } };
    (User [$($then:tt)*] $($k:tt)*) => { $($then)*! { $($k)* lent User } };
    (Post [$($then:tt)*] $($k:tt)*) => { $($then)*! { $($k)* lent Post } };
    (Topic [$($then:tt)*] $($k:tt)*) => { $($then)*! { $($k)* lent Topic } };
    (DraftPost [$($then:tt)*] $($k:tt)*) => { $($then)*! { $($k)* draft Post } };
    (DraftTopic [$($then:tt)*] $($k:tt)*) => { $($then)*! { $($k)* draft Topic } };
    (Bool [$($then:tt)*] $($k:tt)*) => { $($then)*! { $($k)* copied Bool } };
}

/// Makes a view of the table: the one place that reads its rows. `$req` is
/// `[rows] [fields] [callback] [pass]`. A row on its way is
/// `[$Hook name constant method returns firstresult accepts [SdkTrait sdk_method] wire
/// since optional doc (args)]`, each slot one token tree.
#[doc(hidden)]
#[macro_export]
macro_rules! __hook_view {
    // The table as written: every row, with `optional` from where it stands.
    (
        pass: [@view $($req:tt)*],
        prefix: [$($prefix:tt)*],
        appended: [$($appended:tt)*] $(,)?
    ) => {
        $crate::__hook_view! {@parse [$($req)*] [false $($prefix)*] [true $($appended)*]}
    };
    (@parse $req:tt $([$optional:tt $(
        $hook:ident {
            name: $name:literal,
            constant: $constant:ident,
            method: $method:ident,
            args: ($($arg:ident : $kind:ident),* $(,)?),
            returns: $returns:ident,
            firstresult: $firstresult:literal,
            accepts: $accepts:ident,
            sdk: $sdk_trait:ident :: $sdk_method:ident,
            wire: $wire:ident,
            since: $since:literal,
            doc: $doc:literal $(,)?
        },
    )*])*) => {
        $crate::__hook_view! {@rows $req [] $($(
            [$hook $name $constant $method $returns $firstresult $accepts
                [$sdk_trait $sdk_method] $wire $since $optional $doc]
            [$($arg $kind)*]
        )*)*}
    };

    // Each row's arguments, one at a time, through the kind table; `rows: wired`
    // leaves out the rows whose `wire` is `none`.
    (@rows $req:tt $done:tt) => {
        $crate::__hook_view! {@pick $req $done}
    };
    (@rows [[wired] $($req:tt)*] $done:tt
        [$hook:tt $name:tt $constant:tt $method:tt $returns:tt $first:tt $accepts:tt
            $sdk:tt none $($row:tt)*]
        $args:tt $($rest:tt)*
    ) => {
        $crate::__hook_view! {@rows [[wired] $($req)*] $done $($rest)*}
    };
    (@rows $req:tt $done:tt $row:tt $args:tt $($rest:tt)*) => {
        $crate::__hook_view! {@args $req $done $row [] $args [$($rest)*]}
    };
    (@args $req:tt [$($done:tt)*] [$($row:tt)*] [$(($a:ident $m:ident $b:ident))*] []
        [$($rest:tt)*] $($arg:ident $mode:ident $base:ident)?
    ) => {
        $crate::__hook_view! {@rows $req [
            $($done)* [$($row)* ($($a: $m $b,)* $($arg: $mode $base)?)]
        ] $($rest)*}
    };
    (@args $req:tt $done:tt $row:tt [$($split:tt)*] [$next:ident $kind:ident $($more:tt)*]
        $rest:tt $($arg:ident $mode:ident $base:ident)?
    ) => {
        $crate::__arg_kind! {$kind [$crate::__hook_view]
            @args $req $done $row [$($split)* $(($arg $mode $base))?] [$($more)*] $rest $next}
    };

    // The fields asked for, one field at a time for every row.
    (@pick [[all] [$($field:ident)*] $callback:tt $pass:tt] [$($row:tt)*]) => {
        $crate::__hook_view! {@field [$($field)*] $callback $pass $($row {})*}
    };
    (@pick [[wired] [$($field:ident)*] $callback:tt $pass:tt] [$($row:tt)*]) => {
        $crate::__hook_view! {@field [$($field)*] $callback $pass $($row {})*}
    };
    (@field [] [$($callback:tt)*] [$($pass:tt)*] $([$hook:ident $($row:tt)*] {$($got:tt)*})*) => {
        $($callback)*! { $($pass)* $($hook { $($got)* })* }
    };
    (@field [name $($more:ident)*] $callback:tt $pass:tt
        $([$hook:ident $name:tt $constant:tt $method:tt $returns:tt
            $firstresult:tt $accepts:tt $sdk:tt $wire:tt $since:tt $optional:tt $doc:tt $args:tt] {$($got:tt)*})*
    ) => {
        $crate::__hook_view! {@field [$($more)*] $callback $pass
            $([$hook $name $constant $method $returns
                $firstresult $accepts $sdk $wire $since $optional $doc $args] {$($got)* name: $name,})*}
    };
    (@field [constant $($more:ident)*] $callback:tt $pass:tt
        $([$hook:ident $name:tt $constant:tt $method:tt $returns:tt
            $firstresult:tt $accepts:tt $sdk:tt $wire:tt $since:tt $optional:tt $doc:tt $args:tt] {$($got:tt)*})*
    ) => {
        $crate::__hook_view! {@field [$($more)*] $callback $pass
            $([$hook $name $constant $method $returns
                $firstresult $accepts $sdk $wire $since $optional $doc $args] {$($got)* constant: $constant,})*}
    };
    (@field [method $($more:ident)*] $callback:tt $pass:tt
        $([$hook:ident $name:tt $constant:tt $method:tt $returns:tt
            $firstresult:tt $accepts:tt $sdk:tt $wire:tt $since:tt $optional:tt $doc:tt $args:tt] {$($got:tt)*})*
    ) => {
        $crate::__hook_view! {@field [$($more)*] $callback $pass
            $([$hook $name $constant $method $returns
                $firstresult $accepts $sdk $wire $since $optional $doc $args] {$($got)* method: $method,})*}
    };
    (@field [returns $($more:ident)*] $callback:tt $pass:tt
        $([$hook:ident $name:tt $constant:tt $method:tt $returns:tt
            $firstresult:tt $accepts:tt $sdk:tt $wire:tt $since:tt $optional:tt $doc:tt $args:tt] {$($got:tt)*})*
    ) => {
        $crate::__hook_view! {@field [$($more)*] $callback $pass
            $([$hook $name $constant $method $returns
                $firstresult $accepts $sdk $wire $since $optional $doc $args] {$($got)* returns: $returns,})*}
    };
    (@field [firstresult $($more:ident)*] $callback:tt $pass:tt
        $([$hook:ident $name:tt $constant:tt $method:tt $returns:tt
            $firstresult:tt $accepts:tt $sdk:tt $wire:tt $since:tt $optional:tt $doc:tt $args:tt] {$($got:tt)*})*
    ) => {
        $crate::__hook_view! {@field [$($more)*] $callback $pass
            $([$hook $name $constant $method $returns
                $firstresult $accepts $sdk $wire $since $optional $doc $args] {$($got)* firstresult: $firstresult,})*}
    };
    (@field [accepts $($more:ident)*] $callback:tt $pass:tt
        $([$hook:ident $name:tt $constant:tt $method:tt $returns:tt
            $firstresult:tt $accepts:tt $sdk:tt $wire:tt $since:tt $optional:tt $doc:tt $args:tt] {$($got:tt)*})*
    ) => {
        $crate::__hook_view! {@field [$($more)*] $callback $pass
            $([$hook $name $constant $method $returns
                $firstresult $accepts $sdk $wire $since $optional $doc $args] {$($got)* accepts: $accepts,})*}
    };
    (@field [sdk $($more:ident)*] $callback:tt $pass:tt
        $([$hook:ident $name:tt $constant:tt $method:tt $returns:tt
            $firstresult:tt $accepts:tt [$sdk_trait:ident $sdk_method:ident] $wire:tt $since:tt $optional:tt $doc:tt $args:tt] {$($got:tt)*})*
    ) => {
        $crate::__hook_view! {@field [$($more)*] $callback $pass
            $([$hook $name $constant $method $returns
                $firstresult $accepts [$sdk_trait $sdk_method] $wire $since $optional $doc $args] {$($got)* sdk: $sdk_trait::$sdk_method,})*}
    };
    (@field [wire $($more:ident)*] $callback:tt $pass:tt
        $([$hook:ident $name:tt $constant:tt $method:tt $returns:tt
            $firstresult:tt $accepts:tt $sdk:tt $wire:tt $since:tt $optional:tt $doc:tt $args:tt] {$($got:tt)*})*
    ) => {
        $crate::__hook_view! {@field [$($more)*] $callback $pass
            $([$hook $name $constant $method $returns
                $firstresult $accepts $sdk $wire $since $optional $doc $args] {$($got)* wire: $wire,})*}
    };
    (@field [since $($more:ident)*] $callback:tt $pass:tt
        $([$hook:ident $name:tt $constant:tt $method:tt $returns:tt
            $firstresult:tt $accepts:tt $sdk:tt $wire:tt $since:tt $optional:tt $doc:tt $args:tt] {$($got:tt)*})*
    ) => {
        $crate::__hook_view! {@field [$($more)*] $callback $pass
            $([$hook $name $constant $method $returns
                $firstresult $accepts $sdk $wire $since $optional $doc $args] {$($got)* since: $since,})*}
    };
    (@field [optional $($more:ident)*] $callback:tt $pass:tt
        $([$hook:ident $name:tt $constant:tt $method:tt $returns:tt
            $firstresult:tt $accepts:tt $sdk:tt $wire:tt $since:tt $optional:tt $doc:tt $args:tt] {$($got:tt)*})*
    ) => {
        $crate::__hook_view! {@field [$($more)*] $callback $pass
            $([$hook $name $constant $method $returns
                $firstresult $accepts $sdk $wire $since $optional $doc $args] {$($got)* optional: $optional,})*}
    };
    (@field [doc $($more:ident)*] $callback:tt $pass:tt
        $([$hook:ident $name:tt $constant:tt $method:tt $returns:tt
            $firstresult:tt $accepts:tt $sdk:tt $wire:tt $since:tt $optional:tt $doc:tt $args:tt] {$($got:tt)*})*
    ) => {
        $crate::__hook_view! {@field [$($more)*] $callback $pass
            $([$hook $name $constant $method $returns
                $firstresult $accepts $sdk $wire $since $optional $doc $args] {$($got)* doc: $doc,})*}
    };
    (@field [args $($more:ident)*] $callback:tt $pass:tt
        $([$hook:ident $name:tt $constant:tt $method:tt $returns:tt
            $firstresult:tt $accepts:tt $sdk:tt $wire:tt $since:tt $optional:tt $doc:tt $args:tt] {$($got:tt)*})*
    ) => {
        $crate::__hook_view! {@field [$($more)*] $callback $pass
            $([$hook $name $constant $method $returns
                $firstresult $accepts $sdk $wire $since $optional $doc $args] {$($got)* args: $args,})*}
    };
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    macro_rules! names {
        (pass: [], prefix: [$($P:ident { name: $pn:literal, $($prest:tt)* },)*], appended: [$($A:ident { name: $an:literal, $($arest:tt)* },)*] $(,)?) => {
            [$($pn,)* $($an,)*]
        };
    }

    #[test]
    fn hook_names_are_flaskbbs_and_unique() {
        let names = for_each_hook!(names);
        assert_eq!(names.len(), 11);
        assert!(names.iter().all(|n| n.starts_with("flaskbb_")));
        let mut sorted: Vec<&str> = names.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
    }

    /// A row as the table writes it: the fields a view hands on unchanged, as text;
    /// the arguments as (name, kind).
    #[derive(Debug, Clone, PartialEq)]
    struct Written {
        hook: &'static str,
        fields: &'static str,
        wire: &'static str,
        args: &'static [(&'static str, &'static str)],
    }

    /// A row as a view hands it on: the same fields as text, `optional`, the
    /// arguments as (name, mode, base).
    #[derive(Debug, Clone, PartialEq)]
    struct Viewed {
        hook: &'static str,
        fields: &'static str,
        wire: &'static str,
        optional: bool,
        args: &'static [(&'static str, &'static str, &'static str)],
    }

    macro_rules! as_written {
        (pass: [], prefix: [$($prefix:tt)*], appended: [$($appended:tt)*] $(,)?) => {
            (as_written!(@rows $($prefix)*), as_written!(@rows $($appended)*))
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
            [$(Written {
                hook: stringify!($hook),
                fields: stringify!($name $constant $method $returns $first $accepts
                    $sdk_trait::$sdk_method $since $doc),
                wire: stringify!($wire),
                args: &[$((stringify!($arg), stringify!($kind))),*],
            }),*]
        };
    }

    // Asks for the fields in another order than the table's, to check that the view
    // puts them in the order asked for.
    macro_rules! viewed {
        ($(
            $hook:ident {
                doc: $doc:literal, wire: $wire:ident, args: ($($arg:ident : $mode:ident $base:ident),*),
                name: $name:literal, optional: $optional:literal, constant: $constant:ident,
                method: $method:ident, returns: $returns:ident, firstresult: $first:literal,
                accepts: $accepts:ident, sdk: $sdk_trait:ident :: $sdk_method:ident,
                since: $since:literal,
            }
        )*) => {
            [$(Viewed {
                hook: stringify!($hook),
                fields: stringify!($name $constant $method $returns $first $accepts
                    $sdk_trait::$sdk_method $since $doc),
                wire: stringify!($wire),
                optional: $optional,
                args: &[$((stringify!($arg), stringify!($mode), stringify!($base))),*],
            }),*]
        };
    }

    macro_rules! view {
        ($rows:ident) => {
            for_each_hook! {
                rows: $rows,
                fields: [doc, wire, args, name, optional, constant, method, returns,
                    firstresult, accepts, sdk, since],
                then: viewed,
            }
        };
    }

    /// The kind table, said again: each kind's mode and base kind.
    fn split(kind: &str) -> (&'static str, &'static str) {
        match kind {
            "Str" => ("lent", "Str"),
            "Secret" => ("secret", "Str"),
            "User" => ("lent", "User"),
            "Post" => ("lent", "Post"),
            "Topic" => ("lent", "Topic"),
            "DraftPost" => ("draft", "Post"),
            "DraftTopic" => ("draft", "Topic"),
            "Bool" => ("copied", "Bool"),
            other => panic!("an argument kind the test does not know: {other}"),
        }
    }

    /// What a view of the table must say of `row`, at the place `optional` says.
    fn expected(row: &Written, optional: bool) -> Viewed {
        let args: Vec<_> = row
            .args
            .iter()
            .map(|&(name, kind)| {
                let (mode, base) = split(kind);
                (name, mode, base)
            })
            .collect();
        Viewed {
            hook: row.hook,
            fields: row.fields,
            wire: row.wire,
            optional,
            args: args.leak(),
        }
    }

    #[test]
    fn all_rows_are_the_table_in_abi_order_with_prefix_rows_required() {
        let (prefix, appended) = for_each_hook!(as_written);
        assert_eq!(prefix.len(), 10, "plugin-abi 1.0's vtable has 10 hooks");
        let want: Vec<Viewed> = prefix
            .iter()
            .map(|r| expected(r, false))
            .chain(appended.iter().map(|r| expected(r, true)))
            .collect();
        let all = view!(all);
        assert_eq!(all.len(), 11);
        assert_eq!(all.to_vec(), want);
        // The vtable's order: every required hook before every optional one.
        let first_optional = all.iter().position(|r| r.optional).unwrap_or(all.len());
        assert!(all[first_optional..].iter().all(|r| r.optional));
    }

    #[test]
    fn wired_rows_are_exactly_the_rows_with_a_wire_method_in_order() {
        let all = view!(all);
        let wired = view!(wired);
        let with_wire: Vec<Viewed> = all.iter().filter(|r| r.wire != "none").cloned().collect();
        assert_eq!(wired.to_vec(), with_wire);
        assert_eq!(wired.len(), 5);
        assert!(wired.iter().all(|r| r.wire != "none"));
    }

    macro_rules! with_pass {
        ([$($pass:tt)*] $($hook:ident { name: $name:literal, })*) => {
            ([$($pass)*], [$($name),*])
        };
    }

    #[test]
    fn a_view_puts_the_pass_tokens_first() {
        let (pass, names) = for_each_hook! {
            rows: wired,
            fields: [name],
            then: with_pass,
            pass: [[1, 2]],
        };
        assert_eq!(pass, [1, 2]);
        assert_eq!(names[0], "flaskbb_event_post_save_before");
        assert_eq!(names.len(), 5);
    }
}
