//! The shared case table against the very module Envoy loads, run in the
//! proxy-wasm test harness with a frozen clock: exact boundaries, no Envoy,
//! well under a second per pass. It also proves the table's real-clock
//! promise — every verdict still holds when judged one second after the
//! table's `now` — and that the time-sensitive cases sit on their boundary.

use std::time::{Duration, UNIX_EPOCH};

use bulkhead_e2e::wasm_path;
use bulkhead_testkit::cases::{self, Case};
use proxy_wasm_harness::{Action, Process, RootId, Vm, VmOptions};

const NOW: i64 = 1_800_000_000;

/// A VM with the standard inline configuration, its clock frozen at `at`.
#[allow(clippy::unwrap_used)] // test helper
fn filter_at(at: i64) -> (Process, Vm, RootId) {
    let process = Process::new();
    process.set_time(UNIX_EPOCH + Duration::from_secs(at as u64));
    let mut vm = Vm::load(&wasm_path(), &process, VmOptions::default()).unwrap();
    let config = cases::filter_config(cases::inline_jwks()).to_string();
    let root = vm.configure("jwt_auth", config.as_bytes()).unwrap();
    (process, vm, root)
}

/// Sends `case` through the filter; `Err` describes any mismatch.
fn judge(vm: &mut Vm, root: RootId, case: &Case) -> Result<(), String> {
    let mut headers: Vec<(&str, String)> = vec![
        (":method", "GET".into()),
        (":path", "/".into()),
        (":authority", "edge".into()),
    ];
    for (name, value) in case.request_headers() {
        // Envoy's header map keeps one `authorization` entry and appends a
        // repeated one to it with a comma; the harness does not model that.
        match headers.iter_mut().find(|(n, _)| *n == "authorization") {
            Some((_, v)) if name == "authorization" => *v = format!("{v},{value}"),
            _ => headers.push((name, value.to_string())),
        }
    }
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let s = vm.new_http(root).map_err(|e| format!("{e:#}"))?;
    let action = vm
        .request_headers(s, &headers, true)
        .map_err(|e| format!("{}: {e:#}", case.name))?;
    let stream = vm.stream(s).clone();
    vm.finish(s).map_err(|e| format!("{e:#}"))?;
    let fail = |what: String| Err(format!("{}: {what}", case.name));

    let reserved: Vec<&String> = stream
        .request_headers
        .iter()
        .map(|(k, _)| k)
        .filter(|k| cases::is_reserved_header(k) && *k != cases::TENANT_HEADER)
        .collect();
    if !reserved.is_empty() {
        return fail(format!("reserved headers not stripped: {reserved:?}"));
    }
    let tenant = stream.request_header_all(cases::TENANT_HEADER);
    match (&stream.local_response, action) {
        (None, Action::Continue) => {
            if !case.expect_allowed() {
                return fail(format!("allowed, expected {}", case.expect_status));
            }
            if tenant != case.expect_tenant.into_iter().collect::<Vec<_>>() {
                return fail(format!("tenant header {tenant:?}"));
            }
            Ok(())
        }
        (Some(reply), Action::Pause) => {
            let body: serde_json::Value =
                serde_json::from_slice(&reply.body).map_err(|e| format!("{}: {e}", case.name))?;
            let got = (
                reply.status,
                body["error"].as_str(),
                body["reason"].as_str(),
            );
            let want = (
                case.expect_status,
                case.expect_error,
                case.expect_reason
                    .or(if case.expect_allowed() { None } else { got.2 }),
            );
            if got != want {
                return fail(format!("got {got:?}, expected {want:?}"));
            }
            if !tenant.is_empty() {
                return fail(format!("rejected, yet tenant header {tenant:?}"));
            }
            Ok(())
        }
        (reply, action) => fail(format!("{action:?} with local reply {reply:?}")),
    }
}

#[test]
fn every_case_at_now_and_one_second_later() {
    let table = cases::cases(NOW);
    let mut failures = Vec::new();
    for judge_at in [NOW, NOW + 1] {
        let (process, mut vm, root) = filter_at(judge_at);
        for case in &table {
            if let Err(e) = judge(&mut vm, root, case) {
                failures.push(format!("(now{:+}) {e}", judge_at - NOW));
            }
        }
        // The filter's counters match the table.
        let count = |f: &dyn Fn(&Case) -> bool| table.iter().filter(|c| f(c)).count() as u64;
        let expected = [
            ("jwt_auth.allowed", count(&|c| c.expect_allowed())),
            (
                "jwt_auth.denied_missing",
                count(&|c| c.expect_error == Some("missing_token")),
            ),
            (
                "jwt_auth.denied_invalid",
                count(&|c| c.expect_error == Some("invalid_token")),
            ),
            ("jwt_auth.denied_tenant", count(&|c| c.expect_status == 403)),
            ("jwt_auth.unavailable", 0),
        ];
        for (name, want) in expected {
            let got = process.metric(name).unwrap_or(0);
            if got != want {
                failures.push(format!(
                    "(now{:+}) {name} = {got}, expected {want}",
                    judge_at - NOW
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn clock_cases_sit_on_their_boundary() {
    // Two seconds after the table's `now`, past the one-second margin, the
    // verdict of every time-sensitive case that moves toward its boundary
    // flips — they test the boundary, not something far from it.
    let table = cases::cases(NOW);
    let (_process, mut vm, root) = filter_at(NOW + 2);
    let mut flipped: Vec<&str> = table
        .iter()
        .filter(|c| c.time_sensitive && judge(&mut vm, root, c).is_err())
        .map(|c| c.name)
        .collect();
    flipped.sort_unstable();
    assert_eq!(
        flipped,
        [
            "expired_within_skew",
            "iat_in_future_beyond_skew",
            "nbf_future_beyond_skew"
        ]
    );
}
