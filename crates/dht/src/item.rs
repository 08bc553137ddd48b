//! BEP 44: arbitrary data stored in the DHT, as immutable items (their key is the SHA-1 of
//! the bencoded value) and mutable items (signed with an ed25519 key: the key is the SHA-1 of
//! the public key and the optional salt, and each new version carries a higher `seq`).
//!
//! [`Item`] is one item as it travels in `get` responses and `put` queries; [`ItemStore`] keeps
//! the items others put to us, with hard bounds, since all of it is filled by strangers:
//! values of at most [`MAX_VALUE`] bytes, at most so many items in all and per source IP, each
//! forgotten after [`ItemLimits::ttl`] unless put again.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha1::{Digest, Sha1};

use crate::id::NodeId;

/// Largest bencoded value an item may have (BEP 44: 1000 bytes).
pub const MAX_VALUE: usize = 1000;
/// Longest salt (BEP 44: 64 bytes).
pub const MAX_SALT: usize = 64;

/// BEP 44 error codes.
pub mod code {
    /// `v` is larger than 1000 bytes.
    pub const VALUE_TOO_BIG: i64 = 205;
    pub const INVALID_SIGNATURE: i64 = 206;
    pub const SALT_TOO_BIG: i64 = 207;
    /// The `cas` did not match the stored `seq`.
    pub const CAS_MISMATCH: i64 = 301;
    /// The `seq` is lower than the stored one.
    pub const SEQ_TOO_LOW: i64 = 302;
}

/// A BEP 44 item. `value` is the bencoded value exactly as signed and hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Immutable {
        value: Vec<u8>,
    },
    Mutable {
        key: [u8; 32],
        salt: Vec<u8>,
        seq: i64,
        value: Vec<u8>,
        sig: [u8; 64],
    },
}

/// Why an item is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error("value larger than {MAX_VALUE} bytes")]
    ValueTooBig,
    #[error("salt longer than {MAX_SALT} bytes")]
    SaltTooBig,
    #[error("value is not one bencoded value")]
    NotBencode,
    #[error("invalid signature")]
    InvalidSignature,
    #[error("cas does not match the stored seq")]
    CasMismatch,
    #[error("seq lower than the stored one")]
    SeqTooLow,
    #[error("storage full")]
    Full,
}

impl ItemError {
    /// The KRPC error code a storing node answers with.
    pub fn code(self) -> i64 {
        match self {
            ItemError::ValueTooBig => code::VALUE_TOO_BIG,
            ItemError::SaltTooBig => code::SALT_TOO_BIG,
            ItemError::InvalidSignature => code::INVALID_SIGNATURE,
            ItemError::CasMismatch => code::CAS_MISMATCH,
            ItemError::SeqTooLow => code::SEQ_TOO_LOW,
            ItemError::NotBencode => crate::krpc::code::PROTOCOL,
            ItemError::Full => crate::krpc::code::SERVER,
        }
    }
}

/// The bytes a mutable item's signature covers: `4:salt{len}:{salt}3:seqi{seq}e1:v{value}`,
/// the salt part only when there is a salt (BEP 44).
pub fn signed_bytes(salt: &[u8], seq: i64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(salt.len() + value.len() + 40);
    if !salt.is_empty() {
        out.extend_from_slice(format!("4:salt{}:", salt.len()).as_bytes());
        out.extend_from_slice(salt);
    }
    out.extend_from_slice(format!("3:seqi{seq}e1:v").as_bytes());
    out.extend_from_slice(value);
    out
}

/// Where a mutable item lives: SHA-1 of the public key followed by the salt.
pub fn mutable_target(key: &[u8; 32], salt: &[u8]) -> NodeId {
    let mut h = Sha1::new();
    h.update(key);
    h.update(salt);
    NodeId(h.finalize().into())
}

/// Where an immutable item lives: SHA-1 of its bencoded value.
pub fn immutable_target(value: &[u8]) -> NodeId {
    NodeId(Sha1::digest(value).into())
}

