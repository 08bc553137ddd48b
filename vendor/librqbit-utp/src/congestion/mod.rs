pub mod cubic;
// (bitpeer) LEDBAT (BEP 29 / RFC 6817).
pub mod ledbat;
pub mod tracing;

use std::time::Instant;

use crate::rtte::RttEstimator;

#[allow(unused_variables)]
pub trait CongestionController: Send + Sync + core::fmt::Debug {
    /// Returns the number of bytes that can be sent.
    fn window(&self) -> usize;

    fn sshthresh(&self) -> usize;

    fn set_mss(&mut self, mss: usize);

    fn smss(&self) -> usize;

    fn on_recovered(&mut self, new_cwnd_bytes: usize, new_sshthresh: usize);

    /// Increase the window on ACK
    fn on_ack(&mut self, now: Instant, len: usize, rtt: &RttEstimator);

    // NOT fast retransmit
    // flight_size per rfc5681
    fn on_retransmission_timeout(&mut self, now: Instant);

    fn on_enter_recovery(&mut self, now: Instant);

    fn set_remote_window(&mut self, win: usize);

    /// (bitpeer) A one-way delay sample for our packets: the
    /// `timestamp_difference_microseconds` of a packet the peer sent us (its clock at
    /// receipt of our last packet minus that packet's timestamp, modulo 2^32). Never 0 (the
    /// caller drops those: the peer had nothing to measure). Delay-based controllers
    /// (LEDBAT) use it; loss-based ones ignore it.
    fn on_delay_sample(&mut self, now: Instant, delay_us: u32) {}

    /// (bitpeer) The flight size (bytes sent and not yet ACKed) before the ACK that the
    /// next `on_ack` reports. Called right before `on_ack`; LEDBAT caps its growth with it.
    fn set_flight_size(&mut self, flight_size_before_ack: usize) {}
}
