//! Tenant-scoped feature lookups over PostgreSQL, laid out by the tenant's tier:
//!
//! ```text
//! pool    main database, bulkhead_pool.<table> (tenant_id, key, …) for each tenant table
//!         (lanes, planes): one table for every pool tenant, ROW LEVEL SECURITY enabled and
//!         FORCED, policy USING (tenant_id = current_setting('bulkhead.tenant', true));
//!         read as role bulkhead_reader (NOSUPERUSER NOBYPASSRLS, not the owner), with the
//!         tenant set per transaction by set_config('bulkhead.tenant', $1, true).
//! bridge  main database, schema tenant_<org> (lowercased): read as role
//!         bulkhead_reader_<org>, the only role (besides the owner) granted USAGE on it.
//! silo    database bulkhead_<org>, schema tenant_<org> inside it: CONNECT revoked from
//!         PUBLIC and granted to bulkhead_reader_<org> only.
//! public  main database, bulkhead_public.weather: USAGE and SELECT granted to PUBLIC.
//! ```
//!
//! The tables are owned by `bulkhead_owner` (NOLOGIN), never by a role that reads them.
//!
//! How isolation holds, by tier:
//! - pool: the lookup filters on `tenant_id = $2` and, should a query ever forget that, the
//!   row-level policy still hides every row that is not the transaction's tenant (and all
//!   rows when no tenant is set). FORCE makes the policy bind the table's owner too; the
//!   reader is not the owner and has no BYPASSRLS anyway.
//! - bridge: the connection logs in as the tenant's own role; its `search_path` is the
//!   tenant's schema, and another tenant's schema is "permission denied" to it even when
//!   named outright. The pool schema is not granted to it either.
//! - silo: the connection logs in as the tenant's own role to the tenant's own database;
//!   other tenants' roles cannot connect to it. Public tables are read over a second small
//!   pool to the main database as the same role.
//!
//! A model call's lookups share one read-only transaction on one connection
//! ([`PgCallFeatures`]): the tenant is set once per call, each lookup is one round trip,
//! and the call's end (`FeatureSource::end_call`) rolls it back and returns the connection.
//!
//! Every tenant has its own bounded connection pools ([`PgOptions::pool_size`]); a checkout
//! waits at most [`PgOptions::checkout_timeout`] and then the plugin gets an error string.
//! Every connection carries `statement_timeout` and `lock_timeout`
//! ([`PgOptions::statement_timeout`]), `default_transaction_read_only` and an
//! `idle_in_transaction_session_timeout`, so one tenant's slow query cannot hold a
//! connection or a lock for long, nor take another tenant's connections.
//!
//! SQL is built only from [`schema`] identifiers and from schema/database names derived from
//! the tenant id by [`tenant_ident`] (which admits `[a-z0-9_]` only); the key and the tenant
//! are always bound parameters.

use super::load::Lane;
use super::schema::{self, Kind, LANES, Scope, TABLES, Table, WEATHER};
use crate::sandbox::{FeatureSource, Value};
use anyhow::{Context, Result, bail};
use bulkhead_registry::Tier;
use postgres::config::Host;
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, Config, NoTls, Row, Statement};
use r2d2::{Pool, PooledConnection};
use r2d2_postgres::PostgresConnectionManager;
use rusqlite::types::Value as Sql;
use scheduled_thread_pool::ScheduledThreadPool;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The role pool tenants' lookups run as (not the tables' owner; no BYPASSRLS).
pub const READER_ROLE: &str = "bulkhead_reader";
/// The role that owns every feature table (NOLOGIN).
pub const OWNER_ROLE: &str = "bulkhead_owner";
/// The schema of the shared pool tables (row-level security).
pub const POOL_SCHEMA: &str = "bulkhead_pool";
/// The schema of the public tables, readable by every role.
pub const PUBLIC_SCHEMA: &str = "bulkhead_public";
/// The setting the row-level policy reads (set per transaction).
pub const TENANT_SETTING: &str = "bulkhead.tenant";
/// The row-level policy on the pool tables.
pub const POLICY: &str = "bulkhead_tenant_isolation";

/// Bounds of each tenant's connections.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `statement_timeout` (and `lock_timeout`) of every lookup connection.
    pub statement_timeout: Duration,
    /// Most connections one tenant holds (per pool).
    pub pool_size: u32,
    /// Longest wait for a free connection before the lookup fails.
    pub checkout_timeout: Duration,
    /// Longest wait to open a connection.
    pub connect_timeout: Duration,
    /// The password of the reader roles, if the server asks for one (the loader creates them
    /// without one: trust/peer/cert authentication, or set one out of band).
    pub reader_password: Option<String>,
}

