//! The plugins we ship, each through the real daemon: audit, wordfilter, ratelimit,
//! totp and hello.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flaskbbd_tests::calls::{
    authenticate_in, context_of, post_save_before, reload, topic_save_before, user_registered,
};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flaskbbd_tests::{
    daemon::{err, flaskbbd_with_stdin, TestDaemon},
    flaskbbd, text, Scratch,
};
use serde_json::{json, Value};

fn lines(s: &Scratch, file: &str) -> Vec<Value> {
    s.read(file)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn audit_writes_one_line_per_outcome_without_secrets() {
    let s = Scratch::new("audit");
    let d = TestDaemon::start(
        &s,
        r#"
[[plugin]]
name = "audit"
library = "audit"
config = { path = "log/audit.jsonl" }
sandbox = { write = ["log/"] }
[[plugin]]
name = "broken"
library = "scripted"
config = { on = { flaskbb_event_user_registered = { action = "error", message = "boom" } } }
"#,
    );
    d.add_user("ada", "Secret123", true);
    let ctx = json!({ "remote_addr": "192.0.2.9", "otp": "123456" });
    d.send(&authenticate_in("ada", "Secret123", context_of(&ctx)))
        .unwrap();
    err(d.send(&authenticate_in("ada", "wrong-pw", context_of(&ctx))));
    err(d.send(&user_registered("x")));
    let all = lines(&s, "log/audit.jsonl");
    let text = s.read("log/audit.jsonl");
    assert!(
        !text.contains("Secret123") && !text.contains("wrong-pw") && !text.contains("123456"),
        "{text}"
    );
    // Success: authenticate decided by the default provider, then post_authenticate.
    assert_eq!(all[0]["hook"], "flaskbb_authenticate");
    assert_eq!(all[0]["decided_by"], "default_provider");
    assert_eq!(
        all[0]["result"],
        json!({ "user": { "id": 1, "username": "ada" } })
    );
    assert_eq!(
        all[0]["context"],
        json!({ "remote_addr": "192.0.2.9", "otp": "[redacted]" })
    );
    assert_eq!(all[0]["args"], json!({ "identifier": "ada" }));
    assert!(all[0]["time"].as_str().unwrap().ends_with('Z'));
    assert!(all[0]["duration_us"].as_u64().is_some());
    assert_eq!(all[1]["hook"], "flaskbb_post_authenticate");
    assert_eq!(all[1]["result"], "nothing");
    // Failure: no provider answered; then the failure hook ran.
    assert_eq!(all[2]["hook"], "flaskbb_authenticate");
    assert_eq!(all[2]["result"], "nothing");
    assert_eq!(all[3]["hook"], "flaskbb_authentication_failed");
    // A plugin error, naming the instance.
    let last = all.last().unwrap();
    assert_eq!(last["hook"], "flaskbb_event_user_registered");
    assert_eq!(last["decided_by"], "broken");
    assert_eq!(
        last["error"],
        json!({ "kind": "Failed", "message": "boom" })
    );
}

#[test]
fn audit_reopens_its_file_after_rotation_on_reload() {
    let s = Scratch::new("audit-rotate");
    let d = TestDaemon::start(
        &s,
        "[[plugin]]\nname = \"audit\"\nlibrary = \"audit\"\nconfig = { path = \"audit.jsonl\" }\nsandbox = { write = [\"audit.jsonl\"] }\n",
    );
    d.send(&user_registered("a")).unwrap();
    std::fs::rename(s.path.join("audit.jsonl"), s.path.join("audit.jsonl.1")).unwrap();
    // Reload returns once the new generation (with a new audit instance) serves.
    d.send(&reload()).unwrap();
    d.send(&user_registered("b")).unwrap();
    assert_eq!(lines(&s, "audit.jsonl.1").len(), 1);
    let now = lines(&s, "audit.jsonl");
    assert_eq!(now.len(), 1);
    assert_eq!(now[0]["args"], json!({ "username": "b" }));
}

#[test]
fn wordfilter_masks_or_rejects() {
    let s = Scratch::new("wordfilter");
    let d = TestDaemon::start(
        &s,
        r#"
[[plugin]]
name = "mask"
library = "wordfilter"
config = { words = ["darn", "heck"] }
"#,
    );
    let r = d
        .send(&post_save_before(
            json!({ "content": "Darn it, what the heck." }),
        ))
        .unwrap();
    assert_eq!(r["post"]["content"], r"\*\*\*\* it, what the \*\*\*\*.");
    let r = d
        .send(&topic_save_before(
            json!({ "title": "heck yes", "content": "fine" }),
        ))
        .unwrap();
    assert_eq!(
        r["topic"],
        json!({ "title": "**** yes", "content": "fine" })
    );
    drop(d);
    let s = Scratch::new("wordfilter-reject");
    let d = TestDaemon::start(
        &s,
        "[[plugin]]\nname = \"strict\"\nlibrary = \"wordfilter\"\nconfig = { words = [\"spam\"], action = \"reject\" }\n",
    );
    let (name, params) = err(d.send(&post_save_before(json!({ "content": "buy SPAM now" }))));
    assert_eq!(name, "org.flaskbb.Events.Rejected");
    assert_eq!(
        params,
        json!({ "plugin": "strict", "reason": "The text contains a word that is not allowed here: \"spam\"." })
    );
    assert!(d
        .send(&post_save_before(json!({ "content": "hello" })))
        .is_ok());
}

#[test]
fn ratelimit_delays_then_refuses_by_address_and_forgets_on_success() {
    let s = Scratch::new("ratelimit");
    let d = TestDaemon::start(
        &s,
        r#"
[[plugin]]
name = "ratelimit"
library = "ratelimit"
config = { free_failures = 1, base_delay_ms = 1500, max_delay_ms = 1500, refuse_after = 4, window_seconds = 60 }
"#,
    );
    d.add_user("bo", "Secret123", true);
    let attempt = |addr: &str, pw: &str| {
        let t = Instant::now();
        let r = d.send(&authenticate_in(
            "bo",
            pw,
            context_of(json!({ "remote_addr": addr })),
        ));
        (r, t.elapsed())
    };
    let evil = "198.51.100.7";
    assert!(attempt(evil, "bad").0.is_err()); // 1 failure: free
    assert!(attempt(evil, "bad").0.is_err()); // 2
    let (r, took) = attempt(evil, "bad"); // penalised: 2 failures so far
    assert_eq!(err(r).1, json!({ "reason": "Wrong username or password." }));
    assert!(
        took >= Duration::from_millis(1500),
        "the answer was not held back ({took:?})"
    );
    let (r, _) = attempt(evil, "Secret123"); // 3 failures: still only delayed
    assert!(r.is_ok(), "{r:?}");
    // Success cleared the address; fail up to the limit again.
    for _ in 0..4 {
        let _ = attempt(evil, "bad");
    }
    let (r, _) = attempt(evil, "Secret123");
    assert_eq!(
        err(r),
        (
            "org.flaskbb.Auth.AuthenticationFailed".into(),
            json!({ "reason": "Too many failed login attempts from your address. Try again later." })
        )
    );
    // Another address is not affected (another account: bo's own failures now lock
    // bo out everywhere, which is the lockout's job).
    d.add_user("cy", "Secret123", true);
    let t = Instant::now();
    let r = d.send(&authenticate_in(
        "cy",
        "Secret123",
        context_of(json!({ "remote_addr": "203.0.113.5" })),
    ));
    assert!(r.is_ok(), "{r:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn totp_requires_a_fresh_right_code_from_enrolled_users() {
    let s = Scratch::new("totp");
    let d = TestDaemon::start(&s, "[[plugin]]\nname = \"totp\"\nlibrary = \"totp\"\n");
    let id = d.add_user("cat", "Secret123", true);
    d.add_user("dog", "Secret123", true);
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"; // "12345678901234567890"
    let key = totp::base32_decode(secret).unwrap();
    let out = flaskbbd_with_stdin(
        &[
            "store",
            "set",
            "totp",
            &format!("secret:{id}"),
            "-c",
            d.config.to_str().unwrap(),
        ],
        &format!("{secret}\n"),
    );
    assert!(out.status.success(), "{:?}", text(&out));
    let auth = |user: &str, otp: Option<&str>| {
        let mut ctx = json!({});
        if let Some(o) = otp {
            ctx["otp"] = json!(o);
        }
        d.send(&authenticate_in(user, "Secret123", context_of(&ctx)))
            .map_err(|e| {
                // The right password's refusals carry a token for the second step
                // (tests/tests/account.rs); the rest of the answer is as before.
                let (name, mut params) = err(Err(e));
                let token = params
                    .as_object_mut()
                    .unwrap()
                    .remove("pending_login")
                    .expect("a pending_login token");
                assert_eq!(token.as_str().unwrap().len(), 64);
                flaskbbd_protocol::client::CallError::Varlink {
                    error: name,
                    parameters: params,
                }
            })
    };
    // Refusals about the code ask the client for one (the forum shows the field).
    let failed = |reason: &str| {
        (
            "org.flaskbb.Auth.AuthenticationFailed".to_string(),
            json!({ "reason": reason, "ask": ["otp"] }),
        )
    };
    // Not enrolled: passes (require = false).
    assert!(auth("dog", None).is_ok());
    assert_eq!(err(auth("cat", None)), failed(totp::MISSING));
    assert_eq!(
        err(auth("cat", Some("000000"))).0,
        "org.flaskbb.Auth.AuthenticationFailed"
    );
    // The previous step's code is accepted (clock skew)...
    let previous = totp::totp(&key, now() - 30, 30, 6, totp::Algorithm::Sha1);
    let current = totp::totp(&key, now(), 30, 6, totp::Algorithm::Sha1);
    if previous != current {
        assert!(auth("cat", Some(&previous)).is_ok());
    }
    // ...the current one too, but only once.
    assert!(auth("cat", Some(&current)).is_ok());
    assert_eq!(err(auth("cat", Some(&current))), failed(totp::REUSED));
    // And an older one after a newer was used is refused as well.
    assert_eq!(
        err(auth("cat", Some(&previous))).0,
        "org.flaskbb.Auth.AuthenticationFailed"
    );
    let last = text(&flaskbbd(&[
        "store",
        "get",
        "totp",
        &format!("last_step:{id}"),
        "-c",
        d.config.to_str().unwrap(),
    ]))
    .0;
    assert_eq!(last.trim().parse::<u64>().unwrap(), now() / 30);
    // Wrong codes count as failed logins: the last success cleared the counter, the
    // reused and the older code made it 2 (a right password with a wrong code no
    // longer clears it first).
    assert_eq!(d.user("cat")["login_attempts"], 2);
}

#[test]
fn totp_can_require_enrolment() {
    let s = Scratch::new("totp-require");
    let d = TestDaemon::start(
        &s,
        "[[plugin]]\nname = \"totp\"\nlibrary = \"totp\"\nconfig = { require = true }\n",
    );
    d.add_user("eve", "Secret123", true);
    assert_eq!(
        err(d.auth("eve", "Secret123")).1,
        json!({ "reason": totp::NOT_ENROLLED })
    );
}

#[test]
fn hello_greets_and_refuses() {
    let s = Scratch::new("hello");
    let d = TestDaemon::start(
        &s,
        "[[plugin]]\nname = \"hello\"\nlibrary = \"hello\"\nconfig = { greeting = \"Welcome back\", refuse = [\"mallory\"] }\n",
    );
    d.add_user("ann", "Secret123", true);
    d.add_user("mallory", "Secret123", true);
    assert!(d.auth("ann", "Secret123").is_ok());
    assert!(
        d.log_text().contains("Welcome back, ann!"),
        "{}",
        d.log_text()
    );
    assert_eq!(
        err(d.auth("mallory", "Secret123")).1,
        json!({ "reason": "This account may not log in here." })
    );
}

#[test]
fn store_cli_errors_name_the_instance() {
    let s = Scratch::new("store-cli");
    let cfg = s.config(
        "[database]\nurl = \"sqlite:///t.db\"\n[[plugin]]\nname = \"totp\"\nlibrary = \"totp\"\n",
    );
    let out = flaskbbd(&["store", "get", "nope", "k", "-c", cfg.to_str().unwrap()]);
    assert!(
        text(&out).1.contains("no instance \"nope\" in "),
        "{:?}",
        text(&out)
    );
    let out = flaskbbd(&["store", "get", "totp", "k", "-c", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out).1, "totp: no key \"k\"\n");
}
