//! Request parsing as a table: each call and the reply (or method) it parses to.

// Test code: a failure here should stop the test loudly, and panic! is how its
// helpers say so (the workspace denies panic! in the daemon and plugins).
#![allow(clippy::panic)]

use flaskbbd_protocol::{
    methods::{parse, AdminCall, AuthCall, EventCall, Method, ServiceCall},
    wire::{decode, Reply},
};
use serde_json::Value;

/// A method's name, or an error and the parameter (interface, method) it names.
type Outcome = Result<&'static str, (String, String)>;

/// Decodes and parses `message`.
fn outcome(message: &str) -> Outcome {
    let call = decode(message.as_bytes()).map_err(|b| named(&b.reply))?;
    match parse(call) {
        Ok(m) => Ok(match m {
            Method::Service(ServiceCall::GetInfo) => "GetInfo",
            Method::Auth(AuthCall::Authenticate { .. }) => "Authenticate",
            Method::Auth(AuthCall::Reauthenticate { .. }) => "Reauthenticate",
            Method::Admin(AdminCall::CreateUser { .. }) => "CreateUser",
            Method::Events(EventCall::PostSaveBefore { .. }) => "PostSaveBefore",
            _ => "other",
        }),
        Err(r) => Err(named(&r)),
    }
}

fn named(r: &Reply) -> (String, String) {
    let Reply::Err { error, parameters } = r else {
        panic!("not an error: {r:?}")
    };
    let p = ["parameter", "interface", "method"]
        .iter()
        .find_map(|k| parameters[*k].as_str())
        .unwrap_or("");
    (error.clone(), p.to_owned())
}

fn invalid(p: &str) -> Outcome {
    Err(("org.varlink.service.InvalidParameter".into(), p.into()))
}