impl Default for PgOptions {
    fn default() -> PgOptions {
        PgOptions {
            statement_timeout: Duration::from_millis(50),
            pool_size: 4,
            checkout_timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(2),
            reader_password: None,
        }
    }
}

/// The tenant id as the suffix of its PostgreSQL names (`tenant_<id>`, `bulkhead_<id>`,
/// `bulkhead_reader_<id>`): lowercased; only ids of 1-40 characters from `[A-Za-z0-9_]`
/// can name a schema (the registry also admits `.` and `-`: such tenants are refused here).
pub fn tenant_ident(tenant: &str) -> Result<String, String> {
    let ok = !tenant.is_empty()
        && tenant.len() <= 40
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(tenant.to_ascii_lowercase())
    } else {
        Err(format!(
            "tenant id {tenant:?} cannot name a PostgreSQL schema (1-40 of [A-Za-z0-9_])"
        ))
    }
}

/// Where a tenant's rows live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub tier: Tier,
    /// The schema of the tenant's tables.
    pub schema: String,
    /// The tenant's own database (silo), else `None` (the main database).
    pub database: Option<String>,
    /// The role its lookups log in as.
    pub role: String,
}

impl Placement {
    pub fn of(tenant: &str, tier: Tier) -> Result<Placement, String> {
        let id = tenant_ident(tenant)?;
        Ok(match tier {
            Tier::Pool => Placement {
                tier,
                schema: POOL_SCHEMA.into(),
                database: None,
                role: READER_ROLE.into(),
            },
            Tier::Bridge => Placement {
                tier,
                schema: format!("tenant_{id}"),
                database: None,
                role: format!("bulkhead_reader_{id}"),
            },
            Tier::Silo => Placement {
                tier,
                schema: format!("tenant_{id}"),
                database: Some(format!("bulkhead_{id}")),
                role: format!("bulkhead_reader_{id}"),
            },
        })
    }
}

/// A connection checked out of a tenant's pool.
pub type PgConn = PooledConnection<Manager>;
type PgPool = Pool<Manager>;

/// `r2d2_postgres`'s manager, with connect errors that keep the server's message (so an
/// exhausted or unreachable pool says why: e.g. `role "bulkhead_reader_x" does not exist`
/// for a bridge or silo tenant that was never loaded).
#[derive(Debug)]
pub struct Manager(PostgresConnectionManager<NoTls>);

/// Why a pool could not open a connection.
#[derive(Debug)]
pub struct ConnectError(String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = LookupClient;
    type Error = ConnectError;

    fn connect(&self) -> Result<LookupClient, ConnectError> {
        let client = self.0.connect().map_err(|e| ConnectError(describe(&e)))?;
        Ok(LookupClient {
            client,
            statements: HashMap::new(),
        })
    }

    fn is_valid(&self, c: &mut LookupClient) -> Result<(), ConnectError> {
        self.0
            .is_valid(&mut c.client)
            .map_err(|e| ConnectError(describe(&e)))
    }

    fn has_broken(&self, c: &mut LookupClient) -> bool {
        self.0.has_broken(&mut c.client)
    }
}

/// Most statements one connection keeps prepared. The SQL varies only with the table and
/// the columns a plugin asks for, so a real model uses a handful; a plugin asking for
/// ever-new column lists cannot grow the server's memory past this.
const MAX_STATEMENTS: usize = 32;

