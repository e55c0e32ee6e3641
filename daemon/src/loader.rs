//! Loading plugin libraries: dlopen, abi_stable's header, version and layout checks,
//! and making instances.
//!
//! abi_stable's `RootModule::load_from_*` caches one module per interface type, so a
//! second plugin would silently come back as the first; this module opens each library
//! itself and checks it. It also accepts a plugin built against an OLDER `plugin-abi`
//! 1.x, which abi_stable refuses on its own: the layout is checked in the reverse
//! direction, and hooks the old vtable lacks answer "not implemented".
//!
//! Libraries are never unloaded (abi_stable's vtables are `'static`), and dlopen
//! hands back the library already mapped for a path it has seen. So the daemon loads
//! each plugin from a content-addressed copy (`plugins.cache_dir`): a rebuilt `.so` at
//! the same path is new content, a new copy, and a new library on reload, while
//! unchanged files map to the library already loaded. Every failure is one
//! [`LoadError`] line naming the file and the cause.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use abi_stable::{
    abi_stability::abi_checking::{
        check_layout_compatibility_with_globals, get_checking_globals, CheckingGlobals,
    },
    library::{AbiHeaderRef, LibHeader, RootModule, ROOT_MODULE_LOADER_NAME_WITH_NUL},
    sabi_types::VersionNumber,
    std_types::{RErr, ROk},
    type_layout::TypeLayout,
    StableAbi,
};
use sha2::{Digest, Sha256};

use plugin_abi::{
    abi::{Manifest, PluginBox, PluginMod_Ref, ABI_PACKAGE},
    hooks,
    sdk::HookError,
};

/// Why a library or an instance could not be loaded. `Display` is one line that
/// starts with the file.
#[derive(Debug, thiserror::Error)]
#[error("plugin {}: {cause}", path.display())]
pub(crate) struct LoadError {
    /// The library file.
    pub path: PathBuf,
    /// What was wrong with it.
    pub cause: String,
}

fn fail(path: &Path, cause: impl Into<String>) -> LoadError {
    LoadError {
        path: path.to_path_buf(),
        cause: cause.into(),
    }
}

/// One loaded plugin library: its root module and manifest.
pub(crate) struct Library {
    /// The file as configured.
    pub path: PathBuf,
    /// SHA-256 of the file's content, hex.
    pub digest: String,
    /// Its root module, through which instances are made.
    pub module: PluginMod_Ref,
    /// What it says of itself: name, version, hooks.
    pub manifest: Manifest,
    /// The `plugin-abi` version the library was built against.
    pub abi_version: String,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("path", &self.path)
            .field("abi_version", &self.abi_version)
            .finish()
    }
}

impl Library {
    /// Makes one instance with its name, `config` JSON and the config file's directory.
    pub(crate) fn instantiate(
        &self,
        instance: &str,
        config_json: &str,
        base_dir: &Path,
    ) -> Result<PluginBox, LoadError> {
        let base = base_dir.to_string_lossy();
        match (self.module.new())(instance.into(), config_json.into(), base.as_ref().into()) {
            ROk(p) => Ok(p),
            RErr(e) => Err(fail(
                &self.path,
                format!("init failed: {}", describe(&HookError::from_abi(&e))),
            )),
        }
    }
}

fn describe(e: &HookError) -> String {
    match e {
        HookError::Failed { message } => message.clone(),
        other => other.to_string(),
    }
}

/// Opens libraries once per content: the same bytes give the same module.
#[derive(Default)]
pub(crate) struct Loader {
    loaded: Mutex<HashMap<String, Arc<Library>>>,
    /// Every copy staged by this process (mapped here or by a plugin host).
    staged: Mutex<Vec<PathBuf>>,
    /// Where content-addressed copies go; `None` maps files in place (`flaskbbd check`).
    cache_dir: Option<PathBuf>,
}

