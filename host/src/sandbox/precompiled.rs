//! The host's own precompiled plugins: `<data>/precompiled/<plugin sha256>-<engine hash>.cwasm`.
//!
//! `Component::deserialize*` trusts its input completely (it maps machine code and runs
//! it), so only files this module wrote are ever deserialized: the name is derived from
//! the plugin's sha256 (verified against the plugin bytes before compiling) and the
//! engine's compatibility hash, the directory is the host's own data directory, and
//! files are written atomically (temp file, fsync, rename, fsync the directory) so a
//! crash never leaves a torn file under a valid name. Nothing a tenant supplies is ever
//! written here or read from here.

use anyhow::{Context, Result, anyhow};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of precompiled components for one engine.
#[derive(Debug, Clone)]
pub struct PrecompiledDir {
    dir: PathBuf,
    engine_hash: String,
}

impl PrecompiledDir {
    pub fn new(data_dir: &Path, engine_hash: &str) -> PrecompiledDir {
        PrecompiledDir {
            dir: data_dir.join("precompiled"),
            engine_hash: engine_hash.to_string(),
        }
    }

    /// The file for a plugin; `plugin_sha256` must be lowercase hex (checked by the
    /// caller), so it cannot name anything outside the directory.
    pub fn path(&self, plugin_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{plugin_sha256}-{}.cwasm", self.engine_hash))
    }

    /// Deserializes the plugin's precompiled file, if this host wrote one.
    pub fn load(&self, engine: &Engine, plugin_sha256: &str) -> Result<Option<Component>> {
        let path = self.path(plugin_sha256);
        if !path.is_file() {
            return Ok(None);
        }
        // SAFETY: `path` is in the host's own data directory, named by the sha256 of
        // plugin bytes the host verified and compiled itself with an engine of the same
        // compatibility hash, and written atomically by `store` below. Nothing else
        // writes to this directory.
        let component = unsafe { Component::deserialize_file(engine, &path) }
            .map_err(|e| anyhow!("deserializing {}: {e:?}", path.display()))?;
        Ok(Some(component))
    }

    /// Writes `serialized` (from `Engine::precompile_component` on verified bytes)
    /// atomically under the plugin's name.
    pub fn store(&self, plugin_sha256: &str, serialized: &[u8]) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.path(plugin_sha256);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .with_context(|| format!("creating a temporary file in {}", self.dir.display()))?;
        tmp.write_all(serialized)
            .and_then(|()| tmp.as_file().sync_all())
            .with_context(|| format!("writing {}", tmp.path().display()))?;
        tmp.persist(&path)
            .with_context(|| format!("renaming into {}", path.display()))?;
        // Make the rename durable too.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", self.dir.display()))?;
        Ok(())
    }
}
