//! The model registry: alias history (who/when/why, "what was in production at T"),
//! rollback (warm: the first request after it is a sandbox cache hit), pins that hold
//! through training runs, a tampered artifact refused while the last good version keeps
//! serving, and crash-safe writes (a `bulkhead` child killed between the steps of a
//! write leaves a registry that loads and serves).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bulkhead::models::failpoint;
use bulkhead::models::plugin::eta_forecaster_wasm;
use bulkhead::models::registry::Note;
use bulkhead::models::store::{ModelStore, PRODUCTION, Publish, StoreError};
use bulkhead::models::train::{self, Data};
use bulkhead::sandbox::{BatchBuilder, Sandbox, SandboxConfig, Value};
use bulkhead::serve::backend::{Backend, Call};
use bulkhead::serve::wasm::WasmBackend;
use bulkhead_registry::ModelRef;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

fn slice() -> &'static Data {
    static DATA: OnceLock<Data> = OnceLock::new();
    DATA.get_or_init(|| train::load(&data_dir().join("flights.csv"), None).unwrap())
}

fn plugin_path() -> PathBuf {
    eta_forecaster_wasm().unwrap()
}

fn plugin() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| std::fs::read(plugin_path()).unwrap())
}

/// Publishes a real model of `tenant` (its slice rows) as a new version of `name`.
fn publish(store: &ModelStore, name: &str, tenant: &str, aliases: &[&str]) -> String {
    let t = train::train(slice(), tenant).unwrap();
    store
        .publish(Publish {
            name,
            tenant,
            plugin_name: "eta-forecaster",
            plugin_version: "0.1.0",
            plugin_wasm: plugin(),
            artifact: &t.artifact,
            trained_on: t.trained_on,
            evaluation: Some(t.evaluation),
            gate: None,
            aliases,
        })
        .unwrap()
        .version()
        .to_string()
}

/// A different artifact for the same tenant: a model of another carrier's rows,
/// published under the tenant's name (the registry does not care whose rows here).
fn publish_other(store: &ModelStore, name: &str, rows_of: &str, tenant: &str) -> String {
    let t = train::train(slice(), rows_of).unwrap();
    store
        .publish(Publish {
            name,
            tenant,
            plugin_name: "eta-forecaster",
            plugin_version: "0.1.0",
            plugin_wasm: plugin(),
            artifact: &t.artifact,
            trained_on: t.trained_on,
            evaluation: None,
            gate: None,
            aliases: &[],
        })
        .unwrap()
        .version()
        .to_string()
}

fn note(action: &str, why: &str) -> Note {
    Note::new(action, Some("alice"), why)
}

#[test]
fn history_answers_what_was_in_production_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path()).unwrap();
    publish(&store, "eta-global", "*", &[PRODUCTION]);
    let v1 = publish(&store, "eta-DL", "DL", &[]);
    let v2 = publish_other(&store, "eta-DL", "AA", "DL");
    let t0 = now_ms();
    store
        .promote("eta-DL", &v1, &note("promote", "first model"))
        .unwrap();
    sleep_ms(5);
    let t1 = now_ms();
    sleep_ms(5);
    store
        .promote("eta-DL", &v2, &note("promote", "better on November"))
        .unwrap();
    sleep_ms(5);
    let t2 = now_ms();
    sleep_ms(5);
    store
        .fall_back(
            "eta-DL",
            "eta-global",
            "worse_than_global",
            None,
            &note("fallback", "gate"),
        )
        .unwrap();
    sleep_ms(5);
    let t3 = now_ms();

    let h = store.history("eta-DL").unwrap();
    assert_eq!(h.len(), 3);
    assert!(h.iter().all(|e| e.by == "alice" && e.alias == PRODUCTION));
    assert_eq!(h[1].why, "better on November");
    assert_eq!(
        (h[1].from.as_deref(), h[1].to.as_deref()),
        (Some(v1.as_str()), Some(v2.as_str()))
    );
    assert_eq!(h[2].to, None);
    assert_eq!(h[2].served_by.as_deref(), Some("eta-global"));

    assert!(store.production_at("eta-DL", t0 - 1).unwrap().is_none());
    let at = |t| store.production_at("eta-DL", t).unwrap().unwrap();
    assert_eq!(at(t1).to.as_deref(), Some(v1.as_str()));
    assert_eq!(at(t2).to.as_deref(), Some(v2.as_str()));
    assert_eq!(at(t3).to, None);
    assert!(at(t3).served().starts_with("eta-global@production"));
    // The same answer from the command line.
    let out = bulkhead(
        dir.path(),
        &[
            "registry",
            "history",
            "eta-DL",
            "--at",
            &bulkhead::models::registry::rfc3339(t1),
        ],
    );
    assert!(
        out.contains("eta-DL@production at") && out.contains(&format!(": {v1} (")),
        "{out}"
    );
}

