//! Passkeys (WebAuthn, through kanidm's `webauthn-rs`): a member registers passkeys
//! through `org.flaskbb.Account` and signs in with one through `org.flaskbb.Auth`.
//!
//! The ceremonies are `webauthn-rs`'s; this module keeps what they need between the
//! two calls of each and the credentials, and runs a verified sign-in through the
//! same flow as a password login ([`crate::auth::PluginAuthenticationManager`]): the
//! passkey's member is preauthenticated ([`Request::set_preauthenticated`], as the
//! second step of a two-step login is), so the lockout, `flaskbb_post_authenticate`
//! (bans, activation, audit) and on a refusal `flaskbb_authentication_failed` run as
//! for a password. A verified passkey also stands for the second factor: the request
//! carries [`AUTHENTICATED_BY`] = `passkey` in its context, which the daemon strips
//! from every client's context and the `totp` plugin honours.
//!
//! Storage is the daemon's key-value store, under the instance name [`KV`] (the
//! `flaskbbd_plugin_store` of a FlaskBB database, `plugin_store` of the daemon's own;
//! no configured instance can have that name): so every daemon on a shared database
//! sees the same credentials and ceremonies, on SQLite and PostgreSQL alike.
//!
//! - `ceremony:<id>`: one begun ceremony (its `webauthn-rs` state, whose member or
//!   address it is bound to, when it expires). Taken by one compare-and-swap delete
//!   ([`Store::kv_swap`]): of two finishes of one ceremony, on one daemon or several,
//!   exactly one gets it.
//! - `cred:<user id>:<credential id>`: one passkey ([`Stored`]).
//! - `owner:<credential id>`: the member a credential id is registered to (one only).
//! - `handle:<uuid>`, `handle-of:<user id>`: the member's WebAuthn user handle, a
//!   random UUID (the handle a discoverable credential answers with names no one).

use std::sync::Arc;

use chrono::Utc;
use flaskbbd_protocol::{
    methods::{ACCOUNT, AUTH},
    passkey::PasskeyCall,
    replies::{
        account as account_errors, auth as auth_errors, AuthenticationFailed, CeremonyReply,
        ListPasskeysReply, Message, NoParameters, PasskeyReply, Reason,
    },
    wire::Reply,
};
use plugin_abi::sdk::HookError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableKey, Passkey, PublicKeyCredential,
    RegisterPublicKeyCredential, Uuid, Webauthn, WebauthnError,
};

use crate::webauthn::{b64, cred_key, KV};
use crate::{
    answer::{run_request, Answer, Failure},
    auth::{AuthError, AuthenticationManager},
    builtins::messages,
    chain::Input,
    daemon::Daemon,
    generation::Generation,
    lockout,
    proto::{self, Context},
    request::Request,
    store::Store,
};

/// How long a begun ceremony can be finished.
pub(crate) const CEREMONY_LIFETIME_MS: i64 = 5 * 60 * 1000;

/// The answer to a passkey that is registered to no one.
pub(crate) const UNKNOWN_PASSKEY: &str =
    "This passkey is not registered here. Sign in with your password, or use another passkey.";

/// The answer to a passkey whose assertion did not verify.
pub(crate) const PASSKEY_REFUSED: &str =
    "The passkey could not be verified. Try again, or sign in with your password.";

/// The answer when an address began too many sign-ins within a ceremony's lifetime.
pub(crate) const TOO_MANY_CEREMONIES: &str =
    "Too many passkey sign-ins were started from your address. Wait a few minutes, or sign in with your password.";

/// Sign-in ceremonies one client address may begin within [`CEREMONY_LIFETIME_MS`]:
/// what bounds the rows an anonymous caller can make.
pub(crate) const CEREMONIES_PER_ADDRESS: u32 = 20;

/// Passkeys one member may register.
pub(crate) const MAX_PASSKEYS: usize = 20;

/// The penalty rows counting an address's begun sign-ins.
const CEREMONY_KIND: &str = "passkey-ceremony";