/// The `plugin-abi` version this daemon speaks.
pub(crate) fn host_abi_version() -> VersionNumber {
    // The crate's own version strings always parse.
    PluginMod_Ref::VERSION_STRINGS
        .parsed()
        .unwrap_or(VersionNumber {
            major: 1,
            minor: 0,
            patch: 0,
        })
}

impl Loader {
    /// Finds `lib<library>.so` in `dirs` (or takes `library` as a path when it has a
    /// `/` or ends in `.so`, relative to `base_dir`).
    pub(crate) fn resolve(
        library: &str,
        dirs: &[PathBuf],
        base_dir: &Path,
    ) -> Result<PathBuf, LoadError> {
        if library.contains('/') || library.ends_with(".so") {
            let p = base_dir.join(library);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(fail(
                    &p,
                    "missing file: no such plugin library (check `library` in flaskbb.toml)",
                ))
            };
        }
        let file = format!("lib{library}.so");
        for d in dirs {
            let p = d.join(&file);
            if p.is_file() {
                return Ok(p);
            }
        }
        // A crate built without `crate-type = ["cdylib"]` leaves only its rlib.
        let rlib = format!("lib{library}.rlib");
        if let Some(d) = dirs.iter().find(|d| d.join(&rlib).is_file()) {
            return Err(fail(
                &d.join(&file),
                format!(
                    "missing file: {} is there but no {file}: the crate builds no shared library; \
                     add crate-type = [\"cdylib\"] under [lib] in its Cargo.toml and build it again",
                    d.join(&rlib).display()
                ),
            ));
        }
        let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        Err(fail(
            Path::new(&file),
            format!(
                "missing file: not found in plugins.dirs [{}] (build the plugins with `cargo build --release`, or fix plugins.dirs)",
                searched.join(", ")
            ),
        ))
    }

    /// A loader that maps content-addressed copies made in `cache_dir`.
    pub(crate) fn with_cache(cache_dir: PathBuf) -> Loader {
        Loader {
            loaded: Mutex::default(),
            staged: Mutex::default(),
            cache_dir: Some(cache_dir),
        }
    }

    /// Loads the library at `path` (made absolute), or returns the one already loaded
    /// with the same content.
    pub(crate) fn load(&self, path: &Path) -> Result<Arc<Library>, LoadError> {
        let staged = self.stage(path)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lib) = loaded.get(&staged.digest) {
            return Ok(lib.clone());
        }
        let mut lib = open_as(&staged.mapped, &staged.path)?;
        lib.digest = staged.digest.clone();
        let lib = Arc::new(lib);
        loaded.insert(staged.digest, lib.clone());
        Ok(lib)
    }

    /// Reads the library at `path` and makes its content-addressed copy, without
    /// mapping it: for an isolated instance, whose host maps the copy.
    pub(crate) fn stage(&self, path: &Path) -> Result<Staged, LoadError> {
        let path = std::path::absolute(path).map_err(|e| fail(path, format!("bad path: {e}")))?;
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => fail(&path, "missing file"),
            _ => fail(&path, format!("cannot be read: {e}")),
        })?;
        let digest: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mapped = match &self.cache_dir {
            Some(dir) => copy_into(dir, &path, &digest, &bytes)?,
            None => path.clone(),
        };
        let mut staged = self.staged.lock().unwrap_or_else(|e| e.into_inner());
        if !staged.contains(&mapped) {
            staged.push(mapped.clone());
        }
        drop(staged);
        Ok(Staged {
            path,
            mapped,
            digest,
        })
    }
}

/// A library file read and copied, ready to map.
#[derive(Debug, Clone)]
pub(crate) struct Staged {
    /// The file as configured, made absolute.
    pub path: PathBuf,
    /// The file to map: the content-addressed copy, or `path` itself.
    pub mapped: PathBuf,
    /// SHA-256 of the content, hex.
    pub digest: String,
}

