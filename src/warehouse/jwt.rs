//! The signed tokens two warehouses take in place of a password: a Google
//! service account's assertion (exchanged for an access token) and a
//! Snowflake key pair's JWT. The keys are the operator's, read from its
//! environment; nothing here is ever written to a cassette.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// An RSA private key in PEM (PKCS#8 or PKCS#1).
pub struct RsaKey {
    encoding: EncodingKey,
    der: Vec<u8>,
    pkcs8: bool,
}

impl RsaKey {
    /// Read `pem_text`; the error says what kind of key would do.
    pub fn from_pem(pem_text: &str) -> Result<RsaKey, String> {
        let block =
            pem::parse(pem_text.trim()).map_err(|e| format!("not a PEM private key ({e})"))?;
        let pkcs8 = match block.tag() {
            "PRIVATE KEY" => true,
            "RSA PRIVATE KEY" => false,
            "ENCRYPTED PRIVATE KEY" => {
                return Err(
                    "the key is encrypted: give sandstack an unencrypted PKCS#8 key \
                     (openssl pkcs8 -topk8 -nocrypt)"
                        .into(),
                )
            }
            other => return Err(format!("a PEM `{other}` block is not an RSA private key")),
        };
        let encoding = EncodingKey::from_rsa_pem(pem_text.trim().as_bytes())
            .map_err(|e| format!("not an RSA private key ({e})"))?;
        Ok(RsaKey {
            encoding,
            der: block.contents().to_vec(),
            pkcs8,
        })
    }

    /// A JWT of `claims`, RS256, with `kid` in its header when given.
    pub fn sign<C: Serialize>(&self, claims: &C, kid: Option<&str>) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| format!("cannot sign with the key ({e})"))
    }

    /// `SHA256:` and the base64 of the SHA-256 of the public key's
    /// SubjectPublicKeyInfo DER: how Snowflake names a user's key
    /// (`DESC USER` shows it as RSA_PUBLIC_KEY_FP).
    pub fn public_key_fingerprint(&self) -> Result<String, String> {
        let pair = if self.pkcs8 {
            ring::signature::RsaKeyPair::from_pkcs8(&self.der)
        } else {
            ring::signature::RsaKeyPair::from_der(&self.der)
        }
        .map_err(|e| format!("not an RSA private key ({e})"))?;
        let rsa_public_key = ring::signature::KeyPair::public_key(&pair)
            .as_ref()
            .to_vec();
        use simple_asn1::{oid, ASN1Block};
        let spki = ASN1Block::Sequence(
            0,
            vec![
                ASN1Block::Sequence(
                    0,
                    vec![
                        ASN1Block::ObjectIdentifier(0, oid!(1, 2, 840, 113549, 1, 1, 1)),
                        ASN1Block::Null(0),
                    ],
                ),
                ASN1Block::BitString(0, rsa_public_key.len() * 8, rsa_public_key),
            ],
        );
        let der = simple_asn1::to_der(&spki).map_err(|e| format!("cannot encode the key ({e})"))?;
        use base64::Engine as _;
        Ok(format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(der))
        ))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 2048-bit key made for these tests with `openssl genpkey -algorithm
    /// RSA`; its public key's fingerprint was taken with `openssl pkey
    /// -pubout -outform DER | openssl dgst -sha256 -binary | base64`.
    pub(crate) const TEST_KEY: &str = include_str!("../../tests/fixtures/test_rsa_key.pem");
    pub(crate) const TEST_KEY_FINGERPRINT: &str =
        include_str!("../../tests/fixtures/test_rsa_key.fingerprint");

    #[test]
    fn the_fingerprint_is_openssls() {
        let key = RsaKey::from_pem(TEST_KEY).expect("key");
        assert_eq!(
            key.public_key_fingerprint().expect("fp"),
            format!("SHA256:{}", TEST_KEY_FINGERPRINT.trim())
        );
    }

    #[test]
    fn a_signed_token_verifies_with_the_public_key() {
        let key = RsaKey::from_pem(TEST_KEY).expect("key");
        #[derive(Serialize, serde::Deserialize)]
        struct C {
            sub: String,
            exp: u64,
        }
        let token = key
            .sign(
                &C {
                    sub: "me".into(),
                    exp: 4_000_000_000,
                },
                Some("k1"),
            )
            .expect("sign");
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some("k1"));
        let public = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/test_rsa_key.pub.pem"
        ))
        .expect("public key");
        let decoding = jsonwebtoken::DecodingKey::from_rsa_pem(&public).expect("decoding key");
        let read = jsonwebtoken::decode::<C>(
            &token,
            &decoding,
            &jsonwebtoken::Validation::new(Algorithm::RS256),
        )
        .expect("verifies");
        assert_eq!(read.claims.sub, "me");
    }

    #[test]
    fn keys_that_cannot_sign_are_refused_saying_why() {
        let e = RsaKey::from_pem(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .err()
        .expect("refused");
        assert!(e.contains("encrypted"), "{e}");
        let e = RsaKey::from_pem("hello").err().expect("refused");
        assert!(e.contains("not a PEM"), "{e}");
    }
}
