//! What the daemon's unit tests share: a scratch directory under `target/`, a
//! `flaskbb.toml` written there (built-ins only, bcrypt cost 4, SQLite in the
//! directory, plus whatever a test adds), its store and its generation.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use crate::{
    config::Config,
    generation::Generation,
    loader::Loader,
    password::Verifier,
    proto::Context,
    request::Request,
    store::{self, NewUser, Store},
};

/// A scratch directory, removed when dropped unless the test panicked.
pub(crate) struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub(crate) fn new(label: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/unit-test-runs")
            .join(format!(
                "{label}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A daemon's pieces, built in this process from `extra` after the test defaults.
pub(crate) struct Setup {
    /// Kept for its directory, removed with it.
    _scratch: Scratch,
    pub generation: Generation,
    pub store: Arc<dyn Store>,
}

impl Setup {
    pub(crate) fn new(label: &str, extra: &str) -> Setup {
        let scratch = Scratch::new(label);
        let path = scratch.dir.join("flaskbb.toml");
        let has_auth = extra.contains("[auth]");
        std::fs::write(
            &path,
            format!(
                "[database]\nurl = \"sqlite:///test.db\"\n{}{extra}",
                if has_auth {
                    ""
                } else {
                    "[auth]\nbcrypt_cost = 4\n"
                }
            ),
        )
        .unwrap();
        let config = Arc::new(Config::load(&path).unwrap());
        let store = store::open(
            &config.database.url,
            config.database.schema,
            &config.base_dir,
            config.database.connect_timeout(),
        )
        .unwrap();
        let verifier = Arc::new(Verifier::new(config.auth.bcrypt_cost).unwrap());
        let generation =
            Generation::build(1, config, &Loader::default(), verifier, &HashMap::new()).unwrap();
        Setup {
            _scratch: scratch,
            generation,
            store,
        }
    }

    /// A request with an empty context.
    pub(crate) fn request(&self) -> Arc<Request> {
        Request::new(self.store.clone(), Context::new())
    }

    /// A member with `password` (hashed as the daemon hashes), activated or not.
    pub(crate) fn user(&self, username: &str, password: &str, activated: bool) -> i64 {
        let hash = self.generation.verifier.hash(password).unwrap();
        self.store
            .create_user(&NewUser {
                username: username.into(),
                email: format!("{username}@example.org"),
                password_hash: Some(hash),
                activated,
                primary_group_id: store::MEMBER_GROUP,
            })
            .unwrap()
            .user
            .id
    }

    /// A user's failed-login counter, as stored.
    pub(crate) fn attempts(&self, username: &str) -> i32 {
        self.store
            .find_user(username)
            .unwrap()
            .unwrap()
            .user
            .login_attempts
    }
}
