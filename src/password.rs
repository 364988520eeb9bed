//! Operator passwords: argon2id PHC strings, made by `cobrowse hash-password`
//! and checked at login.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// An argon2id PHC string for `password`, with a fresh random salt.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    Ok(Argon2::default()
        .hash_password(password.as_bytes())?
        .to_string())
}

/// Whether `phc` is a PHC string this module can verify against.
pub fn is_valid_hash(phc: &str) -> Result<(), String> {
    PasswordHash::new(phc)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `phc`. A malformed hash never matches (config
/// validation refuses those before the server starts).
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let h = super::hash("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("s3cret", &h));
        assert!(!super::verify("other", &h));
        assert!(!super::verify("s3cret", "garbage"));
    }
}
