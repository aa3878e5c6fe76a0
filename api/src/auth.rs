//! Bearer tokens with scopes, and which endpoints need which.
//!
//! A token has the scope `read` (every `GET` but `/health`, the documentation and, where the
//! server opens them, the aggregate metrics) or `write` (uploads, batches, backups, restores,
//! and everything `read` allows). Several tokens may be valid at once, so a token is rotated
//! without downtime: add the new one, move the clients, remove the old one.
//!
//! The tokens come from `HIRING_API_TOKENS`, the JSON the stack keeps in Secrets Manager,
//! `{"read": ["…"], "write": ["…", "…"]}` (a scope may hold one string instead of a list), and
//! from `HIRING_API_TOKEN`, one write token (`cargo xtask dev`). Only their SHA-256 digests are
//! kept, and a presented token is compared with every one of them by digest in constant time,
//! so neither its bytes nor its length shows in the answer's timing.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Reading ingestions, rejects, backups, metrics and the report.
    Read,
    /// Everything `read` allows, and uploads, batches, backups and restores.
    Write,
}

impl Scope {
    /// The scope's name, as in `HIRING_API_TOKENS`.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

/// The valid tokens, by digest.
#[derive(Clone, Default)]
pub struct Tokens(Vec<(Scope, [u8; 32])>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = |scope| self.0.iter().filter(|(s, _)| *s == scope).count();
        write!(f, "Tokens {{ read: {}, write: {} }}", count(Scope::Read), count(Scope::Write))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The shortest token accepted: shorter ones are guessable.
pub const MIN_TOKEN_CHARS: usize = 16;

impl Tokens {
    /// Tokens from (scope, token) pairs.
    pub fn new<'a>(tokens: impl IntoIterator<Item = (Scope, &'a str)>) -> Tokens {
        Tokens(tokens.into_iter().map(|(scope, token)| (scope, digest(token))).collect())
    }

    /// Reads `HIRING_API_TOKENS` (JSON) and `HIRING_API_TOKEN` (one write token). The error
    /// names the variable and never quotes a token.
    pub fn from_settings(json: Option<&str>, write_token: Option<&str>) -> anyhow::Result<Tokens> {
        let mut pairs: Vec<(Scope, String)> = Vec::new();
        if let Some(json) = json {
            let shape =
                "HIRING_API_TOKENS is not the JSON of the API's tokens, {\"read\": [\"…\"], \"write\": [\"…\"]}";
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(json).map_err(|_| anyhow::anyhow!("{shape}"))?;
            for (key, value) in object {
                let scope = match key.as_str() {
                    "read" => Scope::Read,
                    "write" => Scope::Write,
                    other => {
                        anyhow::bail!("HIRING_API_TOKENS names the scope `{other}`: the scopes are read and write")
                    }
                };
                let values = match value {
                    serde_json::Value::String(token) => vec![token],
                    serde_json::Value::Array(items) => items
                        .into_iter()
                        .map(|item| item.as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("{shape}")))
                        .collect::<anyhow::Result<_>>()?,
                    _ => anyhow::bail!("{shape}"),
                };
                pairs.extend(values.into_iter().map(|token| (scope, token)));
            }
        }
        if let Some(token) = write_token {
            pairs.push((Scope::Write, token.to_owned()));
        }
        if let Some((scope, _)) = pairs.iter().find(|(_, token)| token.trim().chars().count() < MIN_TOKEN_CHARS) {
            anyhow::bail!(
                "a {} token of HIRING_API_TOKENS or HIRING_API_TOKEN is shorter than {MIN_TOKEN_CHARS} characters: \
                 use a long random one (e.g. openssl rand -hex 24)",
                scope.name()
            );
        }
        Ok(Tokens::new(pairs.iter().map(|(scope, token)| (*scope, token.trim()))))
    }

    /// True when no token of `scope` or above is configured.
    pub fn none_for(&self, scope: Scope) -> bool {
        !self.0.iter().any(|(s, _)| *s >= scope)
    }

    /// The widest scope a presented token has, or `None` when it matches no token. Every digest
    /// is compared, whether or not an earlier one matched.
    pub fn scope_of(&self, presented: &str) -> Option<Scope> {
        let presented = digest(presented);
        let mut best = None;
        for (scope, expected) in &self.0 {
            if bool::from(presented.ct_eq(expected)) {
                best = best.max(Some(*scope));
            }
        }
        best
    }
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A read or write token.
    Read,
    /// A write token.
    Write,
    /// Nothing when the server opens the aggregate metrics (`HIRING_PUBLIC_METRICS`), else a
    /// read or write token.
    Metrics,
}

