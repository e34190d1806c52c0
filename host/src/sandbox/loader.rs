//! Loading a model on a cache miss: get the plugin's compiled code (shared in memory,
//! deserialized from the host's precompiled file, or compiled and written out), build
//! its `InstancePre`, fetch and verify the artifact, and check the pair works by
//! instantiating once and calling `describe` and `load(artifact)`.
//!
//! Compiled plugins are shared: every resident model of one plugin holds the same
//! `LoadedPlugin` (one `InstancePre`, one copy of the code). Plugins are loaded
//! single-flight per plugin sha256 (a per-plugin mutex, not a global one), so two
//! tenants' models of a new plugin missing together compile it once.

use super::bindings::{Description, LOAD_EXPORT, Model, ModelError, ModelPre, PREDICT_EXPORT};
use super::error::{ErrorKind, SandboxError, classify};
use super::host_api::{self, CallState};
use super::precompiled::PrecompiledDir;
use super::{CodeSource, Limits, ModelInfo, ModelSource, NoFeatures, sha256_hex};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use wasmtime::component::{Component, ComponentExportIndex, Linker};
use wasmtime::{Engine, Store};

/// A plugin's compiled code, ready to instantiate.
pub struct LoadedPlugin {
    pub sha256: String,
    pub pre: ModelPre<CallState>,
    /// The `load` and `predict` exports, found once (calls look them up by index).
    pub load: ComponentExportIndex,
    pub predict: ComponentExportIndex,
    /// Size of the compiled code image (for the cache's byte accounting).
    pub code_bytes: usize,
}

/// A resident model: shared plugin code plus this tenant's artifact.
pub struct LoadedModel {
    pub plugin: Arc<LoadedPlugin>,
    pub artifact: Arc<[u8]>,
    pub info: Arc<ModelInfo>,
    pub loaded_at: Instant,
}

pub struct Loader {
    engine: Engine,
    /// The host's imports; cloned per plugin to stub everything else as traps.
    linker: Linker<CallState>,
    precompiled: Option<PrecompiledDir>,
    plugins: Mutex<HashMap<String, Arc<Mutex<Weak<LoadedPlugin>>>>>,
    /// Recently used plugins, kept alive when no resident model holds them.
    idle: Mutex<VecDeque<Arc<LoadedPlugin>>>,
    max_idle: usize,
    pub compiles: AtomicU64,
    pub deserializes: AtomicU64,
}

/// Largest description a plugin may return from `describe` (bytes of its strings).
const MAX_DESCRIPTION_BYTES: usize = 64 << 10;

impl Loader {
    pub fn new(
        engine: Engine,
        precompiled: Option<PrecompiledDir>,
        max_idle: usize,
    ) -> anyhow::Result<Loader> {
        let linker = host_api::linker(&engine)
            .map_err(|e| anyhow::anyhow!("defining the host imports: {e}"))?;
        Ok(Loader {
            engine,
            linker,
            precompiled,
            plugins: Mutex::new(HashMap::new()),
            idle: Mutex::new(VecDeque::new()),
            max_idle,
            compiles: AtomicU64::new(0),
            deserializes: AtomicU64::new(0),
        })
    }

