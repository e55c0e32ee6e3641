//! flaskbbd: FlaskBB's plugin hooks and authentication pipeline as a native daemon.
//!
//! A request flows one way, through these modules in this order:
//!
//! - [`runtime`] runs the daemon (`flaskbbd serve`): the socket, the signals, the
//!   watchdog, the registry poll, the drain;
//! - [`server`] accepts a connection and decodes a Varlink call (the protocol, its
//!   wire types and the client are the `flaskbbd-protocol` crate);
//! - [`daemon`], the core, holds what every request needs: the current
//!   [`generation`], the [`store`], the [`executor`], the counts of what it serves; it
//!   builds and swaps generations on reload, and knows nothing of its transport
//!   ([`admin`] is its part of the Admin interface, [`answer`] how a request ends);
//! - [`auth`] and [`events`] are FlaskBB's flows; each runs one [`request`] on the
//!   executor, with its context and the changes it will commit;
//! - a [`generation`] holds the chains of one reading of the [`config`]: each
//!   [`chain`] calls its impls in order ([`chain::order`]), built-ins ([`builtins`])
//!   and plugin instances ([`instance`], loaded by the [`loader`]) alike, in the
//!   daemon's process or in plugin hosts, one per library and sandbox ([`isolation`]); [`hook`]
//!   names the hooks (the table they come from is `flaskbbd-hooks`);
//! - the request commits once, to the [`store`] (FlaskBB's tables through diesel;
//!   [`password`] verifies and hashes; [`lockout`] says what the failure counts
//!   there mean);
//! - the server encodes the answer.
//!
//! Beside the path: [`metrics`] (what the daemon did, for Prometheus and `flaskbbd
//! status`), [`systemd`] (notify, socket activation, watchdog), [`process`] (the
//! daemon's uid and open-files limit), [`proto`]
//! (conversions between the wire types and the plugin ABI's), [`files`] (the
//! daemon's files, private whatever the umask), [`cli`] (the `flaskbbd`
//! command), and [`embed`], the only part other crates use (the benchmarks).
//!
//! `docs/architecture.md` walks through the same picture, and says where a new hook,
//! built-in, plugin or Varlink method goes.

pub(crate) mod account;
pub(crate) mod admin;
pub(crate) mod answer;
pub(crate) mod auth;
pub(crate) mod builtins;
pub(crate) mod chain;
pub mod cli;
pub(crate) mod config;
pub(crate) mod daemon;
#[cfg(test)]
mod doc_gate;
pub mod embed;
pub(crate) mod events;
pub(crate) mod executor;
pub(crate) mod files;
pub(crate) mod generation;
pub(crate) mod hook;
pub(crate) mod instance;
pub(crate) mod ipc;
pub(crate) mod isolation;
#[cfg(test)]
mod layers;
#[cfg(test)]
mod lengths;
pub(crate) mod loader;
pub(crate) mod lockout;
pub(crate) mod metrics;
pub(crate) mod passkey;
pub(crate) mod password;
pub(crate) mod pending;
pub(crate) mod process;
pub(crate) mod proto;
pub(crate) mod request;
pub(crate) mod runtime;
pub(crate) mod second_factor;
pub(crate) mod server;
#[cfg(test)]
mod sources;
pub(crate) mod store;
pub(crate) mod systemd;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod webauthn;
