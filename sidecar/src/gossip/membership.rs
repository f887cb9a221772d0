//! The seam over foca (SWIM): the rest of the ring never touches foca types. It owns the foca
//! instance, our compact wire codec for SWIM messages, the timing profile, and Lifeguard's local
//! health multiplier (LHM), which stretches this node's probe interval and timeouts while it is
//! itself slow, so a struggling node stops accusing healthy peers, and Lifeguard's buddy system:
//! a member we suspect hears it from us directly, so it can refute in time.
//!
//! foca is sans-io: calls in, `SwimOutput` out (datagrams to send, timers to arm, events).
//!
//! The codec has two header forms: the full one every member reads, and a compact one (sent
//! only to members whose identity carries `FLAG_V2`) that names the sender by a reference a
//! receiver resolves against identities it decoded, once the receiver showed it holds ours.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut};
use foca::{Foca, Header, Member, Message, Notification, State, Timer};
use rand::rngs::StdRng;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

use super::member::{Health, Identity, MemberId};
use super::wire::{get_u8, get_varint, put_varint, WireError};

/// Timings of the ring. `lan()` is the default profile; every field is configurable.
#[derive(Clone, Debug, PartialEq)]
pub struct SwimConfig {
    pub probe_period: Duration,
    pub probe_timeout: Duration,
    pub indirect_probes: usize,
    /// Suspicion lasts `suspicion_mult * max(1, log10 N) * probe_period`.
    pub suspicion_mult: f64,
    /// Membership updates are sent this many times `* log10(N + 1)`.
    pub retransmit_mult: u32,
    /// How often pending membership updates and rumors are pushed (membership updates to
    /// `indirect_probes` members; the node's tick, see `Node::arm_gossip`).
    pub gossip_interval: Duration,
    /// A confirmed-dead member is forgotten after this long.
    pub dead_member_ttl: Duration,
    /// Largest SWIM message (the envelope and piggybacked rumors come on top).
    pub max_swim_packet: usize,
    /// Highest Lifeguard local health multiplier.
    pub max_lhm: u32,
    /// How often a member asks one random member for a sample of the members it knows (foca's
    /// periodic announce). Membership updates are retransmitted a bounded number of times, so
    /// two members that both missed each other's join would otherwise never meet. Also how
    /// often a member announces to one random member it holds down (see `foca_config`).
    pub announce_interval: Duration,
    /// Advertise envelope version 2 and compact SWIM headers (identity flag `FLAG_V2`), open
    /// them, and use them towards members that advertise them. Off only to stand in for a
    /// member that predates them (it then refuses both, as such a member does).
    pub wire_v2: bool,
}

impl SwimConfig {
    /// LAN profile: probe 1 s, probe timeout 500 ms, 3 indirect helpers, suspicion ~4*log10(N) s.
    pub fn lan() -> SwimConfig {
        SwimConfig {
            probe_period: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_probes: 3,
            suspicion_mult: 3.0,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(200),
            dead_member_ttl: Duration::from_secs(60 * 60),
            max_swim_packet: 1200,
            max_lhm: 8,
            announce_interval: Duration::from_secs(30),
            wire_v2: true,
        }
    }

    fn foca_config(&self, cluster_size: usize) -> foca::Config {
        let n = cluster_size.max(1) as f64;
        let suspicion = self.suspicion_mult * n.log10().max(1.0) * self.probe_period.as_secs_f64();
        let max_tx = (f64::from(self.retransmit_mult) * (n + 1.0).log10())
            .ceil()
            .clamp(1.0, 255.0) as u8;
        foca::Config {
            probe_period: self.probe_period,
            probe_rtt: self.probe_timeout,
            num_indirect_probes: NonZeroUsize::new(self.indirect_probes.max(1))
                .unwrap_or(NonZeroUsize::MIN),
            max_transmissions: NonZeroU8::new(max_tx).unwrap_or(NonZeroU8::MIN),
            suspect_to_down_after: Duration::from_secs_f64(suspicion.max(0.001)),
            remove_down_after: Some(self.dead_member_ttl),
            max_packet_size: NonZeroUsize::new(self.max_swim_packet.max(256))
                .unwrap_or(NonZeroUsize::MIN),
            notify_down_members: true,
            // Discovery: a Feed answer carries as many random members as fit in one packet.
            periodic_announce: Some(foca::PeriodicParams {
                frequency: self.announce_interval,
                num_members: NonZeroUsize::MIN,
            }),
            // Healing: SWIM never probes a member it holds down, so after a partition two
            // members that confirmed each other down (neither a configured peer nor permanent,
            // which the node re-contacts) stayed apart until the dead one was forgotten (1 h).
            // The one announced to answers TurnUndead, the announcer rejoins under a renewed
            // identity that everyone takes as new. Not backed off: a dead member costs each
            // member one ~95-byte datagram per interval until it is forgotten.
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: self.announce_interval,
                num_members: NonZeroUsize::MIN,
            }),
            // Membership updates ride on the node's gossip tick (`Membership::gossip`), which
            // is armed only while something is queued: an idle member has no 5 Hz wake-up.
            periodic_gossip: None,
        }
    }
}

/// A timer foca asked for, opaque to the rest of the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwimTimer(Timer<Identity>);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipEvent {
    Up(Identity),
    Down(Identity),
    /// This node was declared down and rejoined under a renewed identity.
    Rejoined(Identity),
    /// This node lost every peer.
    Isolated,
    /// A probe of this member went unanswered, directly and indirectly: it may be cut off
    /// from us, and whatever we gossiped to it meanwhile may be lost.
    Unreached(Identity),
}

#[derive(Default, Debug)]
pub struct SwimOutput {
    pub sends: Vec<(SocketAddr, Vec<u8>)>,
    pub timers: Vec<(SwimTimer, Duration)>,
    pub events: Vec<MembershipEvent>,
    /// Members whose own datagrams (addressed to us) were handled: proof that they answer.
    pub heard_from: Vec<MemberId>,
}

/// Why foca refused a datagram (counted in metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwimDrop {
    Malformed,
    FromDeparted,
    FromOurselves,
    /// A compact header named its sender by a reference we could not resolve (or whose
    /// identity is not at the datagram's source address); the sender is asked for its full
    /// identity in our next header to it.
    UnresolvedSender,
    Other,
}

impl SwimDrop {
    pub const fn reason(&self) -> &'static str {
        match self {
            SwimDrop::Malformed => "malformed",
            SwimDrop::FromDeparted => "departed_sender",
            SwimDrop::FromOurselves => "from_ourselves",
            SwimDrop::UnresolvedSender => "unresolved_sender",
            SwimDrop::Other => "rejected",
        }
    }
}

#[derive(Default)]
struct CodecState {
    me: Option<Identity>,
    banned: HashSet<MemberId>,
    /// The node's clock, for rate limits (set before every call into foca).
    now_ms: u64,
    /// When a `TurnUndead` was last accepted: at most one a second is, so a forged or stale
    /// identity can't drive this member through a storm of rejoins.
    last_turn_undead_ms: Option<u64>,
    /// The highest incarnation seen for an identity with our id or our address: a rejoin must
    /// go above it, or it would lose the conflict again.
    highest_own_incarnation: u64,
    /// foca's own (SWIM) incarnation, as last written into a header we sent.
    my_swim_incarnation: u16,
    /// We advertise and use envelope v2 and compact headers (`SwimConfig::wire_v2`).
    v2: bool,
    /// The UDP source address of the datagram being decoded (the node sets it before every
    /// `handle_data`): a reference resolves only to an identity at that address.
    source: Option<SocketAddr>,
    /// Bytes of the last header encoded (foca writes the update count right after it).
    last_header_len: usize,
    /// Full identities decoded (headers, PingReq/IndirectPing/... identities, member updates) or
    /// addressed by us, by id prefix: what references resolve against. One per id, the newest
    /// renewal; bounded by `MAX_CACHED`.
    identities: BTreeMap<[u8; REF_PREFIX], Cached>,
    /// Address -> the newest identity known there and whether it carried `FLAG_V2`: whether we
    /// seal v2 and write compact headers to that address. Bounded by `MAX_CACHED`.
    v2_peers: BTreeMap<SocketAddr, PeerWire>,
    /// Members that showed us, in a compact header, the digest of our identity as it is now:
    /// they hold it, so we name ourselves to them by reference. Value: the identity
    /// incarnation they had then (a restart at a higher one starts with an empty cache) and
    /// the digest they showed.
    know_me: BTreeMap<MemberId, (u64, [u8; DIGEST_LEN])>,
    /// Addresses that sent us a reference we could not resolve: our next compact header to
    /// each asks for the full identity (`TAG_SEND_IDENTITY`).
    ask_identity: BTreeSet<SocketAddr>,
    /// Digests of our previous identities (before rejoins), newest last: a header carrying one
    /// is still for us, as a header with our id prefix is in the full form.
    former_digests: Vec<[u8; DIGEST_LEN]>,
    /// `identity_digest(me)`, computed once per identity (see `my_digest`).
    me_digest: Option<[u8; DIGEST_LEN]>,
}

/// An identity in the reference cache, with its digest once we addressed it.
#[derive(Debug, Clone)]
struct Cached {
    identity: Identity,
    digest: Option<[u8; DIGEST_LEN]>,
}

/// What we know of the wire a member at an address reads.
#[derive(Debug, Clone, Copy)]
struct PeerWire {
    id: MemberId,
    incarnation: u64,
    v2: bool,
}

/// Bytes of the destination's member id sent in a SWIM header: enough to tell a misaddressed
/// datagram (2^-64 chance of a false match) at half the cost of the whole id, which is 8% of an
/// idle probe.
const DST_PREFIX: usize = 8;
/// At most one `TurnUndead` a second is acted on.
const TURN_UNDEAD_EVERY_MS: u64 = 1_000;
/// Bytes of the sender's member id in a reference (the same odds as the full form's dst).
const REF_PREFIX: usize = 8;
/// Bytes of the destination identity digest in a compact header.
const DIGEST_LEN: usize = 4;
/// Entries kept in each of the codec's per-member maps: 4 times a ring of 16,384.
const MAX_CACHED: usize = 65_536;
/// Own former identity digests still taken as addressed to us.
const MAX_FORMER_DIGESTS: usize = 4;
const DIGEST_DOMAIN: &[u8] = b"habitat-rs identity digest v2";

/// The digest a compact header carries for its destination: the first 4 bytes of
/// SHA-256(domain || the identity in the full form, without `FLAG_V2`). Any difference in id,
/// incarnation, address, name or flags changes it.
fn identity_digest(identity: &Identity) -> [u8; DIGEST_LEN] {
    let mut encoded = Vec::with_capacity(identity_len(identity));
    put_identity(&mut encoded, identity, 0);
    let digest = Sha256::new()
        .chain_update(DIGEST_DOMAIN)
        .chain_update(&encoded)
        .finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn id_prefix(id: &MemberId) -> [u8; REF_PREFIX] {
    let mut prefix = [0u8; REF_PREFIX];
    prefix.copy_from_slice(&id.0[..REF_PREFIX]);
    prefix
}

/// Inserts into a bounded map: at the bound, a new key first evicts the smallest one (any
/// entry will do; the order is fixed so a simulation replays from its seed).
fn bounded_insert<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, value: V) {
    if map.len() >= MAX_CACHED && !map.contains_key(&key) {
        map.pop_first();
    }
    map.insert(key, value);
}

