//! `ratelimit`: a penalty per remote address (the request context's `remote_addr`),
//! as Dovecot's auth penalty: after `free_failures` failed logins from an address,
//! every answer to it is held back by a delay that doubles with each further failure
//! up to `max_delay_ms`; past `refuse_after` failures the address is refused outright.
//! A successful login clears the address; failures older than `window_seconds` are
//! forgotten.
//!
//! The delay is applied by the daemon after the chain, on its async side
//! (`Ctx::delay_answer`): a penalised address never holds a worker thread. Counts live
//! in the store (`Ctx::add_penalty`), so every daemon on a shared database sees the
//! same ones, and restarts and reloads forget nothing. Addresses are counted as
//! `address_bucket` groups them: IPv6 by /64.

#![forbid(unsafe_code)]

use std::time::Duration;

use plugin_abi::{prelude::*, sdk::address_bucket};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    free_failures: u32,
    base_delay_ms: u64,
    max_delay_ms: u64,
    refuse_after: u32,
    window_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            free_failures: 1,
            base_delay_ms: 2000,
            // Below the forum bridge's FLASKBBD_TIMEOUT (10 s), so that the longest
            // delay reaches the member as a slow answer, not as "unavailable".
            max_delay_ms: 8_000,
            refuse_after: 20,
            window_seconds: 900,
        }
    }
}

/// The message for a refused address.
pub const REFUSED: &str = "Too many failed login attempts from your address. Try again later.";

/// One configured instance.
pub struct RateLimit {
    config: Config,
}

impl PluginInstance for RateLimit {
    fn new(init: &Init) -> Result<Self, String> {
        let config: Config = init.config()?;
        if config.refuse_after <= config.free_failures {
            return Err(
                "config keys refuse_after and free_failures: refuse_after must be larger".into(),
            );
        }
        if config.window_seconds == 0 {
            return Err("config key window_seconds: must be at least 1".into());
        }
        Ok(RateLimit { config })
    }
}

impl RateLimit {
    /// The penalty after `failures` failed logins: the delay and whether to refuse.
    pub fn penalty(&self, failures: u32) -> (Duration, bool) {
        let c = &self.config;
        if failures >= c.refuse_after {
            return (Duration::ZERO, true);
        }
        if failures <= c.free_failures || c.base_delay_ms == 0 {
            return (Duration::ZERO, false);
        }
        let doublings = (failures - c.free_failures - 1).min(20);
        (
            Duration::from_millis((c.base_delay_ms << doublings).min(c.max_delay_ms)),
            false,
        )
    }
}

/// The request's client, as counted.
fn client(cx: &Ctx<'_>) -> Option<String> {
    cx.context("remote_addr").map(|a| address_bucket(&a))
}

impl AuthenticationProvider for RateLimit {
    const ORDER: HookOrder = HookOrder::TRYFIRST;

    fn authenticate(
        &self,
        cx: &Ctx<'_>,
        _identifier: &str,
        _secret: &str,
    ) -> HookResult<Option<User>> {
        let Some(addr) = client(cx) else {
            return Ok(None);
        };
        let (delay, refuse) = self.penalty(cx.penalty(&addr)?);
        if refuse {
            return Err(HookError::stop(REFUSED));
        }
        if !delay.is_zero() {
            cx.delay_answer(delay.as_millis() as u64);
        }
        Ok(None)
    }
}

impl AuthenticationFailureHandler for RateLimit {
    fn handle_authentication_failure(&self, cx: &Ctx<'_>, _identifier: &str) -> HookResult<()> {
        match client(cx) {
            Some(addr) => cx.add_penalty(&addr, Duration::from_secs(self.config.window_seconds)),
            None => Ok(()),
        }
    }
}

impl PostAuthenticationHandler for RateLimit {
    const ORDER: HookOrder = HookOrder::TRYLAST;

    fn handle_post_auth(&self, cx: &Ctx<'_>, _user: &User) -> HookResult<()> {
        match client(cx) {
            Some(addr) => cx.clear_penalty(&addr),
            None => Ok(()),
        }
    }
}

export_plugin! {
    plugin: RateLimit,
    name: "ratelimit",
    description: "Per-address penalty for failed logins: growing delays, then refusal",
    hooks: [AuthenticationProvider, AuthenticationFailureHandler, PostAuthenticationHandler],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_penalty_doubles_up_to_the_maximum_then_refuses() {
        let r = RateLimit {
            config: Config::default(),
        };
        let ms = |n| r.penalty(n).0.as_millis();
        assert_eq!(
            [ms(0), ms(1), ms(2), ms(3), ms(4), ms(5), ms(19)],
            [0, 0, 2000, 4000, 8000, 8000, 8000]
        );
        assert!(!r.penalty(19).1);
        assert!(r.penalty(20).1);
    }
}
