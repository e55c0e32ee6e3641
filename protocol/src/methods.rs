//! The methods of `org.varlink.service`, `org.flaskbb.Auth`, `org.flaskbb.Events`,
//! `org.flaskbb.Admin` and `org.flaskbb.Account`, each with its parameters checked and typed: [`parse`] is all
//! the request parsing there is, so the daemon's handlers only ever see valid input.

use serde_json::{json, Value};

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
/// The forum's own calls for members and admins (forum peers only).
pub const ACCOUNT: &str = "org.flaskbb.Account";

/// The longest username or email address `CreateUser` takes, in bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// One call with valid parameters, by interface. Holds secrets (`secret`,
/// `password`): none of these types has `Debug`, so none can end up in a log by
/// accident.
pub enum Method {
    /// `org.varlink.service.*`: introspection.
    Service(ServiceCall),
    /// `org.flaskbb.Auth.*`: the authentication pipeline.
    Auth(AuthCall),
    /// `org.flaskbb.Events.*`: the event hooks.
    Events(EventCall),
    /// `org.flaskbb.Admin.*`: users, plugins, reload (admin peers only).
    Admin(AdminCall),
    /// `org.flaskbb.Account.*`: second factors, passwords, locks (forum peers only).
    Account(AccountCall),
    /// The passkey methods of `org.flaskbb.Account` and `org.flaskbb.Auth`.
    Passkey(crate::passkey::PasskeyCall),
}

/// A call of `org.varlink.service`.
pub enum ServiceCall {
    /// The service's vendor, version and interfaces.
    GetInfo,
    /// The Varlink description of one interface.
    GetInterfaceDescription {
        /// The interface's full name.
        interface: String,
    },
}

/// A call of `org.flaskbb.Auth`.
pub enum AuthCall {
    /// A login: FlaskBB's `PluginAuthenticationManager.authenticate`.
    Authenticate {
        /// A username or an email address.
        identifier: String,
        /// The password (never logged).
        secret: String,
        /// What the client knows of the request (`remote_addr`, `otp`, ...).
        context: Context,
    },
    /// A logged-in user confirming their password: `PluginReauthenticateManager`.
    Reauthenticate {
        /// The logged-in user.
        user_id: i64,
        /// The password (never logged).
        secret: String,
        /// What the client knows of the request.
        context: Context,
    },
}

/// An event argument's type on the wire, by its base kind (a view's `args`): the
/// protocol's kind table.
macro_rules! wire_arg {
    (Str) => {
        String
    };
    (Bool) => {
        bool
    };
    (Post) => {
        Post
    };
    (Topic) => {
        Topic
    };
}

