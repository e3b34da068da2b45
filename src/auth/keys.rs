//! DKIM keys of a list domain: generation, the record kept in the store,
//! and the DNS TXT record to publish.
//!
//! Generation goes through mail-auth's `generate` feature
//! (`DkimKeyPair`): RSA with the pure-Rust `rsa` crate (ring cannot generate
//! RSA keys), Ed25519 with ring. Signing always uses ring. The `rsa` crate
//! is used directly only to re-encode the generated key: PKCS#8 PEM for the
//! record and SubjectPublicKeyInfo for `p=` (RFC 6376 §3.6.1; mail-auth
//! hands out PKCS#1, which dkimpy and other verifiers refuse).

use base64::Engine;
use mail_auth::common::crypto::{DkimKey as SigningKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::dkim::generate::DkimKeyPair;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::{Deserialize, Serialize};

/// A DKIM signing algorithm listrelay generates keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// RSA-2048 with SHA-256: what every receiver verifies.
    #[serde(rename = "rsa-sha256")]
    RsaSha256,
    /// Ed25519 with SHA-256 (RFC 8463): small and fast; not yet verified by
    /// every receiver, so published beside an RSA key.
    #[serde(rename = "ed25519-sha256")]
    Ed25519Sha256,
}

impl Algorithm {
    /// The name used in `a=` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.to_ascii_lowercase().as_str() {
            "rsa-sha256" | "rsa" => Ok(Algorithm::RsaSha256),
            "ed25519-sha256" | "ed25519" => Ok(Algorithm::Ed25519Sha256),
            _ => Err(KeyError::UnknownAlgorithm(s.to_string())),
        }
    }
}

/// Key errors; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `--algorithm` names something else.
    #[error("unknown DKIM algorithm {0:?}: use rsa-sha256 or ed25519-sha256")]
    UnknownAlgorithm(String),
    /// The generator failed (no system randomness?).
    #[error("could not generate the DKIM key: {0}")]
    Generate(String),
    /// A stored private key does not load: the record is damaged.
    #[error("the stored DKIM key {selector}._domainkey.{domain} does not load ({reason}): remove it and run `listrelay dkim keygen` again")]
    Unusable {
        /// Domain of the record.
        domain: String,
        /// Selector of the record.
        selector: String,
        /// What the crypto library said.
        reason: String,
    },
    /// The selector is not a DNS label sequence.
    #[error("selector {0:?} is not valid: use letters, digits, '-' and '.' (e.g. 2026a)")]
    BadSelector(String),
}

/// A list domain's DKIM key, as the store keeps it. `Debug` leaves the
/// private key out (records end up in logs and error messages).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimKeyRecord {
    /// The signing domain (`d=`), the list domain.
    pub domain: String,
    /// The selector (`s=`): the key is published at `SELECTOR._domainkey.DOMAIN`.
    pub selector: String,
    /// Which algorithm the key is for.
    pub algorithm: Algorithm,
    /// The private key, PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub private_key_pem: String,
    /// When it was generated (seconds since the Unix epoch), to order a rotation.
    pub created_at: u64,
}

impl std::fmt::Debug for DkimKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKeyRecord")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .field("private_key_pem", &"(secret)")
            .field("created_at", &self.created_at)
            .finish()
    }
}

fn valid_selector(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn gen_err(e: impl std::fmt::Display) -> KeyError {
    KeyError::Generate(e.to_string())
}

/// Generates a new key for `domain` under `selector` (RSA keys are 2048 bits).
pub fn generate(
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
    now: u64,
) -> Result<DkimKeyRecord, KeyError> {
    if !valid_selector(selector) {
        return Err(KeyError::BadSelector(selector.to_string()));
    }
    let pkcs8_der = match algorithm {
        Algorithm::RsaSha256 => {
            let pair = DkimKeyPair::generate_rsa(2048).map_err(gen_err)?;
            let key = rsa::RsaPrivateKey::from_pkcs1_der(pair.private_key()).map_err(gen_err)?;
            key.to_pkcs8_der().map_err(gen_err)?.as_bytes().to_vec()
        }
        Algorithm::Ed25519Sha256 => {
            let pair = DkimKeyPair::generate_ed25519().map_err(gen_err)?;
            pair.private_key().to_vec()
        }
    };
    let private_key_pem =
        rsa::pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &pkcs8_der)
            .map_err(gen_err)?;
    Ok(DkimKeyRecord {
        domain: domain.to_ascii_lowercase(),
        selector: selector.to_string(),
        algorithm,
        private_key_pem,
        created_at: now,
    })
}