/// A pooled lookup connection and the lookup statements prepared on it, by SQL text: the
/// server parses and plans each once per connection, and a lookup is one Bind/Execute.
pub struct LookupClient {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl LookupClient {
    /// `sql` prepared on this connection (its parameters all `text`).
    fn statement(&mut self, sql: &str, params: usize) -> Result<Statement, postgres::Error> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client.prepare_typed(sql, &vec![Type::TEXT; params])?;
        if self.statements.len() >= MAX_STATEMENTS {
            // Dropping a `Statement` closes it on the server.
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    /// After an error the cached plans may be what failed (a table reloaded with other
    /// column types): prepare afresh.
    fn forget_statements(&mut self) {
        self.statements.clear();
    }
}

// The connection is a `Client` to everything else (tests, the statement-timeout checks).
impl std::ops::Deref for LookupClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for LookupClient {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Every tenant's lookups against one PostgreSQL server.
pub struct PgFeatureStores {
    base: Config,
    options: PgOptions,
    /// One handle per tenant, for the tier it was last asked for.
    handles: Mutex<HashMap<String, Arc<PgTenantFeatures>>>,
}

impl PgFeatureStores {
    /// `url`: the main database (a `postgresql://` URL or `key=value` string); its user and
    /// password are not used for lookups, only its host, port and database name.
    pub fn new(url: &str, options: PgOptions) -> Result<PgFeatureStores> {
        let base = Config::from_str(url).context("the PostgreSQL connection string")?;
        Ok(PgFeatureStores {
            base,
            options,
            handles: Mutex::new(HashMap::new()),
        })
    }

    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    /// The lookups of `tenant` (the verified tenant of a request) at its registry `tier`.
    /// Pools are made on first use and kept per tenant; no connection is opened until a
    /// lookup needs one. When the tenant's tier changes (a registry edit: pool → bridge,
    /// say), the next call gets a new handle with the new placement and the old handle is
    /// dropped from the map: calls still holding it finish on it, then its pools close.
    /// So the map holds one handle per tenant seen, bounded by the registry.
    pub fn for_tenant(&self, tenant: &str, tier: Tier) -> Arc<PgTenantFeatures> {
        let mut handles = self.handles.lock().unwrap_or_else(PoisonError::into_inner);
        // Looked up by `&str`: no allocation on the request path once a tenant has a handle.
        if let Some(h) = handles.get(tenant).filter(|h| h.tier == tier) {
            return Arc::clone(h);
        }
        let h = Arc::new(self.make(tenant, tier));
        handles.insert(tenant.to_string(), Arc::clone(&h));
        h
    }

    /// Start-up check: the pool reader can log in to the main database and run a query
    /// there (the server is reachable and `features load --postgres` has created the
    /// roles). Returns the server's version.
    pub fn check(&self) -> Result<String> {
        let main_db = self.base.get_dbname().unwrap_or("postgres");
        let cfg = reader_config(
            &self.base,
            &self.options,
            READER_ROLE,
            main_db,
            PUBLIC_SCHEMA,
        );
        let mut client = cfg
            .connect(NoTls)
            .map_err(|e| anyhow::anyhow!("{}", describe(&e)))
            .with_context(|| format!("connecting as {READER_ROLE} to database {main_db}"))?;
        let v: String = client
            .query_one("SHOW server_version", &[])
            .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?
            .get(0);
        Ok(v)
    }

    fn make(&self, tenant: &str, tier: Tier) -> PgTenantFeatures {
        let placement = Placement::of(tenant, tier);
        let pools = placement.as_ref().ok().map(|p| {
            let main_db = self.base.get_dbname().unwrap_or("postgres").to_string();
            let data_db = p.database.clone().unwrap_or_else(|| main_db.clone());
            let search_path = if p.tier == Tier::Pool {
                POOL_SCHEMA.to_string()
            } else {
                p.schema.clone()
            };
            let data = self.pool(&p.role, &data_db, &search_path);
            // A silo tenant reads the public tables in the main database over a pool of
            // its own, as its own role.
            let public =
                (p.database.is_some()).then(|| self.pool(&p.role, &main_db, PUBLIC_SCHEMA));
            (data, public)
        });
        let (data, public) = match pools {
            Some((d, p)) => (Some(d), p),
            None => (None, None),
        };
        PgTenantFeatures {
            tenant: tenant.to_string(),
            tier,
            placement,
            data,
            public,
            checkout_timeout: self.checkout_timeout(),
        }
    }

    fn checkout_timeout(&self) -> Duration {
        self.options.checkout_timeout.max(Duration::from_millis(1))
    }

