//! Header values and the local replies the filter sends.

use crate::config::{Plan, valid_tenant_id};
use crate::limiter::{Refusal, Usage};

pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
pub const RATELIMIT: &str = "ratelimit";

pub use bulkhead_filter_kit::Reply;

/// `RateLimit: "<plan>";r=<remaining>;t=<seconds until reset>`
/// (draft-ietf-httpapi-ratelimit-headers; the plan names the `RateLimit-Policy`).
pub fn ratelimit_header(plan: &Plan, usage: &Usage) -> String {
    format!(
        "\"{}\";r={};t={}",
        plan.name, usage.remaining, usage.reset_seconds
    )
}

/// The headers of an allowed response: `RateLimit-Policy` and `RateLimit`.
pub fn allowed_headers(plan: &Plan, usage: &Usage) -> [(&'static str, String); 2] {
    [
        (RATELIMIT_POLICY, plan.policy_header.clone()),
        (RATELIMIT, ratelimit_header(plan, usage)),
    ]
}

/// 429 with `Retry-After` (whole seconds, rounded up), the RateLimit headers and a
/// JSON body naming the tenant's plan.
pub fn limited(tenant: &str, plan: &Plan, usage: &Usage, retry_after_seconds: u64) -> Reply {
    // The hot path of a flood: plain formatting. Tenant ids and plan names are
    // validated to [A-Za-z0-9._-], which need no JSON escaping; anything else goes
    // through serde_json.
    let body = if valid_tenant_id(tenant) && valid_tenant_id(&plan.name) {
        format!(
            r#"{{"error":"rate_limited","tenant":"{tenant}","plan":"{}","retry_after_seconds":{retry_after_seconds}}}"#,
            plan.name
        )
    } else {
        serde_json::json!({
            "error": "rate_limited",
            "tenant": tenant,
            "plan": plan.name,
            "retry_after_seconds": retry_after_seconds,
        })
        .to_string()
    };
    Reply {
        status: 429,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("retry-after".into(), retry_after_seconds.to_string()),
            (RATELIMIT_POLICY.into(), plan.policy_header.clone()),
            (RATELIMIT.into(), ratelimit_header(plan, usage)),
        ],
        body,
    }
}

/// 403: no verified tenant, or one that is not registered.
pub fn refused(r: Refusal, tenant_header: &str) -> Reply {
    let (error, reason) = match r {
        Refusal::MissingTenant => (
            "missing_tenant",
            format!("no {tenant_header} header: the request carries no verified tenant"),
        ),
        Refusal::UnknownTenant => ("unknown_tenant", "the tenant is not registered".to_string()),
    };
    Reply {
        status: 403,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::json!({"error": error, "reason": reason}).to_string(),
    }
}

/// 503: the limit could not be applied (shared data unusable). Fails closed.
pub fn unavailable() -> Reply {
    Reply {
        status: 503,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("retry-after".into(), "1".into()),
        ],
        body: r#"{"error":"rate_limit_unavailable","reason":"the rate-limit state could not be updated"}"#.into(),
    }
}

/// Registry mode before the first registry copy arrived.
pub fn registry_unavailable() -> Reply {
    Reply {
        status: 503,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("retry-after".into(), "1".into()),
        ],
        body: r#"{"error":"registry_unavailable","reason":"no tenant registry has been received yet"}"#.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn draft_header_syntax() {
        let s = Settings::parse(
            br#"{"plans":{"standard":{"per_second":50,"burst":100}},"tenants":{}}"#,
        )
        .unwrap();
        let plan = &s.plans[0];
        assert_eq!(plan.policy_header, "\"standard\";q=100;w=2");
        let u = Usage {
            plan: 0,
            remaining: 7,
            reset_seconds: 2,
        };
        assert_eq!(ratelimit_header(plan, &u), "\"standard\";r=7;t=2");
        let r = limited("UA", plan, &u, 3);
        assert_eq!(r.status, 429);
        assert!(r.headers.contains(&("retry-after".into(), "3".into())));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["plan"], "standard");
        let odd = limited("a\"b", plan, &u, 1);
        let body: serde_json::Value = serde_json::from_str(&odd.body).unwrap();
        assert_eq!(body["tenant"], "a\"b");
        assert_eq!(refused(Refusal::UnknownTenant, "x-org-id").status, 403);
    }
}
