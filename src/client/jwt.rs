//! RFC 7523 client assertions (`private_key_jwt`; the MCP client-credentials extension, spec
//! section L9): instead of a client secret, the token request carries a short-lived JWT signed
//! with the client's ES256 key (P-256, a PKCS#8 PEM file). One fresh assertion per token
//! request: a new `jti`, `iat` now, `exp` [`CLIENT_ASSERTION_LIFETIME`] later.
//!
//! The key is a secret: it is held in a `Secret`, and nothing here logs or formats it. Error
//! messages name what is wrong with the file, never its content.
//! No network and no threads; the only IO is reading the key file in [`SigningKey::load`].

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

use crate::encoding::{base64url, hex};
use crate::limits::CLIENT_ASSERTION_LIFETIME;
use crate::logging::Secret;

/// The `client_assertion_type` of RFC 7523 §2.2.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The JOSE header of every assertion (RFC 7518 §3.4: ES256 = ECDSA P-256 SHA-256, the
/// signature as the fixed-width `r || s`).
const HEADER: &str = r#"{"alg":"ES256","typ":"JWT"}"#;

/// An ES256 private key, ready to sign.
pub struct SigningKey {
    key_pair: Secret<EcdsaKeyPair>,
    rng: SystemRandom,
}

/// The claims of one assertion (RFC 7523 §3).
pub struct Claims<'a> {
    /// `iss` and `sub`: the client signs for itself.
    pub client_id: &'a str,
    /// `aud`: the authorization server's issuer identifier.
    pub audience: &'a str,
    /// `iat`, seconds since the Unix epoch; `exp` follows from it.
    pub issued_at: u64,
    /// `jti`: unique per assertion, so the server can refuse a replay.
    pub jti: &'a str,
}

impl SigningKey {
    /// Reads a PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`) holding a P-256 key.
    pub fn load(path: &Path) -> Result<SigningKey, String> {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read the private key: {e}"))?;
        SigningKey::from_pem(&Secret(pem))
    }

    pub fn from_pem(pem: &Secret<Vec<u8>>) -> Result<SigningKey, String> {
        let der = PrivateKeyDer::from_pem_slice(pem.expose())
            .map_err(|e| format!("no PEM private key in the file ({e})"))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return Err(
                "the private key is not in PKCS#8 form (BEGIN PRIVATE KEY); convert \
                 it with `openssl pkcs8 -topk8 -nocrypt`"
                    .into(),
            );
        };
        let rng = SystemRandom::new();
        let key_pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|e| format!("the private key is not a usable P-256 (ES256) key: {e}"))?;
        Ok(SigningKey {
            key_pair: Secret(key_pair),
            rng,
        })
    }

    /// The public key as an uncompressed point (`04 || x || y`).
    #[cfg(test)]
    pub fn public_key(&self) -> &[u8] {
        use ring::signature::KeyPair;
        self.key_pair.expose().public_key().as_ref()
    }

    /// A fresh assertion for `client_id` to present to `audience`, issued now.
    pub fn assertion_now(&self, client_id: &str, audience: &str) -> Result<Secret<String>, String> {
        let issued_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| "the system clock is before 1970".to_string())?
            .as_secs();
        let jti = hex(&crate::random::u128().to_le_bytes());
        self.assertion(&Claims {
            client_id,
            audience,
            issued_at,
            jti: &jti,
        })
    }

    /// The compact JWS: `header.claims.signature`, each part Base64url without padding.
    pub fn assertion(&self, claims: &Claims) -> Result<Secret<String>, String> {
        let input = signing_input(claims);
        let signature = self
            .key_pair
            .expose()
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| "signing the client assertion failed".to_string())?;
        Ok(Secret(format!("{input}.{}", base64url(signature.as_ref()))))
    }
}

