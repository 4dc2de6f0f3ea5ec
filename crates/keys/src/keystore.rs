//! A directory of keys, one Lotus `KeyInfo` JSON file per address, mode 0600 in a 0700
//! directory. Files readable by others are refused rather than used.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use fvm_shared::address::Address;

use crate::{KeyError, KeyInfo, KeyKind};

#[derive(Debug)]
pub struct Keystore {
    dir: PathBuf,
    keys: RwLock<BTreeMap<String, KeyInfo>>,
}

impl Keystore {
    /// Opens (creating) the keystore at `dir` and loads every key in it.
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        let io = |context, source| KeyError::Io {
            context,
            path: dir.display().to_string(),
            source,
        };
        fs::create_dir_all(dir).map_err(|e| io("create keystore", e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| io("protect keystore", e))?;
        }
        let mut keys = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(|e| io("read keystore", e))? {
            let path = entry.map_err(|e| io("read keystore", e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("key") {
                continue;
            }
            let key = read_key(&path)?;
            let address = key.address()?;
            keys.insert(address.to_string(), key);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            keys: RwLock::new(keys),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a key and stores it before returning its address.
    pub fn generate(&self, kind: KeyKind) -> Result<Address, KeyError> {
        self.import(KeyInfo::generate(kind))
    }

    /// Stores a key (fsynced, mode 0600) and returns its address.
    pub fn import(&self, key: KeyInfo) -> Result<Address, KeyError> {
        let address = key.address()?;
        let path = self.dir.join(format!("{}.key", canonical(&address)));
        let io = |context, source| KeyError::Io {
            context,
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("key.tmp");
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp).map_err(|e| io("create key file", e))?;
        let json = serde_json::to_vec(&key).map_err(|e| KeyError::Format {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        file.write_all(&json)
            .and_then(|()| file.sync_all())
            .map_err(|e| io("write key file", e))?;
        fs::rename(&tmp, &path).map_err(|e| io("store key file", e))?;
        if let Ok(mut keys) = self.keys.write() {
            keys.insert(address.to_string(), key);
        }
        Ok(address)
    }

    /// Addresses of the stored keys, in a stable order.
    pub fn list(&self) -> Vec<Address> {
        let keys = self
            .keys
            .read()
            .map(|k| k.values().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        keys.iter().filter_map(|k| k.address().ok()).collect()
    }

    pub fn get(&self, address: &Address) -> Result<KeyInfo, KeyError> {
        self.keys
            .read()
            .ok()
            .and_then(|k| k.get(&address.to_string()).cloned())
            .ok_or_else(|| KeyError::Missing(address.to_string(), self.dir.display().to_string()))
    }

    pub fn has(&self, address: &Address) -> bool {
        self.get(address).is_ok()
    }
}

/// The address with the `f` prefix, so file names do not depend on the network setting.
fn canonical(address: &Address) -> String {
    let text = address.to_string();
    format!("f{}", &text[1..])
}

fn read_key(path: &Path) -> Result<KeyInfo, KeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(|e| KeyError::Io {
                context: "read key file",
                path: path.display().to_string(),
                source: e,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.display().to_string(),
                mode: mode & 0o777,
            });
        }
    }
    let bytes = fs::read(path).map_err(|e| KeyError::Io {
        context: "read key file",
        path: path.display().to_string(),
        source: e,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| KeyError::Format {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_persist_privately_and_reload() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Keystore::open(&dir.path().join("keystore")).expect("open");
        let a = store.generate(KeyKind::Bls).expect("bls");
        let b = store.generate(KeyKind::Secp256k1).expect("secp");
        let again = Keystore::open(&dir.path().join("keystore")).expect("reopen");
        let mut listed = again.list();
        listed.sort_by_key(|a| a.to_string());
        let mut expected = vec![a, b];
        expected.sort_by_key(|a| a.to_string());
        assert_eq!(listed, expected);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for entry in fs::read_dir(dir.path().join("keystore")).expect("read") {
                let mode = entry
                    .expect("entry")
                    .metadata()
                    .expect("meta")
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o077, 0, "a key file is readable by others");
            }
            let path = fs::read_dir(dir.path().join("keystore"))
                .expect("read")
                .next()
                .expect("one")
                .expect("entry")
                .path();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
            let err =
                Keystore::open(&dir.path().join("keystore")).expect_err("open with a readable key");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
    }
}
