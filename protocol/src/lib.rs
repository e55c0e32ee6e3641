//! flaskbbd's Varlink protocol, apart from the daemon so that it can be fuzzed,
//! benchmarked and reused on its own:
//!
//! - [`wire`] frames messages (NUL-terminated JSON), decodes calls and encodes replies;
//! - [`methods`] turns a decoded call into one typed [`methods::Method`], or the
//!   Varlink error naming what is wrong with it;
//! - [`fuzzing`] is the fuzz body: all of the above on an arbitrary byte stream;
//! - [`replies`] types what the methods answer and names every error;
//! - [`types`] holds the values the interfaces carry (users, posts, topics, chains);
//! - [`client`] is a blocking client that speaks all of the above over a socket, for
//!   the CLI, the tests and the benchmarks;
//! - [`INTERFACES`] are the Varlink interface descriptions (`varlink/*.varlink`).
//!
//! Apart from [`client`], nothing here touches a socket, a database or a plugin: every
//! function is pure and total (bad input is an error value, never a panic).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod fuzzing;
pub mod methods;
pub mod passkey;
pub mod replies;
pub mod types;
pub mod wire;

/// The interfaces flaskbbd provides, with their Varlink descriptions (what
/// `org.varlink.service.GetInterfaceDescription` answers).
pub const INTERFACES: &[(&str, &str)] = &[
    (
        "org.varlink.service",
        include_str!("../varlink/org.varlink.service.varlink"),
    ),
    (
        methods::AUTH,
        include_str!("../varlink/org.flaskbb.Auth.varlink"),
    ),
    (
        methods::EVENTS,
        include_str!("../varlink/org.flaskbb.Events.varlink"),
    ),
    (
        methods::ADMIN,
        include_str!("../varlink/org.flaskbb.Admin.varlink"),
    ),
    (
        methods::ACCOUNT,
        include_str!("../varlink/org.flaskbb.Account.varlink"),
    ),
];
