//! Passkeys through the real daemon and socket, with a software authenticator made
//! here (attestation "none", ES256, as a platform authenticator answers): a member
//! registers a passkey (`org.flaskbb.Account`) and signs in with it alone
//! (`org.flaskbb.Auth`), which also stands for a TOTP member's second factor; a
//! ceremony is good once; an assertion for another origin or relying party id, with
//! a counter gone back, of an unknown or removed passkey, or of a banned member is
//! refused; without `[webauthn]` every call says what to configure; the table is
//! checked at start with its key named; and nothing secret reaches the log.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flaskbbd_protocol::replies::{account as account_errors, auth as auth_errors};
use flaskbbd_tests::{
    calls::{
        authenticate_in, begin_passkey_registration, begin_passkey_sign_in, context_of,
        finish_passkey_registration, finish_passkey_sign_in, list_passkeys, remove_passkey,
        reset_second_factor, set_banned,
    },
    daemon::{at_once, err, second_daemon, TestDaemon},
    flaskbbd, text,
    totp::{enrol, TOTP},
    Scratch,
};
use openssl::{
    bn::{BigNum, BigNumContext},
    ec::{EcGroup, EcKey},
    hash::MessageDigest,
    nid::Nid,
    pkey::{PKey, Private},
    sha::sha256,
    sign::Signer,
};
use serde_json::{json, Value};

const FAILED: &str = "org.flaskbb.Auth.AuthenticationFailed";
const ORIGIN: &str = "http://localhost:8080";
const WEBAUTHN: &str =
    "[webauthn]\nrp_id = \"localhost\"\norigins = [\"http://localhost:8080\"]\nrp_name = \"Cat Forum\"\n";
const EXPIRED: &str = "Your sign-in has expired. Please sign in again.";
const REFUSED: &str =
    "The passkey could not be verified. Try again, or sign in with your password.";
const UNKNOWN: &str =
    "This passkey is not registered here. Sign in with your password, or use another passkey.";

fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn unb64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' | b'+' => 62,
        b'_' | b'/' => 63,
        _ => panic!("not base64url: {text}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

/// A CBOR byte string.
fn cbor_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut out = match bytes.len() {
        n if n < 24 => vec![0x40 | n as u8],
        n if n < 256 => vec![0x58, n as u8],
        n => vec![0x59, (n >> 8) as u8, n as u8],
    };
    out.extend_from_slice(bytes);
    out
}

/// A software passkey: one ES256 key for one relying party.
struct SoftPasskey {
    key: PKey<Private>,
    ec: EcKey<Private>,
    cred_id: Vec<u8>,
    user_handle: Vec<u8>,
    counter: u32,
}

impl SoftPasskey {
    fn new() -> SoftPasskey {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let mut cred_id = [0u8; 16];
        openssl::rand::rand_bytes(&mut cred_id).unwrap();
        SoftPasskey {
            key: PKey::from_ec_key(ec.clone()).unwrap(),
            ec,
            cred_id: cred_id.to_vec(),
            user_handle: Vec::new(),
            counter: 0,
        }
    }

