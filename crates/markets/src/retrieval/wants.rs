//! A bitswap peer's wants: what it asked for, in the order it asked, within the per-peer limit.
//! Bookkeeping only, no IO; the server ([`super::bitswap`]) keeps one per peer.

use std::collections::{HashMap, HashSet, VecDeque};

use cid::Cid;
use nelumbo_markets_api::bitswap::{self, WantType};

/// One want: what the peer asked for, and how urgently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub kind: WantType,
    /// Answer DONT_HAVE if the block is not here (1.2.0 only).
    pub send_dont_have: bool,
    pub priority: i32,
}

/// What one peer wants, in the order it asked. Bookkeeping only, no IO: the server keeps one
/// per peer, and the `bitswap_wantlist` fuzz target drives it with decoded messages.
#[derive(Debug, Default)]
pub struct Wants {
    wants: HashMap<Cid, Want>,
    /// Arrival order. A cancelled want's place stays until it is dropped in passing (see
    /// [`Self::drop_stale_places`]), so a cancel costs nothing.
    order: VecDeque<Cid>,
}

/// What one wantlist did to a peer's wants.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Every entry is one of these four: a cancel, a want of either kind, or invalid.
    pub cancels: u64,
    pub blocks: u64,
    pub haves: u64,
    /// Not a CID, or a CID longer than [`bitswap::MAX_CID_BYTES`].
    pub invalid: u64,
    /// New wants (counted in `blocks` or `haves`) refused: the peer holds the most it may.
    pub over_limit: u64,
}

impl Applied {
    /// Entries refused, for whatever reason.
    pub fn dropped(&self) -> u64 {
        self.invalid + self.over_limit
    }
}

impl Wants {
    /// Wants waiting to be answered.
    pub fn len(&self) -> usize {
        self.wants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wants.is_empty()
    }

    /// Places held in the arrival order: live wants and cancelled ones not yet dropped.
    /// Never more than `2 * len() + 64` once a wantlist is applied.
    pub fn places(&self) -> usize {
        self.order.len()
    }

    pub fn clear(&mut self) {
        self.wants.clear();
        self.order.clear();
    }

    /// Applies a peer's wantlist: a full list replaces the wants, entries add, update or cancel
    /// one. At most `max_wants` wants are held; `presences` says whether the peer's protocol
    /// carries DONT_HAVE (1.2.0).
    pub fn apply(
        &mut self,
        wantlist: bitswap::Wantlist,
        presences: bool,
        max_wants: usize,
    ) -> Applied {
        let mut applied = Applied::default();
        if wantlist.full {
            self.clear();
        }
        for entry in wantlist.entries {
            if entry.block.len() > bitswap::MAX_CID_BYTES {
                applied.invalid += 1;
                continue;
            }
            let Ok(cid) = Cid::try_from(entry.block.as_slice()) else {
                applied.invalid += 1;
                continue;
            };
            if entry.cancel {
                applied.cancels += 1;
                self.wants.remove(&cid);
                continue;
            }
            let kind = WantType::try_from(entry.want_type).unwrap_or(WantType::Block);
            match kind {
                WantType::Block => applied.blocks += 1,
                WantType::Have => applied.haves += 1,
            }
            let want = Want {
                kind,
                send_dont_have: entry.send_dont_have && presences,
                priority: entry.priority,
            };
            let full = self.wants.len() >= max_wants;
            match self.wants.get_mut(&cid) {
                Some(existing) => {
                    // A want-block supersedes a want-have, never the other way round.
                    if want.kind == WantType::Block {
                        existing.kind = WantType::Block;
                    }
                    existing.send_dont_have |= want.send_dont_have;
                    existing.priority = want.priority;
                }
                None if full => applied.over_limit += 1,
                None => {
                    self.wants.insert(cid, want);
                    self.order.push_back(cid);
                }
            }
        }
        // A peer that wants and cancels without end must not grow the order.
        if self.order.len() > 2 * self.wants.len() + 64 {
            self.drop_stale_places();
        }
        applied
    }

    /// Keeps one place per live want, its latest: a want cancelled and asked for again is
    /// placed where it was asked again, and its earlier places go (else a peer wanting and
    /// cancelling one CID over and over would grow the order while the CID stays wanted).
    fn drop_stale_places(&mut self) {
        let mut seen = HashSet::with_capacity(self.wants.len());
        let mut kept: Vec<Cid> = self
            .order
            .iter()
            .rev()
            .filter(|cid| self.wants.contains_key(*cid) && seen.insert(**cid))
            .copied()
            .collect();
        kept.reverse();
        self.order = kept.into();
    }

