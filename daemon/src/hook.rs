//! The hooks the daemon dispatches: plugin-abi's [`Hook`], generated from the hook
//! table in `flaskbbd-hooks` with each hook's FlaskBB name, `firstresult` and the
//! control-flow error its chain accepts ([`Accepts`]).

pub(crate) use plugin_abi::hooks::{Accepts, Hook};

/// The daemon's kind table: what it does with a hook argument of each base kind (a
/// view's `args` hands each argument on as `name: mode Base`, `flaskbbd-hooks`), by
/// role. The generators in `chain`, `events`, `instance` and `isolation::host` handle
/// the modes (a draft is the chain's value, a secret is never shown) and ask this
/// table for the rest, so a new base kind is one block here.
///
/// | role | what |
/// |---|---|
/// | `ty` | its type in the daemon (what a lent argument borrows) |
/// | `to_wire, a` | `a` (a reference to it) as it crosses to a plugin host |
/// | `from_wire, a` | an `Arg` from the daemon, in the plugin host: `Some` owned value, or `None` for another kind |
/// | `to_vtable, a` | that owned value as the plugin's vtable takes it |
/// | `json, a` | `a` (a reference to it) as a wrapper sees it in the call's JSON |
/// | `from_proto, a` | the value a client sent (`org.flaskbb.Events`) as the chain takes it |
/// | `from_value, v` | a draft from a chain's `&Value`: `Some(&T)`, or `None` for another kind |
/// | `value` | the `Value` variant of a draft |
/// | `answer` | the `EventAnswer` variant of a draft |
macro_rules! base_kind {
    // Text.
    (ty, Str) => { str };
    (to_wire, Str, $a:expr) => {
        $crate::isolation::ipc::Arg::Str(<str as ToOwned>::to_owned($a))
    };
    (from_wire, Str, $a:expr) => {
        match $a {
            $crate::isolation::ipc::Arg::Str(s) => Some(s),
            _ => None,
        }
    };
    (to_vtable, Str, $a:expr) => { abi_stable::std_types::RStr::from($a.as_str()) };
    (json, Str, $a:expr) => { serde_json::json!($a) };
    (from_proto, Str, $a:expr) => { $a };

    // A user.
    (ty, User) => { plugin_abi::abi::User };
    (to_wire, User, $a:expr) => {
        $crate::isolation::ipc::Arg::User($crate::isolation::ipc::WireUser::of($a))
    };
    (from_wire, User, $a:expr) => {
        match $a {
            $crate::isolation::ipc::Arg::User(u) => Some(u.to_abi()),
            _ => None,
        }
    };
    (to_vtable, User, $a:expr) => { &$a };
    (json, User, $a:expr) => {
        serde_json::json!({ "id": $a.id, "username": $a.username.as_str() })
    };

    // A post.
    (ty, Post) => { plugin_abi::abi::Post };
    (to_wire, Post, $a:expr) => {
        $crate::isolation::ipc::Arg::Post($crate::proto::convert::post_from_abi($a))
    };
    (from_wire, Post, $a:expr) => {
        match $a {
            $crate::isolation::ipc::Arg::Post(p) => Some($crate::proto::convert::post_to_abi(&p)),
            _ => None,
        }
    };
    (to_vtable, Post, $a:expr) => { &$a };
    (json, Post, $a:expr) => {
        serde_json::json!({ "id": $a.id.into_option(), "topic_id": $a.topic_id.into_option() })
    };
    (from_proto, Post, $a:expr) => { $crate::proto::convert::post_to_abi(&$a) };
    (from_value, Post, $v:expr) => {
        match $v {
            plugin_abi::sdk::Value::Post(p) => Some(p),
            _ => None,
        }
    };
    (value, Post) => { plugin_abi::sdk::Value::Post };
    (answer, Post) => { $crate::events::EventAnswer::Post };

    // A topic.
    (ty, Topic) => { plugin_abi::abi::Topic };
    (to_wire, Topic, $a:expr) => {
        $crate::isolation::ipc::Arg::Topic($crate::proto::convert::topic_from_abi($a))
    };
    (from_wire, Topic, $a:expr) => {
        match $a {
            $crate::isolation::ipc::Arg::Topic(t) => Some($crate::proto::convert::topic_to_abi(&t)),
            _ => None,
        }
    };
    (to_vtable, Topic, $a:expr) => { &$a };
    (json, Topic, $a:expr) => {
        serde_json::json!({ "id": $a.id.into_option(), "title": $a.title.as_str() })
    };
    (from_proto, Topic, $a:expr) => { $crate::proto::convert::topic_to_abi(&$a) };
    (from_value, Topic, $v:expr) => {
        match $v {
            plugin_abi::sdk::Value::Topic(t) => Some(t),
            _ => None,
        }
    };
    (value, Topic) => { plugin_abi::sdk::Value::Topic };
    (answer, Topic) => { $crate::events::EventAnswer::Topic };

    // A flag.
    (ty, Bool) => { bool };
    (to_wire, Bool, $a:expr) => { $crate::isolation::ipc::Arg::Bool(*$a) };
    (from_wire, Bool, $a:expr) => {
        match $a {
            $crate::isolation::ipc::Arg::Bool(b) => Some(b),
            _ => None,
        }
    };
    (to_vtable, Bool, $a:expr) => { $a };
    (json, Bool, $a:expr) => { serde_json::json!($a) };
    (from_proto, Bool, $a:expr) => { $a };
}

pub(crate) use base_kind;
