//! `hello`: the template plugin. After every successful authentication it logs a
//! greeting, and it refuses users listed in its configuration.
//!
//! ```toml
//! [[plugin]]
//! name = "hello"
//! library = "hello"
//! config = { greeting = "Welcome back", refuse = ["mallory"] }
//! ```

#![forbid(unsafe_code)]

use plugin_abi::prelude::*;
use serde::Deserialize;

/// The instance's configuration (`config` in flaskbb.toml).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_greeting")]
    greeting: String,
    #[serde(default)]
    refuse: Vec<String>,
}

fn default_greeting() -> String {
    "Hello".into()
}

/// One configured instance.
pub struct Hello {
    config: Config,
}

impl PluginInstance for Hello {
    fn new(init: &Init) -> Result<Self, String> {
        Ok(Hello {
            config: init.config()?,
        })
    }
}

impl PostAuthenticationHandler for Hello {
    fn handle_post_auth(&self, cx: &Ctx<'_>, user: &User) -> HookResult<()> {
        if self
            .config
            .refuse
            .iter()
            .any(|u| u == user.username.as_str())
        {
            return Err(HookError::stop("This account may not log in here."));
        }
        cx.info(&format!("{}, {}!", self.config.greeting, user.username));
        Ok(())
    }
}

export_plugin! {
    plugin: Hello,
    name: "hello",
    description: "Greets every user who logs in; refuses the ones it is told to",
    hooks: [PostAuthenticationHandler],
}

#[cfg(test)]
mod tests {
    use plugin_abi::testing::TestHost;

    use super::*;

    fn hello(refuse: &[&str]) -> Hello {
        Hello {
            config: Config {
                greeting: "Welcome back".into(),
                refuse: refuse.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    #[test]
    fn greets_through_the_log() {
        let host = TestHost::new("hello");
        hello(&[])
            .handle_post_auth(&host.ctx(), &TestHost::user(1, "ann"))
            .unwrap();
        assert_eq!(host.logs(), ["INFO Welcome back, ann!"]);
    }

    #[test]
    fn refuses_listed_users() {
        let host = TestHost::new("hello");
        let r = hello(&["mallory"]).handle_post_auth(&host.ctx(), &TestHost::user(2, "mallory"));
        assert_eq!(r, Err(HookError::stop("This account may not log in here.")));
        assert!(host.logs().is_empty());
    }
}