// `org.flaskbb.Events` has one method per hook whose row in the hook table names one
// (`wire`): the table's `wired` rows.
macro_rules! declare_event_calls {
    ($(
        $hook:ident {
            wire: $wire:ident,
            args: ($($arg:ident : $mode:ident $base:ident),*),
            doc: $doc:literal,
        }
    )*) => {
        /// A call of `org.flaskbb.Events`: one method per hook a client fires,
        /// generated from the hook table in `flaskbbd-hooks`.
        pub enum EventCall {
            $(
                #[doc = $doc]
                $wire {
                    $(
                        #[doc = concat!("The hook's `", stringify!($arg), "`.")]
                        $arg: wire_arg!($base),
                    )*
                },
            )*
        }

        impl EventCall {
            /// The method's name in `org.flaskbb.Events`.
            pub fn method(&self) -> &'static str {
                match self {
                    $(EventCall::$wire { .. } => stringify!($wire),)*
                }
            }

            /// The method's full name, `org.flaskbb.Events.<method>`.
            pub fn full_name(&self) -> &'static str {
                match self {
                    $(EventCall::$wire { .. } => concat!("org.flaskbb.Events.", stringify!($wire)),)*
                }
            }

            /// The call's parameters, as a client sends them.
            pub fn parameters(&self) -> Value {
                let mut map = serde_json::Map::new();
                match self {
                    $(EventCall::$wire { $($arg),* } => {
                        $(map.insert(stringify!($arg).into(), json!($arg));)*
                    })*
                }
                Value::Object(map)
            }

            /// The call of `org.flaskbb.Events.<method>` read straight from the text
            /// of its parameters object; `None` for an unknown method or anything
            /// [`EventCall::parse`] would refuse (or might read otherwise: a repeated
            /// key), which then answers it.
            fn parse_text(method: &str, parameters: &str) -> Option<EventCall> {
                match method {
                    $(
                        stringify!($wire) => {
                            #[derive(serde::Deserialize)]
                            #[serde(deny_unknown_fields)]
                            struct Args { $($arg: wire_arg!($base)),* }
                            #[allow(unused_variables)]
                            let args: Args = serde_json::from_str(parameters).ok()?;
                            Some(EventCall::$wire { $($arg: args.$arg),* })
                        }
                    )*
                    _ => None,
                }
            }

            /// The call of `org.flaskbb.Events.<method>` with these parameters; `None`
            /// when the interface has no such method.
            fn parse(method: &str, parameters: Option<Value>) -> Option<Result<EventCall, Reply>> {
                match method {
                    $(
                        stringify!($wire) => Some((|| {
                            #[allow(unused_mut)]
                            let mut p = Params::new(parameters, &[$(stringify!($arg)),*])?;
                            Ok(EventCall::$wire { $($arg: p.req(stringify!($arg))?),* })
                        })()),
                    )*
                    _ => None,
                }
            }
        }
    };
}

flaskbbd_hooks::for_each_hook! {
    rows: wired,
    fields: [wire, args, doc],
    then: declare_event_calls,
}

/// A call of `org.flaskbb.Admin`.
pub enum AdminCall {
    /// Creates a user (in the Member group).
    CreateUser {
        /// Not blank, at most [`MAX_NAME_BYTES`], no NUL.
        username: String,
        /// Has an `@`, at most [`MAX_NAME_BYTES`], no NUL.
        email: String,
        /// The password to hash (never logged).
        password: String,
        /// Whether the account starts activated.
        activated: bool,
    },
    /// One user, by username or email address.
    GetUser {
        /// A username or an email address.
        identifier: String,
    },
    /// Lifts an account's lockout, everywhere or for one address.
    Unlock {
        /// A username, an email address, or a name no account has.
        identifier: String,
        /// Only this address's count (an IPv6 address stands for its /64).
        address: Option<String>,
    },
    /// Replaces a user's password.
    SetPassword {
        /// The user.
        user_id: i64,
        /// The new password (never logged).
        password: String,
    },
    /// Activates or deactivates a user.
    SetActivated {
        /// The user.
        user_id: i64,
        /// The new state.
        activated: bool,
    },
    /// Bans or unbans a user.
    SetBanned {
        /// The user.
        user_id: i64,
        /// The new state.
        banned: bool,
    },
    /// The plugin instances of the current generation.
    ListPlugins,
    /// Every hook's chain in call order.
    ListHooks,
    /// The daemon's metrics, in the Prometheus text format.
    GetMetrics,
    /// What the daemon is doing now.
    GetStatus,
    /// Enables or disables an instance, recorded and applied by a reload.
    SetPluginEnabled {
        /// The instance's name in `flaskbb.toml`.
        name: String,
        /// The new state.
        enabled: bool,
    },
    /// Reads `flaskbb.toml` again and builds a new generation of chains.
    Reload,
}