/// One registered passkey, as kept in the store.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    name: String,
    /// The member's `date_joined` when it was registered: a passkey left behind by a
    /// deleted account must not sign in the account that gets its id next.
    joined: String,
    passkey: Passkey,
    /// RFC 3339, UTC.
    created: String,
    last_used: Option<String>,
    counter: u32,
    backup_eligible: bool,
    backed_up: bool,
}

impl Stored {
    /// What `ListPasskeys` answers of it (never the public key: not a secret, but of
    /// no use to the forum).
    fn view(&self) -> flaskbbd_protocol::replies::Passkey {
        flaskbbd_protocol::replies::Passkey {
            id: b64(self.passkey.cred_id()),
            name: self.name.clone(),
            created: self.created.clone(),
            last_used: self.last_used.clone(),
            counter: self.counter,
            backup_eligible: self.backup_eligible,
            backed_up: self.backed_up,
        }
    }

    /// Reads the counter and backup flags out of the passkey (`webauthn-rs` keeps
    /// them inside), so that they are kept beside it as well.
    fn refresh_flags(&mut self) {
        let cred = serde_json::to_value(&self.passkey)
            .ok()
            .and_then(|v| v.get("cred").cloned())
            .unwrap_or_default();
        self.counter = cred["counter"]
            .as_u64()
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0);
        self.backup_eligible = cred["backup_eligible"].as_bool().unwrap_or(false);
        self.backed_up = cred["backup_state"].as_bool().unwrap_or(false);
    }
}

/// A begun ceremony, as kept in the store until it is finished or expires.
#[derive(Serialize, Deserialize)]
struct Ceremony {
    /// `"register"` or `"sign-in"`.
    kind: String,
    /// The member a registration is for.
    user_id: Option<i64>,
    /// The client address a sign-in was begun from (as the lockout counts it).
    address: Option<String>,
    expires_ms: i64,
    /// `webauthn-rs`'s state.
    state: Value,
}

fn random_hex(n: usize) -> Result<String, String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| format!("the system's random source failed: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn store_error(e: crate::store::StoreError) -> String {
    format!("the passkey store: {e}")
}

/// Why a passkey call of `org.flaskbb.Account` did not do what it was asked.
enum Refusal {
    NoSuchUser,
    Expired,
    Refused(String),
    NoSuchPasskey,
    Invalid(&'static str),
    Internal(String),
}

impl From<String> for Refusal {
    fn from(message: String) -> Refusal {
        Refusal::Internal(message)
    }
}

/// What `PasskeysUnavailable` says.
fn unavailable_message() -> &'static str {
    "passkeys are off: add a [webauthn] table to flaskbb.toml with rp_id (the forum's host), origins ([\"https://<that host>\"]) and rp_name (the forum's name), then reload"
}

/// `PasskeysUnavailable` of `interface` (`org.flaskbb.Auth` or `org.flaskbb.Account`).
fn unavailable(interface: &str) -> Answer {
    let name = if interface == AUTH {
        auth_errors::PASSKEYS_UNAVAILABLE
    } else {
        account_errors::PASSKEYS_UNAVAILABLE
    };
    let message = unavailable_message().to_owned();
    Answer::Reply(Reply::error(name, json!(Message { message })))
}

impl Refusal {
    fn answer(self) -> Answer {
        let named = |name: &str, parameters| Answer::Reply(Reply::error(name, parameters));
        let bare = |name: &str| named(name, json!(NoParameters {}));
        match self {
            Refusal::NoSuchUser => bare(account_errors::NO_SUCH_USER),
            Refusal::Expired => bare(account_errors::CEREMONY_EXPIRED),
            Refusal::Refused(reason) => {
                named(account_errors::PASSKEY_REFUSED, json!(Reason { reason }))
            }
            Refusal::NoSuchPasskey => bare(account_errors::NO_SUCH_PASSKEY),
            Refusal::Invalid(parameter) => Answer::Reply(Reply::invalid(parameter)),
            Refusal::Internal(message) => Answer::Failed(Failure::new(ACCOUNT, message)),
        }
    }
}

