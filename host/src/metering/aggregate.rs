//! `bulkhead meter aggregate --period 2026-11`: per-tenant usage of a period, counted
//! exactly once per event id.
//!
//! The aggregator reads the whole log (in log order), folds every event into a
//! persisted [`State`] — the dedupe index (event id → the period it was counted in) and
//! the totals per period and tenant — and writes the state back atomically (temp file,
//! fsync, rename, fsync of the directory): the index and the totals always change
//! together, so a crash leaves either the old pair or the new one, never one without the
//! other. Re-running it, or feeding it a log in which every record appears twice, changes
//! nothing. An event counts in the period of its `time` and in no other: a retry of a
//! request on 1 December of a request counted in November (same id, later time) is a
//! duplicate, not December usage.
//!
//! ## OpenMeter's four dedupe cases, and ours
//!
//! OpenMeter's sink keys dedupe on `namespace-source-id`; it first checks a batch against
//! the dedupe store (*new* or *seen*), writes the new events to storage, then sets the
//! keys with SET NX, which tells whether a key was *absent* (set by this write) or already
//! *present* (set meanwhile, by a concurrent writer or an earlier, crashed, attempt).
//! Ours keys on the event id (which already holds the tenant), the check is against the
//! persisted index as it was before this run, and the second axis is whether the id is
//! already accounted for — in this run, or in the stored totals of a period:
//!
//! | case | here | effect |
//! |---|---|---|
//! | new/new | id not in the index, first time in this run | counted, in the period of its `time`; id → period added |
//! | new/present | id not in the index, but already counted earlier in this run (the same event twice in the log: a duplicated log, or a retry appended again) | skipped |
//! | seen/absent | id in the index under another period (a retry whose `time` fell in a later month), so absent from this period's totals | skipped: never counts in two periods |
//! | seen/present | id in the index under this period, present in its totals (a re-run over the same log) | skipped |
//!
//! OpenMeter's crash windows (stored but key not set → counted twice; key set but not
//! stored → lost) cannot happen here: index and totals are one file, replaced whole.

use super::event::{Event, Metric, check_period};
use super::log::{self, Position};
use anyhow::{Context, Result, anyhow, bail};
use bulkhead_registry::Registry;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Included predictions of a plan without `included_predictions`: none (pay as you go),
/// so that a plan that forgot the field never gives usage away.
pub const DEFAULT_INCLUDED_PREDICTIONS: u64 = 0;

/// A tenant's totals in one period.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub predictions: u64,
    pub forecast_days: u64,
    pub training_seconds: u64,
    /// Distinct events counted.
    pub events: u64,
    /// Tier and region of the tenant's last counted event (where the work ran).
    pub tier: String,
    pub region: String,
}

impl Totals {
    fn add(&mut self, ev: &Event) {
        let q = ev.data.quantity;
        match ev.data.metric {
            Metric::Predictions => self.predictions = self.predictions.saturating_add(q),
            Metric::ForecastDays => self.forecast_days = self.forecast_days.saturating_add(q),
            Metric::TrainingSeconds => {
                self.training_seconds = self.training_seconds.saturating_add(q);
            }
        }
        self.events += 1;
        self.tier.clone_from(&ev.data.tier);
        self.region.clone_from(&ev.data.region);
    }
}

/// How one event met the dedupe index (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dedupe {
    NewNew,
    NewPresent,
    SeenAbsent,
    SeenPresent,
}

/// The persisted aggregate: dedupe index + totals, and how far into the log it read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Just past the last record folded in.
    pub log_end: Position,
    /// Event id → the period it counted in.
    pub seen: BTreeMap<String, String>,
    /// Period → tenant → totals.
    pub usage: BTreeMap<String, BTreeMap<String, Totals>>,
}

/// Counts of each case in one fold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FoldStats {
    pub new_new: u64,
    pub new_present: u64,
    pub seen_absent: u64,
    pub seen_present: u64,
}

