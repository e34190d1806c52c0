//! The PostgreSQL feature-store backend against a real, throwaway PostgreSQL cluster: each
//! test runs `initdb` in a temp dir and starts the server on a unix socket in it (as the
//! `postgres` OS user when run as root: PostgreSQL refuses to run as root). Nothing is
//! skipped: without PostgreSQL installed (scripts/deps.sh installs it) every test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead::features::load::Lane;
use bulkhead::features::postgres::{
    OWNER_ROLE, PgFeatureStores, PgOptions, READER_ROLE, load_postgres, load_public_postgres,
    load_tenant_postgres,
};
use bulkhead::features::schema::{LANES, PLANES};
use bulkhead::sandbox::{FeatureSource, Value};
use bulkhead_registry::Tier;
use bulkhead_testkit::postgres::Cluster;
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};
use rusqlite::types::Value as Sql;
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// The throwaway cluster (testkit) with the PostgreSQL client helpers these tests use.
trait Connect {
    fn connect(&self, user: &str, db: &str) -> Result<Client, postgres::Error>;
    fn admin(&self) -> Client;
}

impl Connect for Cluster {
    fn connect(&self, user: &str, db: &str) -> Result<Client, postgres::Error> {
        Config::from_str(&self.url_as(user, db))
            .unwrap()
            .connect(NoTls)
    }

    fn admin(&self) -> Client {
        self.connect("postgres", "postgres").unwrap()
    }
}

/// The `count(*)` a query returns, on any client (connection, transaction, pooled).
macro_rules! count {
    ($client:expr, $sql:expr) => {
        $client.query_one($sql, &[]).unwrap().get::<_, i64>(0)
    };
}

fn lane(key: &str, flights: i64, mean_eta: f64) -> Lane {
    Lane {
        key: key.into(),
        flights,
        mean_eta,
        p80_eta: mean_eta + 10.0,
        mean_dep_delay: None,
        distance: 719.0,
    }
}

fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn stores(cluster: &Cluster) -> PgFeatureStores {
    PgFeatureStores::new(&cluster.url(), PgOptions::default()).unwrap()
}

fn get(s: &PgFeatureStores, tenant: &str, tier: Tier, key: &str) -> Option<Vec<Value>> {
    s.for_tenant(tenant, tier)
        .lookup(
            "lanes",
            key,
            &cols(&["flights", "mean_eta", "mean_dep_delay"]),
        )
        .unwrap_or_else(|e| panic!("{tenant}: lookup {key}: {e}"))
}

fn sqlstate(e: &postgres::Error) -> Option<&SqlState> {
    e.code()
}

#[test]
fn pool_tenants_read_only_their_own_lanes() {
    let pg = Cluster::start();
    assert_eq!(
        load_postgres(
            &pg.url(),
            "AA",
            Tier::Pool,
            &[lane("EWR|ORD", 3, 150.0), lane("JFK|LAX", 2, 330.0)]
        )
        .unwrap(),
        2
    );
    load_postgres(&pg.url(), "B6", Tier::Pool, &[lane("EWR|ATL", 1, 130.0)]).unwrap();
    let s = stores(&pg);

    assert_eq!(
        get(&s, "AA", Tier::Pool, "EWR|ORD"),
        Some(vec![
            Value::Number(3.0),
            Value::Number(150.0),
            Value::Missing
        ])
    );
    // The same key asked by another pool tenant: nothing, not AA's row.
    assert_eq!(get(&s, "B6", Tier::Pool, "EWR|ORD"), None);
    assert_eq!(
        get(&s, "B6", Tier::Pool, "EWR|ATL"),
        Some(vec![
            Value::Number(1.0),
            Value::Number(130.0),
            Value::Missing
        ])
    );
    assert_eq!(get(&s, "AA", Tier::Pool, "EWR|ATL"), None);
    // A pool tenant with no rows at all.
    assert_eq!(get(&s, "UA", Tier::Pool, "EWR|ORD"), None);

    // Reloading replaces the tenant's rows only.
    load_postgres(&pg.url(), "AA", Tier::Pool, &[lane("EWR|ORD", 4, 151.0)]).unwrap();
    assert_eq!(
        get(&s, "AA", Tier::Pool, "EWR|ORD"),
        Some(vec![
            Value::Number(4.0),
            Value::Number(151.0),
            Value::Missing
        ])
    );
    assert_eq!(get(&s, "AA", Tier::Pool, "JFK|LAX"), None);
    assert!(get(&s, "B6", Tier::Pool, "EWR|ATL").is_some());

    // The allowlist and its messages are the SQLite store's.
    let aa = s.for_tenant("AA", Tier::Pool);
    let e = aa.lookup("flights", "x", &cols(&["a"])).unwrap_err();
    assert_eq!(
        e,
        "unknown table `flights` (known: lanes, planes, weather, airports)"
    );
    let e = aa
        .lookup("lanes", "EWR|ORD", &cols(&["tenant_id"]))
        .unwrap_err();
    assert!(
        e.starts_with("table `lanes` has no column `tenant_id` (known: flights,"),
        "{e}"
    );
    assert_eq!(
        aa.lookup("lanes", "EWR|ORD", &[]).unwrap_err(),
        "ask for 1-32 columns"
    );
    // A key that looks like SQL is only ever a bound value.
    assert_eq!(
        aa.lookup("lanes", "x' OR '1'='1", &cols(&["flights"]))
            .unwrap(),
        None
    );
    // A tenant id that cannot name a schema is refused, not mangled.
    let e = s
        .for_tenant("a-b", Tier::Bridge)
        .lookup("lanes", "EWR|ORD", &cols(&["flights"]))
        .unwrap_err();
    assert!(e.contains("cannot name a PostgreSQL schema"), "{e}");
}

