//! The fuzz body: what the server does with the bytes a peer sends, up to the point
//! where a typed [`Method`] would be handed to a handler, with the protocol's
//! invariants checked on the way. The libFuzzer target in `fuzz/`, its replay of the
//! corpus and every regression test run this same function, so a crash found by the
//! fuzzer is reproduced by `cargo test`.

// The fuzz body checks invariants by panicking: a panic here is what the fuzzer reports.
#![allow(clippy::expect_used, clippy::panic)]

use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

use serde_json::Value;

use crate::{
    methods::{decode_event, parse, AdminCall, Method},
    wire::{decode, errors, read_message, Reply},
};

/// The message size limit the fuzz body reads with (small, so that the fuzzer reaches
/// the limit too).
pub const FUZZ_MAX_MESSAGE: usize = 4096;

/// Reads `data` as one connection's byte stream and handles every message in it:
/// framing, decoding, parameter parsing. Panics (which the fuzzer reports) only when a
/// protocol invariant breaks:
///
/// - a message read never holds a NUL and never exceeds the limit;
/// - every error reply is one well-formed Varlink message naming a known error;
/// - a decoded call, encoded again, decodes to the same call (interface, method,
///   parameters, oneway);
/// - reading stops at the first fatal error, as the server closes the connection.
pub fn handle_stream(data: &[u8]) {
    let mut reader = data;
    let mut buf = Vec::new();
    loop {
        let read = poll_ready(read_message(&mut reader, &mut buf, FUZZ_MAX_MESSAGE));
        match read {
            Ok(false) => return,
            Ok(true) => {}
            // Too large or cut off: the server answers (too large) or drops the
            // connection; nothing more is read either way.
            Err(_) => return,
        }
        assert!(buf.len() <= FUZZ_MAX_MESSAGE, "a message over the limit");
        assert!(!buf.contains(&0), "a NUL inside a message");
        let fast =
            decode_event(&buf).map(|(call, oneway)| (call.method(), call.parameters(), oneway));
        match decode(&buf) {
            Ok(call) => {
                let again = serde_json::json!({
                    "method": format!("{}.{}", call.interface, call.method),
                    "parameters": call.parameters,
                    "oneway": call.oneway,
                });
                let again = decode(&serde_json::to_vec(&again).expect("a value encodes"))
                    .expect("a decoded call decodes again");
                assert_eq!(
                    (
                        &again.interface,
                        &again.method,
                        &again.parameters,
                        again.oneway
                    ),
                    (&call.interface, &call.method, &call.parameters, call.oneway)
                );
                let oneway = call.oneway;
                match parse(call) {
                    Ok(method) => {
                        check_method(&method);
                        if let Some(fast) = fast {
                            let Method::Events(slow) = method else {
                                panic!("the fast path read an event the full parse did not")
                            };
                            assert_eq!(
                                fast,
                                (slow.method(), slow.parameters(), oneway),
                                "the fast path read an event otherwise than the full parse"
                            );
                        }
                    }
                    Err(reply) => {
                        assert!(
                            fast.is_none(),
                            "the fast path took an event the full parse refused"
                        );
                        check_reply(&reply);
                    }
                }
            }
            Err(bad) => {
                assert!(
                    fast.is_none(),
                    "the fast path took a message decode refused"
                );
                check_reply(&bad.reply);
                if bad.fatal {
                    return;
                }
            }
        }
    }
}

/// A parsed method upholds what the handlers rely on.
fn check_method(method: &Method) {
    if let Method::Admin(AdminCall::CreateUser {
        username, email, ..
    }) = method
    {
        assert!(!username.trim().is_empty() && !username.contains('\0'));
        assert!(email.contains('@') && !email.contains('\0'));
    }
}

/// An error reply is one NUL-terminated JSON object with an error name the protocol
/// defines and object parameters.
fn check_reply(reply: &Reply) {
    let bytes = reply.encode();
    assert_eq!(bytes.last(), Some(&0), "a reply ends in NUL");
    assert!(
        !bytes[..bytes.len() - 1].contains(&0),
        "a reply has one NUL"
    );
    let v: Value = serde_json::from_slice(&bytes[..bytes.len() - 1]).expect("a reply is JSON");
    let name = v["error"].as_str().expect("an error reply names its error");
    let known = [
        errors::INTERFACE_NOT_FOUND,
        errors::METHOD_NOT_FOUND,
        errors::INVALID_PARAMETER,
    ];
    assert!(known.contains(&name), "unexpected error {name}");
    assert!(
        v["parameters"].is_object(),
        "error parameters are an object"
    );
}

/// Runs a future that never waits (reading from a byte slice) to its end.
fn poll_ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    match f.as_mut().poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("reading from a byte slice never waits"),
    }
}