impl State {
    /// Folds `events` (in log order) in, each id at most once across all runs.
    /// An event without a valid UTC `time` is an error: it has no period to count in.
    pub fn fold<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) -> Result<FoldStats> {
        let mut run: HashSet<String> = HashSet::new();
        let mut stats = FoldStats::default();
        for ev in events {
            let period = ev
                .period()
                .ok_or_else(|| anyhow!("event {} has no valid UTC time: {:?}", ev.id, ev.time))?;
            match self.classify(&run, &ev.id, &period) {
                Dedupe::NewNew => {
                    stats.new_new += 1;
                    self.seen.insert(ev.id.clone(), period.clone());
                    run.insert(ev.id.clone());
                    self.usage
                        .entry(period)
                        .or_default()
                        .entry(ev.subject.clone())
                        .or_default()
                        .add(ev);
                }
                Dedupe::NewPresent => stats.new_present += 1,
                Dedupe::SeenAbsent => stats.seen_absent += 1,
                Dedupe::SeenPresent => stats.seen_present += 1,
            }
        }
        Ok(stats)
    }

    /// The case of event `id` in `period`, given the ids first counted in this run.
    pub fn classify(&self, run: &HashSet<String>, id: &str, period: &str) -> Dedupe {
        match self.seen.get(id) {
            None => Dedupe::NewNew,
            Some(_) if run.contains(id) => Dedupe::NewPresent,
            Some(p) if p != period => Dedupe::SeenAbsent,
            Some(_) => Dedupe::SeenPresent,
        }
    }

    pub fn load(path: &Path) -> Result<State> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{} is not an aggregate state", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State {
                version: 1,
                ..State::default()
            }),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self)?;
        write_atomic(path, &bytes)
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("replacing {}", path.display()))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Where things live under a meter directory.
#[derive(Debug, Clone)]
pub struct Paths {
    pub log: PathBuf,
    pub aggregate: PathBuf,
}

impl Paths {
    pub fn new(meter_dir: &Path) -> Paths {
        Paths {
            log: meter_dir.join("log"),
            aggregate: meter_dir.join("aggregate"),
        }
    }

    pub fn state(&self) -> PathBuf {
        self.aggregate.join("state.json")
    }

    pub fn usage(&self, period: &str) -> PathBuf {
        self.aggregate.join(format!("usage-{period}.json"))
    }
}

/// One line of the bill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub tenant: String,
    pub period: String,
    pub predictions: u64,
    pub forecast_days: u64,
    pub training_hours: f64,
    pub tier: String,
    pub region: String,
    /// The tenant's plan in the registry now (`null` if it is no longer registered).
    pub plan: Option<String>,
    pub included_predictions: u64,
    pub overage_predictions: u64,
}

/// The usage records of `period` from `state`, plans from `registry`.
pub fn records(state: &State, period: &str, registry: Option<&Registry>) -> Vec<UsageRecord> {
    let Some(tenants) = state.usage.get(period) else {
        return Vec::new();
    };
    tenants
        .iter()
        .map(|(tenant, t)| {
            let reg = registry.and_then(|r| r.tenant(tenant));
            let included = reg
                .and_then(|r| r.plan_spec.included_predictions)
                .unwrap_or(DEFAULT_INCLUDED_PREDICTIONS);
            UsageRecord {
                tenant: tenant.clone(),
                period: period.to_string(),
                predictions: t.predictions,
                forecast_days: t.forecast_days,
                // Six decimals: one billed second (0.000278 h) still shows.
                training_hours: (t.training_seconds as f64 / 3600.0 * 1e6).round() / 1e6,
                tier: t.tier.clone(),
                region: t.region.clone(),
                plan: reg.map(|r| r.plan.to_string()),
                included_predictions: included,
                overage_predictions: t.predictions.saturating_sub(included),
            }
        })
        .collect()
}

/// The outcome of one `aggregate` run.
#[derive(Debug, Clone)]
pub struct Run {
    pub records: Vec<UsageRecord>,
    pub stats: FoldStats,
    pub log_end: Position,
    pub torn_tail: Option<String>,
}

