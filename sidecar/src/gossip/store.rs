//! The rumor store: at most one rumor per key, merged by the rumor's own rule, with the
//! per-bucket hashes anti-entropy compares, Habitat's per-kind update counters, expiry of
//! tombstones, and a versioned snapshot format for persistence in the data dir.
//!
//! Invariant: `buckets[b]` is always the XOR of the entry hashes of the keys in bucket `b`, so
//! two stores with the same rumors have the same hashes whatever order they learned them in.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::member::MemberId;
use super::rumor::{Merge, RetirementRumor, Rumor, RumorKey, RumorKind, ServiceGroup};
use super::wire::{self, SYNC_BUCKETS};

const SNAPSHOT_MAGIC: &[u8; 8] = b"HABRUMR1";

/// How much the store keeps of what peers send. On a cleartext ring anyone can gossip, and
/// every rumor is kept until it expires; beyond these, peers' new rumors are refused (and
/// counted) while this member's own are always kept. A ring of 1,000 members with a few
/// service groups holds a few thousand rumors of a few KiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    pub rumors: usize,
    /// Encoded bytes of all rumors together.
    pub bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            rumors: 100_000,
            bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub rumor: Rumor,
    pub key_hash: u64,
    pub content_hash: u64,
    /// When this node stored the current version (ms, node clock).
    pub updated_ms: u64,
    /// Encoded size.
    pub size: usize,
}

/// What `insert` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    New,
    Updated,
    Stale,
    Conflict,
    /// A peer's rumor that would take the store beyond its `StoreLimits`.
    Full,
}

impl Insert {
    pub const fn changed(self) -> bool {
        matches!(self, Insert::New | Insert::Updated)
    }
}

#[derive(Debug)]
pub struct Store {
    entries: HashMap<RumorKey, Entry>,
    /// Rumors expired or forgotten here, by (key hash, content hash), with when: a peer that has
    /// not expired them yet cannot hand them back through anti-entropy.
    expired: HashMap<(u64, u64), u64>,
    by_hash: HashMap<u64, RumorKey>,
    buckets: Vec<u64>,
    update_counters: [u64; RumorKind::ALL.len()],
    conflicts: u64,
    limits: StoreLimits,
    /// Encoded bytes of all entries.
    bytes: usize,
}

