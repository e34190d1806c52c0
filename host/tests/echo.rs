//! `bulkhead echo --name`: the upstream says which one it is.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Control;
use std::process::Command;

fn echo(name: Option<&str>) -> Control {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bulkhead"));
    cmd.env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .args(["echo", "--listen", "127.0.0.1:0"]);
    if let Some(n) = name {
        cmd.args(["--name", n]);
    }
    Control::spawn(cmd)
}

#[test]
fn a_named_echo_reports_its_name() {
    let e = echo(Some("dp_pool_us"));
    let r = e.get("/v1/eta?x=1", &[("x-org-id", "DL")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("dp_pool_us"));
    let v = r.json();
    assert_eq!(v["upstream"], "dp_pool_us");
    assert_eq!(v["path"], "/v1/eta?x=1");
    assert!(
        v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h[0] == "x-org-id" && h[1] == "DL")
    );
}

#[test]
fn an_unnamed_echo_says_nothing_about_itself() {
    let e = echo(None);
    let r = e.get("/", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), None);
    assert!(r.json().get("upstream").is_none());
}
