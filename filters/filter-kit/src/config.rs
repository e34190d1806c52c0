//! Configuration errors: which field, and what is wrong with it.

use serde::de::DeserializeOwned;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The JSON path of the field, e.g. `providers[0].audiences`; `(root)` for the document.
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: field `{}`: {}",
            self.field, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// Deserializes `bytes`, turning a failure into an error that names the field
/// (`serde_path_to_error` tracks the path serde_json does not report).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "(root)".into() } else { path };
        ConfigError::new(field, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        items: Vec<Item>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        n: u32,
    }

    #[test]
    fn errors_carry_the_json_path() {
        let e = parse_json::<Doc>(br#"{"items":[{"n":1},{"n":-1}]}"#).unwrap_err();
        assert_eq!(e.field, "items[1].n");
        let e = parse_json::<Doc>(b"{}").unwrap_err();
        assert_eq!(e.field, "(root)");
        assert!(
            e.to_string()
                .starts_with("invalid configuration: field `(root)`: missing field `items`")
        );
    }
}