    /// The next want to answer: the highest priority, the oldest first among equals.
    pub fn take_next(&mut self) -> Option<(Cid, Want)> {
        // Every live want has a place, so equal counts mean no stale or repeated place.
        if self.order.len() != self.wants.len() {
            self.drop_stale_places();
        }
        let (index, _) = self
            .order
            .iter()
            .enumerate()
            .max_by_key(|(i, cid)| (self.wants[*cid].priority, std::cmp::Reverse(*i)))?;
        let cid = self.order.remove(index)?;
        let want = self.wants.remove(&cid)?;
        Some((cid, want))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u32) -> Cid {
        nelumbo_car::cid_v1_sha256(0x55, &n.to_le_bytes())
    }

    fn entry(n: u32, priority: i32, cancel: bool) -> bitswap::Entry {
        bitswap::Entry {
            block: cid(n).to_bytes(),
            priority,
            cancel,
            want_type: WantType::Block as i32,
            send_dont_have: true,
        }
    }

    fn wantlist(entries: Vec<bitswap::Entry>) -> bitswap::Wantlist {
        bitswap::Wantlist {
            entries,
            full: false,
        }
    }

    fn wants_with(wants: &[(u32, i32)]) -> Wants {
        let mut out = Wants::default();
        let entries = wants.iter().map(|&(n, p)| entry(n, p, false)).collect();
        out.apply(wantlist(entries), true, 1024);
        out
    }

    #[test]
    fn wants_are_answered_highest_priority_first_then_oldest_first() {
        let mut wants = wants_with(&[(1, 1), (2, 5), (3, 1), (4, 5)]);
        let applied = wants.apply(wantlist(vec![entry(4, 5, true)]), true, 1024);
        assert_eq!(applied.cancels, 1);
        let order: Vec<Cid> = std::iter::from_fn(|| wants.take_next().map(|(c, _)| c)).collect();
        assert_eq!(order, vec![cid(2), cid(1), cid(3)]);
        assert!(wants.is_empty() && wants.places() == 0);
    }

    #[test]
    fn cancelled_wants_do_not_grow_the_ledger() {
        let mut wants = wants_with(&[(0, 1)]);
        for n in 1..20_000 {
            // Want, then cancel, as a hostile peer might without end.
            wants.apply(
                wantlist(vec![entry(n, 1, false), entry(n, 1, true)]),
                true,
                1024,
            );
            assert!(wants.places() <= 2 * wants.len() + 64, "{}", wants.places());
        }
        assert_eq!(wants.take_next().map(|(c, _)| c), Some(cid(0)));
    }

    #[test]
    fn a_want_cancelled_and_asked_again_holds_one_place() {
        // The same CID wanted and cancelled over and over while it stays wanted at the end of
        // each message: its earlier places must go, or the order grows without bound.
        let mut wants = wants_with(&[(0, 1)]);
        for _ in 0..1_000 {
            let entries = vec![entry(1, 1, true), entry(1, 1, false)];
            wants.apply(wantlist(entries), true, 1024);
            assert!(wants.places() <= 2 * wants.len() + 64, "{}", wants.places());
        }
        // The re-asked want is placed where it was last asked: after 0.
        assert_eq!(wants.take_next().map(|(c, _)| c), Some(cid(0)));
        assert_eq!(wants.take_next().map(|(c, _)| c), Some(cid(1)));
        assert_eq!(wants.take_next(), None);
    }

    #[test]
    fn the_per_peer_limit_and_bad_entries_are_counted_as_dropped() {
        let mut wants = wants_with(&[(0, 1), (1, 1)]);
        let mut entries = vec![entry(2, 1, false), entry(1, 9, false)];
        entries.push(bitswap::Entry {
            block: vec![0xff; 8],
            ..entry(3, 1, false)
        });
        entries.push(bitswap::Entry {
            block: vec![0x01; bitswap::MAX_CID_BYTES + 1],
            ..entry(3, 1, false)
        });
        let applied = wants.apply(wantlist(entries), false, 2);
        // 2 is over the limit of 2 wants; 1 is an update (its priority rises), not a new want.
        assert_eq!(
            (applied.blocks, applied.invalid, applied.over_limit),
            (2, 2, 1)
        );
        assert_eq!(wants.len(), 2);
        let (first, want) = wants.take_next().expect("a want");
        assert_eq!(
            (first, want.priority, want.send_dont_have),
            (cid(1), 9, true)
        );
    }
}
