//! RC4, as MSE uses it: keyed with a 20-byte SHA-1 value, the first 1024 bytes of key
//! stream discarded. About twenty lines, so ours rather than a crate's trait churn.

/// An RC4 key stream.
#[derive(Clone)]
pub struct Rc4 {
    s: [u8; 256],
    i: u8,
    j: u8,
}

impl std::fmt::Debug for Rc4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rc4(..)")
    }
}

impl Rc4 {
    /// Plain RC4 keyed with `key` (1 to 256 bytes; an empty key is treated as one zero).
    pub fn new(key: &[u8]) -> Rc4 {
        let key: &[u8] = if key.is_empty() { &[0] } else { key };
        let mut s = [0u8; 256];
        for (i, b) in s.iter_mut().enumerate() {
            *b = i as u8;
        }
        let mut j = 0u8;
        for i in 0..256 {
            j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
            s.swap(i, usize::from(j));
        }
        Rc4 { s, i: 0, j: 0 }
    }

    /// RC4 as MSE keys it: the first 1024 bytes of key stream are thrown away.
    pub fn mse(key: &[u8; 20]) -> Rc4 {
        let mut c = Rc4::new(key);
        c.skip(1024);
        c
    }

    /// Encrypt or decrypt `data` in place (the same operation).
    #[inline]
    pub fn apply(&mut self, data: &mut [u8]) {
        let (mut i, mut j) = (self.i, self.j);
        let s = &mut self.s;
        for b in data {
            i = i.wrapping_add(1);
            let si = s[usize::from(i)];
            j = j.wrapping_add(si);
            let sj = s[usize::from(j)];
            s[usize::from(i)] = sj;
            s[usize::from(j)] = si;
            *b ^= s[usize::from(si.wrapping_add(sj))];
        }
        self.i = i;
        self.j = j;
    }

    /// Advance the key stream by `n` bytes.
    pub fn skip(&mut self, n: usize) {
        let mut scratch = [0u8; 256];
        let mut left = n;
        while left > 0 {
            let k = left.min(scratch.len());
            self.apply(&mut scratch[..k]);
            left -= k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(key: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut v = plain.to_vec();
        Rc4::new(key).apply(&mut v);
        v
    }

    /// The classic published vectors.
    #[test]
    fn known_vectors() {
        assert_eq!(
            enc(b"Key", b"Plaintext"),
            [0xBB, 0xF3, 0x16, 0xE8, 0xD9, 0x40, 0xAF, 0x0A, 0xD3]
        );
        assert_eq!(enc(b"Wiki", b"pedia"), [0x10, 0x21, 0xBF, 0x04, 0x20]);
        assert_eq!(
            enc(b"Secret", b"Attack at dawn"),
            [
                0x45, 0xA0, 0x1F, 0x64, 0x5F, 0xC3, 0x5B, 0x38, 0x35, 0x52, 0x54, 0x4B, 0x9B, 0xF5
            ]
        );
    }

    #[test]
    fn skip_equals_applying_and_chunks_do_not_matter() {
        let key = [7u8; 20];
        let mut a = Rc4::mse(&key);
        let mut b = Rc4::new(&key);
        let mut first = vec![0u8; 1024];
        b.apply(&mut first);
        let mut x = vec![0u8; 3000];
        let mut y = vec![0u8; 3000];
        a.apply(&mut x);
        for chunk in y.chunks_mut(7) {
            b.apply(chunk);
        }
        assert_eq!(x, y);
    }
}