/// The relying party of the running configuration, or the answer that says passkeys
/// are off (or, never expected, that `webauthn-rs` refused a validated table).
pub(crate) fn relying_party(d: &Daemon, interface: &'static str) -> Result<Arc<Webauthn>, Answer> {
    let config = d.config();
    let Some(webauthn) = config.webauthn.clone() else {
        return Err(unavailable(interface));
    };
    webauthn
        .build()
        .map(Arc::new)
        // Validated at start: only a change of webauthn-rs's mind lands here.
        .map_err(|e| Answer::Failed(Failure::new(interface, e)))
}

/// The request a passkey sign-in runs in: the client's context without what only a
/// password login's second step carries (a passkey is both steps), marked as a
/// passkey's ([`Request::after_passkey`]).
pub(crate) fn sign_in_request(d: &Daemon, mut context: Context) -> Arc<Request> {
    context.remove(crate::pending::CONTEXT_KEY);
    context.remove("otp");
    Request::after_passkey(d.store.clone(), context)
}

/// Handles one passkey call but `FinishPasskeySignIn`, which the transport runs
/// through the password login's answer ([`sign_in`]).
pub(crate) async fn call(d: &Arc<Daemon>, call: PasskeyCall) -> Answer {
    let webauthn = match relying_party(d, call.interface()) {
        Ok(w) => w,
        Err(answer) => return answer,
    };
    match call {
        PasskeyCall::FinishSignIn { .. } => Answer::Failed(Failure::new(
            AUTH,
            "FinishPasskeySignIn reached the registration side: the transport answers it",
        )),
        PasskeyCall::BeginSignIn { context } => {
            let address = lockout::Policy::address(context.get("remote_addr").map(String::as_str));
            let req = Request::new(d.store.clone(), Context::new());
            let store = d.store.clone();
            match run_request(d, AUTH, req, move || {
                begin_sign_in(&*store, &webauthn, address)
            })
            .await
            {
                Ok(Ok(reply)) => reply.into(),
                Ok(Err(message)) => Failure::new(AUTH, message).into(),
                Err(failure) => failure.into(),
            }
        }
        account_call => {
            let req = Request::new(d.store.clone(), Context::new());
            let store = d.store.clone();
            let outcome = run_request(d, ACCOUNT, req, move || {
                Registrar {
                    store: &*store,
                    webauthn: &webauthn,
                }
                .run(account_call)
            })
            .await;
            match outcome {
                Ok(Ok(reply)) => reply.into(),
                Ok(Err(refusal)) => refusal.answer(),
                Err(failure) => failure.into(),
            }
        }
    }
}

/// When this process last pruned expired ceremonies (milliseconds since the epoch).
static LAST_PRUNE_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Stores a new ceremony; its id. Expired ceremonies are pruned at most once a minute
/// per process (a ceremony's expiry is checked when it is taken, whatever the rows).
fn begin_ceremony(store: &dyn Store, ceremony: &Ceremony) -> Result<String, String> {
    let now = Utc::now().timestamp_millis();
    let last = LAST_PRUNE_MS.load(std::sync::atomic::Ordering::Relaxed);
    if now - last > 60_000
        && LAST_PRUNE_MS
            .compare_exchange(
                last,
                now,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            )
            .is_ok()
    {
        prune_ceremonies(store)?;
    }
    let id = random_hex(32)?;
    let value = serde_json::to_string(ceremony)
        .map_err(|e| format!("cannot write the ceremony's state: {e}"))?;
    if !store
        .kv_swap(KV, &format!("ceremony:{id}"), None, Some(&value))
        .map_err(store_error)?
    {
        return Err("a new ceremony id was taken already (the random source repeats?)".into());
    }
    Ok(id)
}

/// Forgets the ceremonies that expired unfinished.
fn prune_ceremonies(store: &dyn Store) -> Result<(), String> {
    let now = Utc::now().timestamp_millis();
    for (key, value) in store.kv_prefixed(KV, "ceremony:").map_err(store_error)? {
        let Some(value) = value else { continue };
        let expired = serde_json::from_str::<Ceremony>(&value).map_or(true, |c| c.expires_ms < now);
        if expired {
            store
                .kv_swap(KV, &key, Some(&value), None)
                .map_err(store_error)?;
        }
    }
    Ok(())
}

