//! Which inbound headers claim identity or routing, and so must never come from a caller.

/// Exact names that only Bulkhead may set (the tenant-router's routing headers among them).
const RESERVED: [&str; 2] = ["x-org-id", "x-data-plane"];
/// Prefixes that only Bulkhead may set: `x-tenant-tier`, `x-model-name`, ….
const RESERVED_PREFIXES: [&str; 3] = ["x-tenant-", "x-model-", "x-bulkhead-"];

/// The set of header names removed from every request before anything else happens.
#[derive(Clone, Debug)]
pub struct StripRule {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl StripRule {
    /// `tenant_header` and `extra` are added to the built-in names (all lower-cased).
    pub fn new(tenant_header: &str, extra: &[String], extra_prefixes: &[String]) -> Self {
        let mut exact: Vec<String> = RESERVED.iter().map(|s| s.to_string()).collect();
        exact.push(tenant_header.to_ascii_lowercase());
        exact.extend(extra.iter().map(|s| s.to_ascii_lowercase()));
        let mut prefixes: Vec<String> = RESERVED_PREFIXES.iter().map(|s| s.to_string()).collect();
        prefixes.extend(extra_prefixes.iter().map(|s| s.to_ascii_lowercase()));
        StripRule { exact, prefixes }
    }

    /// Runs on every header of every request: compares bytes case-insensitively in
    /// place rather than allocating a lower-cased copy (the rule's own names are lower
    /// case). A name need not be UTF-8 to match: `x-tenant-` followed by any byte goes.
    pub fn matches(&self, name: impl AsRef<[u8]>) -> bool {
        let name = name.as_ref();
        self.exact
            .iter()
            .any(|e| e.as_bytes().eq_ignore_ascii_case(name))
            || self.prefixes.iter().any(|p| {
                name.get(..p.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(p.as_bytes()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_identity_and_routing_headers_only() {
        let r = StripRule::new("X-Org-Id", &["x-forwarded-org".into()], &[]);
        for n in [
            "x-org-id",
            "X-Tenant-Tier",
            "x-tenant-region",
            "x-model-version",
            "X-Model-Name",
            "x-data-plane",
            "x-forwarded-org",
            "x-bulkhead-trace",
        ] {
            assert!(r.matches(n), "{n}");
        }
        for n in [
            "authorization",
            "x-request-id",
            "x-tenantless",
            "x-modelx",
            "host",
        ] {
            assert!(!r.matches(n), "{n}");
        }
        assert!(r.matches(b"x-tenant-\xff"));
        assert!(!r.matches(b"x-org-id\xff"));
    }
}
