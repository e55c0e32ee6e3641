//! The brute-force defences through the real daemon: the lockout's scopes, answers
//! that do not tell a locked or unknown account from a wrong password, counts that
//! live in the store (surviving restarts and reloads, for the lockout and for the
//! `ratelimit` plugin alike), and operators seeing and lifting locks.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use flaskbbd_tests::calls::{
    authenticate_in, context_of, get_user, reload, set_plugin_enabled, unlock,
};
use std::time::{Duration, Instant};

use flaskbbd_tests::{
    auth,
    daemon::{err, TestDaemon},
    flaskbbd, text, Scratch,
};
use serde_json::{json, Value};

const FAILED: &str = "org.flaskbb.Auth.AuthenticationFailed";
const WRONG: &str = "Wrong username or password.";
const LOCKED: &str = "Your account is currently locked out due to too many failed login attempts";
const REFUSED: &str = "Too many failed login attempts from your address. Try again later.";

/// `Authenticate` from the client address `addr`.
fn login(d: &TestDaemon, who: &str, secret: &str, addr: &str) -> Result<Value, String> {
    d.send(&authenticate_in(
        who,
        secret,
        context_of(json!({ "remote_addr": addr })),
    ))
    .map_err(|e| {
        let (name, params) = err(Err(e));
        format!("{name} {params}")
    })
}

fn failed(reason: &str) -> Result<Value, String> {
    Err(format!("{FAILED} {}", json!({ "reason": reason })))
}

/// The answer of `login`, with only whether it succeeded kept from a success.
fn outcome(r: Result<Value, String>) -> Result<(), String> {
    r.map(drop)
}

fn lock(d: &TestDaemon, who: &str) -> Value {
    d.send(&get_user(who)).expect("GetUser")["lock"].clone()
}

