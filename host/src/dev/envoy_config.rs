//! Renders an Envoy config template: `{{NAME}}` placeholders, each required.
//!
//! A template engine would be overkill for a handful of substitutions; what matters is
//! that a missing or unused value is an error, not a silently broken Envoy config.

use anyhow::{Result, bail};

pub fn render(template: &str, vars: &[(&str, String)]) -> Result<String> {
    let mut out = template.to_string();
    for (k, v) in vars {
        let p = format!("{{{{{k}}}}}");
        if !out.contains(&p) {
            bail!("template has no placeholder {p}");
        }
        out = out.replace(&p, v);
    }
    if let Some(i) = out.find("{{") {
        let rest: String = out[i..].chars().take(40).collect();
        bail!("template placeholder left unfilled: {rest}");
    }
    Ok(out)
}

/// A JSON document as a YAML double-quoted scalar (JSON strings are valid YAML).
pub fn yaml_string(json: &str) -> String {
    serde_json::Value::String(json.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_must_be_filled() {
        assert_eq!(render("a {{X}} b", &[("X", "1".into())]).unwrap(), "a 1 b");
        assert!(render("a {{X}} {{Y}}", &[("X", "1".into())]).is_err());
        assert!(render("a", &[("X", "1".into())]).is_err());
        assert_eq!(yaml_string(r#"{"a":"b"}"#), r#""{\"a\":\"b\"}""#);
    }
}
