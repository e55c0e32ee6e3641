//! FlaskBB's hooks as flaskbbd serves them, declared once.
//!
//! [`for_each_hook!`] holds one row per hook: its FlaskBB name, its arguments, what
//! an impl returns, whether the chain stops at the first answer (pluggy's
//! `firstresult`), which control-flow error ends the chain, the plugin SDK's trait and
//! method for it, and the Varlink method that fires it, if any. Everything that is
//! per hook is generated from this table: the ABI's vtable slots and the SDK traits
//! (`plugin-abi`), the daemon's hook enum, forwarding, argument records and chain
//! dispatch (`flaskbbd`), and the event methods' parsing (`flaskbbd-protocol`).
//!
//! Adding a hook is one row in `appended` (never in `prefix`, whose order is the
//! 1.0 vtable's), its declaration in the Varlink interface when clients fire it, and
//! its tests; `docs/architecture.md` walks through it.
//!
//! The table is tokens: each consumer maps the argument kinds to its own types.
//!
//! | argument kind | meaning |
//! |---|---|
//! | `Str` | text the client sent (an identifier, a username) |
//! | `Secret` | the password: never logged, never shown to wrappers |
//! | `User` | a forum user |
//! | `Post`, `Topic` | a post or topic as saved |
//! | `DraftPost`, `DraftTopic` | a post or topic about to be saved: each impl gets the one the impl before it returned |
//! | `Bool` | a flag (`is_new`) |
//!
//! `returns` is what an impl's answer contributes to the chain: `Nothing` (ignored),
//! `User` or `True` (a `firstresult` hook's answer), `Post` or `Topic` (the draft,
//! handed on). `accepts` is the one control-flow error that ends the chain with its
//! reason (`Stop` for `StopAuthentication`, `ForceLogout`, `Rejected`, or `Nothing`);
//! any other error fails the request closed.

#![forbid(unsafe_code)]
#![no_std]

/// Calls `$callback!` with the hook table, preceded by `pass: [...]` (whatever tokens
/// follow the callback's path here, handed through):
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
/// optional in the vtable: an older plugin answers "not implemented").
#[macro_export]
macro_rules! for_each_hook {
    ($($callback:ident)::+ $(, $($pass:tt)*)?) => {
        $($callback)::+! {
            pass: [$($($pass)*)?],
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
}
