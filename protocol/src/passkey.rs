//! The passkey methods: registration in `org.flaskbb.Account`, sign-in in
//! `org.flaskbb.Auth`. Kept apart from [`crate::methods`] so that the other methods'
//! parsing stays as it is; [`crate::methods::parse`] asks [`PasskeyCall::parse`] first.
//!
//! The WebAuthn JSON (the options a browser passes to `navigator.credentials`, the
//! credential it answers) travels as a string holding that JSON: the daemon reads
//! it, the protocol only bounds its size.

use serde_json::{json, Value};

use crate::{
    methods::{Request, ACCOUNT, AUTH, MAX_NAME_BYTES},
    types::Context,
    wire::{Params, Reply},
};

/// The longest credential JSON a finish call takes, in bytes (an attestation with a
/// certificate chain is a few kilobytes).
pub const MAX_CREDENTIAL_BYTES: usize = 64 * 1024;

/// The longest ceremony id taken, in bytes (the daemon makes 64 hex digits).
pub const MAX_CEREMONY_BYTES: usize = 128;

/// A passkey call, of `org.flaskbb.Account` (registration, listing, removal: forum
/// peers only) or `org.flaskbb.Auth` (sign-in). Holds no `Debug`: a credential is
/// not a secret, but nothing here needs to be logged.
pub enum PasskeyCall {
    /// `Account.BeginPasskeyRegistration`: the options for `navigator.credentials.create`.
    BeginRegistration {
        /// The member adding a passkey.
        user_id: i64,
    },
    /// `Account.FinishPasskeyRegistration`: the browser's answer, checked and kept.
    FinishRegistration {
        /// The member adding a passkey.
        user_id: i64,
        /// The ceremony id `BeginPasskeyRegistration` answered.
        ceremony: String,
        /// The member's name for the passkey ("laptop").
        name: String,
        /// The `PublicKeyCredential` as JSON.
        credential: String,
    },
    /// `Account.ListPasskeys`: the member's passkeys.
    List {
        /// The member.
        user_id: i64,
    },
    /// `Account.RemovePasskey`: forgets one of the member's passkeys.
    Remove {
        /// The member.
        user_id: i64,
        /// The passkey's id, as `ListPasskeys` answers it.
        id: String,
    },
    /// `Auth.BeginPasskeySignIn`: the options for `navigator.credentials.get`.
    BeginSignIn {
        /// The client's request (`remote_addr`: the ceremony is bound to it).
        context: Context,
    },
    /// `Auth.FinishPasskeySignIn`: answered as `Authenticate` is.
    FinishSignIn {
        /// The ceremony id `BeginPasskeySignIn` answered.
        ceremony: String,
        /// The `PublicKeyCredential` (an assertion) as JSON.
        credential: String,
        /// The client's request, as for `Authenticate`.
        context: Context,
    },
}

impl PasskeyCall {
    /// The call of `interface.method` with these parameters, when it is a passkey
    /// method; `None` for every other method (which [`crate::methods::parse`] then
    /// reads as before).
    pub fn parse(
        interface: &str,
        method: &str,
        parameters: &mut Option<Value>,
    ) -> Option<Result<PasskeyCall, Reply>> {
        let known = matches!(
            (interface, method),
            (
                ACCOUNT,
                "BeginPasskeyRegistration"
                    | "FinishPasskeyRegistration"
                    | "ListPasskeys"
                    | "RemovePasskey"
            ) | (AUTH, "BeginPasskeySignIn" | "FinishPasskeySignIn")
        );
        if !known {
            return None;
        }
        let parameters = parameters.take();
        let params = |names: &[&str]| Params::new(parameters, names);
        let ceremony = |p: &mut Params| -> Result<String, Reply> {
            let c: String = p.req("ceremony")?;
            if c.is_empty() || c.len() > MAX_CEREMONY_BYTES {
                return Err(Reply::invalid("ceremony"));
            }
            Ok(c)
        };
        let credential = |p: &mut Params| -> Result<String, Reply> {
            let c: String = p.req("credential")?;
            if c.len() > MAX_CREDENTIAL_BYTES
                || serde_json::from_str::<Value>(&c).map_or(true, |v| !v.is_object())
            {
                return Err(Reply::invalid("credential"));
            }
            Ok(c)
        };
        Some((|| {
            Ok(match method {
                "BeginPasskeyRegistration" => PasskeyCall::BeginRegistration {
                    user_id: params(&["user_id"])?.req("user_id")?,
                },
                "FinishPasskeyRegistration" => {
                    let mut p = params(&["user_id", "ceremony", "name", "credential"])?;
                    let name: String = p.req("name")?;
                    if name.trim().is_empty() || name.len() > MAX_NAME_BYTES || name.contains('\0')
                    {
                        return Err(Reply::invalid("name"));
                    }
                    PasskeyCall::FinishRegistration {
                        user_id: p.req("user_id")?,
                        ceremony: ceremony(&mut p)?,
                        name: name.trim().to_owned(),
                        credential: credential(&mut p)?,
                    }
                }
                "ListPasskeys" => PasskeyCall::List {
                    user_id: params(&["user_id"])?.req("user_id")?,
                },
                "RemovePasskey" => {
                    let mut p = params(&["user_id", "id"])?;
                    PasskeyCall::Remove {
                        user_id: p.req("user_id")?,
                        id: p.req("id")?,
                    }
                }
                "BeginPasskeySignIn" => PasskeyCall::BeginSignIn {
                    context: params(&["context"])?.opt("context")?.unwrap_or_default(),
                },
                _ => {
                    let mut p = params(&["ceremony", "credential", "context"])?;
                    PasskeyCall::FinishSignIn {
                        ceremony: ceremony(&mut p)?,
                        credential: credential(&mut p)?,
                        context: p.opt("context")?.unwrap_or_default(),
                    }
                }
            })
        })())
    }

    /// The interface the call belongs to.
    pub fn interface(&self) -> &'static str {
        match self {
            PasskeyCall::BeginSignIn { .. } | PasskeyCall::FinishSignIn { .. } => AUTH,
            _ => ACCOUNT,
        }
    }
}

impl Request for PasskeyCall {
    fn full_name(&self) -> &'static str {
        match self {
            PasskeyCall::BeginRegistration { .. } => "org.flaskbb.Account.BeginPasskeyRegistration",
            PasskeyCall::FinishRegistration { .. } => {
                "org.flaskbb.Account.FinishPasskeyRegistration"
            }
            PasskeyCall::List { .. } => "org.flaskbb.Account.ListPasskeys",
            PasskeyCall::Remove { .. } => "org.flaskbb.Account.RemovePasskey",
            PasskeyCall::BeginSignIn { .. } => "org.flaskbb.Auth.BeginPasskeySignIn",
            PasskeyCall::FinishSignIn { .. } => "org.flaskbb.Auth.FinishPasskeySignIn",
        }
    }

    fn parameters(&self) -> Value {
        match self {
            PasskeyCall::BeginRegistration { user_id } | PasskeyCall::List { user_id } => {
                json!({ "user_id": user_id })
            }
            PasskeyCall::FinishRegistration {
                user_id,
                ceremony,
                name,
                credential,
            } => json!({
                "user_id": user_id, "ceremony": ceremony, "name": name, "credential": credential
            }),
            PasskeyCall::Remove { user_id, id } => json!({ "user_id": user_id, "id": id }),
            PasskeyCall::BeginSignIn { context } => json!({ "context": context }),
            PasskeyCall::FinishSignIn {
                ceremony,
                credential,
                context,
            } => json!({ "ceremony": ceremony, "credential": credential, "context": context }),
        }
    }
}
