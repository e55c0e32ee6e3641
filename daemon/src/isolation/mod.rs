//! Plugin instances in processes of their own (`isolation = "process"`).
//!
//! An isolated instance runs in a plugin host: this same binary started as
//! `flaskbbd plugin-host`, which loads the library with the same loader and checks,
//! confines itself ([`sandbox`]: no new privileges, a memory limit, landlock, a seccomp
//! filter) and makes the instance. The daemon never maps the library.
//!
//! - [`crate::ipc`] (beneath this module and `instance`): the frames and messages on
//!   the host's control channel and lanes, the lanes' shared pages, and the daemon's
//!   table of hook argument kinds;
//! - [`supervisor`] (daemon side): starts the host, hands each call a lane, serves the
//!   host API the plugin calls during a hook from the running request (the same code
//!   as for an in-process instance), notices a host's death, restarts it, backs off
//!   when it keeps dying, and kills it when a call runs past its timeout;
//! - [`hooks`] (daemon side): [`IsolatedHooks`], an isolated instance as a chain
//!   calls it: each hook sent to its host over a lane, its answer taken back;
//! - [`host`] (host side): the host process's main loop.
//!
//! A host serves its instance's calls concurrently, one thread per lane, so the
//! instance's own state (a rate limiter's counters) is shared as it is in-process.

pub(crate) mod hooks;
pub(crate) mod host;

pub(crate) mod sandbox;
pub(crate) mod supervisor;

pub(crate) use hooks::IsolatedHooks;
pub(crate) use supervisor::Supervisor;
