//! The model store: plugin code, tenant artifacts and their manifests in a directory.
//!
//! ```text
//! <data>/plugins/<sha256>.wasm                      plugin code, named by its hash
//! <data>/models/<name>/<version>/manifest.json      what the version is, with hashes
//! <data>/models/<name>/<version>/artifact.bin       the learned parameters
//! <data>/models/<name>/aliases.json                 {"production": "<version>"}
//! <data>/models/<name>/aliases.json.lock            serialises publishers of <name>
//! <data>/models/<name>/state.json                   pin and pooled fallback (registry.rs)
//! <data>/models/<name>/history.jsonl                append-only alias moves (registry.rs)
//! ```
//!
//! Every byte handed out is checked against the sha256 in its manifest first: a tampered
//! (or truncated) artifact or plugin is an error, never returned. Files are written with
//! the registry's atomic write (temp file, fsync, rename, directory fsync), and the
//! manifest last, so a version is visible only once it is complete; a crash leaves at
//! worst an incomplete version directory that `resolve` refuses and `publish` skips.
//! Versions are numbered 1, 2, 3… per model and never reused; an old version stays
//! loadable for rollback (`set_alias` back to it).

use crate::registry::store::{lock, write_atomic};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest plugin accepted (the eta-forecaster is ~110 KB).
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;
/// Largest artifact accepted.
pub const MAX_ARTIFACT_BYTES: u64 = 256 << 20;
/// Largest manifest or aliases file read.
const MAX_JSON_BYTES: u64 = 1 << 20;
/// The manifest format this code writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;
/// The alias the data plane serves by default.
pub const PRODUCTION: &str = "production";

/// Why the store refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such model, version or alias.
    #[error("model {name}@{selector} not found")]
    NotFound { name: String, selector: String },
    /// A file's bytes do not match the sha256 (or size) its manifest records.
    #[error("{what} {} does not match its manifest (sha256 {expected}, found {actual}): refusing it", path.display())]
    Tampered {
        what: &'static str,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// A name, manifest or aliases file that breaks the store's rules.
    #[error("{0}")]
    Invalid(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// Failures of the shared atomic write / lock helpers.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The plugin (code) a version runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRef {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub sha256: String,
    pub bytes: u64,
}

/// Provenance: exactly whose data the artifact was trained on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainedOn {
    /// Tenant ids (carriers) whose rows were used.
    pub tenants: Vec<String>,
    /// How many rows the trainer was handed.
    pub rows: u64,
    /// sha256 of exactly those rows, each in its canonical form (`rows_format`), in the
    /// order the trainer got them.
    #[serde(default)]
    pub rows_sha256: String,
    /// The canonical row serialisation `rows_sha256` is taken over.
    #[serde(default)]
    pub rows_format: String,
    /// sha256 of the data file the rows were cut from.
    pub data_sha256: String,
    /// Its file name, for people (the hash is what identifies it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_file: Option<String>,
}

/// Holdout evaluation at fit time: through the sandboxed plugin for `bulkhead train`
/// (`evaluated_by`), natively (same model code) for `bulkhead model fit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// How the holdout was chosen, e.g. `every 5th row`.
    pub holdout: String,
    pub holdout_rows: u64,
    /// MAPE (%) before departure (no dep_delay given). `None`: nothing to score.
    pub mape: Option<f64>,
    /// MAPE (%) when dep_delay is given.
    pub mape_with_dep_delay: Option<f64>,
    /// Share of holdout ETAs inside the 80% interval (no dep_delay).
    pub interval_coverage: Option<f64>,
    /// The baseline's name and MAPE on the same holdout.
    pub baseline: String,
    pub baseline_mape: Option<f64>,
    /// The pooled global model's MAPE on the same holdout rows (tenant models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_mape: Option<f64>,
    /// Which global version that was (`eta-global@3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_version: Option<String>,
    /// What ran the predictions, e.g. `sandbox: eta-forecaster plugin sha256 …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_by: Option<String>,
    /// What `mape`, `baseline_mape` and `global_mape` measure when not MAPE (%): `wape`
    /// for the demand models (Σ|error| / Σ actual, %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// How well the model's exception alerts (before departure) flag the holdout's late
    /// flights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<AlertScores>,
    /// The same once the departure delay is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts_with_dep_delay: Option<AlertScores>,
}

