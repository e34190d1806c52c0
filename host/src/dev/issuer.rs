//! A local JWT issuer for development: one ES256 key, generated on first use under the
//! state directory (never committed), minting tokens for any tenant.

use anyhow::{Context, Result, bail};
use jwt_simple::prelude::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const DEV_ISSUER: &str = "https://issuer.bulkhead.dev";
pub const DEV_AUDIENCE: &str = "bulkhead";

#[derive(Serialize, Deserialize)]
struct TenantClaims {
    org_id: String,
}

pub struct DevIssuer {
    key: ES256KeyPair,
    path: PathBuf,
}

impl DevIssuer {
    /// Loads the key from `dir`, creating it (mode 0600, fsynced) on first use.
    pub fn open(dir: &Path) -> Result<DevIssuer> {
        let path = dir.join("issuer-es256.pem");
        let key = if path.exists() {
            let pem =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            ES256KeyPair::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        } else {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let key = ES256KeyPair::generate();
            let pem = key
                .to_pem()
                .map_err(|e| anyhow::anyhow!("encoding key: {e}"))?;
            write_private(&path, pem.as_bytes())?;
            key
        };
        let kid = kid_of(&key);
        Ok(DevIssuer {
            key: key.with_key_id(&kid),
            path,
        })
    }

    pub fn key_path(&self) -> &Path {
        &self.path
    }

    /// A token for `org` valid for `ttl` seconds.
    pub fn token(&self, org: &str, ttl: u64) -> Result<String> {
        if org.is_empty()
            || org.len() > 64
            || !org
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            bail!("ORG must match [A-Za-z0-9._-]{{1,64}}, got {org:?}");
        }
        let claims = Claims::with_custom_claims(
            TenantClaims { org_id: org.into() },
            Duration::from_secs(ttl),
        )
        .with_issuer(DEV_ISSUER)
        .with_audience(DEV_AUDIENCE)
        .with_subject(format!("dev-user@{org}"));
        self.key
            .sign(claims)
            .map_err(|e| anyhow::anyhow!("signing: {e}"))
    }

    /// The public JWKS (`{"keys":[…]}`) to configure the edge and the host with.
    pub fn jwks(&self) -> Result<serde_json::Value> {
        let jwk: serde_json::Value = serde_json::from_str(&self.key.public_key().to_jwk())?;
        Ok(serde_json::json!({ "keys": [jwk] }))
    }
}

fn kid_of(key: &ES256KeyPair) -> String {
    let t = key.public_key().jwk_thumbprint();
    format!("dev-{}", t.chars().take(12).collect::<String>())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_tokens_verify() {
        let dir = tempfile::tempdir().unwrap();
        let a = DevIssuer::open(dir.path()).unwrap();
        let b = DevIssuer::open(dir.path()).unwrap();
        assert_eq!(a.jwks().unwrap(), b.jwks().unwrap());
        let t = a.token("UA", 60).unwrap();
        let pk = a.key.public_key();
        let c = pk.verify_token::<TenantClaims>(&t, None).unwrap();
        assert_eq!(c.custom.org_id, "UA");
        assert!(a.token("bad org", 60).is_err());
    }
}
