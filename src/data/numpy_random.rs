//! numpy's legacy global random stream (`np.random.seed`, `np.random.RandomState`), bit for bit.
//!
//! The original L-TAE code draws everything random from numpy's global legacy stream after a single
//! `np.random.seed(rdm_seed)` (train.py `main`): the k-fold split (`np.random.shuffle` of the sample indices,
//! spec §2.5), the pixel draw of parcels larger than `npixel` (`np.random.choice(…, replace=False)`) and the
//! Gaussian jitter (`np.random.randn`, §2.3). Reproducing that stream lets sitsgpu make the same split and, in a
//! single-process run, the same samples as the original.
//!
//! What is reproduced (numpy ≥ 1.17 `RandomState`, which kept the pre-1.17 `mtrand` stream unchanged):
//! * MT19937 with the legacy seeding `init_genrand`: `mt[0] = seed`, `mt[i] = 1812433253·(mt[i−1] ^
//!   (mt[i−1] >> 30)) + i` (mod 2³²); the first call regenerates the 624 words;
//! * `random_sample`: `(a·2²⁶ + b) / 2⁵³` with `a` = next >> 5, `b` = next >> 6;
//! * `random_interval(max)` (numpy's `distributions.c`): draw 32 bits (64 bits, high word first, when
//!   `max > 2³² − 1`) masked with the smallest all-ones mask ≥ max until the value is ≤ max;
//! * `shuffle` (lists and 1-D arrays alike): for i = n−1 down to 1, swap i with `random_interval(i)`;
//!   `permutation(n)` shuffles `arange(n)`; `choice(n, size, replace=False)` is `permutation(n)[:size]`;
//! * `standard_normal` / `randn`: `legacy_gauss`, the polar Box–Muller method that returns the second value
//!   of each pair and caches the first for the next call (the cache is part of the stream state).
//!
//! Not reproduced: `randint` (it uses numpy's own bounded-integer path), the non-legacy `Generator`.

/// numpy's legacy `RandomState` (MT19937 plus the cached Gaussian of `legacy_gauss`).
#[derive(Debug, Clone)]
pub struct NumpyRandomState {
    mt: [u32; N],
    pos: usize,
    gauss: Option<f64>,
}

/// MT19937 state length.
const N: usize = 624;
/// MT19937 middle word offset.
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

impl NumpyRandomState {
    /// `np.random.seed(seed)` / `np.random.RandomState(seed)` for an integer seed (0 ≤ seed < 2³²).
    pub fn new(seed: u32) -> Self {
        let mut mt = [0u32; N];
        mt[0] = seed;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        NumpyRandomState {
            mt,
            pos: N,
            gauss: None,
        }
    }

    /// Regenerates the 624 words (`mt19937_gen`).
    fn generate(&mut self) {
        let twist = |a: u32, b: u32, c: u32| {
            let y = (a & UPPER_MASK) | (b & LOWER_MASK);
            c ^ (y >> 1) ^ if y & 1 == 1 { MATRIX_A } else { 0 }
        };
        for i in 0..N {
            self.mt[i] = twist(self.mt[i], self.mt[(i + 1) % N], self.mt[(i + M) % N]);
        }
        self.pos = 0;
    }

    /// The next 32 random bits (`genrand_int32`, tempered).
    pub fn next_u32(&mut self) -> u32 {
        if self.pos == N {
            self.generate();
        }
        let mut y = self.mt[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// The next 64 random bits: the first 32-bit word is the high half (numpy's `mt19937_next64`).
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        let lo = self.next_u32() as u64;
        (hi << 32) | lo
    }

    /// `np.random.random_sample()`: uniform in [0, 1) with 53 random bits.
    pub fn random_sample(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }

    /// numpy's `random_interval(max)`: uniform in 0..=max by masked rejection (0 without drawing for max = 0).
    pub fn random_interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        // Smallest all-ones mask >= max.
        let mask = u64::MAX >> max.leading_zeros();
        if max <= u32::MAX as u64 {
            loop {
                let v = self.next_u32() as u64 & mask;
                if v <= max {
                    return v;
                }
            }
        }
        loop {
            let v = self.next_u64() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `np.random.shuffle(x)` for a list or a 1-D array (the same stream for both).
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.random_interval(i as u64) as usize;
            x.swap(i, j);
        }
    }