#[test]
fn row_level_security_hides_other_tenants_rows_even_without_a_tenant_filter() {
    let pg = Cluster::start();
    load_postgres(
        &pg.url(),
        "AA",
        Tier::Pool,
        &[lane("EWR|ORD", 3, 150.0), lane("JFK|LAX", 2, 330.0)],
    )
    .unwrap();
    load_postgres(&pg.url(), "B6", Tier::Pool, &[lane("EWR|ATL", 1, 130.0)]).unwrap();
    let mut admin = pg.admin();

    // The reader is not the owner, not a superuser and cannot bypass RLS; RLS is forced.
    let r = admin
        .query_one(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
            &[&READER_ROLE],
        )
        .unwrap();
    assert!(!r.get::<_, bool>(0) && !r.get::<_, bool>(1));
    let t = admin
        .query_one(
            "SELECT c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner)::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'bulkhead_pool' AND c.relname = 'lanes'",
            &[],
        )
        .unwrap();
    assert!(t.get::<_, bool>(0), "row level security is enabled");
    assert!(t.get::<_, bool>(1), "row level security is forced");
    assert_eq!(t.get::<_, String>(2), OWNER_ROLE);

    // As the reader, tenant B6 set for the transaction, and the bug: no tenant filter at all.
    let mut reader = pg.connect(READER_ROLE, "postgres").unwrap();
    let mut tx = reader.transaction().unwrap();
    tx.execute("SELECT set_config('bulkhead.tenant', $1, true)", &[&"B6"])
        .unwrap();
    let n = count!(tx, "SELECT count(*) FROM bulkhead_pool.lanes");
    assert_eq!(n, 1, "only B6's row, though the query names no tenant");
    let tenants: Vec<String> = tx
        .query("SELECT DISTINCT tenant_id FROM bulkhead_pool.lanes", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tenants, ["B6"]);
    tx.commit().unwrap();
    // The setting was transaction-local: the next transaction has no tenant, so no rows.
    let mut tx = reader.transaction().unwrap();
    let n = count!(tx, "SELECT count(*) FROM bulkhead_pool.lanes");
    assert_eq!(n, 0, "no tenant set: no rows at all");
    tx.commit().unwrap();
    // Outside any explicit transaction, too.
    let n = count!(reader, "SELECT count(*) FROM bulkhead_pool.lanes");
    assert_eq!(n, 0);

    // The same on a real lookup connection of B6's pool (search_path = bulkhead_pool).
    let s = stores(&pg);
    let b6 = s.for_tenant("B6", Tier::Pool);
    let mut conn = b6.checkout().unwrap();
    let mut tx = conn.transaction().unwrap();
    tx.execute("SELECT set_config('bulkhead.tenant', $1, true)", &[&"B6"])
        .unwrap();
    let n = count!(tx, "SELECT count(*) FROM lanes");
    assert_eq!(n, 1);
    // …and a lookup connection is read-only.
    let e = tx
        .execute("DELETE FROM lanes", &[])
        .expect_err("lookup connections are read-only");
    assert_eq!(sqlstate(&e), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));
    drop(tx);
    drop(conn);

    // FORCE binds the owner too: as the owner, tenant B6, still only B6's row…
    let mut tx = admin.transaction().unwrap();
    tx.batch_execute(&format!("SET LOCAL ROLE {OWNER_ROLE}"))
        .unwrap();
    tx.execute("SELECT set_config('bulkhead.tenant', $1, true)", &[&"B6"])
        .unwrap();
    let n = count!(tx, "SELECT count(*) FROM bulkhead_pool.lanes");
    assert_eq!(n, 1, "the owner sees only B6's row while RLS is forced");
    tx.commit().unwrap();
    // …while without FORCE the owner would see every tenant's rows (rolled back).
    let mut tx = admin.transaction().unwrap();
    tx.batch_execute(&format!(
        "ALTER TABLE bulkhead_pool.lanes NO FORCE ROW LEVEL SECURITY; SET LOCAL ROLE {OWNER_ROLE}"
    ))
    .unwrap();
    tx.execute("SELECT set_config('bulkhead.tenant', $1, true)", &[&"B6"])
        .unwrap();
    let n = count!(tx, "SELECT count(*) FROM bulkhead_pool.lanes");
    assert_eq!(n, 3, "without FORCE the owner bypasses the policy");
    tx.rollback().unwrap();
    let forced: bool = admin
        .query_one(
            "SELECT relforcerowsecurity FROM pg_class WHERE oid = 'bulkhead_pool.lanes'::regclass",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(forced);
}