/// Takes the ceremony `id` if it is of `kind` and `bound` accepts it: one
/// compare-and-swap delete, so that of concurrent finishes exactly one gets it.
/// `None` when it is unknown, used, expired, or not this caller's.
fn take_ceremony(
    store: &dyn Store,
    id: &str,
    kind: &str,
    bound: impl Fn(&Ceremony) -> bool,
) -> Result<Option<Ceremony>, String> {
    let key = format!("ceremony:{id}");
    let Some(value) = store.kv_get(KV, &key).map_err(store_error)? else {
        return Ok(None);
    };
    let Ok(ceremony) = serde_json::from_str::<Ceremony>(&value) else {
        return Ok(None);
    };
    if ceremony.kind != kind
        || ceremony.expires_ms < Utc::now().timestamp_millis()
        || !bound(&ceremony)
    {
        return Ok(None);
    }
    let taken = store
        .kv_swap(KV, &key, Some(&value), None)
        .map_err(store_error)?;
    Ok(taken.then_some(ceremony))
}

fn expires() -> i64 {
    Utc::now().timestamp_millis() + CEREMONY_LIFETIME_MS
}

fn options_reply(options: Value, ceremony: String) -> Result<Reply, String> {
    let text = serde_json::to_string(&options)
        .map_err(|e| format!("cannot write the ceremony's options: {e}"))?;
    Ok(Reply::ok(CeremonyReply {
        options: text,
        ceremony,
    }))
}

/// Counts one begun sign-in for `address` (committed at once, so a burst counts
/// exactly); whether the address is still within [`CEREMONIES_PER_ADDRESS`].
fn admit_sign_in(store: &dyn Store, address: &str) -> Result<bool, String> {
    let key = crate::store::PenaltyKey::new(CEREMONY_KIND, address, "");
    let rows = store
        .reserve_penalties(
            std::slice::from_ref(&key),
            Utc::now(),
            CEREMONY_LIFETIME_MS,
            crate::store::Timing::Touch,
        )
        .map_err(store_error)?;
    Ok(rows.first().map_or(0, |p| p.failures) <= CEREMONIES_PER_ADDRESS)
}

fn begin_sign_in(store: &dyn Store, webauthn: &Webauthn, address: String) -> Result<Reply, String> {
    if !admit_sign_in(store, &address)? {
        tracing::warn!(
            "passkey sign-ins refused to an address past {CEREMONIES_PER_ADDRESS} begun within {} minutes",
            CEREMONY_LIFETIME_MS / 60_000
        );
        let failed = AuthenticationFailed {
            reason: TOO_MANY_CEREMONIES.into(),
            ask: None,
            pending_login: None,
        };
        return Ok(Reply::error(
            auth_errors::AUTHENTICATION_FAILED,
            json!(failed),
        ));
    }
    let (options, state) = webauthn
        .start_discoverable_authentication()
        .map_err(|e| format!("webauthn-rs could not begin a sign-in: {e}"))?;
    let ceremony = Ceremony {
        kind: "sign-in".into(),
        user_id: None,
        address: Some(address),
        expires_ms: expires(),
        state: serde_json::to_value(&state)
            .map_err(|e| format!("cannot write the ceremony's state: {e}"))?,
    };
    let id = begin_ceremony(store, &ceremony)?;
    let options =
        serde_json::to_value(&options).map_err(|e| format!("cannot write the options: {e}"))?;
    options_reply(options, id)
}

/// The passkey stored under `key`, with the value it was read as.
fn read_stored(store: &dyn Store, key: &str) -> Result<Option<(Stored, String)>, String> {
    let Some(value) = store.kv_get(KV, key).map_err(store_error)? else {
        return Ok(None);
    };
    let stored = serde_json::from_str::<Stored>(&value).map_err(|e| {
        let owner = key.split(':').nth(1).unwrap_or("?");
        format!(
            "a stored passkey of member {owner} cannot be read ({e}): remove it with RemovePasskey"
        )
    })?;
    Ok(Some((stored, value)))
}

/// What `handle:<uuid>` holds: the member's id and `date_joined`, so that a handle
/// outliving its account names no one who gets the id later.
fn handle_owner(user: &crate::store::UserRecord) -> String {
    format!("{} {}", user.user.id, user.user.date_joined)
}

