//! Process-wide state: what all worker threads (Wasm VMs) of one Envoy process share.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 2026-01-01T00:00:00Z: a fixed default so that tests never depend on the real clock.
const DEFAULT_EPOCH_SECS: u64 = 1_767_225_600;

/// Process-wide state shared by several VMs, like one Envoy process with several worker
/// threads: shared data (key -> (bytes, cas)), metrics, and the frozen clock.
/// `Clone` gives another handle to the same state.
#[derive(Clone, Default)]
pub struct Process {
    inner: Arc<Mutex<ProcessState>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetricKind {
    Counter = 0,
    Gauge = 1,
    Histogram = 2,
}

impl MetricKind {
    pub(crate) fn from_abi(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::Counter),
            1 => Some(Self::Gauge),
            2 => Some(Self::Histogram),
            _ => None,
        }
    }
}

struct Metric {
    name: String,
    kind: MetricKind,
    value: u64,
    samples: Vec<u64>,
}

/// Outcome of a metric operation, mapped to ABI statuses by the caller.
pub(crate) enum MetricError {
    NotFound,
    BadArgument,
}

pub(crate) struct ProcessState {
    /// Frozen wall clock, as time since the Unix epoch.
    now: Duration,
    shared: BTreeMap<String, (Vec<u8>, u32)>,
    last_cas: u32,
    metrics: Vec<Metric>,
}

impl Default for ProcessState {
    fn default() -> Self {
        Self {
            now: Duration::from_secs(DEFAULT_EPOCH_SECS),
            shared: BTreeMap::new(),
            last_cas: 0,
            metrics: Vec::new(),
        }
    }
}

impl ProcessState {
    fn next_cas(&mut self) -> u32 {
        // 0 means "no cas" in the ABI, so never hand it out.
        self.last_cas = self.last_cas.wrapping_add(1).max(1);
        self.last_cas
    }

    /// Envoy semantics: a cas is only checked when non-zero and the key exists.
    pub(crate) fn set_shared(&mut self, key: &str, value: &[u8], cas: u32) -> bool {
        if let Some((_, current)) = self.shared.get(key)
            && cas != 0
            && cas != *current
        {
            return false;
        }
        let cas = self.next_cas();
        self.shared.insert(key.to_string(), (value.to_vec(), cas));
        true
    }

    pub(crate) fn get_shared(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.get(key).cloned()
    }

    pub(crate) fn now_nanos(&self) -> u64 {
        u64::try_from(self.now.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Ids carry the kind in the low two bits, like Envoy, so a wrong-kind id is detectable.
    pub(crate) fn define_metric(&mut self, kind: MetricKind, name: &str) -> u32 {
        let index = match self
            .metrics
            .iter()
            .position(|m| m.kind == kind && m.name == name)
        {
            Some(i) => i,
            None => {
                self.metrics.push(Metric {
                    name: name.to_string(),
                    kind,
                    value: 0,
                    samples: Vec::new(),
                });
                self.metrics.len() - 1
            }
        };
        (u32::try_from(index + 1).unwrap_or(u32::MAX >> 2) << 2) | kind as u32
    }

    fn metric_mut(&mut self, id: u32) -> Option<&mut Metric> {
        let index = usize::try_from(id >> 2).ok()?.checked_sub(1)?;
        self.metrics
            .get_mut(index)
            .filter(|m| m.kind as u32 == id & 3)
    }

    pub(crate) fn increment_metric(&mut self, id: u32, offset: i64) -> Result<(), MetricError> {
        let metric = self.metric_mut(id).ok_or(MetricError::NotFound)?;
        match metric.kind {
            // Envoy refuses to decrement counters.
            MetricKind::Counter if offset <= 0 => Err(MetricError::BadArgument),
            MetricKind::Counter | MetricKind::Gauge => {
                metric.value = metric.value.saturating_add_signed(offset);
                Ok(())
            }
            MetricKind::Histogram => Err(MetricError::BadArgument),
        }
    }

    pub(crate) fn record_metric(&mut self, id: u32, value: u64) -> Result<(), MetricError> {
        let metric = self.metric_mut(id).ok_or(MetricError::NotFound)?;
        match metric.kind {
            // Envoy adds the value to a counter, sets a gauge, records a histogram sample.
            MetricKind::Counter => metric.value = metric.value.saturating_add(value),
            MetricKind::Gauge => metric.value = value,
            MetricKind::Histogram => metric.samples.push(value),
        }
        Ok(())
    }

    pub(crate) fn get_metric(&mut self, id: u32) -> Result<u64, MetricError> {
        let metric = self.metric_mut(id).ok_or(MetricError::NotFound)?;
        match metric.kind {
            MetricKind::Histogram => Err(MetricError::BadArgument),
            _ => Ok(metric.value),
        }
    }
}

impl Process {
    pub fn new() -> Self {
        Self::default()
    }

    /// Poisoning only means another test thread panicked; the data is still usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ProcessState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the frozen wall clock (default 2026-01-01T00:00:00Z). Times before the Unix
    /// epoch are clamped to it.
    pub fn set_time(&self, t: SystemTime) {
        self.lock().now = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    }

    /// Moves the frozen clock forward.
    pub fn advance(&self, d: Duration) {
        let mut state = self.lock();
        state.now = state.now.saturating_add(d);
    }

    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + self.lock().now
    }

    /// Current value and cas of a shared data key.
    pub fn shared_data(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.lock().get_shared(key)
    }

    /// Unconditionally stores a value (bumping its cas), as another worker would.
    pub fn set_shared_data(&self, key: &str, value: &[u8]) {
        self.lock().set_shared(key, value, 0);
    }

    pub fn shared_data_keys(&self) -> Vec<String> {
        self.lock().shared.keys().cloned().collect()
    }

    /// Value of a counter or gauge, by the name the filter defined it with.
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.lock()
            .metrics
            .iter()
            .find(|m| m.name == name && m.kind != MetricKind::Histogram)
            .map(|m| m.value)
    }

