//! `bulkhead registry …` and `bulkhead tenant …`: their arguments and what they print.
//!
//! Every edit takes the registry's edit lock, validates the whole result and replaces
//! the file atomically (see [`super::store`]); it prints one line saying what changed
//! and the new revision. A refused edit is an error naming the field (exit 1), and the
//! file is left untouched.

use super::store::{self, Edited};
use super::{DEV_REGISTRY, etag};
use anyhow::{Context, Result};
use bulkhead_registry::edit::Edit;
use bulkhead_registry::{ModelRef, Registry, Status, Tenant, TenantSpec, Tier};
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum RegistryCmd {
    /// Write a new registry file at --registry (default source: the bundled dev registry).
    Init {
        /// Copy this registry file (validated first) instead of the bundled one.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// Replace an existing registry file.
        #[arg(long)]
        force: bool,
    },
    /// Validate a registry file; exit 1 with the offending field if it is invalid.
    Check {
        /// The file to check (default: --registry).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// The model registry: list, show, promote, rollback, pin, history.
    #[command(flatten)]
    Models(crate::models::cli::ModelRegistryCmd),
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// List the tenants.
    List,
    /// Show one tenant, with defaults filled in.
    Show { org: String },
    /// Register a tenant.
    Add {
        /// The org id (the verified JWT's tenant claim).
        org: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// pool, bridge or silo.
        #[arg(long, value_parser = parse_tier)]
        tier: Tier,
        /// Home region.
        #[arg(long)]
        region: String,
        /// The data plane serving the tenant (declared in the registry's data_planes).
        #[arg(long, value_name = "DATA_PLANE")]
        data_plane: String,
        /// Residency zone the tenant must never leave (e.g. eu).
        #[arg(long, value_name = "ZONE")]
        residency: Option<String>,
        /// Rate plan (default: the registry's default plan).
        #[arg(long)]
        plan: Option<String>,
        /// Model as NAME@VERSION (default: the registry's default model).
        #[arg(long, value_name = "NAME@VERSION", value_parser = parse_model)]
        model: Option<ModelRef>,
        /// In-flight request cap (default: the registry's default).
        #[arg(long, value_name = "N")]
        max_concurrency: Option<u32>,
    },
    /// Move a tenant to another tier (a silo needs a data plane of its own: --data-plane).
    SetTier {
        org: String,
        /// pool, bridge or silo.
        #[arg(value_parser = parse_tier)]
        tier: Tier,
        #[arg(long, value_name = "DATA_PLANE")]
        data_plane: Option<String>,
    },
    /// Move a tenant to another data plane.
    SetDataPlane { org: String, data_plane: String },
    /// Change a tenant's rate plan.
    SetPlan { org: String, plan: String },
    /// Pin a tenant's model: NAME@VERSION (VERSION may be `production`).
    SetModel {
        org: String,
        #[arg(value_name = "NAME@VERSION", value_parser = parse_model)]
        model: ModelRef,
    },
    /// Change a tenant's in-flight request cap.
    SetConcurrency {
        org: String,
        #[arg(value_name = "N")]
        max: u32,
    },
    /// Suspend a tenant: the edge refuses it with 403 and this reason.
    Suspend {
        org: String,
        #[arg(long)]
        reason: String,
    },
    /// Make a suspended tenant active again.
    Resume { org: String },
    /// Remove a tenant from the registry.
    Remove { org: String },
}

fn parse_tier(s: &str) -> Result<Tier, String> {
    Tier::parse(s).ok_or_else(|| format!("unknown tier `{s}`: expected pool, bridge or silo"))
}

fn parse_model(s: &str) -> Result<ModelRef, String> {
    match s.split_once('@') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() => Ok(ModelRef {
            name: name.into(),
            version: version.into(),
        }),
        _ => Err(format!(
            "expected NAME@VERSION (e.g. eta-DL@production), got `{s}`"
        )),
    }
}