/// Whether the request presents a valid read or write token (the public report shows more to
/// a reader who does).
pub fn presents_a_token(state: &AppState, headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|presented| state.settings.tokens.scope_of(presented.trim()).is_some())
}

/// Lets a request through when its bearer token has what `need` asks: 401 without a token or
/// with a wrong one, 403 with a token of too narrow a scope or when the server has no token of
/// that scope (a server without write tokens runs read-only).
pub async fn require(
    State((state, need)): State<(AppState, Need)>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let tokens = &state.settings.tokens;
    let scope = match need {
        Need::Metrics if state.settings.public_metrics => return Ok(next.run(request).await),
        Need::Read | Need::Metrics => Scope::Read,
        Need::Write => Scope::Write,
    };
    if tokens.none_for(scope) {
        return Err(match scope {
            Scope::Write => ApiError::ReadOnly,
            Scope::Read => ApiError::NoTokens,
        });
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(ApiError::Unauthorized("this endpoint needs `Authorization: Bearer <token>`"));
    };
    match tokens.scope_of(presented) {
        Some(granted) if granted >= scope => Ok(next.run(request).await),
        Some(_) => Err(ApiError::Forbidden("this endpoint needs a write token; the token given may only read")),
        None => Err(ApiError::Unauthorized("the bearer token is not valid")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_the_secret_s_json_and_the_single_write_token() {
        let json = r#"{"read": "r-0123456789abcdef", "write": ["w-old-0123456789ab", "w-new-0123456789ab"]}"#;
        let tokens = Tokens::from_settings(Some(json), Some("dev-write-0123456789")).expect("valid tokens");
        assert_eq!(tokens.scope_of("r-0123456789abcdef"), Some(Scope::Read));
        assert_eq!(tokens.scope_of("w-old-0123456789ab"), Some(Scope::Write));
        assert_eq!(tokens.scope_of("w-new-0123456789ab"), Some(Scope::Write));
        assert_eq!(tokens.scope_of("dev-write-0123456789"), Some(Scope::Write));
        assert_eq!(tokens.scope_of("w-new-0123456789a"), None);
        assert_eq!(tokens.scope_of(""), None);
        assert_eq!(format!("{tokens:?}"), "Tokens { read: 1, write: 3 }");
    }

    /// Issue 16, item 11: what is compared is the 32-byte SHA-256 of the presented token and of
    /// each configured one, never the tokens themselves, so the comparison's length and time
    /// do not depend on how long either is (the digests are all the server keeps). A prefix,
    /// an extension or a same-length variant of a token digests to something else entirely.
    #[test]
    fn a_prefix_or_extension_of_a_token_does_not_match() {
        let token = "w-0123456789abcdef";
        let tokens = Tokens::new([(Scope::Write, token)]);
        assert_eq!(tokens.0.len(), 1);
        assert_eq!(tokens.0[0].1, digest(token), "the server keeps the digest only");
        assert_eq!(digest("").len(), digest(&"x".repeat(10_000)).len());
        for near in [
            "w-0123456789abcde",
            "w-0123456789abcdef0",
            "w-0123456789abcdeF",
            "W-0123456789abcdef",
            " w-0123456789abcdef",
        ] {
            assert_eq!(tokens.scope_of(near), None, "{near:?}");
        }
        assert_eq!(tokens.scope_of(token), Some(Scope::Write));
    }

    #[test]
    fn a_token_in_both_scopes_counts_as_write() {
        let tokens = Tokens::new([(Scope::Read, "same-token-0123456789"), (Scope::Write, "same-token-0123456789")]);
        assert_eq!(tokens.scope_of("same-token-0123456789"), Some(Scope::Write));
        assert!(!tokens.none_for(Scope::Read));
        assert!(Tokens::new([(Scope::Read, "x")]).none_for(Scope::Write));
    }

    #[test]
    fn wrong_settings_say_what_to_give_and_never_quote_a_token() {
        let error = |json: &str| Tokens::from_settings(Some(json), None).unwrap_err().to_string();
        assert!(error("hunter2-not-json").contains("not the JSON of the API's tokens"));
        assert!(error(r#"{"admin": "x"}"#).contains("scope `admin`"));
        assert!(error(r#"{"write": [1]}"#).contains("not the JSON"));
        let short = error(r#"{"read": "hunter2"}"#);
        assert!(short.contains("shorter than 16") && !short.contains("hunter2"), "{short}");
    }
}