    fn cose_key(&self) -> Vec<u8> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
        let mut ctx = BigNumContext::new().unwrap();
        self.ec
            .public_key()
            .affine_coordinates(&group, &mut x, &mut y, &mut ctx)
            .unwrap();
        // {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}
        let mut out = vec![0xa5, 0x01, 0x02, 0x03, 0x26, 0x20, 0x01, 0x21];
        out.extend(cbor_bytes(&x.to_vec_padded(32).unwrap()));
        out.push(0x22);
        out.extend(cbor_bytes(&y.to_vec_padded(32).unwrap()));
        out
    }

    /// Authenticator data: user present and verified, backup eligible and backed up.
    fn auth_data(&self, rp_id: &str, attested: bool) -> Vec<u8> {
        let mut data = sha256(rp_id.as_bytes()).to_vec();
        data.push(0x01 | 0x04 | 0x08 | 0x10 | if attested { 0x40 } else { 0 });
        data.extend_from_slice(&self.counter.to_be_bytes());
        if attested {
            data.extend_from_slice(&[0u8; 16]);
            data.extend_from_slice(&(self.cred_id.len() as u16).to_be_bytes());
            data.extend_from_slice(&self.cred_id);
            data.extend(self.cose_key());
        }
        data
    }

    fn client_data(kind: &str, challenge: &str, origin: &str) -> Vec<u8> {
        json!({ "type": kind, "challenge": challenge, "origin": origin, "crossOrigin": false })
            .to_string()
            .into_bytes()
    }

    /// Answers `navigator.credentials.create(options)`.
    fn register(&mut self, options: &Value) -> String {
        let public_key = &options["publicKey"];
        assert_eq!(public_key["rp"]["id"], "localhost", "{options}");
        assert_eq!(
            public_key["authenticatorSelection"]["residentKey"], "required",
            "{options}"
        );
        self.user_handle = unb64(public_key["user"]["id"].as_str().unwrap());
        let challenge = public_key["challenge"].as_str().unwrap();
        let client_data = Self::client_data("webauthn.create", challenge, ORIGIN);
        let mut attestation = vec![0xa3];
        attestation.extend([0x63]);
        attestation.extend(b"fmt");
        attestation.extend([0x64]);
        attestation.extend(b"none");
        attestation.extend([0x67]);
        attestation.extend(b"attStmt");
        attestation.extend([0xa0, 0x68]);
        attestation.extend(b"authData");
        attestation.extend(cbor_bytes(&self.auth_data("localhost", true)));
        json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "response": {
                "attestationObject": b64(&attestation),
                "clientDataJSON": b64(&client_data),
            },
            "extensions": {},
        })
        .to_string()
    }

    /// Answers `navigator.credentials.get(options)` with the next counter, as if at
    /// `origin` for `rp_id`.
    fn assert_for(&mut self, options: &Value, origin: &str, rp_id: &str) -> String {
        self.counter += 1;
        let challenge = options["publicKey"]["challenge"].as_str().unwrap();
        let client_data = Self::client_data("webauthn.get", challenge, origin);
        let auth_data = self.auth_data(rp_id, false);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&sha256(&client_data));
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key).unwrap();
        signer.update(&signed).unwrap();
        let signature = signer.sign_to_vec().unwrap();
        json!({
            "id": b64(&self.cred_id),
            "rawId": b64(&self.cred_id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(&signature),
                "userHandle": b64(&self.user_handle),
            },
            "extensions": {},
        })
        .to_string()
    }

    fn assert(&mut self, options: &Value) -> String {
        self.assert_for(options, ORIGIN, "localhost")
    }
}

/// Options (parsed) and the ceremony id of a reply.
fn begun(reply: Value) -> (Value, String) {
    let options = serde_json::from_str(reply["options"].as_str().unwrap()).unwrap();
    (options, reply["ceremony"].as_str().unwrap().to_owned())
}

/// Registers `key` for `user_id` under `name`; the passkey as listed.
fn register(d: &TestDaemon, user_id: i64, key: &mut SoftPasskey, name: &str) -> Value {
    let (options, ceremony) = begun(d.answer(&begin_passkey_registration(user_id)).unwrap());
    let credential = key.register(&options);
    d.answer(&finish_passkey_registration(
        user_id, ceremony, name, credential,
    ))
    .unwrap()["passkey"]
        .clone()
}

fn begin_sign_in(d: &TestDaemon, addr: &str) -> (Value, String) {
    begun(
        d.send(&begin_passkey_sign_in(context_of(
            json!({ "remote_addr": addr }),
        )))
        .unwrap(),
    )
}