/// Whether `value` is exactly one bencoded value (of at most [`MAX_VALUE`] bytes).
fn is_one_value(value: &[u8]) -> bool {
    let limits = bencode::Limits {
        max_input: MAX_VALUE,
        max_depth: 16,
        max_string: MAX_VALUE,
        max_items: MAX_VALUE,
    };
    bencode::decode_with(value, &limits).is_ok()
}

impl Item {
    /// An immutable item holding `value` (already bencoded).
    pub fn immutable(value: Vec<u8>) -> Result<Item, ItemError> {
        let item = Item::Immutable { value };
        item.check()?;
        Ok(item)
    }

    /// A mutable item signed with `signing_key` (the 32-byte ed25519 secret seed).
    pub fn sign(
        signing_key: &[u8; 32],
        salt: Vec<u8>,
        seq: i64,
        value: Vec<u8>,
    ) -> Result<Item, ItemError> {
        let sk = SigningKey::from_bytes(signing_key);
        let sig = sk.sign(&signed_bytes(&salt, seq, &value)).to_bytes();
        let item = Item::Mutable {
            key: sk.verifying_key().to_bytes(),
            salt,
            seq,
            value,
            sig,
        };
        item.check()?;
        Ok(item)
    }

    pub fn target(&self) -> NodeId {
        match self {
            Item::Immutable { value } => immutable_target(value),
            Item::Mutable { key, salt, .. } => mutable_target(key, salt),
        }
    }

    pub fn value(&self) -> &[u8] {
        match self {
            Item::Immutable { value } | Item::Mutable { value, .. } => value,
        }
    }

    pub fn seq(&self) -> Option<i64> {
        match self {
            Item::Immutable { .. } => None,
            Item::Mutable { seq, .. } => Some(*seq),
        }
    }

    /// Sizes, bencoding and (for a mutable item) the signature.
    pub fn check(&self) -> Result<(), ItemError> {
        if self.value().len() > MAX_VALUE {
            return Err(ItemError::ValueTooBig);
        }
        if !is_one_value(self.value()) {
            return Err(ItemError::NotBencode);
        }
        if let Item::Mutable {
            key,
            salt,
            seq,
            value,
            sig,
        } = self
        {
            if salt.len() > MAX_SALT {
                return Err(ItemError::SaltTooBig);
            }
            let vk = VerifyingKey::from_bytes(key).map_err(|_| ItemError::InvalidSignature)?;
            vk.verify_strict(
                &signed_bytes(salt, *seq, value),
                &Signature::from_bytes(sig),
            )
            .map_err(|_| ItemError::InvalidSignature)?;
        }
        Ok(())
    }
}

/// The ed25519 public key of a 32-byte secret seed.
pub fn public_key(signing_key: &[u8; 32]) -> [u8; 32] {
    SigningKey::from_bytes(signing_key)
        .verifying_key()
        .to_bytes()
}

/// Bounds of the item store.
#[derive(Debug, Clone, Copy)]
pub struct ItemLimits {
    /// An item is forgotten after this long unless put again (BEP 44: 2 hours).
    pub ttl: Duration,
    /// Most items kept in all.
    pub items: usize,
    /// Most items whose last put came from one IP.
    pub items_per_ip: usize,
}

impl Default for ItemLimits {
    fn default() -> Self {
        ItemLimits {
            ttl: Duration::from_secs(2 * 3600),
            items: 2000,
            items_per_ip: 20,
        }
    }
}

#[derive(Debug)]
struct Stored {
    item: Item,
    from: IpAddr,
    expires: Instant,
}

/// Items put to us by others; each one was verified before it was stored.
#[derive(Debug, Default)]
pub struct ItemStore {
    limits: ItemLimits,
    items: HashMap<NodeId, Stored>,
    per_ip: HashMap<IpAddr, usize>,
}

impl ItemStore {
    pub fn new(limits: ItemLimits) -> ItemStore {
        ItemStore {
            limits,
            items: HashMap::new(),
            per_ip: HashMap::new(),
        }
    }

    /// The item stored under `target`, if any and not expired.
    pub fn get(&self, target: &NodeId, now: Instant) -> Option<&Item> {
        self.items
            .get(target)
            .filter(|s| s.expires > now)
            .map(|s| &s.item)
    }