/// A call of `org.flaskbb.Account`.
pub enum AccountCall {
    /// Makes a pending secret for the member.
    BeginTotp {
        /// The member.
        user_id: i64,
        /// The forum's name, shown by authenticator apps (no `:`).
        issuer: String,
    },
    /// Confirms the pending secret with a current code.
    ConfirmTotp {
        /// The member.
        user_id: i64,
        /// A current one-time code of the pending secret.
        code: String,
    },
    /// Turns the member's second factor off.
    DisableTotp {
        /// The member.
        user_id: i64,
        /// The member's password (never logged).
        password: String,
        /// A current one-time code or an unused recovery code (never logged).
        code: String,
        /// The member's address, which the lockout counts a wrong password or code
        /// under (as a login's `remote_addr`).
        remote_addr: Option<String>,
    },
    /// Makes new recovery codes.
    RegenerateRecoveryCodes {
        /// The member.
        user_id: i64,
        /// The member's password (never logged).
        password: String,
        /// A current one-time code or an unused recovery code (never logged).
        code: String,
        /// The member's address, which the lockout counts a wrong password or code
        /// under (as a login's `remote_addr`).
        remote_addr: Option<String>,
    },
    /// Changes a password, checking the old one.
    ChangePassword {
        /// The member.
        user_id: i64,
        /// The current password (never logged).
        old_password: String,
        /// The new password (never logged).
        new_password: String,
        /// The member's address, which the lockout counts a wrong password under.
        remote_addr: Option<String>,
    },
    /// Sets a password after the forum's reset token, lifting the lock.
    ResetPassword {
        /// The member.
        user_id: i64,
        /// The new password (never logged).
        new_password: String,
    },
    /// One member's second-factor state.
    GetSecondFactor {
        /// The member.
        user_id: i64,
    },
    /// Every member with a second factor (or a pending one).
    ListSecondFactors,
    /// Every account and address with live failure counts.
    ListLocks,
    /// Lifts a member's lock.
    Unlock {
        /// The member.
        user_id: i64,
        /// Only this address's count (an IPv6 address stands for its /64).
        address: Option<String>,
    },
    /// Removes a member's second factor and recovery codes.
    ResetSecondFactor {
        /// The member.
        user_id: i64,
    },
}

impl AccountCall {
    /// Parses `org.flaskbb.Account.<method>`; `None` when there is no such method.
    fn parse(method: &str, parameters: Option<Value>) -> Option<Result<AccountCall, Reply>> {
        let params = |known: &[&str]| Params::new(parameters, known);
        let call = (|| {
            Ok(Some(match method {
                "BeginTotp" => {
                    let mut p = params(&["user_id", "issuer"])?;
                    let issuer: String = p.req("issuer")?;
                    if issuer.trim().is_empty() || issuer.len() > MAX_NAME_BYTES {
                        return Err(Reply::invalid("issuer"));
                    }
                    AccountCall::BeginTotp {
                        user_id: p.req("user_id")?,
                        issuer,
                    }
                }
                "ConfirmTotp" => {
                    let mut p = params(&["user_id", "code"])?;
                    AccountCall::ConfirmTotp {
                        user_id: p.req("user_id")?,
                        code: p.req("code")?,
                    }
                }
                "DisableTotp" => {
                    let mut p = params(&["user_id", "password", "code", "remote_addr"])?;
                    AccountCall::DisableTotp {
                        user_id: p.req("user_id")?,
                        password: p.req("password")?,
                        code: p.req("code")?,
                        remote_addr: p.opt("remote_addr")?,
                    }
                }
                "RegenerateRecoveryCodes" => {
                    let mut p = params(&["user_id", "password", "code", "remote_addr"])?;
                    AccountCall::RegenerateRecoveryCodes {
                        user_id: p.req("user_id")?,
                        password: p.req("password")?,
                        code: p.req("code")?,
                        remote_addr: p.opt("remote_addr")?,
                    }
                }
                "ChangePassword" => {
                    let mut p =
                        params(&["user_id", "old_password", "new_password", "remote_addr"])?;
                    AccountCall::ChangePassword {
                        user_id: p.req("user_id")?,
                        old_password: p.req("old_password")?,
                        new_password: p.req("new_password")?,
                        remote_addr: p.opt("remote_addr")?,
                    }
                }
                "ResetPassword" => {
                    let mut p = params(&["user_id", "new_password"])?;
                    AccountCall::ResetPassword {
                        user_id: p.req("user_id")?,
                        new_password: p.req("new_password")?,
                    }
                }
                "GetSecondFactor" => AccountCall::GetSecondFactor {
                    user_id: params(&["user_id"])?.req("user_id")?,
                },
                "ListSecondFactors" => {
                    params(&[])?;
                    AccountCall::ListSecondFactors
                }
                "ListLocks" => {
                    params(&[])?;
                    AccountCall::ListLocks
                }
                "Unlock" => {
                    let mut p = params(&["user_id", "address"])?;
                    AccountCall::Unlock {
                        user_id: p.req("user_id")?,
                        address: p.opt("address")?,
                    }
                }
                "ResetSecondFactor" => AccountCall::ResetSecondFactor {
                    user_id: params(&["user_id"])?.req("user_id")?,
                },
                _ => return Ok(None),
            }))
        })();
        call.transpose()
    }
}

