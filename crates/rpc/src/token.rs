//! API tokens as Lotus makes them: HS256 JWTs whose `Allow` claim lists permissions, signed
//! with a secret kept in the daemon's repo.

use std::fs;
use std::io::Write;
use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::permission::{Permission, Permissions};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(rename = "Allow")]
    allow: Vec<Permission>,
    /// Nelumbo's addition, which Lotus ignores: a name that tells one holder (a spoke) from
    /// another.
    #[serde(rename = "Name", default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// Reads a text file that holds a secret (a token), refusing it when its group or others may
/// read it: a secret others can read is no longer a secret, and saying so beats using it.
pub fn read_private(path: &Path) -> Result<String, TokenError> {
    let bytes = read_private_bytes(path)?;
    String::from_utf8(bytes)
        .map_err(|_| TokenError::Invalid(format!("{} is not text", path.display())))
}

/// [`read_private`] for a binary secret (a key).
pub fn read_private_bytes(path: &Path) -> Result<Vec<u8>, TokenError> {
    let io = |context, source| TokenError::Io {
        context,
        path: path.display().to_string(),
        source,
    };
    let mut file = fs::File::open(path).map_err(|e| io("read", e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(|e| io("stat", e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(TokenError::Invalid(format!(
                "{} holds a secret but others may read it (mode {:o}): run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| io("read", e))?;
    Ok(bytes)
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the API token is invalid: {0}")]
    Invalid(String),
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// The permissions a token says it grants, read without checking its signature: for a holder
/// to see what a token it was given can do (a spoke refusing a token broader than it needs).
/// `None` if it is not a JWT with an `Allow` list.
pub fn claimed_permissions(token: &str) -> Option<Vec<String>> {
    use base64::Engine;
    let payload = token.trim().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["Allow"].as_array().map(|allow| {
        allow
            .iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect()
    })
}

/// The secret that signs a daemon's tokens.
#[derive(Clone)]
pub struct TokenSecret([u8; 32]);

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(..)")
    }
}

impl TokenSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Reads the secret at `path`, creating it (mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, TokenError> {
        let io = |context, source| TokenError::Io {
            context,
            path: path.display().to_string(),
            source,
        };
        match read_private(path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(|e| {
                    TokenError::Invalid(format!("token secret {} is not hex: {e}", path.display()))
                })?;
                let bytes: [u8; 32] = bytes.try_into().map_err(|_| {
                    TokenError::Invalid(format!("token secret {} is not 32 bytes", path.display()))
                })?;
                Ok(Self(bytes))
            }
            Err(TokenError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let secret = Self::generate();
                let mut options = fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options
                    .open(path)
                    .map_err(|e| io("create token secret", e))?;
                file.write_all(hex::encode(secret.0).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io("write token secret", e))?;
                Ok(secret)
            }
            Err(e) => Err(e),
        }
    }

    /// A token granting `permission` and every permission below it.
    pub fn create_token(&self, permission: Permission) -> String {
        self.create_named_token(permission, None)
    }

    /// A token granting `permission` (and those below it) that carries `name`.
    pub fn create_named_token(&self, permission: Permission, name: Option<&str>) -> String {
        let claims = Claims {
            allow: permission.with_lower(),
            name: name.map(str::to_string),
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.0),
        )
        .unwrap_or_default()
    }

    /// The permissions a token grants, if this secret signed it.
    pub fn verify(&self, token: &str) -> Result<Permissions, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        // Lotus tokens carry no expiry or audience.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Claims>(
            token.trim(),
            &DecodingKey::from_secret(&self.0),
            &validation,
        )
        .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(Permissions::named(data.claims.allow, data.claims.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grant_their_permission_and_below() {
        let secret = TokenSecret::generate();
        let token = secret.create_token(Permission::Write);
        let perms = secret.verify(&token).expect("valid");
        assert!(perms.allows(Permission::Read));
        assert!(perms.allows(Permission::Write));
        assert!(!perms.allows(Permission::Sign));
        assert!(
            TokenSecret::generate().verify(&token).is_err(),
            "another secret accepted it"
        );
        assert!(secret.verify("not-a-token").is_err());
    }

    #[test]
    fn the_secret_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("token-secret");
        let first = TokenSecret::load_or_create(&path).expect("create");
        let token = first.create_token(Permission::Admin);
        let second = TokenSecret::load_or_create(&path).expect("load");
        assert!(second.verify(&token).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
            let error = TokenSecret::load_or_create(&path).expect_err("world-readable secret");
            assert!(error.to_string().contains("chmod 600"), "{error}");
        }
    }

    #[test]
    fn a_holder_reads_what_its_token_claims() {
        let secret = TokenSecret::generate();
        assert_eq!(
            claimed_permissions(&secret.create_token(Permission::Spoke)),
            Some(vec!["spoke".to_string()])
        );
        assert_eq!(
            claimed_permissions(&secret.create_token(Permission::Write)),
            Some(vec!["read".to_string(), "write".to_string()])
        );
        assert_eq!(claimed_permissions("not a token"), None);
    }

    #[test]
    fn named_tokens_carry_their_name() {
        let secret = TokenSecret::generate();
        let token = secret.create_named_token(Permission::Spoke, Some("spoke-a"));
        let perms = secret.verify(&token).expect("valid");
        assert_eq!(perms.name(), Some("spoke-a"));
        assert!(perms.is_spoke_only());
        assert_eq!(
            secret
                .verify(&secret.create_token(Permission::Read))
                .expect("valid")
                .name(),
            None
        );
    }
}
