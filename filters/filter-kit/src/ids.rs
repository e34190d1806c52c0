//! Identifier rules shared by every component.

/// A tenant id: 1–64 characters from `[A-Za-z0-9._-]`, so it is safe in a header, a
/// metric label, a file name, a quoted structured-field string and a SQL identifier.
pub fn valid_tenant_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A header name as our configs must spell it: lower case (Envoy lower-cases names).
pub fn valid_header_name(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(valid_tenant_id("UA") && valid_tenant_id("a.b_c-9"));
        assert!(
            !valid_tenant_id("") && !valid_tenant_id("a b") && !valid_tenant_id(&"x".repeat(65))
        );
        assert!(
            valid_header_name("x-org-id") && !valid_header_name("X-Org") && !valid_header_name("")
        );
    }
}