#[test]
fn bridge_schemas_and_silo_databases_are_walled_off() {
    let pg = Cluster::start();
    let url = pg.url();
    load_postgres(&url, "DL", Tier::Bridge, &[lane("EWR|ORD", 5, 140.0)]).unwrap();
    load_postgres(&url, "UA", Tier::Bridge, &[lane("EWR|ATL", 6, 120.0)]).unwrap();
    load_postgres(&url, "WN", Tier::Silo, &[lane("EWR|ORD", 7, 141.0)]).unwrap();
    load_postgres(&url, "AA", Tier::Pool, &[lane("JFK|LAX", 1, 330.0)]).unwrap();
    let s = stores(&pg);

    assert_eq!(
        get(&s, "DL", Tier::Bridge, "EWR|ORD").unwrap()[0],
        Value::Number(5.0)
    );
    assert_eq!(get(&s, "UA", Tier::Bridge, "EWR|ORD"), None);
    assert_eq!(
        get(&s, "UA", Tier::Bridge, "EWR|ATL").unwrap()[0],
        Value::Number(6.0)
    );
    // The silo tenant's own row for the same key, from its own database.
    assert_eq!(
        get(&s, "WN", Tier::Silo, "EWR|ORD").unwrap()[0],
        Value::Number(7.0)
    );
    assert_eq!(get(&s, "WN", Tier::Silo, "EWR|ATL"), None);
    assert_eq!(get(&s, "AA", Tier::Pool, "EWR|ORD"), None);
    // A bridge tenant never loaded has no role to log in as: an error (after the bounded
    // wait) that says so, never someone else's rows.
    let e = s
        .for_tenant("F9", Tier::Bridge)
        .lookup("lanes", "EWR|ORD", &cols(&["flights"]))
        .unwrap_err();
    assert!(
        e.contains("role \"bulkhead_reader_f9\" does not exist"),
        "{e}"
    );

    // Naming another tenant's schema outright on UA's lookup connection: permission denied.
    let ua = s.for_tenant("UA", Tier::Bridge);
    let mut conn = ua.checkout().unwrap();
    let e = conn
        .query("SELECT * FROM tenant_dl.lanes", &[])
        .expect_err("UA's role must not read DL's schema");
    assert_eq!(sqlstate(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    // Its search_path is its own schema: an unqualified `lanes` is UA's.
    let n = count!(conn, "SELECT count(*) FROM lanes");
    assert_eq!(n, 1);
    // Nor the shared pool table.
    let e = conn
        .query("SELECT * FROM bulkhead_pool.lanes", &[])
        .expect_err("a bridge role has no access to the pool schema");
    assert_eq!(sqlstate(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    drop(conn);
    // The pool reader cannot read a bridge schema either.
    let mut reader = pg.connect(READER_ROLE, "postgres").unwrap();
    let e = reader
        .query("SELECT * FROM tenant_dl.lanes", &[])
        .expect_err("the pool reader must not read a bridge schema");
    assert_eq!(sqlstate(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE));

    // The silo tenant's lookups run in its own database…
    let wn = s.for_tenant("WN", Tier::Silo);
    let mut conn = wn.checkout().unwrap();
    let db: String = conn
        .query_one("SELECT current_database()::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(db, "bulkhead_wn");
    // …where other tenants' schemas do not exist…
    let e = conn
        .query("SELECT * FROM tenant_dl.lanes", &[])
        .expect_err("no bridge schema in a silo database");
    assert_eq!(sqlstate(&e), Some(&SqlState::UNDEFINED_TABLE), "{e}");
    drop(conn);
    // …and which other tenants' roles (and the pool reader) cannot even connect to.
    for role in ["bulkhead_reader_dl", "bulkhead_reader_ua", READER_ROLE] {
        let e = pg
            .connect(role, "bulkhead_wn")
            .err()
            .unwrap_or_else(|| panic!("{role} connected to WN's database"));
        assert_eq!(sqlstate(&e), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    }
    // The silo tenant's rows are not in the main database.
    let mut admin = pg.admin();
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_wn'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[test]
fn statement_timeout_cancels_and_pools_are_bounded_per_tenant() {
    let pg = Cluster::start();
    let url = pg.url();
    load_postgres(&url, "AA", Tier::Pool, &[lane("EWR|ORD", 3, 150.0)]).unwrap();
    load_postgres(&url, "B6", Tier::Pool, &[lane("EWR|ATL", 1, 130.0)]).unwrap();
    load_postgres(&url, "DL", Tier::Bridge, &[lane("EWR|ORD", 5, 140.0)]).unwrap();
    let options = PgOptions {
        statement_timeout: Duration::from_millis(50),
        pool_size: 2,
        checkout_timeout: Duration::from_millis(300),
        ..PgOptions::default()
    };
    let s = PgFeatureStores::new(&url, options).unwrap();

    // A statement over the timeout is cancelled, on pool and bridge connections alike.
    for (tenant, tier) in [("AA", Tier::Pool), ("DL", Tier::Bridge)] {
        let mut conn = s.for_tenant(tenant, tier).checkout().unwrap();
        let t0 = Instant::now();
        let e = conn
            .batch_execute("SELECT pg_sleep(5)")
            .expect_err("pg_sleep(5) must be cancelled by statement_timeout");
        assert_eq!(sqlstate(&e), Some(&SqlState::QUERY_CANCELED), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        // The connection is still usable afterwards.
        conn.batch_execute("SELECT 1").unwrap();
    }

    // AA holds every connection of its pool (a backfill, say)…
    let aa = s.for_tenant("AA", Tier::Pool);
    let held = [aa.checkout().unwrap(), aa.checkout().unwrap()];
    // …so its next checkout fails after the bounded wait, not a hang…
    let t0 = Instant::now();
    let e = aa.checkout().err().expect("the pool holds 2");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    assert!(e.contains("busy"), "{e}");
    // …and so does its lookup, as an error string for the plugin.
    let e = aa
        .lookup("lanes", "EWR|ORD", &cols(&["flights"]))
        .unwrap_err();
    assert!(e.starts_with("feature store busy: tenant AA"), "{e}");
    // Other tenants are not blocked meanwhile: own pools, own connections.
    let t0 = Instant::now();
    assert_eq!(
        get(&s, "B6", Tier::Pool, "EWR|ATL").unwrap()[0],
        Value::Number(1.0)
    );
    assert_eq!(
        get(&s, "DL", Tier::Bridge, "EWR|ORD").unwrap()[0],
        Value::Number(5.0)
    );
    assert!(
        t0.elapsed() < Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    // A connection given back is AA's again.
    drop(held);
    assert_eq!(
        get(&s, "AA", Tier::Pool, "EWR|ORD").unwrap()[0],
        Value::Number(3.0)
    );

    // The server never saw more than pool_size connections of AA's role at once: B6 shares
    // the role, so count per application over the whole cluster and check the bound.
    let mut admin = pg.admin();
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'bulkhead_reader'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(n <= 4, "AA's and B6's pools hold at most 2 each, saw {n}");
}

/// The backend pid and transaction state of the tenant's lookup connections, as the
/// server sees them.
fn reader_sessions(admin: &mut Client, role: &str) -> Vec<(i32, String)> {
    admin
        .query(
            "SELECT pid, state FROM pg_stat_activity WHERE usename = $1 ORDER BY pid",
            &[&role],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn a_calls_lookups_share_one_transaction_that_ends_with_the_call() {
    let pg = Cluster::start();
    let url = pg.url();
    load_postgres(
        &url,
        "AA",
        Tier::Pool,
        &[lane("EWR|ORD", 3, 150.0), lane("JFK|LAX", 2, 330.0)],
    )
    .unwrap();
    load_postgres(&url, "B6", Tier::Pool, &[lane("EWR|ATL", 1, 130.0)]).unwrap();
    let options = PgOptions {
        pool_size: 1,
        checkout_timeout: Duration::from_millis(200),
        ..PgOptions::default()
    };
    let s = PgFeatureStores::new(&url, options).unwrap();
    let mut admin = pg.admin();
    let aa = s.for_tenant("AA", Tier::Pool);
    let flights = cols(&["flights"]);

    let call = aa.for_call();
    let first = call.lookup("lanes", "EWR|ORD", &flights).unwrap();
    assert_eq!(first, Some(vec![Value::Number(3.0)]));
    // B6's key, asked inside AA's transaction: the tenant set for the call is AA.
    assert_eq!(call.lookup("lanes", "EWR|ATL", &flights).unwrap(), None);
    // Between lookups the call holds its connection inside one open transaction…
    let during = reader_sessions(&mut admin, "bulkhead_reader");
    assert_eq!(during.len(), 1, "{during:?}");
    assert_eq!(during[0].1, "idle in transaction", "{during:?}");
    let read_only_tx: bool = admin
        .query_one(
            "SELECT xact_start IS NOT NULL AND backend_xid IS NULL FROM pg_stat_activity \
             WHERE pid = $1",
            &[&during[0].0],
        )
        .unwrap()
        .get(0);
    assert!(
        read_only_tx,
        "a transaction is open and has taken no id (it only reads)"
    );
    // …which a second call of the same tenant cannot have meanwhile (pool of 1)…
    let e = aa
        .for_call()
        .lookup("lanes", "EWR|ORD", &flights)
        .unwrap_err();
    assert!(e.starts_with("feature store busy: tenant AA"), "{e}");
    // …and the call's later lookups still run in it.
    assert_eq!(
        call.lookup("lanes", "JFK|LAX", &flights).unwrap(),
        Some(vec![Value::Number(2.0)])
    );
    assert_eq!(reader_sessions(&mut admin, "bulkhead_reader"), during);

    // A failed statement aborts the transaction: the call's next lookup opens a fresh one.
    let e = call
        .lookup("lanes", "EWR|ORD", &cols(&["no_such_column"]))
        .unwrap_err();
    assert!(e.contains("no_such_column"), "{e}");
    assert_eq!(
        call.lookup("lanes", "EWR|ORD", &flights).unwrap(),
        Some(vec![Value::Number(3.0)])
    );

    // The call ends: its transaction is over and the connection is back in the pool, idle,
    // with no tenant set on it (the setting was transaction-local).
    call.end_call();
    let after = reader_sessions(&mut admin, "bulkhead_reader");
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].1, "idle", "{after:?}");
    let mut conn = aa.checkout().unwrap();
    assert_eq!(count!(conn, "SELECT count(*) FROM lanes"), 0);
    // The lookups' statements stay prepared on it for the next call…
    let prepared = count!(conn, "SELECT count(*) FROM pg_prepared_statements");
    assert!((2..=32).contains(&prepared), "{prepared}");
    drop(conn);
    // …but a plugin asking for ever-new column lists cannot grow them past the bound.
    let names = [
        "flights",
        "mean_eta",
        "p80_eta",
        "mean_dep_delay",
        "distance",
    ];
    let call = aa.for_call();
    let mut asked = 0;
    for a in names {
        for b in names {
            for c in names {
                if a != b && b != c && a != c {
                    let row = call.lookup("lanes", "EWR|ORD", &cols(&[a, b, c])).unwrap();
                    assert_eq!(row.map(|r| r.len()), Some(3));
                    asked += 1;
                }
            }
        }
    }
    call.end_call();
    assert_eq!(asked, 60);
    let mut conn = aa.checkout().unwrap();
    let prepared = count!(conn, "SELECT count(*) FROM pg_prepared_statements");
    assert!(
        prepared <= 32,
        "{prepared} statements prepared on one connection"
    );
    drop(conn);
    // The next call gets the connection.
    assert_eq!(
        aa.for_call().lookup("lanes", "EWR|ORD", &flights).unwrap(),
        Some(vec![Value::Number(3.0)])
    );

    // The server ends an idle session under the call (a restart, an idle timeout): the next
    // lookup of the same call reconnects once and answers.
    let call = aa.for_call();
    assert!(call.lookup("lanes", "EWR|ORD", &flights).unwrap().is_some());
    let pid = reader_sessions(&mut admin, "bulkhead_reader")[0].0;
    let killed: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap()
        .get(0);
    assert!(killed);
    let t0 = Instant::now();
    while reader_sessions(&mut admin, "bulkhead_reader")
        .iter()
        .any(|(p, _)| *p == pid)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "backend {pid} still there"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        call.lookup("lanes", "JFK|LAX", &flights).unwrap(),
        Some(vec![Value::Number(2.0)])
    );
    call.end_call();
}

#[test]
fn public_weather_is_shared_by_every_tier() {
    let pg = Cluster::start();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let weather = dir.path().join("weather.csv");
    // The second EWR 06:00 row is the repeated local hour at the end of DST: first one wins.
    std::fs::write(
        &weather,
        "origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,visib,time_hour\n\
         EWR,2013,1,5,6,33.08,17.96,53.36,250,10.35,NA,0,1022.4,10,x\n\
         EWR,2013,1,5,6,99,99,99,250,99,NA,0,999,10,x\n\
         JFK,2013,1,5,6,35,18,50,250,12,NA,0,1020,10,x\n",
    )
    .unwrap();
    assert_eq!(
        load_public_postgres(&url, &weather, &Default::default()).unwrap(),
        2
    );
    load_postgres(&url, "AA", Tier::Pool, &[]).unwrap();
    load_postgres(&url, "DL", Tier::Bridge, &[]).unwrap();
    load_postgres(&url, "WN", Tier::Silo, &[]).unwrap();
    let s = stores(&pg);
    let want = Some(vec![
        Value::Number(33.08),
        Value::Missing,
        Value::Number(1022.4),
    ]);
    for (tenant, tier) in [
        ("AA", Tier::Pool),
        ("B6", Tier::Pool),
        ("DL", Tier::Bridge),
        ("WN", Tier::Silo),
    ] {
        let t = s.for_tenant(tenant, tier);
        let c = cols(&["temp", "wind_gust", "pressure"]);
        assert_eq!(
            t.lookup("weather", "EWR|2013-01-05T06", &c).unwrap(),
            want,
            "{tenant} ({})",
            tier.as_str()
        );
        assert_eq!(t.lookup("weather", "EWR|2013-01-05T07", &c).unwrap(), None);
    }
}

#[test]
fn cli_loads_each_tenant_at_its_registry_tier() {
    let pg = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    // The dev registry: 9E is pool, AA bridge, UA silo; ZZ is not a tenant.
    let registry = dir.path().join("registry.json");
    std::fs::write(&registry, bulkhead::registry::DEV_REGISTRY).unwrap();
    let flights = dir.path().join("flights.csv");
    let head = "year,month,day,dep_time,sched_dep_time,dep_delay,arr_time,sched_arr_time,arr_delay,carrier,flight,tailnum,origin,dest,air_time,distance,hour,minute,time_hour\n";
    let mut csv = head.to_string();
    for (carrier, n) in [("9E", 1), ("AA", 2), ("UA", 3), ("ZZ", 4)] {
        for _ in 0..n {
            csv.push_str(&format!(
                "2013,1,1,600,600,0,900,900,10,{carrier},1,N1{carrier},EWR,LAX,300,2454,6,0,x\n"
            ));
        }
        // A holdout-month flight never feeds a feature.
        csv.push_str(&format!(
            "2013,11,1,600,600,0,900,900,10,{carrier},1,N3{carrier},EWR,LAX,300,2454,6,0,x\n"
        ));
    }
    std::fs::write(
        dir.path().join("planes.csv"),
        "tailnum,year,type,manufacturer,model,engines,seats,speed,engine\n\
         N19E,2004,Fixed wing multi engine,BOMBARDIER INC,CL-600,2,76,NA,Turbo-fan\n\
         N1AA,2000,Fixed wing multi engine,BOEING,737-823,2,160,NA,Turbo-fan\n\
         N1UA,1998,Fixed wing multi engine,BOEING,757-222,2,191,NA,Turbo-fan\n\
         N3UA,1998,Fixed wing multi engine,BOEING,757-222,2,191,NA,Turbo-fan\n",
    )
    .unwrap();
    std::fs::write(&flights, csv).unwrap();
    std::fs::write(
        dir.path().join("airports.csv"),
        "faa,name,lat,lon,alt,tz,dst,tzone\n\
         EWR,Newark Liberty Intl,40.69,-74.17,18,-5,A,America/New_York\n\
         LAX,Los Angeles Intl,33.94,-118.40,126,-8,A,America/Los_Angeles\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("weather.csv"),
        "origin,year,month,day,hour,temp,dewp,humid,wind_dir,wind_speed,wind_gust,precip,pressure,visib,time_hour\n\
         EWR,2013,1,1,6,33,17,53,250,10,NA,0,1022,10,x\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--registry")
        .arg(&registry)
        .args(["features", "load", "--flights"])
        .arg(&flights)
        .args(["--postgres", &pg.url()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ZZ       skipped: not in the registry"),
        "{stdout}"
    );
    let s = stores(&pg);
    for (tenant, tier, n) in [
        ("9E", Tier::Pool, 1.0),
        ("AA", Tier::Bridge, 2.0),
        ("UA", Tier::Silo, 3.0),
    ] {
        assert_eq!(
            get(&s, tenant, tier, "EWR|LAX").map(|v| v[0].clone()),
            Some(Value::Number(n)),
            "{tenant}"
        );
        assert_eq!(
            s.for_tenant(tenant, tier)
                .lookup("weather", "EWR|2013-01-01T06", &cols(&["temp"]))
                .unwrap(),
            Some(vec![Value::Number(33.0)])
        );
    }
    // The tiers are where the registry says: UA has its own database, AA its own schema.
    let mut admin = pg.admin();
    let dbs: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = 'bulkhead_ua'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(dbs, 1);
    let pooled: Vec<String> = admin
        .query("SELECT DISTINCT tenant_id FROM bulkhead_pool.lanes", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pooled, ["9E"]);
    // Each tenant's fleet, where its tier keeps it: only the planes its own flights flew
    // in the training months (N3UA flew for UA in November only).
    let seats = |tenant: &str, tier: Tier, tail: &str| {
        s.for_tenant(tenant, tier)
            .lookup("planes", tail, &cols(&["seats", "model"]))
            .unwrap()
    };
    assert_eq!(
        seats("9E", Tier::Pool, "N19E"),
        Some(vec![Value::Number(76.0), Value::Category("CL-600".into())])
    );
    assert_eq!(seats("9E", Tier::Pool, "N1AA"), None);
    assert_eq!(
        seats("AA", Tier::Bridge, "N1AA").unwrap()[0],
        Value::Number(160.0)
    );
    assert_eq!(seats("AA", Tier::Bridge, "N19E"), None);
    assert_eq!(
        seats("UA", Tier::Silo, "N1UA").unwrap()[0],
        Value::Number(191.0)
    );
    assert_eq!(seats("UA", Tier::Silo, "N3UA"), None);
    assert!(stdout.contains("planes     1"), "{stdout}");
    let pooled: Vec<String> = admin
        .query("SELECT DISTINCT tenant_id FROM bulkhead_pool.planes", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pooled, ["9E"]);
    let aa = count!(admin, "SELECT count(*) FROM tenant_aa.lanes");
    assert_eq!(aa, 1);
}

fn plane(tail: &str, seats: i64, model: &str) -> Vec<Sql> {
    vec![
        Sql::Text(tail.into()),
        Sql::Integer(2004),
        Sql::Integer(seats),
        Sql::Integer(2),
        Sql::Text(model.into()),
    ]
}

#[test]
fn planes_live_with_each_tenant_at_every_tier_under_the_same_isolation() {
    let pg = Cluster::start();
    let url = pg.url();
    let lanes = |key: &str| {
        vec![vec![
            Sql::Text(key.into()),
            Sql::Integer(1),
            Sql::Real(100.0),
            Sql::Real(110.0),
            Sql::Null,
            Sql::Real(500.0),
        ]]
    };
    for (tenant, tier, tail, seats) in [
        ("AA", Tier::Pool, "N100AA", 160),
        ("B6", Tier::Pool, "N200B6", 100),
        ("DL", Tier::Bridge, "N300DL", 190),
        ("WN", Tier::Silo, "N400WN", 143),
    ] {
        let written = load_tenant_postgres(
            &url,
            tenant,
            tier,
            &[
                (&LANES, &lanes("EWR|ORD")),
                (&PLANES, &[plane(tail, seats, "737"), plane(tail, 1, "dup")]),
            ],
        )
        .unwrap();
        // A key seen again is skipped (first one wins), as in the SQLite store.
        assert_eq!(written, [1, 1], "{tenant}");
    }
    let s = stores(&pg);
    let get_plane = |tenant: &str, tier: Tier, tail: &str| {
        s.for_tenant(tenant, tier)
            .lookup("planes", tail, &cols(&["seats", "engines", "model"]))
            .unwrap()
    };
    let all = [
        ("AA", Tier::Pool, "N100AA", 160.0),
        ("B6", Tier::Pool, "N200B6", 100.0),
        ("DL", Tier::Bridge, "N300DL", 190.0),
        ("WN", Tier::Silo, "N400WN", 143.0),
    ];
    for (tenant, tier, tail, seats) in all {
        assert_eq!(
            get_plane(tenant, tier, tail),
            Some(vec![
                Value::Number(seats),
                Value::Number(2.0),
                Value::Category("737".into())
            ]),
            "{tenant}"
        );
        // Every other tenant's tail number: absent, whatever the tiers.
        for (other, _, other_tail, _) in all {
            if other != tenant {
                assert_eq!(
                    get_plane(tenant, tier, other_tail),
                    None,
                    "{tenant} {other}"
                );
            }
        }
    }
    // Reloading one table keeps the other: lanes only, the fleet stays.
    load_postgres(&url, "AA", Tier::Pool, &[lane("JFK|LAX", 2, 330.0)]).unwrap();
    assert!(get_plane("AA", Tier::Pool, "N100AA").is_some());
    assert_eq!(get(&s, "AA", Tier::Pool, "EWR|ORD"), None);

    // The pool's planes table is under the same forced policy as its lanes.
    let mut admin = pg.admin();
    let t = admin
        .query_one(
            "SELECT c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner)::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'bulkhead_pool' AND c.relname = 'planes'",
            &[],
        )
        .unwrap();
    assert!(t.get::<_, bool>(0) && t.get::<_, bool>(1));
    assert_eq!(t.get::<_, String>(2), OWNER_ROLE);
    let mut reader = pg.connect(READER_ROLE, "postgres").unwrap();
    let mut tx = reader.transaction().unwrap();
    tx.execute("SELECT set_config('bulkhead.tenant', $1, true)", &[&"B6"])
        .unwrap();
    let tails: Vec<String> = tx
        .query("SELECT key FROM bulkhead_pool.planes", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tails, ["N200B6"], "no tenant filter, still only B6's fleet");
    tx.commit().unwrap();
    let n = count!(reader, "SELECT count(*) FROM bulkhead_pool.planes");
    assert_eq!(n, 0, "no tenant set: no planes at all");
    // A bridge role cannot read another tenant's fleet even by name.
    let mut conn = s.for_tenant("DL", Tier::Bridge).checkout().unwrap();
    assert_eq!(
        sqlstate(
            &conn
                .query("SELECT * FROM bulkhead_pool.planes", &[])
                .unwrap_err()
        ),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE)
    );
    // Only tenant tables load per tenant.
    let e = load_tenant_postgres(
        &url,
        "AA",
        Tier::Pool,
        &[(&bulkhead::features::schema::WEATHER, &[])],
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a tenant table"), "{e}");
}

#[test]
fn a_tier_change_moves_the_tenants_lookups_to_the_new_placement() {
    let pg = Cluster::start();
    let url = pg.url();
    // The loader put EV's fleet in the pool table, then (promoted to bridge) in its schema,
    // with a different plane there so the two placements can be told apart.
    load_tenant_postgres(
        &url,
        "EV",
        Tier::Pool,
        &[(&PLANES, &[plane("N1EV", 55, "pool")])],
    )
    .unwrap();
    load_tenant_postgres(
        &url,
        "EV",
        Tier::Bridge,
        &[(&PLANES, &[plane("N1EV", 66, "bridge")])],
    )
    .unwrap();
    let s = stores(&pg);
    let model = |tier: Tier| {
        s.for_tenant("EV", tier)
            .lookup("planes", "N1EV", &cols(&["model"]))
            .unwrap()
    };
    let pool = s.for_tenant("EV", Tier::Pool);
    assert_eq!(
        model(Tier::Pool),
        Some(vec![Value::Category("pool".into())])
    );
    // The same handle while the tier is unchanged.
    assert!(std::sync::Arc::ptr_eq(
        &pool,
        &s.for_tenant("EV", Tier::Pool)
    ));
    assert_eq!(
        model(Tier::Bridge),
        Some(vec![Value::Category("bridge".into())])
    );
    assert_eq!(
        s.for_tenant("EV", Tier::Bridge).placement().unwrap().schema,
        "tenant_ev"
    );
    // A handle made for the old tier still answers from the old placement (calls in
    // flight finish), but new calls get the new one.
    assert_eq!(
        pool.lookup("planes", "N1EV", &cols(&["model"])).unwrap(),
        Some(vec![Value::Category("pool".into())])
    );
    assert!(!std::sync::Arc::ptr_eq(
        &pool,
        &s.for_tenant("EV", Tier::Pool)
    ));
}

/// `bulkhead serve --features-postgres URL` with the rest of its flags for a quick start.
fn serve_with(dir: &std::path::Path, url: &str) -> std::process::Output {
    let registry = dir.join("registry.json");
    std::fs::write(&registry, bulkhead::registry::DEV_REGISTRY).unwrap();
    Command::new(env!("CARGO_BIN_EXE_bulkhead"))
        .env_remove("BULKHEAD_FEATURES_POSTGRES")
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--registry")
        .arg(&registry)
        .args(["serve", "--listen", "127.0.0.1:0", "--meter", "off"])
        .args(["--features-postgres", url])
        .args(["--features-connect-timeout-ms", "1000"])
        .output()
        .unwrap()
}

#[test]
fn serve_refuses_to_start_without_a_reachable_loaded_feature_database() {
    let dir = tempfile::tempdir().unwrap();
    // No server on that socket.
    let nowhere = format!(
        "host={} port=5432 user=postgres dbname=postgres",
        dir.path().join("nowhere").display()
    );
    let out = serve_with(dir.path(), &nowhere);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--features-postgres") && err.contains("unreachable"),
        "{err}"
    );
    // A server that was never loaded: no reader role to log in as.
    let pg = Cluster::start();
    let out = serve_with(dir.path(), &pg.url());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--features-postgres"), "{err}");
    assert!(
        err.contains("role \"bulkhead_reader\" does not exist"),
        "{err}"
    );
}
