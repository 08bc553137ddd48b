//! The choker (sans-IO): which interested peers we upload to (BEP 3 "choking and
//! optimistic unchoking").
//!
//! Every 10 s the regular slots go to the interested peers that gave us the most data in
//! the last interval (tit-for-tat) — or, once we are seeding, to those we uploaded the most
//! to, which favours peers that can take data fast. Every 30 s one more interested peer,
//! chosen at random among the choked ones, gets an optimistic slot, so newcomers with
//! nothing to trade can start. Snubbed peers (no block from them for a long while) do not
//! earn a regular slot while downloading.

/// What the choker knows about one peer at a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSample<K> {
    pub key: K,
    pub interested: bool,
    /// Bytes received from the peer since the previous round.
    pub downloaded: u64,
    /// Bytes sent to the peer since the previous round.
    pub uploaded: u64,
    pub snubbed: bool,
}

pub struct Choker<K> {
    slots: usize,
    rounds: u32,
    optimistic: Option<K>,
    rng: u64,
}

/// Regular rounds per optimistic-unchoke rotation (3 x 10 s = 30 s).
const ROUNDS_PER_OPTIMISTIC: u32 = 3;

impl<K: Copy + Eq> Choker<K> {
    /// `slots` regular upload slots (plus one optimistic).
    pub fn new(slots: usize, seed: u64) -> Self {
        Choker {
            slots,
            rounds: 0,
            optimistic: None,
            rng: seed | 1,
        }
    }

    /// One round: the peers to unchoke. Everyone else is choked.
    pub fn round(&mut self, peers: &[PeerSample<K>], seeding: bool) -> Vec<K> {
        let mut ranked: Vec<&PeerSample<K>> = peers
            .iter()
            .filter(|p| p.interested && (seeding || !p.snubbed))
            .collect();
        ranked.sort_by_key(|p| std::cmp::Reverse(if seeding { p.uploaded } else { p.downloaded }));
        let mut unchoke: Vec<K> = ranked.iter().take(self.slots).map(|p| p.key).collect();

        let rotate = self.rounds.is_multiple_of(ROUNDS_PER_OPTIMISTIC)
            || !self
                .optimistic
                .is_some_and(|o| peers.iter().any(|p| p.key == o && p.interested));
        self.rounds += 1;
        if rotate {
            let choked: Vec<K> = peers
                .iter()
                .filter(|p| p.interested && !unchoke.contains(&p.key))
                .map(|p| p.key)
                .collect();
            self.optimistic = if choked.is_empty() {
                None
            } else {
                Some(choked[(self.next_random() % choked.len() as u64) as usize])
            };
        }
        if let Some(o) = self.optimistic
            && !unchoke.contains(&o)
        {
            unchoke.push(o);
        }
        unchoke
    }

    /// Change the number of regular slots (takes effect at the next round).
    pub fn set_slots(&mut self, slots: usize) {
        self.slots = slots;
    }

    /// A regular slot may be free between rounds (a peer left, or became interested):
    /// the interested, choked peer to give it to, if fewer than the slots are unchoked.
    /// Between rounds there is no rate to rank by, so the peer that gave us the most in
    /// this round (or took the most, once seeding) goes first; snubbed peers don't.
    pub fn free_slot(&self, peers: &[PeerSample<K>], unchoked: &[K]) -> Option<K> {
        let regular = unchoked
            .iter()
            .filter(|k| self.optimistic.as_ref() != Some(*k))
            .count();
        if regular >= self.slots {
            return None;
        }
        peers
            .iter()
            .filter(|p| p.interested && !p.snubbed && !unchoked.contains(&p.key))
            .max_by_key(|p| p.downloaded.max(p.uploaded))
            .map(|p| p.key)
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(key: u32, interested: bool, down: u64, up: u64) -> PeerSample<u32> {
        PeerSample {
            key,
            interested,
            downloaded: down,
            uploaded: up,
            snubbed: false,
        }
    }

    #[test]
    fn a_free_slot_goes_to_a_waiting_interested_peer() {
        let c = Choker::new(2, 1);
        let peers = vec![
            peer(1, true, 0, 0),
            peer(2, true, 500, 0),
            peer(3, false, 900, 0),
        ];
        assert_eq!(c.free_slot(&peers, &[]), Some(2));
        assert_eq!(c.free_slot(&peers, &[2]), Some(1));
        // Both regular slots taken: nothing until the next round.
        assert_eq!(c.free_slot(&peers, &[1, 2]), None);
        let mut snub = peer(4, true, 1000, 0);
        snub.snubbed = true;
        assert_eq!(c.free_slot(&[snub], &[]), None);
    }

    #[test]
    fn tit_for_tat_plus_one_optimistic() {
        let mut c = Choker::new(2, 1);
        let peers: Vec<_> = (0..6)
            .map(|i| peer(i, true, u64::from(i) * 100, 0))
            .collect();
        let u = c.round(&peers, false);
        assert_eq!(u.len(), 3);
        assert_eq!(&u[..2], &[5, 4]);
        assert!(u[2] < 4);
    }

    #[test]
    fn seeding_ranks_by_upload_and_ignores_uninterested() {
        let mut c = Choker::new(1, 1);
        let peers = vec![
            peer(1, true, 1000, 10),
            peer(2, true, 0, 500),
            peer(3, false, 0, 9999),
        ];
        let u = c.round(&peers, true);
        assert_eq!(u[0], 2);
        assert!(!u.contains(&3));
    }

    #[test]
    fn snubbed_peers_get_no_regular_slot() {
        let mut c = Choker::new(1, 1);
        let mut p = peer(1, true, 1000, 0);
        p.snubbed = true;
        let peers = vec![p, peer(2, true, 10, 0)];
        let u = c.round(&peers, false);
        assert_eq!(u[0], 2);
    }

    #[test]
    fn optimistic_slot_rotates_every_third_round() {
        let mut c = Choker::new(0, 42);
        let peers: Vec<_> = (0..50).map(|i| peer(i, true, 0, 0)).collect();
        let mut seen = std::collections::HashSet::new();
        let mut last = None;
        for round in 0..30 {
            let u = c.round(&peers, false);
            assert_eq!(u.len(), 1);
            if round % 3 != 0 {
                assert_eq!(Some(u[0]), last, "kept between rotations");
            }
            last = Some(u[0]);
            seen.insert(u[0]);
        }
        assert!(seen.len() > 3, "rotation picks different peers");
    }
}
