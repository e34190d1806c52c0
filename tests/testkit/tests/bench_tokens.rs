//! The `bench-tokens` binary: distinct, valid tokens one per line, and the JWKS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::process::Command;

use bulkhead_testkit::forge;
use serde_json::Value;

fn bench_tokens(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bench-tokens"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn mints_distinct_valid_tokens() {
    let dir = tempfile::tempdir().unwrap();
    for alg in ["ES256", "EdDSA", "RS256"] {
        let out = dir.path().join(format!("{alg}.txt"));
        let o = bench_tokens(&[
            "--alg",
            alg,
            "--count",
            "5",
            "--orgs",
            "2",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines.iter().collect::<HashSet<_>>().len(),
            5,
            "tokens repeat"
        );
        let mut orgs = HashSet::new();
        let now = forge::now();
        for t in lines {
            let parts: Vec<&str> = t.split('.').collect();
            assert_eq!(parts.len(), 3);
            let h: Value = serde_json::from_str(&forge::decode_part(parts[0]).unwrap()).unwrap();
            assert_eq!(h["alg"], alg);
            let p: Value = serde_json::from_str(&forge::decode_part(parts[1]).unwrap()).unwrap();
            assert_eq!(p["aud"], "bulkhead");
            assert!(p["jti"].is_string() && p["sub"].is_string());
            let exp = p["exp"].as_i64().unwrap();
            assert!(exp >= now + 3500 && exp <= now + 3700, "valid for an hour");
            orgs.insert(p["org_id"].as_str().unwrap().to_string());
        }
        assert_eq!(orgs.len(), 2);
    }
}

#[test]
fn prints_the_jwks_and_rejects_bad_arguments() {
    let o = bench_tokens(&["--jwks"]);
    assert!(o.status.success());
    let jwks: Value = serde_json::from_slice(&o.stdout).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["test-rs256-1", "test-es256-1", "test-eddsa-1"]);

    assert!(
        !bench_tokens(&["--alg", "HS256", "--count", "1", "--out", "/dev/null"])
            .status
            .success()
    );
    assert!(
        !bench_tokens(&["--alg", "RS256", "--count", "1"])
            .status
            .success()
    );
    assert!(!bench_tokens(&["--bogus"]).status.success());
}