/// Finishes a sign-in: the member's name, or the reason of the refusal.
fn finish_sign_in(
    d: &TestDaemon,
    ceremony: &str,
    credential: &str,
    context: Value,
) -> Result<String, String> {
    d.send(&finish_passkey_sign_in(
        ceremony,
        credential,
        context_of(context),
    ))
    .map(|r| r["user"]["username"].as_str().unwrap().to_owned())
    .map_err(|e| {
        let (name, params) = err(Err(e));
        assert_eq!(name, FAILED, "{params}");
        params["reason"].as_str().unwrap().to_owned()
    })
}

/// A whole sign-in with `key` from `addr`.
fn sign_in(d: &TestDaemon, key: &mut SoftPasskey, addr: &str) -> Result<String, String> {
    let (options, ceremony) = begin_sign_in(d, addr);
    let credential = key.assert(&options);
    finish_sign_in(d, &ceremony, &credential, json!({ "remote_addr": addr }))
}

#[test]
fn a_member_registers_a_passkey_and_signs_in_with_it_alone() {
    let s = Scratch::new("passkey-register");
    let d = TestDaemon::start(&s, WEBAUTHN);
    let id = d.add_user("cat", "Secret123", true);
    let addr = "192.0.2.20";
    let mut key = SoftPasskey::new();
    let listed = register(&d, id, &mut key, "laptop");
    assert_eq!(listed["id"], b64(&key.cred_id));
    assert_eq!(listed["name"], "laptop");
    assert_eq!(listed["last_used"], Value::Null);
    assert_eq!(
        (&listed["backup_eligible"], &listed["backed_up"]),
        (&json!(true), &json!(true))
    );

    // The options ask for no particular credential (discoverable), under the
    // configured relying party, bound to user verification.
    let (options, ceremony) = begin_sign_in(&d, addr);
    assert_eq!(options["publicKey"]["rpId"], "localhost", "{options}");
    assert_eq!(options["publicKey"]["userVerification"], "required");
    let assertion = key.assert(&options);
    assert_eq!(
        finish_sign_in(&d, &ceremony, &assertion, json!({ "remote_addr": addr })),
        Ok("cat".into())
    );
    // The ceremony was good once, whoever sends it again.
    assert_eq!(
        finish_sign_in(&d, &ceremony, &assertion, json!({ "remote_addr": addr })),
        Err(EXPIRED.into())
    );
    // The same assertion under a new ceremony: its challenge is the old one's.
    let (_, fresh) = begin_sign_in(&d, addr);
    assert_eq!(
        finish_sign_in(&d, &fresh, &assertion, json!({ "remote_addr": addr })),
        Err(REFUSED.into())
    );
    // A ceremony begun from another address is not this one's.
    let (options, elsewhere) = begin_sign_in(&d, "198.51.100.9");
    let assertion = key.assert(&options);
    assert_eq!(
        finish_sign_in(&d, &elsewhere, &assertion, json!({ "remote_addr": addr })),
        Err(EXPIRED.into())
    );

    assert_eq!(sign_in(&d, &mut key, addr), Ok("cat".into()));
    let passkeys = d.answer(&list_passkeys(id)).unwrap()["passkeys"].clone();
    assert_eq!(passkeys.as_array().unwrap().len(), 1);
    assert_eq!(passkeys[0]["counter"], json!(key.counter));
    assert!(passkeys[0]["last_used"].is_string(), "{passkeys}");

    // A second registration of the same authenticator's credential is refused.
    let (options, ceremony) = begun(d.answer(&begin_passkey_registration(id)).unwrap());
    assert_eq!(
        options["publicKey"]["excludeCredentials"][0]["id"],
        b64(&key.cred_id)
    );
    let again = key.register(&options);
    let (name, _) = d
        .answer(&finish_passkey_registration(id, ceremony, "again", again))
        .unwrap_err();
    assert_eq!(name, account_errors::PASSKEY_REFUSED);

    // The refused replay counted as a failed login; the sign-ins since cleared it.
    assert_eq!(d.user("cat")["login_attempts"], json!(0));
}