/// `base64url(header) . base64url(claims)`: the bytes the signature covers (RFC 7515 §5.1).
fn signing_input(claims: &Claims) -> String {
    let payload = serde_json::json!({
        "iss": claims.client_id,
        "sub": claims.client_id,
        "aud": claims.audience,
        "iat": claims.issued_at,
        "exp": claims.issued_at + CLIENT_ASSERTION_LIFETIME.as_secs(),
        "jti": claims.jti,
    });
    format!(
        "{}.{}",
        base64url(HEADER.as_bytes()),
        base64url(payload.to_string().as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
    use serde_json::{Value, json};

    use super::*;

    /// The client-mode tests' throwaway key (see tests/integration/support/tls/README.md).
    const TEST_KEY: &str = include_str!("../../tests/integration/support/tls/client-jwt.key");

    fn key() -> SigningKey {
        SigningKey::from_pem(&Secret(TEST_KEY.as_bytes().to_vec())).expect("test key")
    }

    /// Base64url without padding back to bytes (test-only; the proxy never decodes): mapped
    /// onto the standard alphabet and padded, then read by the shared strict decoder.
    fn unbase64url(s: &str) -> Vec<u8> {
        let mut standard: String = s
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        while !standard.len().is_multiple_of(4) {
            standard.push('=');
        }
        crate::encoding::base64_decode(&standard)
            .unwrap_or_else(|| panic!("not unpadded base64url: {s:?}"))
    }

    fn decode_json(part: &str) -> Value {
        serde_json::from_slice(&unbase64url(part)).expect("JSON part")
    }

    #[test]
    fn assertion_has_the_es256_header_the_claims_and_a_valid_signature() {
        let key = key();
        let jwt = key
            .assertion(&Claims {
                client_id: "client \"1\"",
                audience: "https://as.example/",
                issued_at: 1_700_000_000,
                jti: "abc",
            })
            .unwrap();
        let parts: Vec<&str> = jwt.expose().split('.').collect();
        assert_eq!(parts.len(), 3, "header.claims.signature");
        assert!(
            parts.iter().all(|p| !p.contains(['=', '+', '/'])),
            "unpadded base64url: {parts:?}"
        );
        assert_eq!(decode_json(parts[0]), json!({"alg":"ES256","typ":"JWT"}));
        assert_eq!(
            decode_json(parts[1]),
            json!({"iss":"client \"1\"","sub":"client \"1\"","aud":"https://as.example/",
                   "iat":1_700_000_000u64,"exp":1_700_000_300u64,"jti":"abc"})
        );
        let signature = unbase64url(parts[2]);
        assert_eq!(signature.len(), 64, "fixed-width r || s");
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key())
            .verify(signed.as_bytes(), &signature)
            .expect("the signature verifies with the public key");
        let mut tampered = signed.into_bytes();
        tampered[0] ^= 1;
        assert!(
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key())
                .verify(&tampered, &signature)
                .is_err()
        );
    }

    #[test]
    fn each_assertion_is_new() {
        let key = key();
        let a = key.assertion_now("cid", "https://as.example").unwrap();
        let b = key.assertion_now("cid", "https://as.example").unwrap();
        let claims = |jwt: &Secret<String>| decode_json(jwt.expose().split('.').nth(1).unwrap());
        let (a, b) = (claims(&a), claims(&b));
        assert_ne!(a["jti"], b["jti"]);
        assert_eq!(a["jti"].as_str().unwrap().len(), 32);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let iat = a["iat"].as_u64().unwrap();
        assert!(iat.abs_diff(now) < 60, "iat {iat} vs now {now}");
        assert_eq!(a["exp"].as_u64().unwrap(), iat + 300);
    }

    #[test]
    fn keys_that_cannot_sign_es256_are_refused_with_a_reason() {
        let refused = |pem: &str| {
            SigningKey::from_pem(&Secret(pem.as_bytes().to_vec()))
                .err()
                .expect("refused")
        };
        assert!(refused("").contains("no PEM private key"));
        // SEC1 ("EC PRIVATE KEY") form of a P-256 key: the error says how to convert it.
        let sec1 = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIJCIFaAhJlHRbiTJXNlHX+5t9a4Yb24sBCQmuyTe9++koAoGCCqGSM49
AwEHoUQDQgAEvmJEsuk87+u2dLX53rpAJBSk4pnBSnrIeSfzyqPb5X699xW51UWy
uSLpOMWgFu7Of4crqbbm8+Oyb8P2Ux5iyw==
-----END EC PRIVATE KEY-----
";
        assert!(refused(sec1).contains("openssl pkcs8 -topk8"));
        // A PKCS#8 body that is not a P-256 key.
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(refused(garbage).contains("P-256"));
    }
}
