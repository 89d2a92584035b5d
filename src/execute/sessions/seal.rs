//! Sealing a session's state: AES-256-GCM under the deployment's key, with the session's id
//! and its caller's name as associated data and its expiry inside. Whoever holds the store
//! (a bucket, a disk) can neither read a state nor forge one, nor move one to another caller or
//! session, nor make an expired one young: each fails authentication, and a state that fails is
//! refused before anything unpickles it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};

/// What binds a state to this service's sessions (a version, should the layout change).
const CONTEXT: &[u8] = b"python-executor session state v1\0";
const KEY_BYTES: usize = 32;
/// The shortest `SESSION_KEY` taken: 32 characters, so even a key of letters and digits (what
/// secret stores generate) carries well over 128 bits.
const MIN_SECRET_CHARS: usize = 32;

/// The deployment's sealing key.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

/// A sealed state that does not open: tampered with, another caller's or session's, or sealed
/// under another key.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejected;

/// An opened state, with when it expires.
#[derive(Debug)]
pub struct Opened {
    pub expires: SystemTime,
    pub state: Vec<u8>,
}

impl Sealer {
    /// The key derived from the deployment's secret (32 characters or more, any text: a
    /// secret store's generated string serves as it is), or a random one for this process
    /// alone.
    pub fn new(secret: Option<&str>) -> Result<Self, String> {
        let unbound = match secret.map(str::trim) {
            Some(secret) if secret.chars().count() < MIN_SECRET_CHARS => {
                return Err(format!(
                    "SESSION_KEY must be at least {MIN_SECRET_CHARS} characters"
                ));
            }
            Some(secret) => derive(secret.as_bytes())?,
            None => UnboundKey::new(&AES_256_GCM, &random(KEY_BYTES)?)
                .map_err(|_| "a bad key".to_owned())?,
        };
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// `state`, expiring at `expires`, sealed for `caller`'s session `id`.
    pub fn seal(&self, caller: &str, id: &str, expires: SystemTime, state: &[u8]) -> Vec<u8> {
        let nonce_bytes = random(NONCE_LEN).unwrap_or_else(|_| vec![0; NONCE_LEN]);
        let nonce = Nonce::try_assume_unique_for_key(&nonce_bytes).expect("NONCE_LEN bytes");
        let since_epoch = expires.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut sealed = (since_epoch.as_millis() as u64).to_be_bytes().to_vec();
        sealed.extend_from_slice(state);
        // Sealing in memory cannot fail for a state under GCM's size bound (64 GiB).
        let _ = self
            .key
            .seal_in_place_append_tag(nonce, aad(caller, id), &mut sealed);
        [nonce_bytes, sealed].concat()
    }

    /// The state sealed for `caller`'s session `id`, if it is one.
    pub fn open(&self, caller: &str, id: &str, sealed: &[u8]) -> Result<Opened, Rejected> {
        if sealed.len() < NONCE_LEN {
            return Err(Rejected);
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Rejected)?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, aad(caller, id), &mut body)
            .map_err(|_| Rejected)?;
        if plain.len() < 8 {
            return Err(Rejected);
        }
        let (expires, state) = plain.split_at(8);
        let expires_ms = u64::from_be_bytes(expires.try_into().map_err(|_| Rejected)?);
        Ok(Opened {
            expires: UNIX_EPOCH + Duration::from_millis(expires_ms),
            state: state.to_vec(),
        })
    }
}

/// AES-256-GCM's key from the secret, by HKDF-SHA256 bound to this use.
fn derive(secret: &[u8]) -> Result<UnboundKey, String> {
    let prk = Salt::new(HKDF_SHA256, CONTEXT).extract(secret);
    let okm = prk
        .expand(&[b"seal"], &AES_256_GCM)
        .map_err(|_| "could not derive the session key".to_owned())?;
    Ok(UnboundKey::from(okm))
}

fn aad(caller: &str, id: &str) -> Aad<Vec<u8>> {
    Aad::from([CONTEXT, caller.as_bytes(), b"\0", id.as_bytes()].concat())
}

fn random(length: usize) -> Result<Vec<u8>, String> {
    let mut bytes = vec![0; length];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no randomness".to_owned())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_opens_only_for_its_own_caller_and_session_unaltered() {
        let sealer = Sealer::new(None).expect("a sealer");
        let expires = SystemTime::now() + Duration::from_secs(60);
        let sealed = sealer.seal("alice", "s1", expires, b"state");
        let opened = sealer.open("alice", "s1", &sealed).expect("opens");
        assert_eq!(opened.state, b"state");
        assert_eq!(sealer.open("bob", "s1", &sealed).err(), Some(Rejected));
        assert_eq!(sealer.open("alice", "s2", &sealed).err(), Some(Rejected));
        let mut tampered = sealed.clone();
        let last = tampered.len() - 20;
        tampered[last] ^= 1;
        assert_eq!(sealer.open("alice", "s1", &tampered).err(), Some(Rejected));
        let other = Sealer::new(None).expect("another sealer");
        assert_eq!(other.open("alice", "s1", &sealed).err(), Some(Rejected));
    }

    #[test]
    fn one_secret_gives_one_key_and_a_short_one_is_refused() {
        let secret = "x".repeat(MIN_SECRET_CHARS);
        let expires = SystemTime::now() + Duration::from_secs(60);
        let sealed = Sealer::new(Some(&secret))
            .expect("a sealer")
            .seal("alice", "s1", expires, b"state");
        let again = Sealer::new(Some(&secret)).expect("the same sealer");
        assert_eq!(
            again.open("alice", "s1", &sealed).expect("opens").state,
            b"state"
        );
        let other = Sealer::new(Some(&"y".repeat(MIN_SECRET_CHARS))).expect("another");
        assert_eq!(other.open("alice", "s1", &sealed).err(), Some(Rejected));
        let short = "x".repeat(MIN_SECRET_CHARS - 1);
        assert!(Sealer::new(Some(&short)).is_err());
    }
}
