//! The one seeded random generator of redru's tests, fuzz targets and
//! benches: SplitMix64, reproducible from a seed, with no dependency. The
//! fuzz corpus and the crash suites' seeds rely on its exact sequence.

/// A small, fast, seeded generator (SplitMix64): reproducible runs without a dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`: the same seed gives the same numbers on every machine.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    /// The next number, uniform over `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below_usize(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
    /// A count in `0..=n`, biased towards the ends: nothing, everything, or anything between.
    pub fn prefix_len(&mut self, n: usize) -> usize {
        match self.below(4) {
            0 => 0,
            1 => n,
            _ => self.below_usize(n + 1),
        }
    }
}

/// Where a workload's choices come from: a seeded [`Rng`] in the crash
/// suites, the fuzzer's bytes ([`Bytes`]) in the fuzz targets, so that the
/// fuzzer steers each operation rather than a seed.
pub trait Choices {
    /// Uniform (for an `Rng`) in `0..n`; 0 when `n` is 0.
    fn below(&mut self, n: u64) -> u64;
    /// Fills `buf`.
    fn fill(&mut self, buf: &mut [u8]);
    /// [`Choices::below`] for lengths.
    fn below_usize(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    /// True with probability `num / den` (for an `Rng`).
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
}

impl Choices for Rng {
    fn below(&mut self, n: u64) -> u64 {
        Rng::below(self, n)
    }
    fn fill(&mut self, buf: &mut [u8]) {
        Rng::fill(self, buf)
    }
}

/// Choices read from bytes, one byte per choice below 256 (two above), in
/// order; zeros once they run out (see [`Bytes::is_empty`]).
#[derive(Clone, Debug)]
pub struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    /// Choices from `data`.
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes(data)
    }
    /// Whether every byte has been used.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

impl Choices for Bytes<'_> {
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let raw =
            if n <= 256 { u64::from(self.byte()) } else { u64::from(u16::from_le_bytes([self.byte(), self.byte()])) };
        raw % n
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.byte();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_give_their_choices_in_order_then_zeros() {
        let mut c = Bytes::new(&[7, 200, 1, 0x34, 0x12]);
        assert_eq!(c.below(5), 2);
        assert!(c.chance(1, 2)); // 200 % 2 == 0, below 1
        assert_eq!(c.below_usize(3), 1);
        assert_eq!(c.below(1000), 0x1234 % 1000);
        assert!(c.is_empty());
        assert_eq!(c.below(9), 0);
    }
}
