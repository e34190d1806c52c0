//! A throwaway PostgreSQL cluster for tests: `initdb` in a temp dir, the server on a unix
//! socket in it (no TCP port), as the `postgres` OS user when run as root (PostgreSQL
//! refuses to run as root), stopped in immediate mode when dropped. Nothing is skipped:
//! without PostgreSQL installed (scripts/deps.sh installs it) [`Cluster::start`] panics
//! with what to install.
// Test support: a cluster that cannot start fails the test at once, saying why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

/// The port in the socket's name (`.s.PGSQL.<port>`); no TCP listener is opened.
pub const PORT: u16 = 5432;

/// The directory of `initdb`/`pg_ctl`: the newest /usr/lib/postgresql/*/bin (Debian), else
/// wherever PATH has `initdb`.
pub fn pg_bin() -> Option<PathBuf> {
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
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A throwaway cluster, stopped (immediate mode) when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
}

impl Cluster {
    pub fn start() -> Cluster {
        let bin = pg_bin().unwrap_or_else(|| {
            panic!(
                "PostgreSQL server binaries (initdb, pg_ctl) not found under \
                 /usr/lib/postgresql/*/bin or on PATH: install them with scripts/deps.sh \
                 (Debian package `postgresql`)"
            )
        });
        let as_postgres = is_root();
        // Short path: a unix socket path has at most 107 bytes.
        let dir = tempfile::Builder::new()
            .prefix("bh-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::create_dir(dir.path().join("sock")).unwrap();
        if as_postgres {
            let out = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "running as root, so the cluster must run as the `postgres` OS user, but \
                 `chown postgres:` failed (is there a `postgres` user? the Debian package \
                 `postgresql` creates it): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let cluster = Cluster {
            dir,
            bin,
            as_postgres,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let opts = format!(
            "-k {} -c listen_addresses= -p {PORT} -c fsync=off -c max_connections=60",
            cluster.sock().display()
        );
        let log = cluster.dir.path().join("server.log");
        cluster.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &opts,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        cluster
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn sock(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    pub fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    pub fn run(&self, tool: &str, args: &[&str]) {
        let out = self
            .command(tool)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "PostgreSQL could not be started: {tool} failed ({}):\n{}\n{}\nserver log:\n{log}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The main database as the superuser (the loader's connection), `key=value` form.
    pub fn url(&self) -> String {
        self.url_as("postgres", "postgres")
    }

    pub fn url_as(&self, user: &str, db: &str) -> String {
        format!(
            "host={} port={PORT} user={user} dbname={db}",
            self.sock().display()
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                self.data().to_str().unwrap_or(""),
                "-m",
                "immediate",
                "-w",
            ])
            .arg("stop")
            .output();
    }
}
