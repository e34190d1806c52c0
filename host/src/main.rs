//! `bulkhead`: the host's command line.

use anyhow::{Context, Result};
use bulkhead::dev::{echo, envoy_config, issuer::DevIssuer};
use bulkhead::features::cli::{self as features_cli, FeaturesArgs};
use bulkhead::metering::cli::{self as meter_cli, MeterCmd};
use bulkhead::models::cli::{self as model_cli, ModelArgs, TrainArgs};
use bulkhead::registry::cli::{self as registry_cli, RegistryCmd, TenantCmd};
use bulkhead::registry::{api, watch::Watcher};
use bulkhead::serve::cli::{self as serve_cli, ServeArgs};
use bulkhead::top::TopArgs;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "bulkhead",
    version,
    about = "Bulkhead: tenant isolation for multi-tenant ML"
)]
struct Cli {
    /// Local state (dev issuer key, rendered configs, the registry by default).
    #[arg(
        long,
        global = true,
        env = "BULKHEAD_STATE_DIR",
        default_value = ".bulkhead"
    )]
    state_dir: PathBuf,
    /// The tenant registry file [default: <state-dir>/registry.json].
    #[arg(long, global = true, env = "BULKHEAD_REGISTRY", value_name = "PATH")]
    registry: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a bearer token for a tenant from the local dev issuer.
    Token {
        #[arg(long)]
        org: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Print the dev issuer's public JWKS.
    Jwks,
    /// Run an upstream that echoes what it received, as JSON.
    Echo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Name this upstream: the JSON gains "upstream": NAME, the response `x-upstream: NAME`.
        #[arg(long)]
        name: Option<String>,
    },
    /// Render an Envoy config template with the dev issuer's JWKS and the filter paths.
    EnvoyConfig {
        #[arg(long)]
        template: PathBuf,
        /// NAME=VALUE pairs for `{{NAME}}` placeholders (JWKS is filled in for you).
        #[arg(long = "set", value_parser = parse_kv)]
        vars: Vec<(String, String)>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve the tenant registry to the edge (GET /v1/registry, /v1/registry/status, /healthz),
    /// reloading the file when it changes.
    Control {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
    },
    /// Run the data plane: verify identity again, admit, and run each tenant's model in
    /// its wasmtime sandbox (POST /v1/eta, /healthz, /readyz, /metrics); batch jobs on
    /// their own SCHED_IDLE workers (POST /v1/batch/eta, GET /v1/batch/{id}[/results]).
    Serve(Box<ServeArgs>),
    /// List, show, train, promote and seed models in the model store.
    Model(ModelArgs),
    /// Build the tenant feature stores from the data set, or read a row back.
    Features(FeaturesArgs),
    /// Train the pooled model and tenant candidates, score them through the sandbox,
    /// and promote each candidate that passes the gate (else the tenant is served the
    /// pooled model).
    Train(Box<TrainArgs>),
    /// Tenant registry: create or check the file. Model registry: list, show, promote,
    /// rollback, pin, history.
    #[command(subcommand)]
    Registry(RegistryCmd),
    /// List, show and edit tenants in the registry.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Usage metering: aggregate the meter log into per-tenant usage (exactly once per
    /// event), reconcile it with the raw log, export it for billing, tail the log.
    #[command(subcommand)]
    Meter(MeterCmd),
    /// A terminal view of a host's /metrics, refreshed every second: per tenant
    /// requests/s, p95, in flight, 429s, guest CPU and its share of the pool, batch rows/s.
    Top(TopArgs),
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

fn main() -> ExitCode {
    // Logs go to stderr: stdout carries command output (tokens, JWKS, tenant lists).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let dev_dir = cli.state_dir.join("dev");
    let registry = cli
        .registry
        .clone()
        .unwrap_or_else(|| cli.state_dir.join("registry.json"));
    match cli.cmd {
        Cmd::Token { org, ttl } => println!("{}", DevIssuer::open(&dev_dir)?.token(&org, ttl)?),
        Cmd::Jwks => println!("{}", DevIssuer::open(&dev_dir)?.jwks()?),
        Cmd::Echo { listen, name } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(echo::serve(listen, name.as_deref()))?;
        }
        Cmd::EnvoyConfig {
            template,
            vars,
            out,
        } => {
            let tpl = std::fs::read_to_string(&template)
                .with_context(|| format!("reading {}", template.display()))?;
            let jwks = DevIssuer::open(&dev_dir)?.jwks()?.to_string();
            let mut all: Vec<(&str, String)> = vec![("JWKS_JSON", jwks)];
            all.extend(vars.iter().map(|(k, v)| (k.as_str(), v.clone())));
            let yaml = envoy_config::render(&tpl, &all)?;
            std::fs::write(&out, yaml).with_context(|| format!("writing {}", out.display()))?;
        }
        Cmd::Control { listen } => control(registry, listen)?,
        Cmd::Serve(args) => serve_cli::run(&cli.state_dir, &registry, *args, shutdown_signal())?,
        Cmd::Model(args) => model_cli::run(&cli.state_dir, args)?,
        Cmd::Features(args) => features_cli::run(&cli.state_dir, &registry, args)?,
        Cmd::Registry(cmd) => registry_cli::run_registry(&registry, &cli.state_dir, cmd)?,
        Cmd::Train(args) => model_cli::run_train(&cli.state_dir, &registry, *args)?,
        Cmd::Tenant(cmd) => registry_cli::run_tenant(&registry, cmd)?,
        Cmd::Meter(cmd) => meter_cli::run(&cli.state_dir, &registry, cmd)?,
        Cmd::Top(args) => bulkhead::top::run(&args)?,
    }
    Ok(())
}

fn control(path: PathBuf, listen: SocketAddr) -> Result<()> {
    let watcher = Watcher::open(&path).context("the control API needs a valid registry")?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let local = listener.local_addr()?;
        let snap = watcher.current();
        tracing::info!(
            "control API listening on http://{local}, serving {} (revision {}, {} tenants, etag {})",
            path.display(),
            snap.revision,
            snap.tenants,
            snap.etag
        );
        api::serve(listener, Arc::new(watcher), shutdown_signal()).await
    })
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
