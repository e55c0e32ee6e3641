//! A plugin generation: the instances made from one reading of `flaskbb.toml` and the
//! chains built from them. Built once (at start or reload), immutable afterwards; a
//! request holds one generation for its whole life.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    os::unix::fs::MetadataExt,
    sync::Arc,
};

use plugin_abi::abi::Tier;

use crate::{
    builtins,
    chain::{
        order::{self, ImplSpec},
        Chain, Entry,
    },
    config::{Config, HookOverride, Isolation, PluginConfig},
    hook::Hook,
    instance::{Instance, Origin, PluginHooks},
    ipc::{self, Init, InitInstance, Sandbox},
    isolation::{sandbox, supervisor::Ready, IsolatedHooks, Supervisor},
    loader::{Library, Loader},
    password::Verifier,
    proto::{HookChain, PluginHost, PluginInfo},
};

/// One generation of instances and chains.
pub(crate) struct Generation {
    /// Its number, counted from 1 by the daemon.
    pub id: u64,
    /// The configuration it was built from.
    pub config: Arc<Config>,
    /// Verifies passwords with this configuration's bcrypt settings.
    pub verifier: Arc<Verifier>,
    chains: BTreeMap<Hook, Chain>,
    /// What each chain has cost lately, to choose where its next request runs.
    costs: BTreeMap<Hook, ChainCost>,
    plugins: Vec<PluginInfo>,
    /// The isolated instances' hosts, by instance name, with how far landlock got.
    hosts: Vec<(String, Arc<Supervisor>, String)>,
    /// The run-time enabled/disabled states this generation was built with.
    pub registry: HashMap<String, bool>,
}

/// A chain's recent cost: a moving average of how long its requests took, kept so
/// that a request whose chain has been short runs on the connection's own thread and
/// one whose chain has been long runs on the pool (see `executor`).
#[derive(Debug, Default)]
pub(crate) struct ChainCost {
    /// Nanoseconds, averaged over about the last eight requests; 0 before the first.
    average_ns: std::sync::atomic::AtomicU64,
}

impl ChainCost {
    /// A request through the chain took `took`.
    pub(crate) fn record(&self, took: std::time::Duration) {
        use std::sync::atomic::Ordering;
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let old = self.average_ns.load(Ordering::Relaxed);
        // A lost update between two threads only skews the average a little.
        let new = if old == 0 { ns } else { old - old / 8 + ns / 8 };
        self.average_ns.store(new.max(1), Ordering::Relaxed);
    }

    /// Whether requests have been shorter than `limit` lately. A chain never measured
    /// is not: its first request runs on the pool, and measures it.
    pub(crate) fn short(&self, limit: std::time::Duration) -> bool {
        let ns = self.average_ns.load(std::sync::atomic::Ordering::Relaxed);
        ns != 0 && u128::from(ns) < limit.as_nanos()
    }
}

/// Why a generation could not be built: every problem, one line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub(crate) struct BuildError(pub Vec<String>);

/// One hook an instance implements, with its default order (before overrides).
struct Decl {
    hook: String,
    tier: Tier,
    priority: i32,
    before: Vec<String>,
    after: Vec<String>,
    wrapper: bool,
}

impl Decl {
    fn plain(hook: &str, tier: Tier) -> Decl {
        Decl {
            hook: hook.into(),
            tier,
            priority: 0,
            before: vec![],
            after: vec![],
            wrapper: false,
        }
    }

    /// An isolated plugin's declaration, from the manifest its host sent.
    fn from_wire(d: &ipc::HookDecl) -> Decl {
        Decl {
            hook: d.hook.clone(),
            tier: Tier(d.tier),
            priority: d.priority,
            before: d.before.clone(),
            after: d.after.clone(),
            wrapper: d.wrapper,
        }
    }

    /// A plugin's declaration, from its manifest.
    fn from_manifest(d: &plugin_abi::abi::HookDecl) -> Decl {
        let list = |v: &abi_stable::std_types::RVec<abi_stable::std_types::RString>| {
            v.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        };
        Decl {
            hook: d.hook.to_string(),
            tier: d.tier,
            priority: d.priority,
            before: list(&d.before),
            after: list(&d.after),
            wrapper: d.wrapper,
        }
    }
}