#[test]
fn rollback_is_one_step_and_pins_hold_through_training() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path()).unwrap();
    publish(&store, "eta-global", "*", &[PRODUCTION]);
    let v1 = publish(&store, "eta-UA", "UA", &[PRODUCTION]);
    let v2 = publish_other(&store, "eta-UA", "DL", "UA");
    store.promote("eta-UA", &v2, &note("promote", "")).unwrap();
    assert_eq!(
        store.previous_production("eta-UA").unwrap(),
        Some(v1.clone())
    );

    // Rollback: one call, back to v1; rolling back again returns to v2.
    let (from, to) = store
        .rollback("eta-UA", &note("rollback", "p99 up"))
        .unwrap();
    assert_eq!((from.as_str(), to.as_str()), (v2.as_str(), v1.as_str()));
    assert_eq!(store.resolve("eta-UA", PRODUCTION).unwrap().version(), v1);
    let last = store.history("eta-UA").unwrap().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.why.as_str()),
        ("rollback", "p99 up")
    );
    // From the command line too.
    let out = bulkhead(
        dir.path(),
        &["registry", "rollback", "eta-UA", "--why", "undo"],
    );
    assert!(out.contains(&format!("rolled back {v1} -> {v2}")), "{out}");

    // Pin v1: training runs publish candidates but never move production.
    bulkhead(
        dir.path(),
        &["registry", "pin", "eta-UA", &v1, "--why", "audit"],
    );
    assert_eq!(store.resolve("eta-UA", PRODUCTION).unwrap().version(), v1);
    let out = bulkhead(
        dir.path(),
        &[
            "train",
            "--tenant",
            "UA",
            "--data",
            data_dir().join("flights.csv").to_str().unwrap(),
            "--plugin",
            plugin_path().to_str().unwrap(),
            "--min-train-rows",
            "100",
            "--max-mape",
            "50",
        ],
    );
    assert!(out.contains(&format!("pinned (v{v1})")), "{out}");
    let versions = store.versions("eta-UA").unwrap();
    assert_eq!(versions.len(), 3, "the candidate is published");
    assert_eq!(store.resolve("eta-UA", PRODUCTION).unwrap().version(), v1);
    // Manual moves are refused while pinned.
    assert!(matches!(
        store.promote("eta-UA", &v2, &note("promote", "")),
        Err(StoreError::Invalid(m)) if m.contains("pinned")
    ));
    assert!(store.rollback("eta-UA", &note("rollback", "")).is_err());
    // Unpinned, the next training run applies the gate again.
    bulkhead(dir.path(), &["registry", "pin", "eta-UA", "--release"]);
    store.promote("eta-UA", &v2, &note("promote", "")).unwrap();
    assert_eq!(store.resolve("eta-UA", PRODUCTION).unwrap().version(), v2);
}

fn call(tenant: &str, name: &str) -> Call {
    let mut b = BatchBuilder::new();
    b.next_row().unwrap();
    b.set("origin", Value::Category("EWR".into())).unwrap();
    b.set("dest", Value::Category("ORD".into())).unwrap();
    b.set("month", Value::Number(1.0)).unwrap();
    b.set("sched_dep_hour", Value::Number(6.0)).unwrap();
    b.set("distance", Value::Number(719.0)).unwrap();
    Call {
        tenant: tenant.into(),
        request_id: "test".into(),
        tier: bulkhead_registry::Tier::Pool,
        model: ModelRef {
            name: name.into(),
            version: PRODUCTION.into(),
        },
        rows: b.finish(),
        alert_after_minutes: None,
    }
}

fn backend(dir: &Path) -> (WasmBackend, Arc<Sandbox>) {
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()).unwrap());
    let store = ModelStore::open(dir).unwrap();
    (
        WasmBackend::new(store, Arc::clone(&sandbox), Duration::ZERO),
        sandbox,
    )
}

