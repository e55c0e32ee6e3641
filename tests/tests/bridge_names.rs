//! The FlaskBB bridge (Python) spells the daemon's method and error names itself; this
//! reads its sources and checks every name against the `.varlink` interface files the
//! daemon serves, so a renamed method or error fails here rather than in a forum.

// Test code: a failure here should stop the test loudly, so unwrap and expect are
// how it says what it expects (the workspace denies them in the daemon and plugins),
// and so is panic!.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

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
    named.extend(after(&account, "e.name != \""));
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

/// A method's declared signature: its parameters (name, whether optional) and the
/// fields of its reply.
struct Signature {
    parameters: Vec<(String, bool)>,
    replies: BTreeSet<String>,
}

/// The fields of a Varlink field list (`a: int, b: ?string`): name and whether it is
/// optional.
fn fields(list: &str) -> Vec<(String, bool)> {
    list.split(',')
        .filter_map(|field| {
            let (name, kind) = field.split_once(':')?;
            Some((name.trim().to_owned(), kind.trim_start().starts_with('?')))
        })
        .collect()
}

/// Every method `interface` declares, with its signature.
fn signatures(interface: &str) -> BTreeMap<String, Signature> {
    let (_, text) = INTERFACES
        .iter()
        .find(|(name, _)| *name == interface)
        .unwrap_or_else(|| panic!("no interface {interface}"));
    text.lines()
        .filter_map(|l| l.strip_prefix("method "))
        .map(|rest| {
            let (name, rest) = rest.split_once('(').unwrap();
            let (parameters, rest) = rest.split_once(')').unwrap();
            let replies = rest.split_once('(').unwrap().1.trim_end();
            let replies = replies.strip_suffix(')').unwrap();
            let signature = Signature {
                parameters: fields(parameters),
                replies: fields(replies).into_iter().map(|(n, _)| n).collect(),
            };
            (name.to_owned(), signature)
        })
        .collect()
}

/// The text of each call's arguments (between `prefix`, which ends with `(`, and its
/// closing parenthesis; strings may hold any bracket), and what follows the call.
fn calls_of<'a>(text: &'a str, prefix: &str) -> Vec<(&'a str, &'a str)> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        let start = at + prefix.len();
        let (mut depth, mut quote) = (1usize, None::<char>);
        for (i, c) in text[start..].char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '(' | '[' | '{') => depth += 1,
                (None, ')' | ']' | '}') => {
                    depth -= 1;
                    if depth == 0 {
                        found.push((&text[start..start + i], &text[start + i + 1..]));
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    found
}

/// The top-level arguments of an argument list (split at commas outside brackets).
fn arguments(list: &str) -> Vec<&str> {
    let (mut out, mut depth, mut from) = (Vec::new(), 0usize, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(list[from..i].trim());
                from = i + 1;
            }
            _ => {}
        }
    }
    out.push(list[from..].trim());
    out.into_iter().filter(|a| !a.is_empty()).collect()
}

/// The bridge's pages call `org.flaskbb.Account` with keyword arguments, which the
/// client sends as the call's parameters: each must be one the method declares, each
/// parameter the method requires must be there, and a reply field read straight off
/// the call (`account_call(...)["recovery_codes"]`) must be one the method answers.
#[test]
fn the_bridge_pages_send_account_methods_their_declared_parameters_and_read_their_replies() {
    let account = source("account.py");
    let declared = signatures("org.flaskbb.Account");
    // `**_address()` is the member's address, as the methods that check a password take it.
    let address = account
        .split("def _address(")
        .nth(1)
        .and_then(|body| body.split("\ndef ").next())
        .unwrap();
    assert!(address.contains("{\"remote_addr\":"), "{address}");
    let mut checked = 0;
    for (list, after_call) in calls_of(&account, "account_call(") {
        let args = arguments(list);
        let Some(method) = args[0].strip_prefix('"').and_then(|m| m.strip_suffix('"')) else {
            // The definition (`def account_call(method: str, ...)`).
            continue;
        };
        let signature = declared
            .get(method)
            .unwrap_or_else(|| panic!("account.py calls {method}, which Account does not declare"));
        let sent: BTreeSet<&str> = args[1..]
            .iter()
            .map(|a| match a.split_once('=') {
                _ if *a == "**_address()" => "remote_addr",
                Some((name, _)) if !name.starts_with('*') => name.trim(),
                _ => panic!("account.py calls {method} with {a:?}, whose name cannot be read"),
            })
            .collect();
        for name in &sent {
            assert!(
                signature.parameters.iter().any(|(p, _)| p == name),
                "account.py sends {method} the parameter {name}, which it does not declare"
            );
        }
        for (p, optional) in &signature.parameters {
            assert!(
                *optional || sent.contains(p.as_str()),
                "account.py calls {method} without its parameter {p}"
            );
        }
        let read = after_call
            .strip_prefix("[\"")
            .or_else(|| after_call.strip_prefix(".get(\""))
            .and_then(|rest| rest.split('"').next());
        if let Some(field) = read {
            assert!(
                signature.replies.contains(field),
                "account.py reads {field} of {method}'s reply, which it does not answer"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} Account calls read");
}
