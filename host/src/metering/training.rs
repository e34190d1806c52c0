//! The batch plane's end of metering: `bulkhead train` records one `training_seconds`
//! event per tenant model it fitted, in a meter log of its own (a log has one writer,
//! and `serve` holds the data plane's), fsynced before the run reports success.

use super::event::{Event, Training};
use super::sink::Meter;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// `<data-dir>/meter-training`: where `bulkhead train` meters by default.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("meter-training")
}

/// A meter log for a (synchronous) training run.
pub struct TrainingMeter {
    meter: Meter,
    rt: tokio::runtime::Runtime,
}

impl TrainingMeter {
    pub fn open(meter_dir: &Path) -> Result<TrainingMeter> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the training meter's runtime")?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let source = format!("//{host}/bulkhead-train");
        // The log's writer thread is spawned inside the runtime.
        let (meter, rec) = rt.block_on(async { Meter::open(meter_dir, source) })?;
        if let Some(t) = rec.truncated {
            tracing::warn!(dir = %meter_dir.display(), "training meter log: truncated a torn tail: {t:?}");
        }
        Ok(TrainingMeter { meter, rt })
    }

    /// Appends and fsyncs the run's event; returns its id.
    /// `run.source` is ignored: the meter's own is used.
    pub fn record(&self, run: Training<'_>) -> Result<String> {
        let ev = Event::training(&Training {
            source: self.meter.source(),
            ..run
        });
        self.rt
            .block_on(self.meter.record(&ev))
            .map_err(|e| anyhow::anyhow!("metering {}'s training run: {e}", run.tenant))?;
        Ok(ev.id)
    }
}
