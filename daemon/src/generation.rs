//! A plugin generation: the instances made from one reading of `flaskbb.toml` and the
//! chains built from them. Built once (at start or reload), immutable afterwards; a
//! request holds one generation for its whole life.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use plugin_abi::abi::Tier;

use crate::{
    builtins,
    chain::{
        order::{self, ImplSpec},
        Chain, Entry,
    },
    config::{Config, HookOverride},
    hook::Hook,
    instance::{Instance, Origin, PluginHooks},
    loader::{Library, Loader},
    password::Verifier,
    proto::{HookChain, PluginInfo},
};

/// One generation of instances and chains.
pub struct Generation {
    pub id: u64,
    pub config: Arc<Config>,
    pub verifier: Arc<Verifier>,
    chains: BTreeMap<Hook, Chain>,
    plugins: Vec<PluginInfo>,
    /// The run-time enabled/disabled states this generation was built with.
    pub registry: HashMap<String, bool>,
}

/// Why a generation could not be built: every problem, one line each.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct BuildError(pub Vec<String>);

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
}

struct Candidate {
    instance: Arc<Instance>,
    reg_index: usize,
    decls: Vec<Decl>,
    overrides: BTreeMap<String, HookOverride>,
}

impl Generation {
    /// Builds a generation. `enabled` holds the instances the operator enabled or
    /// disabled at run time (from `plugin_registry`); they win over `flaskbb.toml`.
    pub fn build(
        id: u64,
        config: Arc<Config>,
        loader: &Loader,
        verifier: Arc<Verifier>,
        enabled: &HashMap<String, bool>,
    ) -> Result<Generation, BuildError> {
        let mut errors = Vec::new();
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut plugins: Vec<PluginInfo> = Vec::new();
        // Each library file is read and hashed once per build, however many instances
        // use it; a later build (a reload) reads it again, to see a rebuilt file.
        let mut by_path: HashMap<std::path::PathBuf, Arc<Library>> = HashMap::new();
        let is_enabled =
            |name: &str, configured: bool| enabled.get(name).copied().unwrap_or(configured);

        for b in builtins::all(&config, verifier.clone()) {
            let settings = config.builtins.get(b.name);
            let configured = settings.is_none_or(|s| s.enabled)
                && match b.name {
                    "lockout" => config.auth.lockout.enabled,
                    "block_unactivated" => config.auth.activate_account,
                    _ => true,
                };
            let on = is_enabled(b.name, configured);
            plugins.push(PluginInfo {
                name: b.name.into(),
                origin: "builtin".into(),
                library: None,
                version: None,
                description: None,
                abi_version: None,
                enabled: on,
                hooks: b.hooks.iter().map(|(h, _)| h.to_string()).collect(),
            });
            if !on {
                continue;
            }
            let reg_index = candidates.len();
            candidates.push(Candidate {
                instance: Arc::new(Instance {
                    name: b.name.into(),
                    origin: Origin::Builtin,
                    config_json: "{}".into(),
                    hooks: b.imp,
                }),
                reg_index,
                decls: b.hooks.iter().map(|(h, t)| Decl::plain(h, *t)).collect(),
                overrides: settings
                    .map(|s| {
                        s.hooks
                            .iter()
                            .map(|(k, v)| (k.get_ref().clone(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }

        for p in &config.plugin {
            let name = p.name.get_ref().as_str();
            let on = is_enabled(name, p.enabled);
            let mut info = PluginInfo {
                name: name.into(),
                origin: String::new(),
                library: Some(p.library.get_ref().clone()),
                version: None,
                description: None,
                abi_version: None,
                enabled: on,
                hooks: vec![],
            };
            if !on {
                plugins.push(info);
                continue;
            }
            let lib =
                match Loader::resolve(p.library.get_ref(), &config.plugins.dirs, &config.base_dir)
                    .and_then(|path| match by_path.get(&path) {
                        Some(lib) => Ok(lib.clone()),
                        None => {
                            let lib = loader.load(&path)?;
                            by_path.insert(path, lib.clone());
                            Ok(lib)
                        }
                    }) {
                    Ok(lib) => lib,
                    Err(e) => {
                        errors.push(format!(
                            "instance {name:?} (line {}): {e}",
                            config.line_of(p.name.span().start)
                        ));
                        continue;
                    }
                };
            let config_json = p.config_json();
            let boxed = match lib.instantiate(name, &config_json, &config.base_dir) {
                Ok(b) => b,
                Err(e) => {
                    errors.push(format!(
                        "instance {name:?} (line {}): {e}",
                        config.line_of(p.name.span().start)
                    ));
                    continue;
                }
            };
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
                .map(|d| {
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
                })
                .collect::<Vec<_>>();
            for hook in p.hooks.keys() {
                if !decls.iter().any(|d| &d.hook == hook.get_ref()) {
                    errors.push(config.error_at(
                        hook.span(),
                        &format!("hooks.{}", hook.get_ref()),
                        &format!(
                            "instance {name:?}: library {} does not implement this hook (it implements: {})",
                            lib.path.display(),
                            info.hooks.join(", ")
                        ),
                    ).0);
                }
            }
            plugins.push(info);
            let reg_index = candidates.len();
            candidates.push(Candidate {
                instance: Arc::new(Instance {
                    name: name.into(),
                    origin: Origin::Plugin(lib.clone()),
                    config_json,
                    hooks: Box::new(PluginHooks(boxed)),
                }),
                reg_index,
                decls,
                overrides: p
                    .hooks
                    .iter()
                    .map(|(k, v)| (k.get_ref().clone(), v.clone()))
                    .collect(),
            });
        }
        if !errors.is_empty() {
            return Err(BuildError(errors));
        }

        let known: HashSet<String> = config.known_instance_names().into_iter().collect();
        let by_name: HashMap<&str, &Candidate> =
            candidates.iter().map(|c| (&*c.instance.name, c)).collect();
        let mut chains = BTreeMap::new();
        for hook in Hook::ALL {
            let mut specs = Vec::new();
            for c in &candidates {
                for d in &c.decls {
                    if d.hook != hook.name() {
                        continue;
                    }
                    let o = c.overrides.get(&d.hook).cloned().unwrap_or_default();
                    if o.enabled == Some(false) {
                        continue;
                    }
                    specs.push(ImplSpec {
                        instance: c.instance.name.to_string(),
                        reg_index: c.reg_index,
                        tier: o
                            .tier
                            .as_ref()
                            .and_then(|t| Tier::from_name(t.get_ref()))
                            .unwrap_or(d.tier),
                        priority: o.priority.unwrap_or(d.priority),
                        before: o
                            .before
                            .map(|v| v.into_iter().map(|s| s.into_inner()).collect())
                            .unwrap_or_else(|| d.before.clone()),
                        after: o
                            .after
                            .map(|v| v.into_iter().map(|s| s.into_inner()).collect())
                            .unwrap_or_else(|| d.after.clone()),
                        wrapper: o.wrapper.unwrap_or(d.wrapper),
                    });
                }
            }
            match order::order(hook.name(), specs, &known) {
                Ok(ordered) => {
                    let entry = |s: &ImplSpec| Entry {
                        instance: by_name[s.instance.as_str()].instance.clone(),
                        tier: s.tier,
                        priority: s.priority,
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
                Err(e) => errors.push(format!("{}: {e}", config.path.display())),
            }
        }
        if !errors.is_empty() {
            return Err(BuildError(errors));
        }
        Ok(Generation {
            id,
            config,
            verifier,
            chains,
            plugins,
            registry: enabled.clone(),
        })
    }

    /// The chain of `hook`.
    pub fn chain(&self, hook: Hook) -> &Chain {
        // Every hook has a chain (possibly empty) once built.
        &self.chains[&hook]
    }

    /// Calls the chain of the hook `input` belongs to.
    pub fn call(
        &self,
        req: &crate::request::Request,
        input: crate::chain::Input<'_>,
    ) -> crate::chain::ChainOutcome {
        self.chain(input.hook()).call(req, input)
    }

    /// Every chain in call order, in FlaskBB's hook order.
    pub fn describe(&self) -> Vec<HookChain> {
        self.chains.values().map(Chain::describe).collect()
    }

    /// Every configured instance, enabled or not.
    pub fn plugins(&self) -> &[PluginInfo] {
        &self.plugins
    }
}

/// Prints chains as `flaskbbd check` and `flaskbbd hooks` show them.
pub fn render_chains(chains: &[HookChain]) -> String {
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