/// Exception alerts against what happened: a flight is late when it arrived more than
/// `after_minutes` after its scheduled arrival.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertScores {
    pub after_minutes: f64,
    /// Flights alerted, flights late, and flights both.
    pub alerted: u64,
    pub late: u64,
    pub alerted_and_late: u64,
    /// alerted_and_late / alerted; `None` without alerts.
    pub precision: Option<f64>,
    /// alerted_and_late / late; `None` without late flights.
    pub recall: Option<f64>,
}

impl AlertScores {
    /// From (alerted, late) per flight.
    pub fn of(after_minutes: f64, rows: impl IntoIterator<Item = (bool, bool)>) -> AlertScores {
        let mut s = AlertScores {
            after_minutes,
            ..AlertScores::default()
        };
        for (alerted, late) in rows {
            s.alerted += u64::from(alerted);
            s.late += u64::from(late);
            s.alerted_and_late += u64::from(alerted && late);
        }
        let share = |a: u64, b: u64| (b > 0).then(|| a as f64 / b as f64);
        s.precision = share(s.alerted_and_late, s.alerted);
        s.recall = share(s.alerted_and_late, s.late);
        s
    }
}

/// What a model version is. Written once, never edited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub version: String,
    /// The tenant (org_id) this model belongs to, or `*` for the pooled global model.
    pub tenant: String,
    pub plugin: PluginRef,
    pub artifact: ArtifactRef,
    pub trained_on: TrainedOn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    /// The promotion gate's decision at training time (`bulkhead train`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<super::gate::GateRecord>,
    pub created_unix_ms: u64,
}

/// A resolved model version. Cheap to clone; the bytes are read on demand with
/// [`ModelStore::read_plugin`] / [`ModelStore::read_artifact`].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersion {
    pub manifest: Manifest,
    dir: PathBuf,
}

impl ModelVersion {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }
    pub fn version(&self) -> &str {
        &self.manifest.version
    }
    /// The cache key halves: hex sha256 of the artifact and of the plugin.
    pub fn artifact_sha256(&self) -> &str {
        &self.manifest.artifact.sha256
    }
    pub fn plugin_sha256(&self) -> &str {
        &self.manifest.plugin.sha256
    }
}

/// What to publish as a new version.
#[derive(Debug, Clone)]
pub struct Publish<'a> {
    pub name: &'a str,
    pub tenant: &'a str,
    /// Plugin name and version (its sha256 is computed from `plugin_wasm`).
    pub plugin_name: &'a str,
    pub plugin_version: &'a str,
    pub plugin_wasm: &'a [u8],
    pub artifact: &'a [u8],
    pub trained_on: TrainedOn,
    pub evaluation: Option<Evaluation>,
    pub gate: Option<super::gate::GateRecord>,
    /// Point these aliases (e.g. `production`) at the new version, under the same lock
    /// (recorded in the alias history; refused for a pinned alias).
    pub aliases: &'a [&'a str],
}

/// One model's versions and aliases, for listings.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    pub name: String,
    pub aliases: BTreeMap<String, String>,
    /// Complete versions, oldest first.
    pub versions: Vec<Manifest>,
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of `bytes` (a digest).
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    s
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Model and alias names: 1-64 of `[A-Za-z0-9._-]`, not starting with `.` (so never `.`,
/// `..` or a hidden file) — they become directory names.
pub fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Versions are decimal numbers without leading zeros.
pub fn valid_version(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_digit()) && !s.starts_with('0')
}

/// Aliases are names that are not versions (so `NAME@X` is never ambiguous).
pub fn valid_alias(s: &str) -> bool {
    valid_name(s) && !s.bytes().all(|c| c.is_ascii_digit())
}

pub(super) fn check_name(s: &str) -> Result<(), StoreError> {
    if valid_name(s) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "model name {s:?}: 1-64 characters from [A-Za-z0-9._-], not starting with '.'"
        )))
    }
}