#[test]
fn assertions_for_another_origin_or_relying_party_or_with_an_older_counter_are_refused() {
    let s = Scratch::new("passkey-refused");
    let d = TestDaemon::start(&s, WEBAUTHN);
    let id = d.add_user("cat", "Secret123", true);
    let addr = "192.0.2.21";
    let mut key = SoftPasskey::new();
    register(&d, id, &mut key, "phone");

    let (options, ceremony) = begin_sign_in(&d, addr);
    let phished = key.assert_for(&options, "https://evil.example", "localhost");
    assert_eq!(
        finish_sign_in(&d, &ceremony, &phished, json!({ "remote_addr": addr })),
        Err(REFUSED.into())
    );
    let (options, ceremony) = begin_sign_in(&d, addr);
    let other_rp = key.assert_for(&options, ORIGIN, "evil.example");
    assert_eq!(
        finish_sign_in(&d, &ceremony, &other_rp, json!({ "remote_addr": addr })),
        Err(REFUSED.into())
    );
    // Each refusal was a failed login of the passkey's member (the failure hooks ran).
    assert_eq!(d.user("cat")["login_attempts"], json!(2));

    key.counter = 10;
    assert_eq!(sign_in(&d, &mut key, addr), Ok("cat".into()));
    // A clone of the key whose counter is behind the one seen.
    key.counter = 5;
    assert_eq!(sign_in(&d, &mut key, addr), Err(REFUSED.into()));
    key.counter = 11;
    assert_eq!(sign_in(&d, &mut key, addr), Ok("cat".into()));

    // A passkey registered to no one.
    let mut stranger = SoftPasskey::new();
    stranger.user_handle = vec![7; 16];
    assert_eq!(sign_in(&d, &mut stranger, addr), Err(UNKNOWN.into()));
    // A known member's handle with a credential never registered.
    stranger.user_handle = key.user_handle.clone();
    assert_eq!(sign_in(&d, &mut stranger, addr), Err(UNKNOWN.into()));
}

