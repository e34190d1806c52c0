//! Maps that refuse duplicate keys.
//!
//! serde_json keeps the last of two equal object members, so a registry listing `UA`
//! twice would silently mean whichever came last. `#[serde(deserialize_with =
//! "unique_keys::btree_map")]` makes it an error naming the key instead.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

pub fn btree_map<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Unique<V>(PhantomData<V>);

    impl<'de, V: Deserialize<'de>> Visitor<'de> for Unique<V> {
        type Value = BTreeMap<String, V>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object with unique keys")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                if out.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
                }
                let value = map.next_value()?;
                out.insert(key, value);
            }
            Ok(out)
        }
    }

    d.deserialize_map(Unique(PhantomData))
}

#[cfg(test)]
mod tests {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        #[serde(deserialize_with = "super::btree_map")]
        tenants: std::collections::BTreeMap<String, u32>,
    }

    #[test]
    fn duplicates_are_refused_with_the_key() {
        let e = crate::parse_json::<Doc>(br#"{"tenants":{"UA":1,"UA":2}}"#).unwrap_err();
        assert_eq!(e.field, "tenants");
        assert!(e.message.contains("duplicate key `UA`"), "{e}");
        let ok = crate::parse_json::<Doc>(br#"{"tenants":{"UA":1,"ua":2}}"#).unwrap();
        assert_eq!(ok.tenants.len(), 2);
    }
}