/// At most `limit + 1` bytes of `path` (one more than allowed, so a caller can tell an
/// oversized file; for hashed files that extra byte makes the hash check fail).
fn read_upto(path: &Path, limit: u64) -> Result<Vec<u8>, StoreError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_err(path))?;
    Ok(bytes)
}

pub(super) fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, StoreError> {
    let bytes = read_upto(path, limit)?;
    if bytes.len() as u64 > limit {
        return Err(StoreError::Invalid(format!(
            "{} is larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Creates `dir` (and parents); fsyncs the parent of each directory it created so the
/// new entries survive a crash.
fn create_dirs(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dirs(parent)?;
        fs::create_dir(dir)
            .or_else(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(io_err(dir))?;
        sync_dir(parent)?;
    } else {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    Ok(())
}

pub(super) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A model store rooted at a data directory.
#[derive(Debug, Clone)]
pub struct ModelStore {
    root: PathBuf,
}

impl ModelStore {
    /// The store at `dir`. Nothing is created until the first publish; a missing
    /// directory is an empty store.
    pub fn open(dir: impl Into<PathBuf>) -> Result<ModelStore, StoreError> {
        let root = dir.into();
        if root.exists() && !root.is_dir() {
            return Err(StoreError::Invalid(format!(
                "{} is not a directory",
                root.display()
            )));
        }
        Ok(ModelStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the plugin with this sha256 lives.
    pub fn plugin_path(&self, sha256: &str) -> PathBuf {
        self.root.join("plugins").join(format!("{sha256}.wasm"))
    }

    pub(super) fn model_dir(&self, name: &str) -> PathBuf {
        self.root.join("models").join(name)
    }

    /// Creates `<data>/models/<name>/` (durably) if it is missing.
    pub(super) fn ensure_model_dir(&self, name: &str) -> Result<(), StoreError> {
        check_name(name)?;
        create_dirs(&self.model_dir(name))
    }

    pub(super) fn aliases_path(&self, name: &str) -> PathBuf {
        self.model_dir(name).join("aliases.json")
    }

    /// The version `selector` names: an alias (`production`) or a version number.
    pub fn resolve(&self, name: &str, selector: &str) -> Result<ModelVersion, StoreError> {
        check_name(name)?;
        let not_found = || StoreError::NotFound {
            name: name.to_string(),
            selector: selector.to_string(),
        };
        let version = if valid_version(selector) {
            selector.to_string()
        } else if valid_alias(selector) {
            self.aliases(name)?
                .get(selector)
                .cloned()
                .ok_or_else(not_found)?
        } else {
            return Err(StoreError::Invalid(format!(
                "{selector:?} is neither a version number nor an alias name"
            )));
        };
        match self.version(name, &version) {
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Err(not_found())
            }
            other => other,
        }
    }

    /// The manifest of `name`/`version`, checked to be the one it claims to be.
    fn version(&self, name: &str, version: &str) -> Result<ModelVersion, StoreError> {
        let dir = self.model_dir(name).join(version);
        let path = dir.join("manifest.json");
        let bytes = read_limited(&path, MAX_JSON_BYTES)?;
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            StoreError::Invalid(format!("{} is not a manifest: {e}", path.display()))
        })?;
        let bad = |why: &str| StoreError::Invalid(format!("{}: {why}", path.display()));
        if manifest.format != MANIFEST_FORMAT {
            return Err(bad(&format!(
                "manifest format {}, this host reads {MANIFEST_FORMAT}",
                manifest.format
            )));
        }
        if manifest.name != name || manifest.version != version {
            return Err(bad(&format!(
                "names {}@{}, but it is stored as {name}@{version}",
                manifest.name, manifest.version
            )));
        }
        if !is_sha256_hex(&manifest.artifact.sha256) || !is_sha256_hex(&manifest.plugin.sha256) {
            return Err(bad("a sha256 is not 64 lowercase hex digits"));
        }
        Ok(ModelVersion { manifest, dir })
    }

    /// `name`'s aliases (empty when it has none).
    pub fn aliases(&self, name: &str) -> Result<BTreeMap<String, String>, StoreError> {
        check_name(name)?;
        let path = self.aliases_path(name);
        let bytes = match read_limited(&path, MAX_JSON_BYTES) {
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(BTreeMap::new());
            }
            other => other?,
        };
        let map: BTreeMap<String, String> = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Invalid(format!("{}: {e}", path.display())))?;
        if let Some((a, v)) = map
            .iter()
            .find(|(a, v)| !valid_alias(a) || !valid_version(v))
        {
            return Err(StoreError::Invalid(format!(
                "{}: bad alias {a:?} -> {v:?}",
                path.display()
            )));
        }
        Ok(map)
    }

    /// The plugin code of `v`, verified against its sha256.
    pub fn read_plugin(&self, v: &ModelVersion) -> Result<Vec<u8>, StoreError> {
        let sha = v.plugin_sha256();
        let path = self.plugin_path(sha);
        let bytes = read_upto(&path, MAX_PLUGIN_BYTES)?;
        verify("plugin", &path, &bytes, sha, None)?;
        Ok(bytes)
    }

    /// The artifact of `v`, verified against its sha256 and size.
    pub fn read_artifact(&self, v: &ModelVersion) -> Result<Vec<u8>, StoreError> {
        let a = &v.manifest.artifact;
        let path = v.dir.join("artifact.bin");
        let bytes = read_upto(&path, a.bytes.min(MAX_ARTIFACT_BYTES))?;
        verify("artifact", &path, &bytes, &a.sha256, Some(a.bytes))?;
        Ok(bytes)
    }

    /// Stores a new version of `p.name` (numbered one past the highest ever used) and
    /// points `p.aliases` at it.
    pub fn publish(&self, p: Publish<'_>) -> Result<ModelVersion, StoreError> {
        check_name(p.name)?;
        if p.tenant != "*" && !valid_name(p.tenant) {
            return Err(StoreError::Invalid(format!(
                "tenant {:?}: an org id or `*`",
                p.tenant
            )));
        }
        if let Some(a) = p.aliases.iter().find(|a| !valid_alias(a)) {
            return Err(StoreError::Invalid(format!(
                "alias {a:?}: a name that is not a number"
            )));
        }
        if p.plugin_wasm.len() as u64 > MAX_PLUGIN_BYTES
            || p.artifact.len() as u64 > MAX_ARTIFACT_BYTES
        {
            return Err(StoreError::Invalid(
                "plugin or artifact over the size limit".into(),
            ));
        }
        let plugin_sha = self.put_plugin(p.plugin_wasm)?;

        let model_dir = self.model_dir(p.name);
        create_dirs(&model_dir)?;
        let _lock = lock(&self.aliases_path(p.name))?;
        for alias in p.aliases {
            self.check_not_pinned(p.name, alias)?;
        }
        let next = self.version_numbers(p.name)?.last().map_or(1, |n| n + 1);
        let version = next.to_string();
        let dir = model_dir.join(&version);
        create_dirs(&dir)?;
        write_atomic(&dir.join("artifact.bin"), p.artifact)?;
        super::failpoint::hit("publish:artifact-written");
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            name: p.name.to_string(),
            version: version.clone(),
            tenant: p.tenant.to_string(),
            plugin: PluginRef {
                name: p.plugin_name.to_string(),
                version: p.plugin_version.to_string(),
                sha256: plugin_sha,
            },
            artifact: ArtifactRef {
                sha256: sha256_hex(p.artifact),
                bytes: p.artifact.len() as u64,
            },
            trained_on: p.trained_on,
            evaluation: p.evaluation,
            gate: p.gate,
            created_unix_ms: now_unix_ms(),
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| StoreError::Invalid(format!("serialising the manifest: {e}")))?;
        // Last: the version exists once its manifest does.
        write_atomic(&dir.join("manifest.json"), &json)?;
        super::failpoint::hit("publish:manifest-written");
        for alias in p.aliases {
            let note = super::registry::Note::new(
                "publish",
                None,
                format!("published {}@{version} with this alias", p.name),
            );
            self.write_alias(p.name, alias, Some(&version), &note)?;
        }
        self.version(p.name, &version)
    }

    /// Points `alias` of `name` at `version` (which must exist, with intact bytes),
    /// recording the move in the alias history as `note` says. Returns the version it
    /// pointed at before. Refused while the alias is pinned.
    pub fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
    ) -> Result<Option<String>, StoreError> {
        self.set_alias_noted(
            name,
            alias,
            version,
            &super::registry::Note::new("promote", None, String::new()),
        )
    }

    /// [`ModelStore::set_alias`] with who/why for the history.
    pub fn set_alias_noted(
        &self,
        name: &str,
        alias: &str,
        version: &str,
        note: &super::registry::Note,
    ) -> Result<Option<String>, StoreError> {
        check_name(name)?;
        if !valid_alias(alias) {
            return Err(StoreError::Invalid(format!(
                "alias {alias:?}: a name that is not a number"
            )));
        }
        if !valid_version(version) {
            return Err(StoreError::Invalid(format!(
                "version {version:?}: a number"
            )));
        }
        if !self.model_dir(name).is_dir() {
            return Err(StoreError::NotFound {
                name: name.to_string(),
                selector: version.to_string(),
            });
        }
        let _lock = lock(&self.aliases_path(name))?;
        if note.action != "pin" {
            self.check_not_pinned(name, alias)?;
        }
        let v = self.resolve(name, version)?;
        // Never promote bytes that would be refused at serve time.
        self.read_artifact(&v)?;
        self.read_plugin(&v)?;
        let before = self.write_alias(name, alias, Some(version), note)?;
        if alias == PRODUCTION {
            // A version in production: the tenant is no longer on the pooled fallback.
            self.update_state(name, |s| s.fallback = None)?;
        }
        Ok(before)
    }

    /// Under the lock of `name`: points `alias` at `version` (`None` removes it), then
    /// appends the move to the alias history. Returns what the alias pointed at before.
    pub(super) fn write_alias(
        &self,
        name: &str,
        alias: &str,
        version: Option<&str>,
        note: &super::registry::Note,
    ) -> Result<Option<String>, StoreError> {
        let mut map = self.aliases(name)?;
        let before = match version {
            Some(v) => map.insert(alias.to_string(), v.to_string()),
            None => map.remove(alias),
        };
        let json = serde_json::to_vec_pretty(&map)
            .map_err(|e| StoreError::Invalid(format!("serialising aliases: {e}")))?;
        write_atomic(&self.aliases_path(name), &json)?;
        super::failpoint::hit("alias:written");
        self.append_history(name, alias, before.as_deref(), version, note)?;
        Ok(before)
    }

    /// Writes the plugin under its hash unless an intact copy is there already.
    fn put_plugin(&self, wasm: &[u8]) -> Result<String, StoreError> {
        let sha = sha256_hex(wasm);
        let path = self.plugin_path(&sha);
        let intact = read_upto(&path, MAX_PLUGIN_BYTES)
            .ok()
            .is_some_and(|b| sha256_hex(&b) == sha);
        if !intact {
            if let Some(dir) = path.parent() {
                create_dirs(dir)?;
            }
            write_atomic(&path, wasm)?;
        }
        Ok(sha)
    }

    /// Every version number ever allocated for `name` (complete or not), ascending.
    fn version_numbers(&self, name: &str) -> Result<Vec<u64>, StoreError> {
        let dir = self.model_dir(name);
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.map_err(io_err(&dir))?,
        };
        let mut out: Vec<u64> = entries
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().into_string().ok()?;
                if valid_version(&n) {
                    n.parse().ok()
                } else {
                    None
                }
            })
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Complete versions of `name`, oldest first (an incomplete or invalid version
    /// directory is skipped).
    pub fn versions(&self, name: &str) -> Result<Vec<Manifest>, StoreError> {
        check_name(name)?;
        Ok(self
            .version_numbers(name)?
            .into_iter()
            .filter_map(|n| self.version(name, &n.to_string()).ok())
            .map(|v| v.manifest)
            .collect())
    }

    /// Every model, by name.
    pub fn list(&self) -> Result<Vec<ModelSummary>, StoreError> {
        let dir = self.root.join("models");
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.map_err(io_err(&dir))?,
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_name(n))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|name| {
                Ok(ModelSummary {
                    aliases: self.aliases(&name)?,
                    versions: self.versions(&name)?,
                    name,
                })
            })
            .collect()
    }
}

