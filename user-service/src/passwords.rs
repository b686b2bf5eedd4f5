//! Passwords are kept as Argon2id hashes with OWASP's recommended
//! parameters (19 MiB, 2 passes, 1 lane), as PHC strings that carry their
//! own salt and parameters. Hashing takes tens of milliseconds of CPU, so it
//! runs on the blocking pool, never on an async worker.

use std::sync::LazyLock;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::domain::Password;

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP's parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A hash of no password anyone has: what an unknown username is checked
/// against, so that it takes as long to refuse as a wrong password.
static NOBODY: LazyLock<String> =
    LazyLock::new(|| argon2().hash_password(b"no user has this password").expect("hashing works").to_string());

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("the password could not be hashed")]
    Argon2(#[source] argon2::password_hash::Error),
    #[error("the hashing task did not finish")]
    Blocking(#[source] actix_web::error::BlockingError),
}

/// The PHC string to store.
pub async fn hash(password: Password) -> Result<String, HashError> {
    actix_web::web::block(move || argon2().hash_password(password.expose().as_bytes()).map(|h| h.to_string()))
        .await
        .map_err(HashError::Blocking)?
        .map_err(HashError::Argon2)
}

/// Whether `password` matches `stored`; `None` (no user, or no password)
/// never matches, after the same work as a real check.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    actix_web::web::block(move || {
        let (phc, real) = match &stored {
            Some(phc) => (phc.as_str(), true),
            None => (NOBODY.as_str(), false),
        };
        let matches = PasswordHash::new(phc).is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok());
        real && matches
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_check_out() {
        let phc = hash(Password::parse("correct horse".into()).unwrap()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(verify("correct horse".into(), Some(phc.clone())).await);
        assert!(!verify("wrong horse!".into(), Some(phc)).await);
        assert!(!verify("no user has this password".into(), None).await, "the stand-in never matches");
    }
}