struct Candidate {
    instance: Arc<Instance>,
    reg_index: usize,
    decls: Vec<Decl>,
    overrides: BTreeMap<String, HookOverride>,
}

impl Generation {
    /// Builds a generation: the built-ins, then the plugin instances, then every
    /// hook's chain. `enabled` holds the instances the operator enabled or disabled at
    /// run time (from `plugin_registry`); they win over `flaskbb.toml`. Every problem
    /// is reported, one line each, not just the first.
    pub(crate) fn build(
        id: u64,
        config: Arc<Config>,
        loader: &Loader,
        verifier: Arc<Verifier>,
        enabled: &HashMap<String, bool>,
    ) -> Result<Generation, BuildError> {
        let mut b = Builder {
            config: &config,
            enabled,
            candidates: Vec::new(),
            plugins: Vec::new(),
            hosts: Vec::new(),
            errors: Vec::new(),
        };
        b.builtins(&verifier);
        b.plugin_instances(loader);
        if !b.errors.is_empty() {
            return Err(BuildError(b.errors));
        }
        let chains = b.chains()?;
        let costs = chains.keys().map(|h| (*h, ChainCost::default())).collect();
        let (plugins, hosts) = (b.plugins, b.hosts);
        Ok(Generation {
            id,
            config,
            verifier,
            chains,
            costs,
            plugins,
            hosts,
            registry: enabled.clone(),
        })
    }
}

/// A generation being built: the instances made so far, what `ListPlugins` will
/// show, and the problems found.
/// A plugin instance as made: where it comes from, its hooks, what it declares.
type Made = (Origin, Box<dyn crate::instance::Hooks>, Vec<Decl>);

struct Builder<'a> {
    config: &'a Config,
    enabled: &'a HashMap<String, bool>,
    candidates: Vec<Candidate>,
    plugins: Vec<PluginInfo>,
    hosts: Vec<(String, Arc<Supervisor>, String)>,
    errors: Vec<String>,
}