/// Forgets a passkey an earlier account with the same id left behind (read as
/// `value` under `key`), and its owner row.
fn forget_stale(
    store: &dyn Store,
    user_id: i64,
    key: &str,
    value: &str,
    stored: &Stored,
) -> Result<(), String> {
    store
        .kv_swap(KV, key, Some(value), None)
        .map_err(store_error)?;
    let owner = format!("owner:{}", b64(stored.passkey.cred_id()));
    store
        .kv_swap(KV, &owner, Some(&user_id.to_string()), None)
        .map_err(store_error)?;
    tracing::info!(
        user_id,
        "a passkey of an earlier account with this id was forgotten"
    );
    Ok(())
}

/// The registration side, on `org.flaskbb.Account`.
struct Registrar<'a> {
    store: &'a dyn Store,
    webauthn: &'a Webauthn,
}

impl Registrar<'_> {
    fn run(&self, call: PasskeyCall) -> Result<Reply, Refusal> {
        match call {
            PasskeyCall::BeginRegistration { user_id } => self.begin(user_id),
            PasskeyCall::FinishRegistration {
                user_id,
                ceremony,
                name,
                credential,
            } => self.finish(user_id, &ceremony, name, &credential),
            PasskeyCall::List { user_id } => {
                let user = self.user(user_id)?;
                let passkeys = self.passkeys(&user)?.iter().map(Stored::view).collect();
                Ok(Reply::ok(ListPasskeysReply { passkeys }))
            }
            PasskeyCall::Remove { user_id, id } => self.remove(user_id, &id),
            PasskeyCall::BeginSignIn { .. } | PasskeyCall::FinishSignIn { .. } => Err(
                Refusal::Internal("a sign-in call reached the registration side".into()),
            ),
        }
    }

    fn user(&self, user_id: i64) -> Result<crate::store::UserRecord, Refusal> {
        match self.store.find_user_by_id(user_id) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(Refusal::NoSuchUser),
            Err(e) => Err(Refusal::Internal(store_error(e))),
        }
    }

    /// The member's passkeys, oldest first (those an earlier account with the same
    /// id left behind are not theirs: they are forgotten here).
    fn passkeys(&self, user: &crate::store::UserRecord) -> Result<Vec<Stored>, Refusal> {
        let user_id = user.user.id;
        let mut all = Vec::new();
        let prefix = format!("cred:{user_id}:");
        for (key, value) in self.store.kv_prefixed(KV, &prefix).map_err(store_error)? {
            let Some(value) = value else { continue };
            let stored = serde_json::from_str::<Stored>(&value).map_err(|e| {
                format!("a stored passkey of member {user_id} cannot be read ({e}): remove it with RemovePasskey")
            })?;
            if stored.joined != user.user.date_joined {
                forget_stale(self.store, user_id, &key, &value, &stored)?;
                continue;
            }
            all.push(stored);
        }
        all.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(all)
    }

    /// The member's user handle, made (at random) on first use. A handle an earlier
    /// account with the same id left behind is replaced.
    fn handle(&self, user: &crate::store::UserRecord) -> Result<Uuid, Refusal> {
        let user_id = user.user.id;
        let of = format!("handle-of:{user_id}");
        for _ in 0..3 {
            if let Some(text) = self.store.kv_get(KV, &of).map_err(store_error)? {
                let handle = Uuid::parse_str(&text)
                    .map_err(|e| Refusal::Internal(format!("the stored {of:?} is no UUID: {e}")))?;
                let owner = self
                    .store
                    .kv_get(KV, &format!("handle:{handle}"))
                    .map_err(store_error)?;
                if owner.as_deref() == Some(handle_owner(user).as_str()) {
                    return Ok(handle);
                }
                // Another account's, gone: forget it and make this member's own.
                self.store
                    .kv_swap(KV, &of, Some(&text), None)
                    .map_err(store_error)?;
                continue;
            }
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes)
                .map_err(|e| format!("the system's random source failed: {e}"))?;
            // A version 4 (random) UUID.
            bytes[6] = (bytes[6] & 0x0f) | 0x40;
            bytes[8] = (bytes[8] & 0x3f) | 0x80;
            let handle = Uuid::from_bytes(bytes);
            let text = handle.to_string();
            let owner = handle_owner(user);
            if self
                .store
                .kv_swap(KV, &format!("handle:{text}"), None, Some(&owner))
                .map_err(store_error)?
                && self
                    .store
                    .kv_swap(KV, &of, None, Some(&text))
                    .map_err(store_error)?
            {
                return Ok(handle);
            }
            // Another call made the member's handle meanwhile: read it.
        }
        Err(Refusal::Internal(format!(
            "the member {user_id}'s passkey handle could not be made"
        )))
    }

    fn begin(&self, user_id: i64) -> Result<Reply, Refusal> {
        let user = self.user(user_id)?;
        let handle = self.handle(&user)?;
        let existing = self.passkeys(&user)?;
        if existing.len() >= MAX_PASSKEYS {
            return Err(Refusal::Refused(format!(
                "this member has {MAX_PASSKEYS} passkeys, the most one may have: remove one first"
            )));
        }
        let exclude = existing
            .iter()
            .map(|s| s.passkey.cred_id().clone())
            .collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(
                handle,
                &user.user.username,
                &user.user.username,
                Some(exclude),
            )
            .map_err(|e| format!("webauthn-rs could not begin a registration: {e}"))?;
        let mut options =
            serde_json::to_value(&options).map_err(|e| format!("cannot write the options: {e}"))?;
        // A discoverable credential: sign-in offers it without a name typed first.
        if let Some(selection) = options
            .get_mut("publicKey")
            .and_then(|p| p.get_mut("authenticatorSelection"))
            .and_then(Value::as_object_mut)
        {
            selection.insert("residentKey".into(), json!("required"));
            selection.insert("requireResidentKey".into(), json!(true));
        }
        let ceremony = Ceremony {
            kind: "register".into(),
            user_id: Some(user_id),
            address: None,
            expires_ms: expires(),
            state: serde_json::to_value(&state)
                .map_err(|e| format!("cannot write the ceremony's state: {e}"))?,
        };
        let id = begin_ceremony(self.store, &ceremony)?;
        Ok(options_reply(options, id)?)
    }

    fn finish(
        &self,
        user_id: i64,
        ceremony: &str,
        name: String,
        credential: &str,
    ) -> Result<Reply, Refusal> {
        let user = self.user(user_id)?;
        let credential: RegisterPublicKeyCredential =
            serde_json::from_str(credential).map_err(|_| Refusal::Invalid("credential"))?;
        let Some(ceremony) = take_ceremony(self.store, ceremony, "register", |c| {
            c.user_id == Some(user_id)
        })?
        else {
            return Err(Refusal::Expired);
        };
        let state = serde_json::from_value(ceremony.state)
            .map_err(|e| format!("the ceremony's state cannot be read: {e}"))?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&credential, &state)
            .map_err(|e| {
                tracing::info!(
                    user_id,
                    "account: a passkey registration did not verify: {e}"
                );
                Refusal::Refused(format!("the registration did not verify: {e}"))
            })?;
        let id = b64(passkey.cred_id());
        let owner = format!("owner:{id}");
        let claimed = self
            .store
            .kv_swap(KV, &owner, None, Some(&user_id.to_string()))
            .map_err(store_error)?;
        // An owner row of this very member without its passkey (a write between the
        // two that failed) is this member's to finish.
        let own_orphan = !claimed
            && self
                .store
                .kv_get(KV, &owner)
                .map_err(store_error)?
                .as_deref()
                == Some(user_id.to_string().as_str())
            && self
                .store
                .kv_get(KV, &cred_key(user_id, &id))
                .map_err(store_error)?
                .is_none();
        if !claimed && !own_orphan {
            return Err(Refusal::Refused(
                "this passkey is registered already (to this or another account): use another authenticator".into(),
            ));
        }
        let mut stored = Stored {
            name,
            joined: user.user.date_joined.clone(),
            passkey,
            created: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            last_used: None,
            counter: 0,
            backup_eligible: false,
            backed_up: false,
        };
        stored.refresh_flags();
        let value =
            serde_json::to_string(&stored).map_err(|e| format!("cannot write the passkey: {e}"))?;
        if !self
            .store
            .kv_swap(KV, &cred_key(user_id, &id), None, Some(&value))
            .map_err(store_error)?
        {
            return Err(Refusal::Refused(
                "this passkey is registered already (to this or another account): use another authenticator".into(),
            ));
        }
        tracing::info!(user_id, "account: passkey added");
        Ok(Reply::ok(PasskeyReply {
            passkey: stored.view(),
        }))
    }

    fn remove(&self, user_id: i64, id: &str) -> Result<Reply, Refusal> {
        self.user(user_id)?;
        let key = cred_key(user_id, id);
        let Some((_, value)) = read_stored(self.store, &key)? else {
            return Err(Refusal::NoSuchPasskey);
        };
        if !self
            .store
            .kv_swap(KV, &key, Some(&value), None)
            .map_err(store_error)?
        {
            // Removed (or used, and so rewritten) meanwhile: removed by whoever won,
            // or to be removed again.
            return Err(Refusal::NoSuchPasskey);
        }
        let owner = format!("owner:{id}");
        let user = user_id.to_string();
        self.store
            .kv_swap(KV, &owner, Some(&user), None)
            .map_err(store_error)?;
        tracing::info!(user_id, "account: passkey removed");
        Ok(Reply::empty())
    }
}

