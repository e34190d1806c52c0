//! The shared case table through one Envoy (two workers) with three
//! listeners side by side, all in front of the same echo upstream:
//!
//! - `inline`: our filter, JWKS inline;
//! - `remote`: our filter, JWKS fetched from a [`JwksServer`] through the
//!   Envoy cluster `idp`;
//! - `native`: Envoy's own `jwt_authn` with the same issuer, keys and skew.
//!
//! Every case must get exactly its expected answer from `inline` and
//! `remote`; `native` must agree on accept/reject wherever the case says
//! [`Native::Same`]. Then the filter's stats must match what was sent.
//!
//! Run with `--nocapture` to see the agreement table.

use std::fmt::Write as _;

use bulkhead_e2e::{
    FreshCases, Tally, bearer, check_filter_answer, counter, jwt_auth_filter,
    native_jwt_authn_filter, remote_jwks, send,
};
use bulkhead_testkit::cases::{self, Native};
use bulkhead_testkit::keys::{self, Alg};
use bulkhead_testkit::{EchoUpstream, Envoy, JwksServer, config, http_get};
use serde_json::json;

struct Row {
    name: &'static str,
    expect: u16,
    inline: u16,
    remote: u16,
    native: u16,
    native_body: String,
    native_rule: Native,
}

#[test]
fn case_table_through_inline_remote_and_native_listeners() {
    let echo = EchoUpstream::start();
    let idp = JwksServer::start(cases::jwks());
    let inline_cfg = cases::filter_config(cases::inline_jwks());
    let remote_cfg = cases::filter_config(remote_jwks("idp", json!({})));
    let yaml = config::bootstrap(
        &[
            config::listener(
                "inline",
                &[jwt_auth_filter("jwt_inline", &inline_cfg)],
                "echo",
            ),
            config::listener(
                "remote",
                &[jwt_auth_filter("jwt_remote", &remote_cfg)],
                "echo",
            ),
            config::listener("native", &[native_jwt_authn_filter()], "echo"),
        ],
        &[
            config::echo_cluster("echo", echo.port()),
            config::jwks_cluster("idp", idp.port()),
        ],
    );
    let envoy = Envoy::start(&yaml, 2).unwrap();
    let port = |l: &str| envoy.listener_port(l);
    let mut tally = Tally::default();

    // The remote listener's first request parks until the first fetch lands.
    let warm = bearer(keys::key(Alg::ES256), "org-warmup");
    let resp = http_get(port("remote"), "/warmup", &[("authorization", &warm)]).unwrap();
    assert_eq!(resp.status, 200, "remote warm-up: {}", resp.text());
    tally.record(&resp);
    assert!(idp.fetch_count() >= 1);

    let mut table = FreshCases::new();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for i in 0..table.len() {
        let mut answer = |listener: &str, tally: &mut Tally| {
            let case = table.get(i).clone();
            let before = echo.request_count();
            let resp = send(port(listener), &case);
            if listener == "native" {
                return (case, resp);
            }
            tally.record(&resp);
            if let Err(e) = check_filter_answer(&case, &resp, &echo, before) {
                failures.push(format!("[{listener}] {e}"));
            }
            (case, resp)
        };
        let (case, inline) = answer("inline", &mut tally);
        let (_, remote) = answer("remote", &mut tally);
        let (_, native) = answer("native", &mut tally);
        let (inline, remote, native_body, native) =
            (inline.status, remote.status, native.text(), native.status);
        if let Some(allowed) = case.native_expect_allowed()
            && (native == 200) != allowed
        {
            failures.push(format!(
                "[native] {}: jwt_authn answered {native}, the filter {} (case says Native::Same)",
                case.name, case.expect_status
            ));
        }
        rows.push(Row {
            name: case.name,
            expect: case.expect_status,
            inline,
            remote,
            native,
            native_body,
            native_rule: case.native,
        });
    }
    println!("{}", agreement_table(&rows));
    println!(
        "(case table re-minted {} time(s) to keep clock cases fresh)",
        table.remints
    );

    // The stats checks below use the answers actually received, so they
    // hold (and run) even when a case failed above; the case failures are
    // asserted at the very end.

    // Verdicts per listener, from Envoy's own HTTP stats.
    let inline_allowed = rows.iter().filter(|r| r.inline == 200).count() as u64;
    let remote_allowed = rows.iter().filter(|r| r.remote == 200).count() as u64;
    let native_allowed = rows.iter().filter(|r| r.native == 200).count() as u64;
    assert_eq!(
        envoy.stat("http.inline.downstream_rq_2xx"),
        Some(inline_allowed)
    );
    assert_eq!(
        envoy.stat("http.remote.downstream_rq_2xx"),
        Some(remote_allowed + 1)
    );
    assert_eq!(
        envoy.stat("http.native.downstream_rq_2xx"),
        Some(native_allowed)
    );

    // The verified-token cache: one token, ten times (each worker verifies
    // it at most once).
    let repeated = bearer(keys::key(Alg::PS256), "org-cached");
    let hits_before = counter(&envoy, "cache_hits");
    for _ in 0..10 {
        let resp = http_get(port("inline"), "/cached", &[("authorization", &repeated)]).unwrap();
        assert_eq!(resp.status, 200, "{}", resp.text());
        tally.record(&resp);
    }
    let hits = counter(&envoy, "cache_hits") - hits_before;
    assert!(
        (8..=10).contains(&hits),
        "cache hits {hits} for 10 sends of one token"
    );

    // The filter's counters (shared by both wasm listeners) against the tally.
    let mut report = String::new();
    for (name, expected) in tally.as_counters() {
        let got = counter(&envoy, name);
        let _ = writeln!(
            report,
            "  wasmcustom.jwt_auth.{name:16} {got:4} (sent {expected})"
        );
        assert_eq!(got, expected, "counter {name}\n{report}");
    }
    assert_eq!(tally.allowed, inline_allowed + remote_allowed + 1 + 10);
    assert_eq!(counter(&envoy, "unavailable"), 0);
    let fetch_ok = counter(&envoy, "jwks_fetch_ok");
    assert!(
        fetch_ok >= 1 && fetch_ok <= idp.fetch_count(),
        "jwks_fetch_ok {fetch_ok}"
    );
    assert_eq!(counter(&envoy, "jwks_fetch_failed"), 0);
    let _ = writeln!(
        report,
        "  wasmcustom.jwt_auth.cache_hits       {hits:4} (10 sends of one token)\n  \
         wasmcustom.jwt_auth.jwks_fetch_ok    {fetch_ok:4} (IdP served {})",
        idp.fetch_count()
    );
    println!("filter stats after the suite:\n{report}");

    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn agreement_table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<38} {:>6} {:>6} {:>6} {:>6}  native vs filter",
        "case", "expect", "inline", "remote", "native"
    );
    let (mut same, mut differ) = (0, 0);
    for r in rows {
        let agree = (r.native == 200) == (r.expect == 200);
        if agree {
            same += 1;
        } else {
            differ += 1;
        }
        let verdict = match (agree, r.native_rule) {
            (true, Native::Same) => "agree".to_string(),
            (false, Native::Same) => "DISAGREE (expected to agree)".to_string(),
            (true, Native::NotApplicable(why)) => format!("agree (rule not native: {why})"),
            (false, Native::NotApplicable(why)) => format!("differ: {why}"),
        };
        let said: String = r.native_body.chars().take(60).collect();
        let filter_bug = if r.inline != r.expect || r.remote != r.expect {
            "  <-- FILTER ANSWER DIFFERS FROM THE EXPECTED ONE"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{:<38} {:>6} {:>6} {:>6} {:>6}  {verdict}{}{}",
            r.name,
            r.expect,
            r.inline,
            r.remote,
            r.native,
            if r.native == 200 {
                String::new()
            } else {
                format!(" [native: {said:?}]")
            },
            filter_bug
        );
    }
    let _ = writeln!(
        out,
        "{} cases: native jwt_authn gives the same accept/reject verdict on {same}, differs on {differ}",
        rows.len()
    );
    out
}