    /// Loads `source` (blocking: runs on a blocking thread). `limits` and
    /// `deadline_ticks` bound the validation call like any other call.
    pub fn load(
        &self,
        source: &ModelSource,
        limits: &Limits,
        deadline_ticks: u64,
    ) -> Result<LoadedModel, SandboxError> {
        let start = Instant::now();
        let key = &source.key;
        for (what, hash) in [
            ("plugin", &key.plugin_sha256),
            ("artifact", &key.artifact_sha256),
        ] {
            if !is_sha256_hex(hash) {
                return Err(load_failed(format!(
                    "{what} sha256 {hash:?} is not 64 lowercase hex digits"
                )));
            }
        }
        // The artifact first: checking it is cheaper than compiling the plugin.
        let artifact = source
            .fetch
            .artifact()
            .map_err(|e| load_failed(format!("fetching the artifact: {e:#}")))?;
        let actual = sha256_hex(&artifact);
        if actual != key.artifact_sha256 {
            return Err(load_failed(format!(
                "artifact sha256 mismatch: expected {}, got {actual}",
                key.artifact_sha256
            )));
        }
        let artifact: Arc<[u8]> = artifact.into();
        let (plugin, code_source) = self.plugin(source)?;
        let description = self.validate(&plugin, &artifact, source, limits, deadline_ticks)?;
        let info = ModelInfo {
            key: key.clone(),
            label: source.label.clone(),
            description,
            artifact_bytes: artifact.len(),
            load_time: start.elapsed(),
            code_source,
        };
        tracing::info!(
            model = %source.label,
            plugin = %key.plugin_sha256,
            artifact = %key.artifact_sha256,
            code = ?code_source,
            load_us = info.load_time.as_micros() as u64,
            "model loaded"
        );
        Ok(LoadedModel {
            plugin,
            artifact,
            info: Arc::new(info),
            loaded_at: Instant::now(),
        })
    }

    /// The plugin's code: shared if some resident model already has it, else loaded
    /// under that plugin's own lock.
    fn plugin(
        &self,
        source: &ModelSource,
    ) -> Result<(Arc<LoadedPlugin>, CodeSource), SandboxError> {
        let sha = &source.key.plugin_sha256;
        let slot = {
            let mut plugins = self.plugins.lock().unwrap_or_else(|p| p.into_inner());
            // Forget plugins nobody holds any more, so the map stays small.
            // (`try_lock`: a slot being loaded is in use; never wait here.)
            plugins.retain(|_, slot| {
                Arc::strong_count(slot) > 1
                    || slot
                        .try_lock()
                        .map(|w| w.strong_count() > 0)
                        .unwrap_or(true)
            });
            plugins.entry(sha.clone()).or_default().clone()
        };
        let mut held = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(plugin) = held.upgrade() {
            self.keep(&plugin);
            return Ok((plugin, CodeSource::Shared));
        }
        let (component, code_source) = self.component(source)?;
        let plugin = Arc::new(self.prepare(sha, &component)?);
        *held = Arc::downgrade(&plugin);
        self.keep(&plugin);
        Ok((plugin, code_source))
    }

    /// Marks `plugin` most recently used among the idle-kept ones.
    fn keep(&self, plugin: &Arc<LoadedPlugin>) {
        if self.max_idle == 0 {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|p| !Arc::ptr_eq(p, plugin));
        idle.push_front(plugin.clone());
        idle.truncate(self.max_idle);
    }

    /// Forgets the idle-kept plugins (their code goes once no model holds it).
    pub fn drop_idle(&self) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Deserializes the host's precompiled file, or compiles the verified `.wasm` (and
    /// writes the precompiled file for next time).
    fn component(&self, source: &ModelSource) -> Result<(Component, CodeSource), SandboxError> {
        let sha = &source.key.plugin_sha256;
        if let Some(dir) = &self.precompiled {
            match dir.load(&self.engine, sha) {
                Ok(Some(component)) => {
                    self.deserializes.fetch_add(1, Ordering::Relaxed);
                    return Ok((component, CodeSource::Precompiled));
                }
                Ok(None) => {}
                // Unreadable or from an incompatible build: recompile and overwrite.
                Err(e) => {
                    tracing::warn!(plugin = %sha, "precompiled plugin unusable, recompiling: {e:#}")
                }
            }
        }
        let bytes = source
            .fetch
            .plugin()
            .map_err(|e| load_failed(format!("fetching the plugin: {e:#}")))?;
        let actual = sha256_hex(&bytes);
        if actual != *sha {
            return Err(load_failed(format!(
                "plugin sha256 mismatch: expected {sha}, got {actual}"
            )));
        }
        let component = match &self.precompiled {
            Some(dir) => {
                let serialized = self
                    .engine
                    .precompile_component(&bytes)
                    .map_err(|e| load_failed(format!("compiling the plugin: {e}")))?;
                if let Err(e) = dir.store(sha, &serialized) {
                    tracing::warn!(plugin = %sha, "could not write the precompiled plugin: {e:#}");
                }
                // SAFETY: `serialized` was produced just now by this engine from bytes
                // whose sha256 was verified above.
                unsafe { Component::deserialize(&self.engine, &serialized) }
                    .map_err(|e| load_failed(format!("loading the compiled plugin: {e}")))?
            }
            None => Component::new(&self.engine, &bytes)
                .map_err(|e| load_failed(format!("compiling the plugin: {e}")))?,
        };
        self.compiles.fetch_add(1, Ordering::Relaxed);
        Ok((component, CodeSource::Compiled))
    }