#[test]
fn each_call_parses_to_its_method_or_the_error_naming_what_is_wrong() {
    let cases: &[(&str, Outcome)] = &[
        (r#"{"method":"org.varlink.service.GetInfo"}"#, Ok("GetInfo")),
        (
            r#"{"method":"org.varlink.service.GetInfo","parameters":{"x":1}}"#,
            invalid("x"),
        ),
        (
            r#"{"method":"org.flaskbb.Auth.Authenticate","parameters":{"identifier":"a","secret":"b","context":{"otp":"1"}}}"#,
            Ok("Authenticate"),
        ),
        (
            r#"{"method":"org.flaskbb.Auth.Authenticate","parameters":{"identifier":"a","secret":"b","context":{"otp":1}}}"#,
            invalid("context"),
        ),
        (
            r#"{"method":"org.flaskbb.Auth.Authenticate","parameters":{"identifier":null,"secret":"b"}}"#,
            invalid("identifier"),
        ),
        (
            r#"{"method":"org.flaskbb.Auth.Reauthenticate","parameters":{"user_id":1.5,"secret":"b"}}"#,
            invalid("user_id"),
        ),
        (
            r#"{"method":"org.flaskbb.Auth.Reauthenticate","parameters":{"user_id":-9223372036854775808,"secret":"b"}}"#,
            Ok("Reauthenticate"),
        ),
        (
            r#"{"method":"org.flaskbb.Auth.Reauthenticate","parameters":{"user_id":9223372036854775808,"secret":"b"}}"#,
            invalid("user_id"),
        ),
        (
            r#"{"method":"org.flaskbb.Events.PostSaveBefore","parameters":{"post":{"content":"x"}}}"#,
            Ok("PostSaveBefore"),
        ),
        (
            r#"{"method":"org.flaskbb.Events.PostSaveBefore","parameters":{"post":{"content":"x","extra":1}}}"#,
            invalid("post"),
        ),
        (
            r#"{"method":"org.flaskbb.Events.PostSaveAfter","parameters":{"post":{"content":"x"}}}"#,
            invalid("is_new"),
        ),
        (
            r#"{"method":"org.flaskbb.Admin.CreateUser","parameters":{"username":"a","email":"a@b","password":"p"}}"#,
            Ok("CreateUser"),
        ),
        (
            r#"{"method":"org.flaskbb.Admin.CreateUser","parameters":{"username":" ","email":"a@b","password":"p"}}"#,
            invalid("username"),
        ),
        (
            r#"{"method":"org.flaskbb.Admin.CreateUser","parameters":{"username":"a\u0000","email":"a@b","password":"p"}}"#,
            invalid("username"),
        ),
        (
            r#"{"method":"org.flaskbb.Admin.CreateUser","parameters":{"username":"a","email":"ab","password":"p"}}"#,
            invalid("email"),
        ),
        (
            r#"{"method":"org.flaskbb.Auth.Nope"}"#,
            Err((
                "org.varlink.service.MethodNotFound".into(),
                "org.flaskbb.Auth.Nope".into(),
            )),
        ),
        (
            r#"{"method":"org.example.Nope.Call"}"#,
            Err((
                "org.varlink.service.InterfaceNotFound".into(),
                "org.example.Nope".into(),
            )),
        ),
        (r#"{"method":"NoDot"}"#, invalid("method")),
        (
            r#"{"method":"org.varlink.service.GetInfo","oneway":"yes"}"#,
            invalid("oneway"),
        ),
        (
            r#"{"method":"org.varlink.service.GetInfo","parameters":[]}"#,
            invalid("parameters"),
        ),
        (r#"[1]"#, invalid("message")),
        (r#"{"method":"#, invalid("message")),
    ];
    for (message, expected) in cases {
        assert_eq!(&outcome(message), expected, "{message}");
    }
}

#[test]
fn errors_encode_as_one_varlink_message() {
    let r = decode(b"\xff").unwrap_err();
    assert!(r.fatal);
    let bytes = r.reply.encode();
    assert_eq!(bytes.iter().filter(|b| **b == 0).count(), 1);
    let v: Value = serde_json::from_slice(&bytes[..bytes.len() - 1]).unwrap();
    assert_eq!(v["error"], "org.varlink.service.InvalidParameter");
}

/// The events fast path: a well-formed event call is read as the full parse reads it;
/// anything the full parse refuses, or might read otherwise, is left to it.
#[test]
fn the_event_fast_path_agrees_with_the_full_parse_or_stands_aside() {
    use flaskbbd_protocol::methods::decode_event;
    let taken = [
        r#"{"method":"org.flaskbb.Events.PostSaveBefore","parameters":{"post":{"content":"hi","user_id":2}}}"#,
        r#"{"parameters":{"post":{"content":"h\u00e9\n","id":1}},"method":"org.flaskbb.Events.PostSaveBefore","oneway":true}"#,
        r#"{"method":"org.flaskbb.Events.PostSaveBefore","parameters":{"post":{"content":""}},"more":null,"oneway":null,"upgrade":false,"extra":[1]}"#,
        r#" { "method" : "org.flaskbb.\u0045vents.TopicSaveAfter" , "parameters" : { "topic" : { "title" : "t" }, "is_new" : true } } "#,
    ];
    for m in taken {
        let (fast, oneway) = decode_event(m.as_bytes()).unwrap_or_else(|| panic!("not taken: {m}"));
        let call = decode(m.as_bytes()).unwrap();
        assert_eq!(oneway, call.oneway, "{m}");
        let Ok(Method::Events(slow)) = parse(call) else {
            panic!("not an event: {m}")
        };
        assert_eq!(
            (fast.method(), fast.parameters()),
            (slow.method(), slow.parameters()),
            "{m}"
        );
    }
    let left = [
        // Refused by the full parse: each gets its own error there.
        r#"{"method":"org.flaskbb.Events.PostSaveBefore","parameters":{"post":{"content":"hi"},"x":1}}"#,
        r#"{"method":"org.flaskbb.Events.PostSaveBefore","parameters":{"post":{"content":"hi","user_id":2.0}}}"#,
        r#"{"method":"org.flaskbb.Events.PostSaveBefore","parameters":{"post":null}}"#,
        r#"{"method":"org.flaskbb.Events.PostSaveBefore","parameters":[]}"#,
        r#"{"method":"org.flaskbb.Events.PostSaveBefore","parameters":{"post":{"content":"hi"}},"upgrade":true}"#,
        r#"{"method":"org.flaskbb.Events.PostSaveBefore","parameters":{"post":{"content":"hi"}},"oneway":1}"#,
        r#"{"method":"org.flaskbb.Events.NoSuchEvent","parameters":{}}"#,
        r#"{"method":"org.flaskbb.Events.PostSaveBefore"}"#,
        r#"{"method":"org.flaskbb.Events.PostSaveBefore","parameters":{"post":{"content":"hi"}}} x"#,
        // Read otherwise by the full parse (the last of a repeated key wins there).
        r#"{"method":"org.flaskbb.Events.PostSaveBefore","parameters":{"post":{"content":"a"},"post":{"content":"b"}}}"#,
        r#"{"method":"org.flaskbb.Auth.Authenticate","method":"org.flaskbb.Events.PostSaveBefore","parameters":{"post":{"content":"a"}}}"#,
        // Not events.
        r#"{"method":"org.flaskbb.Auth.Authenticate","parameters":{"identifier":"a","secret":"b"}}"#,
        r#"{"method":"org.varlink.service.GetInfo"}"#,
        "\u{ff}",
    ];
    for m in left {
        assert!(decode_event(m.as_bytes()).is_none(), "taken: {m}");
    }
}