/// `state_dir`: where the model registry lives by default (`<state-dir>/data-plane`).
pub fn run_registry(path: &Path, state_dir: &Path, cmd: RegistryCmd) -> Result<()> {
    match cmd {
        RegistryCmd::Models(cmd) => crate::models::cli::run_registry(state_dir, cmd)?,
        RegistryCmd::Init { from, force } => {
            let (bytes, source) = match &from {
                Some(f) => (
                    std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
                    f.display().to_string(),
                ),
                None => (
                    DEV_REGISTRY.as_bytes().to_vec(),
                    "the bundled dev registry".to_string(),
                ),
            };
            let r = store::init(path, &bytes, &source, force)?;
            println!(
                "wrote {} from {source}: revision {}, {} tenants, etag {}",
                path.display(),
                r.document().revision,
                r.document().tenants.len(),
                etag(&bytes)
            );
        }
        RegistryCmd::Check { file } => {
            let file = file.as_deref().unwrap_or(path);
            let loaded = store::load(file)?;
            let doc = loaded.registry.document();
            println!(
                "{}: valid: revision {}, {} tenants, {} data planes, {} regions, {} plans, etag {}",
                file.display(),
                doc.revision,
                doc.tenants.len(),
                doc.data_planes.len(),
                doc.regions.len(),
                doc.plans.len(),
                etag(&loaded.bytes)
            );
        }
    }
    Ok(())
}

pub fn run_tenant(path: &Path, cmd: TenantCmd) -> Result<()> {
    let edit = match cmd {
        TenantCmd::List => {
            print!("{}", list(&store::load(path)?.registry));
            return Ok(());
        }
        TenantCmd::Show { org } => {
            let r = store::load(path)?.registry;
            let t = r
                .tenant(&org)
                .with_context(|| format!("no tenant `{org}` in {}", path.display()))?;
            print!("{}", show(&r, &t));
            return Ok(());
        }
        TenantCmd::Add {
            org,
            name,
            tier,
            region,
            data_plane,
            residency,
            plan,
            model,
            max_concurrency,
        } => Edit::Add {
            org_id: org,
            spec: TenantSpec {
                name,
                tier,
                region,
                residency,
                data_plane,
                model,
                plan,
                max_concurrency,
                alert_after_minutes: None,
                status: Status::Active,
                status_reason: None,
            },
        },
        TenantCmd::SetTier {
            org,
            tier,
            data_plane,
        } => Edit::SetTier {
            org_id: org,
            tier,
            data_plane,
        },
        TenantCmd::SetDataPlane { org, data_plane } => Edit::SetDataPlane {
            org_id: org,
            data_plane,
        },
        TenantCmd::SetPlan { org, plan } => Edit::SetPlan { org_id: org, plan },
        TenantCmd::SetModel { org, model } => Edit::SetModel { org_id: org, model },
        TenantCmd::SetConcurrency { org, max } => Edit::SetMaxConcurrency { org_id: org, max },
        TenantCmd::Suspend { org, reason } => Edit::Suspend {
            org_id: org,
            reason,
        },
        TenantCmd::Resume { org } => Edit::Resume { org_id: org },
        TenantCmd::Remove { org } => Edit::Remove { org_id: org },
    };
    let org = edit.org_id().to_string();
    let done = store::edit(path, edit)?;
    println!("{}", describe(&org, &done));
    Ok(())
}

fn model(m: &ModelRef) -> String {
    format!("{}@{}", m.name, m.version)
}

fn status(t: &Tenant<'_>) -> String {
    match t.status {
        Status::Active => "active".into(),
        Status::Suspended => match t.status_reason {
            Some(r) => format!("suspended ({r})"),
            None => "suspended".into(),
        },
    }
}