#[test]
fn a_member_cannot_be_locked_out_from_another_address() {
    let s = Scratch::new("lock-scope");
    // The defaults: scope = "account_and_address", reveal = false, attempts = 5.
    let d = TestDaemon::start(&s, "");
    d.add_user("meg", "Secret123", true);
    let evil = "198.51.100.66";
    for _ in 0..5 {
        assert_eq!(
            outcome(login(&d, "meg", "guess", evil)),
            outcome(failed(WRONG))
        );
    }
    // Locked for the attacker's address, even with the right password, in the words
    // of a wrong one...
    assert_eq!(
        outcome(login(&d, "meg", "Secret123", evil)),
        outcome(failed(WRONG))
    );
    // ...and not for meg's own.
    assert!(login(&d, "meg", "Secret123", "203.0.113.10").is_ok());
    // Success from her address cleared nothing of the attacker's.
    assert_eq!(
        outcome(login(&d, "meg", "Secret123", evil)),
        outcome(failed(WRONG))
    );

    // IPv6 counts by /64: the attacker's whole network is locked, a neighbour's is not.
    for i in 0..5 {
        let _ = login(&d, "meg", "guess", &format!("2001:db8:6:6::{i:x}"));
    }
    let r = login(&d, "meg", "Secret123", "2001:db8:6:6:ffff::1");
    assert_eq!(outcome(r), outcome(failed(WRONG)));
    assert!(login(&d, "meg", "Secret123", "2001:db8:6:7::1").is_ok());

    let state = lock(&d, "meg");
    assert_eq!(state["locked"], false, "{state}");
    let locked: Vec<&str> = state["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["locked"] == true)
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    assert_eq!(locked, ["198.51.100.66", "2001:db8:6:6::/64"], "{state}");
}

#[test]
fn a_burst_of_guesses_is_checked_no_more_than_attempts_times() {
    let s = Scratch::new("lock-burst");
    // The defaults (attempts = 5, hidden locks), and a hash slow enough (cost 10) that
    // the burst is still being checked when the right password arrives.
    let d = TestDaemon::start(&s, "[auth]\nbcrypt_cost = 10\n");
    d.add_user("bo", "Secret123", true);
    let burst =
        flaskbbd_tests::daemon::login_burst(&[&d], "bo", "Secret123", "198.51.100.7", 30, 5);
    assert_eq!(burst.checked, 5, "{burst:?}");
    assert!(
        !burst.right_accepted,
        "the right password got through a burst"
    );
    // The count is every attempt's, and the address stays locked.
    assert_eq!(lock(&d, "bo")["addresses"][0]["failures"], 31);
    assert_eq!(
        outcome(login(&d, "bo", "Secret123", "198.51.100.7")),
        outcome(failed(WRONG))
    );
    assert!(login(&d, "bo", "Secret123", "203.0.113.9").is_ok());
}

/// Concurrent logins of one account, right and wrong, from two addresses: each is
/// answered, none fails internally. Reservations and the commits that clear the same
/// rows once locked them in different orders, and PostgreSQL ended one of two as a
/// deadlock's victim (an InternalError for a member who typed the right password).
#[test]
fn concurrent_right_and_wrong_logins_of_one_account_never_fail_internally() {
    let s = Scratch::new("lock-concurrent");
    let d = TestDaemon::start(
        &s,
        "[auth]\nbcrypt_cost = 4\nfailure_delay_ms = 0\nlockout = { attempts = 1000, account_attempts = 5000 }\n",
    );
    d.add_user("cy", "Secret123", true);
    let answers: Vec<Result<Value, String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|t| {
                let d = &d;
                scope.spawn(move || {
                    let addr = if t % 2 == 0 { "192.0.2.1" } else { "192.0.2.2" };
                    (0..15)
                        .map(|i| {
                            let secret = if (t + i) % 3 == 0 {
                                "wrong"
                            } else {
                                "Secret123"
                            };
                            login(d, "cy", secret, addr)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let internal: Vec<_> = answers
        .iter()
        .filter_map(|a| a.as_ref().err())
        .filter(|e| !e.starts_with(FAILED))
        .collect();
    assert!(internal.is_empty(), "{internal:?}");
    assert!(answers.iter().any(Result::is_ok));
}

#[test]
fn an_address_counts_as_one_however_it_is_spelled() {
    let s = Scratch::new("lock-spelling");
    let d = TestDaemon::start(&s, "");
    d.add_user("al", "Secret123", true);
    for addr in [
        "203.0.113.066",
        "203.0.113.66",
        "::ffff:203.0.113.66",
        "203.000.113.66:4711",
        "[::ffff:203.0.113.066]",
    ] {
        let _ = login(&d, "al", "guess", addr);
    }
    let l = lock(&d, "al");
    assert_eq!(l["addresses"].as_array().unwrap().len(), 1, "{l}");
    assert_eq!(l["addresses"][0]["address"], "203.0.113.66", "{l}");
    assert_eq!(
        outcome(login(&d, "al", "Secret123", "203.0.113.66")),
        outcome(failed(WRONG))
    );
    let v6 = login(&d, "al", "guess", "2001:DB8:0:1::7");
    assert!(v6.is_err());
    let l = lock(&d, "al");
    assert!(
        l["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["address"] == "2001:db8:0:1::/64"),
        "{l}"
    );
}

#[test]
fn guesses_from_many_addresses_bring_growing_delays_not_a_lock() {
    let s = Scratch::new("lock-distributed");
    let d = TestDaemon::start(
        &s,
        &auth(
            "lockout = { attempts = 3, account_attempts = 6, account_delay_ms = 300, account_max_delay_ms = 600 }\n",
        ),
    );
    d.add_user("ned", "Secret123", true);
    // Two guesses from each of three addresses: none locked, six against the account.
    for i in 0..6 {
        let _ = login(&d, "ned", "guess", &format!("192.0.2.{}", i % 3));
    }
    let state = lock(&d, "ned");
    assert_eq!(
        (state["failures"].clone(), state["delay_ms"].clone()),
        (json!(6), json!(300))
    );
    assert_eq!(state["locked"], false);
    // Every answer for ned is held back now, a success too (or its speed would tell),
    // but ned still gets in.
    let t = Instant::now();
    assert!(login(&d, "ned", "Secret123", "203.0.113.20").is_ok());
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    let _ = login(&d, "ned", "guess", "192.0.2.200");
    assert_eq!(lock(&d, "ned")["delay_ms"], 600);
    let _ = login(&d, "ned", "guess", "192.0.2.201");
    assert_eq!(lock(&d, "ned")["delay_ms"], 600, "capped at the maximum");
}

#[test]
fn a_hidden_lock_answers_as_a_wrong_password_and_unknown_names_lock_alike() {
    let s = Scratch::new("lock-hidden");
    let d = TestDaemon::start(&s, "");
    d.add_user("ola", "Secret123", true);
    let addr = "198.51.100.5";
    // Locks ola, and the name nobody has, from this address.
    for who in ["ola", "ghost"] {
        for _ in 0..5 {
            let _ = login(&d, who, "guess", addr);
        }
    }
    let before = d.user("ola")["login_attempts"].as_i64().unwrap();
    let answers: Vec<_> = [
        ("ola", "Secret123"), // locked, right password
        ("ola", "guess"),     // locked, wrong password
        ("ghost", "guess"),   // unknown, locked too
        ("zed", "guess"),     // unknown, never seen
    ]
    .iter()
    .map(|(who, pw)| login(&d, who, pw, addr))
    .collect();
    // A plain wrong password, from an address with no count: the same answer.
    let wrong = login(&d, "ola", "guess", "203.0.113.99");
    for a in &answers {
        assert_eq!(a, &wrong);
    }
    assert_eq!(wrong, failed(WRONG));
    // The failure hooks ran for the locked attempts as for any failure.
    assert_eq!(
        d.user("ola")["login_attempts"].as_i64().unwrap(),
        before + 3
    );
    // The unknown name's counts are kept like a member's (its own and its address's),
    // and an operator can lift them.
    let cleared = d.send(&unlock("ghost")).unwrap();
    assert_eq!(cleared["cleared"], 2);
}

#[test]
fn names_and_addresses_of_any_shape_are_counted_without_failing() {
    let s = Scratch::new("lock-shapes");
    let d = TestDaemon::start(&s, "");
    // NUL (which PostgreSQL refuses in text), a name longer than the column, an
    // address that is no address: each a plain failure, counted, never an error.
    let long = "n".repeat(1000);
    for (who, addr) in [
        ("nul\0name", "198.51.100.9"),
        (long.as_str(), "198.51.100.9"),
        ("someone", "not-an-address\0"),
        ("someone", "fe80::1%eth0"),
    ] {
        for _ in 0..6 {
            assert_eq!(
                outcome(login(&d, who, "guess", addr)),
                outcome(failed(WRONG))
            );
        }
    }
    let cleared = d.send(&unlock("nul\0name")).unwrap();
    assert_eq!(cleared["cleared"], 2);
}

#[test]
fn reveal_and_account_scope_keep_flaskbbs_lockout() {
    let s = Scratch::new("lock-reveal");
    let d = TestDaemon::start(
        &s,
        &auth("lockout = { attempts = 3, scope = \"account\", reveal = true }\n"),
    );
    d.add_user("pia", "Secret123", true);
    for i in 0..3 {
        let _ = login(&d, "pia", "guess", &format!("192.0.2.{i}"));
    }
    // Locked from everywhere, saying so.
    assert_eq!(
        outcome(login(&d, "pia", "Secret123", "203.0.113.1")),
        outcome(failed(LOCKED))
    );
    let state = lock(&d, "pia");
    assert_eq!(
        (state["locked"].clone(), state["failures"].clone()),
        (json!(true), json!(4))
    );
    assert!(state["locked_until"].is_string(), "{state}");
    // The operator lifts it through the Admin interface.
    let cleared = d.send(&unlock("pia@example.org")).unwrap();
    assert_eq!(cleared["cleared"], 1);
    assert!(login(&d, "pia", "Secret123", "203.0.113.1").is_ok());
    assert_eq!(lock(&d, "pia")["locked"], false);
}

#[test]
fn locks_and_address_penalties_survive_a_restart_and_a_reload() {
    let s = Scratch::new("lock-restart");
    let extra = r#"
[[plugin]]
name = "ratelimit"
library = "ratelimit"
config = { free_failures = 1, base_delay_ms = 0, refuse_after = 8, window_seconds = 600 }
"#;
    let d = TestDaemon::start(&s, extra);
    d.add_user("rae", "Secret123", true);
    d.add_user("sam", "Secret123", true);
    let evil = "198.51.100.77";
    for _ in 0..5 {
        let _ = login(&d, "rae", "guess", evil);
    }
    // Three more guesses at another account: eight from this address in all.
    for _ in 0..3 {
        let _ = login(&d, "sam", "guess", evil);
    }
    // (The refused logins are for a name nobody has, so that sam's count stays at 3.)
    let refused = outcome(failed(REFUSED));
    assert_eq!(outcome(login(&d, "vic", "guess", evil)), refused);
    d.stop();

    let d = TestDaemon::start(&s, extra);
    assert_eq!(outcome(login(&d, "vic", "guess", evil)), refused, "restart");
    d.send(&reload()).unwrap();
    assert_eq!(outcome(login(&d, "vic", "guess", evil)), refused, "reload");
    // Without the rate limit, the lockout's own count is still there too.
    d.send(&set_plugin_enabled("ratelimit", false)).unwrap();
    d.send(&reload()).unwrap();
    assert_eq!(
        outcome(login(&d, "rae", "Secret123", evil)),
        outcome(failed(WRONG))
    );
    assert!(
        login(&d, "sam", "Secret123", evil).is_ok(),
        "sam has 3 failures only"
    );
}

#[test]
fn operators_see_and_lift_locks_from_the_command_line() {
    let s = Scratch::new("lock-cli");
    let d = TestDaemon::start(&s, "");
    d.add_user("tia", "Secret123", true);
    d.add_user("uma", "Secret123", true);
    for _ in 0..5 {
        let _ = login(&d, "tia", "guess", "198.51.100.1");
        let _ = login(&d, "tia", "guess", "198.51.100.2");
    }
    let config = s.path.join("flaskbb.toml");
    let config = config.to_str().unwrap();
    let list = || {
        let out = flaskbbd(&["user", "list", "--config", config]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        stdout
    };
    let listed = list();
    let row = |name: &str| {
        listed
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {listed}"))
            .to_owned()
    };
    assert!(row("tia").contains("locked for 2 address(es)"), "{listed}");
    assert!(!row("uma").contains("locked"), "{listed}");

    let out = flaskbbd(&[
        "user",
        "unlock",
        "tia",
        "--address",
        "198.51.100.1",
        "--config",
        config,
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("unlocked tia from 198.51.100.1: 1 failure count(s) cleared"),
        "{stdout}"
    );
    assert!(login(&d, "tia", "Secret123", "198.51.100.1").is_ok());
    assert_eq!(
        outcome(login(&d, "tia", "Secret123", "198.51.100.2")),
        outcome(failed(WRONG))
    );
    assert!(list().contains("locked for 1 address(es)"));

    let out = flaskbbd(&["user", "unlock", "tia", "--config", config]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(login(&d, "tia", "Secret123", "198.51.100.2").is_ok());
    let state = lock(&d, "tia");
    assert_eq!(state["addresses"], json!([]), "{state}");
}