fn resident(sandbox: &Sandbox, label: &str) -> bool {
    sandbox.resident_models().iter().any(|m| m.label == label)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_request_after_a_rollback_is_warm() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path()).unwrap();
    let v1 = publish(&store, "eta-UA", "UA", &[PRODUCTION]);
    let v2 = publish_other(&store, "eta-UA", "DL", "UA");
    store.promote("eta-UA", &v2, &note("promote", "")).unwrap();

    // A host started after the promotion: it serves v2 and keeps v1 (the rollback
    // target, from the history) resident.
    let (host, sandbox) = backend(dir.path());
    let out = host.predict(call("UA", "eta-UA")).await.unwrap();
    assert_eq!(out.model.version, v2);
    assert!(!out.stats.cache_hit);
    let label = format!("eta-UA@{v1}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !resident(&sandbox, &label) {
        assert!(Instant::now() < deadline, "{label} never preloaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    store.rollback("eta-UA", &note("rollback", "")).unwrap();
    let out = host.predict(call("UA", "eta-UA")).await.unwrap();
    assert_eq!(out.model.version, v1);
    assert!(
        out.stats.cache_hit,
        "the first call after the rollback missed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_version_is_refused_and_the_last_good_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path()).unwrap();
    let v1 = publish(&store, "eta-UA", "UA", &[PRODUCTION]);
    let (host, _) = backend(dir.path());
    assert_eq!(
        host.predict(call("UA", "eta-UA"))
            .await
            .unwrap()
            .model
            .version,
        v1
    );

    // v2 is promoted, then its artifact is altered on disk.
    let v2 = publish_other(&store, "eta-UA", "DL", "UA");
    store.promote("eta-UA", &v2, &note("promote", "")).unwrap();
    let artifact = dir.path().join(format!("models/eta-UA/{v2}/artifact.bin"));
    let mut bytes = std::fs::read(&artifact).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&artifact, &bytes).unwrap();
    assert!(matches!(
        store.read_artifact(&store.resolve("eta-UA", PRODUCTION).unwrap()),
        Err(StoreError::Tampered { .. })
    ));

    // The running host keeps answering with v1, the version it verified.
    for _ in 0..3 {
        let out = host.predict(call("UA", "eta-UA")).await.unwrap();
        assert_eq!(out.model.version, v1);
    }
    // A host started now never had v1 loaded: it serves production's previous version.
    let (fresh, _) = backend(dir.path());
    let out = fresh.predict(call("UA", "eta-UA")).await.unwrap();
    assert_eq!(out.model.version, v1);
    // Repaired, v2 is taken up without a restart.
    bytes[last] ^= 0xff;
    std::fs::write(&artifact, &bytes).unwrap();
    let out = host.predict(call("UA", "eta-UA")).await.unwrap();
    assert_eq!(out.model.version, v2);
}

/// `bulkhead --state-dir DIR ARGS…` with the model store at DIR; must succeed.
fn bulkhead(dir: &Path, args: &[&str]) -> String {
    let out = bulkhead_with(dir, args, None);
    assert!(
        out.status.success(),
        "bulkhead {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bulkhead_with(dir: &Path, args: &[&str], crash_at: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bulkhead"));
    cmd.arg("--state-dir")
        .arg(dir)
        .env("BULKHEAD_DATA_DIR", dir)
        .env("RUST_LOG", "warn")
        .env_remove(failpoint::ENV)
        .args(args);
    if let Some(point) = crash_at {
        cmd.env(failpoint::ENV, point);
    }
    cmd.output().unwrap()
}

/// Every complete version reads back intact, and what production serves is intact.
fn assert_loads_and_serves(store: &ModelStore, name: &str) -> String {
    for m in store.list().unwrap() {
        for v in &m.versions {
            let mv = store.resolve(&m.name, &v.version).unwrap();
            store.read_artifact(&mv).unwrap();
            store.read_plugin(&mv).unwrap();
        }
    }
    let v = store.resolve_serving(name, PRODUCTION).unwrap();
    store.read_artifact(&v).unwrap();
    store.history(name).unwrap();
    format!("{}@{}", v.name(), v.version())
}

#[test]
fn a_writer_killed_between_steps_leaves_a_registry_that_loads() {
    let flights = data_dir().join("flights.csv");
    let train = |dir: &Path, crash_at: Option<&str>, max_mape: &str| {
        bulkhead_with(
            dir,
            &[
                "train",
                "--tenant",
                "US",
                "--data",
                flights.to_str().unwrap(),
                "--plugin",
                plugin_path().to_str().unwrap(),
                "--min-train-rows",
                "100",
                "--max-mape",
                max_mape,
            ],
            crash_at,
        )
    };
    // (crash point, gate threshold): 50% promotes US's candidate, 1% refuses it.
    let cases = [
        ("publish:artifact-written", "50"),
        ("publish:manifest-written", "50"),
        ("alias:written", "50"),
        ("history:half-written", "50"),
        ("state:written", "1"),
        ("alias:written", "1"),
        ("history:half-written", "1"),
    ];
    for (point, max_mape) in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path()).unwrap();
        publish(&store, "eta-global", "*", &[PRODUCTION]);
        let v1 = publish(&store, "eta-US", "US", &[PRODUCTION]);
        let before = store.history("eta-US").unwrap().len();

        let out = train(dir.path(), Some(point), max_mape);
        assert!(
            !out.status.success(),
            "{point}: the child was meant to die there: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // The registry loads; production serves an intact version: the old one, the new
        // one or (after a refused candidate) the pooled one.
        let serving = assert_loads_and_serves(&store, "eta-US");
        assert!(
            serving == format!("eta-US@{v1}")
                || serving.starts_with("eta-US@")
                || serving.starts_with("eta-global@"),
            "{point}: {serving}"
        );
        // And the next writer completes, history included (a torn line is skipped).
        let out = train(dir.path(), None, max_mape);
        assert!(
            out.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let serving = assert_loads_and_serves(&store, "eta-US");
        let h = store.history("eta-US").unwrap();
        assert!(h.len() > before, "{point}: history {h:?}");
        if max_mape == "50" {
            assert!(serving.starts_with("eta-US@"), "{point}: {serving}");
            assert_eq!(
                h.last().unwrap().to.as_deref(),
                Some(store.resolve("eta-US", PRODUCTION).unwrap().version()),
                "{point}"
            );
        } else {
            assert!(serving.starts_with("eta-global@"), "{point}: {serving}");
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}