pub fn hash64(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

pub fn key_hash(key: &RumorKey) -> u64 {
    hash64(&[b"key", &postcard::to_stdvec(key).unwrap_or_default()])
}

pub fn content_hash(encoded_rumor: &[u8]) -> u64 {
    hash64(&[b"rumor", encoded_rumor])
}

pub const fn bucket_of(key_hash: u64) -> usize {
    (key_hash % SYNC_BUCKETS as u64) as usize
}

const fn entry_hash(key_hash: u64, content_hash: u64) -> u64 {
    key_hash.rotate_left(17) ^ content_hash
}

const fn kind_index(kind: RumorKind) -> usize {
    kind as usize
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        Store::with_limits(StoreLimits::default())
    }

    pub fn with_limits(limits: StoreLimits) -> Store {
        Store {
            entries: HashMap::new(),
            expired: HashMap::new(),
            by_hash: HashMap::new(),
            buckets: vec![0; SYNC_BUCKETS],
            update_counters: [0; RumorKind::ALL.len()],
            conflicts: 0,
            limits,
            bytes: 0,
        }
    }

    /// Encoded bytes of all rumors held.
    pub const fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &RumorKey) -> Option<&Rumor> {
        self.entries.get(key).map(|e| &e.rumor)
    }

    pub fn entry(&self, key: &RumorKey) -> Option<&Entry> {
        self.entries.get(key)
    }

    pub fn key_for_hash(&self, key_hash: u64) -> Option<&RumorKey> {
        self.by_hash.get(&key_hash)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rumor> {
        self.entries.values().map(|e| &e.rumor)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn update_counter(&self, kind: RumorKind) -> u64 {
        self.update_counters[kind_index(kind)]
    }

    /// Equal-version-different-content rumors rejected so far.
    pub const fn conflicts(&self) -> u64 {
        self.conflicts
    }

    /// Offers a peer's rumor; the stored result may differ from the input (an election absorbs
    /// votes). Refused as `Full` beyond the store's limits.
    pub fn insert(&mut self, incoming: Rumor, now_ms: u64) -> Insert {
        self.insert_within(incoming, now_ms, true)
    }

    /// Offers a rumor this member made: kept whatever the limits (our own are few).
    pub fn insert_own(&mut self, incoming: Rumor, now_ms: u64) -> Insert {
        self.insert_within(incoming, now_ms, false)
    }

    fn insert_within(&mut self, incoming: Rumor, now_ms: u64, limited: bool) -> Insert {
        let key = incoming.key();
        if !self.expired.is_empty() {
            let hashes = (key_hash(&key), content_hash(&wire::encode_rumor(&incoming)));
            if self.expired.contains_key(&hashes) {
                return Insert::Stale;
            }
        }
        let (merged, outcome) = match self.entries.get(&key) {
            None => (incoming, Insert::New),
            Some(existing) => match existing.rumor.merge(&incoming) {
                Merge::Replace(merged) => (*merged, Insert::Updated),
                Merge::Stale => return Insert::Stale,
                Merge::Conflict => {
                    self.conflicts += 1;
                    return Insert::Conflict;
                }
            },
        };
        let encoded = wire::encode_rumor(&merged);
        if limited && !self.has_room(&key, encoded.len()) {
            return Insert::Full;
        }
        self.put(key, merged, &encoded, now_ms);
        outcome
    }

    /// Whether `key` at `size` bytes fits within the limits (replacing what it replaces).
    fn has_room(&self, key: &RumorKey, size: usize) -> bool {
        let (count, replaced) = match self.entries.get(key) {
            Some(old) => (self.entries.len(), old.size),
            None => (self.entries.len() + 1, 0),
        };
        count <= self.limits.rumors
            && self.bytes.saturating_sub(replaced) + size <= self.limits.bytes
    }

    fn put(&mut self, key: RumorKey, rumor: Rumor, encoded: &[u8], now_ms: u64) {
        let content = content_hash(encoded);
        let kh = match self.entries.get(&key) {
            Some(old) => {
                let kh = old.key_hash;
                self.buckets[bucket_of(kh)] ^= entry_hash(kh, old.content_hash);
                self.bytes -= old.size;
                kh
            }
            None => key_hash(&key),
        };
        self.bytes += encoded.len();
        self.buckets[bucket_of(kh)] ^= entry_hash(kh, content);
        self.update_counters[kind_index(key.kind())] += 1;
        self.by_hash.insert(kh, key.clone());
        self.entries.insert(
            key,
            Entry {
                rumor,
                key_hash: kh,
                content_hash: content,
                updated_ms: now_ms,
                size: encoded.len(),
            },
        );
    }

    pub fn remove(&mut self, key: &RumorKey) -> Option<Rumor> {
        let entry = self.entries.remove(key)?;
        self.bytes -= entry.size;
        self.buckets[bucket_of(entry.key_hash)] ^= entry_hash(entry.key_hash, entry.content_hash);
        self.by_hash.remove(&entry.key_hash);
        self.update_counters[kind_index(key.kind())] += 1;
        Some(entry.rumor)
    }

    /// Hash of the whole store; equal roots mean (with overwhelming probability) equal stores.
    pub fn root(&self) -> u64 {
        self.buckets
            .iter()
            .enumerate()
            .fold(0u64, |acc, (i, h)| acc ^ h.rotate_left(i as u32))
    }

    pub fn bucket_hashes(&self) -> &[u64] {
        &self.buckets
    }

    /// (key hash, content hash) of every rumor in the given buckets.
    pub fn digest(&self, buckets: &[u8]) -> Vec<(u64, u64)> {
        let mut wanted = [false; SYNC_BUCKETS];
        for &b in buckets {
            if let Some(slot) = wanted.get_mut(usize::from(b)) {
                *slot = true;
            }
        }
        self.entries
            .values()
            .filter(|e| wanted[bucket_of(e.key_hash)])
            .map(|e| (e.key_hash, e.content_hash))
            .collect()
    }

    /// Rumors in `buckets` that the peer, whose digest is `theirs`, does not hold as we do,
    /// and the key hashes of the peer's entries we lack or hold differently.
    pub fn diff(&self, buckets: &[u8], theirs: &[(u64, u64)]) -> (Vec<&Rumor>, Vec<u64>) {
        let theirs_map: HashMap<u64, u64> = theirs.iter().copied().collect();
        let mut wanted = [false; SYNC_BUCKETS];
        for &b in buckets {
            if let Some(slot) = wanted.get_mut(usize::from(b)) {
                *slot = true;
            }
        }
        let ours: Vec<&Rumor> = self
            .entries
            .values()
            .filter(|e| wanted[bucket_of(e.key_hash)])
            .filter(|e| theirs_map.get(&e.key_hash) != Some(&e.content_hash))
            .map(|e| &e.rumor)
            .collect();
        let want: Vec<u64> = theirs
            .iter()
            .filter(|(kh, ch)| {
                self.by_hash
                    .get(kh)
                    .and_then(|k| self.entries.get(k))
                    .is_none_or(|e| e.content_hash != *ch)
            })
            .map(|(kh, _)| *kh)
            .collect();
        (ours, want)
    }

    /// Removes service tombstones stored longer than `ttl_ms` ago; returns their keys. They are
    /// remembered for another `ttl_ms` so anti-entropy cannot bring them back.
    pub fn expire_tombstones(&mut self, now_ms: u64, ttl_ms: u64) -> Vec<RumorKey> {
        self.expired
            .retain(|_, at| now_ms.saturating_sub(*at) < ttl_ms);
        let expired: Vec<RumorKey> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(&e.rumor, Rumor::Service(s) if s.tombstone))
            .filter(|(_, e)| now_ms.saturating_sub(e.updated_ms) >= ttl_ms)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            self.remove_for_good(key, now_ms);
        }
        expired
    }

    fn remove_for_good(&mut self, key: &RumorKey, now_ms: u64) {
        if let Some(entry) = self.entries.get(key) {
            self.expired
                .insert((entry.key_hash, entry.content_hash), now_ms);
        }
        self.remove(key);
    }

    /// Like `forget_member`, for a member that is gone (expired, replaced): its rumors are also
    /// kept from coming back through anti-entropy.
    pub fn forget_member_for_good(&mut self, member: MemberId, now_ms: u64) -> Vec<RumorKey> {
        let keys = self.keys_of_member(member);
        for key in &keys {
            self.remove_for_good(key, now_ms);
        }
        keys
    }

    /// Keys of the rumors that only describe `member` (its service rumors, and the records of
    /// its retirement, moot once its service rumors are gone).
    fn keys_of_member(&self, member: MemberId) -> Vec<RumorKey> {
        self.entries
            .keys()
            .filter(|k| {
                matches!(k, RumorKey::Service { member: m, .. }
                    | RumorKey::Retirement { member: m, .. }
                    | RumorKey::Update { member: m, .. } if *m == member)
            })
            .cloned()
            .collect()
    }

    /// Removes every rumor that only describes `member` (see `keys_of_member`).
    pub fn forget_member(&mut self, member: MemberId) -> Vec<RumorKey> {
        let keys = self.keys_of_member(member);
        for key in &keys {
            self.remove(key);
        }
        keys
    }

    pub fn departed(&self, member: MemberId) -> bool {
        self.entries.contains_key(&RumorKey::Departure { member })
    }

    /// The group's retirement record of `member`, if any (see `RetirementRumor`).
    pub fn retirement(&self, group: &ServiceGroup, member: MemberId) -> Option<&RetirementRumor> {
        let key = RumorKey::Retirement {
            group: group.clone(),
            member,
        };
        match self.get(&key) {
            Some(Rumor::Retirement(r)) => Some(r),
            _ => None,
        }
    }

    /// Versioned snapshot: magic, then postcard of every rumor.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut rumors: Vec<&Rumor> = self.iter().collect();
        rumors.sort_by_key(|r| r.key());
        let mut out = SNAPSHOT_MAGIC.to_vec();
        out.extend(postcard::to_stdvec(&rumors).unwrap_or_default());
        out
    }

    pub fn from_snapshot(bytes: &[u8], now_ms: u64) -> std::result::Result<Store, String> {
        let body = bytes
            .strip_prefix(SNAPSHOT_MAGIC.as_slice())
            .ok_or_else(|| "expected the header HABRUMR1".to_string())?;
        let rumors: Vec<Rumor> =
            postcard::from_bytes(body).map_err(|e| format!("undecodable rumors: {e}"))?;
        let mut store = Store::new();
        for rumor in rumors {
            store.insert(rumor, now_ms);
        }
        Ok(store)
    }
}