fn internal(message: String) -> AuthError {
    AuthError::Internal { message }
}

/// A refused sign-in, with `reason` for the member.
fn failed<T>(reason: &str) -> Result<T, AuthError> {
    Err(AuthError::Failed {
        reason: reason.into(),
    })
}

/// Verifies the assertion, then runs the login of its member through `manager`.
pub(crate) fn sign_in(
    g: &Generation,
    manager: &dyn AuthenticationManager,
    req: &Request,
    webauthn: &Webauthn,
    ceremony: &str,
    credential: &str,
) -> Result<proto::User, AuthError> {
    let store = &*req.store;
    let address = lockout::Policy::address(req.context.get("remote_addr").map(String::as_str));
    let Some(ceremony) = take_ceremony(store, ceremony, "sign-in", |c| {
        c.address.as_deref() == Some(address.as_str())
    })
    .map_err(internal)?
    else {
        tracing::info!(
            "passkey sign-in with an unknown, used, expired or another address's ceremony"
        );
        return failed(messages::SIGN_IN_AGAIN);
    };
    let Ok(credential) = serde_json::from_str::<PublicKeyCredential>(credential) else {
        tracing::info!("passkey sign-in with an answer that is no WebAuthn assertion");
        return failed(PASSKEY_REFUSED);
    };
    let state = serde_json::from_value(ceremony.state)
        .map_err(|e| internal(format!("the ceremony's state cannot be read: {e}")))?;
    let found = claimed_passkey(store, webauthn, &credential)?;
    let record = match &found {
        Some(claimed) => store
            .find_user_by_id(claimed.user_id)
            .map_err(|e| internal(store_error(e)))?,
        None => None,
    };
    // The handle and the passkey must both be the present account's: an account
    // deleted and its id given to another leaves rows that name the old one.
    let (
        Some(Claimed {
            user_id,
            owner,
            stored,
            as_read,
        }),
        Some(record),
    ) = (found, record)
    else {
        tracing::info!("passkey sign-in with a passkey registered to no one");
        return failed(UNKNOWN_PASSKEY);
    };
    if owner != handle_owner(&record) || stored.joined != record.user.date_joined {
        tracing::warn!(
            user_id,
            "passkey sign-in with a passkey of an earlier account that had this id: refused and forgotten"
        );
        let key = cred_key(user_id, &b64(stored.passkey.cred_id()));
        forget_stale(store, user_id, &key, &as_read, &stored).map_err(internal)?;
        return failed(UNKNOWN_PASSKEY);
    }
    let username = record.user.username.clone();
    let verified = webauthn.finish_discoverable_authentication(
        &credential,
        state,
        &[DiscoverableKey::from(&stored.passkey)],
    );
    let result = match verified {
        Ok(r) => r,
        Err(e) => return refused_sign_in(g, req, user_id, &username, e),
    };
    keep_use(store, user_id, stored, as_read, &result)?;
    req.set_preauthenticated(user_id);
    manager.authenticate(g, req, &username, "")
}

