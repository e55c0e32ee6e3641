//! An in-memory host for unit-testing a plugin's hooks without a daemon:
//!
//! ```
//! use plugin_abi::{prelude::*, testing::TestHost};
//!
//! struct Deny;
//! impl PostAuthenticationHandler for Deny {
//!     fn handle_post_auth(&self, cx: &Ctx<'_>, _user: &User) -> HookResult<()> {
//!         match cx.context("remote_addr").as_deref() {
//!             Some("192.0.2.66") => Err(HookError::stop("Not from there.")),
//!             _ => Ok(()),
//!         }
//!     }
//! }
//!
//! let host = TestHost::new("deny").with_context("remote_addr", "192.0.2.66");
//! let user = TestHost::user(1, "ann");
//! assert_eq!(Deny.handle_post_auth(&host.ctx(), &user), Err(HookError::stop("Not from there.")));
//! ```

use std::{
    collections::BTreeMap,
    sync::{Mutex, PoisonError},
};

use abi_stable::{
    erased_types::TD_Opaque,
    std_types::{ROk, ROption, RResult, RStr, RString, RVec, Tuple2},
};

use crate::{
    abi::{ErrorBox, Host, Host_TO, LogLevel, User},
    sdk::{Ctx, Init, PluginInstance},
};

/// A host whose users, request context and key-value store live in memory, and which
/// records what the plugin logs.
pub struct TestHost {
    instance: String,
    config_json: String,
    context: BTreeMap<String, String>,
    users: Mutex<Vec<User>>,
    store: Mutex<BTreeMap<String, String>>,
    logs: Mutex<Vec<String>>,
    delay_ms: Mutex<u64>,
    asked: Mutex<Vec<String>>,
    /// Penalty counts: key → (failures, when the last was counted, its window).
    penalties: Mutex<BTreeMap<String, (u32, std::time::Instant, u64)>>,
}

impl TestHost {
    /// A host for the instance `instance`, with no users, context or stored values.
    pub fn new(instance: &str) -> TestHost {
        TestHost {
            instance: instance.into(),
            config_json: "{}".into(),
            context: BTreeMap::new(),
            users: Mutex::default(),
            store: Mutex::default(),
            logs: Mutex::default(),
            delay_ms: Mutex::new(0),
            asked: Mutex::default(),
            penalties: Mutex::default(),
        }
    }

    /// The instance's configuration (its `config` table in `flaskbb.toml`, as JSON).
    pub fn with_config(mut self, config: serde_json::Value) -> TestHost {
        self.config_json = config.to_string();
        self
    }

    /// Makes an instance of `P` as the daemon does, named after this host's instance
    /// and from its configuration ([`TestHost::with_config`]); relative paths resolve
    /// against the current directory.
    pub fn instance<P: PluginInstance>(&self) -> Result<P, String> {
        P::new(&Init::new(&self.instance, &self.config_json, "."))
    }

    /// Adds a request-context entry.
    pub fn with_context(mut self, key: &str, value: &str) -> TestHost {
        self.context.insert(key.into(), value.into());
        self
    }

    /// Adds a user that `find_user` can find.
    pub fn with_user(self, user: User) -> TestHost {
        self.users
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(user);
        self
    }