/// A call as a client sends it: its full method name and its parameters. The typed
/// calls ([`AuthCall`], [`AdminCall`], [`AccountCall`], [`EventCall`], [`ServiceCall`],
/// [`crate::passkey::PasskeyCall`]) are what the client sends and what [`parse`] gives back, so both ends use one type per method.
pub trait Request {
    /// The method's full name, `interface.Method`.
    fn full_name(&self) -> &'static str;
    /// The call's parameters object.
    fn parameters(&self) -> Value;
}

impl Request for ServiceCall {
    fn full_name(&self) -> &'static str {
        match self {
            ServiceCall::GetInfo => "org.varlink.service.GetInfo",
            ServiceCall::GetInterfaceDescription { .. } => {
                "org.varlink.service.GetInterfaceDescription"
            }
        }
    }

    fn parameters(&self) -> Value {
        match self {
            ServiceCall::GetInfo => json!({}),
            ServiceCall::GetInterfaceDescription { interface } => {
                json!({ "interface": interface })
            }
        }
    }
}

impl Request for AuthCall {
    fn full_name(&self) -> &'static str {
        match self {
            AuthCall::Authenticate { .. } => "org.flaskbb.Auth.Authenticate",
            AuthCall::Reauthenticate { .. } => "org.flaskbb.Auth.Reauthenticate",
        }
    }

    fn parameters(&self) -> Value {
        match self {
            AuthCall::Authenticate {
                identifier,
                secret,
                context,
            } => json!({ "identifier": identifier, "secret": secret, "context": context }),
            AuthCall::Reauthenticate {
                user_id,
                secret,
                context,
            } => json!({ "user_id": user_id, "secret": secret, "context": context }),
        }
    }
}

impl Request for EventCall {
    fn full_name(&self) -> &'static str {
        EventCall::full_name(self)
    }

    fn parameters(&self) -> Value {
        EventCall::parameters(self)
    }
}

