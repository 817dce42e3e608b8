//! Verified tokens remembered per worker, so an agent that sends the same token on every request pays for
//! its signature once, not on every call (RS256 costs ~195 µs natively, more in V8; a hit ~1 µs). A hit hands
//! out the same `Rc` the first verification made: no claims are copied per request.
//!
//! What makes this safe:
//! - The key is the SHA-256 of the whole token: a hit is the same bytes that verified, signature included.
//! - An entry is used only while `now < exp`. After that the token goes through full verification again,
//!   which applies the provider's clock skew exactly as an uncached request would.
//! - Only successes are cached. A refused token is verified (and refused) again every time.
//! - The cache belongs to one loaded config: a new config (rotated keys, another audience) starts empty.
//! - It is bounded: at most `capacity` tokens; expired entries go first, then the oldest.

use super::{TokenError, TokenIdentity, Verifier};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// Tokens a worker remembers by default: agents number in the hundreds per gateway, not millions.
pub const DEFAULT_CAPACITY: usize = 1024;

pub struct TokenCache {
    capacity: usize,
    entries: HashMap<[u8; 32], Rc<TokenIdentity>>,
    /// Insertion order, for evicting the oldest when no entry has expired.
    order: VecDeque<[u8; 32]>,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache { capacity, entries: HashMap::new(), order: VecDeque::new() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity of `token` at unix time `now`: from the cache while it has not expired, otherwise from
    /// `verifier` (and remembered when it verifies).
    pub fn verify(&mut self, verifier: &Verifier, token: &str, now: u64) -> Result<Rc<TokenIdentity>, TokenError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.entries.get(&key) {
            if now < hit.expires_at {
                return Ok(Rc::clone(hit));
            }
            self.entries.remove(&key);
        }
        let identity = Rc::new(verifier.verify(token, now)?);
        if self.capacity > 0 && now < identity.expires_at {
            self.make_room(now);
            if self.entries.insert(key, Rc::clone(&identity)).is_none() {
                self.order.push_back(key);
            }
        }
        Ok(identity)
    }

    fn make_room(&mut self, now: u64) {
        if self.entries.len() < self.capacity {
            return;
        }
        self.entries.retain(|_, id| now < id.expires_at);
        let entries = &self.entries;
        self.order.retain(|k| entries.contains_key(k));
        while self.entries.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else { break };
            self.entries.remove(&oldest);
        }
    }
}
