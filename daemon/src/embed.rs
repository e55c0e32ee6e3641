//! flaskbbd in-process, for programs that measure or embed its parts without the
//! daemon (the benchmarks do): the chains one configuration file builds, called
//! without a socket, and the password engines. The daemon's own modules are private;
//! this is the surface other crates may rely on.

use std::{path::Path, sync::Arc};

pub use crate::events::{EventAnswer, EventError};
pub use crate::password::{lanes::DEFAULT_LANES, libxcrypt_crypt, Engine, PasswordError, Verifier};
pub use flaskbbd_protocol::{
    methods::EventCall,
    types::{Context, HookChain},
};

use crate::{config::Config, generation::Generation, loader::Loader, store::Store};

/// The chains of one configuration, built as the daemon builds them at start
/// (plugins loaded, `plugin_registry` states applied), and its store.
pub struct Chains {
    generation: Generation,
    store: Arc<dyn Store>,
}

/// One request's state: its context, and the changes it queues for its commit.
pub struct Request(Arc<crate::request::Request>);

impl Chains {
    /// Reads the `flaskbb.toml` at `config`, opens (and migrates) its store, and
    /// builds its chains. The error says what failed, as `flaskbbd check` would.
    pub fn load(config: &Path) -> Result<Chains, String> {
        let config = Arc::new(Config::load(config).map_err(|e| e.to_string())?);
        let store = crate::store::open(
            &config.database.url,
            config.database.schema,
            &config.base_dir,
            config.database.connect_timeout(),
        )
        .map_err(|e| format!("database: {e}"))?;
        let verifier = Arc::new(Verifier::new(config.auth.bcrypt_cost).map_err(|e| e.to_string())?);
        let generation = crate::daemon::build_generation(
            1,
            config.clone(),
            &Loader::with_cache(config.plugins.cache_dir.clone()),
            &*store,
            verifier,
        )
        .map_err(|e| e.to_string())?;
        Ok(Chains { generation, store })
    }

    /// Makes isolated instances' plugin hosts run `program` (the `flaskbbd` binary)
    /// instead of this process's own binary, which has no host mode. Call it before
    /// [`Chains::load`]; the first call wins.
    pub fn set_plugin_host_program(program: std::path::PathBuf) {
        crate::isolation::supervisor::set_host_program(program);
    }

    /// A request with `context`, for one or more calls.
    pub fn request(&self, context: Context) -> Request {
        Request(crate::request::Request::new(self.store.clone(), context))
    }

    /// Fires an event as `org.flaskbb.Events` does (its chain, then the request's
    /// commit), in this thread, with no timeout.
    pub fn fire(&self, req: &Request, call: EventCall) -> Result<EventAnswer, EventError> {
        crate::events::fire(&self.generation, &req.0, call)
    }

    /// Every chain in call order, as `flaskbbd hooks` shows them.
    pub fn describe(&self) -> Vec<HookChain> {
        self.generation.describe()
    }
}