    /// All counters and gauges, sorted by name.
    pub fn metrics(&self) -> Vec<(String, u64)> {
        let mut all: Vec<(String, u64)> = self
            .lock()
            .metrics
            .iter()
            .filter(|m| m.kind != MetricKind::Histogram)
            .map(|m| (m.name.clone(), m.value))
            .collect();
        all.sort();
        all
    }

    /// Samples recorded into a histogram, in order.
    pub fn histogram(&self, name: &str) -> Option<Vec<u64>> {
        self.lock()
            .metrics
            .iter()
            .find(|m| m.name == name && m.kind == MetricKind::Histogram)
            .map(|m| m.samples.clone())
    }
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("now", &self.now())
            .field("shared_data_keys", &self.shared_data_keys())
            .field("metrics", &self.metrics())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_rules_match_envoy() {
        let p = Process::new();
        let mut s = p.lock();
        assert!(s.set_shared("k", b"1", 12345), "cas ignored for a new key");
        let (_, cas) = s.get_shared("k").unwrap();
        assert!(!s.set_shared("k", b"2", cas + 1));
        assert!(s.set_shared("k", b"2", cas));
        let (value, cas2) = s.get_shared("k").unwrap();
        assert_eq!(value, b"2");
        assert_ne!(cas, cas2);
        assert!(s.set_shared("k", b"3", 0), "cas 0 means unconditional");
    }

    #[test]
    fn metric_ids_are_stable_and_typed() {
        let p = Process::new();
        let mut s = p.lock();
        let c = s.define_metric(MetricKind::Counter, "c");
        assert_eq!(c, s.define_metric(MetricKind::Counter, "c"));
        let g = s.define_metric(MetricKind::Gauge, "g");
        assert!(s.increment_metric(c, 2).is_ok());
        assert!(matches!(
            s.increment_metric(c, -1),
            Err(MetricError::BadArgument)
        ));
        assert!(s.increment_metric(g, -5).is_ok());
        assert!(s.record_metric(g, 7).is_ok());
        assert!(matches!(s.get_metric(c ^ 1), Err(MetricError::NotFound)));
        drop(s);
        assert_eq!(p.metrics(), vec![("c".into(), 2), ("g".into(), 7)]);
    }

    #[test]
    fn default_clock_is_2026() {
        let p = Process::new();
        assert_eq!(
            p.now(),
            UNIX_EPOCH + Duration::from_secs(DEFAULT_EPOCH_SECS)
        );
        p.advance(Duration::from_millis(1500));
        assert_eq!(
            p.lock().now_nanos(),
            DEFAULT_EPOCH_SECS * 1_000_000_000 + 1_500_000_000
        );
    }
}
