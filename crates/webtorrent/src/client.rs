//! The sans-IO client of one WebSocket tracker URL, shared by every torrent that names it
//! (one socket per URL, messages routed by info-hash).
//!
//! The shell opens the socket when told ([`ClientEvent::Connect`]) and reports
//! [`TrackerClient::connected`]/[`TrackerClient::disconnected`]; it feeds received frames to
//! [`TrackerClient::handle_message`], writes what [`TrackerClient::poll_transmit`] gives, and
//! calls [`TrackerClient::handle_timeout`] at [`TrackerClient::poll_timeout`].
//!
//! Protocol rules kept here:
//! - an announce carries our own offers (asked of the shell with [`ClientEvent::WantOffers`],
//!   given back with [`TrackerClient::provide_offers`]), so we reach peers already in the
//!   swarm; `stopped` and `completed` announces carry none;
//! - an offer not answered within `offer_timeout` is dropped ([`ClientEvent::OfferExpired`]);
//! - an incoming offer is passed on at most once per remote peer and torrent, until the
//!   shell reports that peer gone ([`TrackerClient::peer_closed`]); our own peer id, unknown
//!   torrents and answers to offers we did not make (or no longer hold) are ignored;
//! - reconnects back off exponentially (reset by the first valid message); the socket is
//!   only wanted while there is a torrent.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::codec::{Announce, Answer, ClientMessage, Event, Id20, Offer, Relayed, ServerMessage};

/// Timings and bounds of the client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Offers made per announce (webtorrent: 5).
    pub offers_per_announce: usize,
    /// Our offers awaiting an answer, over all torrents.
    pub max_pending_offers: usize,
    /// How long an offer waits for its answer (webtorrent: 50 s).
    pub offer_timeout: Duration,
    /// How long the shell may take to make offers before we announce without them.
    pub offers_deadline: Duration,
    /// Announce interval until the tracker says otherwise, and the bounds put on what it says.
    pub default_interval: Duration,
    pub min_interval: Duration,
    pub max_interval: Duration,
    /// Reconnect backoff.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Remote peers whose offer we took, per torrent.
    pub max_answered_per_torrent: usize,
    /// Frames queued for the socket; beyond it the oldest announces are dropped.
    pub max_queued: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            offers_per_announce: 5,
            max_pending_offers: 50,
            offer_timeout: Duration::from_secs(50),
            offers_deadline: Duration::from_secs(15),
            default_interval: Duration::from_secs(120),
            min_interval: Duration::from_secs(30),
            max_interval: Duration::from_secs(3600),
            backoff_min: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            max_answered_per_torrent: 200,
            max_queued: 64,
        }
    }
}

/// What a torrent has done so far, sent in each announce.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub uploaded: u64,
    pub downloaded: u64,
    /// `None` while the size is unknown (a magnet without metadata).
    pub left: Option<u64>,
}

/// What the shell must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Open the WebSocket, then call `connected` or `disconnected`.
    Connect,
    /// Close the WebSocket after writing what is queued: no torrent uses it any more.
    Close,
    /// Make up to `count` WebRTC offers for this torrent and give their SDPs to
    /// `provide_offers` (an empty list is fine).
    WantOffers { info_hash: Id20, count: usize },
    /// A remote peer's offer: answer it with `send_answer` (or not).
    Offer(Relayed),
    /// The answer to our offer `offer_id`: connect the WebRTC session made for it.
    Answer(Relayed),
    /// Our offer was not answered in time (or the socket closed): drop its WebRTC session.
    OfferExpired { offer_id: Id20 },
    /// The tracker's numbers for a torrent.
    Swarm {
        info_hash: Id20,
        complete: u32,
        incomplete: u32,
    },
    /// A `failure reason` from the tracker.
    Failure {
        info_hash: Option<Id20>,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Not connected; try again at `retry_at` (if a torrent wants it).
    Down {
        retry_at: Instant,
    },
    Connecting,
    Up,
}

