//! `bitpeer pipe`'s secure channel: a byte stream to a peer named only by its ed25519 public
//! key, encrypted and authenticated with the Noise protocol, plus the small formats that say
//! where such a peer listens (a ticket, and the value of its BEP 44 DHT record).
//!
//! - [`noise`]: the `Noise_NK_25519_ChaChaPoly_SHA256` handshake and framed transport. The
//!   listener's Noise static key is its ed25519 identity converted to X25519 (the birational
//!   map, as libsodium's `crypto_sign_ed25519_pk_to_curve25519`), so a connector who knows
//!   only the ed25519 key can run NK: the handshake completes only with the holder of that
//!   key's secret. The connector stays anonymous (a fresh ephemeral key per connection).
//! - [`record`]: a listener's addresses as a bencoded list of compact addresses, the value
//!   of its mutable DHT item (salt [`record::SALT`]), and the `KEY@ADDR,...` ticket.

pub mod noise;
pub mod record;

pub use noise::{NoiseError, Receiver, Sender};
pub use record::{Ticket, TicketError};
