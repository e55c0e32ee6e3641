//! The plugin system with real `.so` plugins: loading and its failures, chain order
//! and semantics, panics, hangs, several instances of one library, and a plugin built
//! against an older plugin-abi.

use std::{sync::Arc, time::Duration};

use flaskbbd::{
    chain::Input,
    executor::{ExecError, Executor},
    generation::Generation,
    hook::Hook,
    instance::{CallCx, Instance, Origin, PluginHooks},
    loader::Loader,
    proto::Context,
    request::Request,
    store::{self, Store},
};
use flaskbbd_tests::{build, fixture, flaskbbd, text, trace, trace_calls, variant_plugin, Scratch};
use plugin_abi::sdk::{HookError, Value};

/// A generation built from `extra` config, and a store in the same scratch directory.
fn generation(s: &Scratch, extra: &str) -> (Generation, Arc<dyn Store>) {
    build();
    flaskbbd_tests::generation(
        &s.config(&format!("[database]\nurl = \"sqlite:///test.db\"\n{extra}")),
    )
}

fn request(store: &Arc<dyn Store>) -> Arc<Request> {
    Request::new(store.clone(), Context::new())
}

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
            "ratelimit"
        ]
    );
    assert_eq!(
        chain_lines(&stdout, "flaskbb_authentication_failed"),
        ["audit", "ratelimit", "mark_failed_login"]
    );
    assert_eq!(
        chain_lines(&stdout, "flaskbb_event_post_save_before"),
        ["audit", "wordfilter"]
    );
    assert_eq!(
        chain_lines(&stdout, "flaskbb_reauth_attempt"),
        ["audit", "default_reauth"]
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
[[plugin]]
name = "b"
library = "scripted"
config = { trace = "trace.jsonl" }
[plugin.hooks.flaskbb_event_user_registered]
tier = "trylast"
[[plugin]]
name = "c"
library = "scripted"
config = { trace = "trace.jsonl" }
[plugin.hooks.flaskbb_event_user_registered]
tier = "tryfirst"
[[plugin]]
name = "d"
library = "scripted"
config = { trace = "trace.jsonl" }
[plugin.hooks.flaskbb_event_user_registered]
tier = "trylast"
[[plugin]]
name = "e"
library = "scripted"
config = { trace = "trace.jsonl" }
[plugin.hooks.flaskbb_event_user_registered]
priority = 5
[[plugin]]
name = "f"
library = "scripted"
config = { trace = "trace.jsonl" }
[plugin.hooks.flaskbb_event_user_registered]
tier = "tryfirst"
after = ["a"]
"#;

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

    let (g, store) = generation(&s, ORDER_CONFIG);
    let out = g.call(&request(&store), Input::UserRegistered { username: "x" });
    assert_eq!(out.result, Ok(Value::Nothing));
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
[plugin.hooks.flaskbb_event_user_registered]
wrapper = true
tier = "tryfirst"
[[plugin]]
name = "plain"
library = "scripted"
config = { trace = "trace.jsonl" }
[[plugin]]
name = "w2"
library = "scripted"
config = { trace = "trace.jsonl" }
[plugin.hooks.flaskbb_event_user_registered]
wrapper = true
"#;
    let (g, store) = generation(&s, cfg);
    let out = g.call(&request(&store), Input::UserRegistered { username: "x" });
    assert_eq!(out.result, Ok(Value::Nothing));
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
[[plugin]]
name = "w"
library = "scripted"
config = { trace = "trace.jsonl", on = { flaskbb_reauth_attempt = { action = "return_true" } } }
[plugin.hooks.flaskbb_reauth_attempt]
wrapper = true
"#;
    let (g, store) = generation(&s, cfg);
    let user = plugin_abi::testing::TestHost::user(1, "u");
    let out = g.call(
        &request(&store),
        Input::ReauthAttempt {
            user: &user,
            secret: "s",
        },
    );
    assert_eq!(out.result, Ok(Value::True));
    assert_eq!(out.decided_by.as_deref(), Some("w"));
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
[[plugin]]
name = "yes"
library = "scripted"
config = { trace = "trace.jsonl", on = { flaskbb_reauth_attempt = { action = "return_true" }, flaskbb_post_reauth = { action = "stop", reason = "second factor missing" } } }
"#;
    let (g, store) = generation(&s, cfg);
    let user = store::Store::create_user(
        &*store,
        &store::NewUser {
            username: "u".into(),
            email: "u@x".into(),
            password_hash: Some("x".into()),
            activated: true,
            primary_group_id: store::MEMBER_GROUP,
        },
    )
    .unwrap();
    let user = flaskbbd::proto::convert::user_to_abi(&user.user, false);
    let req = request(&store);
    let out = g.call(
        &req,
        Input::ReauthAttempt {
            user: &user,
            secret: "s",
        },
    );
    assert_eq!(out.result, Ok(Value::True));
    assert_eq!(out.decided_by.as_deref(), Some("yes"));
    let out = g.call(&req, Input::PostReauth { user: &user });
    assert_eq!(out.result, Err(HookError::stop("second factor missing")));
    // "yes" registered last runs first; "after" never ran for either hook, and the
    // built-in clear_failed_logins_on_reauth (registered first) did not run either.
    assert_eq!(
        trace_calls(&s, "trace.jsonl")
            .into_iter()
            .map(|c| c.0)
            .collect::<Vec<_>>(),
        ["yes", "yes"]
    );
    assert_eq!(req.pending_changes(), 0);
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
    let (g, store) = generation(&s, cfg);
    let post = plugin_abi::abi::Post {
        content: "hello".into(),
        ..Default::default()
    };
    let out = g.call(&request(&store), Input::PostSaveBefore { post });
    match out.result {
        Ok(Value::Post(p)) => assert_eq!(p.content.as_str(), "hello [two] [one]"),
        other => panic!("expected a post, got {other:?}"),
    }
}

