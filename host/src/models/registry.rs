//! The model registry on top of the store: alias history, pins, the pooled fallback,
//! rollback, and what serving resolves.
//!
//! ```text
//! <data>/models/<name>/history.jsonl   one JSON line per alias move: who, when, why
//! <data>/models/<name>/state.json      {"pinned": {...}, "fallback": {...}}
//! ```
//!
//! - **History** is append-only: each move is one line, appended with `O_APPEND` and
//!   fsynced, after the aliases file was replaced atomically. A crash mid-append leaves at
//!   worst a torn last line, which readers skip (and the next append starts on a fresh
//!   line), so "what was in production at time T" ([`ModelStore::production_at`]) always
//!   has an answer from the moves that completed.
//! - **Pinned**: `production` is held on a version; training runs publish candidates but
//!   never move it, and promote/rollback are refused until it is unpinned.
//! - **Fallback**: the gate refused the tenant's candidate, so the tenant is served the
//!   pooled model: the model's `production` alias is removed and `state.json` names the
//!   model serving it instead (`eta-global`) and why (`insufficient_data`, …).
//!   [`ModelStore::resolve_serving`] follows that, so the tenant registry keeps naming
//!   `eta-XX@production` and the response names the version actually used
//!   (`eta-global@N`).
//! - **Rollback** moves `production` back to the version it pointed at before its last
//!   move, in one step.

use super::failpoint;
use super::store::{
    ModelStore, ModelVersion, PRODUCTION, StoreError, check_name, now_unix_ms, read_limited,
    valid_version,
};
use crate::registry::store::{lock, write_atomic};
use bulkhead_model_kit::days::{civil_from_days, days_from_civil};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

/// Who moved an alias and why, for the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `promote`, `rollback`, `pin`, `unpin`, `fallback`, `train`, `publish`.
    pub action: String,
    pub by: String,
    pub why: String,
}

impl Note {
    /// `by` defaults to the OS user running the command.
    pub fn new(action: &str, by: Option<&str>, why: impl Into<String>) -> Note {
        Note {
            action: action.to_string(),
            by: by.map_or_else(whoami, str::to_string),
            why: why.into(),
        }
    }
}

/// `$USER` (or `$LOGNAME`), else `unknown`.
pub fn whoami() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// One alias move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    pub at_unix_ms: u64,
    pub alias: String,
    /// The version before (`None`: the alias did not exist / the tenant was on the pool).
    pub from: Option<String>,
    /// The version after (`None`: removed, the tenant is served `served_by`).
    pub to: Option<String>,
    /// When `to` is `None` because of a fallback: the model serving the tenant instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    pub action: String,
    pub by: String,
    pub why: String,
}

impl HistoryEntry {
    /// What was served after this move, for people: `3` or `eta-global@production`.
    pub fn served(&self) -> String {
        match (&self.to, &self.served_by) {
            (Some(v), _) => v.clone(),
            (None, Some(m)) => format!("{m}@{PRODUCTION} (pooled fallback)"),
            (None, None) => "nothing".into(),
        }
    }
}

/// A pin: `production` held on `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub version: String,
    pub by: String,
    pub at: String,
    pub why: String,
}

/// The tenant is served another (pooled) model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fallback {
    /// The model serving the tenant, at its `production` alias (`eta-global`).
    pub to: String,
    /// `insufficient_data`, `above_threshold` or `worse_than_global`.
    pub reason: String,
    /// The refused candidate version, if one was fitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    pub since: String,
}

/// `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<Pin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
}

const MAX_STATE_BYTES: u64 = 1 << 20;
/// History files larger than this are read from their last 64 MiB only.
const MAX_HISTORY_BYTES: u64 = 64 << 20;

impl ModelStore {
    fn state_path(&self, name: &str) -> PathBuf {
        self.model_dir(name).join("state.json")
    }

    fn history_path(&self, name: &str) -> PathBuf {
        self.model_dir(name).join("history.jsonl")
    }