    /// Sets a key-value store entry.
    pub fn with_stored(self, key: &str, value: &str) -> TestHost {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.into(), value.into());
        self
    }

    /// An activated Member with `id` and `username`.
    pub fn user(id: i64, username: &str) -> User {
        User {
            id,
            username: username.into(),
            email: format!("{username}@example.org").into(),
            activated: true,
            login_attempts: 0,
            last_failed_login: ROption::RNone,
            date_joined: "2024-01-01T00:00:00Z".into(),
            primary_group_id: ROption::RSome(4),
            groups: RVec::from(vec![RString::from("Member")]),
            banned: false,
        }
    }

    /// The `Ctx` a hook receives, backed by this host.
    pub fn ctx(&self) -> Ctx<'_> {
        Ctx::new(Host_TO::from_ptr(self, TD_Opaque))
    }

    /// What the plugin logged, as `LEVEL message`.
    pub fn logs(&self) -> Vec<String> {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A key-value store entry.
    pub fn stored(&self, key: &str) -> Option<String> {
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// The answer delay the plugin asked for.
    pub fn delay_ms(&self) -> u64 {
        *self.delay_ms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The context keys the plugin asked the client for (`Ctx::ask_for`), in order.
    pub fn asked(&self) -> Vec<String> {
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Host for TestHost {
    fn instance_name(&self) -> RString {
        self.instance.as_str().into()
    }
    fn log(&self, level: LogLevel, message: RStr<'_>) {
        let l = match level {
            LogLevel::ERROR => "ERROR",
            LogLevel::WARN => "WARN",
            LogLevel::DEBUG => "DEBUG",
            _ => "INFO",
        };
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("{l} {message}"));
    }
    fn find_user(&self, identifier: RStr<'_>) -> RResult<ROption<User>, ErrorBox> {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        ROk(users
            .iter()
            .find(|u| u.username == identifier || u.email == identifier)
            .cloned()
            .into())
    }
    fn find_user_by_id(&self, id: i64) -> RResult<ROption<User>, ErrorBox> {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        ROk(users.iter().find(|u| u.id == id).cloned().into())
    }
    fn context(&self, key: RStr<'_>) -> ROption<RString> {
        self.context
            .get(key.as_str())
            .map(|v| RString::from(v.as_str()))
            .into()
    }
    fn context_all(&self) -> RVec<Tuple2<RString, RString>> {
        self.context
            .iter()
            .map(|(k, v)| Tuple2(k.as_str().into(), v.as_str().into()))
            .collect()
    }
    fn config_json(&self) -> RString {
        self.config_json.as_str().into()
    }
    fn store_get(&self, key: RStr<'_>) -> RResult<ROption<RString>, ErrorBox> {
        ROk(self.stored(key.as_str()).map(RString::from).into())
    }
    fn store_set(&self, key: RStr<'_>, value: ROption<RStr<'_>>) -> RResult<(), ErrorBox> {
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        match value {
            ROption::RSome(v) => store.insert(key.to_string(), v.to_string()),
            ROption::RNone => store.remove(key.as_str()),
        };
        ROk(())
    }
    fn store_swap(
        &self,
        key: RStr<'_>,
        expected: ROption<RStr<'_>>,
        value: ROption<RStr<'_>>,
    ) -> RResult<bool, ErrorBox> {
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        if store.get(key.as_str()).map(String::as_str) != expected.map(|e| e.as_str()).into_option()
        {
            return ROk(false);
        }
        match value {
            ROption::RSome(v) => store.insert(key.to_string(), v.to_string()),
            ROption::RNone => store.remove(key.as_str()),
        };
        ROk(true)
    }
    fn provision_user(&self, username: RStr<'_>, email: RStr<'_>) -> RResult<User, ErrorBox> {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(u) = users.iter().find(|u| u.username == username) {
            return ROk(u.clone());
        }
        let id = users.iter().map(|u| u.id).max().unwrap_or(0) + 1;
        let mut u = TestHost::user(id, username.as_str());
        u.email = email.into();
        users.push(u.clone());
        ROk(u)
    }
    fn delay_answer(&self, ms: u64) {
        let mut d = self.delay_ms.lock().unwrap_or_else(PoisonError::into_inner);
        *d = (*d).max(ms);
    }
    fn ask_for(&self, key: RStr<'_>) {
        let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        if !asked.iter().any(|k| k == key.as_str()) {
            asked.push(key.to_string());
        }
    }
    // Counted at once: a test host has no commit.
    fn penalty_get(&self, key: RStr<'_>) -> RResult<u32, ErrorBox> {
        let p = self
            .penalties
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ROk(p
            .get(key.as_str())
            .filter(|(_, last, window)| last.elapsed().as_millis() < u128::from(*window))
            .map_or(0, |(n, _, _)| *n))
    }
    fn penalty_add(&self, key: RStr<'_>, window_ms: u64) -> RResult<(), ErrorBox> {
        let mut p = self
            .penalties
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let now = std::time::Instant::now();
        let e = p.entry(key.to_string()).or_insert((0, now, window_ms));
        if e.1.elapsed().as_millis() >= u128::from(e.2) {
            e.0 = 0;
        }
        *e = (e.0 + 1, now, window_ms);
        ROk(())
    }
    fn penalty_clear(&self, key: RStr<'_>) -> RResult<(), ErrorBox> {
        let mut p = self
            .penalties
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        p.remove(key.as_str());
        ROk(())
    }
}
