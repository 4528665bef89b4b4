//! PII at rest: names, e-mail addresses and phone numbers are stored encrypted
//! (AES-256-GCM), and e-mail addresses are found through a keyed hash
//! (HMAC-SHA256), so a copy of the database or a backup shows neither.
//!
//! A stored value reads `enc1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`. The
//! key id lets values written under a retired key stay readable after a
//! rotation; the associated data binds each value to its row and column, so a
//! ciphertext copied to another customer or column does not decrypt.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use retention_config::PiiSettings;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::domain::normalize_email;

const PREFIX: &str = "enc1:";

/// Development keys, for the embedded mode only (`auth.allow_dev_secret`).
const DEV_ENCRYPTION_KEY: &[u8; 32] = b"retention-dev-pii-key-change-me!";
const DEV_LOOKUP_KEY: &[u8] = b"retention-dev-lookup-key-change-me";
const DEV_KEY_ID: &str = "dev";

#[derive(Debug, thiserror::Error)]
pub enum PiiKeyError {
    #[error(
        "{0} is not set: set RETENTION_{1} to `openssl rand -base64 32` (development keys are refused unless auth.allow_dev_secret)"
    )]
    Missing(&'static str, &'static str),
    #[error("{setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error(
        "{column} of customer {row} is encrypted under key {key_id:?}, which is not configured (pii.retired_keys)"
    )]
    UnknownKey {
        column: &'static str,
        row: String,
        key_id: String,
    },
    #[error(
        "{column} of customer {row} does not decrypt: damaged, moved from another row, or the key id names another key"
    )]
    Damaged { column: &'static str, row: String },
}

/// The keys of one service process; cheap to share behind an `Arc`.
pub struct PiiCipher {
    key_id: String,
    keys: HashMap<String, LessSafeKey>,
    lookup: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for PiiCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiiCipher")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn decode(setting: &'static str, value: &str) -> Result<Vec<u8>, PiiKeyError> {
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|e| PiiKeyError::Invalid {
            setting,
            reason: format!("is not base64: {e}"),
        })
}

fn aead_key(setting: &'static str, bytes: &[u8]) -> Result<LessSafeKey, PiiKeyError> {
    let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| PiiKeyError::Invalid {
        setting,
        reason: format!("must be 32 bytes, not {}", bytes.len()),
    })?;
    Ok(LessSafeKey::new(key))
}

