//! A throwaway PostgreSQL cluster for the feature-store bench: `initdb` in a fresh
//! directory, the server on a unix socket there (no TCP port), as the `postgres` OS user
//! when run as root (PostgreSQL refuses to run as root); stopped and removed when dropped
//! (a failed run too).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

/// The newest /usr/lib/postgresql/*/bin with `initdb` (Debian), else PATH.
fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|p| p.join("initdb").is_file()))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn s(p: &Path) -> Result<&str> {
    p.to_str().context("a non-UTF-8 path")
}

impl Cluster {
    /// Starts a cluster in `dir` (wiped first). A short path: a unix socket path has at
    /// most 107 bytes.
    pub fn start(dir: &Path) -> Result<Cluster> {
        let bin = pg_bin().context(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install them with \
             scripts/deps.sh (Debian package `postgresql`)",
        )?;
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir.join("sock"))?;
        let as_postgres = is_root();
        if as_postgres {
            let out = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir)
                .output()?;
            if !out.status.success() {
                bail!("chown postgres: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        let c = Cluster {
            dir: dir.to_path_buf(),
            bin,
            as_postgres,
        };
        let data = dir.join("data");
        c.run(
            "initdb",
            &[
                "-D",
                s(&data)?,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        // Durability is not what is measured: lookups only read.
        let opts = format!(
            "-k {} -c listen_addresses= -p 5432 -c fsync=off -c max_connections=50 \
             -c shared_buffers=64MB",
            s(&dir.join("sock"))?
        );
        c.run(
            "pg_ctl",
            &[
                "-D",
                s(&data)?,
                "-o",
                &opts,
                "-l",
                s(&dir.join("server.log"))?,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        Ok(c)
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(&self.dir)
            .output()
            .with_context(|| format!("running {tool}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            bail!(
                "{tool} failed ({}): {}{}\n{log}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// The main database as the superuser (`key=value` form).
    pub fn url(&self) -> String {
        format!(
            "host={} port=5432 user=postgres dbname=postgres",
            self.dir.join("sock").display()
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
