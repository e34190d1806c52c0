//! `bulkhead`: the host's command line.

use anyhow::{Context, Result};
use bulkhead::dev::{echo, envoy_config, issuer::DevIssuer};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "bulkhead",
    version,
    about = "Bulkhead: tenant isolation for multi-tenant ML"
)]
struct Cli {
    /// Local state (dev issuer key, rendered configs).
    #[arg(
        long,
        global = true,
        env = "BULKHEAD_STATE_DIR",
        default_value = ".bulkhead"
    )]
    state_dir: PathBuf,
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
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let dev_dir = cli.state_dir.join("dev");
    match cli.cmd {
        Cmd::Token { org, ttl } => println!("{}", DevIssuer::open(&dev_dir)?.token(&org, ttl)?),
        Cmd::Jwks => println!("{}", DevIssuer::open(&dev_dir)?.jwks()?),
        Cmd::Echo { listen } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(echo::serve(listen))?;
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
    }
    Ok(())
}