#[test]
fn several_instances_of_one_library_keep_their_own_configuration() {
    let s = Scratch::new("instances");
    let cfg = r#"
[[plugin]]
name = "quiet"
library = "scripted"
config = { trace = "quiet.jsonl" }
[[plugin]]
name = "deny"
library = "scripted"
config = { trace = "deny.jsonl", on = { flaskbb_authenticate = { action = "stop", reason = "no" } } }
"#;
    let (g, store) = generation(&s, cfg);
    let out = g.call(
        &request(&store),
        Input::Authenticate {
            identifier: "bob",
            secret: "pw",
        },
    );
    assert_eq!(out.result, Err(HookError::stop("no")));
    assert_eq!(out.decided_by.as_deref(), Some("deny"));
    assert_eq!(
        trace_calls(&s, "deny.jsonl"),
        [("deny".into(), "flaskbb_authenticate".into())]
    );
    // "deny" registered last runs first and stopped the chain: "quiet" never ran.
    assert!(trace(&s, "quiet.jsonl").is_empty());
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
    let (g, store) = generation(&s, cfg);
    for _ in 0..3 {
        let out = g.call(
            &request(&store),
            Input::Authenticate {
                identifier: "x",
                secret: "y",
            },
        );
        assert_eq!(out.decided_by.as_deref(), Some("boom"));
        match out.result {
            Err(HookError::Failed { message }) => {
                assert!(
                    message.starts_with("panicked at plugins/scripted/src/lib.rs:"),
                    "{message}"
                );
                assert!(message.ends_with(": kaboom"), "{message}");
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }
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
    let (g, store) = generation(&s, cfg);
    let out = g.call(
        &request(&store),
        Input::AuthenticationFailed { identifier: "x" },
    );
    assert_eq!(
        out.result,
        Err(HookError::failed(
            "returned Rejected: r, which flaskbb_authentication_failed does not accept"
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_plugin_times_out_naming_it_and_does_not_starve_the_pool() {
    let s = Scratch::new("hung");
    let cfg = r#"
[[plugin]]
name = "slow"
library = "scripted"
config = { on = { flaskbb_event_user_registered = { action = "sleep", ms = 3000 } } }
"#;
    let (g, store) = generation(&s, cfg);
    let g = Arc::new(g);
    // One worker only: a stuck call must not block the next request.
    let exec = Executor::new(1, 4);
    let timeout = Duration::from_millis(200);
    let req = request(&store);
    let (g2, r2) = (g.clone(), req.clone());
    let started = std::time::Instant::now();
    let err = exec
        .run(req, timeout, move || {
            g2.call(&r2, Input::UserRegistered { username: "u" })
        })
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "answered only after {:?}",
        started.elapsed()
    );
    match &err {
        ExecError::Timeout {
            instance,
            hook,
            timeout_ms,
        } => {
            assert_eq!(
                (&**instance, *hook, *timeout_ms),
                ("slow", Hook::UserRegistered, 200)
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "instance \"slow\" did not answer flaskbb_event_user_registered within 200 ms"
    );
    assert_eq!(exec.stuck(), 1);
    // The pool still serves: a quick request answers while "slow" is stuck.
    let (g3, r3) = (g.clone(), request(&store));
    let r3b = r3.clone();
    let ok = exec
        .run(r3, timeout, move || {
            g3.call(
                &r3b,
                Input::AuthenticationFailed {
                    identifier: "nobody",
                },
            )
        })
        .await
        .unwrap();
    assert_eq!(ok.result, Ok(Value::Nothing));
    // When the stuck call returns, its thread retires and the count drops.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(exec.stuck(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_hung_calls_refuse_new_requests() {
    let s = Scratch::new("overload");
    let cfg = r#"
[[plugin]]
name = "slow"
library = "scripted"
config = { on = { flaskbb_event_user_registered = { action = "sleep", ms = 1500 } } }
"#;
    let (g, store) = generation(&s, cfg);
    let g = Arc::new(g);
    let exec = Executor::new(1, 1);
    let req = request(&store);
    let (g2, r2) = (g.clone(), req.clone());
    let first = exec
        .run(req, Duration::from_millis(100), move || {
            g2.call(&r2, Input::UserRegistered { username: "u" })
        })
        .await;
    assert!(matches!(first, Err(ExecError::Timeout { .. })));
    let second = exec
        .run(request(&store), Duration::from_millis(100), || ())
        .await;
    assert!(
        matches!(second, Err(ExecError::Overloaded(1))),
        "{second:?}"
    );
}

#[test]
fn a_plugin_built_against_plugin_abi_1_0_loads_and_answers_not_implemented_for_newer_hooks() {
    let dir = fixture("old-abi");
    let s = Scratch::new("old-abi");
    let (ok, stdout, stderr) = check(&s, "[[plugin]]\nname = \"old\"\nlibrary = \"oldabi\"\n");
    assert!(ok, "{stderr}");
    assert_eq!(
        chain_lines(&stdout, "flaskbb_post_authenticate"),
        [
            "clear_failed_logins",
            "block_unactivated",
            "block_banned",
            "old"
        ]
    );
    assert!(chain_lines(&stdout, "flaskbb_event_user_registered").is_empty());

    let loader = Loader::default();
    let lib = loader
        .load(&dir.join("liboldabi.so"))
        .expect("the old plugin loads");
    assert_eq!(lib.abi_version, "1.0.0");
    // A current plugin still loads after it (the checker's shared state is intact).
    loader
        .load(&build().join("libscripted.so"))
        .expect("a current plugin loads after an old one");
    let instance = Instance {
        name: "old".into(),
        origin: Origin::Plugin(lib.clone()),
        config_json: "{}".into(),
        hooks: Box::new(PluginHooks(lib.instantiate("old", "{}", &s.path).unwrap())),
    };
    let (_, store) = generation(&s, "");
    let mut context = Context::new();
    context.insert("old_abi".into(), "refuse".into());
    let req = Request::new(store, context);
    let user = plugin_abi::testing::TestHost::user(7, "ann");
    let cx = CallCx {
        req: &req,
        instance: &instance,
        hook: Hook::UserRegistered,
    };
    assert_eq!(
        instance.hooks.user_registered(&cx, "ann"),
        Err(HookError::NotImplemented)
    );
    let cx = CallCx {
        req: &req,
        instance: &instance,
        hook: Hook::PostAuthenticate,
    };
    assert_eq!(
        instance.hooks.post_authenticate(&cx, &user),
        Err(HookError::stop("the 1.0.0 plugin refuses ann"))
    );
}

#[test]
fn each_load_failure_is_one_line_naming_the_file_and_cause() {
    let fixtures = fixture("abort");
    let s = Scratch::new("load-failures");
    s.write("bogus.so", "not an ELF file");
    let major = variant_plugin("abitwo", "2.0.0", |t| t);
    let layout = variant_plugin("abilayout", "1.2.0", |t| {
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
            format!("plugin {}: version mismatch: built against plugin-abi 2.0.0, this daemon speaks 1.2.0", major.display()),
        ),
        (
            layout.display().to_string(),
            format!("plugin {}: ABI mismatch with plugin-abi 1.2.0 (plugin built against 1.2.0): ", layout.display()),
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
    assert!(
        stderr.trim_end().ends_with(&format!(
            "instance \"p\": init returned an error: config key on.nohook: no such hook; hooks are {}",
            plugin_abi::hooks::ALL.join(", ")
        )),
        "{stderr}"
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