fn valid_key_id(id: &str) -> bool {
    (1..=16).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl PiiCipher {
    /// The keys `s` names; development keys stand in for empty ones only when
    /// `allow_dev` (the embedded mode).
    pub fn from_settings(s: &PiiSettings, allow_dev: bool) -> Result<PiiCipher, PiiKeyError> {
        let (key_id, key) = if s.encryption_key.is_empty() {
            if !allow_dev {
                return Err(PiiKeyError::Missing(
                    "pii.encryption_key",
                    "PII__ENCRYPTION_KEY",
                ));
            }
            (DEV_KEY_ID.to_string(), DEV_ENCRYPTION_KEY.to_vec())
        } else {
            let id = if s.key_id.is_empty() { "k1" } else { &s.key_id };
            (
                id.to_string(),
                decode("pii.encryption_key", &s.encryption_key)?,
            )
        };
        if !valid_key_id(&key_id) {
            return Err(PiiKeyError::Invalid {
                setting: "pii.key_id",
                reason: "must be 1 to 16 letters, digits, '-' or '_'".into(),
            });
        }
        let mut keys = HashMap::from([(key_id.clone(), aead_key("pii.encryption_key", &key)?)]);
        for entry in s.retired_keys.split(',').filter(|e| !e.trim().is_empty()) {
            let (id, value) = entry
                .trim()
                .split_once('=')
                .filter(|(id, _)| valid_key_id(id))
                .ok_or_else(|| PiiKeyError::Invalid {
                    setting: "pii.retired_keys",
                    reason: format!("{entry:?} is not `id=base64`"),
                })?;
            if keys.contains_key(id) {
                return Err(PiiKeyError::Invalid {
                    setting: "pii.retired_keys",
                    reason: format!("key id {id:?} is given twice"),
                });
            }
            let bytes = decode("pii.retired_keys", value)?;
            keys.insert(id.to_string(), aead_key("pii.retired_keys", &bytes)?);
        }
        let lookup = if s.lookup_key.is_empty() {
            if !allow_dev {
                return Err(PiiKeyError::Missing("pii.lookup_key", "PII__LOOKUP_KEY"));
            }
            DEV_LOOKUP_KEY.to_vec()
        } else {
            decode("pii.lookup_key", &s.lookup_key)?
        };
        if lookup.len() < 32 {
            return Err(PiiKeyError::Invalid {
                setting: "pii.lookup_key",
                reason: format!("must be at least 32 bytes, not {}", lookup.len()),
            });
        }
        Ok(PiiCipher {
            key_id,
            keys,
            lookup: hmac::Key::new(hmac::HMAC_SHA256, &lookup),
            rng: SystemRandom::new(),
        })
    }

    /// The id of the key new values are written under.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// How every value sealed under the current key begins.
    pub fn current_prefix(&self) -> String {
        format!("{PREFIX}{}:", self.key_id)
    }

    fn aad(column: &str, row: &str) -> String {
        format!("{column}\u{0}{row}")
    }

    /// `plain` encrypted for `column` of customer `row`, under the current key.
    pub fn seal(&self, column: &str, row: &str, plain: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // The system RNG failing leaves nothing safe to do: no value may be
        // written under a repeated nonce.
        self.rng
            .fill(&mut nonce)
            .expect("the system random number generator failed");
        let mut data = plain.as_bytes().to_vec();
        self.keys[&self.key_id]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(column, row).as_bytes()),
                &mut data,
            )
            .expect("AES-GCM sealing a value of bounded size");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!("{}{}", self.current_prefix(), STANDARD_NO_PAD.encode(out))
    }

    /// The plain value of `stored`. A value without the `enc1:` prefix was written
    /// before encryption was introduced and is read as it is (sealed by the next
    /// write, or by the start-up sweep in `store::reseal`).
    pub fn open(&self, column: &'static str, row: &str, stored: &str) -> Result<String, PiiError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_string());
        };
        let damaged = || PiiError::Damaged {
            column,
            row: row.to_string(),
        };
        let (key_id, body) = rest.split_once(':').ok_or_else(damaged)?;
        let key = self.keys.get(key_id).ok_or_else(|| PiiError::UnknownKey {
            column,
            row: row.to_string(),
            key_id: key_id.to_string(),
        })?;
        let mut data = STANDARD_NO_PAD.decode(body).map_err(|_| damaged())?;
        if data.len() < NONCE_LEN {
            return Err(damaged());
        }
        let mut sealed = data.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&data).map_err(|_| damaged())?;
        let plain = key
            .open_in_place(
                nonce,
                Aad::from(Self::aad(column, row).as_bytes()),
                &mut sealed,
            )
            .map_err(|_| damaged())?;
        String::from_utf8(plain.to_vec()).map_err(|_| damaged())
    }

    /// The keyed hash an e-mail address is looked up by (hex): equal for
    /// addresses equal after normalisation, and useless without the key.
    pub fn email_lookup(&self, email: &str) -> String {
        let tag = hmac::sign(&self.lookup, normalize_email(email).as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Sealed bytes for a cache entry (Redis keeps cached profiles too); the
    /// cache key is the associated data.
    pub fn seal_bytes(&self, key: &str, plain: &[u8]) -> Vec<u8> {
        self.seal("cache", key, &STANDARD_NO_PAD.encode(plain))
            .into_bytes()
    }

    /// The bytes [`PiiCipher::seal_bytes`] sealed; None for anything else.
    pub fn open_bytes(&self, key: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(sealed).ok()?;
        if !text.starts_with(PREFIX) {
            return None;
        }
        let plain = self.open("cache", key, text).ok()?;
        STANDARD_NO_PAD.decode(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn settings(key: u8, id: &str) -> PiiSettings {
        PiiSettings {
            encryption_key: b64(&[key; 32]),
            key_id: id.into(),
            retired_keys: String::new(),
            lookup_key: b64(&[7; 32]),
        }
    }

    #[test]
    fn a_value_round_trips_and_its_ciphertext_shows_nothing() {
        let c = PiiCipher::from_settings(&settings(1, "k1"), false).unwrap();
        let sealed = c.seal("email", "row-1", "li.lei@example.com");
        assert!(sealed.starts_with("enc1:k1:"), "{sealed}");
        assert!(!sealed.contains("li.lei"), "{sealed}");
        assert_ne!(
            sealed,
            c.seal("email", "row-1", "li.lei@example.com"),
            "a fresh nonce each time"
        );
        assert_eq!(
            c.open("email", "row-1", &sealed).unwrap(),
            "li.lei@example.com"
        );
    }

    #[test]
    fn a_value_moved_to_another_row_or_column_or_altered_does_not_decrypt() {
        let c = PiiCipher::from_settings(&settings(1, "k1"), false).unwrap();
        let sealed = c.seal("email", "row-1", "li.lei@example.com");
        assert!(matches!(
            c.open("email", "row-2", &sealed),
            Err(PiiError::Damaged { .. })
        ));
        assert!(matches!(
            c.open("phone", "row-1", &sealed),
            Err(PiiError::Damaged { .. })
        ));
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(c.open("email", "row-1", &altered).is_err());
        assert!(c.open("email", "row-1", "enc1:k1:").is_err());
        assert!(c.open("email", "row-1", "enc1:k1").is_err());
    }

    #[test]
    fn retired_keys_still_read_and_a_missing_key_is_named() {
        let old = PiiCipher::from_settings(&settings(1, "k1"), false).unwrap();
        let sealed = old.seal("display_name", "row-1", "李雷");
        let mut s = settings(2, "k2");
        let rotated = PiiCipher::from_settings(&s, false).unwrap();
        assert!(matches!(
            rotated.open("display_name", "row-1", &sealed),
            Err(PiiError::UnknownKey { ref key_id, .. }) if key_id == "k1"
        ));
        s.retired_keys = format!("k1={}", b64(&[1; 32]));
        let rotated = PiiCipher::from_settings(&s, false).unwrap();
        assert_eq!(
            rotated.open("display_name", "row-1", &sealed).unwrap(),
            "李雷"
        );
        assert!(
            rotated
                .seal("display_name", "row-1", "李雷")
                .starts_with(&rotated.current_prefix())
        );
    }

    #[test]
    fn plaintext_from_before_encryption_reads_as_it_is() {
        let c = PiiCipher::from_settings(&settings(1, "k1"), false).unwrap();
        assert_eq!(
            c.open("phone", "r", "+8613800000000").unwrap(),
            "+8613800000000"
        );
    }

    #[test]
    fn the_lookup_hash_is_keyed_and_ignores_case_and_blanks() {
        let c = PiiCipher::from_settings(&settings(1, "k1"), false).unwrap();
        let h = c.email_lookup("li.lei@example.com");
        assert_eq!(h.len(), 64);
        assert_eq!(h, c.email_lookup("  Li.Lei@Example.COM "));
        assert_ne!(h, c.email_lookup("han.meimei@example.com"));
        let mut other = settings(1, "k1");
        other.lookup_key = b64(&[8; 32]);
        let other = PiiCipher::from_settings(&other, false).unwrap();
        assert_ne!(h, other.email_lookup("li.lei@example.com"));
    }

    #[test]
    fn cache_entries_are_sealed_to_their_key() {
        let c = PiiCipher::from_settings(&settings(1, "k1"), false).unwrap();
        let sealed = c.seal_bytes("profile:customer:1", b"{\"email\":\"a@b.cn\"}");
        assert!(!String::from_utf8_lossy(&sealed).contains("a@b.cn"));
        assert_eq!(
            c.open_bytes("profile:customer:1", &sealed).unwrap(),
            b"{\"email\":\"a@b.cn\"}"
        );
        assert!(c.open_bytes("profile:customer:2", &sealed).is_none());
        assert!(
            c.open_bytes("profile:customer:1", b"{\"plain\":1}")
                .is_none()
        );
    }

    #[test]
    fn keys_are_required_outside_the_embedded_mode_and_checked() {
        let empty = PiiSettings::default();
        let err = PiiCipher::from_settings(&empty, false).unwrap_err();
        assert!(
            err.to_string().contains("RETENTION_PII__ENCRYPTION_KEY"),
            "{err}"
        );
        assert_eq!(
            PiiCipher::from_settings(&empty, true).unwrap().key_id(),
            "dev"
        );
        let mut s = settings(1, "k1");
        s.lookup_key = String::new();
        let err = PiiCipher::from_settings(&s, false).unwrap_err();
        assert!(
            err.to_string().contains("RETENTION_PII__LOOKUP_KEY"),
            "{err}"
        );
        for (mutate, expected) in [
            (
                (|s: &mut PiiSettings| s.encryption_key = b64(&[1; 16])) as fn(&mut PiiSettings),
                "must be 32 bytes",
            ),
            (|s| s.encryption_key = "not base64!".into(), "not base64"),
            (|s| s.key_id = "has space".into(), "pii.key_id"),
            (|s| s.retired_keys = "k0".into(), "pii.retired_keys"),
            (
                |s| s.retired_keys = format!("k1={}", b64(&[1; 32])),
                "given twice",
            ),
            (|s| s.lookup_key = b64(&[1; 8]), "at least 32 bytes"),
        ] {
            let mut s = settings(1, "k1");
            mutate(&mut s);
            let err = PiiCipher::from_settings(&s, false).unwrap_err();
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
    }
}