    fn pool(&self, role: &str, dbname: &str, search_path: &str) -> PgPool {
        let cfg = reader_config(&self.base, &self.options, role, dbname, search_path);
        Pool::builder()
            .max_size(self.options.pool_size.max(1))
            .min_idle(Some(0))
            .connection_timeout(self.checkout_timeout())
            .test_on_check_out(false)
            .idle_timeout(Some(Duration::from_secs(60)))
            .max_lifetime(Some(Duration::from_secs(30 * 60)))
            .thread_pool(Arc::new(ScheduledThreadPool::new(1)))
            .build_unchecked(Manager(PostgresConnectionManager::new(cfg, NoTls)))
    }
}

/// The connection settings of a reader: the server (hosts, ports, TLS mode) of `base`, the
/// given role and database, no password of `base`'s, and the per-connection limits.
pub fn reader_config(
    base: &Config,
    options: &PgOptions,
    role: &str,
    dbname: &str,
    search_path: &str,
) -> Config {
    let mut cfg = Config::new();
    for host in base.get_hosts() {
        match host {
            Host::Tcp(h) => cfg.host(h),
            Host::Unix(p) => cfg.host_path(p),
        };
    }
    for addr in base.get_hostaddrs() {
        cfg.hostaddr(*addr);
    }
    for port in base.get_ports() {
        cfg.port(*port);
    }
    cfg.ssl_mode(base.get_ssl_mode());
    cfg.user(role).dbname(dbname);
    if let Some(pw) = &options.reader_password {
        cfg.password(pw.as_bytes());
    }
    let ms = options.statement_timeout.as_millis().max(1);
    // Identifiers here are ours ([a-z0-9_]); no spaces or backslashes to escape.
    cfg.options(&format!(
        "-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={} \
         -c default_transaction_read_only=on -c search_path={search_path}",
        (ms * 20).max(1000)
    ));
    cfg.application_name("bulkhead-features");
    cfg.connect_timeout(options.connect_timeout.max(Duration::from_millis(1)));
    cfg
}

/// One tenant's lookups over its own pools.
pub struct PgTenantFeatures {
    tenant: String,
    /// The tier the handle was made for (its placement follows from it).
    tier: Tier,
    placement: Result<Placement, String>,
    /// The tenant's tables (and, but for silo, the public ones).
    data: Option<PgPool>,
    /// Silo only: the public tables in the main database.
    public: Option<PgPool>,
    checkout_timeout: Duration,
}

impl PgTenantFeatures {
    /// The lookups of one model call (see [`PgCallFeatures`]).
    pub fn for_call(self: &Arc<Self>) -> PgCallFeatures {
        PgCallFeatures {
            tenant: Arc::clone(self),
            sessions: Mutex::new(Sessions::default()),
        }
    }

    pub fn placement(&self) -> Result<&Placement, String> {
        self.placement.as_ref().map_err(Clone::clone)
    }

    /// A connection from the pool the tenant's own tables are read through (bounded: an
    /// error after [`PgOptions::checkout_timeout`] when all are in use).
    pub fn checkout(&self) -> Result<PgConn, String> {
        self.checkout_from(self.data.as_ref())
    }

    fn checkout_from(&self, pool: Option<&PgPool>) -> Result<PgConn, String> {
        let placement = self.placement()?;
        let Some(pool) = pool else {
            return Err(format!("feature store: no pool for tenant {}", self.tenant));
        };
        pool.get().map_err(|e| {
            format!(
                "feature store busy: tenant {} had no free connection within {} ms \
                 ({} in its {} pool): {e}",
                self.tenant,
                self.checkout_timeout.as_millis(),
                pool.max_size(),
                placement.tier.as_str(),
            )
        })
    }

    /// One lookup on `sessions` (the call's open transactions, opened here on first use):
    /// one round trip once the session is open; a session the server closed under us
    /// (idle timeout, restart) is retried once.
    fn lookup_in(
        &self,
        sessions: &mut Sessions,
        table: &'static Table,
        key: &str,
        columns: &[String],
    ) -> Result<Option<Vec<Value>>, String> {
        let placement = self.placement()?;
        let silo_public = table.scope == Scope::Public && self.public.is_some();
        let (slot, pool) = if silo_public {
            (&mut sessions.public, self.public.as_ref())
        } else {
            (&mut sessions.data, self.data.as_ref())
        };
        let sql = lookup_sql(table, placement, columns);
        let tenant_key: [&(dyn ToSql + Sync); 2] = [&key, &self.tenant];
        // The pool-tier SELECT binds the tenant as $2 too (the policy is the second wall).
        let params = if table.scope == Scope::Tenant && placement.tier == Tier::Pool {
            &tenant_key[..]
        } else {
            &tenant_key[..1]
        };
        let mut answer = self.query_in(slot, pool, &sql, params);
        if matches!(answer, Err(Failed::Query { stale: true, .. })) {
            // The server closed the call's session under it (idle timeout, restart): once
            // more, on a fresh one.
            answer = self.query_in(slot, pool, &sql, params);
        }
        match answer {
            Ok(row) => row.map(|r| values(&r, table, columns)).transpose(),
            Err(Failed::Open(e)) => Err(e),
            // Not loaded yet (no schema or table): no such row, as for a tenant without a
            // SQLite file.
            Err(Failed::Query { error, .. })
                if error.code() == Some(&SqlState::UNDEFINED_TABLE)
                    || error.code() == Some(&SqlState::INVALID_SCHEMA_NAME) =>
            {
                Ok(None)
            }
            Err(Failed::Query { error, .. }) => Err(pg_err(error)),
        }
    }