impl Request for AdminCall {
    fn full_name(&self) -> &'static str {
        match self {
            AdminCall::CreateUser { .. } => "org.flaskbb.Admin.CreateUser",
            AdminCall::GetUser { .. } => "org.flaskbb.Admin.GetUser",
            AdminCall::Unlock { .. } => "org.flaskbb.Admin.Unlock",
            AdminCall::SetPassword { .. } => "org.flaskbb.Admin.SetPassword",
            AdminCall::SetActivated { .. } => "org.flaskbb.Admin.SetActivated",
            AdminCall::SetBanned { .. } => "org.flaskbb.Admin.SetBanned",
            AdminCall::ListPlugins => "org.flaskbb.Admin.ListPlugins",
            AdminCall::ListHooks => "org.flaskbb.Admin.ListHooks",
            AdminCall::GetMetrics => "org.flaskbb.Admin.GetMetrics",
            AdminCall::GetStatus => "org.flaskbb.Admin.GetStatus",
            AdminCall::SetPluginEnabled { .. } => "org.flaskbb.Admin.SetPluginEnabled",
            AdminCall::Reload => "org.flaskbb.Admin.Reload",
        }
    }

    fn parameters(&self) -> Value {
        match self {
            AdminCall::CreateUser {
                username,
                email,
                password,
                activated,
            } => json!({
                "username": username, "email": email, "password": password, "activated": activated
            }),
            AdminCall::GetUser { identifier } => json!({ "identifier": identifier }),
            AdminCall::Unlock {
                identifier,
                address,
            } => json!({ "identifier": identifier, "address": address }),
            AdminCall::SetPassword { user_id, password } => {
                json!({ "user_id": user_id, "password": password })
            }
            AdminCall::SetActivated { user_id, activated } => {
                json!({ "user_id": user_id, "activated": activated })
            }
            AdminCall::SetBanned { user_id, banned } => {
                json!({ "user_id": user_id, "banned": banned })
            }
            AdminCall::SetPluginEnabled { name, enabled } => {
                json!({ "name": name, "enabled": enabled })
            }
            AdminCall::ListPlugins
            | AdminCall::ListHooks
            | AdminCall::GetMetrics
            | AdminCall::GetStatus
            | AdminCall::Reload => json!({}),
        }
    }
}

impl Request for AccountCall {
    fn full_name(&self) -> &'static str {
        match self {
            AccountCall::BeginTotp { .. } => "org.flaskbb.Account.BeginTotp",
            AccountCall::ConfirmTotp { .. } => "org.flaskbb.Account.ConfirmTotp",
            AccountCall::DisableTotp { .. } => "org.flaskbb.Account.DisableTotp",
            AccountCall::RegenerateRecoveryCodes { .. } => {
                "org.flaskbb.Account.RegenerateRecoveryCodes"
            }
            AccountCall::ChangePassword { .. } => "org.flaskbb.Account.ChangePassword",
            AccountCall::ResetPassword { .. } => "org.flaskbb.Account.ResetPassword",
            AccountCall::GetSecondFactor { .. } => "org.flaskbb.Account.GetSecondFactor",
            AccountCall::ListSecondFactors => "org.flaskbb.Account.ListSecondFactors",
            AccountCall::ListLocks => "org.flaskbb.Account.ListLocks",
            AccountCall::Unlock { .. } => "org.flaskbb.Account.Unlock",
            AccountCall::ResetSecondFactor { .. } => "org.flaskbb.Account.ResetSecondFactor",
        }
    }

    /// An optional parameter that is `None` is left out (the daemon reads a missing
    /// one and a `null` alike).
    fn parameters(&self) -> Value {
        let with_addr = |mut v: Value, key: &str, addr: &Option<String>| {
            if let (Some(a), Some(map)) = (addr, v.as_object_mut()) {
                map.insert(key.into(), json!(a));
            }
            v
        };
        match self {
            AccountCall::BeginTotp { user_id, issuer } => {
                json!({ "user_id": user_id, "issuer": issuer })
            }
            AccountCall::ConfirmTotp { user_id, code } => {
                json!({ "user_id": user_id, "code": code })
            }
            AccountCall::DisableTotp {
                user_id,
                password,
                code,
                remote_addr,
            }
            | AccountCall::RegenerateRecoveryCodes {
                user_id,
                password,
                code,
                remote_addr,
            } => with_addr(
                json!({ "user_id": user_id, "password": password, "code": code }),
                "remote_addr",
                remote_addr,
            ),
            AccountCall::ChangePassword {
                user_id,
                old_password,
                new_password,
                remote_addr,
            } => with_addr(
                json!({
                    "user_id": user_id, "old_password": old_password, "new_password": new_password
                }),
                "remote_addr",
                remote_addr,
            ),
            AccountCall::ResetPassword {
                user_id,
                new_password,
            } => json!({ "user_id": user_id, "new_password": new_password }),
            AccountCall::GetSecondFactor { user_id }
            | AccountCall::ResetSecondFactor { user_id } => json!({ "user_id": user_id }),
            AccountCall::ListSecondFactors | AccountCall::ListLocks => json!({}),
            AccountCall::Unlock { user_id, address } => {
                with_addr(json!({ "user_id": user_id }), "address", address)
            }
        }
    }
}

