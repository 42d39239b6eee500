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
