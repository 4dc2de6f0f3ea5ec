//! API permissions: Lotus's `read` < `write` < `sign` < `admin`, and Nelumbo's `spoke`.
//!
//! `spoke` stands apart from Lotus's ladder: a spoke token (a markets process's) lists only
//! `spoke`, and reaches only the methods that name `spoke` among the permissions that allow
//! them. An `admin` token lists every permission, `spoke` included, so an operator can call
//! everything.

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
    /// What a spoke (a markets process) may do on the hub, and nothing else.
    Spoke,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Self::Read,
        Self::Write,
        Self::Sign,
        Self::Admin,
        Self::Spoke,
    ];

    /// What a token made for this permission lists: Lotus's permission and every one below it
    /// (`admin` lists `spoke` too); `spoke` lists only itself.
    pub fn with_lower(self) -> Vec<Permission> {
        match self {
            Self::Read => vec![Self::Read],
            Self::Write => vec![Self::Read, Self::Write],
            Self::Sign => vec![Self::Read, Self::Write, Self::Sign],
            Self::Admin => Self::ALL.to_vec(),
            Self::Spoke => vec![Self::Spoke],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Sign => "sign",
            Self::Admin => "admin",
            Self::Spoke => "spoke",
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
            .ok_or_else(|| {
                format!("unknown permission {s:?}: use read, write, sign, admin or spoke")
            })
    }
}

/// What a caller holds: the permissions its token lists, and the token's name if it has one (a
/// spoke token is named, so the hub can tell its spokes apart).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    perms: Vec<Permission>,
    name: Option<String>,
}

impl Permissions {
    pub fn new(mut perms: Vec<Permission>) -> Self {
        perms.sort();
        perms.dedup();
        Self { perms, name: None }
    }

    pub fn named(perms: Vec<Permission>, name: Option<String>) -> Self {
        Self {
            name,
            ..Self::new(perms)
        }
    }

    pub fn none() -> Self {
        Self::default()
    }

    pub fn allows(&self, needed: Permission) -> bool {
        self.perms.contains(&needed)
    }

    /// Whether a method needing `needed`, which `also` permissions allow too, may be called.
    pub fn allows_any(&self, needed: Permission, also: &[Permission]) -> bool {
        self.allows(needed) || also.iter().any(|p| self.allows(*p))
    }

    pub fn list(&self) -> &[Permission] {
        &self.perms
    }

    /// The token's name, if it carries one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether the caller holds nothing but `spoke` (a spoke, not an operator).
    pub fn is_spoke_only(&self) -> bool {
        self.perms == [Permission::Spoke]
    }

    pub fn is_empty(&self) -> bool {
        self.perms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_reaches_everything_and_spoke_only_itself() {
        let admin = Permissions::new(Permission::Admin.with_lower());
        for p in Permission::ALL {
            assert!(admin.allows(p), "{p}");
        }
        let spoke = Permissions::new(Permission::Spoke.with_lower());
        assert!(spoke.is_spoke_only());
        assert!(!spoke.allows(Permission::Read));
        assert!(spoke.allows_any(Permission::Read, &[Permission::Spoke]));
        assert!(!spoke.allows_any(Permission::Write, &[]));
        let write = Permissions::new(Permission::Write.with_lower());
        assert!(!write.allows(Permission::Spoke));
        assert_eq!("Spoke".parse::<Permission>(), Ok(Permission::Spoke));
    }
}