    /// Links the component: the host's imports, and every other import (e.g. WASI a
    /// plugin's standard library pulls in) as a function that traps if called.
    fn prepare(&self, sha: &str, component: &Component) -> Result<LoadedPlugin, SandboxError> {
        let mut linker = self.linker.clone();
        linker
            .define_unknown_imports_as_traps(component)
            .map_err(|e| load_failed(format!("linking the plugin: {e}")))?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| load_failed(format!("linking the plugin: {e}")))?;
        let pre = ModelPre::new(pre).map_err(|e| {
            load_failed(format!("the plugin does not export the model world: {e:#}"))
        })?;
        let export = |name: &str| {
            component
                .get_export_index(None, name)
                .ok_or_else(|| load_failed(format!("the plugin has no `{name}` export")))
        };
        let load = export(LOAD_EXPORT)?;
        let predict = export(PREDICT_EXPORT)?;
        let image = component.image_range();
        let code_bytes = (image.end as usize).saturating_sub(image.start as usize);
        Ok(LoadedPlugin {
            sha256: sha.to_string(),
            pre,
            load,
            predict,
            code_bytes,
        })
    }

    /// Instantiates once and calls `describe` and `load(artifact)`: a model whose
    /// artifact the plugin refuses is never cached.
    fn validate(
        &self,
        plugin: &LoadedPlugin,
        artifact: &[u8],
        source: &ModelSource,
        limits: &Limits,
        deadline_ticks: u64,
    ) -> Result<Description, SandboxError> {
        let state = CallState::new(
            limits,
            "-".into(),
            "load".into(),
            source.label.as_str().into(),
            Arc::new(NoFeatures),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(deadline_ticks);
        store.epoch_deadline_trap();
        let fail = |e: wasmtime::Error, store: &Store<CallState>| {
            let inner = classify(e, store.data().limiter.exceeded);
            SandboxError {
                kind: ErrorKind::LoadFailed,
                message: format!("validating the model: {}: {}", inner.kind, inner.message),
                detail: inner.detail,
            }
        };
        let model: Model = match plugin.pre.instantiate(&mut store) {
            Ok(model) => model,
            Err(e) => return Err(fail(e, &store)),
        };
        let description = match model.call_describe(&mut store) {
            Ok(d) => d,
            Err(e) => return Err(fail(e, &store)),
        };
        let size = description_bytes(&description);
        if size > MAX_DESCRIPTION_BYTES {
            return Err(load_failed(format!(
                "the plugin's description is {size} bytes (limit {MAX_DESCRIPTION_BYTES})"
            )));
        }
        match model.call_load(&mut store, artifact) {
            Ok(Ok(())) => Ok(description),
            Ok(Err(error)) => Err(model_error(error)),
            Err(e) => Err(fail(e, &store)),
        }
    }
}

/// A plugin's own error, as a sandbox error.
pub fn model_error(error: ModelError) -> SandboxError {
    match error {
        ModelError::BadArtifact(m) => SandboxError::new(ErrorKind::BadArtifact, m),
        ModelError::BadInput(m) => SandboxError::new(ErrorKind::BadInput, m),
        ModelError::Internal(m) => SandboxError::new(ErrorKind::PluginError, m),
    }
}

fn load_failed(message: impl Into<String>) -> SandboxError {
    SandboxError::new(ErrorKind::LoadFailed, message)
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn description_bytes(d: &Description) -> usize {
    d.name.len()
        + d.version.len()
        + d.output.len()
        + d.features
            .iter()
            .map(|f| f.name.len() + f.doc.len() + 16)
            .sum::<usize>()
}