/// Loads the persisted store. A missing file is an empty store; a corrupt one is moved aside
/// (`<file>.corrupt-<ms>`) with a warning so the member still starts and relearns from peers.
pub fn load_or_quarantine(path: &Path, now_ms: u64) -> (Store, Option<PathBuf>) {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Store::new(), None),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the rumor store; starting empty");
            return (Store::new(), None);
        }
    };
    match Store::from_snapshot(&bytes, now_ms) {
        Ok(store) => (store, None),
        Err(problem) => {
            let aside = path.with_extension(format!("corrupt-{now_ms}"));
            tracing::warn!(
                path = %path.display(), moved_to = %aside.display(), %problem,
                "rumor store is corrupt; moved aside, starting empty and relearning from peers"
            );
            let moved = fs::rename(path, &aside).is_ok();
            (Store::new(), moved.then_some(aside))
        }
    }
}

/// Writes store snapshots to `path` off the supervisor loop (a write ends in an fsync, which a
/// busy disk can hold for seconds): one write at a time, and a snapshot handed over while one
/// is being written replaces any older one still waiting.
#[derive(Debug)]
pub struct StoreWriter {
    path: PathBuf,
    latest: tokio::sync::watch::Sender<Option<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Writes one snapshot (atomically, mode 0600) in the blocking pool; a failure is logged.
async fn write_snapshot(path: PathBuf, bytes: Vec<u8>) {
    let written =
        tokio::task::spawn_blocking(move || crate::files::write_atomically(&path, &bytes, 0o600))
            .await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot persist the rumor store"),
        Err(e) => tracing::warn!(error = %e, "rumor store writer"),
    }
}

