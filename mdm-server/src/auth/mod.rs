//! Credential mechanics: Argon2id password hashes, TOTP (RFC 6238) second factors and random
//! bearer tokens stored as hashes. The rules about when these are required live in
//! `domain::account`.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, Secret, TOTP};

pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2id with default parameters accepts any password")
        .to_string()
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of a password nobody has, verified against when the account does not exist, so the
/// answer takes as long for a wrong address as for a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no account has this password"))
}

/// A one-time password to hand to a new account; it must be changed at first login.
pub fn generate_one_time_password() -> String {
    let mut bytes = [0u8; 15];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A bearer token: 32 random bytes, shown once; only its SHA-256 is stored.
pub fn generate_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let token = format!(
        "mdm_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash_token(&token);
    (token, hash)
}

/// The key failed logins are counted under: a hash of the address as typed (trimmed, lower
/// case), the same for addresses with and without an account, and never the address itself.
pub fn login_key(email: &str) -> String {
    hash_token(&format!("login:{}", email.trim().to_lowercase()))
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// TOTP as authenticator apps expect it: SHA-1, six digits, 30-second steps, one step of skew.
pub struct Totp(TOTP);

impl std::fmt::Debug for Totp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Totp([redacted])")
    }
}

pub const TOTP_STEP_SECONDS: u64 = 30;

impl Totp {
    pub fn generate_secret() -> String {
        Secret::generate_secret().to_encoded().to_string()
    }

    pub fn new(base32_secret: &str, account_email: &str, issuer: &str) -> Option<Self> {
        let bytes = Secret::Encoded(base32_secret.to_string()).to_bytes().ok()?;
        TOTP::new(
            Algorithm::SHA1,
            6,
            1,
            TOTP_STEP_SECONDS,
            bytes,
            Some(issuer.to_string()),
            account_email.to_string(),
        )
        .ok()
        .map(Totp)
    }

    /// The `otpauth://` URI an authenticator app scans.
    pub fn provisioning_uri(&self) -> String {
        self.0.get_url()
    }

    /// The time step the code belongs to if it is valid at `unix_time` (one step of skew
    /// either way). The caller refuses a step that was already used.
    pub fn verify(&self, code: &str, unix_time: u64) -> Option<i64> {
        let code = code.trim();
        let current = unix_time / TOTP_STEP_SECONDS;
        [current, current.saturating_sub(1), current + 1]
            .into_iter()
            .find(|step| self.0.generate(step * TOTP_STEP_SECONDS) == code)
            .and_then(|step| i64::try_from(step).ok())
    }

    pub fn code_at(&self, unix_time: u64) -> String {
        self.0.generate(unix_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("tranbär-cykelställ-vinterväg-97");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("tranbär-cykelställ-vinterväg-97", &hash));
        assert!(!verify_password("tranbär-cykelställ-vinterväg-98", &hash));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[test]
    fn totp_accepts_the_current_and_adjacent_steps_only() {
        let totp = Totp::new(&Totp::generate_secret(), "anna@omsorg.se", "MDM").expect("totp");
        let t = 1_790_000_000;
        let step = (t / TOTP_STEP_SECONDS) as i64;
        assert_eq!(totp.verify(&totp.code_at(t), t), Some(step));
        assert_eq!(totp.verify(&totp.code_at(t - 30), t), Some(step - 1));
        assert_eq!(totp.verify(&totp.code_at(t - 90), t), None);
        assert!(totp.provisioning_uri().starts_with("otpauth://totp/"));
    }

    #[test]
    fn rfc6238_test_vector_for_sha1() {
        // RFC 6238 appendix B: secret "12345678901234567890", T = 59 s gives 94287082 (8 digits);
        // its last six digits are what a six-digit authenticator shows.
        let secret = Secret::Raw(b"12345678901234567890".to_vec())
            .to_encoded()
            .to_string();
        let totp = Totp::new(&secret, "a@b.se", "MDM").expect("totp");
        assert_eq!(totp.code_at(59), "287082");
    }

    #[test]
    fn tokens_are_random_and_stored_as_their_hash() {
        let (a, hash_a) = generate_token();
        let (b, _) = generate_token();
        assert_ne!(a, b);
        assert_eq!(hash_token(&a), hash_a);
        assert!(!hash_a.contains(&a));
    }
}

/// A new account's first credentials.
#[derive(Debug)]
pub struct IssuedCredentials {
    pub one_time_password: String,
    pub totp_secret: String,
    pub totp_uri: String,
}

/// A one-time password and a new TOTP secret for `email`, with the URI an authenticator app
/// reads; `issuer` names the operator in the app.
pub fn new_credentials(email: &str, issuer: &str) -> IssuedCredentials {
    let totp_secret = Totp::generate_secret();
    let totp_uri = Totp::new(&totp_secret, email, issuer)
        .map(|t| t.provisioning_uri())
        .unwrap_or_default();
    IssuedCredentials {
        one_time_password: generate_one_time_password(),
        totp_secret,
        totp_uri,
    }
}