/// A passkey as a sign-in's assertion names it.
struct Claimed {
    /// The member its user handle names.
    user_id: i64,
    /// What that handle's row holds ([`handle_owner`]).
    owner: String,
    /// That member's passkey of its credential id.
    stored: Stored,
    /// The text `stored` was read from, for a compare-and-swap.
    as_read: String,
}

/// Whose passkey `credential` says it is, by its user handle and credential id;
/// `None` when either names nothing.
fn claimed_passkey(
    store: &dyn Store,
    webauthn: &Webauthn,
    credential: &PublicKeyCredential,
) -> Result<Option<Claimed>, AuthError> {
    let Ok((handle, cred_id)) = webauthn.identify_discoverable_authentication(credential) else {
        return Ok(None);
    };
    let owner = store
        .kv_get(KV, &format!("handle:{handle}"))
        .map_err(|e| internal(store_error(e)))?;
    let user_id = owner
        .as_deref()
        .and_then(|o| o.split_once(' '))
        .and_then(|(id, _)| id.parse::<i64>().ok());
    let (Some(user_id), Some(owner)) = (user_id, owner) else {
        return Ok(None);
    };
    Ok(read_stored(store, &cred_key(user_id, &b64(cred_id)))
        .map_err(internal)?
        .map(|(stored, as_read)| Claimed {
            user_id,
            owner,
            stored,
            as_read,
        }))
}

