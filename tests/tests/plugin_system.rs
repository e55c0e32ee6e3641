//! The plugin system with real `.so` plugins, through the daemon's CLI and socket:
//! loading and its failures, chain order and semantics, panics, hangs, several
//! instances of one library, and a plugin built against an older plugin-abi. (The
//! call loop, the executor and the flows have unit tests of their own in the daemon.)

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flaskbbd_tests::calls::{
    authenticate_in, context_of, post_save_before, reauthenticate, user_registered,
};
use std::time::Duration;

use flaskbbd_tests::{
    build,
    daemon::{err, TestDaemon},
    fixture, flaskbbd, text, trace, trace_calls, variant_plugin, Scratch,
};
use serde_json::json;

fn check(s: &Scratch, extra: &str) -> (bool, String, String) {
    build();
    let path = s.config(extra);
    let out = flaskbbd(&["check", "--config", path.to_str().unwrap()]);
    let (o, e) = text(&out);
    (out.status.success(), o, e)
}

fn chain_lines(stdout: &str, hook: &str) -> Vec<String> {
    stdout
        .split('\n')
        .skip_while(|l| *l != hook)
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| l.trim() != "(no impls)")
        .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_owned())
        .collect()
}

#[test]
fn shipped_config_checks_and_prints_every_chain() {
    build();
    let s = Scratch::new("shipped");
    let shipped = std::fs::read_to_string(flaskbbd_tests::root().join("flaskbb.toml")).unwrap();
    let debug_dir = build().display().to_string();
    let cfg = s.write(
        "flaskbb.toml",
        &shipped.replace(
            "dirs = [\"target/release\"]",
            &format!("dirs = [{debug_dir:?}]"),
        ),
    );
    let out = flaskbbd(&["check", "--config", cfg.to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for hook in plugin_abi::hooks::ALL {
        assert!(
            stdout.lines().any(|l| l == *hook),
            "missing chain {hook}:\n{stdout}"
        );
    }
    // The documented order (README and each plugin's README); wrappers first.
    assert_eq!(
        chain_lines(&stdout, "flaskbb_authenticate"),
        ["audit", "ratelimit", "lockout", "default_provider"]
    );
    assert_eq!(
        chain_lines(&stdout, "flaskbb_post_authenticate"),
        [
            "audit",
            "clear_failed_logins",
            "block_unactivated",
            "block_banned",
            "totp",
            "lockout",
            "ratelimit"
        ]
    );
    assert_eq!(
        chain_lines(&stdout, "flaskbb_authentication_failed"),
        ["audit", "ratelimit", "mark_failed_login", "lockout"]
    );
    assert_eq!(
        chain_lines(&stdout, "flaskbb_event_post_save_before"),
        ["audit", "wordfilter"]
    );
    assert_eq!(
        chain_lines(&stdout, "flaskbb_reauth_attempt"),
        ["audit", "lockout", "default_reauth"]
    );
    assert!(
        stdout.contains("tryfirst priority 0    builtin"),
        "{stdout}"
    );
    assert!(
        stdout.contains("wrapper  ") && stdout.contains("libaudit.so"),
        "{stdout}"
    );
}

const ORDER_CONFIG: &str = r#"
[[plugin]]
name = "a"
library = "scripted"
config = { trace = "trace.jsonl" }
sandbox = { write = ["trace.jsonl"] }
[[plugin]]
name = "b"
library = "scripted"
config = { trace = "trace.jsonl" }
sandbox = { write = ["trace.jsonl"] }
[plugin.hooks.flaskbb_event_user_registered]
tier = "trylast"
[[plugin]]
name = "c"
library = "scripted"
config = { trace = "trace.jsonl" }
sandbox = { write = ["trace.jsonl"] }
[plugin.hooks.flaskbb_event_user_registered]
tier = "tryfirst"
[[plugin]]
name = "d"
library = "scripted"
config = { trace = "trace.jsonl" }
sandbox = { write = ["trace.jsonl"] }
[plugin.hooks.flaskbb_event_user_registered]
tier = "trylast"
[[plugin]]
name = "e"
library = "scripted"
config = { trace = "trace.jsonl" }
sandbox = { write = ["trace.jsonl"] }
[plugin.hooks.flaskbb_event_user_registered]
priority = 5
[[plugin]]
name = "f"
library = "scripted"
config = { trace = "trace.jsonl" }
sandbox = { write = ["trace.jsonl"] }
[plugin.hooks.flaskbb_event_user_registered]
tier = "tryfirst"
after = ["a"]
"#;

/// A daemon on `extra`'s configuration (plugins from the build, the scratch's store).
fn daemon(s: &Scratch, extra: &str) -> TestDaemon {
    build();
    TestDaemon::start(s, extra)
}

#[test]
fn chains_call_in_the_documented_order_and_check_prints_the_same() {
    let s = Scratch::new("order");
    // Base order: tryfirst newest first (f, c), normal by priority then newest first
    // (e, a), trylast oldest first (b, d). Then f must wait for a.
    let expected = ["c", "e", "a", "f", "b", "d"];
    let (ok, stdout, stderr) = check(&s, ORDER_CONFIG);
    assert!(ok, "{stderr}");
    assert_eq!(
        chain_lines(&stdout, "flaskbb_event_user_registered"),
        expected
    );

    let d = daemon(&s, ORDER_CONFIG);
    d.send(&user_registered("x")).unwrap();
    let calls: Vec<String> = trace_calls(&s, "trace.jsonl")
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(calls, expected);
    assert_eq!(trace(&s, "trace.jsonl")[0]["args"]["username"], "x");
}

#[test]
fn wrappers_run_around_the_chain_and_tear_down_in_reverse() {
    let s = Scratch::new("wrappers");
    let cfg = r#"
[[plugin]]
name = "w1"
library = "scripted"
config = { trace = "trace.jsonl" }
sandbox = { write = ["trace.jsonl"] }
[plugin.hooks.flaskbb_event_user_registered]
wrapper = true
tier = "tryfirst"
[[plugin]]
name = "plain"
library = "scripted"
config = { trace = "trace.jsonl" }
sandbox = { write = ["trace.jsonl"] }
[[plugin]]
name = "w2"
library = "scripted"
config = { trace = "trace.jsonl" }
sandbox = { write = ["trace.jsonl"] }
[plugin.hooks.flaskbb_event_user_registered]
wrapper = true
"#;
    let d = daemon(&s, cfg);
    assert_eq!(d.send(&user_registered("x")).unwrap(), json!({}));
    let phases: Vec<String> = trace(&s, "trace.jsonl")
        .iter()
        .map(|v| {
            format!(
                "{}:{}",
                v["instance"].as_str().unwrap(),
                v["args"]["phase"].as_str().unwrap_or("call")
            )
        })
        .collect();
    assert_eq!(
        phases,
        [
            "w1:before",
            "w2:before",
            "plain:call",
            "w2:after",
            "w1:after"
        ]
    );
}

#[test]
fn a_wrapper_sees_the_outcome_and_may_replace_it() {
    let s = Scratch::new("wrapper-replace");
    let cfg = r#"
[[plugin]]
name = "deny"
library = "scripted"
config = { trace = "trace.jsonl", on = { flaskbb_reauth_attempt = { action = "stop", reason = "inner no" } } }
sandbox = { write = ["trace.jsonl"] }
[[plugin]]
name = "w"
library = "scripted"
config = { trace = "trace.jsonl", on = { flaskbb_reauth_attempt = { action = "return_true" } } }
sandbox = { write = ["trace.jsonl"] }
[plugin.hooks.flaskbb_reauth_attempt]
wrapper = true
"#;
    let d = daemon(&s, cfg);
    let id = d.add_user("u", "Secret123", true);
    // "deny" stops the attempt; the wrapper turns that into a confirmation.
    assert!(d.send(&reauthenticate(id, "wrong")).is_ok());
    let after = trace(&s, "trace.jsonl")
        .into_iter()
        .find(|v| v["args"]["phase"] == "after")
        .unwrap();
    assert_eq!(
        after["args"]["outcome"]["err"],
        "StopAuthentication: inner no"
    );
    assert_eq!(after["args"]["decided_by"], "deny");
}

#[test]
fn firstresult_stops_at_the_first_answer_and_stop_ends_the_chain() {
    let s = Scratch::new("firstresult");
    let cfg = r#"
[[plugin]]
name = "after"
library = "scripted"
config = { trace = "trace.jsonl" }
sandbox = { write = ["trace.jsonl"] }
[[plugin]]
name = "yes"
library = "scripted"
config = { trace = "trace.jsonl", on = { flaskbb_reauth_attempt = { action = "return_true" }, flaskbb_post_reauth = { action = "stop", reason = "second factor missing" } } }
sandbox = { write = ["trace.jsonl"] }
"#;
    let d = daemon(&s, cfg);
    let id = d.add_user("u", "Secret123", true);
    s.sql("UPDATE users SET login_attempts = 3 WHERE username = 'u'");
    assert_eq!(
        err(d.send(&reauthenticate(id, "anything"))),
        (
            "org.flaskbb.Auth.AuthenticationFailed".into(),
            json!({ "reason": "second factor missing" })
        )
    );
    // "yes" registered last runs first: it answered reauth_attempt (firstresult: the
    // default provider after it never checked the password) and stopped post_reauth;
    // "after" ran in neither chain, only in reauth_failed.
    let calls = trace_calls(&s, "trace.jsonl");
    assert_eq!(
        calls,
        [
            ("yes".into(), "flaskbb_reauth_attempt".into()),
            ("yes".into(), "flaskbb_post_reauth".into()),
            ("yes".into(), "flaskbb_reauth_failed".into()),
            ("after".into(), "flaskbb_reauth_failed".into()),
        ]
    );
    // The built-in clear_failed_logins_on_reauth (registered first, so after "yes")
    // never ran either: the counter went on from 3.
    assert_eq!(d.user("u")["login_attempts"], 4);
}

#[test]
fn save_before_hands_the_post_from_impl_to_impl() {
    let s = Scratch::new("save-before");
    let cfg = r#"
[[plugin]]
name = "one"
library = "scripted"
config = { on = { flaskbb_event_post_save_before = { action = "append", text = " [one]" } } }
[[plugin]]
name = "two"
library = "scripted"
config = { on = { flaskbb_event_post_save_before = { action = "append", text = " [two]" } } }
"#;
    let d = daemon(&s, cfg);
    let reply = d
        .send(&post_save_before(json!({ "content": "hello" })))
        .unwrap();
    assert_eq!(reply["post"]["content"], "hello [two] [one]");
}

#[test]
fn several_instances_of_one_library_keep_their_own_configuration() {
    let s = Scratch::new("instances");
    let cfg = r#"
[[plugin]]
name = "quiet"
library = "scripted"
config = { trace = "quiet.jsonl" }
sandbox = { write = ["quiet.jsonl"] }
[[plugin]]
name = "deny"
library = "scripted"
config = { trace = "deny.jsonl", on = { flaskbb_authenticate = { action = "stop", reason = "no" } } }
sandbox = { write = ["deny.jsonl"] }
"#;
    let d = daemon(&s, cfg);
    assert_eq!(
        err(d.auth("bob", "pw")),
        (
            "org.flaskbb.Auth.AuthenticationFailed".into(),
            json!({ "reason": "no" })
        )
    );
    // "deny" registered last runs first and stopped the chain: "quiet" never ran in
    // flaskbb_authenticate (it did in the failure hook that followed).
    assert_eq!(
        trace_calls(&s, "deny.jsonl"),
        [
            ("deny".into(), "flaskbb_authenticate".into()),
            ("deny".into(), "flaskbb_authentication_failed".into()),
        ]
    );
    assert_eq!(
        trace_calls(&s, "quiet.jsonl"),
        [("quiet".into(), "flaskbb_authentication_failed".into())]
    );
    assert!(
        !s.read("deny.jsonl").contains("pw"),
        "the trace must never hold the secret"
    );
}

#[test]
fn a_plugin_panic_becomes_an_error_naming_the_instance_and_the_process_goes_on() {
    let s = Scratch::new("panic");
    let cfg = r#"
[[plugin]]
name = "boom"
library = "scripted"
config = { on = { flaskbb_authenticate = { action = "panic", message = "kaboom" } } }
"#;
    let mut d = daemon(&s, cfg);
    for _ in 0..3 {
        let (error, parameters) = err(d.auth("x", "y"));
        assert_eq!(error, "org.flaskbb.Auth.InternalError");
        let message = parameters["message"].as_str().unwrap();
        assert!(
            message.starts_with(
                "instance \"boom\" failed in flaskbb_authenticate: panicked at plugins/scripted/src/lib.rs:"
            ),
            "{message}"
        );
        assert!(message.ends_with(": kaboom"), "{message}");
    }
    d.assert_alive();
}

#[test]
fn errors_a_hook_does_not_accept_fail_closed() {
    let s = Scratch::new("wrong-error");
    let cfg = r#"
[[plugin]]
name = "odd"
library = "scripted"
config = { on = { flaskbb_authentication_failed = { action = "reject", reason = "r" } } }
"#;
    let d = daemon(&s, cfg);
    assert_eq!(
        err(d.auth("nobody", "x")),
        (
            "org.flaskbb.Auth.InternalError".into(),
            json!({ "message": "instance \"odd\" failed in flaskbb_authentication_failed: returned Rejected: r, which flaskbb_authentication_failed does not accept" })
        )
    );
}

#[test]
fn a_hung_plugin_times_out_naming_it_and_does_not_starve_the_pool() {
    let s = Scratch::new("hung");
    let cfg = r#"
[daemon]
workers = 1
hook_timeout_ms = 200
[[plugin]]
name = "slow"
library = "scripted"
config = { on = { flaskbb_event_user_registered = { action = "sleep", ms = 3000 } } }
"#;
    let d = daemon(&s, cfg);
    let started = std::time::Instant::now();
    assert_eq!(
        err(d.send(&user_registered("u"))),
        (
            "org.flaskbb.Events.InternalError".into(),
            json!({ "message": "instance \"slow\" did not answer flaskbb_event_user_registered within 200 ms" })
        )
    );
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "answered only after {:?}",
        started.elapsed()
    );
    // One worker, and it is stuck: the pool still serves the next request.
    assert_eq!(
        err(d.auth("nobody", "x")).0,
        "org.flaskbb.Auth.AuthenticationFailed"
    );
}

#[test]
fn too_many_hung_calls_refuse_new_requests() {
    let s = Scratch::new("overload");
    let cfg = r#"
[daemon]
workers = 1
hook_timeout_ms = 100
max_stuck_calls = 1
# In the daemon's process: an isolated instance's hung call is ended by killing its
# host, and never counts as stuck (tests/tests/isolation.rs).
[[plugin]]
name = "slow"
library = "scripted"
isolation = "none"
config = { on = { flaskbb_event_user_registered = { action = "sleep", ms = 1500 } } }
"#;
    let d = daemon(&s, cfg);
    assert_eq!(
        err(d.send(&user_registered("u"))).0,
        "org.flaskbb.Events.InternalError"
    );
    let (error, parameters) = err(d.auth("nobody", "x"));
    assert_eq!(error, "org.flaskbb.Auth.InternalError");
    assert!(
        parameters["message"]
            .as_str()
            .unwrap()
            .contains("refusing new requests"),
        "{parameters}"
    );
}

#[test]
fn a_plugin_built_against_plugin_abi_1_0_loads_and_answers_not_implemented_for_newer_hooks() {
    fixture("old-abi");
    let s = Scratch::new("old-abi");
    // After it, a current plugin still loads (abi_stable's shared checking state is
    // intact).
    let cfg = "[[plugin]]\nname = \"old\"\nlibrary = \"oldabi\"\n\
               [[plugin]]\nname = \"current\"\nlibrary = \"scripted\"\n";
    let (ok, stdout, stderr) = check(&s, cfg);
    assert!(ok, "{stderr}");
    assert_eq!(
        chain_lines(&stdout, "flaskbb_post_authenticate"),
        [
            "clear_failed_logins",
            "block_unactivated",
            "block_banned",
            "current",
            "old",
            "lockout"
        ]
    );
    // A hook newer than 1.0.0 has no "old" in its chain...
    assert_eq!(
        chain_lines(&stdout, "flaskbb_event_user_registered"),
        ["current"]
    );
    let d = daemon(&s, cfg);
    let plugins = d.client().list_plugins().unwrap();
    let old = plugins.iter().find(|p| p.name == "old").unwrap();
    assert_eq!(old.abi_version.as_deref(), Some("1.0.0"));
    // ... and the hooks it has work: it refuses ann when asked to.
    d.add_user("ann", "Secret123", true);
    assert_eq!(
        err(d.send(&authenticate_in(
            "ann",
            "Secret123",
            context_of(json!({ "old_abi": "refuse" }))
        ))),
        (
            "org.flaskbb.Auth.AuthenticationFailed".into(),
            json!({ "reason": "the 1.0.0 plugin refuses ann" })
        )
    );
    assert!(d.send(&user_registered("ann")).is_ok());
}

#[test]
fn each_load_failure_is_one_line_naming_the_file_and_cause() {
    let fixtures = fixture("abort");
    let s = Scratch::new("load-failures");
    s.write("bogus.so", "not an ELF file");
    let major = variant_plugin("abitwo", "2.0.0", |t| t);
    let layout = variant_plugin("abilayout", "1.4.0", |t| {
        t.replace(
            "    pub login_attempts: i32,",
            "    pub login_attempts: u32,",
        )
    });
    let cases: Vec<(String, String)> = vec![
        ("nosuch".into(), "plugin libnosuch.so: missing file: not found in plugins.dirs".into()),
        ("./bogus.so".into(), format!("plugin {}: cannot be loaded: ", s.path.join("bogus.so").display())),
        (
            "/lib/x86_64-linux-gnu/libc.so.6".into(),
            "plugin /lib/x86_64-linux-gnu/libc.so.6: not a flaskbbd plugin: it exports no abi_stable root module".into(),
        ),
        (
            "foreignmodule".into(),
            format!(
                "plugin {}: not a flaskbbd plugin: its root module `ForeignMod` comes from crate foreignmodule",
                fixtures.join("libforeignmodule.so").display()
            ),
        ),
        (
            "abortplugin".into(),
            format!("plugin {}: built with panic = \"abort\"", fixtures.join("libabortplugin.so").display()),
        ),
        (
            major.display().to_string(),
            format!("plugin {}: version mismatch: built against plugin-abi 2.0.0, this daemon speaks 1.4.0", major.display()),
        ),
        (
            layout.display().to_string(),
            format!("plugin {}: ABI mismatch with plugin-abi 1.4.0 (plugin built against 1.4.0): ", layout.display()),
        ),
    ];
    for (library, expected) in cases {
        let (ok, _, stderr) = check(
            &s,
            &format!("[[plugin]]\nname = \"p\"\nlibrary = {library:?}\n"),
        );
        assert!(!ok, "{library} should be refused");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {library}: {stderr}");
        assert!(
            lines[0].starts_with("flaskbbd: instance \"p\" (line 6): "),
            "{stderr}"
        );
        assert!(
            lines[0].contains(&expected),
            "for {library}, expected {expected:?} in:\n{stderr}"
        );
    }
    let (ok, _, stderr) = check(
        &s,
        "[[plugin]]\nname = \"p\"\nlibrary = \"scripted\"\nconfig = { on = { nohook = { action = \"none\" } } }\n",
    );
    assert!(!ok);
    // Printed once, with the line of the key in flaskbb.toml.
    assert_eq!(
        stderr.trim_end(),
        format!(
            "flaskbbd: instance \"p\" (line 6): plugin {}: init failed: config key on.nohook (line 8): \
             no such hook; hooks are {}",
            build().join("libscripted.so").display(),
            plugin_abi::hooks::ALL.join(", ")
        )
    );
}

#[test]
fn a_crate_built_without_cdylib_is_told_to_add_it() {
    let s = Scratch::new("rlib-only");
    s.write("libgreeter.rlib", "");
    let cfg = s.write(
        "flaskbb.toml",
        &format!(
            "[plugins]\ndirs = [{:?}]\n[[plugin]]\nname = \"g\"\nlibrary = \"greeter\"\n",
            s.path.display().to_string()
        ),
    );
    let out = flaskbbd(&["check", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out).1.trim_end(),
        format!(
            "flaskbbd: instance \"g\" (line 4): plugin {dir}/libgreeter.so: missing file: \
             {dir}/libgreeter.rlib is there but no libgreeter.so: the crate builds no shared library; \
             add crate-type = [\"cdylib\"] under [lib] in its Cargo.toml and build it again",
            dir = s.path.display()
        )
    );
}

#[test]
fn ordering_configuration_errors_name_the_hook_and_instances() {
    fixture("old-abi");
    let s = Scratch::new("order-errors");
    let (ok, _, stderr) = check(
        &s,
        "[[plugin]]\nname = \"a\"\nlibrary = \"scripted\"\n[plugin.hooks.flaskbb_authenticate]\nbefore = [\"ldap\"]\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("hook flaskbb_authenticate: instance \"a\" has before = [\"ldap\"], but no instance is named \"ldap\""),
        "{stderr}"
    );
    let (ok, _, stderr) = check(
        &s,
        "[[plugin]]\nname = \"a\"\nlibrary = \"scripted\"\n[plugin.hooks.flaskbb_authenticate]\nbefore = [\"b\"]\n\
         [[plugin]]\nname = \"b\"\nlibrary = \"scripted\"\n[plugin.hooks.flaskbb_authenticate]\nbefore = [\"a\"]\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("hook flaskbb_authenticate: before/after constraints form a cycle: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("a -> b -> a") || stderr.contains("b -> a -> b"),
        "{stderr}"
    );
    // A built-in can be ordered against a plugin, and a plugin against a built-in.
    let (ok, stdout, stderr) = check(
        &s,
        "[builtins.default_provider.hooks.flaskbb_authenticate]\nbefore = [\"a\"]\n\
         [[plugin]]\nname = \"a\"\nlibrary = \"scripted\"\n",
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        chain_lines(&stdout, "flaskbb_authenticate"),
        ["lockout", "default_provider", "a"]
    );
    // Overriding a hook the library does not implement is refused.
    let (ok, _, stderr) = check(&s, "[[plugin]]\nname = \"old\"\nlibrary = \"oldabi\"\n[plugin.hooks.flaskbb_authenticate]\npriority = 1\n");
    assert!(!ok);
    assert!(
        stderr.contains(":8: hooks.flaskbb_authenticate: instance \"old\": library "),
        "{stderr}"
    );
    assert!(
        stderr.contains("does not implement this hook (it implements: flaskbb_post_authenticate)"),
        "{stderr}"
    );
}
