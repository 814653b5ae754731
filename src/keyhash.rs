//! Hashing for maps keyed by integers (the reassembler's `(node, serial)` keys, the process
//! table's pids): a per-map random seed mixed in, then murmur3's 64-bit finalizer. Every record or
//! exec costs a lookup or two, and SipHash was a tenth of the reassembling stage; the seed keeps
//! colliding keys out of reach of whoever writes the serials of a replayed log or picks pids.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// The [`BuildHasher`] of integer-keyed maps, seeded at random when made.
#[derive(Clone)]
pub struct KeyHasher {
    seed: u64,
}

impl KeyHasher {
    /// A hasher with a fresh random seed.
    pub fn new() -> Self {
        KeyHasher {
            seed: RandomState::new().hash_one(0x5eed_u64),
        }
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl BuildHasher for KeyHasher {
    type Hasher = KeyHash;

    fn build_hasher(&self) -> KeyHash {
        KeyHash { state: self.seed }
    }
}

/// The [`Hasher`] of [`KeyHasher`]; keys are single integers.
pub struct KeyHash {
    state: u64,
}

impl Hasher for KeyHash {
    fn write(&mut self, bytes: &[u8]) {
        // Only integer keys are hashed here; other input is still mixed in, byte by byte.
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        let mut h = self.state ^ n;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        self.state = h ^ (h >> 33);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_and_keys_spread() {
        let (a, b) = (KeyHasher::new(), KeyHasher::new());
        assert_ne!(a.hash_one(7u32), b.hash_one(7u32), "a seed per map");
        assert_ne!(a.hash_one(7u32), a.hash_one(8u32));
        assert_eq!(
            a.hash_one(7u32),
            a.hash_one(7u64),
            "a pid hashes as its u64"
        );
    }
}