impl CodecState {
    fn observe(&mut self, identity: &Identity) {
        if let Some(me) = &self.me {
            if identity.id == me.id || identity.addr == me.addr {
                self.highest_own_incarnation =
                    self.highest_own_incarnation.max(identity.incarnation);
            }
        }
    }

    /// Records a full identity seen on the wire (or addressed by us). `firsthand`: the member
    /// itself sent it (header src) or foca holds it (a dst we write): it replaces a cached
    /// copy of the same renewal, which a relay may have altered (flags a relay predating them
    /// drops); a relayed copy only fills a gap or brings a newer renewal.
    fn remember(&mut self, identity: &Identity, flags: u8, firsthand: bool) {
        if identity.id.is_nil() || !self.v2 {
            return;
        }
        let key = id_prefix(&identity.id);
        let keep_cached = self.identities.get(&key).is_some_and(
            |Cached {
                 identity: cached, ..
             }| {
                if cached == identity {
                    true
                } else if cached.id == identity.id {
                    cached.incarnation > identity.incarnation
                        || (cached.incarnation == identity.incarnation && !firsthand)
                } else {
                    !firsthand // Two ids sharing a prefix (2^-64): the one that speaks wins.
                }
            },
        );
        if !keep_cached {
            let cached = Cached {
                identity: identity.clone(),
                digest: None,
            };
            bounded_insert(&mut self.identities, key, cached);
        }
        // The wire a member reads: the newest identity at its address says. A relayed copy
        // without the flag may be a relay predating it that dropped it: it clears the flag only
        // when newer than what we know (a restart on older software); the member itself
        // always says.
        let v2 = flags & FLAG_V2 != 0;
        let newest = |p: &PeerWire| (identity.incarnation, identity.id) >= (p.incarnation, p.id);
        let update = match self.v2_peers.get(&identity.addr) {
            None => true,
            Some(p) if v2 || firsthand => newest(p),
            Some(p) => (identity.incarnation, identity.id) > (p.incarnation, p.id),
        };
        let unchanged = self.v2_peers.get(&identity.addr).is_some_and(|p| {
            (p.id, p.incarnation, p.v2) == (identity.id, identity.incarnation, v2)
        });
        if update && !unchanged {
            let wire = PeerWire {
                id: identity.id,
                incarnation: identity.incarnation,
                v2,
            };
            bounded_insert(&mut self.v2_peers, identity.addr, wire);
        }
    }

    /// `identity_digest(identity)`, kept with the cached identity when it is the one cached.
    fn digest_of(&mut self, identity: &Identity) -> [u8; DIGEST_LEN] {
        let cached = self
            .identities
            .get_mut(&id_prefix(&identity.id))
            .filter(|c| c.identity == *identity);
        match cached {
            Some(Cached {
                digest: Some(digest),
                ..
            }) => *digest,
            Some(c) => *c.digest.insert(identity_digest(identity)),
            None => identity_digest(identity),
        }
    }

    /// Whether the member at `dst` reads compact headers and envelope v2: its identity said
    /// so, or it just sent us a reference we could not resolve (only a member that reads
    /// compact headers writes them, and it must hear `TAG_SEND_IDENTITY` in one).
    fn opens_v2(&self, dst: &Identity) -> bool {
        self.v2
            && (self.ask_identity.contains(&dst.addr)
                || self
                    .v2_peers
                    .get(&dst.addr)
                    .is_some_and(|p| p.v2 && (dst.id.is_nil() || p.id == dst.id)))
    }

    /// `FLAG_V2` when writing `identity`: ours when we use v2; another member's when we know
    /// it advertised the flag (a relay that knows the flag keeps it).
    fn v2_flag_for(&self, identity: &Identity) -> u8 {
        // Ours in any renewal: foca writes the renewed one before `set_me` hears of it.
        let ours = self
            .me
            .as_ref()
            .is_some_and(|me| me.id == identity.id && me.addr == identity.addr);
        let known = ours
            || self.v2_peers.get(&identity.addr).is_some_and(|p| {
                p.v2 && p.id == identity.id && p.incarnation == identity.incarnation
            });
        if self.v2 && known {
            FLAG_V2
        } else {
            0
        }
    }

    /// Resolves a reference from the datagram being decoded.
    fn resolve(&self, prefix: &[u8; REF_PREFIX], incarnation_low: u8) -> Option<Identity> {
        let identity = &self.identities.get(prefix)?.identity;
        (identity.incarnation as u8 == incarnation_low && Some(identity.addr) == self.source)
            .then(|| identity.clone())
    }

    /// Our identity changed (a rejoin): headers naming the old one are still for us, and no
    /// member holds the new one yet.
    fn set_me(&mut self, me: Identity) {
        if let Some(old) = self.me.as_ref().filter(|old| **old != me) {
            self.former_digests.push(identity_digest(old));
            if self.former_digests.len() > MAX_FORMER_DIGESTS {
                self.former_digests.remove(0);
            }
        }
        self.me = Some(me);
        self.me_digest = None;
    }

    /// The digest of our identity as it is now.
    fn my_digest(&mut self) -> Option<[u8; DIGEST_LEN]> {
        if self.me_digest.is_none() {
            self.me_digest = self.me.as_ref().map(identity_digest);
        }
        self.me_digest
    }
}

/// Compact SWIM encoding. The destination is sent as the first bytes of its member id: a receiver that
/// matches it (or any `Announce`, which is addressed to whoever listens at the address) takes
/// itself as the destination. This saves ~20 bytes on every probe and lets a member behind a
/// different advertised address still be announced to.
///
/// To a member that advertises `FLAG_V2` the header is compact (`TAG_COMPACT`): the
/// destination is a 4-byte digest of its whole identity as we hold it, and once that member
/// has shown us the digest of our current identity, the sender is a reference (`TAG_SRC_REF`:
/// 8-byte id prefix and the low byte of the identity incarnation) instead of ~32 bytes.
struct WireCodec {
    state: Arc<Mutex<CodecState>>,
}

const MSG_PING: u8 = 1;
const MSG_ACK: u8 = 2;
const MSG_PING_REQ: u8 = 3;
const MSG_INDIRECT_PING: u8 = 4;
const MSG_INDIRECT_ACK: u8 = 5;
const MSG_FORWARDED_ACK: u8 = 6;
const MSG_ANNOUNCE: u8 = 7;
const MSG_FEED: u8 = 8;
const MSG_GOSSIP: u8 = 9;
const MSG_BROADCAST: u8 = 10;
const MSG_TURN_UNDEAD: u8 = 11;
/// Tag bit: compact header (dst is an identity digest). Only sent to `FLAG_V2` members.
pub const TAG_COMPACT: u8 = 0x80;
/// Tag bit (compact headers only): the sender is a reference, not a full identity.
const TAG_SRC_REF: u8 = 0x40;
/// Tag bit (compact headers only): "I could not resolve your reference: send your full
/// identity". The message is otherwise acted on as usual.
const TAG_SEND_IDENTITY: u8 = 0x20;
/// The low bits of a tag: the message.
const TAG_MESSAGE: u8 = 0x0f;

const FLAG_PERSISTENT: u8 = 1;
const FLAG_IPV6: u8 = 2;
/// The port is Habitat's 9638 and is not sent (2 bytes off every identity on the wire).
const FLAG_DEFAULT_PORT: u8 = 4;
/// The node name was given explicitly (`Identity::named`).
const FLAG_NAMED: u8 = 8;
/// The member opens envelope version 2 and compact SWIM headers. Members predating it ignore
/// it (and drop it when relaying the identity).
const FLAG_V2: u8 = 16;
const DEFAULT_GOSSIP_PORT: u16 = 9638;
pub const MAX_NODE_NAME: usize = 253;

fn get_exact<const N: usize>(buf: &mut impl Buf) -> Result<[u8; N], WireError> {
    if buf.remaining() < N {
        return Err(WireError::Truncated {
            needed: N - buf.remaining(),
        });
    }
    let mut out = [0u8; N];
    buf.copy_to_slice(&mut out);
    Ok(out)
}

fn identity_len(id: &Identity) -> usize {
    let ip = if id.addr.is_ipv6() { 16 } else { 4 };
    let port = if id.addr.port() == DEFAULT_GOSSIP_PORT {
        0
    } else {
        2
    };
    16 + super::wire::varint_len(id.incarnation)
        + 1
        + ip
        + port
        + 1
        + id.node.len().min(MAX_NODE_NAME)
}

fn ensure_room(buf: &impl BufMut, needed: usize) -> Result<(), WireError> {
    if buf.remaining_mut() < needed {
        return Err(WireError::TooLong {
            what: "swim message",
            len: needed,
            limit: buf.remaining_mut(),
        });
    }
    Ok(())
}

/// Writes an identity in the full form; `extra_flags` is `FLAG_V2` or 0.
fn put_identity(buf: &mut impl BufMut, id: &Identity, extra_flags: u8) {
    buf.put_slice(&id.id.0);
    put_varint(buf, id.incarnation);
    let mut flags = extra_flags;
    if id.persistent {
        flags |= FLAG_PERSISTENT;
    }
    if id.addr.is_ipv6() {
        flags |= FLAG_IPV6;
    }
    if id.addr.port() == DEFAULT_GOSSIP_PORT {
        flags |= FLAG_DEFAULT_PORT;
    }
    if id.named {
        flags |= FLAG_NAMED;
    }
    buf.put_u8(flags);
    match id.addr.ip() {
        IpAddr::V4(ip) => buf.put_slice(&ip.octets()),
        IpAddr::V6(ip) => buf.put_slice(&ip.octets()),
    }
    if id.addr.port() != DEFAULT_GOSSIP_PORT {
        buf.put_u16(id.addr.port());
    }
    // Cut at a character boundary so the name stays valid UTF-8 (the CLI refuses longer names).
    let mut cut = id.node.len().min(MAX_NODE_NAME);
    while !id.node.is_char_boundary(cut) {
        cut -= 1;
    }
    let node = &id.node.as_bytes()[..cut];
    buf.put_u8(node.len() as u8);
    buf.put_slice(node);
}