    /// `sql` on the call's session in `slot` (opened from `pool` if there is none). A
    /// failed statement aborts PostgreSQL's transaction, so on any error the session is
    /// closed and the next lookup opens a fresh one.
    fn query_in(
        &self,
        slot: &mut Option<Session>,
        pool: Option<&PgPool>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Failed> {
        let reused = slot.is_some();
        let mut session = match slot.take() {
            Some(s) => s,
            None => self.open(pool).map_err(Failed::Open)?,
        };
        let answer = session
            .conn
            .statement(sql, params.len())
            .and_then(|st| session.conn.query_opt(&st, params));
        match answer {
            Ok(row) => {
                *slot = Some(session);
                Ok(row)
            }
            Err(error) => {
                let closed = session.conn.is_closed()
                    || error.is_closed()
                    || error.code() == Some(&SqlState::ADMIN_SHUTDOWN);
                session.conn.forget_statements();
                Err(Failed::Query {
                    error,
                    stale: closed && reused,
                })
            }
        }
    }

    /// A connection from `pool` inside a read-only transaction, with the tenant set for
    /// the row-level policy on pool-tier connections (a bound value, transaction-local).
    fn open(&self, pool: Option<&PgPool>) -> Result<Session, String> {
        let mut conn = self.checkout_from(pool)?;
        // The leading ROLLBACK only warns on a clean connection; on one returned still inside
        // a transaction (its ROLLBACK failed) it starts us clean. Same round trip.
        conn.batch_execute("ROLLBACK; BEGIN READ ONLY")
            .map_err(pg_err)?;
        if self.tier == Tier::Pool {
            let set = conn
                .statement("SELECT set_config('bulkhead.tenant', $1, true)", 1)
                .map_err(pg_err)?;
            conn.query(&set, &[&self.tenant]).map_err(pg_err)?;
        }
        Ok(Session { conn })
    }
}

/// The SELECT of one lookup: identifiers from [`schema`] (checked) and from the placement.
fn lookup_sql(table: &Table, placement: &Placement, columns: &[String]) -> String {
    let cols = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    match (table.scope, placement.tier) {
        (Scope::Public, _) => format!(
            "SELECT {cols} FROM \"{PUBLIC_SCHEMA}\".\"{}\" WHERE key = $1",
            table.name
        ),
        (Scope::Tenant, Tier::Pool) => format!(
            "SELECT {cols} FROM \"{POOL_SCHEMA}\".\"{}\" WHERE key = $1 AND tenant_id = $2",
            table.name
        ),
        (Scope::Tenant, Tier::Bridge | Tier::Silo) => format!(
            "SELECT {cols} FROM \"{}\".\"{}\" WHERE key = $1",
            placement.schema, table.name
        ),
    }
}

/// A connection checked out for one call, inside its read-only transaction. Dropping it
/// ends the transaction (ROLLBACK: it only read) and returns the connection to the pool.
struct Session {
    conn: PgConn,
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.conn.is_closed() {
            // A failure leaves the connection in its transaction; the next `open` on it
            // rolls back first, and the server's idle-in-transaction timeout bounds it.
            let _ = self.conn.batch_execute("ROLLBACK");
        }
    }
}

/// Why [`PgTenantFeatures::query_in`] failed.
enum Failed {
    /// No session could be opened (pool busy, connect refused): the plugin's error.
    Open(String),
    /// The statement failed; `stale` when it ran on a reused session the server had closed.
    Query { error: postgres::Error, stale: bool },
}

/// A call's open sessions: the tenant's data pool, and (silo only) its public-table pool.
#[derive(Default)]
struct Sessions {
    data: Option<Session>,
    public: Option<Session>,
}

/// One model call's lookups for one tenant ([`PgTenantFeatures::for_call`]): the call's
/// first lookup checks a connection out of the tenant's pool and opens one read-only
/// transaction; the call's later lookups reuse it, one round trip each (a transaction per
/// lookup cost six). The connection goes back to the pool when the call drops this, so a
/// call holds at most one connection per pool, for as long as the call runs (bounded by
/// the model's wall-time limit).
pub struct PgCallFeatures {
    tenant: Arc<PgTenantFeatures>,
    sessions: Mutex<Sessions>,
}

impl FeatureSource for PgCallFeatures {
    fn lookup(
        &self,
        table: &str,
        key: &str,
        columns: &[String],
    ) -> Result<Option<Vec<Value>>, String> {
        let t = schema::checked(table, columns)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        self.tenant.lookup_in(&mut sessions, t, key, columns)
    }