    /// `name`'s pin and fallback (default: neither).
    pub fn state(&self, name: &str) -> Result<ModelState, StoreError> {
        check_name(name)?;
        let path = self.state_path(name);
        match read_limited(&path, MAX_STATE_BYTES) {
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(ModelState::default())
            }
            Err(e) => Err(e),
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Invalid(format!("{}: {e}", path.display()))),
        }
    }

    /// Under the lock of `name`: read-modify-write of `state.json` (atomic).
    pub(super) fn update_state(
        &self,
        name: &str,
        f: impl FnOnce(&mut ModelState),
    ) -> Result<ModelState, StoreError> {
        let mut state = self.state(name)?;
        let before = state.clone();
        f(&mut state);
        if state != before {
            let json = serde_json::to_vec_pretty(&state)
                .map_err(|e| StoreError::Invalid(format!("serialising state: {e}")))?;
            write_atomic(&self.state_path(name), &json)?;
            failpoint::hit("state:written");
        }
        Ok(state)
    }

    /// Refuses to move a pinned `production`.
    pub(super) fn check_not_pinned(&self, name: &str, alias: &str) -> Result<(), StoreError> {
        if alias != PRODUCTION {
            return Ok(());
        }
        match self.state(name)?.pinned {
            Some(p) => Err(StoreError::Invalid(format!(
                "{name}@{PRODUCTION} is pinned to {} (by {}, {}: {}); unpin it first",
                p.version, p.by, p.at, p.why
            ))),
            None => Ok(()),
        }
    }

    /// Under the lock of `name`: appends one line to the history, fsynced.
    pub(super) fn append_history(
        &self,
        name: &str,
        alias: &str,
        from: Option<&str>,
        to: Option<&str>,
        note: &Note,
    ) -> Result<(), StoreError> {
        let served_by = if to.is_none() && alias == PRODUCTION {
            self.state(name)?.fallback.map(|f| f.to)
        } else {
            None
        };
        let ms = now_unix_ms();
        let entry = HistoryEntry {
            at: rfc3339(ms),
            at_unix_ms: ms,
            alias: alias.to_string(),
            from: from.map(str::to_string),
            to: to.map(str::to_string),
            served_by,
            action: note.action.clone(),
            by: note.by.clone(),
            why: note.why.clone(),
        };
        let mut line = serde_json::to_vec(&entry)
            .map_err(|e| StoreError::Invalid(format!("serialising history: {e}")))?;
        line.push(b'\n');
        let path = self.history_path(name);
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        // A torn last line (a crash mid-append) is closed first, so this entry starts on
        // a line of its own.
        let len = file.metadata().map_err(io)?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1)).map_err(io)?;
            file.read_exact(&mut last).map_err(io)?;
            if last[0] != b'\n' {
                line.insert(0, b'\n');
            }
        }
        let (head, tail) = line.split_at(line.len() / 2);
        file.write_all(head).map_err(io)?;
        failpoint::hit("history:half-written");
        file.write_all(tail).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(())
    }

    /// Every complete history entry of `name`, oldest first (torn or unreadable lines
    /// are skipped).
    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        check_name(name)?;
        let path = self.history_path(name);
        let mut file = match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?,
        };
        let io = |source| StoreError::Io {
            path: path.clone(),
            source,
        };
        let len = file.metadata().map_err(io)?.len();
        if len > MAX_HISTORY_BYTES {
            file.seek(SeekFrom::Start(len - MAX_HISTORY_BYTES))
                .map_err(io)?;
        }
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(io)?;
        Ok(text
            .split(|&b| b == b'\n')
            .filter_map(|l| serde_json::from_slice::<HistoryEntry>(l).ok())
            .collect())
    }

    /// The version `production` pointed at just before it moved to what it is now: the
    /// rollback target, and the version serving keeps resident.
    pub fn previous_production(&self, name: &str) -> Result<Option<String>, StoreError> {
        let current = self.aliases(name)?.get(PRODUCTION).cloned();
        Ok(self
            .history(name)?
            .into_iter()
            .rev()
            .filter(|e| e.alias == PRODUCTION && e.to == current && e.from != current)
            .find_map(|e| e.from))
    }

    /// The history entry that set `production` as it stood at `at_unix_ms` (`None`: it
    /// had not been set by then).
    pub fn production_at(
        &self,
        name: &str,
        at_unix_ms: u64,
    ) -> Result<Option<HistoryEntry>, StoreError> {
        Ok(self
            .history(name)?
            .into_iter()
            .filter(|e| e.alias == PRODUCTION && e.at_unix_ms <= at_unix_ms)
            .max_by_key(|e| e.at_unix_ms))
    }

    /// Promotes `version` to production (refused when pinned).
    pub fn promote(
        &self,
        name: &str,
        version: &str,
        note: &Note,
    ) -> Result<Option<String>, StoreError> {
        self.set_alias_noted(name, PRODUCTION, version, note)
    }

    /// Moves production back to the version before its last move. Returns (from, to).
    pub fn rollback(&self, name: &str, note: &Note) -> Result<(String, String), StoreError> {
        check_name(name)?;
        let current = self.aliases(name)?.get(PRODUCTION).cloned();
        let prev = self.previous_production(name)?.ok_or_else(|| {
            StoreError::Invalid(format!(
                "{name}@{PRODUCTION}: no earlier version in its history to roll back to"
            ))
        })?;
        self.set_alias_noted(name, PRODUCTION, &prev, note)?;
        Ok((current.unwrap_or_else(|| "pooled fallback".into()), prev))
    }

    /// Pins production to `version` (moving it there first if needed).
    pub fn pin(&self, name: &str, version: &str, note: &Note) -> Result<(), StoreError> {
        check_name(name)?;
        if !valid_version(version) {
            return Err(StoreError::Invalid(format!(
                "version {version:?}: a number"
            )));
        }
        let pin_note = Note {
            action: "pin".into(),
            ..note.clone()
        };
        if self.aliases(name)?.get(PRODUCTION).map(String::as_str) != Some(version) {
            self.set_alias_noted(name, PRODUCTION, version, &pin_note)?;
        }
        let _lock = lock(&self.aliases_path(name))?;
        self.update_state(name, |s| {
            s.pinned = Some(Pin {
                version: version.to_string(),
                by: note.by.clone(),
                at: rfc3339(now_unix_ms()),
                why: note.why.clone(),
            });
        })?;
        Ok(())
    }

    /// Releases a pin. Returns the version it held, if any.
    pub fn unpin(&self, name: &str) -> Result<Option<String>, StoreError> {
        check_name(name)?;
        let _lock = lock(&self.aliases_path(name))?;
        let mut was = None;
        self.update_state(name, |s| was = s.pinned.take().map(|p| p.version))?;
        Ok(was)
    }

    /// The gate refused `name`'s candidate: the tenant is served `to@production` (the
    /// pooled model) from now on. Refused when pinned.
    pub fn fall_back(
        &self,
        name: &str,
        to: &str,
        reason: &str,
        candidate: Option<&str>,
        note: &Note,
    ) -> Result<Option<String>, StoreError> {
        check_name(name)?;
        check_name(to)?;
        self.ensure_model_dir(name)?;
        let _lock = lock(&self.aliases_path(name))?;
        self.check_not_pinned(name, PRODUCTION)?;
        // State first, so the history line can name what serves the tenant, and so a
        // crash between the two steps leaves either the old version (alias still there)
        // or the pooled model serving — never nothing.
        self.update_state(name, |s| {
            s.fallback = Some(Fallback {
                to: to.to_string(),
                reason: reason.to_string(),
                candidate: candidate.map(str::to_string),
                since: rfc3339(now_unix_ms()),
            });
        })?;
        let aliases = self.aliases(name)?;
        if aliases.contains_key(PRODUCTION) {
            self.write_alias(name, PRODUCTION, None, note)
        } else {
            let last = self
                .history(name)?
                .into_iter()
                .rev()
                .find(|e| e.alias == PRODUCTION);
            if last.is_none_or(|e| e.to.is_some() || e.served_by.as_deref() != Some(to)) {
                self.append_history(name, PRODUCTION, None, None, note)?;
            }
            Ok(None)
        }
    }

    /// The version serving `name@selector`: like [`ModelStore::resolve`], but a model on
    /// the pooled fallback (no `production`, `state.json` names a fallback) resolves to
    /// the fallback model's `production` — one level, never a chain.
    pub fn resolve_serving(&self, name: &str, selector: &str) -> Result<ModelVersion, StoreError> {
        match self.resolve(name, selector) {
            Err(StoreError::NotFound { .. }) if selector == PRODUCTION => {
                match self.state(name)?.fallback {
                    Some(f) if f.to != name => self.resolve(&f.to, PRODUCTION),
                    _ => self.resolve(name, selector),
                }
            }
            other => other,
        }
    }
}