impl Builder<'_> {
    /// Whether an instance is on: its run-time state if it has one, else `configured`.
    fn is_enabled(&self, name: &str, configured: bool) -> bool {
        self.enabled.get(name).copied().unwrap_or(configured)
    }

    /// Registers an instance (registration order is the order of these calls).
    fn register(
        &mut self,
        instance: Instance,
        decls: Vec<Decl>,
        overrides: BTreeMap<String, HookOverride>,
    ) {
        let reg_index = self.candidates.len();
        self.candidates.push(Candidate {
            instance: Arc::new(instance),
            reg_index,
            decls,
            overrides,
        });
    }

    /// Step 1: the built-ins, registered first, each unless its gate in `[auth]`, its
    /// `[builtins.<name>]` table or its run-time state turns it off.
    fn builtins(&mut self, verifier: &Arc<Verifier>) {
        for b in builtins::BUILTINS {
            let settings = self.config.builtins.get(b.name);
            let configured = settings.is_none_or(|s| s.enabled) && (b.gate)(self.config);
            let on = self.is_enabled(b.name, configured);
            self.plugins.push(PluginInfo {
                name: b.name.into(),
                origin: "builtin".into(),
                library: None,
                version: None,
                description: None,
                abi_version: None,
                enabled: on,
                hooks: b.hooks.iter().map(|(h, _)| h.name().to_string()).collect(),
                isolation: None,
                host: None,
            });
            if !on {
                continue;
            }
            let overrides = settings
                .map(|s| {
                    s.hooks
                        .iter()
                        .map(|(k, v)| (k.get_ref().clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            self.register(
                Instance {
                    name: b.name.into(),
                    origin: Origin::Builtin,
                    config_json: "{}".into(),
                    hooks: (b.make)(self.config, verifier),
                },
                b.hooks
                    .iter()
                    .map(|(h, t)| Decl::plain(h.name(), *t))
                    .collect(),
                overrides,
            );
        }
    }

    /// Step 2: one instance per enabled `[[plugin]]` table, in file order. Each
    /// library file is read and hashed once per build, however many instances use it;
    /// a later build (a reload) reads it again, to see a rebuilt file.
    fn plugin_instances(&mut self, loader: &Loader) {
        let mut by_path: HashMap<std::path::PathBuf, Arc<Library>> = HashMap::new();
        let mut hosted = self.start_hosts(loader);
        for p in &self.config.plugin {
            let name = p.name.get_ref().as_str();
            let mut info = PluginInfo {
                name: name.into(),
                origin: String::new(),
                library: Some(p.library.get_ref().clone()),
                version: None,
                description: None,
                abi_version: None,
                enabled: self.is_enabled(name, p.enabled),
                hooks: vec![],
                isolation: Some(p.isolation(&self.config.plugins).name().into()),
                host: None,
            };
            if info.enabled {
                let started = hosted.remove(name);
                if let Err(e) = self.plugin_instance(p, &mut info, loader, &mut by_path, started) {
                    self.errors.push(format!(
                        "instance {name:?} (line {}): {e}",
                        self.config.line_of(p.name.span().start)
                    ));
                }
            }
            self.plugins.push(info);
        }
    }

    /// Loads (or reuses) `p`'s library, makes the instance and registers it; an
    /// isolated one was made by its plugin host (`hosted`, from [`Builder::start_hosts`]).
    fn plugin_instance(
        &mut self,
        p: &PluginConfig,
        info: &mut PluginInfo,
        loader: &Loader,
        by_path: &mut HashMap<std::path::PathBuf, Arc<Library>>,
        hosted: Option<Result<Hosted, String>>,
    ) -> Result<(), String> {
        let config = self.config;
        let name = p.name.get_ref().as_str();
        let path = Loader::resolve(p.library.get_ref(), &config.plugins.dirs, &config.base_dir)
            .map_err(|e| e.to_string())?;
        let config_json = p.config_json();
        let (origin, hooks, decls): Made = match p.isolation(&config.plugins) {
            Isolation::None => self.in_process(p, info, loader, by_path, path, &config_json)?,
            Isolation::Process => self.isolated(name, info, hosted)?,
        };
        self.check_overrides(p, info, &decls);
        let overrides = p
            .hooks
            .iter()
            .map(|(k, v)| (k.get_ref().clone(), v.clone()))
            .collect();
        self.register(
            Instance {
                name: name.into(),
                origin,
                config_json,
                hooks,
            },
            decls,
            overrides,
        );
        Ok(())
    }

    /// An in-process instance of `p`: its library loaded (or reused from `by_path`),
    /// the instance made by its vtable.
    fn in_process(
        &mut self,
        p: &PluginConfig,
        info: &mut PluginInfo,
        loader: &Loader,
        by_path: &mut HashMap<std::path::PathBuf, Arc<Library>>,
        path: std::path::PathBuf,
        config_json: &str,
    ) -> Result<Made, String> {
        let config = self.config;
        let name = p.name.get_ref().as_str();
        let lib = match by_path.get(&path) {
            Some(lib) => lib.clone(),
            None => {
                let lib = loader.load(&path).map_err(|e| e.to_string())?;
                by_path.insert(path, lib.clone());
                lib
            }
        };
        let boxed = lib
            .instantiate(name, config_json, &config.base_dir)
            .map_err(|e| with_key_lines(config, p, &e.to_string()))?;
        let m = &lib.manifest;
        info.origin = lib.path.display().to_string();
        info.version = Some(m.version.to_string());
        info.description = Some(m.description.to_string());
        info.abi_version = Some(lib.abi_version.clone());
        info.hooks = m.hooks.iter().map(|d| d.hook.to_string()).collect();
        let decls = m
            .hooks
            .iter()
            .filter(|d| Hook::from_name(d.hook.as_str()).is_some())
            .map(Decl::from_manifest)
            .collect();
        Ok((
            Origin::Plugin(lib.clone()),
            Box::new(PluginHooks(boxed)),
            decls,
        ))
    }

    /// An isolated instance: made by its plugin host (`hosted`, from
    /// [`Builder::start_hosts`]).
    fn isolated(
        &mut self,
        name: &str,
        info: &mut PluginInfo,
        hosted: Option<Result<Hosted, String>>,
    ) -> Result<Made, String> {
        let Hosted {
            host: sup,
            ready,
            library,
            of,
        } = hosted
            .unwrap_or_else(|| Err("its plugin host was not started (an internal error)".into()))?;
        let m = &ready.manifest;
        info.origin = library.display().to_string();
        info.version = Some(m.version.clone());
        info.description = Some(m.description.clone());
        info.abi_version = Some(ready.abi_version.clone());
        info.hooks = m.hooks.iter().map(|d| d.hook.clone()).collect();
        let decls = m
            .hooks
            .iter()
            .filter(|d| Hook::from_name(&d.hook).is_some())
            .map(Decl::from_wire)
            .collect();
        self.hosts.push((name.into(), sup.clone(), ready.landlock));
        Ok((
            Origin::Isolated(library),
            Box::new(IsolatedHooks { host: sup, of }),
            decls,
        ))
    }

    /// Records an error for each hook `p` overrides that its library does not
    /// implement.
    fn check_overrides(&mut self, p: &PluginConfig, info: &PluginInfo, decls: &[Decl]) {
        let config = self.config;
        for hook in p.hooks.keys() {
            if !decls.iter().any(|d| &d.hook == hook.get_ref()) {
                self.errors.push(
                    config
                        .error_at(
                            hook.span(),
                            &format!("hooks.{}", hook.get_ref()),
                            &format!(
                                "instance {:?}: library {} does not implement this hook (it implements: {})",
                                p.name.get_ref(),
                                info.origin,
                                info.hooks.join(", ")
                            ),
                        )
                        .0,
                );
            }
        }
    }

    /// Starts the plugin hosts of the enabled isolated instances: one per library and
    /// sandbox, serving every instance that has both (each made with its own
    /// configuration), so that a chain through them crosses to one process. By
    /// instance name: its host and place in it, or why it has none.
    fn start_hosts(&self, loader: &Loader) -> HashMap<String, Result<Hosted, String>> {
        let config = self.config;
        let mut out = HashMap::new();
        let groups = self.host_groups(loader, &mut out);
        // Loading is not a hook call, but it must not wait forever either.
        let start_timeout =
            std::time::Duration::from_millis(config.daemon.hook_timeout_ms.max(10_000));
        for g in groups {
            start_host(config, g, start_timeout, &mut out);
        }
        out
    }

    /// The enabled isolated instances grouped by plugin host: one group per library
    /// and sandbox (an instance with `own_host` alone). An instance whose library
    /// cannot be staged goes to `out` with why.
    fn host_groups<'c>(
        &'c self,
        loader: &Loader,
        out: &mut HashMap<String, Result<Hosted, String>>,
    ) -> Vec<HostGroup<'c>> {
        let config = self.config;
        let mut groups: Vec<HostGroup<'_>> = Vec::new();
        for p in &config.plugin {
            let name = p.name.get_ref().as_str();
            if !self.is_enabled(name, p.enabled)
                || p.isolation(&config.plugins) != Isolation::Process
            {
                continue;
            }
            match stage_isolated(config, p, loader) {
                Err(e) => {
                    out.insert(name.to_owned(), Err(e));
                }
                Ok((staged, sandbox)) => {
                    let own = p.sandbox.as_ref().is_some_and(|s| s.get_ref().own_host);
                    let same = |g: &&mut HostGroup<'_>| {
                        !own && !g.own
                            && g.staged.path == staged.path
                            && g.staged.mapped == staged.mapped
                            && g.sandbox == sandbox
                    };
                    match groups.iter_mut().find(same) {
                        Some(g) => g.members.push(p),
                        None => groups.push(HostGroup {
                            staged,
                            sandbox,
                            own,
                            members: vec![p],
                        }),
                    }
                }
            }
        }
        groups
    }

    /// Step 3: every hook's chain in call order, from the registered instances'
    /// declarations and the configuration's overrides.
    fn chains(&self) -> Result<BTreeMap<Hook, Chain>, BuildError> {
        let known: HashSet<String> = self.config.known_instance_names().into_iter().collect();
        let by_name: HashMap<&str, &Candidate> = self
            .candidates
            .iter()
            .map(|c| (&*c.instance.name, c))
            .collect();
        let mut chains = BTreeMap::new();
        let mut errors = Vec::new();
        for hook in Hook::ALL {
            match order::order(hook.name(), self.specs(hook), &known) {
                Ok(ordered) => {
                    let entry = |s: &ImplSpec| {
                        Entry::new(
                            by_name[s.instance.as_str()].instance.clone(),
                            hook,
                            s.tier,
                            s.priority,
                        )
                    };
                    chains.insert(
                        hook,
                        Chain {
                            hook,
                            wrappers: ordered.wrappers.iter().map(entry).collect(),
                            impls: ordered.impls.iter().map(entry).collect(),
                        },
                    );
                }
                Err(e) => errors.push(format!("{}: {e}", self.config.path.display())),
            }
        }
        if errors.is_empty() {
            Ok(chains)
        } else {
            Err(BuildError(errors))
        }
    }

    /// The impls of `hook`, each with its declaration's order as overridden.
    fn specs(&self, hook: Hook) -> Vec<ImplSpec> {
        let mut specs = Vec::new();
        for c in &self.candidates {
            for d in c.decls.iter().filter(|d| d.hook == hook.name()) {
                let o = c.overrides.get(&d.hook).cloned().unwrap_or_default();
                if o.enabled == Some(false) {
                    continue;
                }
                let names =
                    |v: Vec<toml::Spanned<String>>| v.into_iter().map(|s| s.into_inner()).collect();
                specs.push(ImplSpec {
                    instance: c.instance.name.to_string(),
                    reg_index: c.reg_index,
                    tier: o
                        .tier
                        .as_ref()
                        .and_then(|t| Tier::from_name(t.get_ref()))
                        .unwrap_or(d.tier),
                    priority: o.priority.unwrap_or(d.priority),
                    before: o.before.map(names).unwrap_or_else(|| d.before.clone()),
                    after: o.after.map(names).unwrap_or_else(|| d.after.clone()),
                    wrapper: o.wrapper.unwrap_or(d.wrapper),
                });
            }
        }
        specs
    }
}

