//! SCRAM-SHA-256 password verifiers (RFC 7677, RFC 5802), the form PostgreSQL stores passwords
//! in: `ALTER ROLE … PASSWORD '<verifier>'` sets a password without its text ever reaching the
//! server, and so never its statement log
//! (https://www.postgresql.org/docs/current/sql-createrole.html, "ENCRYPTED PASSWORD").

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// PostgreSQL's iteration count (`scram_iterations`, default 4096).
const ITERATIONS: u32 = 4096;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// PBKDF2-HMAC-SHA-256 with one output block (32 bytes), as SCRAM's `Hi()`.
fn salted_password(password: &str, salt: &[u8]) -> [u8; 32] {
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut block = hmac(password.as_bytes(), &first);
    let mut result = block;
    for _ in 1..ITERATIONS {
        block = hmac(password.as_bytes(), &block);
        for (r, b) in result.iter_mut().zip(block) {
            *r ^= b;
        }
    }
    result
}

/// 16 random bytes from the kernel.
pub fn salt() -> Result<[u8; 16], crate::ReadError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| crate::ReadError::fatal(format!("no random bytes for a password salt: {e}")))?;
    Ok(salt)
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` for `password`.
pub fn verifier(password: &str, salt: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let salted = salted_password(password, salt);
    let stored_key = Sha256::digest(hmac(&salted, b"Client Key"));
    let server_key = hmac(&salted, b"Server Key");
    format!("SCRAM-SHA-256${ITERATIONS}:{}${}:{}", b64.encode(salt), b64.encode(stored_key), b64.encode(server_key))
}