/// The fast path for the busiest calls, `org.flaskbb.Events`: a message that is a
/// well-formed event call is read straight into its typed form, with no JSON tree
/// between, and returned with its `oneway` flag. Anything else, or anything unusual,
/// gives `None`, and [`crate::wire::decode`] then [`parse`] handle the message (and
/// answer what is wrong with it) as always; when this returns a call, it is the one
/// they would give.
pub fn decode_event(message: &[u8]) -> Option<(EventCall, bool)> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        method: std::borrow::Cow<'a, str>,
        #[serde(borrow, default)]
        parameters: Option<&'a serde_json::value::RawValue>,
        #[serde(default)]
        oneway: Option<bool>,
        #[serde(default)]
        more: Option<bool>,
        #[serde(default)]
        upgrade: Option<bool>,
    }
    let text = std::str::from_utf8(message).ok()?;
    let envelope: Envelope<'_> = serde_json::from_str(text).ok()?;
    // `more` must be a boolean (or null) and asks for nothing this service does, as in
    // the full decoder; `upgrade` it refuses, with its own answer there.
    let _ = envelope.more;
    if envelope.upgrade == Some(true) {
        return None;
    }
    let (interface, method) = envelope.method.rsplit_once('.')?;
    if interface != EVENTS {
        return None;
    }
    let parameters = match envelope.parameters {
        None => "{}",
        Some(raw) if raw.get().starts_with('{') => raw.get(),
        Some(_) => return None,
    };
    let call = EventCall::parse_text(method, parameters)?;
    Some((call, envelope.oneway.unwrap_or(false)))
}

