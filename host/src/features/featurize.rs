//! The model crate's feature lookups ([`Lookup`]) answered from a tenant's store: what
//! the trainer uses to featurize its rows, so training reads the same tables, keys and
//! classes the plugin reads through `features.lookup` when it serves.

use super::FeatureStores;
use crate::sandbox::{FeatureSource, Value};
use anyhow::{Result, anyhow};
use bulkhead_eta_model::features::{Featurizer, Lookup};
use bulkhead_eta_model::nyc::Flight;
use bulkhead_eta_model::schema::{Code, Row};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One tenant's store as a [`Lookup`].
pub struct StoreLookup(pub Arc<dyn FeatureSource>);

impl Lookup for StoreLookup {
    fn numbers(
        &mut self,
        table: &str,
        key: &str,
        columns: &[&str],
    ) -> Result<Option<Vec<Option<f64>>>, String> {
        let columns: Vec<String> = columns.iter().map(|c| (*c).to_string()).collect();
        Ok(self.0.lookup(table, key, &columns)?.map(|row| {
            row.into_iter()
                .map(|v| match v {
                    Value::Number(x) => Some(x),
                    Value::Category(_) | Value::Missing => None,
                })
                .collect()
        }))
    }
}

/// How many flights the stores knew something about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    pub flights: usize,
    /// With a weather reading at the origin in the departure hour.
    pub weather: usize,
    /// With a plane in the tenant's fleet table.
    pub aircraft: usize,
}

/// Fills in each flight's looked-up conditions from its own carrier's store (each
/// tenant's rows are looked up in that tenant's store only), through the
/// [`Featurizer`] the plugin runs.
pub fn featurize(flights: &mut [Flight], stores: &FeatureStores) -> Result<Coverage> {
    let mut by_carrier: BTreeMap<Code, Featurizer<StoreLookup>> = BTreeMap::new();
    let mut cov = Coverage {
        flights: flights.len(),
        ..Coverage::default()
    };
    for f in flights.iter_mut() {
        let fz = by_carrier
            .entry(f.carrier)
            .or_insert_with(|| Featurizer::new(StoreLookup(stores.for_tenant(f.carrier.as_str()))));
        let row = Row {
            input: f.example.input(true),
            sched_dep: Some(f.sched_dep),
            tailnum: f.tail.as_ref().map(|t| t.as_str()),
            // The block time is already the flight's (from the same zone rule).
            sched_arr: None,
        };
        let c = fz
            .conditions(&row)
            .map_err(|e| anyhow!("featurizing a {} flight: {e}", f.carrier))?;
        cov.weather += usize::from(c.weather != 0);
        cov.aircraft += usize::from(c.aircraft != 0);
        f.example.conditions = c;
    }
    Ok(cov)
}
