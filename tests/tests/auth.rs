//! The authentication pipeline through the real daemon and socket: FlaskBB's behaviour
//! and messages, the defects we fix, reauth and ForceLogout, commit-once semantics.

use flaskbbd_tests::calls::{
    create_user, get_info, reauthenticate, set_activated, set_banned, user_registered,
};
use std::time::Duration;

use flaskbbd_tests::{
    auth,
    daemon::{err, TestDaemon},
    trace_calls, Scratch,
};
use serde_json::json;

const WRONG: &str = "Wrong username or password.";
const WRONG_PW: &str = "Wrong password.";
const NOT_ACTIVATED: &str =
    "In order to use your account you have to activate it through the link we have sent to your email address.";
const LOCKED: &str = "Your account is currently locked out due to too many failed login attempts";

fn failed(reason: &str) -> (String, serde_json::Value) {
    (
        "org.flaskbb.Auth.AuthenticationFailed".into(),
        json!({ "reason": reason }),
    )
}

fn sql(s: &Scratch, statement: &str) {
    s.sql(statement);
}

#[test]
fn right_password_answers_the_user_without_its_hash_and_clears_failures() {
    let s = Scratch::new("auth-ok");
    let d = TestDaemon::start(&s, "");
    let id = d.add_user("alice", "Secret123", true);
    sql(
        &s,
        &format!("UPDATE users SET login_attempts = 2 WHERE id = {id}"),
    );
    let user = d.auth("alice", "Secret123").unwrap()["user"].clone();
    assert_eq!(user["id"], id);
    assert_eq!(user["username"], "alice");
    assert_eq!(user["email"], "alice@example.org");
    assert_eq!(user["activated"], true);
    assert_eq!(user["login_attempts"], 0);
    assert_eq!(user["groups"], json!(["Member"]));
    assert_eq!(user["primary_group_id"], 4);
    assert!(user["date_joined"].as_str().unwrap().ends_with('Z'));
    assert!(user.get("password").is_none());
    // By email too, as FlaskBB's provider does.
    assert_eq!(
        d.auth("alice@example.org", "Secret123").unwrap()["user"]["id"],
        id
    );
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_message_and_only_a_known_user_is_counted() {
    let s = Scratch::new("auth-wrong");
    let d = TestDaemon::start(&s, "");
    d.add_user("alice", "Secret123", true);
    assert_eq!(err(d.auth("alice", "nope")), failed(WRONG));
    assert_eq!(err(d.auth("nobody", "nope")), failed(WRONG));
    let u = d.user("alice");
    assert_eq!(u["login_attempts"], 1);
    assert!(u["last_failed_login"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn an_unactivated_user_is_cleared_refused_then_counted() {
    let s = Scratch::new("auth-unactivated");
    let d = TestDaemon::start(&s, "");
    let id = d.add_user("bob", "Secret123", false);
    sql(
        &s,
        &format!("UPDATE users SET login_attempts = 3 WHERE id = {id}"),
    );
    assert_eq!(err(d.auth("bob", "Secret123")), failed(NOT_ACTIVATED));
    // FlaskBB's order: clear (0), block unactivated, then mark failed (1).
    assert_eq!(d.user("bob")["login_attempts"], 1);
    d.send(&set_activated(id, true)).unwrap();
    assert_eq!(
        d.auth("bob", "Secret123").unwrap()["user"]["login_attempts"],
        0
    );
}

#[test]
fn activation_is_not_required_when_activate_account_is_off() {
    let s = Scratch::new("auth-noactivate");
    let d = TestDaemon::start(&s, &auth("activate_account = false\n"));
    d.add_user("bob", "Secret123", false);
    assert_eq!(
        d.auth("bob", "Secret123").unwrap()["user"]["activated"],
        false
    );
}

#[test]
fn a_banned_user_is_refused_even_with_the_right_password() {
    let s = Scratch::new("auth-banned");
    let d = TestDaemon::start(&s, "");
    let id = d.add_user("carol", "Secret123", true);
    d.send(&set_banned(id, true)).unwrap();
    assert_eq!(d.user("carol")["groups"], json!(["Banned"]));
    assert_eq!(
        err(d.auth("carol", "Secret123")),
        failed("Your account has been banned.")
    );
    d.send(&set_banned(id, false)).unwrap();
    assert!(d.auth("carol", "Secret123").is_ok());
}

#[test]
fn too_many_failures_lock_the_account_until_the_window_passes() {
    let s = Scratch::new("auth-lockout");
    let d = TestDaemon::start(
        &s,
        &auth(
            "lockout = { attempts = 3, window_minutes = 10, scope = \"account\", reveal = true }\n",
        ),
    );
    let id = d.add_user("dan", "Secret123", true);
    for _ in 0..3 {
        assert_eq!(err(d.auth("dan", "bad")), failed(WRONG));
    }
    assert_eq!(err(d.auth("dan", "Secret123")), failed(LOCKED));
    assert_eq!(
        d.user("dan")["login_attempts"],
        4,
        "a refused attempt still counts"
    );
    // The window passes: the count's last failure (Unix milliseconds) is long ago.
    sql(
        &s,
        &format!(
            "UPDATE flaskbbd_penalties SET last_failure = 0, expires = 600000 WHERE subject = 'user:{id}'"
        ),
    );
    assert_eq!(
        d.auth("dan", "Secret123").unwrap()["user"]["login_attempts"],
        0
    );
}

#[test]
fn lockout_can_be_turned_off() {
    let s = Scratch::new("auth-nolockout");
    let d = TestDaemon::start(&s, &auth("lockout = { enabled = false, attempts = 1 }\n"));
    d.add_user("dan", "Secret123", true);
    assert_eq!(err(d.auth("dan", "bad")), failed(WRONG));
    assert!(d.auth("dan", "Secret123").is_ok());
}

#[test]
fn the_failure_hook_runs_only_on_stop_authentication() {
    let s = Scratch::new("auth-failure-hook");
    let d = TestDaemon::start(
        &s,
        r#"
[[plugin]]
name = "watch"
library = "scripted"
config = { trace = "trace.jsonl" }
sandbox = { write = ["."] }
[[plugin]]
name = "broken"
library = "scripted"
config = { trace = "trace.jsonl", on = { flaskbb_post_authenticate = { action = "error", message = "ldap unreachable" } } }
sandbox = { write = ["."] }
[plugin.hooks.flaskbb_post_authenticate]
tier = "tryfirst"
"#,
    );
    d.add_user("erin", "Secret123", true);
    let (name, params) = err(d.auth("erin", "Secret123"));
    assert_eq!(name, "org.flaskbb.Auth.InternalError");
    assert_eq!(
        params["message"],
        "instance \"broken\" failed in flaskbb_post_authenticate: ldap unreachable"
    );
    assert!(!trace_calls(&s, "trace.jsonl")
        .iter()
        .any(|(_, h)| h == "flaskbb_authentication_failed"));
    assert_eq!(d.user("erin")["login_attempts"], 0);
    assert!(
        d.log_text().contains("ldap unreachable") && d.log_text().contains("broken"),
        "logged with the instance"
    );

    // A stop runs it: the wrong password goes through watch's failure hook.
    std::fs::remove_file(s.path.join("trace.jsonl")).unwrap();
    assert_eq!(err(d.auth("erin", "bad")), failed(WRONG));
    let calls = trace_calls(&s, "trace.jsonl");
    assert_eq!(
        calls.last().unwrap(),
        &(
            "watch".to_string(),
            "flaskbb_authentication_failed".to_string()
        )
    );
}

#[test]
fn a_plugin_stop_in_post_authenticate_runs_the_failure_hooks_with_its_reason() {
    let s = Scratch::new("auth-plugin-stop");
    let d = TestDaemon::start(
        &s,
        r#"
[[plugin]]
name = "mfa"
library = "scripted"
config = { trace = "trace.jsonl", on = { flaskbb_post_authenticate = { action = "stop", reason = "A second factor is required." } } }
sandbox = { write = ["."] }
"#,
    );
    d.add_user("fay", "Secret123", true);
    assert_eq!(
        err(d.auth("fay", "Secret123")),
        failed("A second factor is required.")
    );
    assert_eq!(d.user("fay")["login_attempts"], 1);
    assert_eq!(
        trace_calls(&s, "trace.jsonl").last().unwrap(),
        &(
            "mfa".to_string(),
            "flaskbb_authentication_failed".to_string()
        )
    );
}

#[test]
fn a_provider_plugin_can_answer_the_user() {
    let s = Scratch::new("auth-provider");
    let d = TestDaemon::start(
        &s,
        r#"
[[plugin]]
name = "sso"
library = "scripted"
config = { on = { flaskbb_authenticate = { action = "return_user", user = "gus" } } }
"#,
    );
    d.add_user("gus", "Secret123", true);
    // The plugin vouches for gus whatever the secret; the built-in provider never runs.
    assert_eq!(
        d.auth("whoever", "anything").unwrap()["user"]["username"],
        "gus"
    );
}

#[test]
fn a_plugin_panic_fails_the_request_closed_and_the_daemon_keeps_serving() {
    let s = Scratch::new("auth-panic");
    let d = TestDaemon::start(
        &s,
        r#"
[[plugin]]
name = "boom"
library = "scripted"
config = { on = { flaskbb_authenticate = { action = "panic", message = "kaboom" } } }
"#,
    );
    d.add_user("hal", "Secret123", true);
    for _ in 0..20 {
        let (name, params) = err(d.auth("hal", "Secret123"));
        assert_eq!(name, "org.flaskbb.Auth.InternalError");
        let m = params["message"].as_str().unwrap();
        assert!(
            m.starts_with("instance \"boom\" failed in flaskbb_authenticate: panicked at "),
            "{m}"
        );
    }
    assert!(d.send(&get_info()).is_ok());
}

#[test]
fn a_hung_plugin_answers_an_internal_error_within_the_timeout() {
    let s = Scratch::new("auth-hung");
    let d = TestDaemon::start(
        &s,
        r#"
[daemon]
hook_timeout_ms = 300
[[plugin]]
name = "slow"
library = "scripted"
config = { on = { flaskbb_authenticate = { action = "sleep", ms = 4000 } } }
"#,
    );
    let started = std::time::Instant::now();
    let (name, params) = err(d.auth("x", "y"));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(name, "org.flaskbb.Auth.InternalError");
    assert_eq!(
        params["message"],
        "instance \"slow\" did not answer flaskbb_authenticate within 300 ms"
    );
    // Others are still served meanwhile.
    assert!(d.send(&user_registered("z")).is_ok());
}

#[test]
fn reauth_checks_the_password_and_counts_failures() {
    let s = Scratch::new("reauth");
    let d = TestDaemon::start(&s, "");
    let id = d.add_user("ivy", "Secret123", true);
    let reauth = |pw: &str| d.send(&reauthenticate(id, pw));
    assert_eq!(err(reauth("bad")), failed(WRONG_PW));
    assert_eq!(d.user("ivy")["login_attempts"], 1);
    assert_eq!(reauth("Secret123").unwrap(), json!({}));
    assert_eq!(d.user("ivy")["login_attempts"], 0);
    assert_eq!(err(d.send(&reauthenticate(999, "x"))), failed(WRONG_PW));
}

#[test]
fn force_logout_from_reauth_failed_reaches_the_client() {
    let s = Scratch::new("reauth-logout");
    let d = TestDaemon::start(
        &s,
        r#"
[[plugin]]
name = "guard"
library = "scripted"
config = { on = { flaskbb_reauth_failed = { action = "force_logout", reason = "Suspicious session." } } }
[plugin.hooks.flaskbb_reauth_failed]
tier = "trylast"
"#,
    );
    let id = d.add_user("jo", "Secret123", true);
    let (name, params) = err(d.send(&reauthenticate(id, "bad")));
    assert_eq!(name, "org.flaskbb.Auth.ForceLogout");
    assert_eq!(params, json!({ "reason": "Suspicious session." }));
    // The built-in mark_failed_reauth (normal) ran before the trylast ForceLogout.
    assert_eq!(d.user("jo")["login_attempts"], 1);
}

#[test]
fn sixty_four_concurrent_wrong_passwords_are_all_counted() {
    let s = Scratch::new("auth-concurrent");
    let d = TestDaemon::start(&s, "");
    d.add_user("kim", "Secret123", true);
    std::thread::scope(|scope| {
        for _ in 0..64 {
            scope.spawn(|| {
                assert_eq!(
                    err(d.auth("kim", "bad")).0,
                    "org.flaskbb.Auth.AuthenticationFailed"
                )
            });
        }
    });
    assert_eq!(d.user("kim")["login_attempts"], 64);
}

#[test]
fn secrets_over_72_bytes_are_never_truncated() {
    let s = Scratch::new("auth-long");
    let d = TestDaemon::start(&s, "");
    let base = "a".repeat(72);
    d.add_user("lee", &base, true);
    assert!(d.auth("lee", &base).is_ok());
    // bcrypt alone would accept this: the same first 72 bytes.
    assert_eq!(err(d.auth("lee", &format!("{base}b"))), failed(WRONG));
    let (name, params) = err(d.send(&create_user("max", "max@example.org", "b".repeat(73), true)));
    assert_eq!(
        (name.as_str(), params),
        (
            "org.varlink.service.InvalidParameter",
            json!({ "parameter": "password" })
        )
    );
}

#[test]
fn a_failed_commit_answers_an_internal_error_and_changes_nothing() {
    let s = Scratch::new("auth-commit");
    // Without the lockout, whose count of the attempt is written (and would wait for
    // the lock) before the password is checked: this is about the final commit.
    let d = TestDaemon::start(&s, &auth("lockout = { enabled = false }\n"));
    d.add_user("ned", "Secret123", true);
    // Hold the write lock longer than the daemon's lock timeout.
    let lock = s.hold_write_lock();
    let (name, params) = err(d.auth("ned", "bad"));
    assert_eq!(name, "org.flaskbb.Auth.InternalError");
    assert!(
        params["message"]
            .as_str()
            .unwrap()
            .starts_with("the request's changes could not be saved: "),
        "{params}"
    );
    drop(lock);
    assert_eq!(d.user("ned")["login_attempts"], 0);
    // And the daemon recovers once the lock is gone.
    assert_eq!(err(d.auth("ned", "bad")), failed(WRONG));
    assert_eq!(d.user("ned")["login_attempts"], 1);
}

#[test]
fn the_failure_delay_applies_to_failures_only() {
    let s = Scratch::new("auth-delay");
    let d = TestDaemon::start(&s, &auth("failure_delay_ms = 1500\n"));
    d.add_user("oz", "Secret123", true);
    let t = std::time::Instant::now();
    assert!(d.auth("oz", "Secret123").is_ok());
    let ok = t.elapsed();
    let t = std::time::Instant::now();
    assert_eq!(err(d.auth("oz", "bad")), failed(WRONG));
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "the delay was not applied"
    );
    assert!(
        ok < Duration::from_millis(1500),
        "success must not be delayed (took {ok:?})"
    );
}
