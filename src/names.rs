//! Names of user and group ids (`user.name`, `group.name`) from the host's user database, for the
//! live agent's documents. Replay never asks the host: a log's names come from its own ENRICHED
//! records, or are absent.
//!
//! Lookups go through the C library (`getpwuid_r`/`getgrgid_r`, so NSS: files, sssd, LDAP) and can
//! be slow, so every answer (a missing name too) is cached for a while, the cache is bounded, and
//! the lookups of ids not in the cache are limited per second of audit time: a user who makes
//! processes run under many ids (a subordinate uid range) costs the agent a bounded amount of
//! work, and the ids over the limit get no name until the next second.

use std::collections::HashMap;
use std::sync::Arc;

use nix::unistd::{Gid, Group, Uid, User};

/// Ids remembered per kind (users, groups); a full cache starts over.
pub const MAX_CACHED: usize = 4096;

/// Lookups of ids not in the cache, per second of audit time and kind.
pub const LOOKUPS_PER_SECOND: u32 = 64;

/// How long a name is trusted before it is looked up again (accounts change rarely).
pub const NAME_TTL_MS: u64 = 10 * 60 * 1000;

/// How long "no such id" is trusted (an account may be about to be created).
pub const MISSING_TTL_MS: u64 = 60 * 1000;

/// Where names come from: the host's database, or (tests) a fixed function.
pub type Lookup = Box<dyn Fn(u32) -> Option<String> + Send>;

/// One kind of id (users or groups): the cache and the lookup budget.
struct Cache {
    lookup: Lookup,
    entries: HashMap<u32, (Option<Arc<str>>, u64)>,
    second: u64,
    left: u32,
}

impl Cache {
    fn new(lookup: Lookup) -> Self {
        Cache {
            lookup,
            entries: HashMap::new(),
            second: 0,
            left: LOOKUPS_PER_SECOND,
        }
    }

    /// The name of `id` at audit time `now_ms` (ms since the epoch).
    fn name(&mut self, id: u32, now_ms: u64) -> Option<Arc<str>> {
        if let Some((name, expires)) = self.entries.get(&id) {
            if *expires > now_ms {
                return name.clone();
            }
        }
        let second = now_ms / 1000;
        if second != self.second {
            self.second = second;
            self.left = LOOKUPS_PER_SECOND;
        }
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let name: Option<Arc<str>> = (self.lookup)(id).map(Arc::from);
        let ttl = if name.is_some() {
            NAME_TTL_MS
        } else {
            MISSING_TTL_MS
        };
        if self.entries.len() >= MAX_CACHED {
            self.entries.clear();
        }
        self.entries
            .insert(id, (name.clone(), now_ms.saturating_add(ttl)));
        name
    }
}

/// The user and group name caches of one agent.
pub struct Names {
    users: Cache,
    groups: Cache,
}

impl Default for Names {
    fn default() -> Self {
        Names::host()
    }
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names")
            .field("users", &self.users.entries.len())
            .field("groups", &self.groups.entries.len())
            .finish()
    }
}

impl Names {
    /// Names from this host's user database.
    pub fn host() -> Self {
        Names::with(
            Box::new(|uid| {
                let user = User::from_uid(Uid::from_raw(uid)).ok()??;
                Some(user.name)
            }),
            Box::new(|gid| {
                let group = Group::from_gid(Gid::from_raw(gid)).ok()??;
                Some(group.name)
            }),
        )
    }

    /// Names from the given lookups (tests).
    pub fn with(users: Lookup, groups: Lookup) -> Self {
        Names {
            users: Cache::new(users),
            groups: Cache::new(groups),
        }
    }

    /// The name of user `uid`, at audit time `now_ms`.
    pub fn user(&mut self, uid: u32, now_ms: u64) -> Option<Arc<str>> {
        self.users.name(uid, now_ms)
    }

    /// The name of group `gid`, at audit time `now_ms`.
    pub fn group(&mut self, gid: u32, now_ms: u64) -> Option<Arc<str>> {
        self.groups.name(gid, now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn names_are_cached_and_missing_ones_too() {
        static CALLS: AtomicU32 = AtomicU32::new(0);
        let lookup = |id: u32| {
            CALLS.fetch_add(1, Ordering::SeqCst);
            (id < 10).then(|| format!("u{id}"))
        };
        let mut names = Names::with(Box::new(lookup), Box::new(|_| None));
        assert_eq!(names.user(1, 1_000).as_deref(), Some("u1"));
        assert_eq!(names.user(1, 2_000).as_deref(), Some("u1"));
        assert_eq!(names.user(99, 2_000), None);
        assert_eq!(names.user(99, 3_000), None);
        assert_eq!(CALLS.load(Ordering::SeqCst), 2, "one lookup per id");
        // Expired: asked again.
        assert_eq!(names.user(99, 3_000 + MISSING_TTL_MS), None);
        assert_eq!(names.user(1, 2_000 + NAME_TTL_MS).as_deref(), Some("u1"));
        assert_eq!(CALLS.load(Ordering::SeqCst), 4);
        assert_eq!(names.group(1, 0), None);
    }

    #[test]
    fn a_flood_of_ids_is_bounded_in_lookups_and_memory() {
        let mut names = Names::with(Box::new(|id| Some(id.to_string())), Box::new(|_| None));
        let mut named = 0;
        for id in 0..100_000u32 {
            // 1,000 ids per second of audit time.
            if names.user(id, u64::from(id)).is_some() {
                named += 1;
            }
            assert!(names.users.entries.len() <= MAX_CACHED);
        }
        assert_eq!(named, 100 * LOOKUPS_PER_SECOND);
        // A known id is still answered from the cache when the budget is spent.
        assert_eq!(names.user(99_000, 99_999).as_deref(), Some("99000"));
    }

    #[test]
    fn this_hosts_root_is_named() {
        let mut names = Names::host();
        // Every Linux host names uid 0 (usually "root"); an unknown id has no name.
        assert!(names.user(0, 0).is_some());
        assert!(names.group(0, 0).is_some());
        assert_eq!(names.user(3_999_999_999, 0), None);
    }
}