    /// `np.random.permutation(n)`: a shuffled `arange(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        self.shuffle(&mut v);
        v
    }

    /// Legacy `np.random.choice(n, size, replace=False)` (also `choice(list(range(n)), …)`):
    /// `permutation(n)[:size]`. Panics when `size > n`, as numpy raises.
    pub fn choice_without_replacement(&mut self, n: usize, size: usize) -> Vec<usize> {
        assert!(
            size <= n,
            "choice_without_replacement: cannot take a larger sample ({size}) than the population ({n}) \
             without replacement"
        );
        let mut v = self.permutation(n);
        v.truncate(size);
        v
    }

    /// `np.random.standard_normal()` (`legacy_gauss`): polar Box–Muller; every other call returns the value
    /// cached by the previous one.
    pub fn standard_normal(&mut self) -> f64 {
        if let Some(g) = self.gauss.take() {
            return g;
        }
        loop {
            let x1 = 2.0 * self.random_sample() - 1.0;
            let x2 = 2.0 * self.random_sample() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.gauss = Some(f * x1);
                return f * x2;
            }
        }
    }

    /// `np.random.randn(*shape)` into `out` (row-major, C order).
    pub fn fill_standard_normal(&mut self, out: &mut [f64]) {
        for v in out {
            *v = self.standard_normal();
        }
    }
}

#[cfg(test)]
mod tests {
    //! Expected values printed by numpy 2.4.6 (`python3 -c "import numpy as np; …"`, the snippet in each
    //! comment); the legacy stream is the same in every numpy since 1.17 (and in mtrand before it).
    use super::*;

    #[test]
    fn raw_words_match_mt19937() {
        // bg = np.random.MT19937(); bg._legacy_seeding(s); bg.random_raw(5)
        let mut r = NumpyRandomState::new(5489);
        let want = [3499211612u32, 581869302, 3890346734, 3586334585, 545404204];
        assert_eq!([0; 5].map(|_| r.next_u32()), want);
        let mut r = NumpyRandomState::new(0);
        let want = [
            2357136044u32,
            2546248239,
            3071714933,
            3626093760,
            2588848963,
        ];
        assert_eq!([0; 5].map(|_| r.next_u32()), want);
        // np.random.RandomState(5489).get_state()[1][:3] (the seeded words, before the first twist)
        let r = NumpyRandomState::new(5489);
        assert_eq!(r.mt[..3], [5489, 1301868182, 2938499221]);
        // bg.ctypes.next_uint64(bg.ctypes.state) after _legacy_seeding(0) = 0x8c7f0aac97c4aa2f: high word
        // first (2357136044 = 0x8c7f0aac, 2546248239 = 0x97c4aa2f).
        assert_eq!(NumpyRandomState::new(0).next_u64(), 0x8c7f_0aac_97c4_aa2f);
    }

    #[test]
    fn random_sample_matches_numpy() {
        // np.random.RandomState(s).random_sample(3)
        let cases: [(u32, [f64; 3]); 3] = [
            (
                0,
                [0.5488135039273248, 0.7151893663724195, 0.6027633760716439],
            ),
            (
                1,
                [
                    0.417022004702574,
                    0.7203244934421581,
                    0.00011437481734488664,
                ],
            ),
            (
                42,
                [0.3745401188473625, 0.9507143064099162, 0.7319939418114051],
            ),
        ];
        for (seed, want) in cases {
            let mut r = NumpyRandomState::new(seed);
            assert_eq!([0; 3].map(|_| r.random_sample()), want, "seed {seed}");
        }
    }