impl Loader {
    /// Removes the copies in the cache directory that this process has not loaded:
    /// at start-up, those are copies of builds no longer in use. Returns how many went.
    pub(crate) fn prune_cache(&self) -> usize {
        let Some(dir) = &self.cache_dir else { return 0 };
        let in_use: Vec<PathBuf> = self
            .staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_file())
                && !in_use.contains(&path)
                && std::fs::remove_file(&path).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }
}

/// Writes `bytes` to `<dir>/<digest>-<file name>` unless it is there already: through
/// a temporary file and a rename, so a mapped copy is never rewritten in place.
fn copy_into(dir: &Path, path: &Path, digest: &str, bytes: &[u8]) -> Result<PathBuf, LoadError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin.so".into());
    let target = dir.join(format!("{}-{name}", &digest[..16]));
    if target.is_file() {
        return Ok(target);
    }
    crate::files::create_private_dir_all(dir).map_err(|e| {
        fail(
            path,
            format!("cannot create plugins.cache_dir {}: {e}", dir.display()),
        )
    })?;
    let tmp = dir.join(format!(".{}-{name}.{}", &digest[..16], std::process::id()));
    crate::files::write_private(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, &target))
        .map_err(|e| {
            fail(
                path,
                format!("cannot copy into plugins.cache_dir {}: {e}", dir.display()),
            )
        })?;
    Ok(target)
}

/// Maps `mapped` and checks it as a plugin library; errors and the library name
/// `shown`, the file as configured. The plugin host loads with this too.
pub(crate) fn open_as(mapped: &Path, shown: &Path) -> Result<Library, LoadError> {
    let mut lib = open(mapped).map_err(|e| LoadError {
        path: shown.to_path_buf(),
        cause: e.cause,
    })?;
    lib.path = shown.to_path_buf();
    Ok(lib)
}

fn open(path: &Path) -> Result<Library, LoadError> {
    let header = load_header(path)?;
    let (lib_header, layout) = plugin_root(path, header)?;
    let theirs = lib_header.version_strings().parsed().map_err(|e| {
        fail(
            path,
            format!("ABI mismatch: unreadable plugin-abi version: {e}"),
        )
    })?;
    check_layout(path, layout, theirs)?;
    // SAFETY: the layout was checked just above, in the direction that fits the versions.
    let module = unsafe { lib_header.unchecked_layout::<PluginMod_Ref>() }.map_err(|e| {
        fail(
            path,
            format!(
                "its root module failed to initialise: {}",
                first_line(&e.to_string())
            ),
        )
    })?;
    let manifest = (module.manifest())();
    check_manifest(path, &manifest)?;
    Ok(Library {
        path: path.to_path_buf(),
        digest: String::new(),
        module,
        manifest,
        abi_version: theirs.to_string(),
    })
}

/// dlopens the library at `path` and finds abi_stable's header in it. The library
/// stays loaded for the process's life: abi_stable's vtables and layouts are 'static.
fn load_header(path: &Path) -> Result<AbiHeaderRef, LoadError> {
    if !path.exists() {
        return Err(fail(path, "missing file"));
    }
    use libloading::os::unix::{Library as RawLib, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: loading runs the library's initialisers; plugins are trusted code
    // installed by the operator, as with PAM modules.
    let raw = unsafe { RawLib::open(Some(path), RTLD_NOW | RTLD_LOCAL) }.map_err(|e| {
        let detail = std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string());
        fail(path, format!("cannot be loaded: {detail}"))
    })?;
    // SAFETY: the symbol, when present, is abi_stable's header static; libloading hands
    // back its address as `T`, and `AbiHeaderRef` is a pointer to that header.
    let header: AbiHeaderRef = unsafe {
        match raw.get::<AbiHeaderRef>(ROOT_MODULE_LOADER_NAME_WITH_NUL.as_bytes()) {
            Ok(sym) => *sym,
            Err(_) => {
                return Err(fail(
                    path,
                    "not a flaskbbd plugin: it exports no abi_stable root module (was it built with export_plugin!?)",
                ))
            }
        }
    };
    // abi_stable never unloads: its vtables and layouts are 'static.
    std::mem::forget(raw);
    Ok(header)
}

