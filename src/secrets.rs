//! The all-in-one's own secrets: the service credential and the signing key
//! are created under `./data/` on the first start (readable by this user
//! only) and read back on every later one, so tokens survive a restart.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use service_kit::auth::{ServiceCredential, SigningKey};

const CREDENTIAL_FILE: &str = "internal-api-token";
const SIGNING_KEY_FILE: &str = "signing-key.pem";

/// `dir/internal-api-token`, created if missing.
pub fn credential(dir: &Path) -> Result<ServiceCredential, String> {
    let text = read_or_create(dir, CREDENTIAL_FILE, || ServiceCredential::generate().expose().to_owned())?;
    text.trim().parse().map_err(|e| format!("{}: {e}", dir.join(CREDENTIAL_FILE).display()))
}

/// `dir/signing-key.pem`, created if missing.
pub fn signing_key(dir: &Path) -> Result<SigningKey, String> {
    let pem = read_or_create(dir, SIGNING_KEY_FILE, || SigningKey::generate().1)?;
    SigningKey::from_pem(pem.as_bytes())
        .map_err(|e| format!("{}: {}", dir.join(SIGNING_KEY_FILE).display(), service_kit::problem::chain(&e)))
}

fn read_or_create(dir: &Path, name: &str, make: impl FnOnce() -> String) -> Result<String, String> {
    let path = dir.join(name);
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // create_new: two processes starting at once cannot both write one.
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut file) => {
            let secret = make();
            file.write_all(secret.as_bytes()).map_err(fail)?;
            log::info!("created {} (mode 0600)", path.display());
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(&path).map_err(fail)?.permissions().mode();
            if mode & 0o077 != 0 {
                log::warn!("{} is readable by others (mode {:o}); it should be 0600", path.display(), mode & 0o777);
            }
            std::fs::read_to_string(&path).map_err(fail)
        }
        Err(e) => Err(fail(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("order-system-secrets-{:x}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = credential(&dir).unwrap();
        let key = signing_key(&dir).unwrap();
        for name in [CREDENTIAL_FILE, SIGNING_KEY_FILE] {
            let mode = std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        assert!(first.matches(credential(&dir).unwrap().expose()), "the same credential after a restart");
        assert_eq!(signing_key(&dir).unwrap().kid(), key.kid(), "the same key after a restart");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
