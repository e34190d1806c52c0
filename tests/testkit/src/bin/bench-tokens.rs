//! Mints token files for the edge benchmark (`scripts/bench-edge.sh`).
//!
//! ```text
//! bench-tokens --alg RS256 --count 60000 --out rs256.txt [--orgs 1000]
//!              [--issuer URL] [--audience AUD] [--ttl SECONDS] [--threads N]
//! bench-tokens --jwks [--algs RS256,ES256,EdDSA]
//! ```
//!
//! Token mode writes one compact JWS per line, signed with the test kit's
//! primary fixture key for `--alg` (kid `test-<alg>-1`). Every token is
//! distinct (its own `jti` and `sub`; the `org_id` cycles through `--orgs`
//! tenants), valid from now for `--ttl` seconds (default one hour). Signing
//! runs on all cores. JWKS mode prints the public JWKS (one line of JSON)
//! for the listed algorithms, which the benchmark inlines into both the
//! native `jwt_authn` and the jwt-auth filter configuration.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::process::ExitCode;
use std::str::FromStr as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bulkhead_testkit::forge;
use bulkhead_testkit::keys::{self, Alg};
use serde_json::json;

const USAGE: &str = "\
usage: bench-tokens --alg ALG --count N --out FILE [--orgs K] [--issuer URL]
                    [--audience AUD] [--ttl SECONDS] [--threads N]
       bench-tokens --jwks [--algs ALG,ALG,...]
ALG is one of RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA.";

struct Args {
    jwks: bool,
    algs: Vec<Alg>,
    alg: Option<Alg>,
    count: usize,
    out: Option<String>,
    orgs: usize,
    issuer: String,
    audience: String,
    ttl: i64,
    threads: usize,
}

fn parse_alg(s: &str) -> anyhow::Result<Alg> {
    Alg::ASYMMETRIC
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s))
        .with_context(|| format!("unknown or unsupported algorithm {s:?}"))
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        jwks: false,
        algs: vec![Alg::RS256, Alg::ES256, Alg::EdDSA],
        alg: None,
        count: 0,
        out: None,
        orgs: 1000,
        issuer: "https://issuer.bench.test".into(),
        audience: "bulkhead".into(),
        ttl: 3600,
        threads: std::thread::available_parallelism().map_or(1, usize::from),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--jwks" {
            a.jwks = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let num =
            |v: &str| usize::from_str(v).with_context(|| format!("{flag}: not a number: {v:?}"));
        match flag.as_str() {
            "--alg" => a.alg = Some(parse_alg(&value)?),
            "--algs" => a.algs = value.split(',').map(parse_alg).collect::<Result<_, _>>()?,
            "--count" => a.count = num(&value)?,
            "--out" => a.out = Some(value),
            "--orgs" => a.orgs = num(&value)?.max(1),
            "--issuer" => a.issuer = value,
            "--audience" => a.audience = value,
            "--ttl" => a.ttl = i64::try_from(num(&value)?)?,
            "--threads" => a.threads = num(&value)?.max(1),
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(a)
}

fn mint(a: &Args) -> anyhow::Result<()> {
    let alg = a.alg.context("--alg is required")?;
    let out = a.out.as_deref().context("--out is required")?;
    if a.count == 0 {
        bail!("--count must be at least 1");
    }
    let key = keys::key(alg);
    let header = forge::standard_header(key);
    let now = forge::now();
    // A per-run prefix keeps files minted by different invocations distinct too.
    let run = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        % 1_000_000_000_000;
    let started = Instant::now();
    let per = a.count.div_ceil(a.threads);
    let chunks: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.threads)
            .map(|t| {
                let header = &header;
                s.spawn(move || {
                    let lo = t * per;
                    let hi = ((t + 1) * per).min(a.count);
                    let mut buf = String::new();
                    for i in lo..hi {
                        let payload = json!({
                            "iss": a.issuer,
                            "aud": a.audience,
                            "sub": format!("bench-user-{i}"),
                            "org_id": format!("org-{}", i % a.orgs),
                            "jti": format!("{alg}-{run}-{i}"),
                            "iat": now,
                            "exp": now + a.ttl,
                        });
                        buf.push_str(&forge::token(key, header, &payload.to_string()));
                        buf.push('\n');
                    }
                    buf
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut w = BufWriter::new(File::create(out).with_context(|| format!("creating {out}"))?);
    let mut written = 0usize;
    for c in &chunks {
        written += c.lines().count();
        w.write_all(c.as_bytes())?;
    }
    w.flush()?;
    if written != a.count {
        bail!(
            "a signing thread failed: wrote {written} of {} tokens",
            a.count
        );
    }
    eprintln!(
        "bench-tokens: {} {alg} tokens -> {out} in {:.1}s ({} threads)",
        a.count,
        started.elapsed().as_secs_f64(),
        a.threads
    );
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|a| {
        if a.jwks {
            let ks: Vec<_> = a.algs.iter().map(|al| keys::key(*al)).collect();
            println!("{}", keys::jwks(&ks));
            Ok(())
        } else {
            mint(&a)
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-tokens: {e:#}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