/// A sign-in whose assertion did not verify (`error`): a failed login of the
/// passkey's member `username`, through FlaskBB's failure hooks (the lockout counts
/// it), committed. The answer is the refusal, or the hooks' failure.
fn refused_sign_in(
    g: &Generation,
    req: &Request,
    user_id: i64,
    username: &str,
    error: WebauthnError,
) -> Result<proto::User, AuthError> {
    tracing::info!(user_id, "passkey sign-in refused: {error}");
    let f = g.call(
        req,
        Input::AuthenticationFailed {
            identifier: username,
        },
    );
    if let Err(e) = &f.result {
        let message = match e {
            HookError::Failed { message } => message.clone(),
            other => other.to_string(),
        };
        req.commit().map_err(|e| internal(e.to_string()))?;
        return Err(crate::auth::internal(
            "flaskbb_authentication_failed",
            f.decided_by.as_deref(),
            &message,
        ));
    }
    req.commit().map_err(|e| internal(e.to_string()))?;
    failed(PASSKEY_REFUSED)
}

/// Keeps the counter and flags of `user_id`'s passkey `stored` (as it was read,
/// `as_read`) after its verified use `result`: one compare-and-swap, so that a
/// concurrent use of the same passkey cannot move its counter back. Refused when
/// the passkey was removed meanwhile or its counter has passed this use's.
fn keep_use(
    store: &dyn Store,
    user_id: i64,
    mut stored: Stored,
    mut as_read: String,
    result: &AuthenticationResult,
) -> Result<(), AuthError> {
    let key = cred_key(user_id, &b64(stored.passkey.cred_id()));
    for attempt in 0.. {
        stored.passkey.update_credential(result);
        stored.refresh_flags();
        stored.last_used = Some(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let value = serde_json::to_string(&stored)
            .map_err(|e| internal(format!("cannot write the passkey: {e}")))?;
        if store
            .kv_swap(KV, &key, Some(&as_read), Some(&value))
            .map_err(|e| internal(store_error(e)))?
        {
            break;
        }
        // Changed meanwhile: removed (refused), or used (read again: a counter that
        // has passed this one's is a regression).
        match read_stored(store, &key).map_err(internal)? {
            Some((now, text)) if attempt < 3 => {
                if result.counter() > 0 && now.counter >= result.counter() {
                    tracing::warn!(user_id, "passkey sign-in refused: its counter went back");
                    return failed(PASSKEY_REFUSED);
                }
                stored = now;
                as_read = text;
            }
            Some(_) => {
                return Err(internal(
                    "the passkey kept changing under its sign-in".into(),
                ))
            }
            None => return failed(UNKNOWN_PASSKEY),
        }
    }
    Ok(())
}
