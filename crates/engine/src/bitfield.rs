//! Sets of pieces: the wire crate's BEP 3 bitfield, shared so that what a peer sends and what
//! the engine keeps are one type.

pub use wire::Bitfield;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_clear_iterate() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0) && b.set(9) && !b.set(9) && !b.set(10));
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert!(b.clear(0) && !b.clear(0));
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), [9]);
        assert_eq!(b.count_ones(), 1);
    }
}