/// Holds `<aggregate>/LOCK` for the life of the value: one aggregator at a time.
fn lock(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let p = dir.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!("another aggregator is running ({} is locked)", p.display())
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).context(format!("locking {}", p.display())),
    }
}

/// Folds the log into the stored state, saves it, writes `usage-<period>.json`, and
/// returns the period's records.
pub fn run(meter_dir: &Path, period: &str, registry: Option<&Registry>) -> Result<Run> {
    check_period(period).map_err(|e| anyhow!(e))?;
    let paths = Paths::new(meter_dir);
    let _lock = lock(&paths.aggregate)?;
    let mut state = State::load(&paths.state())?;
    let scan = log::read(&paths.log, None)?;
    let stats = state.fold(scan.events.iter().map(|(_, e)| e))?;
    state.log_end = state.log_end.max(scan.end);
    state.save(&paths.state())?;
    let records = records(&state, period, registry);
    write_atomic(&paths.usage(period), &serde_json::to_vec_pretty(&records)?)?;
    Ok(Run {
        records,
        stats,
        log_end: state.log_end,
        torn_tail: scan.torn_tail,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::metering::event::{KeyKind, Prediction, RequestKey};
    use std::time::{Duration, UNIX_EPOCH};

    /// 2026-11-29T13:04:25Z
    pub const NOV: u64 = 1_795_957_465;
    /// 2026-12-01T00:00:00Z
    pub const DEC_1: u64 = 1_796_083_200;

    pub fn ev_at(tenant: &str, key: &str, rows: u64, unix: u64) -> Event {
        let k = RequestKey::new(KeyKind::RequestId, key);
        Event::prediction(&Prediction {
            metric: Metric::Predictions,
            source: "//test",
            tenant,
            key: &k,
            rows,
            model_name: "eta",
            model_version: "1",
            tier: "pool",
            region: "us-east-1",
            latency: Duration::from_millis(2),
            at: UNIX_EPOCH + Duration::from_secs(unix),
        })
    }

    fn nov(state: &State, tenant: &str) -> u64 {
        state.usage["2026-11"][tenant].predictions
    }

    #[test]
    fn the_four_dedupe_cases() {
        let mut s = State::default();
        let a = ev_at("DL", "a", 3, NOV);
        // new/new: counted.
        let st = s.fold([&a]).unwrap();
        assert_eq!(st.new_new, 1);
        assert_eq!(nov(&s, "DL"), 3);
        // new/present: the same id twice in one run counts once.
        let b = ev_at("DL", "b", 5, NOV);
        let st = s.fold([&b, &b.clone()]).unwrap();
        assert_eq!((st.new_new, st.new_present), (1, 1));
        assert_eq!(nov(&s, "DL"), 8);
        // seen/present: a later run over the same events changes nothing.
        let st = s.fold([&a, &b]).unwrap();
        assert_eq!(st.seen_present, 2);
        assert_eq!(nov(&s, "DL"), 8);
        // seen/absent: a retry of `a` in December (same id, later time) is not
        // December usage.
        let a_retry = ev_at("DL", "a", 3, DEC_1 + 60);
        assert_eq!(a_retry.id, a.id);
        let st = s.fold([&a_retry]).unwrap();
        assert_eq!(st.seen_absent, 1);
        assert!(!s.usage.contains_key("2026-12"));
        assert_eq!(nov(&s, "DL"), 8);
        // Same key, another tenant: a distinct event.
        let st = s.fold([&ev_at("AA", "a", 1, NOV)]).unwrap();
        assert_eq!(st.new_new, 1);
        assert_eq!((nov(&s, "DL"), nov(&s, "AA")), (8, 1));
    }

    #[test]
    fn an_event_never_counts_in_two_periods() {
        let mut s = State::default();
        let last_ms_nov = ev_at("DL", "edge", 2, DEC_1 - 1);
        assert_eq!(last_ms_nov.period().as_deref(), Some("2026-11"));
        let dec = ev_at("DL", "edge", 2, DEC_1);
        assert_eq!(dec.period().as_deref(), Some("2026-12"));
        s.fold([&last_ms_nov, &dec]).unwrap();
        assert_eq!(nov(&s, "DL"), 2);
        assert!(!s.usage.contains_key("2026-12"));
        // And in a single period's records, only there.
        assert_eq!(records(&s, "2026-12", None), vec![]);
        assert_eq!(records(&s, "2026-11", None)[0].predictions, 2);
    }

    /// Writes `events` to a fresh log under `dir/log`.
    pub fn write_log(dir: &Path, events: &[Event]) {
        let (l, _) = log::Log::open(&Paths::new(dir).log, log::LogConfig::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for e in events {
                l.append(e).await.unwrap();
            }
        });
    }

    fn sample() -> Vec<Event> {
        let mut v = Vec::new();
        for i in 0..20 {
            let t = if i % 2 == 0 { "DL" } else { "AA" };
            v.push(ev_at(t, &format!("k{i}"), 1 + i % 4, NOV + i));
        }
        v
    }

    #[test]
    fn a_duplicated_log_and_a_rerun_give_the_same_totals() {
        let once = tempfile::tempdir().unwrap();
        let twice = tempfile::tempdir().unwrap();
        let events = sample();
        write_log(once.path(), &events);
        let mut doubled = events.clone();
        doubled.extend(events.iter().cloned());
        write_log(twice.path(), &doubled);
        let a = run(once.path(), "2026-11", None).unwrap();
        let b = run(twice.path(), "2026-11", None).unwrap();
        assert_eq!(a.records, b.records);
        assert_eq!(b.stats.new_present, 20);
        let want_dl: u64 = events
            .iter()
            .filter(|e| e.subject == "DL")
            .map(|e| e.data.quantity)
            .sum();
        let dl = a.records.iter().find(|r| r.tenant == "DL").unwrap();
        assert_eq!(dl.predictions, want_dl);
        // Re-running over the same log: all seen/present, same records, persisted.
        let again = run(once.path(), "2026-11", None).unwrap();
        assert_eq!(again.records, a.records);
        assert_eq!(again.stats.seen_present, 20);
        assert_eq!(again.stats.new_new, 0);
        let file: Vec<UsageRecord> = serde_json::from_slice(
            &std::fs::read(Paths::new(once.path()).usage("2026-11")).unwrap(),
        )
        .unwrap();
        assert_eq!(file, a.records);
    }

    #[test]
    fn overage_uses_the_plan_from_the_registry() {
        let doc = crate::registry::DEV_REGISTRY.replace(
            "\"per_second\": 5,",
            "\"per_second\": 5, \"included_predictions\": 10,",
        );
        assert_ne!(doc, crate::registry::DEV_REGISTRY);
        let reg = Registry::parse(doc.as_bytes()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // DL is on the standard plan in the dev registry.
        let events: Vec<Event> = (0..4)
            .map(|i| ev_at("DL", &format!("k{i}"), 4, NOV))
            .collect();
        write_log(dir.path(), &events);
        let r = run(dir.path(), "2026-11", Some(&reg)).unwrap();
        let dl = &r.records[0];
        assert_eq!(dl.plan.as_deref(), Some("standard"));
        assert_eq!(
            (
                dl.predictions,
                dl.included_predictions,
                dl.overage_predictions
            ),
            (16, 10, 6)
        );
        // Without the field: nothing included.
        let dev = Registry::parse(crate::registry::DEV_REGISTRY.as_bytes()).unwrap();
        let r = records(
            &State::load(&Paths::new(dir.path()).state()).unwrap(),
            "2026-11",
            Some(&dev),
        );
        assert_eq!(
            (r[0].included_predictions, r[0].overage_predictions),
            (0, 16)
        );
    }
}
