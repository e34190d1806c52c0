//! `make bench-host` (run by scripts/bench-host.sh): the host's model path, measured in
//! one run and written as the "## Host" section of BENCHMARKS.md.
//!
//! 1. the ETA model natively (decode artifact + `predict_columns`, the plugin's exact
//!    work per call) vs `Sandbox::predict` with the model resident, 100-row batches;
//! 2. a warm request through `bulkhead serve` over HTTP (keep-alive, 100 rows);
//! 3. cold loads: from the host's precompiled file, by compiling the `.wasm`, and a new
//!    tenant's artifact while the plugin's code is resident;
//! 4. 1,000 tenants with their own models, cache capacity 100, a Zipf (s = 1) tenant
//!    mix through `bulkhead serve`: the server's resident memory and the hit rate;
//! 5. feature stores: a full pipeline request whose rows all look features up, SQLite vs
//!    PostgreSQL, 1 and 100 rows (its own "## Feature stores" section; run first, and
//!    alone with `--only features`).
//!
//! Everything is bounded in count and time and bound to 127.0.0.1.

mod features;
mod http;
mod inproc;
mod report;
mod setup;
mod stats;

use anyhow::{Context, Result, bail};
use bulkhead::dev::issuer::DevIssuer;
use bulkhead::sandbox::{ModelSource, Sandbox, SandboxConfig};
use http::{Client, Server, metric_sum};
use report::{HttpRun, Report, ZipfRun};
use stats::{CpuProbe, Rng, Zipf, loadavg, lru_hits, status_kib, summarize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Knobs, as `--name value` flags (the script passes its environment through).
struct Args {
    bulkhead: PathBuf,
    plugin: PathBuf,
    flights: PathBuf,
    work: PathBuf,
    out: PathBuf,
    port: u16,
    tenants: usize,
    cache_entries: usize,
    zipf_s: f64,
    rows: usize,
    native_rounds: usize,
    native_per_round: usize,
    cold_samples: usize,
    compiles: usize,
    http_requests: usize,
    http_seconds: u64,
    zipf_warmup: usize,
    zipf_requests: usize,
    zipf_seconds: u64,
    command: String,
    date: String,
    build_seconds: u64,
    /// `all`, or `features` for the feature-store phase only.
    only: String,
    features_out: PathBuf,
    features_requests: usize,
    features_seconds: u64,
}

fn parse_args() -> Result<Args> {
    let mut map: HashMap<String, String> = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let Some(name) = k.strip_prefix("--") else {
            bail!("unexpected argument {k:?} (flags are --name value)");
        };
        let v = it
            .next()
            .with_context(|| format!("--{name} needs a value"))?;
        map.insert(name.to_string(), v);
    }
    let s = |k: &str| {
        map.get(k)
            .cloned()
            .with_context(|| format!("--{k} is required"))
    };
    fn num<T: std::str::FromStr>(map: &HashMap<String, String>, k: &str, d: T) -> Result<T> {
        match map.get(k) {
            None => Ok(d),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow::anyhow!("--{k}: not a number: {v:?}")),
        }
    }
    Ok(Args {
        bulkhead: s("bulkhead")?.into(),
        plugin: s("plugin")?.into(),
        flights: s("flights")?.into(),
        work: s("work")?.into(),
        out: s("out")?.into(),
        port: num(&map, "port", 18480)?,
        tenants: num(&map, "tenants", 1000)?,
        cache_entries: num(&map, "cache-entries", 100)?,
        zipf_s: num(&map, "zipf-s", 1.0)?,
        rows: num(&map, "rows", 100)?,
        native_rounds: num(&map, "native-rounds", 10)?,
        native_per_round: num(&map, "native-per-round", 200)?,
        cold_samples: num(&map, "cold-samples", 50)?,
        compiles: num(&map, "compiles", 3)?,
        http_requests: num(&map, "http-requests", 3000)?,
        http_seconds: num(&map, "http-seconds", 30)?,
        zipf_warmup: num(&map, "zipf-warmup", 1000)?,
        zipf_requests: num(&map, "zipf-requests", 5000)?,
        zipf_seconds: num(&map, "zipf-seconds", 60)?,
        command: map
            .get("command")
            .cloned()
            .unwrap_or_else(|| "make bench-host".into()),
        date: map.get("date").cloned().unwrap_or_default(),
        build_seconds: num(&map, "build-seconds", 0)?,
        only: map.get("only").cloned().unwrap_or_else(|| "all".into()),
        features_out: s("features-out")?.into(),
        features_requests: num(&map, "features-requests", 2000)?,
        features_seconds: num(&map, "features-seconds", 12)?,
    })
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let started = Instant::now();
    let mut rep = Report {
        command: args.command.clone(),
        date: args.date.clone(),
        build_seconds: args.build_seconds,
        load_before: loadavg(),
        tenants: args.tenants,
        cache_entries: args.cache_entries,
        zipf_s: args.zipf_s,
        rows: args.rows,
        ..Report::default()
    };
    let log = |m: &str| {
        eprintln!(
            "bench-host: [{:>5.1}s] {m}",
            started.elapsed().as_secs_f64()
        )
    };

    if args.work.exists() {
        std::fs::remove_dir_all(&args.work)
            .with_context(|| format!("clearing {}", args.work.display()))?;
    }
    std::fs::create_dir_all(&args.work)?;

    // ---- 5: the feature stores (first: it is the shortest, and `--only features` stops here).
    let section = features::run(
        &features::Opts {
            bulkhead: args.bulkhead.clone(),
            plugin: args.plugin.clone(),
            flights: args.flights.clone(),
            work: args.work.clone(),
            port: args.port,
            requests: args.features_requests,
            seconds: args.features_seconds,
            warmup: 100,
            command: args.command.clone(),
            date: args.date.clone(),
        },
        &log,
    )?;
    std::fs::write(&args.features_out, &section)
        .with_context(|| format!("writing {}", args.features_out.display()))?;
    if args.only == "features" {
        log(&format!(
            "done (feature stores only); section written to {}",
            args.features_out.display()
        ));
        return Ok(());
    }
    let plugin: Arc<[u8]> = std::fs::read(&args.plugin)
        .with_context(|| format!("reading {}", args.plugin.display()))?
        .into();
    rep.plugin_bytes = plugin.len();

    log("fitting the base models and deriving the tenants' artifacts");
    let mut world = setup::build(&args.flights, args.tenants)?;
    let data_dir = args.work.join("data-plane");
    setup::publish(&mut world, &data_dir, &plugin)?;
    rep.base_models = world.base_artifacts;
    rep.artifact_bytes = world.artifact_bytes;
    rep.publish_seconds = world.publish_time.as_secs_f64();
    log(&format!(
        "published {} models in {:.1}s",
        args.tenants + 2,
        rep.publish_seconds
    ));
    let (body_json, rows) = setup::rows(&world.data, args.rows)?;
    let body = serde_json::to_vec(&body_json)?;
    rep.body_bytes = body.len();

    // ---- 1 and 3: in this process, against the library.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let artifact: Arc<[u8]> = world.hot_artifact.as_slice().into();
    let sandbox_dir = args.work.join("sandbox");
    rt.block_on(async {
        let sb = Sandbox::new(SandboxConfig {
            data_dir: Some(sandbox_dir.clone()),
            ..SandboxConfig::default()
        })?;
        let model = ModelSource::from_bytes("eta-UA", Arc::clone(&plugin), Arc::clone(&artifact));
        log("1: native vs sandbox");
        let probe = CpuProbe::start(&[]);
        rep.native = inproc::native_vs_sandbox(
            &sb,
            &model,
            &artifact,
            &rows,
            args.native_rounds,
            args.native_per_round,
        )
        .await?;
        rep.cpu_native = probe.finish();
        log("3: cold loads");
        let others: Vec<ModelSource> = world
            .tenant_artifacts
            .iter()
            .take(args.cold_samples)
            .enumerate()
            .map(|(i, a)| {
                ModelSource::from_bytes(
                    setup::tenant_id(i),
                    Arc::clone(&plugin),
                    a.as_slice().into(),
                )
            })
            .collect();
        let probe = CpuProbe::start(&[]);
        rep.cold = inproc::cold_loads(
            &sb,
            &model,
            &others,
            &rows,
            args.cold_samples,
            args.compiles,
        )
        .await?;
        rep.cpu_cold = probe.finish();
        rep.precompiled_bytes = inproc::precompiled_bytes(&sandbox_dir);
        anyhow::Ok(())
    })?;
    drop(rt);

    // ---- 2 and 4: `bulkhead serve` in its own process.
    let state_dir = args.work.join("state");
    let issuer = DevIssuer::open(&state_dir.join("dev"))?;
    let registry = args.work.join("registry.json");
    std::fs::write(
        &registry,
        serde_json::to_vec_pretty(&setup::registry(args.tenants))?,
    )?;
    let mut tenants: Vec<String> = (0..args.tenants).map(setup::tenant_id).collect();
    tenants.push(setup::HOT_TENANT.to_string());
    let tokens: HashMap<String, String> = tenants
        .iter()
        .map(|t| Ok((t.clone(), issuer.token(t, 3600)?)))
        .collect::<Result<_>>()?;
    let token = |t: &str| tokens.get(t).cloned().unwrap_or_default();
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    log(&format!("starting bulkhead serve on {addr}"));
    let server = Server::start_with(
        &args.bulkhead,
        &state_dir,
        &registry,
        &data_dir,
        addr,
        args.cache_entries,
        &args.work.join("serve.log"),
        &[],
    )?;
    let pid = server.pid();
    rep.rss_idle_kib = status_kib(pid, "VmRSS").unwrap_or(0);
    let mut client = Client::connect(addr)?;

    log("2: warm requests over HTTP");
    let hot = setup::HOT_TENANT;
    let req = Client::eta_request(hot, &token(hot), &body);
    let t = Instant::now();
    let (status, resp) = client.send(&req)?;
    rep.http_first_ms = t.elapsed().as_secs_f64() * 1e3;
    if status != 200 {
        bail!(
            "first request: HTTP {status}: {}",
            String::from_utf8_lossy(&resp)
        );
    }
    let answer: serde_json::Value = serde_json::from_slice(&resp)?;
    let n = answer["predictions"].as_array().map_or(0, Vec::len);
    if n != args.rows {
        bail!("{n} predictions for {} rows", args.rows);
    }
    for _ in 0..300 {
        client.send(&req)?;
    }
    let probe = CpuProbe::start(&[pid]);
    let (mut samples, mut failed) = (Vec::new(), 0usize);
    let bound = Instant::now() + Duration::from_secs(args.http_seconds);
    let t0 = Instant::now();
    while samples.len() < args.http_requests && Instant::now() < bound {
        let t = Instant::now();
        let (status, _) = client.send(&req)?;
        samples.push(t.elapsed());
        failed += usize::from(status != 200);
    }
    rep.http = HttpRun {
        latency: summarize(&samples),
        rps: samples.len() as f64 / t0.elapsed().as_secs_f64(),
        failed,
        cpu: probe.finish(),
    };
    rep.rss_one_model_kib = status_kib(pid, "VmRSS").unwrap_or(0);

    log("4: Zipf tenant mix over 1,000 tenant models");
    let zipf = Zipf::new(args.tenants, args.zipf_s);
    let mut rng = Rng::new(0x5eed_b01d);
    let reqs: Vec<Vec<u8>> = (0..args.tenants)
        .map(|i| {
            let t = setup::tenant_id(i);
            Client::eta_request(&t, &token(&t), &body)
        })
        .collect();
    let mut draws_warm = Vec::new();
    let warm_bound = Instant::now() + Duration::from_secs(args.zipf_seconds);
    for _ in 0..args.zipf_warmup {
        if Instant::now() > warm_bound {
            break;
        }
        let k = zipf.sample(&mut rng);
        draws_warm.push(k);
        client.send(&reqs[k])?;
    }
    let scrape = |c: &mut Client| -> Result<String> {
        let (status, m) = c.get("/metrics")?;
        if status != 200 {
            bail!("/metrics: HTTP {status}");
        }
        Ok(String::from_utf8_lossy(&m).into_owned())
    };
    let counter = |text: &str, name: &str| {
        metric_sum(text, name) + metric_sum(text, &format!("{name}_total"))
    };
    let before = scrape(&mut client)?;
    let probe = CpuProbe::start(&[pid]);
    let (mut lat, mut draws, mut zfailed) = (Vec::new(), Vec::new(), 0usize);
    let bound = Instant::now() + Duration::from_secs(args.zipf_seconds);
    let t0 = Instant::now();
    while draws.len() < args.zipf_requests && Instant::now() < bound {
        let k = zipf.sample(&mut rng);
        let t = Instant::now();
        let (status, _) = client.send(&reqs[k])?;
        lat.push(t.elapsed());
        draws.push(k);
        zfailed += usize::from(status != 200);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = probe.finish();
    let after = scrape(&mut client)?;
    let hits = counter(&after, "bulkhead_model_cache_hits")
        - counter(&before, "bulkhead_model_cache_hits");
    let misses = counter(&after, "bulkhead_model_cache_misses")
        - counter(&before, "bulkhead_model_cache_misses");
    let evictions = counter(&after, "bulkhead_model_cache_evictions")
        - counter(&before, "bulkhead_model_cache_evictions");
    let distinct = {
        let mut d = draws.clone();
        d.sort_unstable();
        d.dedup();
        d.len()
    };
    let lru = lru_hits(args.cache_entries, &draws_warm, &draws);
    rep.zipf = ZipfRun {
        requests: draws.len(),
        warmup: draws_warm.len(),
        seconds: elapsed,
        latency: summarize(&lat),
        failed: zfailed,
        hits,
        misses,
        evictions,
        distinct_tenants: distinct,
        lru_sim_hit_rate: lru as f64 / draws.len().max(1) as f64,
        top_k_mass: zipf.top_mass(args.cache_entries),
        resident_models: metric_sum(&after, "bulkhead_model_cache_resident_models"),
        resident_bytes: metric_sum(&after, "bulkhead_model_cache_resident_bytes"),
        rss_kib: status_kib(pid, "VmRSS").unwrap_or(0),
        rss_anon_kib: status_kib(pid, "RssAnon").unwrap_or(0),
        hwm_kib: status_kib(pid, "VmHWM").unwrap_or(0),
        cpu,
    };
    drop(client);
    drop(server);

    rep.load_after = loadavg();
    rep.run_seconds = started.elapsed().as_secs_f64();
    let section = report::render(&rep);
    std::fs::write(&args.out, &section)
        .with_context(|| format!("writing {}", args.out.display()))?;
    log(&format!("done; section written to {}", args.out.display()));
    Ok(())
}