#[test]
fn a_removed_passkey_and_a_banned_member_are_refused() {
    let s = Scratch::new("passkey-removed");
    let d = TestDaemon::start(&s, WEBAUTHN);
    let id = d.add_user("cat", "Secret123", true);
    let other = d.add_user("dog", "Secret123", true);
    let addr = "192.0.2.22";
    let (mut laptop, mut phone) = (SoftPasskey::new(), SoftPasskey::new());
    register(&d, id, &mut laptop, "laptop");
    let listed = register(&d, id, &mut phone, "phone");

    // Another member cannot remove it; the member (or an admin page, the same call)
    // can, and it no longer signs in.
    let listed_id = listed["id"].as_str().unwrap();
    assert_eq!(
        d.answer(&remove_passkey(other, listed_id)),
        Err((account_errors::NO_SUCH_PASSKEY.to_owned(), json!({})))
    );
    d.answer(&remove_passkey(id, listed_id)).unwrap();
    assert_eq!(sign_in(&d, &mut phone, addr), Err(UNKNOWN.into()));
    let names: Vec<Value> = d.answer(&list_passkeys(id)).unwrap()["passkeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].clone())
        .collect();
    assert_eq!(names, [json!("laptop")]);

    d.send(&set_banned(id, true)).unwrap();
    assert_eq!(
        sign_in(&d, &mut laptop, addr),
        Err("Your account has been banned.".into())
    );
    // FlaskBB's failure hook ran: the refusal is counted as a password's is.
    assert_eq!(d.user("cat")["login_attempts"], json!(1));
    d.send(&set_banned(id, false)).unwrap();
    assert_eq!(sign_in(&d, &mut laptop, addr), Ok("cat".into()));
    assert_eq!(d.user("cat")["login_attempts"], json!(0));
}

#[test]
fn a_passkey_is_the_second_factor_of_a_totp_member_and_no_client_can_claim_one() {
    let s = Scratch::new("passkey-totp");
    let d = TestDaemon::start(&s, &format!("{TOTP}{WEBAUTHN}"));
    let id = d.add_user("cat", "Secret123", true);
    let addr = "192.0.2.23";
    enrol(&d, id);
    let mut passkey = SoftPasskey::new();
    register(&d, id, &mut passkey, "laptop");

    // A password login asks for the code, even from a client claiming a passkey.
    let (name, params) = err(d.send(&authenticate_in(
        "cat",
        "Secret123",
        context_of(json!({ "remote_addr": addr, "authenticated_by": "passkey" })),
    )));
    assert_eq!((name.as_str(), &params["ask"]), (FAILED, &json!(["otp"])));
    // The passkey alone signs in.
    assert_eq!(sign_in(&d, &mut passkey, addr), Ok("cat".into()));
}

#[test]
fn one_ceremony_finished_at_once_on_two_daemons_signs_in_once() {
    let (s1, s2) = (
        Scratch::new("passkey-once-a"),
        Scratch::new("passkey-once-b"),
    );
    let a = TestDaemon::start(&s1, WEBAUTHN);
    let b = second_daemon(&s1, &s2, WEBAUTHN);
    let id = a.add_user("cat", "Secret123", true);
    let addr = "192.0.2.25";
    let mut key = SoftPasskey::new();
    register(&a, id, &mut key, "laptop");
    // Begun on one daemon, finished on the other: the ceremony is in the store.
    let (options, ceremony) = begin_sign_in(&a, addr);
    let assertion = key.assert(&options);
    assert_eq!(
        finish_sign_in(&b, &ceremony, &assertion, json!({ "remote_addr": addr })),
        Ok("cat".into())
    );
    for round in 0..3 {
        let (options, ceremony) = begin_sign_in(&a, addr);
        let assertion = key.assert(&options);
        let answers = at_once(
            (0..8)
                .map(|i| {
                    let d = if i % 2 == 0 { &a } else { &b };
                    let (ceremony, assertion) = (&ceremony, &assertion);
                    Box::new(move || {
                        finish_sign_in(d, ceremony, assertion, json!({ "remote_addr": addr }))
                    }) as Box<dyn Fn() -> Result<String, String> + Sync>
                })
                .collect(),
        );
        let passed = answers.iter().filter(|a| a.is_ok()).count();
        assert_eq!(passed, 1, "round {round}: {answers:?}");
        assert!(
            answers
                .iter()
                .all(|a| a.is_ok() || a == &Err(EXPIRED.into())),
            "round {round}: {answers:?}"
        );
    }
}

#[test]
fn without_webauthn_every_passkey_call_says_what_to_configure() {
    let s = Scratch::new("passkey-off");
    let d = TestDaemon::start(&s, "");
    let id = d.add_user("cat", "Secret123", true);
    for (call, unavailable) in [
        (
            begin_passkey_registration(id),
            account_errors::PASSKEYS_UNAVAILABLE,
        ),
        (list_passkeys(id), account_errors::PASSKEYS_UNAVAILABLE),
        (
            begin_passkey_sign_in(Default::default()),
            auth_errors::PASSKEYS_UNAVAILABLE,
        ),
        (
            finish_passkey_sign_in("x", "{}", Default::default()),
            auth_errors::PASSKEYS_UNAVAILABLE,
        ),
    ] {
        let method = flaskbbd_protocol::methods::Request::full_name(&call);
        let (name, params) = err(d.send(&call));
        assert_eq!(name, unavailable, "{method}");
        assert!(
            params["message"].as_str().unwrap().contains("[webauthn]"),
            "{params}"
        );
    }
}

#[test]
fn the_webauthn_table_is_checked_at_start_with_the_key_named() {
    let s = Scratch::new("passkey-config");
    for (table, key) in [
        (
            "rp_id = \"localhost\"\norigins = [\"http://forum.example.org\"]\nrp_name = \"F\"\n",
            "webauthn.origins",
        ),
        (
            "rp_id = \"example.org\"\norigins = [\"https://forum.example.com\"]\nrp_name = \"F\"\n",
            "webauthn.rp_id",
        ),
        (
            "rp_id = \"org\"\norigins = [\"https://forum.example.org\"]\nrp_name = \"F\"\n",
            "webauthn.rp_id",
        ),
        (
            "rp_id = \"example.org\"\norigins = []\nrp_name = \"F\"\n",
            "webauthn.origins",
        ),
        (
            "rp_id = \"example.org\"\norigins = [\"https://forum.example.org\"]\nrp_name = \" \"\n",
            "webauthn.rp_name",
        ),
    ] {
        let config = s.config(&format!(
            "[database]\nurl = {:?}\n[webauthn]\n{table}",
            s.db_url()
        ));
        let out = flaskbbd(&["check", "--config", config.to_str().unwrap()]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{table}");
        assert!(stderr.contains(key), "{table}: {stderr}");
    }
    let config = s.config(&format!(
        "[database]\nurl = {:?}\n[webauthn]\nrp_id = \"example.org\"\norigins = [\"https://forum.example.org\", \"https://example.org:8443\"]\nrp_name = \"F\"\n",
        s.db_url()
    ));
    let out = flaskbbd(&["check", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{:?}", text(&out));
}

#[test]
fn nothing_secret_reaches_the_log() {
    let s = Scratch::new("passkey-log");
    let d = TestDaemon::start(&s, WEBAUTHN);
    let id = d.add_user("cat", "Secret123", true);
    let addr = "192.0.2.24";
    let mut key = SoftPasskey::new();
    let (options, registration) = begun(d.answer(&begin_passkey_registration(id)).unwrap());
    let credential = key.register(&options);
    d.answer(&finish_passkey_registration(
        id,
        registration.clone(),
        "laptop",
        credential,
    ))
    .unwrap();
    let (options, ceremony) = begin_sign_in(&d, addr);
    let assertion = key.assert(&options);
    assert_eq!(
        finish_sign_in(&d, &ceremony, &assertion, json!({ "remote_addr": addr })),
        Ok("cat".into())
    );
    let log = d.log_text();
    assert!(log.contains("FinishPasskeySignIn"), "{log}");
    let signature: Value = serde_json::from_str(&assertion).unwrap();
    for secret in [
        registration.as_str(),
        ceremony.as_str(),
        options["publicKey"]["challenge"].as_str().unwrap(),
        signature["response"]["signature"].as_str().unwrap(),
        &b64(&key.user_handle),
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

/// The passkey review: credentials were keyed by the member's id alone, so an account
/// deleted (FlaskBB's SQLite ids are reused) left a passkey that signed in whoever got
/// the id next. Now a passkey is bound to the account's `date_joined` too.
#[test]
fn a_passkey_left_by_an_earlier_account_signs_in_no_one_who_gets_its_id() {
    let s = Scratch::new("passkey-id-reuse");
    let d = TestDaemon::start(&s, WEBAUTHN);
    let id = d.add_user("spam", "Secret123", true);
    let mut left_behind = SoftPasskey::new();
    register(&d, id, &mut left_behind, "spammer's key");
    assert_eq!(
        sign_in(&d, &mut left_behind, "192.0.2.40"),
        Ok("spam".into())
    );
    // The account goes and its id is another member's now (as a reused id is).
    s.sql(&format!(
        "UPDATE users SET username = 'newcomer', email = 'newcomer@example.org', \
         date_joined = '2031-02-03 04:05:06' WHERE id = {id}"
    ));
    assert_eq!(
        sign_in(&d, &mut left_behind, "192.0.2.40"),
        Err(UNKNOWN.into())
    );
    let listed = d.answer(&list_passkeys(id)).unwrap();
    assert_eq!(listed["passkeys"], json!([]), "{listed}");
    // The newcomer's own passkey works, under a handle of their own.
    let mut own = SoftPasskey::new();
    register(&d, id, &mut own, "newcomer's key");
    assert_eq!(sign_in(&d, &mut own, "192.0.2.41"), Ok("newcomer".into()));
    assert_eq!(
        sign_in(&d, &mut left_behind, "192.0.2.40"),
        Err(UNKNOWN.into())
    );
}

/// The passkey review: the login chain ran by username, and nothing checked that it
/// answered the member the passkey proved. A chain that answers another member now
/// fails closed.
#[test]
fn a_login_chain_answering_another_member_than_the_passkeys_fails_closed() {
    let s = Scratch::new("passkey-other-member");
    let d = TestDaemon::start(
        &s,
        &format!(
            "{WEBAUTHN}[[plugin]]\nname = \"other\"\nlibrary = \"scripted\"\nconfig = {{ on = {{ flaskbb_authenticate = {{ action = \"return_user\", user = \"dog\" }} }} }}\n[plugin.hooks.flaskbb_authenticate]\ntier = \"tryfirst\"\n"
        ),
    );
    let id = d.add_user("cat", "Secret123", true);
    d.add_user("dog", "Secret123", true);
    let mut key = SoftPasskey::new();
    register(&d, id, &mut key, "laptop");
    let (options, ceremony) = begin_sign_in(&d, "192.0.2.50");
    let credential = key.assert(&options);
    let answer = d.send(&finish_passkey_sign_in(
        ceremony,
        credential,
        context_of(json!({ "remote_addr": "192.0.2.50" })),
    ));
    let (name, params) = err(answer);
    assert_eq!(name, auth_errors::INTERNAL_ERROR, "{params}");
    assert!(
        params["message"]
            .as_str()
            .unwrap()
            .contains("where the step before proved member"),
        "{params}"
    );
}

/// The passkey review: an anonymous caller could begin sign-ins without end, each a
/// stored row. An address may begin 20 within a ceremony's five minutes.
#[test]
fn an_address_may_begin_twenty_sign_ins_within_five_minutes() {
    let s = Scratch::new("passkey-flood");
    let d = TestDaemon::start(&s, WEBAUTHN);
    let begin = |addr: &str| {
        d.answer(&begin_passkey_sign_in(context_of(
            json!({ "remote_addr": addr }),
        )))
    };
    for n in 0..20 {
        assert!(begin("198.51.100.60").is_ok(), "begin {n}");
    }
    let (name, params) = begin("198.51.100.60").unwrap_err();
    assert_eq!(name, FAILED);
    assert_eq!(
        params["reason"],
        "Too many passkey sign-ins were started from your address. Wait a few minutes, or sign in with your password."
    );
    assert!(begin("198.51.100.61").is_ok());
}

/// An admin's reset of a member's second factors (a lost phone or key) removes the
/// member's passkeys too, whether or not a TOTP instance is configured.
#[test]
fn an_admins_reset_of_the_second_factor_removes_the_passkeys() {
    let s = Scratch::new("passkey-reset");
    let d = TestDaemon::start(&s, WEBAUTHN);
    let id = d.add_user("eel", "Secret123", true);
    let mut key = SoftPasskey::new();
    register(&d, id, &mut key, "lost phone");
    d.answer(&reset_second_factor(id)).unwrap();
    let listed = d.answer(&list_passkeys(id)).unwrap();
    assert_eq!(listed["passkeys"], json!([]), "{listed}");
    assert_eq!(sign_in(&d, &mut key, "192.0.2.70"), Err(UNKNOWN.into()));
    // The same authenticator can be registered again (its owner row went too).
    register(&d, id, &mut key, "found phone");
    assert_eq!(sign_in(&d, &mut key, "192.0.2.70"), Ok("eel".into()));
}