    /// Store `item` put by `from`: verified, then checked against what is stored (`seq`
    /// must not go down; `cas`, when given, must equal the stored `seq`) and the bounds.
    pub fn put(
        &mut self,
        item: Item,
        cas: Option<i64>,
        from: IpAddr,
        now: Instant,
    ) -> Result<(), ItemError> {
        item.check()?;
        let target = item.target();
        if let Some(old) = self.items.get(&target).filter(|s| s.expires > now) {
            if let (Some(new_seq), Some(old_seq)) = (item.seq(), old.item.seq()) {
                if cas.is_some_and(|c| c != old_seq) {
                    return Err(ItemError::CasMismatch);
                }
                if new_seq < old_seq || (new_seq == old_seq && item.value() != old.item.value()) {
                    return Err(ItemError::SeqTooLow);
                }
            }
        } else {
            if self.items.len() >= self.limits.items {
                self.expire(now);
            }
            if self.items.len() >= self.limits.items {
                return Err(ItemError::Full);
            }
        }
        // Count the item against the IP of its latest put.
        let old_from = self.items.get(&target).map(|s| s.from);
        if old_from != Some(from)
            && self.per_ip.get(&from).copied().unwrap_or(0) >= self.limits.items_per_ip
        {
            return Err(ItemError::Full);
        }
        if let Some(old) = old_from {
            self.uncount(old);
        }
        *self.per_ip.entry(from).or_default() += 1;
        self.items.insert(
            target,
            Stored {
                item,
                from,
                expires: now + self.limits.ttl,
            },
        );
        Ok(())
    }

