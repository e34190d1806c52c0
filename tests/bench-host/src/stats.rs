//! Small measuring tools: percentiles, a seeded PRNG, the Zipf sampler, an LRU
//! simulation (what an ideal LRU of the same size would hit on the same sequence), and
//! CPU accounting (how much of the machine other processes took during a phase).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// p50/p99/mean of a sample set, in µs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
}

pub fn summarize(samples: &[Duration]) -> Summary {
    if samples.is_empty() {
        return Summary::default();
    }
    let mut us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    let at = |p: f64| {
        // Nearest rank: the smallest sample with at least p% of samples ≤ it.
        let rank = ((p / 100.0) * us.len() as f64).ceil() as usize;
        us[rank.clamp(1, us.len()) - 1]
    };
    Summary {
        n: us.len(),
        p50: at(50.0),
        p99: at(99.0),
        mean: us.iter().sum::<f64>() / us.len() as f64,
    }
}

/// splitmix64: deterministic, no dependency, good enough to draw tenants.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf over ranks 0..n with exponent s: P(rank k) ∝ 1 / (k + 1)^s.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut acc = 0.0;
        for k in 1..=n {
            acc += 1.0 / (k as f64).powf(s);
            cdf.push(acc);
        }
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len().saturating_sub(1))
    }

    /// Probability mass of the `k` most popular ranks: the hit rate of a cache that
    /// always holds exactly those (the best any cache of size k can do on average).
    pub fn top_mass(&self, k: usize) -> f64 {
        if k == 0 || self.cdf.is_empty() {
            return 0.0;
        }
        self.cdf[k.min(self.cdf.len()) - 1]
    }
}

/// Hits of an LRU of `capacity` entries over `seq`, starting from `warm` (already
/// resident, most recent last) — the reference for the host's cache on the same draws.
pub fn lru_hits(capacity: usize, warm: &[usize], seq: &[usize]) -> usize {
    let mut order: VecDeque<usize> = VecDeque::new();
    let mut resident: HashMap<usize, ()> = HashMap::new();
    let mut touch = |k: usize, order: &mut VecDeque<usize>| -> bool {
        let hit = resident.contains_key(&k);
        if hit {
            if let Some(pos) = order.iter().position(|&x| x == k) {
                order.remove(pos);
            }
        } else {
            resident.insert(k, ());
            if order.len() == capacity
                && let Some(old) = order.pop_front()
            {
                resident.remove(&old);
            }
        }
        order.push_back(k);
        hit
    };
    for &k in warm {
        touch(k, &mut order);
    }
    seq.iter().filter(|&&k| touch(k, &mut order)).count()
}

/// Busy ticks (user+nice+system+irq+softirq+steal) of all CPUs, from /proc/stat.
fn machine_busy_ticks() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0;
    };
    stat.lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .enumerate()
                // user nice system idle iowait irq softirq steal
                .filter(|(i, _)| matches!(i, 0 | 1 | 2 | 5 | 6 | 7))
                .filter_map(|(_, v)| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0)
}

/// utime + stime of a process, in ticks.
pub fn process_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

pub fn clk_tck() -> f64 {
    // Linux on x86_64/aarch64 reports 100; /proc/self/auxv would say, but this is a bench.
    100.0
}

/// CPU use over a phase: this process + the processes in `pids`, and everyone else.
pub struct CpuProbe {
    pids: Vec<u32>,
    start: Instant,
    busy: u64,
    own: u64,
}

/// Shares of the machine (100 = every CPU busy) over a phase.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuShare {
    pub ours: f64,
    pub others: f64,
}

impl CpuProbe {
    pub fn start(pids: &[u32]) -> CpuProbe {
        let mut pids = pids.to_vec();
        pids.push(std::process::id());
        let own = pids.iter().map(|&p| process_ticks(p)).sum();
        CpuProbe {
            pids,
            start: Instant::now(),
            busy: machine_busy_ticks(),
            own,
        }
    }

    pub fn finish(&self) -> CpuShare {
        let secs = self.start.elapsed().as_secs_f64();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let busy = machine_busy_ticks().saturating_sub(self.busy) as f64;
        let own_now: u64 = self.pids.iter().map(|&p| process_ticks(p)).sum();
        let own = own_now.saturating_sub(self.own) as f64;
        let pct = |ticks: f64| {
            if secs <= 0.0 {
                0.0
            } else {
                (100.0 * ticks / clk_tck() / secs / cpus).clamp(0.0, 100.0)
            }
        };
        CpuShare {
            ours: pct(own),
            others: pct((busy - own).max(0.0)),
        }
    }
}

/// The 1/5/15-minute load averages as printed by /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM, RssAnon, …).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn percentiles_and_lru() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        let m = summarize(&s);
        assert_eq!((m.p50, m.p99), (50.0, 99.0));
        assert_eq!(lru_hits(2, &[], &[1, 2, 1, 3, 2, 1]), 1);
        let z = Zipf::new(1000, 1.0);
        assert!(
            (z.top_mass(100) - 0.693).abs() < 0.01,
            "{}",
            z.top_mass(100)
        );
        let mut rng = Rng::new(1);
        let n = 20_000;
        let top = (0..n).filter(|_| z.sample(&mut rng) < 100).count();
        assert!((top as f64 / n as f64 - 0.693).abs() < 0.02);
    }
}