fn verify(
    what: &'static str,
    path: &Path,
    bytes: &[u8],
    sha: &str,
    size: Option<u64>,
) -> Result<(), StoreError> {
    let actual = sha256_hex(bytes);
    let size_ok = size.is_none_or(|n| n == bytes.len() as u64);
    if actual == sha && size_ok {
        Ok(())
    } else {
        Err(StoreError::Tampered {
            what,
            path: path.to_path_buf(),
            expected: sha.to_string(),
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn trained_on() -> TrainedOn {
        TrainedOn {
            tenants: vec!["UA".into()],
            rows: 10,
            rows_sha256: sha256_hex(b"rows"),
            rows_format: "test".into(),
            data_sha256: sha256_hex(b"data"),
            data_file: Some("flights.csv".into()),
        }
    }

    fn publish<'a>(
        store: &ModelStore,
        name: &'a str,
        artifact: &'a [u8],
        aliases: &'a [&'a str],
    ) -> ModelVersion {
        store
            .publish(Publish {
                name,
                tenant: "UA",
                plugin_name: "eta-forecaster",
                plugin_version: "0.1.0",
                plugin_wasm: b"\0asm plugin",
                artifact,
                trained_on: trained_on(),
                evaluation: None,
                gate: None,
                aliases,
            })
            .unwrap()
    }

    #[test]
    fn publish_resolve_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path()).unwrap();
        assert!(store.list().unwrap().is_empty());
        let v1 = publish(&store, "eta-UA", b"one", &[PRODUCTION]);
        let v2 = publish(&store, "eta-UA", b"two", &[]);
        assert_eq!((v1.version(), v2.version()), ("1", "2"));
        assert_eq!(v1.plugin_sha256(), v2.plugin_sha256());
        assert_eq!(v2.artifact_sha256(), sha256_hex(b"two"));
        assert_eq!(v2.manifest.artifact.bytes, 3);
        assert_eq!(v2.manifest.tenant, "UA");

        // Aliases: production stays on 1 until promoted; versions resolve directly.
        assert_eq!(store.resolve("eta-UA", PRODUCTION).unwrap(), v1);
        assert_eq!(store.resolve("eta-UA", "2").unwrap(), v2);
        assert_eq!(store.read_artifact(&v1).unwrap(), b"one");
        assert_eq!(store.read_plugin(&v2).unwrap(), b"\0asm plugin");
        assert_eq!(
            store.set_alias("eta-UA", PRODUCTION, "2").unwrap(),
            Some("1".into())
        );
        assert_eq!(store.resolve("eta-UA", PRODUCTION).unwrap(), v2);
        // Rollback is the same operation.
        store.set_alias("eta-UA", PRODUCTION, "1").unwrap();
        assert_eq!(store.resolve("eta-UA", PRODUCTION).unwrap(), v1);
        let aliases = fs::read_to_string(dir.path().join("models/eta-UA/aliases.json")).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&aliases).unwrap(),
            serde_json::json!({"production": "1"})
        );

        let list = store.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].versions.len(), 2);
        // One plugin file, named by its hash.
        assert!(store.plugin_path(v1.plugin_sha256()).is_file());
        assert_eq!(fs::read_dir(dir.path().join("plugins")).unwrap().count(), 1);
    }

    #[test]
    fn unknown_names_versions_and_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path()).unwrap();
        publish(&store, "eta-DL", b"a", &[]);
        for (name, sel) in [
            ("eta-DL", PRODUCTION),
            ("eta-DL", "7"),
            ("nope", PRODUCTION),
            ("nope", "1"),
        ] {
            match store.resolve(name, sel) {
                Err(StoreError::NotFound { .. }) => {}
                other => panic!("{name}@{sel}: {other:?}"),
            }
        }
        for bad in ["..", ".hidden", "a/b", "", "x y"] {
            assert!(
                matches!(store.resolve(bad, "1"), Err(StoreError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            store.resolve("eta-DL", "../1"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            store.resolve("eta-DL", "01"),
            Err(StoreError::Invalid(_))
        ));
        assert!(
            store.set_alias("eta-DL", "42", "1").is_err(),
            "a numeric alias is refused"
        );
        assert!(matches!(
            store.set_alias("eta-DL", PRODUCTION, "9"),
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            store.set_alias("nope", PRODUCTION, "1"),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn tampered_bytes_are_never_returned() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path()).unwrap();
        let v = publish(&store, "eta-AA", b"weights", &[PRODUCTION]);
        let artifact = dir.path().join("models/eta-AA/1/artifact.bin");

        // Same length, different bytes.
        fs::write(&artifact, b"WEIGHTS").unwrap();
        match store.read_artifact(&v) {
            Err(StoreError::Tampered {
                what: "artifact",
                expected,
                actual,
                ..
            }) => {
                assert_eq!(expected, sha256_hex(b"weights"));
                assert_eq!(actual, sha256_hex(b"WEIGHTS"));
            }
            other => panic!("{other:?}"),
        }
        // Appended or truncated.
        fs::write(&artifact, b"weights!").unwrap();
        assert!(matches!(
            store.read_artifact(&v),
            Err(StoreError::Tampered { .. })
        ));
        fs::write(&artifact, b"weight").unwrap();
        assert!(matches!(
            store.read_artifact(&v),
            Err(StoreError::Tampered { .. })
        ));
        // A tampered version cannot be promoted either.
        assert!(matches!(
            store.set_alias("eta-AA", "canary", "1"),
            Err(StoreError::Tampered { .. })
        ));
        fs::write(&artifact, b"weights").unwrap();
        assert_eq!(store.read_artifact(&v).unwrap(), b"weights");

        // The plugin is checked against its name and the manifest.
        let plugin = store.plugin_path(v.plugin_sha256());
        fs::write(&plugin, b"\0asm evil").unwrap();
        assert!(matches!(
            store.read_plugin(&v),
            Err(StoreError::Tampered { what: "plugin", .. })
        ));
        // Publishing the real plugin again repairs the copy.
        publish(&store, "eta-AA", b"weights", &[]);
        assert_eq!(store.read_plugin(&v).unwrap(), b"\0asm plugin");

        // A manifest edited to point at other bytes is caught by its own hash check,
        // and one moved to another name/version is refused outright.
        let m = dir.path().join("models/eta-AA/1/manifest.json");
        let mut manifest: Manifest = serde_json::from_slice(&fs::read(&m).unwrap()).unwrap();
        manifest.version = "2".into();
        fs::write(&m, serde_json::to_vec(&manifest).unwrap()).unwrap();
        assert!(matches!(
            store.resolve("eta-AA", "1"),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn incomplete_versions_are_invisible_and_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path()).unwrap();
        publish(&store, "eta-B6", b"a", &[]);
        // A crash after the artifact but before the manifest.
        let half = dir.path().join("models/eta-B6/2");
        fs::create_dir(&half).unwrap();
        fs::write(half.join("artifact.bin"), b"b").unwrap();
        assert!(matches!(
            store.resolve("eta-B6", "2"),
            Err(StoreError::NotFound { .. })
        ));
        assert_eq!(store.versions("eta-B6").unwrap().len(), 1);
        let v = publish(&store, "eta-B6", b"c", &[]);
        assert_eq!(v.version(), "3");
        // No temporary files are left behind by a publish.
        let names: Vec<String> = fs::read_dir(dir.path().join("models/eta-B6/3"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, ["artifact.bin", "manifest.json"]);
    }

    #[test]
    fn concurrent_publishers_get_distinct_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path()).unwrap();
        let versions: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let store = store.clone();
                    s.spawn(move || {
                        let bytes = format!("artifact {i}");
                        publish(&store, "eta-UA", bytes.as_bytes(), &[PRODUCTION])
                            .version()
                            .to_string()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut sorted: Vec<u64> = versions.iter().map(|v| v.parse().unwrap()).collect();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=8).collect::<Vec<_>>());
        assert_eq!(store.versions("eta-UA").unwrap().len(), 8);
        let prod = store.resolve("eta-UA", PRODUCTION).unwrap();
        assert!(store.read_artifact(&prod).is_ok());
    }
}