impl Generation {
    /// The chain of `hook`.
    pub(crate) fn chain(&self, hook: Hook) -> &Chain {
        // Every hook has a chain (possibly empty) once built.
        &self.chains[&hook]
    }

    /// Calls the chain of the hook `input` belongs to.
    pub(crate) fn call(
        &self,
        req: &crate::request::Request,
        input: crate::chain::Input<'_>,
    ) -> crate::chain::ChainOutcome {
        self.chain(input.hook()).call(req, input)
    }

    /// Calls the chain of the hook `input` belongs to, one that
    /// [`Chain::crosses_only`](crate::chain::Chain::crosses_only), on an async task.
    pub(crate) async fn call_crossing(
        &self,
        req: &crate::request::Request,
        input: crate::chain::Input<'_>,
    ) -> crate::chain::ChainOutcome {
        self.chain(input.hook()).call_crossing(req, input).await
    }

    /// What `hook`'s chain has cost lately.
    pub(crate) fn cost(&self, hook: Hook) -> &ChainCost {
        &self.costs[&hook]
    }

    /// Every chain in call order, in FlaskBB's hook order.
    pub(crate) fn describe(&self) -> Vec<HookChain> {
        self.chains.values().map(Chain::describe).collect()
    }

    /// Every configured instance, enabled or not; an isolated one with its host's
    /// state as it is now.
    pub(crate) fn plugins(&self) -> Vec<PluginInfo> {
        let mut plugins = self.plugins.clone();
        for info in &mut plugins {
            if let Some((_, sup, landlock)) = self.hosts.iter().find(|(n, _, _)| *n == info.name) {
                let status = sup.status();
                info.host = Some(PluginHost {
                    state: status.state.into(),
                    pid: status.pid,
                    restarts: status.restarts,
                    last_exit: status.last_exit,
                    landlock: landlock.clone(),
                    round_trips: status.round_trips,
                    pipelined: status.pipelined,
                    shared_with: status
                        .instances
                        .into_iter()
                        .filter(|n| *n != info.name)
                        .collect(),
                });
            }
        }
        plugins
    }
}