impl DkimKeyRecord {
    /// `SELECTOR._domainkey.DOMAIN`: where the public key is published.
    pub fn dns_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    fn unusable(&self, reason: impl std::fmt::Display) -> KeyError {
        KeyError::Unusable {
            domain: self.domain.clone(),
            selector: self.selector.clone(),
            reason: reason.to_string(),
        }
    }

    fn pkcs8_der(&self) -> Result<Vec<u8>, KeyError> {
        let (label, der) = rsa::pkcs8::der::pem::decode_vec(self.private_key_pem.as_bytes())
            .map_err(|e| self.unusable(e))?;
        if label != "PRIVATE KEY" {
            return Err(self.unusable(format!("PEM label {label:?}, expected PRIVATE KEY")));
        }
        Ok(der)
    }

    /// The exact TXT record to publish at [`Self::dns_name`], e.g.
    /// `v=DKIM1; k=rsa; p=MIIBIjANBg…` (SubjectPublicKeyInfo for RSA, the
    /// raw 32-byte key for Ed25519, RFC 8463).
    pub fn dns_txt(&self) -> Result<String, KeyError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(match self.algorithm {
            Algorithm::RsaSha256 => {
                let key = rsa::RsaPrivateKey::from_pkcs8_der(&self.pkcs8_der()?)
                    .map_err(|e| self.unusable(e))?;
                let spki = key
                    .to_public_key()
                    .to_public_key_der()
                    .map_err(|e| self.unusable(e))?;
                format!("v=DKIM1; k=rsa; p={}", b64.encode(spki.as_bytes()))
            }
            Algorithm::Ed25519Sha256 => {
                let key =
                    Ed25519Key::from_pkcs8_der(&self.pkcs8_der()?).map_err(|e| self.unusable(e))?;
                format!("v=DKIM1; k=ed25519; p={}", b64.encode(key.public_key()))
            }
        })
    }

    /// The key in mail-auth's (ring's) signing form.
    pub fn signing_key(&self) -> Result<SigningKey, KeyError> {
        let der = self.pkcs8_der()?;
        Ok(match self.algorithm {
            // `from_pkcs8_der` is deprecated for `from_key_der`, which takes
            // rustls-pki-types' wrapper (not a dependency of ours); it does
            // the same in 0.13.3 (pinned).
            #[allow(deprecated)]
            Algorithm::RsaSha256 => SigningKey::Rsa(
                RsaKey::<Sha256>::from_pkcs8_der(&der).map_err(|e| self.unusable(e))?,
            ),
            Algorithm::Ed25519Sha256 => {
                SigningKey::Ed25519(Ed25519Key::from_pkcs8_der(&der).map_err(|e| self.unusable(e))?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_algorithms_round_trip_and_publish_a_record() {
        for alg in [Algorithm::Ed25519Sha256, Algorithm::RsaSha256] {
            let k = generate("Lists.Example.org", "2026a", alg, 1_700_000_000).unwrap();
            assert_eq!(k.dns_name(), "2026a._domainkey.lists.example.org");
            assert!(k.private_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let txt = k.dns_txt().unwrap();
            let want = match alg {
                Algorithm::RsaSha256 => "v=DKIM1; k=rsa; p=MIIBIjAN",
                Algorithm::Ed25519Sha256 => "v=DKIM1; k=ed25519; p=",
            };
            assert!(txt.starts_with(want), "{txt}");
            assert!(k.signing_key().is_ok());
            let json = serde_json::to_string(&k).unwrap();
            assert!(json.contains(&format!("\"{alg}\"")));
            assert_eq!(serde_json::from_str::<DkimKeyRecord>(&json).unwrap(), k);
            assert!(!format!("{k:?}").contains("BEGIN"), "no secret in Debug");
        }
    }

    #[test]
    fn bad_input_gives_clear_errors() {
        assert!(matches!(
            "dsa".parse::<Algorithm>(),
            Err(KeyError::UnknownAlgorithm(_))
        ));
        assert!(matches!(
            generate("x.org", "bad selector", Algorithm::Ed25519Sha256, 0),
            Err(KeyError::BadSelector(_))
        ));
        let mut k = generate("x.org", "s", Algorithm::Ed25519Sha256, 0).unwrap();
        k.private_key_pem =
            "-----BEGIN PRIVATE KEY-----\n!!not base64!!\n-----END PRIVATE KEY-----\n".into();
        let e = k
            .signing_key()
            .err()
            .expect("damaged key refused")
            .to_string();
        assert!(e.contains("dkim keygen"), "{e}");
        assert!(k.dns_txt().is_err());
    }
}
