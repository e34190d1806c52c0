//! The registry in Envoy's shared data: how the tenant-router publishes the copy it
//! fetched and how every filter VM (router and rate-limit, every worker) follows it, so
//! routing and rate plans always come from the same copy.
//!
//! Two keys per scope: `bulkhead.registry.<scope>` holds `<etag>\n<document JSON>`,
//! `bulkhead.registry.<scope>.etag` holds just the ETag. Followers poll the small key
//! and read the document only when it changed. Both filters must run with the same
//! `vm_id`: Envoy groups shared data by it.

use crate::ConfigError;
use crate::validate::Registry;
use bulkhead_filter_kit::{SetError, SharedData};
use std::rc::Rc;

pub fn doc_key(scope: &str) -> String {
    format!("bulkhead.registry.{scope}")
}

pub fn etag_key(scope: &str) -> String {
    format!("bulkhead.registry.{scope}.etag")
}

fn encode(etag: &str, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(etag.len() + 1 + body.len());
    v.extend_from_slice(etag.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(body);
    v
}

fn decode(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let nl = bytes.iter().position(|b| *b == b'\n')?;
    let (etag, rest) = bytes.split_at(nl);
    Some((std::str::from_utf8(etag).ok()?, rest.get(1..)?))
}

/// Publishes a registry the caller has already validated. The document goes first, so a
/// follower that sees the new ETag always finds the matching document.
pub fn publish(
    shared: &dyn SharedData,
    scope: &str,
    etag: &str,
    body: &[u8],
) -> Result<(), SetError> {
    shared.set(&doc_key(scope), &encode(etag, body), None)?;
    shared.set(&etag_key(scope), etag.as_bytes(), None)
}

/// What a poll found.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    /// Nothing published yet, or the same ETag as the copy held.
    Unchanged,
    /// A new registry is in force.
    Updated,
    /// A newer document was published but does not validate here: the last good copy
    /// stays (a version skew between filters must not open the edge).
    Invalid(ConfigError),
}

/// One VM's copy of the published registry.
pub struct Follower {
    doc_key: String,
    etag_key: String,
    etag: Option<String>,
    registry: Option<Rc<Registry>>,
}

impl Follower {
    pub fn new(scope: &str) -> Follower {
        Follower {
            doc_key: doc_key(scope),
            etag_key: etag_key(scope),
            etag: None,
            registry: None,
        }
    }

    pub fn registry(&self) -> Option<&Rc<Registry>> {
        self.registry.as_ref()
    }

    /// The ETag of the copy held (or of the last document refused).
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// Adopts a newly published registry, if any.
    pub fn poll(&mut self, shared: &dyn SharedData) -> Poll {
        let Some((etag, _)) = shared.get(&self.etag_key) else {
            return Poll::Unchanged;
        };
        if self.etag.as_deref().map(str::as_bytes) == Some(etag.as_slice()) {
            return Poll::Unchanged;
        }
        let Some((bytes, _)) = shared.get(&self.doc_key) else {
            return Poll::Unchanged;
        };
        let Some((doc_etag, body)) = decode(&bytes) else {
            return Poll::Unchanged;
        };
        // Remember the ETag either way, so a bad document is judged (and logged) once.
        self.etag = Some(doc_etag.to_string());
        match Registry::parse(body) {
            Ok(r) => {
                self.registry = Some(Rc::new(r));
                Poll::Updated
            }
            Err(e) => Poll::Invalid(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Mem(RefCell<HashMap<String, (Vec<u8>, u32)>>);

    impl SharedData for Mem {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.0.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8], _cas: Option<u32>) -> Result<(), SetError> {
            let mut m = self.0.borrow_mut();
            let cas = m.get(key).map_or(1, |(_, c)| c + 1);
            m.insert(key.into(), (value.to_vec(), cas));
            Ok(())
        }
    }

    const DOC: &str = r#"{"regions":{"us":{"residency":"us"}},
        "data_planes":{"p":{"region":"us","cluster":"c"}},
        "plans":{"s":{"per_second":1}},
        "defaults":{"plan":"s","model":{"name":"m","version":"production"},"max_concurrency":1},
        "tenants":{"A":{"name":"A","tier":"pool","region":"us","data_plane":"p"}}}"#;

    #[test]
    fn followers_adopt_new_documents_and_keep_the_last_good_one() {
        let shared = Mem::default();
        let mut f = Follower::new("default");
        assert_eq!(f.poll(&shared), Poll::Unchanged);
        publish(&shared, "default", "\"e1\"", DOC.as_bytes()).unwrap();
        assert_eq!(f.poll(&shared), Poll::Updated);
        assert_eq!(f.poll(&shared), Poll::Unchanged);
        assert!(f.registry().unwrap().tenant("A").is_some());
        publish(&shared, "default", "\"e2\"", b"{}").unwrap();
        assert!(matches!(f.poll(&shared), Poll::Invalid(_)));
        assert_eq!(f.poll(&shared), Poll::Unchanged);
        assert!(f.registry().unwrap().tenant("A").is_some());
        assert_eq!(f.etag(), Some("\"e2\""));
    }
}