/// An isolated instance in its started plugin host.
struct Hosted {
    host: Arc<Supervisor>,
    ready: Ready,
    /// The library as configured.
    library: std::path::PathBuf,
    /// Its place among the host's instances.
    of: u32,
}

/// The isolated instances that one plugin host will serve: one library, one sandbox.
struct HostGroup<'a> {
    staged: crate::loader::Staged,
    sandbox: Sandbox,
    /// An instance that asked for a host of its own (`sandbox.own_host`).
    own: bool,
    members: Vec<&'a PluginConfig>,
}

/// Stages `p`'s library and resolves its `sandbox` table (making the files it may
/// write): what its plugin host loads and how it is confined.
fn stage_isolated(
    config: &Config,
    p: &PluginConfig,
    loader: &Loader,
) -> Result<(crate::loader::Staged, Sandbox), String> {
    let path = Loader::resolve(p.library.get_ref(), &config.plugins.dirs, &config.base_dir)
        .map_err(|e| e.to_string())?;
    let staged = loader.stage(&path).map_err(|e| e.to_string())?;
    let declared = p
        .sandbox
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_default();
    let memory_mb = declared.memory_mb.unwrap_or(config.plugins.host_memory_mb);
    for w in &declared.write {
        prepare_write_path(config, p, w)?;
    }
    let sandbox = Sandbox {
        network: declared.network,
        read: sandbox::resolve(&declared.read, &config.base_dir),
        write: sandbox::resolve(&declared.write, &config.base_dir),
        memory_bytes: memory_mb.saturating_mul(1 << 20),
    };
    Ok((staged, sandbox))
}