/// Reads an identity in the full form, with its flags byte.
fn get_identity(buf: &mut impl Buf) -> Result<(Identity, u8), WireError> {
    let id = MemberId(get_exact::<16>(buf)?);
    let incarnation = get_varint(buf)?;
    if incarnation > super::member::MAX_INCARNATION {
        return Err(WireError::Invalid("identity incarnation"));
    }
    let flags = get_u8(buf)?;
    let ip = if flags & FLAG_IPV6 != 0 {
        IpAddr::from(get_exact::<16>(buf)?)
    } else {
        IpAddr::from(get_exact::<4>(buf)?)
    };
    let port = if flags & FLAG_DEFAULT_PORT != 0 {
        DEFAULT_GOSSIP_PORT
    } else {
        u16::from_be_bytes(get_exact::<2>(buf)?)
    };
    let len = usize::from(get_u8(buf)?);
    if buf.remaining() < len {
        return Err(WireError::Truncated {
            needed: len - buf.remaining(),
        });
    }
    let mut node = vec![0u8; len];
    buf.copy_to_slice(&mut node);
    let node = String::from_utf8(node).map_err(|_| WireError::Invalid("node name"))?;
    let identity = Identity {
        id,
        incarnation,
        node: node.into(),
        addr: SocketAddr::new(ip, port),
        persistent: flags & FLAG_PERSISTENT != 0,
        named: flags & FLAG_NAMED != 0,
    };
    Ok((identity, flags))
}

/// Whether a SWIM message produced by this codec has a compact header (and so must travel in
/// an envelope version 2).
pub fn is_compact(swim: &[u8]) -> bool {
    swim.first().is_some_and(|tag| tag & TAG_COMPACT != 0)
}

impl foca::Codec<Identity> for WireCodec {
    type Error = WireError;