struct Torrent {
    progress: Progress,
    /// When the next announce is due (`None` while waiting for offers).
    due: Option<Instant>,
    /// Asked the shell for offers at this time.
    offers_asked: Option<Instant>,
    interval: Duration,
    started: bool,
    event: Option<Event>,
    answered: HashSet<Id20>,
    /// Connections that ended early (`peer_failed`), per remote peer; at
    /// [`MAX_STRIKES`] the peer is refused for this torrent: no offer of it taken, no
    /// answer of it used.
    strikes: HashMap<Id20, u8>,
}

/// Connections to one remote peer that may end early before it is refused.
pub const MAX_STRIKES: u8 = 3;

struct Pending {
    info_hash: Id20,
    made: Instant,
}

/// One tracker URL's client.
pub struct TrackerClient {
    config: ClientConfig,
    peer_id: Id20,
    link: Link,
    backoff: Duration,
    torrents: HashMap<Id20, Torrent>,
    pending: HashMap<Id20, Pending>,
    transmit: VecDeque<String>,
    events: VecDeque<ClientEvent>,
    rng: u64,
}

impl TrackerClient {
    /// `seed` makes the offer ids.
    pub fn new(peer_id: Id20, config: ClientConfig, seed: u64, now: Instant) -> Self {
        TrackerClient {
            backoff: config.backoff_min,
            config,
            peer_id,
            link: Link::Down { retry_at: now },
            torrents: HashMap::new(),
            pending: HashMap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            rng: seed | 1,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.link == Link::Up
    }

    pub fn torrents(&self) -> usize {
        self.torrents.len()
    }

    fn random_id(&mut self) -> Id20 {
        let mut id = [0u8; 20];
        for chunk in id.chunks_mut(8) {
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        id
    }

    /// Starts announcing a torrent here.
    pub fn add_torrent(&mut self, info_hash: Id20, progress: Progress, now: Instant) {
        let interval = self.config.default_interval;
        self.torrents.entry(info_hash).or_insert(Torrent {
            progress,
            due: Some(now),
            offers_asked: None,
            interval,
            started: false,
            event: Some(Event::Started),
            answered: HashSet::new(),
            strikes: HashMap::new(),
        });
    }

    /// Stops announcing a torrent: a `stopped` announce if connected; its offers expire.
    pub fn remove_torrent(&mut self, info_hash: &Id20) {
        let Some(t) = self.torrents.remove(info_hash) else {
            return;
        };
        if self.link == Link::Up && t.started {
            let msg =
                self.announce_message(*info_hash, t.progress, Some(Event::Stopped), Vec::new());
            self.queue(msg);
        }
        let gone: Vec<Id20> = self
            .pending
            .iter()
            .filter(|(_, p)| p.info_hash == *info_hash)
            .map(|(id, _)| *id)
            .collect();
        for offer_id in gone {
            self.pending.remove(&offer_id);
            self.events
                .push_back(ClientEvent::OfferExpired { offer_id });
        }
        if self.torrents.is_empty() && matches!(self.link, Link::Up | Link::Connecting) {
            self.events.push_back(ClientEvent::Close);
        }
    }

    /// New counters for a torrent (sent with its next announce).
    pub fn set_progress(&mut self, info_hash: &Id20, progress: Progress) {
        if let Some(t) = self.torrents.get_mut(info_hash) {
            t.progress = progress;
        }
    }

    /// The torrent finished downloading: a `completed` announce now.
    pub fn completed(&mut self, info_hash: &Id20, now: Instant) {
        if let Some(t) = self.torrents.get_mut(info_hash) {
            t.event = Some(Event::Completed);
            t.due = Some(now);
            t.offers_asked = None;
        }
    }

    /// The WebRTC connection to this remote peer ended: a new offer from it may be taken.
    pub fn peer_closed(&mut self, info_hash: &Id20, peer_id: &Id20) {
        if let Some(t) = self.torrents.get_mut(info_hash)
            && t.strikes.get(peer_id).copied().unwrap_or(0) < MAX_STRIKES
        {
            t.answered.remove(peer_id);
        }
    }

    /// The connection to this remote peer ended early (garbage, a protocol violation, a
    /// handshake that never came): a strike. At [`MAX_STRIKES`] the peer is refused for
    /// this torrent; before, it is as [`peer_closed`](Self::peer_closed).
    pub fn peer_failed(&mut self, info_hash: &Id20, peer_id: &Id20) {
        let cap = self.config.max_answered_per_torrent;
        if let Some(t) = self.torrents.get_mut(info_hash)
            && (t.strikes.len() < cap || t.strikes.contains_key(peer_id))
        {
            let n = t.strikes.entry(*peer_id).or_insert(0);
            *n = n.saturating_add(1);
        }
        self.peer_closed(info_hash, peer_id);
    }

    fn refused(&self, info_hash: &Id20, peer_id: &Id20) -> bool {
        self.torrents
            .get(info_hash)
            .and_then(|t| t.strikes.get(peer_id))
            .is_some_and(|n| *n >= MAX_STRIKES)
    }

    /// The socket is open.
    pub fn connected(&mut self, now: Instant) {
        self.link = Link::Up;
        for t in self.torrents.values_mut() {
            t.due = Some(now);
            t.offers_asked = None;
            if !t.started {
                t.event = Some(Event::Started);
            }
        }
    }

    /// The socket closed or could not be opened: offers expire, a reconnect is scheduled.
    pub fn disconnected(&mut self, now: Instant) {
        self.link = Link::Down {
            retry_at: now + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(self.config.backoff_max);
        self.transmit.clear();
        for (offer_id, _) in self.pending.drain() {
            self.events
                .push_back(ClientEvent::OfferExpired { offer_id });
        }
        for t in self.torrents.values_mut() {
            t.offers_asked = None;
        }
    }

    /// A text frame from the tracker.
    pub fn handle_message(&mut self, text: &str, now: Instant) {
        let Ok(msg) = ServerMessage::decode(text) else {
            return;
        };
        self.backoff = self.config.backoff_min;
        match msg {
            ServerMessage::AnnounceReply {
                info_hash,
                interval,
                complete,
                incomplete,
            } => {
                let (min, max) = (self.config.min_interval, self.config.max_interval);
                if let Some(t) = self.torrents.get_mut(&info_hash) {
                    if let Some(secs) = interval {
                        t.interval = Duration::from_secs(u64::from(secs)).clamp(min, max);
                        if t.offers_asked.is_none() {
                            t.due = Some(now + t.interval);
                        }
                    }
                    self.events.push_back(ClientEvent::Swarm {
                        info_hash,
                        complete,
                        incomplete,
                    });
                }
            }
            ServerMessage::Offer(r) => {
                if r.peer_id == self.peer_id {
                    return;
                }
                let max = self.config.max_answered_per_torrent;
                let Some(t) = self.torrents.get_mut(&r.info_hash) else {
                    return;
                };
                if t.answered.len() >= max || !t.answered.insert(r.peer_id) {
                    return;
                }
                self.events.push_back(ClientEvent::Offer(r));
            }
            ServerMessage::Answer(r) => {
                if r.peer_id == self.peer_id
                    || self.pending.get(&r.offer_id).map(|p| p.info_hash) != Some(r.info_hash)
                {
                    return;
                }
                self.pending.remove(&r.offer_id);
                if self.refused(&r.info_hash, &r.peer_id) {
                    self.events.push_back(ClientEvent::OfferExpired {
                        offer_id: r.offer_id,
                    });
                    return;
                }
                self.events.push_back(ClientEvent::Answer(r));
            }
            ServerMessage::Failure { info_hash, reason } => {
                self.events
                    .push_back(ClientEvent::Failure { info_hash, reason });
            }
            ServerMessage::Other => {}
        }
    }

    /// The SDPs of the offers asked for with `WantOffers` (at most the count asked; more
    /// are ignored). Returns their offer ids, in order; the announce is queued.
    pub fn provide_offers(
        &mut self,
        info_hash: &Id20,
        sdps: Vec<String>,
        now: Instant,
    ) -> Vec<Id20> {
        let Some(t) = self.torrents.get(info_hash) else {
            return Vec::new();
        };
        if t.offers_asked.is_none() || self.link != Link::Up {
            return Vec::new();
        }
        let room = self
            .config
            .max_pending_offers
            .saturating_sub(self.pending.len())
            .min(self.config.offers_per_announce);
        let mut offers = Vec::new();
        for sdp in sdps.into_iter().take(room) {
            let mut offer_id = self.random_id();
            while self.pending.contains_key(&offer_id) {
                offer_id = self.random_id();
            }
            self.pending.insert(
                offer_id,
                Pending {
                    info_hash: *info_hash,
                    made: now,
                },
            );
            offers.push(Offer { offer_id, sdp });
        }
        let ids = offers.iter().map(|o| o.offer_id).collect();
        self.send_announce(*info_hash, offers, now);
        ids
    }

    fn send_announce(&mut self, info_hash: Id20, offers: Vec<Offer>, now: Instant) {
        let Some(t) = self.torrents.get_mut(&info_hash) else {
            return;
        };
        let event = t.event.take();
        t.started = true;
        t.offers_asked = None;
        t.due = Some(now + t.interval);
        let progress = t.progress;
        let msg = self.announce_message(info_hash, progress, event, offers);
        self.queue(msg);
    }

    fn announce_message(
        &self,
        info_hash: Id20,
        p: Progress,
        event: Option<Event>,
        offers: Vec<Offer>,
    ) -> String {
        ClientMessage::Announce(Announce {
            info_hash,
            peer_id: self.peer_id,
            numwant: Some(u32::try_from(self.config.offers_per_announce).unwrap_or(u32::MAX)),
            uploaded: p.uploaded,
            downloaded: p.downloaded,
            left: p.left,
            event,
            offers,
        })
        .encode()
    }

    fn queue(&mut self, msg: String) {
        if self.transmit.len() >= self.config.max_queued {
            self.transmit.pop_front();
        }
        self.transmit.push_back(msg);
    }

    /// Answers a remote peer's offer (given by a `ClientEvent::Offer`).
    pub fn send_answer(&mut self, info_hash: Id20, to_peer_id: Id20, offer_id: Id20, sdp: String) {
        if self.link != Link::Up || !self.torrents.contains_key(&info_hash) {
            return;
        }
        let msg = ClientMessage::Answer(Answer {
            info_hash,
            peer_id: self.peer_id,
            to_peer_id,
            offer_id,
            sdp,
        })
        .encode();
        self.queue(msg);
    }

    /// The next frame to write.
    pub fn poll_transmit(&mut self) -> Option<String> {
        self.transmit.pop_front()
    }

    /// The next thing for the shell to do.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let offers = self
            .pending
            .values()
            .map(|p| p.made + self.config.offer_timeout)
            .min();
        let link = match self.link {
            Link::Down { retry_at } if !self.torrents.is_empty() => Some(retry_at),
            Link::Up => self
                .torrents
                .values()
                .map(|t| match t.offers_asked {
                    Some(at) => at + self.config.offers_deadline,
                    None => t.due.unwrap_or(far()),
                })
                .min(),
            _ => None,
        };
        [offers, link].into_iter().flatten().min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let timeout = self.config.offer_timeout;
        let expired: Vec<Id20> = self
            .pending
            .iter()
            .filter(|(_, p)| now >= p.made + timeout)
            .map(|(id, _)| *id)
            .collect();
        for offer_id in expired {
            self.pending.remove(&offer_id);
            self.events
                .push_back(ClientEvent::OfferExpired { offer_id });
        }
        match self.link {
            Link::Down { retry_at } if now >= retry_at && !self.torrents.is_empty() => {
                self.link = Link::Connecting;
                self.events.push_back(ClientEvent::Connect);
            }
            Link::Up => {
                let deadline = self.config.offers_deadline;
                let count = self.config.offers_per_announce;
                let mut late = Vec::new();
                for (ih, t) in &mut self.torrents {
                    match t.offers_asked {
                        // The shell did not make offers in time: announce without.
                        Some(at) if now >= at + deadline => late.push(*ih),
                        Some(_) => {}
                        None if t.due.is_some_and(|d| now >= d) => {
                            if matches!(t.event, Some(Event::Completed | Event::Stopped)) {
                                late.push(*ih);
                            } else {
                                t.offers_asked = Some(now);
                                self.events.push_back(ClientEvent::WantOffers {
                                    info_hash: *ih,
                                    count,
                                });
                            }
                        }
                        None => {}
                    }
                }
                for ih in late {
                    self.send_announce(ih, Vec::new(), now);
                }
            }
            _ => {}
        }
    }
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IH: Id20 = [0xaa; 20];
    const ME: Id20 = [0x01; 20];

    fn up(now: Instant) -> TrackerClient {
        let mut c = TrackerClient::new(ME, ClientConfig::default(), 5, now);
        c.add_torrent(IH, Progress::default(), now);
        c.handle_timeout(now);
        assert_eq!(c.poll_event(), Some(ClientEvent::Connect));
        c.connected(now);
        c
    }

    fn sent(c: &mut TrackerClient) -> Vec<ClientMessage> {
        std::iter::from_fn(|| c.poll_transmit())
            .map(|t| ClientMessage::decode(&t).unwrap())
            .collect()
    }

    #[test]
    fn announces_with_offers_and_takes_their_answer_once() {
        let t = Instant::now();
        let mut c = up(t);
        c.handle_timeout(t);
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::WantOffers {
                info_hash: IH,
                count: 5
            })
        );
        let ids = c.provide_offers(&IH, vec!["a".into(), "b".into()], t);
        assert_eq!(ids.len(), 2);
        let msgs = sent(&mut c);
        let [ClientMessage::Announce(a)] = &msgs[..] else {
            panic!("{msgs:?}")
        };
        assert_eq!(a.event, Some(Event::Started));
        assert_eq!(a.offers.len(), 2);
        assert_eq!(a.offers[0].offer_id, ids[0]);
        let answer = |offer_id, peer| {
            ServerMessage::Answer(Relayed {
                info_hash: IH,
                peer_id: [peer; 20],
                offer_id,
                sdp: "ans".into(),
            })
            .encode()
        };
        // An answer to an offer we did not make: ignored.
        c.handle_message(&answer([9; 20], 7), t);
        assert_eq!(c.poll_event(), None);
        c.handle_message(&answer(ids[0], 7), t);
        assert!(matches!(c.poll_event(), Some(ClientEvent::Answer(r)) if r.offer_id == ids[0]));
        c.handle_message(&answer(ids[0], 7), t);
        assert_eq!(c.poll_event(), None);
        // The other offer expires.
        let later = t + Duration::from_secs(51);
        assert!(c.poll_timeout().unwrap() <= later);
        c.handle_timeout(later);
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::OfferExpired { offer_id: ids[1] })
        );
    }

    #[test]
    fn one_answer_per_remote_peer() {
        let t = Instant::now();
        let mut c = up(t);
        let offer = |peer: u8, id: u8, ih: Id20| {
            ServerMessage::Offer(Relayed {
                info_hash: ih,
                peer_id: [peer; 20],
                offer_id: [id; 20],
                sdp: "o".into(),
            })
            .encode()
        };
        c.handle_message(&offer(7, 1, IH), t);
        assert!(matches!(c.poll_event(), Some(ClientEvent::Offer(_))));
        c.handle_message(&offer(7, 2, IH), t);
        c.handle_message(&offer(1, 3, IH), t); // our own
        c.handle_message(&offer(8, 4, [0xbb; 20]), t); // unknown torrent
        assert_eq!(c.poll_event(), None);
        c.peer_closed(&IH, &[7; 20]);
        c.handle_message(&offer(7, 5, IH), t);
        assert!(matches!(c.poll_event(), Some(ClientEvent::Offer(_))));
        c.send_answer(IH, [7; 20], [5; 20], "ans".into());
        let msgs = sent(&mut c);
        assert!(
            matches!(&msgs[..], [ClientMessage::Answer(a)] if a.to_peer_id == [7; 20] && a.peer_id == ME)
        );
    }

    #[test]
    fn a_peer_whose_connections_fail_three_times_is_refused() {
        let t = Instant::now();
        let mut c = up(t);
        let offer = |id: u8| {
            ServerMessage::Offer(Relayed {
                info_hash: IH,
                peer_id: [7; 20],
                offer_id: [id; 20],
                sdp: "o".into(),
            })
            .encode()
        };
        for i in 0..MAX_STRIKES {
            c.handle_message(&offer(i), t);
            assert!(matches!(c.poll_event(), Some(ClientEvent::Offer(_))), "{i}");
            c.peer_failed(&IH, &[7; 20]);
        }
        // Struck out: its offers are not taken, its answer to our offer is not used.
        c.handle_message(&offer(9), t);
        c.peer_closed(&IH, &[7; 20]);
        c.handle_message(&offer(10), t);
        assert_eq!(c.poll_event(), None);
        c.handle_timeout(t);
        assert!(matches!(
            c.poll_event(),
            Some(ClientEvent::WantOffers { .. })
        ));
        let ids = c.provide_offers(&IH, vec!["a".into()], t);
        let answer = ServerMessage::Answer(Relayed {
            info_hash: IH,
            peer_id: [7; 20],
            offer_id: ids[0],
            sdp: "ans".into(),
        });
        c.handle_message(&answer.encode(), t);
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::OfferExpired { offer_id: ids[0] })
        );
        // Another peer is still taken.
        c.handle_message(
            &ServerMessage::Offer(Relayed {
                info_hash: IH,
                peer_id: [8; 20],
                offer_id: [11; 20],
                sdp: "o".into(),
            })
            .encode(),
            t,
        );
        assert!(matches!(c.poll_event(), Some(ClientEvent::Offer(_))));
    }

    #[test]
    fn reconnects_with_backoff_and_announces_again() {
        let t = Instant::now();
        let mut c = up(t);
        c.disconnected(t);
        c.handle_timeout(t + Duration::from_secs(4));
        assert_eq!(c.poll_event(), None);
        assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(5)));
        c.handle_timeout(t + Duration::from_secs(5));
        assert_eq!(c.poll_event(), Some(ClientEvent::Connect));
        let t2 = t + Duration::from_secs(5);
        c.disconnected(t2);
        // Doubled.
        assert_eq!(c.poll_timeout(), Some(t2 + Duration::from_secs(10)));
        c.handle_timeout(t2 + Duration::from_secs(10));
        assert_eq!(c.poll_event(), Some(ClientEvent::Connect));
        let t3 = t2 + Duration::from_secs(10);
        c.connected(t3);
        c.handle_timeout(t3);
        assert!(matches!(
            c.poll_event(),
            Some(ClientEvent::WantOffers { .. })
        ));
        // The shell makes no offers: after the deadline the announce goes without.
        c.handle_timeout(t3 + Duration::from_secs(15));
        let msgs = sent(&mut c);
        assert!(
            matches!(&msgs[..], [ClientMessage::Announce(a)] if a.offers.is_empty() && a.event == Some(Event::Started))
        );
        // The tracker's interval is used, within bounds.
        let reply = ServerMessage::AnnounceReply {
            info_hash: IH,
            interval: Some(1),
            complete: 1,
            incomplete: 2,
        };
        c.handle_message(&reply.encode(), t3 + Duration::from_secs(15));
        assert_eq!(c.poll_timeout(), Some(t3 + Duration::from_secs(45)));
        // Removing the last torrent says stopped and closes.
        c.remove_torrent(&IH);
        let msgs = sent(&mut c);
        assert!(
            matches!(&msgs[..], [ClientMessage::Announce(a)] if a.event == Some(Event::Stopped))
        );
        assert!(matches!(
            c.poll_event(),
            Some(ClientEvent::Swarm { complete: 1, .. })
        ));
        assert_eq!(c.poll_event(), Some(ClientEvent::Close));
    }
}