/// Makes a missing `sandbox.write` path, so that landlock has something to grant: a
/// directory when written with a trailing `/`, else an empty file (and its directory).
/// What the plugin would have created itself, created before it is confined.
fn prepare_write_path(
    config: &Config,
    plugin: &PluginConfig,
    declared: &std::path::Path,
) -> Result<(), String> {
    let path = config.base_dir.join(declared);
    if path.exists() {
        return Ok(());
    }
    // What is created belongs to whoever owns the directory it is created in: run as
    // root (`flaskbbd check` by an operator), it must not leave the daemon's own
    // state directory a file the daemon cannot write.
    let existing = path.ancestors().skip(1).find(|a| a.exists());
    let owner = existing
        .and_then(|a| std::fs::metadata(a).ok())
        .map(|m| (m.uid(), m.gid()));
    let made = if declared.as_os_str().to_string_lossy().ends_with('/') {
        crate::files::create_private_dir_all(&path)
    } else {
        path.parent()
            .map_or(Ok(()), crate::files::create_private_dir_all)
            .and_then(|()| crate::files::create_private_file(&path))
    };
    let made = made.and_then(|()| match (owner, existing) {
        (Some((uid, gid)), Some(existing))
            if crate::process::effective_uid() == 0 && (uid, gid) != (0, 0) =>
        {
            path.ancestors()
                .take_while(|a| *a != existing)
                .try_for_each(|a| std::os::unix::fs::chown(a, Some(uid), Some(gid)))
        }
        _ => Ok(()),
    });
    made.map_err(|e| {
        let at = plugin
            .sandbox
            .as_ref()
            .map(|s| format!(" (line {})", config.line_of(s.span().start)))
            .unwrap_or_default();
        format!(
            "sandbox.write{at}: {} does not exist and cannot be created: {e}",
            path.display()
        )
    })
}