impl StoreWriter {
    pub fn spawn(path: PathBuf) -> StoreWriter {
        let (latest, mut waiting) = tokio::sync::watch::channel(None::<Vec<u8>>);
        let task_path = path.clone();
        let task = tokio::spawn(async move {
            while waiting.changed().await.is_ok() {
                let Some(bytes) = waiting.borrow_and_update().clone() else {
                    continue;
                };
                write_snapshot(task_path.clone(), bytes).await;
            }
        });
        StoreWriter { path, latest, task }
    }

    /// Hands over a snapshot to write.
    pub fn write(&self, snapshot: Vec<u8>) {
        self.latest.send_replace(Some(snapshot));
    }

    /// Waits for the write under way, if any, then writes `last` (the final snapshot,
    /// whatever the debounce says) and stops; what was still waiting is not written.
    pub async fn finish(self, last: Vec<u8>) {
        let StoreWriter { path, latest, task } = self;
        drop(latest);
        let _ = task.await;
        write_snapshot(path, last).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::gossip::rumor::tests::config;
    use crate::gossip::rumor::{ServiceRumor, SysInfo};
    use proptest::prelude::*;

    fn service(member: u8, incarnation: u64, tombstone: bool) -> Rumor {
        Rumor::Service(ServiceRumor {
            member_id: MemberId([member; 16]),
            service_group: crate::gossip::rumor::tests::group("redis.default"),
            incarnation,
            package: "core/redis/1/2".into(),
            initialized: false,
            sys: SysInfo::default(),
            cfg: vec![],
            tombstone,
        })
    }

    #[tokio::test]
    async fn the_writer_writes_the_latest_snapshot_off_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rumors.dat");
        let writer = StoreWriter::spawn(path.clone());
        for n in 0..50u8 {
            writer.write(vec![n; 1024]);
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while fs::read(&path).ok() != Some(vec![49; 1024]) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the last snapshot never landed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        writer.finish(vec![49; 1024]).await;
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn beyond_its_limits_the_store_refuses_peers_new_rumors_but_keeps_updates_and_its_own() {
        let mut store = Store::with_limits(StoreLimits {
            rumors: 2,
            bytes: 1 << 20,
        });
        assert_eq!(store.insert(service(1, 1, false), 0), Insert::New);
        assert_eq!(store.insert(service(2, 1, false), 0), Insert::New);
        let root = store.root();
        assert_eq!(store.insert(service(3, 1, false), 0), Insert::Full);
        assert_eq!((store.len(), store.root()), (2, root), "changed when full");
        // What is held still moves on, and this member's own rumors are always kept.
        assert_eq!(store.insert(service(1, 2, false), 0), Insert::Updated);
        assert_eq!(store.insert_own(service(4, 1, false), 0), Insert::New);
        assert_eq!(store.len(), 3);

        let one = wire::encode_rumor(&service(1, 1, false)).len();
        let mut store = Store::with_limits(StoreLimits {
            rumors: 100,
            bytes: 2 * one,
        });
        assert_eq!(store.insert(service(1, 1, false), 0), Insert::New);
        assert_eq!(store.insert(service(2, 1, false), 0), Insert::New);
        assert_eq!(store.bytes(), 2 * one);
        assert_eq!(store.insert(service(3, 1, false), 0), Insert::Full);
        store.remove(&service(2, 1, false).key());
        assert_eq!(store.bytes(), one, "bytes not given back on remove");
        assert_eq!(store.insert(service(3, 1, false), 0), Insert::New);
    }

    #[test]
    fn conflicts_are_counted_and_do_not_change_the_store() {
        let mut store = Store::new();
        assert_eq!(store.insert(config(1, b"a"), 0), Insert::New);
        let root = store.root();
        assert_eq!(store.insert(config(1, b"b"), 0), Insert::Conflict);
        assert_eq!(store.conflicts(), 1);
        assert_eq!(store.root(), root);
    }

    #[test]
    fn tombstones_expire_after_their_ttl() {
        let mut store = Store::new();
        store.insert(service(1, 2, true), 1_000);
        store.insert(service(2, 2, false), 1_000);
        assert!(store.expire_tombstones(5_000, 10_000).is_empty());
        assert_eq!(store.expire_tombstones(11_000, 10_000).len(), 1);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn an_expired_tombstone_cannot_come_back_through_anti_entropy() {
        let mut store = Store::new();
        store.insert(service(1, 2, true), 1_000);
        assert_eq!(store.expire_tombstones(20_000, 10_000).len(), 1);
        assert_eq!(store.insert(service(1, 2, true), 20_500), Insert::Stale);
        // A newer version is news, and the memory fades after another ttl.
        assert_eq!(store.insert(service(1, 3, false), 21_000), Insert::New);
        store.expire_tombstones(40_000, 10_000);
        assert!(store.expired.is_empty());
    }

    #[test]
    fn a_forgotten_member_takes_its_retirement_record_along() {
        let mut store = Store::new();
        let group = crate::gossip::rumor::tests::group("redis.default");
        store.insert(service(1, 1, false), 0);
        store.insert(
            Rumor::Retirement(RetirementRumor {
                service_group: group.clone(),
                member_id: MemberId([1; 16]),
                incarnation: 4,
                retired_by: MemberId([2; 16]),
                term: 9,
            }),
            0,
        );
        assert!(store.retirement(&group, MemberId([1; 16])).is_some());
        assert_eq!(store.forget_member_for_good(MemberId([1; 16]), 0).len(), 2);
        assert!(store.is_empty());
    }

    #[test]
    fn a_default_store_is_usable() {
        let mut store = Store::default();
        assert_eq!(store.insert(service(1, 1, false), 0), Insert::New);
    }

    #[test]
    fn diff_sends_what_the_peer_lacks_and_asks_for_what_we_lack() {
        let mut a = Store::new();
        let mut b = Store::new();
        a.insert(service(1, 1, false), 0);
        b.insert(service(2, 1, false), 0);
        let all: Vec<u8> = (0..SYNC_BUCKETS as u8).collect();
        let (send, want) = b.diff(&all, &a.digest(&all));
        assert_eq!(send.len(), 1);
        assert_eq!(want.len(), 1);
        for r in send.into_iter().cloned().collect::<Vec<_>>() {
            a.insert(r, 0);
        }
        let key = a.key_for_hash(want[0]).unwrap().clone();
        b.insert(a.get(&key).unwrap().clone(), 0);
        assert_eq!(a.root(), b.root());
    }

    #[test]
    fn snapshot_round_trips_and_rejects_garbage() {
        let mut store = Store::new();
        store.insert(service(1, 1, false), 0);
        store.insert(config(4, b"x = 1"), 0);
        let back = Store::from_snapshot(&store.snapshot(), 0).unwrap();
        assert_eq!(back.root(), store.root());
        assert!(Store::from_snapshot(b"nonsense", 0)
            .unwrap_err()
            .contains("HABRUMR1"));
    }

    #[test]
    fn a_corrupt_store_file_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rumors.dat");
        std::fs::write(&path, b"HABRUMR1\xff\xff\xff").unwrap();
        let (store, aside) = load_or_quarantine(&path, 42);
        assert!(store.is_empty());
        let aside = aside.unwrap();
        assert!(aside.exists() && !path.exists());
    }

    #[test]
    fn atomic_write_replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/rumors.dat");
        crate::files::write_atomically(&path, b"one", 0o600).unwrap();
        crate::files::write_atomically(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
    }

    proptest! {
        #[test]
        fn root_is_independent_of_arrival_order(incs in proptest::collection::vec((0u8..6, 0u64..4), 1..20)) {
            let rumors: Vec<Rumor> = incs.iter().map(|(m, i)| service(*m, *i, false)).collect();
            let mut forward = Store::new();
            for r in &rumors { forward.insert(r.clone(), 0); }
            let mut backward = Store::new();
            for r in rumors.iter().rev() { backward.insert(r.clone(), 0); }
            prop_assert_eq!(forward.root(), backward.root());
        }
    }
}