/// Checks and types a call's parameters. The error is the reply to send: the interface
/// or method not found, or `InvalidParameter` naming the first bad parameter.
pub fn parse(call: Call) -> Result<Method, Reply> {
    let Call {
        interface,
        method,
        mut parameters,
        ..
    } = call;
    if let Some(call) = crate::passkey::PasskeyCall::parse(&interface, &method, &mut parameters) {
        return call.map(Method::Passkey);
    }
    if interface == EVENTS {
        return match EventCall::parse(&method, parameters) {
            Some(call) => call.map(Method::Events),
            None => Err(Reply::error(
                errors::METHOD_NOT_FOUND,
                json!({ "method": format!("{interface}.{method}") }),
            )),
        };
    }
    if interface == ACCOUNT {
        return match AccountCall::parse(&method, parameters) {
            Some(call) => call.map(Method::Account),
            None => Err(Reply::error(
                errors::METHOD_NOT_FOUND,
                json!({ "method": format!("{interface}.{method}") }),
            )),
        };
    }
    // The parameters a method takes; any other is refused by name.
    let params = |known: &[&str]| Params::new(parameters, known);
    Ok(match (interface.as_str(), method.as_str()) {
        (SERVICE, "GetInfo") => {
            params(&[])?;
            Method::Service(ServiceCall::GetInfo)
        }
        (SERVICE, "GetInterfaceDescription") => {
            Method::Service(ServiceCall::GetInterfaceDescription {
                interface: params(&["interface"])?.req("interface")?,
            })
        }
        (AUTH, "Authenticate") => {
            let mut p = params(&["identifier", "secret", "context"])?;
            Method::Auth(AuthCall::Authenticate {
                identifier: p.req("identifier")?,
                secret: p.req("secret")?,
                context: p.opt("context")?.unwrap_or_default(),
            })
        }
        (AUTH, "Reauthenticate") => {
            let mut p = params(&["user_id", "secret", "context"])?;
            Method::Auth(AuthCall::Reauthenticate {
                user_id: p.req("user_id")?,
                secret: p.req("secret")?,
                context: p.opt("context")?.unwrap_or_default(),
            })
        }
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
            Method::Admin(AdminCall::CreateUser {
                username,
                email,
                password,
                activated,
            })
        }
        (ADMIN, "GetUser") => Method::Admin(AdminCall::GetUser {
            identifier: params(&["identifier"])?.req("identifier")?,
        }),
        (ADMIN, "Unlock") => {
            let mut p = params(&["identifier", "address"])?;
            Method::Admin(AdminCall::Unlock {
                identifier: p.req("identifier")?,
                address: p.opt("address")?,
            })
        }
        (ADMIN, "SetPassword") => {
            let mut p = params(&["user_id", "password"])?;
            Method::Admin(AdminCall::SetPassword {
                user_id: p.req("user_id")?,
                password: p.req("password")?,
            })
        }
        (ADMIN, "SetActivated") => {
            let mut p = params(&["user_id", "activated"])?;
            Method::Admin(AdminCall::SetActivated {
                user_id: p.req("user_id")?,
                activated: p.req("activated")?,
            })
        }
        (ADMIN, "SetBanned") => {
            let mut p = params(&["user_id", "banned"])?;
            Method::Admin(AdminCall::SetBanned {
                user_id: p.req("user_id")?,
                banned: p.req("banned")?,
            })
        }
        (ADMIN, "ListPlugins") => {
            params(&[])?;
            Method::Admin(AdminCall::ListPlugins)
        }
        (ADMIN, "ListHooks") => {
            params(&[])?;
            Method::Admin(AdminCall::ListHooks)
        }
        (ADMIN, "GetMetrics") => {
            params(&[])?;
            Method::Admin(AdminCall::GetMetrics)
        }
        (ADMIN, "GetStatus") => {
            params(&[])?;
            Method::Admin(AdminCall::GetStatus)
        }
        (ADMIN, "SetPluginEnabled") => {
            let mut p = params(&["name", "enabled"])?;
            Method::Admin(AdminCall::SetPluginEnabled {
                name: p.req("name")?,
                enabled: p.req("enabled")?,
            })
        }
        (ADMIN, "Reload") => {
            params(&[])?;
            Method::Admin(AdminCall::Reload)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{passkey::PasskeyCall, INTERFACES};

    /// Every call sent as the client sends it, parsed as the daemon parses it.
    fn round_trip(call: &dyn Request) -> Method {
        let (interface, method) = call.full_name().rsplit_once('.').unwrap();
        let declared = INTERFACES
            .iter()
            .find(|(name, _)| *name == interface)
            .unwrap()
            .1;
        assert!(
            declared.contains(&format!("method {method}(")),
            "{interface}.varlink declares no {method}"
        );
        let parsed = parse(Call {
            interface: interface.into(),
            method: method.into(),
            parameters: Some(call.parameters()),
            oneway: false,
        });
        match parsed {
            Ok(m) => m,
            Err(reply) => panic!("{} was refused: {reply:?}", call.full_name()),
        }
    }

    #[test]
    fn every_call_the_client_sends_parses_to_itself() {
        let context: Context = [("remote_addr".to_owned(), "10.0.0.1".to_owned())].into();
        let calls: Vec<Box<dyn Request>> = vec![
            Box::new(AuthCall::Authenticate {
                identifier: "ann".into(),
                secret: "pw".into(),
                context: context.clone(),
            }),
            Box::new(AuthCall::Reauthenticate {
                user_id: 3,
                secret: "pw".into(),
                context,
            }),
            Box::new(AdminCall::CreateUser {
                username: "ann".into(),
                email: "ann@example.org".into(),
                password: "pw".into(),
                activated: true,
            }),
            Box::new(AdminCall::GetUser {
                identifier: "ann".into(),
            }),
            Box::new(AdminCall::Unlock {
                identifier: "ann".into(),
                address: Some("10.0.0.1".into()),
            }),
            Box::new(AdminCall::SetPassword {
                user_id: 3,
                password: "pw".into(),
            }),
            Box::new(AdminCall::SetActivated {
                user_id: 3,
                activated: false,
            }),
            Box::new(AdminCall::SetBanned {
                user_id: 3,
                banned: true,
            }),
            Box::new(AdminCall::ListPlugins),
            Box::new(AdminCall::ListHooks),
            Box::new(AdminCall::GetMetrics),
            Box::new(AdminCall::GetStatus),
            Box::new(AdminCall::SetPluginEnabled {
                name: "audit".into(),
                enabled: false,
            }),
            Box::new(AdminCall::Reload),
            Box::new(ServiceCall::GetInfo),
            Box::new(ServiceCall::GetInterfaceDescription {
                interface: AUTH.into(),
            }),
            Box::new(AccountCall::BeginTotp {
                user_id: 3,
                issuer: "Cat Forum".into(),
            }),
            Box::new(AccountCall::ConfirmTotp {
                user_id: 3,
                code: "123456".into(),
            }),
            Box::new(AccountCall::DisableTotp {
                user_id: 3,
                password: "pw".into(),
                code: "123456".into(),
                remote_addr: Some("10.0.0.1".into()),
            }),
            Box::new(AccountCall::DisableTotp {
                user_id: 3,
                password: "pw".into(),
                code: "123456".into(),
                remote_addr: None,
            }),
            Box::new(AccountCall::RegenerateRecoveryCodes {
                user_id: 3,
                password: "pw".into(),
                code: "abcd-efgh-jkmn-pqrs".into(),
                remote_addr: None,
            }),
            Box::new(AccountCall::ChangePassword {
                user_id: 3,
                old_password: "pw".into(),
                new_password: "new".into(),
                remote_addr: Some("10.0.0.1".into()),
            }),
            Box::new(AccountCall::ResetPassword {
                user_id: 3,
                new_password: "new".into(),
            }),
            Box::new(AccountCall::GetSecondFactor { user_id: 3 }),
            Box::new(AccountCall::ListSecondFactors),
            Box::new(AccountCall::ListLocks),
            Box::new(AccountCall::Unlock {
                user_id: 3,
                address: None,
            }),
            Box::new(AccountCall::Unlock {
                user_id: 3,
                address: Some("10.0.0.1".into()),
            }),
            Box::new(AccountCall::ResetSecondFactor { user_id: 3 }),
            Box::new(PasskeyCall::BeginRegistration { user_id: 3 }),
            Box::new(PasskeyCall::FinishRegistration {
                user_id: 3,
                ceremony: "ab".repeat(32),
                name: "laptop".into(),
                credential: r#"{"id":"x"}"#.into(),
            }),
            Box::new(PasskeyCall::List { user_id: 3 }),
            Box::new(PasskeyCall::Remove {
                user_id: 3,
                id: "AAEC".into(),
            }),
            Box::new(PasskeyCall::BeginSignIn {
                context: Context::new(),
            }),
            Box::new(PasskeyCall::FinishSignIn {
                ceremony: "ab".repeat(32),
                credential: r#"{"id":"x"}"#.into(),
                context: Context::new(),
            }),
        ];
        for call in &calls {
            let parsed = round_trip(call.as_ref());
            let again: &dyn Request = match &parsed {
                Method::Auth(c) => c,
                Method::Admin(c) => c,
                Method::Service(c) => c,
                Method::Events(c) => c,
                Method::Account(c) => c,
                Method::Passkey(c) => c,
            };
            assert_eq!(again.full_name(), call.full_name());
            assert_eq!(again.parameters(), call.parameters());
        }
    }
}