/// Starts the plugin host of one group; each member's entry in `out` is its place in
/// the host, or why it has none (the member that failed, and the others that share
/// its host).
fn start_host(
    config: &Config,
    g: HostGroup<'_>,
    start_timeout: std::time::Duration,
    out: &mut HashMap<String, Result<Hosted, String>>,
) {
    let init = Init {
        mapped: g.staged.mapped,
        library: g.staged.path.clone(),
        instances: g
            .members
            .iter()
            .map(|p| InitInstance {
                name: p.name.get_ref().clone(),
                config_json: p.config_json(),
            })
            .collect(),
        base_dir: config.base_dir.clone(),
        sandbox: g.sandbox,
    };
    match Supervisor::start(init, start_timeout) {
        Ok((host, ready)) => {
            for (of, p) in (0u32..).zip(&g.members) {
                let hosted = Hosted {
                    host: host.clone(),
                    ready: ready.clone(),
                    library: g.staged.path.clone(),
                    of,
                };
                out.insert(p.name.get_ref().clone(), Ok(hosted));
            }
        }
        Err(e) => {
            let failed = e
                .instance
                .map(|i| i as usize)
                .filter(|&i| i < g.members.len());
            let others = |me: usize| {
                g.members
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != me)
                    .map(|(_, p)| format!("{:?}", p.name.get_ref()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            for (i, p) in g.members.iter().enumerate() {
                let why = match failed {
                    // The host named the instance whose `new` failed (or that it died
                    // in): that one's error, and the others say why they are not
                    // running.
                    Some(f) if f == i => with_key_lines(config, p, &e.message),
                    Some(f) => format!(
                        "not started: it shares a plugin host with instance {:?} (same library and sandbox), which failed to start",
                        g.members[f].name.get_ref()
                    ),
                    // The host failed before or beside any instance (its library, its
                    // confinement): no instance is to blame, and every one of the
                    // host's says so.
                    None if g.members.len() > 1 => format!(
                        "its plugin host, which it shares with instance(s) {} (same library and sandbox), could not start: {}",
                        others(i),
                        e.message
                    ),
                    None => with_key_lines(config, p, &e.message),
                };
                out.insert(p.name.get_ref().clone(), Err(why));
            }
        }
    }
}

/// `message` with the line of `flaskbb.toml` after each "config key K" it names, so
/// that a plugin's complaint about its configuration points at the line to fix.
fn with_key_lines(config: &Config, plugin: &PluginConfig, message: &str) -> String {
    const KEY: &str = "config key ";
    let mut out = String::with_capacity(message.len() + 16);
    let mut rest = message;
    while let Some(at) = rest.find(KEY) {
        let after = &rest[at + KEY.len()..];
        let path = after.split([':', ' ']).next().unwrap_or("");
        out.push_str(&rest[..at + KEY.len() + path.len()]);
        if let Some(line) = config.config_key_line(plugin, path) {
            out.push_str(&format!(" (line {line})"));
        }
        rest = &after[path.len()..];
    }
    out.push_str(rest);
    out
}

/// Prints chains as `flaskbbd check` and `flaskbbd hooks` show them.
pub(crate) fn render_chains(chains: &[HookChain]) -> String {
    let mut out = String::new();
    for c in chains {
        out.push_str(&c.hook);
        out.push('\n');
        if c.impls.is_empty() {
            out.push_str("  (no impls)\n");
        }
        for (i, e) in c.impls.iter().enumerate() {
            out.push_str(&format!(
                "  {:>2}. {:<30} {:<8} priority {:<4} {}{}\n",
                i + 1,
                e.instance,
                e.tier,
                e.priority,
                if e.wrapper { "wrapper  " } else { "" },
                e.origin
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    //! The chain cost that chooses where an event runs.

    use std::time::Duration;

    use super::ChainCost;

    #[test]
    fn a_chain_is_short_once_measured_short_and_long_after_a_slow_call_until_quick_ones_follow() {
        let limit = Duration::from_micros(500);
        let cost = ChainCost::default();
        assert!(!cost.short(limit), "never measured");
        cost.record(Duration::from_micros(5));
        assert!(cost.short(limit));
        cost.record(Duration::from_secs(4));
        assert!(!cost.short(limit));
        let mut quick = 0;
        while !cost.short(limit) {
            cost.record(Duration::from_micros(5));
            quick += 1;
        }
        // About eight quick calls per halving of the average.
        assert!((40..120).contains(&quick), "{quick}");
    }
}
