//! Asymmetric signing keys from a JWKS file (RFC 7517), picked by the token's
//! `kid`. The file is read again while the service runs, so an issuer can rotate
//! keys without a restart: publish the new key beside the old, switch signing,
//! then drop the old key once its tokens have expired.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The keys of one JWKS document, by key id.
pub(crate) struct KeySet {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    /// The document they came from: an unchanged file is not a rotation.
    source: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JwksError {
    #[error("the JWKS document is not valid: {0}")]
    Parse(String),
    #[error("JWKS key {0:?}: {1}")]
    Key(String, String),
    #[error("cannot read the JWKS file {0}: {1}")]
    Read(String, String),
}

impl KeySet {
    pub(crate) fn parse(json: &str) -> Result<KeySet, JwksError> {
        let set: JwkSet =
            serde_json::from_str(json).map_err(|e| JwksError::Parse(e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or_else(|| JwksError::Key(String::new(), "has no kid".into()))?;
            let alg = algorithm(jwk).map_err(|e| JwksError::Key(kid.clone(), e))?;
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| JwksError::Key(kid.clone(), e.to_string()))?;
            if keys.insert(kid.clone(), (key, alg)).is_some() {
                return Err(JwksError::Key(kid, "appears twice".into()));
            }
        }
        Ok(KeySet {
            keys,
            source: json.to_string(),
        })
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&(DecodingKey, Algorithm)> {
        self.keys.get(kid)
    }

    pub(crate) fn same_source(&self, json: &str) -> bool {
        self.source == json
    }
}

/// The one algorithm a key verifies: its `alg`, or the usual one for its type.
/// Symmetric keys are refused: a published key set holds public keys only.
fn algorithm(jwk: &Jwk) -> Result<Algorithm, String> {
    if let Some(alg) = jwk.common.key_algorithm {
        return match alg {
            KeyAlgorithm::ES256 => Ok(Algorithm::ES256),
            KeyAlgorithm::ES384 => Ok(Algorithm::ES384),
            KeyAlgorithm::RS256 => Ok(Algorithm::RS256),
            KeyAlgorithm::RS384 => Ok(Algorithm::RS384),
            KeyAlgorithm::RS512 => Ok(Algorithm::RS512),
            KeyAlgorithm::PS256 => Ok(Algorithm::PS256),
            KeyAlgorithm::PS384 => Ok(Algorithm::PS384),
            KeyAlgorithm::PS512 => Ok(Algorithm::PS512),
            KeyAlgorithm::EdDSA => Ok(Algorithm::EdDSA),
            other => Err(format!("{other:?} is not an asymmetric signing algorithm")),
        };
    }
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(_) => Ok(Algorithm::EdDSA),
        AlgorithmParameters::RSA(_) => Ok(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Ok(Algorithm::ES256),
            EllipticCurve::P384 => Ok(Algorithm::ES384),
            ref c => Err(format!("curve {c:?} is not supported")),
        },
        AlgorithmParameters::OctetKey(_) => Err("symmetric keys are not accepted".into()),
        _ => Err("this key type is not supported".into()),
    }
}

/// Reads the file at `path`.
pub(crate) fn read(path: &str) -> Result<String, JwksError> {
    std::fs::read_to_string(path).map_err(|e| JwksError::Read(path.into(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    use crate::{AuthError, Claims, JwksError, JwtValidator};

    // Test-only Ed25519 keys (PKCS#8 DER) and their public halves, made with
    // `openssl genpkey -algorithm ed25519`.
    const K1: [u8; 48] = [
        48, 46, 2, 1, 0, 48, 5, 6, 3, 43, 101, 112, 4, 34, 4, 32, 158, 87, 133, 177, 89, 233, 160,
        149, 42, 172, 153, 213, 254, 244, 18, 253, 50, 0, 185, 158, 27, 174, 183, 83, 6, 156, 157,
        163, 249, 36, 26, 239,
    ];
    const K1_X: &str = "_hDZEUSJXl3FtOfSyhctfmqMf0g-yzBfmTPYn7fi-o8";
    const K2: [u8; 48] = [
        48, 46, 2, 1, 0, 48, 5, 6, 3, 43, 101, 112, 4, 34, 4, 32, 187, 254, 181, 31, 184, 52, 234,
        112, 97, 229, 41, 2, 190, 208, 29, 17, 51, 67, 150, 53, 53, 219, 46, 52, 162, 188, 243,
        167, 185, 167, 70, 94,
    ];
    const K2_X: &str = "XUxpLfsoqz-bHzlCVyf1CfWIW5BrmyGnXOG4H7AVD0w";
    const SECRET: &[u8] = b"jwks-test-secret-0123456789abcdef";

    fn jwks(keys: &[(&str, &str)]) -> String {
        let keys: Vec<_> = keys
            .iter()
            .map(|(kid, x)| json!({"kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": kid, "x": x}))
            .collect();
        json!({ "keys": keys }).to_string()
    }

    fn claims() -> Claims {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        Claims {
            sub: "partner-app".into(),
            scope: "profile.read".into(),
            iss: "i".into(),
            aud: "a".into(),
            iat: now,
            exp: now + 300,
        }
    }

    fn signed(kid: &str, der: &[u8]) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(kid.into());
        jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_ed_der(der)).unwrap()
    }

    fn validator() -> JwtValidator {
        JwtValidator::hs256(SECRET, "i", "a")
    }

    #[test]
    fn a_rotated_out_key_is_refused_at_once_even_for_a_remembered_token() {
        let v = validator();
        assert!(v.set_jwks(&jwks(&[("k1", K1_X)])).unwrap());
        let old = signed("k1", &K1);
        assert_eq!(v.validate(&old).unwrap().subject, "partner-app");
        // Remembered now; the same document again is not a rotation.
        assert!(!v.set_jwks(&jwks(&[("k1", K1_X)])).unwrap());
        assert!(v.validate(&old).is_ok());
        // Both keys while clients switch, then only the new one.
        assert!(v.set_jwks(&jwks(&[("k1", K1_X), ("k2", K2_X)])).unwrap());
        assert!(v.validate(&old).is_ok());
        assert!(v.validate(&signed("k2", &K2)).is_ok());
        assert!(v.set_jwks(&jwks(&[("k2", K2_X)])).unwrap());
        assert!(
            matches!(v.validate(&old), Err(AuthError::Invalid(m)) if m.contains("k1")),
            "the withdrawn key's token is not served from the cache"
        );
        assert!(v.validate(&signed("k2", &K2)).is_ok());
    }

    #[test]
    fn the_key_decides_the_algorithm_and_hs256_still_works_without_a_kid() {
        let v = validator();
        v.set_jwks(&jwks(&[("k1", K1_X)])).unwrap();
        // A token naming k1 but signed HS256 with the shared secret.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let forged =
            jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_secret(SECRET)).unwrap();
        assert!(matches!(v.validate(&forged), Err(AuthError::Invalid(_))));
        // k1's key under the other kid, and an unknown kid.
        assert!(v.validate(&signed("k2", &K1)).is_err());
        assert!(v.validate(&signed("nope", &K1)).is_err());
        // Signed by k2's private key but naming k1.
        assert!(v.validate(&signed("k1", &K2)).is_err());
        let plain = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(v.validate(&plain).is_ok());
    }

    #[test]
    fn a_bad_document_is_refused_and_the_keys_in_force_stay() {
        let v = validator();
        v.set_jwks(&jwks(&[("k1", K1_X)])).unwrap();
        assert!(matches!(v.set_jwks("{not json"), Err(JwksError::Parse(_))));
        let symmetric = json!({"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0"}]}).to_string();
        assert!(matches!(v.set_jwks(&symmetric), Err(JwksError::Key(kid, _)) if kid == "s"));
        let no_kid = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": K1_X}]}).to_string();
        assert!(matches!(v.set_jwks(&no_kid), Err(JwksError::Key(_, _))));
        let twice = jwks(&[("k1", K1_X), ("k1", K2_X)]);
        assert!(v.set_jwks(&twice).is_err());
        assert!(v.validate(&signed("k1", &K1)).is_ok());
    }

    #[tokio::test]
    async fn the_file_is_read_again_so_keys_rotate_without_a_restart() {
        let path = std::env::temp_dir().join(format!(
            "jwks-{}-{}.json",
            std::process::id(),
            jsonwebtoken::get_current_timestamp()
        ));
        std::fs::write(&path, jwks(&[("k1", K1_X)])).unwrap();
        let v = Arc::new(validator());
        v.watch_jwks(path.to_string_lossy().into(), Duration::from_millis(50));
        let old = signed("k1", &K1);
        assert!(v.validate(&old).is_ok(), "loaded at start");
        std::fs::write(&path, jwks(&[("k2", K2_X)])).unwrap();
        let mut refused = false;
        for _ in 0..100 {
            if v.validate(&old).is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(refused, "the rotation was picked up");
        assert!(v.validate(&signed("k2", &K2)).is_ok());
        std::fs::remove_file(&path).unwrap();
    }
}
