//! The FlaskBB bridge (Python) spells the daemon's method and error names itself; this
//! reads its sources and checks every name against the `.varlink` interface files the
//! daemon serves, so a renamed method or error fails here rather than in a forum.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use flaskbbd_protocol::INTERFACES;
use flaskbbd_tests::root;

/// The `method` or `error` names `interface` declares.
fn declared(interface: &str, keyword: &str) -> BTreeSet<String> {
    let (_, text) = INTERFACES
        .iter()
        .find(|(name, _)| *name == interface)
        .unwrap_or_else(|| panic!("no interface {interface}"));
    text.lines()
        .filter_map(|l| l.strip_prefix(keyword)?.strip_prefix(' '))
        .map(|rest| {
            rest.split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// Methods and errors together.
fn names(interface: &str) -> BTreeSet<String> {
    let mut all = declared(interface, "method");
    all.extend(declared(interface, "error"));
    all
}

fn source(file: &str) -> String {
    std::fs::read_to_string(root().join("bridges/flaskbb/flaskbb_flaskbbd").join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Every quoted word that follows `prefix` in `text` (`prefix` ends where the name
/// starts).
fn after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .map(|(at, _)| {
            let rest = &text[at + prefix.len()..];
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// The quoted words in the first `(...)` or `{...}` after `prefix`.
fn quoted_in<'a>(text: &'a str, prefix: &str, close: char) -> Vec<&'a str> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        let rest = &text[at + prefix.len()..];
        let body = &rest[..rest.find(close).unwrap()];
        found.extend(
            body.split('"')
                .skip(1)
                .step_by(2)
                .filter(|w| w.chars().all(|c| c.is_ascii_alphanumeric())),
        );
    }
    found
}

/// The string literal each `prefix` (a call) starts with, on its line or the next
/// (calls whose first argument is not a literal are left out).
fn first_argument<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .filter_map(|(at, _)| {
            let rest = text[at + prefix.len()..].trim_start().strip_prefix('"')?;
            Some(&rest[..rest.find('"')?])
        })
        .collect()
}

#[test]
fn the_bridge_client_names_only_methods_and_errors_the_interfaces_declare() {
    let client = source("client.py");
    let mut checked = 0;
    for (constant, interface) in [
        ("AUTH", "org.flaskbb.Auth"),
        ("EVENTS", "org.flaskbb.Events"),
        ("ADMIN", "org.flaskbb.Admin"),
        ("ACCOUNT", "org.flaskbb.Account"),
    ] {
        assert!(
            client.contains(&format!("{constant} = \"{interface}\"")),
            "client.py's {constant} is not {interface}"
        );
        let known = names(interface);
        for name in after(&client, &format!("f\"{{{constant}}}.")) {
            if name.is_empty() {
                // `f"{ACCOUNT}.{method}"`: the method comes from the caller.
                continue;
            }
            assert!(
                known.contains(name),
                "client.py names {interface}.{name}, which {interface}.varlink does not declare"
            );
            checked += 1;
        }
    }
    // Authenticate, Reauthenticate, five events, four errors at least.
    assert!(checked >= 11, "only {checked} names found in client.py");
}

#[test]
fn the_bridge_pages_call_only_account_methods_and_name_only_their_errors() {
    let account = source("account.py");
    let methods = declared("org.flaskbb.Account", "method");
    let errors = declared("org.flaskbb.Account", "error");
    let calls = first_argument(&account, "account_call(");
    assert!(
        calls.len() >= 10,
        "only {} Account calls found",
        calls.len()
    );
    for method in calls {
        assert!(
            methods.contains(method),
            "account.py calls org.flaskbb.Account.{method}, which the interface does not declare"
        );
    }
    let mut named = quoted_in(&account, "_MESSAGES = {", '}');
    let messages = named.len();
    named.extend(quoted_in(&account, "e.name in (", ')'));
    named.extend(after(&account, "e.name == \""));
    assert!(messages >= 6, "only {messages} error messages found");
    let admin_errors = declared("org.flaskbb.Admin", "error");
    for error in named {
        // `_status` asks Admin; the rest ask Account.
        assert!(
            errors.contains(error) || admin_errors.contains(error),
            "account.py names the error {error}, which neither Account nor Admin declares"
        );
    }
    let admin_methods = declared("org.flaskbb.Admin", "method");
    for method in first_argument(&account, "client.admin(") {
        assert!(
            admin_methods.contains(method),
            "account.py calls org.flaskbb.Admin.{method}, which the interface does not declare"
        );
    }
}