    fn encode_header(
        &mut self,
        header: &Header<Identity>,
        mut buf: impl BufMut,
    ) -> Result<(), WireError> {
        let (tag, probe, extra) = match &header.message {
            Message::Ping(p) => (MSG_PING, Some(*p), None),
            Message::Ack(p) => (MSG_ACK, Some(*p), None),
            Message::PingReq {
                target,
                probe_number,
            } => (MSG_PING_REQ, Some(*probe_number), Some(target)),
            Message::IndirectPing {
                origin,
                probe_number,
            } => (MSG_INDIRECT_PING, Some(*probe_number), Some(origin)),
            Message::IndirectAck {
                target,
                probe_number,
            } => (MSG_INDIRECT_ACK, Some(*probe_number), Some(target)),
            Message::ForwardedAck {
                origin,
                probe_number,
            } => (MSG_FORWARDED_ACK, Some(*probe_number), Some(origin)),
            Message::Announce => (MSG_ANNOUNCE, None, None),
            Message::Feed => (MSG_FEED, None, None),
            Message::Gossip => (MSG_GOSSIP, None, None),
            Message::Broadcast => (MSG_BROADCAST, None, None),
            Message::TurnUndead => (MSG_TURN_UNDEAD, None, None),
        };
        let mut guard = self
            .state
            .lock()
            .map_err(|_| WireError::Invalid("codec state"))?;
        let state = &mut *guard;
        let compact = state.opens_v2(&header.dst);
        // By reference only to a member that showed it holds our identity as it is now.
        let by_ref = compact
            && header.message != Message::Announce
            && state.me.as_ref() == Some(&header.src)
            && state.my_digest().is_some_and(|mine| {
                state.know_me.get(&header.dst.id) == Some(&(header.dst.incarnation, mine))
            });
        let send_identity = compact && state.ask_identity.contains(&header.dst.addr);
        let src_len = if by_ref {
            REF_PREFIX + 1
        } else {
            identity_len(&header.src)
        };
        let needed = 1
            + probe.map_or(0, |_| 1)
            + extra.map_or(0, identity_len)
            + src_len
            + super::wire::varint_len(u64::from(header.src_incarnation))
            + if compact { DIGEST_LEN } else { DST_PREFIX };
        ensure_room(&buf, needed)?;
        let mut tag = tag;
        if compact {
            tag |= TAG_COMPACT;
            if by_ref {
                tag |= TAG_SRC_REF;
            }
            if send_identity {
                tag |= TAG_SEND_IDENTITY;
                state.ask_identity.remove(&header.dst.addr);
            }
        }
        buf.put_u8(tag);
        if let Some(p) = probe {
            buf.put_u8(p);
        }
        if let Some(other) = extra {
            put_identity(&mut buf, other, state.v2_flag_for(other));
        }
        if by_ref {
            buf.put_slice(&id_prefix(&header.src.id));
            buf.put_u8(header.src.incarnation as u8);
        } else {
            put_identity(&mut buf, &header.src, state.v2_flag_for(&header.src));
        }
        put_varint(&mut buf, u64::from(header.src_incarnation));
        if compact {
            // The digest we send says we hold this identity: keep it resolvable (it opens v2,
            // or it would not be getting a compact header).
            state.remember(&header.dst, FLAG_V2, true);
            buf.put_slice(&state.digest_of(&header.dst));
        } else {
            buf.put_slice(&header.dst.id.0[..DST_PREFIX]);
        }
        state.last_header_len = needed;
        if state.me.as_ref() == Some(&header.src) {
            state.my_swim_incarnation = header.src_incarnation;
        }
        Ok(())
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<Identity>, WireError> {
        let tag = get_u8(&mut buf)?;
        let mut guard = self
            .state
            .lock()
            .map_err(|_| WireError::Invalid("codec state"))?;
        let state = &mut *guard;
        let (compact, by_ref) = (tag & TAG_COMPACT != 0, tag & TAG_SRC_REF != 0);
        let send_identity = tag & TAG_SEND_IDENTITY != 0;
        // A member without v2 reads no compact header; the other bits exist only in one.
        let known_bits = if state.v2 {
            TAG_COMPACT | TAG_SRC_REF | TAG_SEND_IDENTITY | TAG_MESSAGE
        } else {
            TAG_MESSAGE
        };
        if tag & !known_bits != 0 || (!compact && (by_ref || send_identity)) {
            return Err(WireError::UnknownTag {
                what: "swim message",
                tag,
            });
        }
        let mut probe = || get_u8(&mut buf);
        let mut other_flags = 0;
        let message = match tag & TAG_MESSAGE {
            MSG_PING => Message::Ping(probe()?),
            MSG_ACK => Message::Ack(probe()?),
            kind @ (MSG_PING_REQ | MSG_INDIRECT_PING | MSG_INDIRECT_ACK | MSG_FORWARDED_ACK) => {
                let probe_number = probe()?;
                let (other, flags) = get_identity(&mut buf)?;
                other_flags = flags;
                match kind {
                    MSG_PING_REQ => Message::PingReq {
                        target: other,
                        probe_number,
                    },
                    MSG_INDIRECT_PING => Message::IndirectPing {
                        origin: other,
                        probe_number,
                    },
                    MSG_INDIRECT_ACK => Message::IndirectAck {
                        target: other,
                        probe_number,
                    },
                    _ => Message::ForwardedAck {
                        origin: other,
                        probe_number,
                    },
                }
            }
            MSG_ANNOUNCE => Message::Announce,
            MSG_FEED => Message::Feed,
            MSG_GOSSIP => Message::Gossip,
            MSG_BROADCAST => Message::Broadcast,
            MSG_TURN_UNDEAD => Message::TurnUndead,
            _ => {
                return Err(WireError::UnknownTag {
                    what: "swim message",
                    tag,
                })
            }
        };
        let (src, src_flags) = if by_ref {
            let prefix = get_exact::<REF_PREFIX>(&mut buf)?;
            let incarnation_low = get_u8(&mut buf)?;
            match state.resolve(&prefix, incarnation_low) {
                Some(src) => (src, FLAG_V2),
                None => {
                    // Ask for the full identity in our next header to that address.
                    if let Some(source) = state.source {
                        if state.ask_identity.len() >= MAX_CACHED {
                            state.ask_identity.clear();
                        }
                        state.ask_identity.insert(source);
                    }
                    return Err(WireError::Invalid("unresolved sender reference"));
                }
            }
        } else {
            get_identity(&mut buf)?
        };
        let src_incarnation = u16::try_from(get_varint(&mut buf)?)
            .map_err(|_| WireError::Invalid("swim incarnation"))?;
        let digest = if compact {
            Some(get_exact::<DIGEST_LEN>(&mut buf)?)
        } else {
            None
        };
        let dst_prefix = if compact {
            None
        } else {
            Some(get_exact::<DST_PREFIX>(&mut buf)?)
        };
        if state.banned.contains(&src.id) {
            return Err(WireError::Invalid("departed sender"));
        }
        state.observe(&src);
        if !by_ref {
            state.remember(&src, src_flags, true);
        }
        if let Message::PingReq { target: other, .. }
        | Message::IndirectPing { origin: other, .. }
        | Message::IndirectAck { target: other, .. }
        | Message::ForwardedAck { origin: other, .. } = &message
        {
            state.observe(other);
            state.remember(other, other_flags, false);
        }
        if message == Message::TurnUndead {
            let now = state.now_ms;
            if state
                .last_turn_undead_ms
                .is_some_and(|last| now.saturating_sub(last) < TURN_UNDEAD_EVERY_MS)
            {
                return Err(WireError::Invalid("turn-undead rate"));
            }
            state.last_turn_undead_ms = Some(now);
        }
        let current = state.my_digest();
        let for_me = match (&state.me, digest, dst_prefix, current) {
            (Some(_), _, _, _) if message == Message::Announce => true,
            (Some(me), _, Some(prefix), _) => me.id.0[..DST_PREFIX] == prefix,
            (Some(_), Some(digest), _, Some(current)) => {
                // The sender holds our identity as it is now: from here on we name ourselves
                // to it by reference. Anything else (an older identity of ours, a request to
                // send it in full) and it gets the full identity again.
                if digest == current && !send_identity {
                    bounded_insert(&mut state.know_me, src.id, (src.incarnation, current));
                } else {
                    state.know_me.remove(&src.id);
                }
                digest == current || state.former_digests.contains(&digest)
            }
            _ => false,
        };
        let dst = match &state.me {
            Some(me) if for_me => me.clone(),
            // Addressed to someone else: foca will drop it.
            _ => Identity {
                id: MemberId::default(),
                incarnation: 0,
                node: Arc::from(""),
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                persistent: false,
                named: false,
            },
        };
        Ok(Header {
            src,
            src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(
        &mut self,
        member: &Member<Identity>,
        mut buf: impl BufMut,
    ) -> Result<(), WireError> {
        ensure_room(&buf, identity_len(member.id()) + 3)?;
        let flags = self
            .state
            .lock()
            .map_or(0, |state| state.v2_flag_for(member.id()));
        put_identity(&mut buf, member.id(), flags);
        buf.put_u16(member.incarnation());
        buf.put_u8(match member.state() {
            State::Alive => 0,
            State::Suspect => 1,
            State::Down => 2,
        });
        Ok(())
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<Identity>, WireError> {
        let (id, flags) = get_identity(&mut buf)?;
        if let Ok(mut state) = self.state.lock() {
            state.observe(&id);
            state.remember(&id, flags, false);
        }
        let incarnation = u16::from_be_bytes(get_exact::<2>(&mut buf)?);
        let state = match get_u8(&mut buf)? {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Down,
            tag => {
                return Err(WireError::UnknownTag {
                    what: "member state",
                    tag,
                })
            }
        };
        Ok(Member::new(id, incarnation, state))
    }
}

/// A datagram's membership updates split by whether this member passes them on.
///
/// SWIM as foca implements it gossips every change to everyone, so under loss each unconfirmed
/// suspicion and its refutation cost every member O(log N) sends, and their number grows with N:
/// per-member traffic grew linearly with the ring. Here only what every member must learn is
/// passed on: a member declared down, and a member first heard of (incarnation 0, a join or a
/// renewed identity). A suspicion matters to the suspect, and to those that hold it: the prober
/// and the few members its own piggybacked copies reach. Each of them times it and tells the
/// suspect directly until it refutes (`tell_suspect`, `suspect_on_hearsay`), and the suspect
/// answers each teller directly (`handle_data`); others take a refutation from the suspect's own
/// messages. Suspicions and refutations are still applied here, just not relayed.
struct Relay {
    src: Identity,
    src_incarnation: u16,
    /// The datagram with only the updates to pass on.
    loud: Vec<u8>,
    quiet: Vec<Member<Identity>>,
    /// An update names this member Suspect.
    suspects_me: bool,
}

impl Relay {
    /// `None`: nothing to keep quiet, or a message foca must see whole (join, feed, turn-undead,
    /// anything malformed): handled by foca as it came.
    fn plan(codec: &Arc<Mutex<CodecState>>, me: &Identity, data: &[u8]) -> Option<Relay> {
        use foca::Codec as _;
        let tag = *data.first()? & TAG_MESSAGE;
        if !matches!(
            tag,
            MSG_PING
                | MSG_ACK
                | MSG_PING_REQ
                | MSG_INDIRECT_PING
                | MSG_INDIRECT_ACK
                | MSG_FORWARDED_ACK
                | MSG_GOSSIP
        ) {
            return None;
        }
        let mut codec = WireCodec {
            state: Arc::clone(codec),
        };
        let mut rest = data;
        let header = codec.decode_header(&mut rest).ok()?;
        if header.dst != *me || header.src == *me || header.src.addr == me.addr {
            return None;
        }
        let header_len = data.len() - rest.len();
        let mut loud_ranges = Vec::new();
        let mut quiet = Vec::new();
        let mut suspects_me = false;
        if rest.len() >= 2 {
            let count = rest.get_u16();
            for _ in 0..count {
                let start = data.len() - rest.len();
                let update = codec.decode_member(&mut rest).ok()?;
                let about = update.id();
                if about.id == me.id || about.addr == me.addr {
                    suspects_me |= about == me && update.state() == State::Suspect;
                    loud_ranges.push(start..data.len() - rest.len());
                } else if update.state() == State::Down
                    || (update.state() == State::Alive && update.incarnation() == 0)
                {
                    loud_ranges.push(start..data.len() - rest.len());
                } else {
                    quiet.push(update);
                }
            }
        }
        // Custom broadcasts are not used: a tail is malformed, and foca says so.
        if !rest.is_empty() || (quiet.is_empty() && header.src_incarnation == 0 && !suspects_me) {
            return None;
        }
        let mut loud = Vec::with_capacity(data.len());
        loud.extend_from_slice(&data[..header_len]);
        if !loud_ranges.is_empty() || !quiet.is_empty() {
            loud.put_u16(u16::try_from(loud_ranges.len()).ok()?);
            for range in loud_ranges {
                loud.extend_from_slice(data.get(range)?);
            }
        }
        Some(Relay {
            src: header.src,
            src_incarnation: header.src_incarnation,
            loud,
            quiet,
            suspects_me,
        })
    }
}

/// Collects what foca wants done during one call.
struct Collector<'a> {
    out: &'a mut SwimOutput,
    lhm_delta: &'a mut i32,
    probe_failed: &'a mut Vec<Identity>,
    /// Senders of the datagrams handled in this call.
    heard_from: &'a mut Vec<Identity>,
    /// Where in `out.events` the new identity of a rename was reported up (see `run`).
    renamed: &'a mut Vec<usize>,
    codec: &'a Mutex<CodecState>,
}

impl foca::Runtime<Identity> for Collector<'_> {
    fn notify(&mut self, notification: Notification<'_, Identity>) {
        match notification {
            Notification::MemberUp(id) => self.out.events.push(MembershipEvent::Up(id.clone())),
            Notification::MemberDown(id) => {
                self.out.events.push(MembershipEvent::Down(id.clone()));
            }
            // The same identity again, now with the flags a relay predating them dropped (see
            // `win_addr_conflict`): not a restart, so no Down.
            Notification::Rename(old, new)
                if old.id == new.id && old.incarnation == new.incarnation =>
            {
                self.renamed.push(self.out.events.len());
                self.out.events.push(MembershipEvent::Up(new.clone()));
            }
            Notification::Rename(old, new) => {
                self.out.events.push(MembershipEvent::Down(old.clone()));
                self.renamed.push(self.out.events.len());
                self.out.events.push(MembershipEvent::Up(new.clone()));
            }
            Notification::Rejoin(id) => {
                self.out.events.push(MembershipEvent::Rejoined(id.clone()));
            }
            Notification::Idle => self.out.events.push(MembershipEvent::Isolated),
            // Lifeguard: a failed probe may mean we are the slow one; an ack means we are not.
            Notification::ProbeFailed(_, id) => {
                *self.lhm_delta += 1;
                self.probe_failed.push(id.clone());
            }
            Notification::DataReceived(header) => {
                self.out.heard_from.push(header.src.id);
                self.heard_from.push(header.src.clone());
                if matches!(
                    header.message,
                    Message::Ack(_) | Message::ForwardedAck { .. }
                ) {
                    *self.lhm_delta -= 1;
                }
            }
            Notification::Active | Notification::Defunct | Notification::DataSent(_) => {}
        }
    }

    fn send_to(&mut self, to: Identity, data: &[u8]) {
        // foca writes an update count after every header that may carry updates, `00 00` when
        // there are none; a message ending right after its header has none to foca, so a
        // compact one goes without (2 bytes off every idle probe). The full form keeps it.
        let header_len = self.codec.lock().map_or(0, |state| state.last_header_len);
        let data = match data.split_at_checked(header_len) {
            Some((header, [0, 0])) if is_compact(header) => header,
            _ => data,
        };
        self.out.sends.push((to.addr, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<Identity>, after: Duration) {
        self.out.timers.push((SwimTimer(event), after));
    }
}

pub struct Membership {
    foca: Foca<Identity, WireCodec, StdRng, foca::NoCustomBroadcast>,
    codec: Arc<Mutex<CodecState>>,
    config: SwimConfig,
    sized_for: usize,
    lhm: u32,
    out: SwimOutput,
    /// Current periodic announce interval (see `back_off_announce`).
    announce_every: Duration,
    /// Members known when the last periodic announce went out.
    members_at_announce: usize,
    /// Members this one suspects (its probe failed, or it heard so and times it too), told of it
    /// on every probe step until they refute or go down: suspicions are not gossiped (see
    /// `Relay`), so a lost notice or a lost answer must be repeated.
    suspecting: Vec<Identity>,
    /// foca's current timer token (it changes when this member rejoins), taken from the probe
    /// timers foca arms; our own suspicion timers carry it.
    timer_token: foca::TimerToken,
}

/// The periodic announce backs off to at most this many times `SwimConfig::announce_interval`.
const MAX_ANNOUNCE_BACKOFF: u32 = 8;

impl Membership {
    pub fn new(identity: Identity, config: SwimConfig, seed: u64) -> Membership {
        let codec = Arc::new(Mutex::new(CodecState {
            me: Some(identity.clone()),
            v2: config.wire_v2,
            ..CodecState::default()
        }));
        let announce_every = config.announce_interval;
        let foca = Foca::new(
            identity,
            config.foca_config(1),
            StdRng::seed_from_u64(seed),
            WireCodec {
                state: Arc::clone(&codec),
            },
        );
        Membership {
            foca,
            codec,
            config,
            sized_for: 1,
            lhm: 0,
            out: SwimOutput::default(),
            announce_every,
            members_at_announce: 0,
            suspecting: Vec::new(),
            timer_token: 0,
        }
    }

    /// foca's settings for a cluster of `n`, with the current announce interval.
    fn foca_config(&self, n: usize) -> foca::Config {
        let mut config = self.config.foca_config(n);
        if let Some(announce) = config.periodic_announce.as_mut() {
            announce.frequency = self.announce_every;
        }
        config
    }

    /// Discovery backs off while it finds nothing: a periodic announce that finds the member
    /// count unchanged since the previous one doubles the interval (up to
    /// `MAX_ANNOUNCE_BACKOFF` times the base), any change returns it to the base. A formed,
    /// quiet ring so spends a few bytes per second on Feed answers instead of ~45 (N >= 35).
    fn back_off_announce(&mut self) {
        let n = self.foca.num_members();
        let base = self.config.announce_interval;
        let next = if n == self.members_at_announce {
            (self.announce_every * 2).min(base * MAX_ANNOUNCE_BACKOFF)
        } else {
            base
        };
        self.members_at_announce = n;
        if next != self.announce_every {
            self.announce_every = next;
            // Takes effect as foca re-arms the announce timer that is firing now.
            if let Err(e) = self.foca.set_config(self.foca_config(self.sized_for)) {
                tracing::debug!(error = %e, "announce interval");
            }
        }
    }

    pub fn identity(&self) -> &Identity {
        self.foca.identity()
    }

    pub const fn config(&self) -> &SwimConfig {
        &self.config
    }

    /// Lifeguard local health multiplier (0 = healthy).
    pub const fn local_health(&self) -> u32 {
        self.lhm
    }

    /// Runs one foca call with a collector, then applies Lifeguard and identity bookkeeping.
    fn run<R>(
        &mut self,
        call: impl FnOnce(
            &mut Foca<Identity, WireCodec, StdRng, foca::NoCustomBroadcast>,
            &mut Collector<'_>,
        ) -> R,
    ) -> R {
        let mut lhm_delta = 0;
        let mut probe_failed = Vec::new();
        let mut heard_from = Vec::new();
        let mut renamed = Vec::new();
        let result = {
            let mut collector = Collector {
                out: &mut self.out,
                lhm_delta: &mut lhm_delta,
                probe_failed: &mut probe_failed,
                heard_from: &mut heard_from,
                renamed: &mut renamed,
                codec: &self.codec,
            };
            call(&mut self.foca, &mut collector)
        };
        // foca reports a rename whatever the new identity's liveness: when both identities are
        // down (we held a member down and then heard its renewed identity declared down too)
        // no MemberDown follows, and reporting the new one up would leave it up here for good.
        for index in renamed {
            if let Some(MembershipEvent::Up(new)) = self.out.events.get(index) {
                if !self.foca.iter_members().any(|m| m.id() == new) {
                    self.out.events[index] = MembershipEvent::Down(new.clone());
                }
            }
        }
        if lhm_delta != 0 {
            let next = i64::from(self.lhm) + i64::from(lhm_delta);
            self.lhm = next.clamp(0, i64::from(self.config.max_lhm)) as u32;
        }
        if self
            .out
            .events
            .iter()
            .any(|e| matches!(e, MembershipEvent::Rejoined(_)))
        {
            let mut me = self.foca.identity().clone();
            let highest = self
                .codec
                .lock()
                .map(|s| s.highest_own_incarnation)
                .unwrap_or(0);
            if highest >= me.incarnation {
                // Someone holds a claim on our address or id above the renewed identity (a
                // forged or older-but-higher one): jump above it instead of losing again.
                me.incarnation = highest.saturating_add(1);
                let renewed = me.clone();
                let mut out = std::mem::take(&mut self.out);
                let mut ignored = 0;
                let (mut no_probes, mut no_senders) = (Vec::new(), Vec::new());
                let mut no_renames = Vec::new();
                let mut collector = Collector {
                    out: &mut out,
                    lhm_delta: &mut ignored,
                    probe_failed: &mut no_probes,
                    heard_from: &mut no_senders,
                    renamed: &mut no_renames,
                    codec: &self.codec,
                };
                if self
                    .foca
                    .change_identity(renewed.clone(), &mut collector)
                    .is_ok()
                {
                    out.events
                        .retain(|e| !matches!(e, MembershipEvent::Rejoined(_)));
                    out.events.push(MembershipEvent::Rejoined(renewed));
                }
                self.out = out;
            }
            if let Ok(mut state) = self.codec.lock() {
                state.set_me(me);
            }
        }
        // A member that talks to us and is still Suspect here (its incarnation did not refute)
        // has not heard of the suspicion: tell it too. Only the member whose probe failed arms
        // a suspect-to-down timer, and foca drops that timer when that member rejoins or loses
        // all its peers (its timer token changes), while the Suspect state stays, already
        // gossiped; the piggybacked updates go out a bounded number of times and after a
        // partition or a pause may all have missed the suspect, which would then stay Suspect
        // in the ring for good. The notices stop once its messages carry a higher incarnation.
        self.out
            .events
            .extend(probe_failed.iter().cloned().map(MembershipEvent::Unreached));
        heard_from.retain(|sender| !probe_failed.contains(sender));
        heard_from.dedup();
        for suspect in probe_failed.iter().chain(&heard_from) {
            self.tell_suspect(suspect);
        }
        for suspect in probe_failed {
            if !self.suspecting.contains(&suspect) {
                self.suspecting.push(suspect);
            }
        }
        if let Some(token) = self.out.timers.iter().find_map(|(timer, _)| match timer.0 {
            Timer::ProbeRandomMember(token) => Some(token),
            _ => None,
        }) {
            self.timer_token = token;
        }
        self.resize_if_needed();
        result
    }

    /// Lifeguard's buddy system: a member we just suspected hears it from us directly, in a
    /// Gossip message carrying that one update, so it can refute in time. foca leaves this to
    /// its piggybacked updates, which are sent a bounded number of times to random members and
    /// can all miss the suspect (then an alive member is declared down and must rejoin).
    fn tell_suspect(&mut self, suspect: &Identity) {
        let Some(member) = self
            .foca
            .iter_membership_state()
            .find(|m| m.id() == suspect && m.state() == State::Suspect)
            .cloned()
        else {
            return;
        };
        self.send_gossip(suspect, Some(&member));
    }

    /// Sends `to` a Gossip message of its own: our header (which carries our incarnation, so it
    /// refutes a suspicion of us) and at most one update.
    fn send_gossip(&mut self, to: &Identity, update: Option<&Member<Identity>>) {
        use foca::Codec as _;
        let src_incarnation = self
            .codec
            .lock()
            .map_or(0, |state| state.my_swim_incarnation);
        let header = Header {
            src: self.foca.identity().clone(),
            src_incarnation,
            dst: to.clone(),
            message: Message::Gossip,
        };
        let mut codec = WireCodec {
            state: Arc::clone(&self.codec),
        };
        let mut buf = Vec::with_capacity(self.config.max_swim_packet);
        let encoded = codec.encode_header(&header, &mut buf).and_then(|()| {
            buf.put_u16(u16::from(update.is_some()));
            update.map_or(Ok(()), |member| codec.encode_member(member, &mut buf))
        });
        match encoded {
            Ok(()) => self.out.sends.push((to.addr, buf)),
            Err(e) => tracing::debug!(error = %e, "gossip to one member"),
        }
    }

    /// Suspicion time and retransmissions follow the cluster size (log10 N).
    fn resize_if_needed(&mut self) {
        let n = self.foca.num_members() + 1;
        if n == self.sized_for {
            return;
        }
        let (now, then) = (self.foca_config(n), self.foca_config(self.sized_for));
        let changed = now.max_transmissions != then.max_transmissions
            || now.suspect_to_down_after != then.suspect_to_down_after;
        if changed && self.foca.set_config(now).is_err() {
            return;
        }
        self.sized_for = n;
    }

    pub fn start(&mut self) {
        // foca arms its periodic timers on the first call that connects; nothing else.
    }

    /// Tells the codec the node's clock (for its rate limits).
    pub fn set_now(&mut self, now_ms: u64) {
        if let Ok(mut state) = self.codec.lock() {
            state.now_ms = now_ms;
        }
    }

    /// Tells the codec the UDP source address of the datagram `handle_data` gets next: a
    /// sender named by reference must be an identity at that address.
    pub fn set_source(&mut self, from: SocketAddr) {
        if let Ok(mut state) = self.codec.lock() {
            state.source = Some(from);
        }
    }

    /// Whether the member at `addr`, as far as we know, opens envelope version 2 (and we use
    /// it): whether a datagram to it without a SWIM message is sealed version 2.
    pub fn opens_v2(&self, addr: SocketAddr) -> bool {
        let probe = Identity {
            id: MemberId::default(),
            incarnation: 0,
            node: Arc::from(""),
            addr,
            persistent: false,
            named: false,
        };
        self.codec.lock().is_ok_and(|state| state.opens_v2(&probe))
    }

    pub fn handle_data(&mut self, data: &[u8]) -> Result<(), SwimDrop> {
        let me = self.foca.identity().clone();
        let Some(relay) = Relay::plan(&self.codec, &me, data) else {
            return self.handle_whole(data);
        };
        let Relay {
            src,
            src_incarnation,
            loud,
            quiet,
            suspects_me,
        } = relay;
        let result = self.run(|foca, rt| {
            if src_incarnation > 0 {
                // A refutation carried by the header: taken in quietly, so foca's own apply of
                // the header finds nothing new to spread.
                let header_says = Member::new(src.clone(), src_incarnation, State::Alive);
                foca.apply_many(std::iter::once(header_says), false, &mut *rt)?;
            }
            foca.handle_data(&loud, &mut *rt)?;
            // foca ignores the updates of a sender it holds down; so do we.
            if !quiet.is_empty() && foca.iter_members().any(|m| m.id() == &src) {
                foca.apply_many(quiet.iter().cloned(), false, &mut *rt)?;
                return Ok(quiet);
            }
            Ok(Vec::new())
        });
        if let Ok(applied) = &result {
            for update in applied.iter().filter(|u| u.state() == State::Suspect) {
                self.suspect_on_hearsay(update);
            }
        }
        if suspects_me && result.is_ok() {
            // Only the teller holds the suspicion's timer: answer it directly, so the
            // refutation does not depend on gossip reaching it.
            self.send_gossip(&src, None);
        }
        result.map(drop).map_err(Self::drop_reason)
    }

    /// A suspicion heard from another member and now held here: this member times it too and
    /// tells the suspect until it refutes, as its prober does (Lifeguard lets every member that
    /// hears a suspicion start a timer). The prober's notice and the Down it declares can both be
    /// lost; a second declarer keeps a dead member from staying Suspect here until this member
    /// happens to probe it (up to N probe periods).
    fn suspect_on_hearsay(&mut self, update: &Member<Identity>) {
        let held = self.foca.iter_membership_state().any(|m| {
            m.id() == update.id()
                && m.state() == State::Suspect
                && m.incarnation() == update.incarnation()
        });
        if !held || self.suspecting.contains(update.id()) {
            return;
        }
        let timer = Timer::ChangeSuspectToDown {
            member_id: update.id().clone(),
            incarnation: update.incarnation(),
            token: self.timer_token,
        };
        let after = self.foca_config(self.sized_for).suspect_to_down_after;
        self.out.timers.push((SwimTimer(timer), after));
        self.suspecting.push(update.id().clone());
    }

    fn handle_whole(&mut self, data: &[u8]) -> Result<(), SwimDrop> {
        let result = self.run(|foca, rt| foca.handle_data(data, rt));
        result.map_err(Self::drop_reason)
    }

    fn drop_reason(e: foca::Error) -> SwimDrop {
        match e {
            foca::Error::DataFromOurselves => SwimDrop::FromOurselves,
            foca::Error::Decode(inner) if inner.to_string().contains("departed") => {
                SwimDrop::FromDeparted
            }
            foca::Error::Decode(inner) if inner.to_string().contains("unresolved") => {
                SwimDrop::UnresolvedSender
            }
            foca::Error::Decode(_) | foca::Error::MalformedPacket | foca::Error::DataTooBig => {
                SwimDrop::Malformed
            }
            _ => SwimDrop::Other,
        }
    }

    pub fn handle_timer(&mut self, timer: SwimTimer) {
        if self.is_stale_suspicion(&timer) {
            return;
        }
        if matches!(timer.0, Timer::PeriodicAnnounce(_)) {
            self.back_off_announce();
        }
        let probe_step = matches!(
            timer.0,
            Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. }
        );
        if let Err(e) = self.run(|foca, rt| foca.handle_timer(timer.0, rt)) {
            tracing::debug!(error = %e, "swim timer");
        }
        if probe_step {
            self.retell_suspects();
        }
    }

    /// Repeats the suspicion notice to every member this one suspects and that has not refuted
    /// yet (twice a probe period, so several times within any suspicion timeout).
    fn retell_suspects(&mut self) {
        let mut suspecting = std::mem::take(&mut self.suspecting);
        suspecting.retain(|suspect| {
            self.foca
                .iter_membership_state()
                .any(|m| m.id() == suspect && m.state() == State::Suspect)
        });
        for suspect in &suspecting {
            self.tell_suspect(suspect);
        }
        self.suspecting = suspecting;
    }

    /// foca 2.0.0 answers every expiring suspicion timer with `TurnUndead` to the suspect, even
    /// when the suspect refuted in time (the incarnation check only guards the state change), and
    /// `TurnUndead` forces the suspect to rejoin under a new identity: a false death for every
    /// refuted suspicion. Such a timer has no other effect, so it is not handed to foca.
    fn is_stale_suspicion(&self, timer: &SwimTimer) -> bool {
        let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = &timer.0
        else {
            return false;
        };
        !self.foca.iter_membership_state().any(|m| {
            m.id() == member_id && m.incarnation() == *incarnation && m.state() == State::Suspect
        })
    }

    /// Scales a timer foca asked for by Lifeguard's multiplier: while this node is slow it
    /// probes less often and waits longer before suspecting anyone.
    pub fn stretch(&self, timer: &SwimTimer, after: Duration) -> Duration {
        match timer.0 {
            Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. } => after * (1 + self.lhm),
            _ => after,
        }
    }

    /// Sends a join request to whoever listens at `addr` (its id is not known yet).
    pub fn announce(&mut self, addr: SocketAddr) {
        let target = Identity {
            id: MemberId::default(),
            incarnation: 0,
            node: Arc::from(""),
            addr,
            persistent: false,
            named: false,
        };
        if let Err(e) = self.run(|foca, rt| foca.announce(target, rt)) {
            tracing::debug!(%addr, error = %e, "announce");
        }
    }

    /// Announces to a known member (used to re-contact permanent peers while they are down).
    pub fn announce_to(&mut self, identity: Identity) {
        if let Err(e) = self.run(|foca, rt| foca.announce(identity, rt)) {
            tracing::debug!(error = %e, "announce");
        }
    }

    /// Declares a member down at once and spreads it (a newer member took its node name, or it
    /// departed).
    pub fn declare_down(&mut self, identity: Identity) {
        let update = Member::new(identity, u16::MAX, State::Down);
        if let Err(e) = self.run(|foca, rt| foca.apply_many(std::iter::once(update), true, rt)) {
            tracing::debug!(error = %e, "declare down");
        }
    }

    /// Records members as alive without any traffic (simulator warm start).
    pub fn assume_alive(&mut self, identities: Vec<Identity>) {
        let updates = identities.into_iter().map(Member::alive);
        if let Err(e) = self.run(|foca, rt| foca.apply_many(updates, false, rt)) {
            tracing::debug!(error = %e, "assume alive");
        }
    }

    /// Drops everything a departed member sends from now on.
    pub fn ban(&mut self, member: MemberId) {
        if let Ok(mut state) = self.codec.lock() {
            state.banned.insert(member);
        }
    }

    /// Leaves the ring gracefully: peers see this member down at once.
    pub fn leave(&mut self) {
        if let Err(e) = self.run(|foca, rt| foca.leave_cluster(rt)) {
            tracing::debug!(error = %e, "leave");
        }
    }

    /// Whether foca holds membership updates not yet sent as often as it wants.
    pub fn has_updates(&self) -> bool {
        self.foca.updates_backlog() > 0
    }

    /// Sends the queued membership updates to `indirect_probes` random up members.
    pub fn gossip(&mut self) {
        if let Err(e) = self.run(|foca, rt| foca.gossip(rt)) {
            tracing::debug!(error = %e, "gossip");
        }
    }

    pub fn num_up(&self) -> usize {
        self.foca.num_members()
    }

    /// Every member foca knows (not ourselves), with health.
    pub fn members(&self) -> impl Iterator<Item = (&Identity, Health)> {
        self.foca.iter_membership_state().map(|m| {
            let health = match m.state() {
                State::Alive => Health::Alive,
                State::Suspect => Health::Suspect,
                State::Down => Health::Confirmed,
            };
            (m.id(), health)
        })
    }

    pub fn up_members(&self) -> impl Iterator<Item = &Identity> {
        self.foca.iter_members().map(|m| m.id())
    }

    pub fn take_output(&mut self) -> SwimOutput {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use foca::Codec;

    fn identity(n: u8, incarnation: u64) -> Identity {
        Identity {
            id: MemberId([n; 16]),
            incarnation,
            node: Arc::from(format!("n{n}").as_str()),
            addr: SocketAddr::from(([127, 0, 0, n], 9638)),
            persistent: false,
            named: true,
        }
    }

    /// A datagram from `src` to `dst` carrying one membership update about `about`.
    fn update(src: &Identity, dst: &Identity, about: Member<Identity>) -> Vec<u8> {
        let mut codec = WireCodec {
            state: Arc::new(Mutex::new(CodecState::default())),
        };
        let mut buf = Vec::new();
        let header = Header {
            src: src.clone(),
            src_incarnation: 0,
            dst: dst.clone(),
            message: Message::Gossip,
        };
        codec.encode_header(&header, &mut buf).unwrap();
        buf.put_u16(1);
        codec.encode_member(&about, &mut buf).unwrap();
        buf
    }

    fn health_of(m: &Membership, who: &Identity) -> Health {
        m.members().find(|(i, _)| *i == who).unwrap().1
    }

    #[test]
    fn health_follows_swim_precedence() {
        let (me, peer, x) = (identity(1, 10), identity(2, 10), identity(3, 10));
        let mut m = Membership::new(me.clone(), SwimConfig::lan(), 7);
        m.assume_alive(vec![peer.clone(), x.clone()]);
        let mut apply = |inc, state| {
            let bytes = update(&peer, &me, Member::new(x.clone(), inc, state));
            m.handle_data(&bytes).unwrap();
            health_of(&m, &x)
        };
        // Same incarnation: Suspect outranks Alive.
        assert_eq!(apply(0, State::Suspect), Health::Suspect);
        assert_eq!(apply(0, State::Alive), Health::Suspect);
        // A higher incarnation refutes the suspicion.
        assert_eq!(apply(1, State::Alive), Health::Alive);
        // Down outranks everything for this identity, whatever the incarnation.
        assert_eq!(apply(1, State::Down), Health::Confirmed);
        assert_eq!(apply(9, State::Alive), Health::Confirmed);
    }

    /// Seeds 1424 and 4014: we held a member down, then heard its renewed identity declared
    /// down too. foca reports only a rename; the new identity must not come out up.
    #[test]
    fn a_renamed_member_that_is_down_under_both_identities_stays_down() {
        let (me, peer) = (identity(1, 10), identity(2, 10));
        let (old, renewed) = (identity(3, 10), identity(3, 11));
        let mut m = Membership::new(me.clone(), SwimConfig::lan(), 7);
        m.assume_alive(vec![peer.clone(), old.clone()]);
        m.handle_data(&update(
            &peer,
            &me,
            Member::new(old.clone(), 0, State::Down),
        ))
        .unwrap();
        m.take_output();
        m.handle_data(&update(
            &peer,
            &me,
            Member::new(renewed.clone(), 0, State::Down),
        ))
        .unwrap();
        let events = m.take_output().events;
        assert!(
            events.contains(&MembershipEvent::Down(renewed.clone())),
            "{events:?}"
        );
        assert!(
            !events.contains(&MembershipEvent::Up(renewed.clone())),
            "{events:?}"
        );
        assert_eq!(health_of(&m, &renewed), Health::Confirmed);
        // Renewed and alive: it comes out up.
        let again = identity(3, 12);
        m.handle_data(&update(
            &peer,
            &me,
            Member::new(again.clone(), 0, State::Alive),
        ))
        .unwrap();
        assert!(m.take_output().events.contains(&MembershipEvent::Up(again)));
    }

    /// Members that predate the `named` flag relay identities without it: the copy with the
    /// flag is kept, and swapping one copy for the other is no restart (no Down).
    #[test]
    fn a_relayed_copy_without_the_named_flag_is_the_same_member() {
        let (me, peer, x) = (identity(1, 10), identity(2, 10), identity(3, 10));
        let stripped = Identity {
            named: false,
            ..x.clone()
        };
        let mut m = Membership::new(me.clone(), SwimConfig::lan(), 7);
        m.assume_alive(vec![peer.clone(), stripped.clone()]);
        m.take_output();
        m.handle_data(&update(&peer, &me, Member::alive(x.clone())))
            .unwrap();
        let events = m.take_output().events;
        assert_eq!(events, vec![MembershipEvent::Up(x.clone())]);
        assert_eq!(health_of(&m, &x), Health::Alive);
        m.handle_data(&update(&peer, &me, Member::alive(stripped.clone())))
            .unwrap();
        assert_eq!(m.take_output().events, vec![], "the stripped copy loses");
        assert!(m.members().any(|(i, _)| *i == x), "the flagged copy stays");
        assert!(!m.members().any(|(i, _)| *i == stripped));
    }

    #[test]
    fn an_identity_incarnation_above_the_bound_is_refused_on_receipt() {
        let mut codec = WireCodec {
            state: Arc::new(Mutex::new(CodecState::default())),
        };
        for (incarnation, ok) in [
            (crate::gossip::member::MAX_INCARNATION, true),
            (crate::gossip::member::MAX_INCARNATION + 1, false),
            (u64::MAX, false),
        ] {
            let id = Identity {
                incarnation,
                ..identity(4, 1)
            };
            let mut buf = Vec::new();
            codec
                .encode_member(&Member::new(id, 0, State::Alive), &mut buf)
                .unwrap();
            assert_eq!(codec.decode_member(&buf[..]).is_ok(), ok, "{incarnation}");
        }
    }

    #[test]
    fn identities_round_trip_through_the_codec() {
        let mut codec = WireCodec {
            state: Arc::new(Mutex::new(CodecState::default())),
        };
        for (addr, persistent, named) in [
            ("127.0.0.1:9638", false, true),
            ("127.0.0.1:4000", true, false),
            ("[::1]:9638", false, false),
            ("[::1]:4000", true, true),
        ] {
            let id = Identity {
                addr: addr.parse().unwrap(),
                persistent,
                named,
                ..identity(4, 1_790_000_000)
            };
            let mut buf = Vec::new();
            codec
                .encode_member(&Member::new(id.clone(), 3, State::Suspect), &mut buf)
                .unwrap();
            let back = codec.decode_member(&buf[..]).unwrap();
            assert_eq!(back.id(), &id);
            assert_eq!((back.id().persistent, back.id().named), (persistent, named));
            assert_eq!((back.incarnation(), back.state()), (3, State::Suspect));
        }
    }

    #[test]
    fn an_expired_suspicion_that_was_refuted_does_not_force_a_rejoin() {
        let (me, x) = (identity(1, 10), identity(3, 10));
        let mut m = Membership::new(me, SwimConfig::lan(), 7);
        m.assume_alive(vec![x.clone()]);
        let stale = SwimTimer(Timer::ChangeSuspectToDown {
            member_id: x.clone(),
            incarnation: 0,
            token: 0,
        });
        assert!(m.is_stale_suspicion(&stale), "x is alive, not suspect");
        m.take_output();
        m.handle_timer(stale);
        assert!(m.take_output().sends.is_empty(), "no TurnUndead is sent");
    }

    /// Whether `out` holds a Gossip to `x` naming `x` Suspect.
    fn tells_suspect(out: &SwimOutput, x: &Identity) -> bool {
        out.sends.iter().any(|(to, bytes)| {
            let mut codec = WireCodec {
                state: Arc::new(Mutex::new(CodecState {
                    me: Some(x.clone()),
                    ..CodecState::default()
                })),
            };
            let mut buf = &bytes[..];
            let header = codec.decode_header(&mut buf).unwrap();
            if *to != x.addr || header.message != Message::Gossip || buf.len() <= 2 {
                return false;
            }
            buf.advance(2);
            let update = codec.decode_member(&mut buf).unwrap();
            update.id() == x && update.state() == State::Suspect
        })
    }

    #[test]
    fn a_suspect_that_talks_to_us_unrefuted_is_told_until_it_refutes() {
        let (me, peer, x) = (identity(1, 10), identity(2, 10), identity(3, 10));
        let mut m = Membership::new(me.clone(), SwimConfig::lan(), 7);
        m.assume_alive(vec![peer.clone(), x.clone()]);
        // Someone else suspected x (we hold no timer for it).
        let bytes = update(&peer, &me, Member::new(x.clone(), 0, State::Suspect));
        m.handle_data(&bytes).unwrap();
        m.take_output();
        let ping = |incarnation: u16| {
            let mut codec = WireCodec {
                state: Arc::new(Mutex::new(CodecState::default())),
            };
            let header = Header {
                src: x.clone(),
                src_incarnation: incarnation,
                dst: me.clone(),
                message: Message::Ping(1),
            };
            let mut buf = Vec::new();
            codec.encode_header(&header, &mut buf).unwrap();
            buf
        };
        m.handle_data(&ping(0)).unwrap();
        assert!(
            tells_suspect(&m.take_output(), &x),
            "x has not refuted: tell it"
        );
        assert_eq!(health_of(&m, &x), Health::Suspect);
        m.handle_data(&ping(1)).unwrap();
        assert!(
            !tells_suspect(&m.take_output(), &x),
            "x refuted: nothing to tell"
        );
        assert_eq!(health_of(&m, &x), Health::Alive);
    }

    /// A ring of `me`, `peer` and `others` more members, all alive, nothing queued.
    fn quiet_ring(others: u8) -> (Membership, Identity, Identity) {
        let (me, peer) = (identity(1, 10), identity(2, 10));
        let mut m = Membership::new(me.clone(), SwimConfig::lan(), 7);
        let mut members = vec![peer.clone()];
        members.extend((0..others).map(|i| identity(10 + i, 10)));
        m.assume_alive(members);
        m.take_output();
        assert!(!m.has_updates());
        (m, me, peer)
    }

    #[test]
    fn a_heard_suspicion_or_refutation_is_applied_but_not_passed_on() {
        let (mut m, me, peer) = quiet_ring(5);
        let x = identity(10, 10);
        m.handle_data(&update(
            &peer,
            &me,
            Member::new(x.clone(), 0, State::Suspect),
        ))
        .unwrap();
        assert_eq!(health_of(&m, &x), Health::Suspect);
        assert!(!m.has_updates(), "a suspicion is not gossiped on");
        m.handle_data(&update(&peer, &me, Member::new(x.clone(), 1, State::Alive)))
            .unwrap();
        assert_eq!(health_of(&m, &x), Health::Alive);
        assert!(!m.has_updates(), "nor is its refutation");
    }

    #[test]
    fn a_down_member_and_a_new_member_are_passed_on() {
        let (mut m, me, peer) = quiet_ring(5);
        m.handle_data(&update(
            &peer,
            &me,
            Member::new(identity(10, 10), 0, State::Down),
        ))
        .unwrap();
        assert!(m.has_updates(), "a confirmed death is gossiped on");
        let (mut m, me, peer) = quiet_ring(5);
        m.handle_data(&update(&peer, &me, Member::alive(identity(40, 10))))
            .unwrap();
        assert!(m.has_updates(), "a join is gossiped on");
    }

    /// The datagrams in `out` that go to `to` as a Gossip, with the incarnation their header
    /// gives the sender.
    fn gossip_to(out: &SwimOutput, to: &Identity) -> Vec<u16> {
        out.sends
            .iter()
            .filter(|(addr, _)| *addr == to.addr)
            .filter_map(|(_, bytes)| {
                let mut codec = WireCodec {
                    state: Arc::new(Mutex::new(CodecState {
                        me: Some(to.clone()),
                        ..CodecState::default()
                    })),
                };
                let header = codec.decode_header(&bytes[..]).unwrap();
                (header.message == Message::Gossip).then_some(header.src_incarnation)
            })
            .collect()
    }

    #[test]
    fn a_suspected_member_answers_whoever_told_it_directly() {
        // Among 50 members, foca's own refutation gossip (3 random members) seldom hits the
        // teller: the direct answer must.
        let (mut m, me, peer) = quiet_ring(48);
        m.handle_data(&update(
            &peer,
            &me,
            Member::new(me.clone(), 0, State::Suspect),
        ))
        .unwrap();
        let answers = gossip_to(&m.take_output(), &peer);
        assert!(
            answers.iter().any(|&incarnation| incarnation >= 1),
            "the teller gets our refuting incarnation: {answers:?}"
        );
    }

    #[test]
    fn a_heard_suspicion_is_timed_and_told_to_the_suspect_here_too() {
        let (mut m, me, peer) = quiet_ring(5);
        let x = identity(10, 10);
        m.handle_data(&update(
            &peer,
            &me,
            Member::new(x.clone(), 0, State::Suspect),
        ))
        .unwrap();
        let out = m.take_output();
        let timer = out
            .timers
            .into_iter()
            .find(|(t, _)| matches!(&t.0, Timer::ChangeSuspectToDown { member_id, .. } if *member_id == x))
            .expect("a suspicion timer for x")
            .0;
        // A probe step tells x again while it has not refuted.
        m.handle_timer(SwimTimer(Timer::ProbeRandomMember(0)));
        assert!(
            tells_suspect(&m.take_output(), &x),
            "x is told again on a probe step"
        );
        // x never answers: this member declares it down itself.
        m.handle_timer(timer);
        assert_eq!(health_of(&m, &x), Health::Confirmed);
    }

    /// Member `n` of a two-member exchange; `v2`: whether it uses the compact wire.
    fn member(n: u8, v2: bool) -> Membership {
        let config = SwimConfig {
            wire_v2: v2,
            ..SwimConfig::lan()
        };
        Membership::new(
            identity(n, 1_790_000_000 + u64::from(n)),
            config,
            u64::from(n),
        )
    }

    /// Two members that know each other (as after a join) and a log of what they sent.
    struct Pair {
        m: [Membership; 2],
        /// (sender, SWIM message) of every datagram delivered, in order.
        sent: Vec<(usize, Vec<u8>)>,
        /// What `handle_data` returned at each receiver.
        results: Vec<(usize, Result<(), SwimDrop>)>,
        /// Probe timers each member armed and that have not fired.
        probes: [Vec<SwimTimer>; 2],
    }

    impl Pair {
        fn new(a: Membership, b: Membership) -> Pair {
            let (ia, ib) = (a.identity().clone(), b.identity().clone());
            let mut m = [a, b];
            m[0].assume_alive(vec![ib]);
            m[1].assume_alive(vec![ia]);
            Pair {
                m,
                sent: Vec::new(),
                results: Vec::new(),
                probes: [Vec::new(), Vec::new()],
            }
        }

        /// Delivers everything pending; fires each member's probe timer once when `probe`.
        fn step(&mut self, probe: bool) {
            for _ in 0..10 {
                let mut moved = false;
                for from in 0..2 {
                    let out = self.m[from].take_output();
                    let probes = out.timers.into_iter().map(|(timer, _)| timer);
                    self.probes[from]
                        .extend(probes.filter(|t| matches!(t.0, Timer::ProbeRandomMember(_))));
                    let src = self.m[from].identity().addr;
                    for (to, bytes) in out.sends {
                        moved = true;
                        let to = usize::from(self.m[1].identity().addr == to);
                        self.sent.push((from, bytes.clone()));
                        self.m[to].set_source(src);
                        let result = self.m[to].handle_data(&bytes);
                        self.results.push((to, result));
                    }
                }
                if !moved {
                    break;
                }
            }
            if probe {
                for i in 0..2 {
                    for timer in std::mem::take(&mut self.probes[i]) {
                        self.m[i].handle_timer(timer);
                    }
                }
                self.step(false);
            }
        }

        /// The last message `from` sent whose tag (without the compact bits) is `kind`.
        fn last(&self, from: usize, kind: u8) -> &[u8] {
            self.sent
                .iter()
                .rev()
                .find(|(f, bytes)| *f == from && bytes[0] & TAG_MESSAGE == kind)
                .map(|(_, bytes)| &bytes[..])
                .unwrap()
        }

        fn codec(&self, i: usize) -> std::sync::MutexGuard<'_, CodecState> {
            self.m[i].codec.lock().unwrap()
        }
    }

    #[test]
    fn compact_headers_name_a_sender_that_is_known_by_reference() {
        let mut pair = Pair::new(member(1, true), member(2, true));
        for _ in 0..4 {
            pair.step(true);
        }
        assert!(
            pair.results.iter().all(|(_, r)| r.is_ok()),
            "{:?}",
            pair.results
        );
        let (a, b) = (pair.m[0].identity().clone(), pair.m[1].identity().clone());
        for (from, to) in [(0, &b), (1, &a)] {
            let ping = pair.last(from, MSG_PING);
            // tag, probe number, reference (8 + 1), foca incarnation, dst digest; no update count.
            assert_eq!(ping.len(), 1 + 1 + 9 + 1 + 4, "{ping:02x?}");
            assert_eq!(ping[0], MSG_PING | TAG_COMPACT | TAG_SRC_REF);
            assert_eq!(ping[ping.len() - DIGEST_LEN..], identity_digest(to));
            let ack = pair.last(1 - from, MSG_ACK);
            assert_eq!(ack.len(), 16, "{ack:02x?}");
        }
        // The reference resolves to the sender's whole identity: a round trip of the header.
        let ping = pair.last(0, MSG_PING).to_vec();
        let mut codec = WireCodec {
            state: Arc::clone(&pair.m[1].codec),
        };
        let header = codec.decode_header(&ping[..]).unwrap();
        assert_eq!(header.src, a);
        assert_eq!(header.dst, b);
        assert_eq!(header.message, Message::Ping(ping[1]));
    }

    #[test]
    fn a_full_identity_goes_until_the_receiver_shows_it_holds_it() {
        let mut pair = Pair::new(member(1, true), member(2, true));
        pair.step(true);
        // Neither knew the other's wire yet: both first pings are in the full form, with the
        // v2 flag in the sender's identity and the 8-byte dst prefix.
        let first = pair.sent.iter().find(|(f, _)| *f == 0).unwrap().1.clone();
        assert_eq!(first[0], MSG_PING, "{first:02x?}");
        assert_eq!(first[2 + 16 + 5] & FLAG_V2, FLAG_V2);
        for _ in 0..3 {
            pair.step(true);
        }
        assert!(pair.sent.iter().any(|(_, m)| m[0] & TAG_SRC_REF != 0));
        // Its identity renewed (a rejoin): b no longer holds a's current identity, so a names
        // itself in full again until b shows the new digest.
        let renewed = identity(1, 1_790_000_007);
        pair.m[0]
            .run(|foca, rt| foca.change_identity(renewed.clone(), rt))
            .unwrap();
        pair.codec(0).set_me(renewed.clone());
        let sent = pair.sent.len();
        let results = pair.results.len();
        for _ in 0..4 {
            pair.step(true);
        }
        let first = &pair.sent[sent..].iter().find(|(f, _)| *f == 0).unwrap().1;
        assert_eq!(first[0] & TAG_SRC_REF, 0, "{first:02x?}");
        // The renewed identity still advertises v2, from the first message that carries it.
        for (_, m) in pair.sent[sent..].iter().filter(|(f, m)| {
            *f == 0 && m[0] & TAG_SRC_REF == 0 && matches!(m[0] & TAG_MESSAGE, MSG_PING | MSG_ACK)
        }) {
            assert_eq!(m[2 + 16 + 5] & FLAG_V2, FLAG_V2, "{m:02x?}");
        }
        assert!(pair.results[results..].iter().all(|(_, r)| r.is_ok()));
        assert_eq!(pair.last(0, MSG_PING)[0] & TAG_SRC_REF, TAG_SRC_REF);
        let mut codec = WireCodec {
            state: Arc::clone(&pair.m[1].codec),
        };
        let ping = pair.last(0, MSG_PING).to_vec();
        assert_eq!(codec.decode_header(&ping[..]).unwrap().src, renewed);
    }

    #[test]
    fn an_unresolvable_reference_is_dropped_counted_and_healed() {
        let mut pair = Pair::new(member(1, true), member(2, true));
        for _ in 0..4 {
            pair.step(true);
        }
        assert_eq!(pair.last(0, MSG_PING)[0] & TAG_SRC_REF, TAG_SRC_REF);
        // b forgets a's identity (evicted from its bounded cache, say).
        pair.codec(1).identities.clear();
        let ping = pair.last(0, MSG_PING).to_vec();
        pair.m[1].set_source(pair.m[0].identity().addr);
        let result = pair.m[1].handle_data(&ping);
        assert_eq!(result, Err(SwimDrop::UnresolvedSender));
        assert_eq!(SwimDrop::UnresolvedSender.reason(), "unresolved_sender");
        // b's next header to a asks for the full identity, and a sends it.
        pair.m[1].take_output();
        let sent = pair.sent.len();
        pair.step(true);
        let ask = sent + pair.sent[sent..].iter().position(|(f, _)| *f == 1).unwrap();
        let asks = pair.sent[ask].1[0];
        assert_eq!(asks & TAG_SEND_IDENTITY, TAG_SEND_IDENTITY, "{asks:02x}");
        let answer = pair.sent[ask..]
            .iter()
            .find(|(f, _)| *f == 0)
            .map(|(_, m)| m[0])
            .unwrap();
        assert_eq!(answer & TAG_SRC_REF, 0, "{answer:02x}");
        // Healed: references again, every one resolved.
        let results = pair.results.len();
        for _ in 0..3 {
            pair.step(true);
        }
        assert!(pair.results[results..].iter().all(|(_, r)| r.is_ok()));
        assert_eq!(pair.last(0, MSG_PING)[0] & TAG_SRC_REF, TAG_SRC_REF);
    }

    /// A member that restarts keeps its id but not its cache: a peer that knew its previous
    /// life names itself in full until the new one has shown it holds it.
    #[test]
    fn a_restarted_member_is_sent_full_identities_until_it_shows_it_holds_ours() {
        let mut pair = Pair::new(member(1, true), member(2, true));
        for _ in 0..4 {
            pair.step(true);
        }
        assert_eq!(pair.last(0, MSG_PING)[0] & TAG_SRC_REF, TAG_SRC_REF);
        let a = pair.m[0].identity().clone();
        let old = pair.m[1].identity().clone();
        let config = SwimConfig::lan();
        let mut restarted = Membership::new(identity(2, old.incarnation + 1), config, 9);
        restarted.assume_alive(vec![a]);
        pair.m[1] = restarted;
        pair.probes[1].clear();
        // The restarted member speaks first (it announces as it starts): until then a
        // datagram to its previous identity is not for it, whatever the sender's form.
        let held = std::mem::take(&mut pair.probes[0]);
        let results = pair.results.len();
        pair.step(true);
        pair.probes[0].extend(held);
        for _ in 0..4 {
            pair.step(true);
        }
        assert!(
            pair.results[results..].iter().all(|(_, r)| r.is_ok()),
            "{:?}",
            &pair.results[results..]
        );
        assert_eq!(pair.last(0, MSG_PING)[0] & TAG_SRC_REF, TAG_SRC_REF);
    }

    /// A receiver that forgot everything about the sender (its identity, and that it reads
    /// compact headers) still asks, in a compact header: the reference itself shows the
    /// sender reads them. Else the sender would go on naming itself by reference for good.
    #[test]
    fn an_unresolvable_reference_heals_when_the_receiver_forgot_the_senders_wire_too() {
        let mut pair = Pair::new(member(1, true), member(2, true));
        for _ in 0..4 {
            pair.step(true);
        }
        {
            let mut b = pair.codec(1);
            b.identities.clear();
            b.v2_peers.clear();
        }
        let results = pair.results.len();
        for _ in 0..5 {
            pair.step(true);
        }
        let unresolved = pair.results[results..]
            .iter()
            .filter(|(_, r)| *r == Err(SwimDrop::UnresolvedSender))
            .count();
        // The Ping and the Ack the sender sent before our question reached it.
        assert!(unresolved <= 2, "{:?}", &pair.results[results..]);
        let settled = pair.results.len() - 8;
        assert!(pair.results[settled..].iter().all(|(_, r)| r.is_ok()));
        assert_eq!(pair.last(0, MSG_PING)[0] & TAG_SRC_REF, TAG_SRC_REF);
        assert_eq!(pair.last(1, MSG_PING)[0] & TAG_SRC_REF, TAG_SRC_REF);
    }

    #[test]
    fn a_reference_from_another_address_is_not_resolved() {
        let mut pair = Pair::new(member(1, true), member(2, true));
        for _ in 0..4 {
            pair.step(true);
        }
        let ping = pair.last(0, MSG_PING).to_vec();
        assert_eq!(ping[0] & TAG_SRC_REF, TAG_SRC_REF);
        pair.m[1].set_source(SocketAddr::from(([10, 9, 9, 9], 9638)));
        assert_eq!(
            pair.m[1].handle_data(&ping),
            Err(SwimDrop::UnresolvedSender)
        );
    }

    #[test]
    fn a_compact_header_for_someone_else_is_not_acted_on() {
        let mut pair = Pair::new(member(1, true), member(2, true));
        for _ in 0..4 {
            pair.step(true);
        }
        let mut ping = pair.last(0, MSG_PING).to_vec();
        let at = ping.len() - DIGEST_LEN;
        ping[at] ^= 1;
        pair.m[1].take_output();
        pair.m[1].set_source(pair.m[0].identity().addr);
        assert_eq!(pair.m[1].handle_data(&ping), Ok(()));
        assert!(pair.m[1].take_output().sends.is_empty(), "no Ack");
        // And b no longer counts on a holding its identity.
        let a = pair.m[0].identity().id;
        assert!(!pair.codec(1).know_me.contains_key(&a));
    }

    #[test]
    fn a_member_without_v2_and_one_with_it_talk_in_the_full_form() {
        let mut pair = Pair::new(member(1, false), member(2, true));
        for _ in 0..4 {
            pair.step(true);
        }
        assert!(pair.results.iter().all(|(_, r)| r.is_ok()));
        assert!(pair.sent.iter().all(|(_, m)| m[0] & 0xf0 == 0));
        // The old member's identity has no v2 flag; the new one's is not relayed by it.
        let ping = pair.last(0, MSG_PING);
        assert_eq!(ping[2 + 16 + 5] & FLAG_V2, 0);
        // And a member without v2 refuses a compact header, as an older one does.
        let mut v2 = Pair::new(member(3, true), member(4, true));
        for _ in 0..4 {
            v2.step(true);
        }
        let compact = v2.last(0, MSG_PING).to_vec();
        let mut old = member(4, false);
        old.set_source(v2.m[0].identity().addr);
        assert_eq!(old.handle_data(&compact), Err(SwimDrop::Malformed));
    }

    #[test]
    fn the_identity_cache_keeps_the_newest_renewal_and_stays_bounded() {
        let mut state = CodecState {
            v2: true,
            ..CodecState::default()
        };
        let old = identity(5, 10);
        let new = identity(5, 11);
        state.remember(&new, FLAG_V2, false);
        state.remember(&old, FLAG_V2, true);
        assert_eq!(
            state
                .identities
                .get(&id_prefix(&old.id))
                .map(|c| &c.identity),
            Some(&new)
        );
        let stripped = Identity {
            named: false,
            ..new.clone()
        };
        // A relayed copy of the same renewal does not replace the cached one...
        state.remember(&stripped, 0, false);
        assert_eq!(
            state
                .identities
                .get(&id_prefix(&new.id))
                .map(|c| &c.identity),
            Some(&new)
        );
        assert!(state.opens_v2(&new), "nor clears the flag");
        // ...the member itself does.
        state.remember(&stripped, 0, true);
        assert_eq!(
            state
                .identities
                .get(&id_prefix(&new.id))
                .map(|c| &c.identity),
            Some(&stripped)
        );
        assert!(!state.opens_v2(&new));
        for n in 0..(MAX_CACHED as u32 + 10) {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&n.to_be_bytes());
            id[15] = 1;
            let other = Identity {
                id: MemberId(id),
                addr: SocketAddr::from((std::net::Ipv4Addr::from(n), 9638)),
                ..identity(6, 1)
            };
            state.remember(&other, FLAG_V2, true);
        }
        assert_eq!(state.identities.len(), MAX_CACHED);
        assert_eq!(state.v2_peers.len(), MAX_CACHED);
    }

    proptest::proptest! {
        #[test]
        fn decoding_a_header_never_panics_whatever_the_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96),
            tag in proptest::prelude::any::<u8>(),
            v2 in proptest::prelude::any::<bool>(),
        ) {
            let state = CodecState {
                me: Some(identity(1, 10)),
                v2,
                source: Some(identity(2, 10).addr),
                ..CodecState::default()
            };
            let mut codec = WireCodec { state: Arc::new(Mutex::new(state)) };
            if let Ok(mut s) = codec.state.lock() {
                s.remember(&identity(2, 10), FLAG_V2, true);
            }
            let mut input = vec![tag];
            input.extend_from_slice(&bytes);
            let _ = codec.decode_header(&input[..]);
        }
    }

    #[test]
    fn a_member_whose_probe_failed_is_told_it_is_suspected() {
        let (me, x) = (identity(1, 10), identity(3, 10));
        let mut m = Membership::new(me, SwimConfig::lan(), 7);
        m.assume_alive(vec![x.clone()]);
        // x never answers: run the probe timers until the probe fails.
        let mut told = false;
        for _ in 0..20 {
            let out = m.take_output();
            told |= tells_suspect(&out, &x);
            if told {
                break;
            }
            for (timer, _) in out.timers {
                if matches!(
                    timer.0,
                    Timer::ProbeRandomMember(_) | Timer::SendIndirectProbe { .. }
                ) {
                    m.handle_timer(timer);
                }
            }
        }
        assert!(told, "the suspect should get a Gossip naming it Suspect");
        assert_eq!(health_of(&m, &x), Health::Suspect);
    }
}
