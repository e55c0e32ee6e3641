//! The methods of `org.varlink.service`, `org.flaskbb.Auth`, `org.flaskbb.Events` and
//! `org.flaskbb.Admin`, each with its parameters checked and typed: [`parse`] is all
//! the request parsing there is, so the daemon's handlers only ever see valid input.

use serde_json::json;

use crate::{
    types::{Context, Post, Topic},
    wire::{errors, Call, Params, Reply},
};

/// The standard Varlink service interface.
pub const SERVICE: &str = "org.varlink.service";
/// FlaskBB's authentication pipeline.
pub const AUTH: &str = "org.flaskbb.Auth";
/// FlaskBB's event hooks.
pub const EVENTS: &str = "org.flaskbb.Events";
/// Administration: users, plugins, reload (admin peers only).
pub const ADMIN: &str = "org.flaskbb.Admin";

/// The longest username or email address `CreateUser` takes, in bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// One call with valid parameters. Holds secrets (`secret`, `password`): it has no
/// `Debug`, so it cannot end up in a log by accident.
pub enum Method {
    GetInfo,
    GetInterfaceDescription {
        interface: String,
    },
    Authenticate {
        identifier: String,
        secret: String,
        context: Context,
    },
    Reauthenticate {
        user_id: i64,
        secret: String,
        context: Context,
    },
    PostSaveBefore {
        post: Post,
    },
    PostSaveAfter {
        post: Post,
        is_new: bool,
    },
    TopicSaveBefore {
        topic: Topic,
    },
    TopicSaveAfter {
        topic: Topic,
        is_new: bool,
    },
    UserRegistered {
        username: String,
    },
    CreateUser {
        username: String,
        email: String,
        password: String,
        activated: bool,
    },
    GetUser {
        identifier: String,
    },
    SetPassword {
        user_id: i64,
        password: String,
    },
    SetActivated {
        user_id: i64,
        activated: bool,
    },
    SetBanned {
        user_id: i64,
        banned: bool,
    },
    ListPlugins,
    ListHooks,
    SetPluginEnabled {
        name: String,
        enabled: bool,
    },
    Reload,
}

/// Checks and types a call's parameters. The error is the reply to send: the interface
/// or method not found, or `InvalidParameter` naming the first bad parameter.
pub fn parse(call: Call) -> Result<Method, Reply> {
    let Call {
        interface,
        method,
        parameters,
        ..
    } = call;
    // The parameters a method takes; any other is refused by name.
    let params = |known: &[&str]| Params::new(parameters, known);
    Ok(match (interface.as_str(), method.as_str()) {
        (SERVICE, "GetInfo") => {
            params(&[])?;
            Method::GetInfo
        }
        (SERVICE, "GetInterfaceDescription") => Method::GetInterfaceDescription {
            interface: params(&["interface"])?.req("interface")?,
        },
        (AUTH, "Authenticate") => {
            let mut p = params(&["identifier", "secret", "context"])?;
            Method::Authenticate {
                identifier: p.req("identifier")?,
                secret: p.req("secret")?,
                context: p.opt("context")?.unwrap_or_default(),
            }
        }
        (AUTH, "Reauthenticate") => {
            let mut p = params(&["user_id", "secret", "context"])?;
            Method::Reauthenticate {
                user_id: p.req("user_id")?,
                secret: p.req("secret")?,
                context: p.opt("context")?.unwrap_or_default(),
            }
        }
        (EVENTS, "PostSaveBefore") => Method::PostSaveBefore {
            post: params(&["post"])?.req("post")?,
        },
        (EVENTS, "PostSaveAfter") => {
            let mut p = params(&["post", "is_new"])?;
            Method::PostSaveAfter {
                post: p.req("post")?,
                is_new: p.req("is_new")?,
            }
        }
        (EVENTS, "TopicSaveBefore") => Method::TopicSaveBefore {
            topic: params(&["topic"])?.req("topic")?,
        },
        (EVENTS, "TopicSaveAfter") => {
            let mut p = params(&["topic", "is_new"])?;
            Method::TopicSaveAfter {
                topic: p.req("topic")?,
                is_new: p.req("is_new")?,
            }
        }
        (EVENTS, "UserRegistered") => Method::UserRegistered {
            username: params(&["username"])?.req("username")?,
        },
        (ADMIN, "CreateUser") => {
            let mut p = params(&["username", "email", "password", "activated"])?;
            let username: String = p.req("username")?;
            let email: String = p.req("email")?;
            let password: String = p.req("password")?;
            let activated = p.opt("activated")?.unwrap_or(false);
            if username.trim().is_empty()
                || username.len() > MAX_NAME_BYTES
                || username.contains('\0')
            {
                return Err(Reply::invalid("username"));
            }
            if !email.contains('@') || email.len() > MAX_NAME_BYTES || email.contains('\0') {
                return Err(Reply::invalid("email"));
            }
            Method::CreateUser {
                username,
                email,
                password,
                activated,
            }
        }
        (ADMIN, "GetUser") => Method::GetUser {
            identifier: params(&["identifier"])?.req("identifier")?,
        },
        (ADMIN, "SetPassword") => {
            let mut p = params(&["user_id", "password"])?;
            Method::SetPassword {
                user_id: p.req("user_id")?,
                password: p.req("password")?,
            }
        }
        (ADMIN, "SetActivated") => {
            let mut p = params(&["user_id", "activated"])?;
            Method::SetActivated {
                user_id: p.req("user_id")?,
                activated: p.req("activated")?,
            }
        }
        (ADMIN, "SetBanned") => {
            let mut p = params(&["user_id", "banned"])?;
            Method::SetBanned {
                user_id: p.req("user_id")?,
                banned: p.req("banned")?,
            }
        }
        (ADMIN, "ListPlugins") => {
            params(&[])?;
            Method::ListPlugins
        }
        (ADMIN, "ListHooks") => {
            params(&[])?;
            Method::ListHooks
        }
        (ADMIN, "SetPluginEnabled") => {
            let mut p = params(&["name", "enabled"])?;
            Method::SetPluginEnabled {
                name: p.req("name")?,
                enabled: p.req("enabled")?,
            }
        }
        (ADMIN, "Reload") => {
            params(&[])?;
            Method::Reload
        }
        (SERVICE | AUTH | EVENTS | ADMIN, _) => {
            return Err(Reply::error(
                errors::METHOD_NOT_FOUND,
                json!({ "method": format!("{interface}.{method}") }),
            ))
        }
        (other, _) => {
            return Err(Reply::error(
                errors::INTERFACE_NOT_FOUND,
                json!({ "interface": other }),
            ))
        }
    })
}