/// `2026-11-28T12:31:07.123Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let ms = i64::try_from(unix_ms).unwrap_or(i64::MAX);
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(i32::try_from(days).unwrap_or(i32::MAX));
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// Parses RFC 3339 (`2026-11-28T12:31:07Z`, fractional seconds and `±hh:mm` offsets
/// allowed; a bare date means its midnight UTC) to Unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let num = |t: &str| -> Option<i64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (date, time) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut dp = date.splitn(3, '-');
    let (y, m, d) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
    let day = days_from_civil(
        i32::try_from(y).ok()?,
        u32::try_from(m).ok()?,
        u32::try_from(d).ok()?,
    )?;
    let mut ms = i64::from(day) * 86_400_000;
    if let Some(t) = time {
        let (clock, offset_min) = if let Some(c) = t.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else if let Some(i) = t.rfind(['+', '-']) {
            let (c, off) = t.split_at(i);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let (oh, om) = off.get(1..)?.split_once(':')?;
            (c, sign * (num(oh)? * 60 + num(om)?))
        } else {
            return None;
        };
        let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
        let mut tp = hms.splitn(3, ':');
        let (h, mi, sec) = (num(tp.next()?)?, num(tp.next()?)?, num(tp.next()?)?);
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let milli = if frac.is_empty() {
            0
        } else {
            let f3: String = frac.chars().chain("000".chars()).take(3).collect();
            num(&f3)?
        };
        ms += ((h * 60 + mi - offset_min) * 60 + sec) * 1000 + milli;
    }
    u64::try_from(ms).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        let t = parse_rfc3339("2026-11-28T12:31:07.123Z").unwrap();
        assert_eq!(rfc3339(t), "2026-11-28T12:31:07.123Z");
        assert_eq!(parse_rfc3339("2026-11-28T13:31:07.123+01:00"), Some(t));
        assert_eq!(
            parse_rfc3339("2024-02-29"),
            parse_rfc3339("2024-02-29T00:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2013-01-01T00:00:00Z"),
            Some(1_356_998_400_000)
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-28T25:00:00Z",
            "2026-11-28T12:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
