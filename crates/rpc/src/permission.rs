//! Lotus's API permissions: `read` < `write` < `sign` < `admin`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One API permission. A token lists the permissions it grants; Lotus's `create-token --perm X`
/// grants X and every permission below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Sign,
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 4] = [Self::Read, Self::Write, Self::Sign, Self::Admin];

    /// This permission and every one below it, as Lotus puts them in a token.
    pub fn with_lower(self) -> Vec<Permission> {
        Self::ALL.into_iter().filter(|p| *p <= self).collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Sign => "sign",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| format!("unknown permission {s:?}: use read, write, sign or admin"))
    }
}

/// The permissions a caller holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions(Vec<Permission>);

impl Permissions {
    pub fn new(mut perms: Vec<Permission>) -> Self {
        perms.sort();
        perms.dedup();
        Self(perms)
    }

    pub fn none() -> Self {
        Self(Vec::new())
    }

    pub fn allows(&self, needed: Permission) -> bool {
        self.0.contains(&needed)
    }

    pub fn list(&self) -> &[Permission] {
        &self.0
    }
}