/// The library's header and its root module's layout, once they are known to be a
/// flaskbbd plugin's (abi_stable's of a compatible version, plugin-abi's module).
fn plugin_root(
    path: &Path,
    header: AbiHeaderRef,
) -> Result<(&'static LibHeader, &'static TypeLayout), LoadError> {
    let lib_header = header.upgrade().map_err(|e| {
        fail(
            path,
            format!(
                "ABI mismatch: built with an incompatible abi_stable ({})",
                first_line(&e.to_string())
            ),
        )
    })?;
    let Some(layout) = lib_header.layout() else {
        return Err(fail(
            path,
            "not a flaskbbd plugin: its root module carries no layout to check",
        ));
    };
    // The root module is abi_stable's `PrefixRef<…>`: the type it points to says whose
    // interface this is.
    let inner = layout.shared_vars().type_layouts().first().map(|f| f());
    let package = inner.unwrap_or(layout).package().to_string();
    if package != ABI_PACKAGE {
        return Err(fail(
            path,
            format!(
                "not a flaskbbd plugin: its root module `{}` comes from crate {package}, not {ABI_PACKAGE}",
                inner.unwrap_or(layout).name()
            ),
        ));
    }
    Ok((lib_header, layout))
}

/// Checks a plugin built against plugin-abi `theirs` fits this daemon's: the same
/// major version, and a layout that is ours or a prefix of it.
fn check_layout(
    path: &Path,
    layout: &'static TypeLayout,
    theirs: VersionNumber,
) -> Result<(), LoadError> {
    let ours = host_abi_version();
    if theirs.major != ours.major {
        return Err(fail(
            path,
            format!("version mismatch: built against plugin-abi {theirs}, this daemon speaks {ours}; rebuild the plugin against plugin-abi {}.x", ours.major),
        ));
    }
    // A newer (or equal) plugin has every field we know: the usual check, which also
    // records the prefix types in abi_stable's process-wide view. An older one has a
    // prefix of ours: check it as the interface and our layout as its implementation,
    // against private bookkeeping, so the process-wide view keeps our (larger) layout
    // and later plugins of the current version still check against it.
    let checked = if theirs.minor >= ours.minor {
        check_layout_compatibility_with_globals(
            <PluginMod_Ref as StableAbi>::LAYOUT,
            layout,
            get_checking_globals(),
        )
    } else {
        check_layout_compatibility_with_globals(
            layout,
            <PluginMod_Ref as StableAbi>::LAYOUT,
            &CheckingGlobals::new(),
        )
    };
    let Err(e) = checked else { return Ok(()) };
    let text = e.to_string();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("Error:"))
        .collect();
    tracing::debug!(plugin = %path.display(), "layout check: {text}");
    Err(fail(
        path,
        format!(
            "ABI mismatch with plugin-abi {ours} (plugin built against {theirs}): {}",
            if errors.is_empty() {
                first_line(&text).to_string()
            } else {
                errors.join("; ")
            }
        ),
    ))
}

/// Refuses a plugin whose panics could not be contained; warns of hooks it declares
/// that this daemon does not know.
fn check_manifest(path: &Path, manifest: &Manifest) -> Result<(), LoadError> {
    if !manifest.panic_unwind {
        return Err(fail(
            path,
            "built with panic = \"abort\": a panic in it could not be contained; build it with panic = \"unwind\" (the default)",
        ));
    }
    for decl in manifest.hooks.iter() {
        if !hooks::ALL.contains(&decl.hook.as_str()) {
            tracing::warn!(plugin = %path.display(), hook = %decl.hook, "the manifest declares a hook this daemon does not know; it is ignored");
        }
    }
    Ok(())
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}