    #[test]
    fn permutation_and_choice_match_numpy() {
        // list(np.random.RandomState(s).permutation(10))
        for (seed, want) in [
            (0, [2, 8, 4, 9, 1, 6, 7, 3, 0, 5]),
            (1, [2, 9, 6, 4, 0, 3, 1, 7, 8, 5]),
            (42, [8, 1, 5, 0, 7, 2, 9, 4, 3, 6]),
        ] {
            assert_eq!(NumpyRandomState::new(seed).permutation(10), want);
        }
        // list(np.random.RandomState(s).permutation(1000)[:10])
        for (seed, want) in [
            (0, [993, 859, 298, 553, 672, 971, 27, 231, 306, 706]),
            (1, [507, 818, 452, 368, 242, 929, 262, 810, 318, 49]),
        ] {
            assert_eq!(NumpyRandomState::new(seed).permutation(1000)[..10], want);
        }
        // list(np.random.RandomState(3).choice(200, 64, replace=False)[:8])
        let c = NumpyRandomState::new(3).choice_without_replacement(200, 64);
        assert_eq!(c.len(), 64);
        assert_eq!(c[..8], [40, 51, 139, 197, 170, 82, 183, 46]);
        assert_eq!(
            NumpyRandomState::new(3).choice_without_replacement(5, 0),
            Vec::<usize>::new()
        );
    }

    #[test]
    #[should_panic(expected = "larger sample")]
    fn choice_larger_than_the_population_panics() {
        NumpyRandomState::new(0).choice_without_replacement(3, 4);
    }

    #[test]
    fn randn_matches_numpy() {
        // np.random.RandomState(s).randn(5)
        for (seed, want) in [
            (
                0,
                [
                    1.764052345967664,
                    0.4001572083672233,
                    0.9787379841057392,
                    2.240893199201458,
                    1.8675579901499675,
                ],
            ),
            (
                1,
                [
                    1.6243453636632417,
                    -0.6117564136500754,
                    -0.5281717522634557,
                    -1.0729686221561705,
                    0.8654076293246785,
                ],
            ),
        ] {
            let mut r = NumpyRandomState::new(seed);
            let mut got = [0.0; 5];
            r.fill_standard_normal(&mut got);
            assert_eq!(got, want, "seed {seed}");
        }
    }

    #[test]
    fn interleaved_calls_match_numpy() {
        // The loader's pattern: the cached Gaussian survives other calls.
        // np.random.seed(7); l = list(range(12)); np.random.shuffle(l); print(l)
        // print(np.random.randn(3)); print(np.random.choice(list(range(100)), 5, replace=False))
        // print(np.random.randn(2)); print(np.random.random_sample())
        let mut r = NumpyRandomState::new(7);
        let mut l: Vec<usize> = (0..12).collect();
        r.shuffle(&mut l);
        assert_eq!(l, [7, 10, 2, 5, 0, 1, 11, 8, 3, 6, 9, 4]);
        let mut g = [0.0; 3];
        r.fill_standard_normal(&mut g);
        assert_eq!(
            g,
            [
                -0.0008903858579313628,
                -1.7547243063454208,
                1.0176580056634932
            ]
        );
        assert_eq!(r.choice_without_replacement(100, 5), [65, 98, 81, 76, 39]);
        let mut g = [0.0; 2];
        r.fill_standard_normal(&mut g);
        assert_eq!(g, [0.6004985159195494, 1.3285989983604276]);
        assert_eq!(r.random_sample(), 0.9513361410416794);
    }

    #[test]
    fn random_interval_by_hand() {
        // max = 0 draws nothing.
        let mut r = NumpyRandomState::new(0);
        assert_eq!(r.random_interval(0), 0);
        assert_eq!(r.next_u32(), 2357136044);
        // Seed 0's words are 2357136044 = 0x8c7f0aac, 2546248239 = 0x97c4aa2f, 3071714933 = 0xb716a675.
        // max = 5 (mask 7): 0x…ac & 7 = 4 ≤ 5, accepted.
        assert_eq!(NumpyRandomState::new(0).random_interval(5), 4);
        // max = 3 (mask 3): 0x…ac & 3 = 0.
        assert_eq!(NumpyRandomState::new(0).random_interval(3), 0);
        // max = 10 (mask 15): 0xc = 12 > 10 rejected, 0xf = 15 rejected, 0x5 = 5 accepted.
        assert_eq!(NumpyRandomState::new(0).random_interval(10), 5);
        // max = 2^40 - 1 > 2^32 - 1: 64 bits, high word first, masked to 40 bits: 0xac_97c4aa2f.
        let max = (1u64 << 40) - 1;
        assert_eq!(
            NumpyRandomState::new(0).random_interval(max),
            0xac_97c4_aa2f
        );
    }
}