    fn uncount(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    pub fn expire(&mut self, now: Instant) {
        let gone: Vec<NodeId> = self
            .items
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in gone {
            if let Some(s) = self.items.remove(&t) {
                self.uncount(s.from);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const PUB: &str = "77ff84905a91936367c01360803104f92432fcd904a43511876df5cdf3e7e548";

    fn vector(salt: &[u8], sig: &str) -> Item {
        Item::Mutable {
            key: hex(PUB).try_into().unwrap(),
            salt: salt.to_vec(),
            seq: 1,
            value: b"12:Hello World!".to_vec(),
            sig: hex(sig).try_into().unwrap(),
        }
    }

    fn test1() -> Item {
        vector(
            b"",
            "305ac8aeb6c9c151fa120f120ea2cfb923564e11552d06a5d856091e5e853cff1260d3f39e4999684aa92eb73ffd136e6f4f3ecbfda0ce53a1608ecd7ae21f01",
        )
    }

    fn test2() -> Item {
        vector(
            b"foobar",
            "6834284b6b24c3204eb2fea824d82f88883a3d95e8b4a21b8c0ded553d17d17ddf9a8a7104b1258f30bed3787e6cb896fca78c58f8e03b5f18f14951a87d9a08",
        )
    }

    #[test]
    fn bep44_test_vectors() {
        assert_eq!(
            signed_bytes(b"", 1, b"12:Hello World!"),
            b"3:seqi1e1:v12:Hello World!"
        );
        assert_eq!(
            signed_bytes(b"foobar", 1, b"12:Hello World!"),
            b"4:salt6:foobar3:seqi1e1:v12:Hello World!"
        );
        // Test 1 (mutable) and test 2 (mutable with salt): the BEP's signatures verify over
        // our signed bytes, and the targets are the BEP's.
        let t1 = test1();
        assert_eq!(t1.check(), Ok(()));
        assert_eq!(
            t1.target().0.to_vec(),
            hex("4a533d47ec9c7d95b1ad75f576cffc641853b750")
        );
        let t2 = test2();
        assert_eq!(t2.check(), Ok(()));
        assert_eq!(
            t2.target().0.to_vec(),
            hex("411eba73b6f087ca51a3795d9c8c938d365e32c1")
        );
        // Test 3 (immutable).
        let t3 = Item::immutable(b"12:Hello World!".to_vec()).unwrap();
        assert_eq!(
            t3.target().0.to_vec(),
            hex("e5f96f6f38320f0f33959cb4d3d656452117aadb")
        );
        // One signature does not serve another salt, seq or value.
        let Item::Mutable { sig: sig1, .. } = t1 else {
            unreachable!()
        };
        let mut wrong = t2.clone();
        if let Item::Mutable { sig, .. } = &mut wrong {
            *sig = sig1;
        }
        assert_eq!(wrong.check(), Err(ItemError::InvalidSignature));
        let mut wrong = test1();
        if let Item::Mutable { seq, .. } = &mut wrong {
            *seq = 2;
        }
        assert_eq!(wrong.check(), Err(ItemError::InvalidSignature));
    }

    #[test]
    fn sign_and_verify() {
        let sk = [7u8; 32];
        let item = Item::sign(&sk, b"s".to_vec(), 5, b"3:abc".to_vec()).unwrap();
        assert_eq!(item.check(), Ok(()));
        let Item::Mutable { key, .. } = &item else {
            unreachable!()
        };
        assert_eq!(*key, public_key(&sk));
        assert_eq!(
            Item::sign(&sk, vec![0; 65], 1, b"1:a".to_vec()),
            Err(ItemError::SaltTooBig)
        );
        let big = format!("1000:{}", "x".repeat(1000)).into_bytes();
        assert_eq!(Item::immutable(big), Err(ItemError::ValueTooBig));
        assert_eq!(
            Item::immutable(b"3:abcextra".to_vec()),
            Err(ItemError::NotBencode)
        );
    }

    #[test]
    fn store_rules() {
        let now = Instant::now();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let sk = [9u8; 32];
        let mut store = ItemStore::new(ItemLimits {
            items: 10,
            items_per_ip: 3,
            ..Default::default()
        });
        let v2 = Item::sign(&sk, vec![], 2, b"1:b".to_vec()).unwrap();
        store.put(v2.clone(), None, ip, now).unwrap();
        // Lower seq refused, equal seq with another value refused, same item renewed.
        let v1 = Item::sign(&sk, vec![], 1, b"1:a".to_vec()).unwrap();
        assert_eq!(store.put(v1, None, ip, now), Err(ItemError::SeqTooLow));
        let v2b = Item::sign(&sk, vec![], 2, b"1:c".to_vec()).unwrap();
        assert_eq!(store.put(v2b, None, ip, now), Err(ItemError::SeqTooLow));
        store.put(v2.clone(), None, ip, now).unwrap();
        // cas must match.
        let v3 = Item::sign(&sk, vec![], 3, b"1:d".to_vec()).unwrap();
        assert_eq!(
            store.put(v3.clone(), Some(1), ip, now),
            Err(ItemError::CasMismatch)
        );
        store.put(v3.clone(), Some(2), ip, now).unwrap();
        assert_eq!(store.get(&v3.target(), now), Some(&v3));
        // A forged signature is not stored.
        let mut forged = Item::sign(&[1; 32], vec![], 9, b"1:x".to_vec()).unwrap();
        if let Item::Mutable { value, .. } = &mut forged {
            *value = b"1:y".to_vec();
        }
        assert_eq!(
            store.put(forged.clone(), None, ip, now),
            Err(ItemError::InvalidSignature)
        );
        assert_eq!(store.get(&forged.target(), now), None);
        // Per-IP bound: 3 items from one IP, the 4th refused; another IP still welcome.
        for i in 0..2 {
            store
                .put(
                    Item::immutable(format!("i{i}e").into_bytes()).unwrap(),
                    None,
                    ip,
                    now,
                )
                .unwrap();
        }
        let extra = Item::immutable(b"i99e".to_vec()).unwrap();
        assert_eq!(
            store.put(extra.clone(), None, ip, now),
            Err(ItemError::Full)
        );
        store.put(extra, None, [10, 0, 0, 2].into(), now).unwrap();
        assert_eq!(store.len(), 4);
        // Expiry.
        let later = now + ItemLimits::default().ttl;
        assert_eq!(store.get(&v3.target(), later), None);
        store.expire(later);
        assert!(store.is_empty());
    }
}
