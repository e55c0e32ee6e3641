//! The wire types (from `flaskbbd-protocol`) and their conversions to and from the
//! plugin ABI's types.

pub(crate) use flaskbbd_protocol::types::*;

/// Conversions between the wire types and the plugin ABI's.
pub(crate) mod convert {
    use abi_stable::std_types::{RString, RVec};
    use plugin_abi::abi;

    use super::*;

    fn ropt(s: &Option<String>) -> abi_stable::std_types::ROption<RString> {
        s.as_ref().map(|s| RString::from(s.as_str())).into()
    }

    /// A wire user for plugins; `banned` is known to the store only.
    pub(crate) fn user_to_abi(u: &User, banned: bool) -> abi::User {
        abi::User {
            id: u.id,
            username: u.username.as_str().into(),
            email: u.email.as_str().into(),
            activated: u.activated,
            login_attempts: u.login_attempts,
            last_failed_login: ropt(&u.last_failed_login),
            date_joined: u.date_joined.as_str().into(),
            primary_group_id: u.primary_group_id.into(),
            groups: u
                .groups
                .iter()
                .map(|g| RString::from(g.as_str()))
                .collect::<RVec<_>>(),
            banned,
        }
    }

    /// A user a plugin returned, for the wire.
    pub(crate) fn user_from_abi(u: &abi::User) -> User {
        User {
            id: u.id,
            username: u.username.to_string(),
            email: u.email.to_string(),
            activated: u.activated,
            login_attempts: u.login_attempts,
            last_failed_login: u
                .last_failed_login
                .as_ref()
                .map(|s| s.to_string())
                .into_option(),
            date_joined: u.date_joined.to_string(),
            primary_group_id: u.primary_group_id.into_option(),
            groups: u.groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    /// A post for a plugin.
    pub(crate) fn post_to_abi(p: &Post) -> abi::Post {
        abi::Post {
            id: p.id.into(),
            topic_id: p.topic_id.into(),
            user_id: p.user_id.into(),
            username: ropt(&p.username),
            content: p.content.as_str().into(),
            date_created: ropt(&p.date_created),
        }
    }

    /// A post a plugin returned, for the wire.
    pub(crate) fn post_from_abi(p: &abi::Post) -> Post {
        Post {
            id: p.id.into_option(),
            topic_id: p.topic_id.into_option(),
            user_id: p.user_id.into_option(),
            username: p.username.as_ref().map(|s| s.to_string()).into_option(),
            content: p.content.to_string(),
            date_created: p.date_created.as_ref().map(|s| s.to_string()).into_option(),
        }
    }

    /// A topic for a plugin.
    pub(crate) fn topic_to_abi(t: &Topic) -> abi::Topic {
        abi::Topic {
            id: t.id.into(),
            forum_id: t.forum_id.into(),
            title: t.title.as_str().into(),
            user_id: t.user_id.into(),
            username: ropt(&t.username),
            content: ropt(&t.content),
        }
    }

    /// A topic a plugin returned, for the wire.
    pub(crate) fn topic_from_abi(t: &abi::Topic) -> Topic {
        Topic {
            id: t.id.into_option(),
            forum_id: t.forum_id.into_option(),
            title: t.title.to_string(),
            user_id: t.user_id.into_option(),
            username: t.username.as_ref().map(|s| s.to_string()).into_option(),
            content: t.content.as_ref().map(|s| s.to_string()).into_option(),
        }
    }
}
