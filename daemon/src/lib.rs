//! flaskbbd: FlaskBB's plugin hooks and authentication pipeline as a native daemon.
//!
//! A request flows one way: the server decodes it, the auth or events manager hands it
//! to a chain of a generation, the chain calls built-ins and plugins, the store
//! commits, the server encodes the answer.
//!
//! - [`config`] reads `flaskbb.toml`.
//! - [`loader`] opens plugin libraries and checks their ABI.
//! - [`chain`] holds the ordering rules and the call loop; [`generation`] the chains of one reading of the config.
//! - [`instance`] puts built-ins and plugin instances behind one trait; [`builtins`] are FlaskBB's defaults.
//! - [`executor`] is the worker pool with per-call timeouts; [`request`] one request's state.
//! - [`store`] reaches FlaskBB's tables through diesel; [`password`] does bcrypt.
//! - [`auth`] and [`events`] are FlaskBB's flows over the chains.
//! - [`server`] speaks Varlink on a Unix socket (the protocol itself, and the client
//!   the CLI and tests use, are in `flaskbbd-protocol`).
//! - [`systemd`] speaks the notify protocol and takes activated sockets.
//! - [`proto`] holds the wire types shared by server, client and tests.

pub mod auth;
pub mod builtins;
pub mod chain;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod events;
pub mod executor;
pub mod generation;
pub mod hook;
pub mod instance;
pub mod loader;
pub mod password;
pub mod proto;
pub mod request;
pub mod server;
pub mod store;
pub mod systemd;