    fn end_call(&self) {
        // Taken out of the lock, then dropped: ROLLBACK, and back to the pool.
        let sessions =
            std::mem::take(&mut *self.sessions.lock().unwrap_or_else(PoisonError::into_inner));
        drop(sessions);
    }
}

/// The row's `columns` of `table` as values, each read by its schema kind.
fn values(row: &Row, table: &Table, columns: &[String]) -> Result<Vec<Value>, String> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(match table.column(c).unwrap_or(Kind::Text) {
                Kind::Real => row
                    .try_get::<_, Option<f64>>(i)
                    .map_err(pg_err)?
                    .map_or(Value::Missing, Value::Number),
                Kind::Integer => row
                    .try_get::<_, Option<i64>>(i)
                    .map_err(pg_err)?
                    .map_or(Value::Missing, |n| Value::Number(n as f64)),
                Kind::Text => row
                    .try_get::<_, Option<String>>(i)
                    .map_err(pg_err)?
                    .map_or(Value::Missing, Value::Category),
            })
        })
        .collect()
}

/// A PostgreSQL error as the plugin's error string (the server's message and SQLSTATE).
pub fn pg_err(e: postgres::Error) -> String {
    format!("feature store: {}", describe(&e))
}

impl FeatureSource for PgTenantFeatures {
    fn lookup(
        &self,
        table: &str,
        key: &str,
        columns: &[String],
    ) -> Result<Option<Vec<Value>>, String> {
        // A single lookup: its own transaction, ended before this returns.
        let t = schema::checked(table, columns)?;
        self.lookup_in(&mut Sessions::default(), t, key, columns)
    }
}

// ----------------------------------------------------------------------------------------
// Loading (`bulkhead features load --postgres URL`): run as a role that may create roles,
// schemas and databases (a superuser, or the owner with CREATEROLE and CREATEDB).

/// Serializes loaders on one server (roles and databases are cluster-wide).
const LOAD_LOCK: i64 = 0x6275_6c6b_6865_6164; // "bulkhead"

fn pg_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Real => "double precision",
        Kind::Integer => "bigint",
        Kind::Text => "text",
    }
}