/// One line: what the edit changed and the revision now in force.
pub fn describe(org: &str, done: &Edited) -> String {
    let revision = done.after.document().revision;
    if !done.changed {
        return format!("{org}: nothing to change; revision {revision} unchanged");
    }
    let (before, after) = (done.before.tenant(org), done.after.tenant(org));
    let what = match (before, after) {
        (None, Some(a)) => format!(
            "added {org} ({}): {}, region {}, data plane {}, plan {}, model {}",
            a.name,
            a.tier.as_str(),
            a.region,
            a.data_plane,
            a.plan,
            model(a.model)
        ),
        (Some(b), None) => format!("removed {org} ({})", b.name),
        (Some(b), Some(a)) => {
            let mut parts = Vec::new();
            let mut diff = |field: &str, b: String, a: String| {
                if b != a {
                    parts.push(format!("{field} {b} -> {a}"));
                }
            };
            diff("tier", b.tier.as_str().into(), a.tier.as_str().into());
            diff("data plane", b.data_plane.into(), a.data_plane.into());
            diff("plan", b.plan.into(), a.plan.into());
            diff("model", model(b.model), model(a.model));
            diff(
                "max concurrency",
                b.max_concurrency.to_string(),
                a.max_concurrency.to_string(),
            );
            diff("status", status(&b), status(&a));
            if parts.is_empty() {
                // E.g. pinning the model the tenant already had by default.
                parts.push("settings made explicit".into());
            }
            format!("{org}: {}", parts.join(", "))
        }
        (None, None) => format!("{org}: changed"),
    };
    format!("{what}; revision {revision}")
}

fn list(r: &Registry) -> String {
    let header = [
        "ORG",
        "TIER",
        "REGION",
        "DATA PLANE",
        "PLAN",
        "MODEL",
        "MAX",
        "STATUS",
        "NAME",
    ];
    let rows: Vec<[String; 9]> = r
        .tenants()
        .map(|t| {
            [
                t.org_id.into(),
                t.tier.as_str().into(),
                match t.residency {
                    Some(z) => format!("{} ({z} only)", t.region),
                    None => t.region.into(),
                },
                t.data_plane.into(),
                t.plan.into(),
                model(t.model),
                t.max_concurrency.to_string(),
                status(&t),
                t.name.into(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn show(r: &Registry, t: &Tenant<'_>) -> String {
    let zone = r.zone_of(t.region).unwrap_or("?");
    let dp = t.data_plane_spec;
    let p = t.plan_spec;
    let rate = [
        (p.per_second, "s"),
        (p.per_minute, "min"),
        (p.per_hour, "h"),
    ]
    .into_iter()
    .find_map(|(n, unit)| n.map(|n| format!("{n}/{unit}")))
    .unwrap_or_default();
    let burst = p.burst.map(|b| format!(", burst {b}")).unwrap_or_default();
    let fields = [
        ("org_id", t.org_id.to_string()),
        ("name", t.name.to_string()),
        ("tier", t.tier.as_str().to_string()),
        ("region", format!("{} (zone {zone})", t.region)),
        ("residency", t.residency.unwrap_or("-").to_string()),
        (
            "data_plane",
            format!(
                "{} (cluster {}, region {})",
                t.data_plane, dp.cluster, dp.region
            ),
        ),
        ("model", model(t.model)),
        ("plan", format!("{} ({rate}{burst})", t.plan)),
        ("max_concurrency", t.max_concurrency.to_string()),
        ("status", status(t)),
    ];
    fields
        .iter()
        .map(|(k, v)| format!("{:<16} {v}\n", format!("{k}:")))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn model_and_tier_arguments() {
        assert_eq!(
            parse_model("eta-DL@3").unwrap(),
            ModelRef {
                name: "eta-DL".into(),
                version: "3".into()
            }
        );
        assert!(parse_model("eta-DL").is_err());
        assert!(parse_model("@3").is_err());
        assert!(parse_model("eta@").is_err());
        assert_eq!(parse_tier("silo").unwrap(), Tier::Silo);
        assert!(
            parse_tier("gold")
                .unwrap_err()
                .contains("pool, bridge or silo")
        );
    }

    #[test]
    fn list_and_show_the_dev_registry() {
        let r = Registry::parse(DEV_REGISTRY.as_bytes()).unwrap();
        let out = list(&r);
        assert_eq!(out.lines().count(), 17);
        let b6 = out.lines().find(|l| l.starts_with("B6 ")).unwrap();
        assert!(b6.contains("eu-west-1 (eu only)"), "{b6}");
        let ua = show(&r, &r.tenant("UA").unwrap());
        assert!(
            ua.contains("data_plane:      silo-ua (cluster dp_silo_ua, region us-east-1)"),
            "{ua}"
        );
        assert!(
            ua.contains("plan:            premium (100/s, burst 200)"),
            "{ua}"
        );
    }
}
