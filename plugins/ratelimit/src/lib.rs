//! `ratelimit`: a penalty per remote address (the request context's `remote_addr`),
//! as Dovecot's auth penalty: after `free_failures` failed logins from an address,
//! every answer to it is held back by a delay that doubles with each further failure
//! up to `max_delay_ms`; past `refuse_after` failures the address is refused outright.
//! A successful login clears the address; failures older than `window_seconds` are
//! forgotten.
//!
//! The delay is applied by the daemon after the chain, on its async side
//! (`Ctx::delay_answer`): a penalised address never holds a worker thread. Counts
//! live in the daemon's memory and start afresh on restart or reload.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use plugin_abi::prelude::*;
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
            max_delay_ms: 15_000,
            refuse_after: 20,
            window_seconds: 900,
        }
    }
}

/// The message for a refused address.
pub const REFUSED: &str = "Too many failed login attempts from your address. Try again later.";

#[derive(Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
}

/// One configured instance.
pub struct RateLimit {
    config: Config,
    addresses: Mutex<HashMap<String, Entry>>,
}

impl PluginInstance for RateLimit {
    fn new(init: &Init) -> Result<Self, String> {
        let config: Config = init.config()?;
        if config.refuse_after <= config.free_failures {
            return Err(
                "config keys refuse_after and free_failures: refuse_after must be larger".into(),
            );
        }
        Ok(RateLimit {
            config,
            addresses: Mutex::new(HashMap::new()),
        })
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

    fn failures(&self, addr: &str) -> u32 {
        let window = Duration::from_secs(self.config.window_seconds);
        let map = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        map.get(addr)
            .filter(|e| e.last.elapsed() < window)
            .map_or(0, |e| e.failures)
    }
}

impl AuthenticationProvider for RateLimit {
    const ORDER: HookOrder = HookOrder::TRYFIRST;

    fn authenticate(
        &self,
        cx: &Ctx<'_>,
        _identifier: &str,
        _secret: &str,
    ) -> HookResult<Option<User>> {
        let Some(addr) = cx.context("remote_addr") else {
            return Ok(None);
        };
        let (delay, refuse) = self.penalty(self.failures(&addr));
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
        let Some(addr) = cx.context("remote_addr") else {
            return Ok(());
        };
        let window = Duration::from_secs(self.config.window_seconds);
        let mut map = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, e| e.last.elapsed() < window);
        }
        let now = Instant::now();
        let e = map.entry(addr).or_insert(Entry {
            failures: 0,
            last: now,
        });
        if e.last.elapsed() >= window {
            e.failures = 0;
        }
        e.failures += 1;
        e.last = now;
        Ok(())
    }
}

impl PostAuthenticationHandler for RateLimit {
    const ORDER: HookOrder = HookOrder::TRYLAST;

    fn handle_post_auth(&self, cx: &Ctx<'_>, _user: &User) -> HookResult<()> {
        if let Some(addr) = cx.context("remote_addr") {
            self.addresses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&addr);
        }
        Ok(())
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
            addresses: Mutex::new(HashMap::new()),
        };
        let ms = |n| r.penalty(n).0.as_millis();
        assert_eq!(
            [ms(0), ms(1), ms(2), ms(3), ms(4), ms(5), ms(19)],
            [0, 0, 2000, 4000, 8000, 15000, 15000]
        );
        assert!(!r.penalty(19).1);
        assert!(r.penalty(20).1);
    }
}