fn column_defs(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|(c, k)| format!("\"{c}\" {}", pg_type(*k)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CREATE ROLE` unless it exists (roles have no IF NOT EXISTS).
fn ensure_role(client: &mut Client, role: &str, attrs: &str) -> Result<()> {
    let exists = client
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])?
        .is_some();
    if !exists {
        client.batch_execute(&format!("CREATE ROLE \"{role}\" {attrs}"))?;
    }
    // Whatever it was created with, a reader may never bypass row-level security.
    client.batch_execute(&format!(
        "ALTER ROLE \"{role}\" NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
    ))?;
    Ok(())
}

fn admin(url: &str) -> Result<Client> {
    let cfg = Config::from_str(url).context("the PostgreSQL connection string")?;
    let mut client = cfg
        .connect(NoTls)
        .with_context(|| format!("connecting to PostgreSQL ({})", redact(url)))?;
    client.query_one("SELECT pg_advisory_lock($1)", &[&LOAD_LOCK])?;
    Ok(client)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match Config::from_str(url) {
        Ok(cfg) => format!(
            "user {:?}, database {:?}, hosts {:?}",
            cfg.get_user().unwrap_or(""),
            cfg.get_dbname().unwrap_or(""),
            cfg.get_hosts()
        ),
        Err(_) => "unparsable connection string".into(),
    }
}

/// The roles, the public and pool schemas, their tables (every table of [`TABLES`]: the
/// public ones in the public schema, the tenant ones in the pool schema with `tenant_id`
/// under the row-level policy), grants; safe to run again.
fn ensure_shared(client: &mut Client) -> Result<()> {
    ensure_role(client, OWNER_ROLE, "NOLOGIN")?;
    ensure_role(client, READER_ROLE, "LOGIN NOINHERIT")?;
    let mut sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {PUBLIC_SCHEMA} AUTHORIZATION {OWNER_ROLE};
         GRANT USAGE ON SCHEMA {PUBLIC_SCHEMA} TO PUBLIC;
         CREATE SCHEMA IF NOT EXISTS {POOL_SCHEMA} AUTHORIZATION {OWNER_ROLE};
         REVOKE ALL ON SCHEMA {POOL_SCHEMA} FROM PUBLIC;
         GRANT USAGE ON SCHEMA {POOL_SCHEMA} TO {READER_ROLE};\n"
    );
    for table in TABLES {
        let (name, cols) = (table.name, column_defs(table));
        sql.push_str(&match table.scope {
            Scope::Public => format!(
                "CREATE TABLE IF NOT EXISTS {PUBLIC_SCHEMA}.{name} (key text PRIMARY KEY, {cols});
                 ALTER TABLE {PUBLIC_SCHEMA}.{name} OWNER TO {OWNER_ROLE};
                 GRANT SELECT ON {PUBLIC_SCHEMA}.{name} TO PUBLIC;\n"
            ),
            Scope::Tenant => format!(
                "CREATE TABLE IF NOT EXISTS {POOL_SCHEMA}.{name} (
                     tenant_id text NOT NULL, key text NOT NULL, {cols},
                     PRIMARY KEY (tenant_id, key));
                 ALTER TABLE {POOL_SCHEMA}.{name} OWNER TO {OWNER_ROLE};
                 ALTER TABLE {POOL_SCHEMA}.{name} ENABLE ROW LEVEL SECURITY;
                 ALTER TABLE {POOL_SCHEMA}.{name} FORCE ROW LEVEL SECURITY;
                 DROP POLICY IF EXISTS {POLICY} ON {POOL_SCHEMA}.{name};
                 CREATE POLICY {POLICY} ON {POOL_SCHEMA}.{name}
                     USING (tenant_id = current_setting('{TENANT_SETTING}', true));
                 REVOKE ALL ON {POOL_SCHEMA}.{name} FROM PUBLIC;
                 GRANT SELECT ON {POOL_SCHEMA}.{name} TO {READER_ROLE};\n"
            ),
        });
    }
    client.batch_execute(&sql)?;
    Ok(())
}

/// A tenant's schema with every tenant table of [`TABLES`], readable by `role` only (and
/// the owner).
fn ensure_tenant_schema(client: &mut Client, schema: &str, role: &str) -> Result<()> {
    let mut sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {OWNER_ROLE};
         REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
         GRANT USAGE ON SCHEMA {schema} TO {role};\n"
    );
    for table in TABLES.iter().filter(|t| t.scope == Scope::Tenant) {
        let (name, cols) = (table.name, column_defs(table));
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {schema}.{name} (key text PRIMARY KEY, {cols});
             ALTER TABLE {schema}.{name} OWNER TO {OWNER_ROLE};
             REVOKE ALL ON {schema}.{name} FROM PUBLIC;
             GRANT SELECT ON {schema}.{name} TO {role};\n"
        ));
    }
    client.batch_execute(&sql)?;
    Ok(())
}

/// One table's rows to load: each row is the key, then the table's columns in order (the
/// shape the SQLite loader writes, see [`super::load`]).
pub type TableRows<'a> = (&'static Table, &'a [Vec<Sql>]);

/// A value of `kind` as a PostgreSQL parameter (NULL for a missing or mistyped value).
fn param(kind: Kind, v: &Sql) -> Box<dyn ToSql + Sync> {
    match (kind, v) {
        (Kind::Real, Sql::Real(x)) => Box::new(Some(*x)),
        (Kind::Real, Sql::Integer(n)) => Box::new(Some(*n as f64)),
        (Kind::Real, _) => Box::new(None::<f64>),
        (Kind::Integer, Sql::Integer(n)) => Box::new(Some(*n)),
        (Kind::Integer, _) => Box::new(None::<i64>),
        (Kind::Text, Sql::Text(t)) => Box::new(Some(t.clone())),
        (Kind::Text, _) => Box::new(None::<String>),
    }
}

/// Deletes `tenant`'s rows of `table` (all rows: `tenant` is `None`) and inserts `rows`
/// (a key seen again is skipped, as in the SQLite store) in `tx`; returns the rows written.
fn replace_rows(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    tenant: Option<&str>,
    table: &Table,
    rows: &[Vec<Sql>],
) -> Result<usize> {
    let quoted: Vec<String> = table
        .columns
        .iter()
        .map(|(c, _)| format!("\"{c}\""))
        .collect();
    let name = table.name;
    let first = usize::from(tenant.is_some()) + 1;
    let marks: Vec<String> = (first..=first + table.columns.len())
        .map(|i| format!("${i}"))
        .collect();
    let (tenant_col, conflict) = match tenant {
        Some(_) => ("tenant_id, ", "(tenant_id, key)"),
        None => ("", "(key)"),
    };
    let tenant_mark = if tenant.is_some() { "$1, " } else { "" };
    match tenant {
        Some(t) => tx.execute(
            &format!("DELETE FROM {schema}.{name} WHERE tenant_id = $1"),
            &[&t],
        )?,
        None => tx.execute(&format!("DELETE FROM {schema}.{name}"), &[])?,
    };
    let stmt = tx.prepare(&format!(
        "INSERT INTO {schema}.{name} ({tenant_col}key, {}) VALUES ({tenant_mark}{}) \
         ON CONFLICT {conflict} DO NOTHING",
        quoted.join(", "),
        marks.join(", ")
    ))?;
    let tenant_param: Option<String> = tenant.map(str::to_string);
    let mut written = 0;
    for row in rows {
        let Some(Sql::Text(key)) = row.first() else {
            bail!("{name}: a row without a text key");
        };
        if row.len() != table.columns.len() + 1 {
            bail!("{name} row {key:?}: {} values", row.len() - 1);
        }
        let values: Vec<Box<dyn ToSql + Sync>> = table
            .columns
            .iter()
            .zip(&row[1..])
            .map(|((_, kind), v)| param(*kind, v))
            .collect();
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(values.len() + 2);
        if let Some(t) = &tenant_param {
            params.push(t);
        }
        params.push(key);
        params.extend(values.iter().map(|b| b.as_ref()));
        written += tx.execute(&stmt, &params)? as usize;
    }
    Ok(written)
}

/// Replaces `tenant`'s rows of each given tenant table where its `tier` keeps them
/// (creating the roles, schemas, database and grants it needs); tables not given keep
/// their rows. Returns the rows written per given table. Readers see the old rows or the
/// new ones (one transaction for all the tables), never a mix.
pub fn load_tenant_postgres(
    url: &str,
    tenant: &str,
    tier: Tier,
    tables: &[TableRows<'_>],
) -> Result<Vec<usize>> {
    if let Some((t, _)) = tables.iter().find(|(t, _)| t.scope != Scope::Tenant) {
        bail!("`{}` is not a tenant table", t.name);
    }
    let placement = Placement::of(tenant, tier).map_err(anyhow::Error::msg)?;
    let mut client = admin(url)?;
    ensure_shared(&mut client)?;
    let mut written = Vec::with_capacity(tables.len());
    match placement.tier {
        Tier::Pool => {
            let mut tx = client.transaction()?;
            // Also the policy's tenant, should the loader be the (forced) owner.
            tx.execute("SELECT set_config('bulkhead.tenant', $1, true)", &[&tenant])?;
            for (table, rows) in tables {
                written.push(replace_rows(
                    &mut tx,
                    POOL_SCHEMA,
                    Some(tenant),
                    table,
                    rows,
                )?);
            }
            tx.commit()?;
        }
        Tier::Bridge | Tier::Silo => {
            ensure_role(&mut client, &placement.role, "LOGIN NOINHERIT")?;
            let mut target = match &placement.database {
                None => None,
                Some(db) => {
                    let exists = client
                        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[db])?
                        .is_some();
                    if !exists {
                        client
                            .batch_execute(&format!("CREATE DATABASE {db} OWNER {OWNER_ROLE}"))?;
                    }
                    client.batch_execute(&format!(
                        "REVOKE ALL ON DATABASE {db} FROM PUBLIC;
                         GRANT CONNECT ON DATABASE {db} TO {}",
                        placement.role
                    ))?;
                    let mut cfg = Config::from_str(url)?;
                    cfg.dbname(db);
                    Some(
                        cfg.connect(NoTls)
                            .with_context(|| format!("connecting to database {db}"))?,
                    )
                }
            };
            let c = target.as_mut().unwrap_or(&mut client);
            ensure_tenant_schema(c, &placement.schema, &placement.role)?;
            let mut tx = c.transaction()?;
            for (table, rows) in tables {
                written.push(replace_rows(&mut tx, &placement.schema, None, table, rows)?);
            }
            tx.commit()?;
        }
    }
    Ok(written)
}

/// Replaces `tenant`'s lanes with `lanes` (see [`load_tenant_postgres`]); returns the
/// lanes written.
pub fn load_postgres(url: &str, tenant: &str, tier: Tier, lanes: &[Lane]) -> Result<usize> {
    let rows = super::load::lane_rows(lanes);
    let n = load_tenant_postgres(url, tenant, tier, &[(&LANES, &rows)])?;
    Ok(n.first().copied().unwrap_or(0))
}

/// Replaces the public weather rows from `weather.csv`; returns the rows written (a key
/// seen again is skipped, as in the SQLite store).
pub fn load_public_postgres(
    url: &str,
    weather_csv: &Path,
    airports: &bulkhead_eta_model::nyc::Airports,
) -> Result<usize> {
    let rows = super::load::read_weather(weather_csv)?;
    let mut client = admin(url)?;
    ensure_shared(&mut client)?;
    let mut tx = client.transaction()?;
    let n = replace_rows(&mut tx, PUBLIC_SCHEMA, None, &WEATHER, &rows)?;
    let zones = super::load::airport_rows(airports);
    replace_rows(
        &mut tx,
        PUBLIC_SCHEMA,
        None,
        &super::schema::AIRPORTS,
        &zones,
    )?;
    tx.commit()?;
    Ok(n)
}
