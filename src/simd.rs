//! Dot products with run-time CPU dispatch (AVX-512F, AVX2+FMA, portable
//! fallback); the vectors are L2-normalized, so the dot product is the cosine
//! similarity. f32 · f32 ([`dot`]: the extractive summarizer).
//!
//! f32 · f16 ([`dot_f16`]: every search score) and f16 · f16 ([`dot_f16_f16`]:
//! the graph's distance) against f16 vectors (IEEE 754 binary16 held as its
//! `u16` bit pattern, [`half::f16::to_bits`]): the search index holds every
//! vector that way, in the graph's points and in its own array (half the
//! bytes; issue 19). Widened to f32 in registers (`vcvtph2ps`:
//! AVX-512F, or AVX2 + FMA + F16C); arithmetic and accumulation stay f32.
//! Rounding a component of a unit vector to f16 moves it by at most 2^-11 of
//! itself (at most 2^-25 for the subnormal ones, below 6.1e-5), so a cosine
//! against it is off by at most ~5e-4 and typically ~3e-5 at 384 dimensions.

use std::sync::OnceLock;

type DotFn = fn(&[f32], &[f32]) -> f32;

/// `a · b` for equal-length slices (the shorter length is used otherwise).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    static DOT: OnceLock<DotFn> = OnceLock::new();
    (DOT.get_or_init(select))(a, b)
}

fn select() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: `dot_avx512` only needs AVX-512F, detected just above; the
            // closure is handed out only on this CPU (a process-wide `OnceLock`).
            return |a, b| unsafe { x86::dot_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: `dot_avx2` only needs AVX2 and FMA, detected just above.
            return |a, b| unsafe { x86::dot_avx2(a, b) };
        }
    }
    dot_portable
}

type DotF16Fn = fn(&[f32], &[u16]) -> f32;
type DotF16F16Fn = fn(&[u16], &[u16]) -> f32;

/// `a · b` for an f32 `a` and an f16 `b` (bit patterns) of equal length (the
/// shorter length is used otherwise).
#[inline]
pub fn dot_f16(a: &[f32], b: &[u16]) -> f32 {
    static DOT: OnceLock<DotF16Fn> = OnceLock::new();
    (DOT.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if !cfg!(miri) {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: `dot_f16_avx512` only needs AVX-512F, detected just above.
                return |a, b| unsafe { x86::dot_f16_avx512(a, b) };
            }
            if has_avx2_f16c() {
                // SAFETY: `dot_f16_avx2` needs AVX2, FMA and F16C, detected just above.
                return |a, b| unsafe { x86::dot_f16_avx2(a, b) };
            }
        }
        dot_f16_portable
    }))(a, b)
}

/// `a · b` for two f16 vectors (bit patterns): the HNSW graph's distance.
#[inline]
pub fn dot_f16_f16(a: &[u16], b: &[u16]) -> f32 {
    static DOT: OnceLock<DotF16F16Fn> = OnceLock::new();
    (DOT.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if !cfg!(miri) {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: `dot_f16_f16_avx512` only needs AVX-512F, detected just above.
                return |a, b| unsafe { x86::dot_f16_f16_avx512(a, b) };
            }
            if has_avx2_f16c() {
                // SAFETY: `dot_f16_f16_avx2` needs AVX2, FMA and F16C, detected just above.
                return |a, b| unsafe { x86::dot_f16_f16_avx2(a, b) };
            }
        }
        dot_f16_f16_portable
    }))(a, b)
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_f16c() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

/// `v` rounded to f16 (round to nearest even), as bit patterns `[v.len()]`.
pub fn to_f16(v: &[f32]) -> Vec<u16> {
    v.iter()
        .map(|&x| half::f16::from_f32(x).to_bits())
        .collect()
}

/// `v` (f16 bit patterns) widened to f32 `[v.len()]` (exact).
pub fn from_f16(v: &[u16]) -> Vec<f32> {
    v.iter()
        .map(|&h| half::f16::from_bits(h).to_f32())
        .collect()
}

fn widen(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

/// Portable [`dot_f16`] (eight accumulators, like [`dot_portable`]).
pub fn dot_f16_portable(a: &[f32], b: &[u16]) -> f32 {
    portable_dot(a, b, |x| x, widen)
}

/// Portable [`dot_f16_f16`].
pub fn dot_f16_f16_portable(a: &[u16], b: &[u16]) -> f32 {
    portable_dot(a, b, widen, widen)
}

/// The portable kernels' one loop: `a · b` over the shorter length, elements
/// widened to f32 by `wa` / `wb`, eight independent accumulators
/// (auto-vectorizes to SSE2), then the tail.
#[inline(always)]
fn portable_dot<A: Copy, B: Copy>(
    a: &[A],
    b: &[B],
    wa: impl Fn(A) -> f32,
    wb: impl Fn(B) -> f32,
) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let chunks = n / 8;
    for i in 0..chunks {
        for j in 0..8 {
            acc[j] += wa(a[i * 8 + j]) * wb(b[i * 8 + j]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..n {
        sum += wa(a[i]) * wb(b[i]);
    }
    sum
}

/// Portable dot product with eight independent accumulators (auto-vectorizes to SSE2).
pub fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    portable_dot(a, b, |x| x, |x| x)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            // SAFETY: i + 32 <= n ≤ both lengths, so all four 16-float loads are in bounds.
            unsafe {
                acc0 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(a.as_ptr().add(i)),
                    _mm512_loadu_ps(b.as_ptr().add(i)),
                    acc0,
                );
                acc1 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(a.as_ptr().add(i + 16)),
                    _mm512_loadu_ps(b.as_ptr().add(i + 16)),
                    acc1,
                );
            }
            i += 32;
        }
        while i + 16 <= n {
            // SAFETY: i + 16 <= n ≤ both lengths, so both loads are in bounds.
            unsafe {
                acc0 = _mm512_fmadd_ps(
                    _mm512_loadu_ps(a.as_ptr().add(i)),
                    _mm512_loadu_ps(b.as_ptr().add(i)),
                    acc0,
                );
            }
            i += 16;
        }
        let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        while i < n {
            sum += a[i] * b[i];
            i += 1;
        }
        sum
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n ≤ both lengths, so all four 8-float loads are in bounds.
            unsafe {
                acc0 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                    acc0,
                );
                acc1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(a.as_ptr().add(i + 8)),
                    _mm256_loadu_ps(b.as_ptr().add(i + 8)),
                    acc1,
                );
            }
            i += 16;
        }
        let acc = _mm256_add_ps(acc0, acc1);
        let hi = _mm256_extractf128_ps(acc, 1);
        let lo = _mm256_castps256_ps128(acc);
        let s = _mm_add_ps(hi, lo);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        let mut sum = _mm_cvtss_f32(s);
        while i < n {
            sum += a[i] * b[i];
            i += 1;
        }
        sum
    }

    /// Horizontal sum of eight lanes.
    #[target_feature(enable = "avx2")]
    fn hsum256(acc: __m256) -> f32 {
        let hi = _mm256_extractf128_ps(acc, 1);
        let lo = _mm256_castps256_ps128(acc);
        let s = _mm_add_ps(hi, lo);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_f16_avx512(a: &[f32], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n ≤ both lengths: 16 floats of `a` and 16 halves
            // (32 bytes) of `b` are in bounds; both loads are unaligned loads.
            unsafe {
                let wide = _mm512_cvtph_ps(_mm256_loadu_si256(b.as_ptr().add(i) as *const __m256i));
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(a.as_ptr().add(i)), wide, acc);
            }
            i += 16;
        }
        let mut sum = _mm512_reduce_add_ps(acc);
        while i < n {
            sum += a[i] * super::widen(b[i]);
            i += 1;
        }
        sum
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_f16_f16_avx512(a: &[u16], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n ≤ both lengths: 16 halves (32 bytes) of each are
            // in bounds; unaligned loads.
            unsafe {
                let x = _mm512_cvtph_ps(_mm256_loadu_si256(a.as_ptr().add(i) as *const __m256i));
                let y = _mm512_cvtph_ps(_mm256_loadu_si256(b.as_ptr().add(i) as *const __m256i));
                acc = _mm512_fmadd_ps(x, y, acc);
            }
            i += 16;
        }
        let mut sum = _mm512_reduce_add_ps(acc);
        while i < n {
            sum += super::widen(a[i]) * super::widen(b[i]);
            i += 1;
        }
        sum
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16_avx2(a: &[f32], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n ≤ both lengths: 16 floats of `a` and 16 halves
            // (two 16-byte loads) of `b` are in bounds; unaligned loads.
            unsafe {
                let y0 = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i) as *const __m128i));
                let y1 = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i + 8) as *const __m128i));
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), y0, acc0);
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i + 8)), y1, acc1);
            }
            i += 16;
        }
        let mut sum = hsum256(_mm256_add_ps(acc0, acc1));
        while i < n {
            sum += a[i] * super::widen(b[i]);
            i += 1;
        }
        sum
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16_f16_avx2(a: &[u16], b: &[u16]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            // SAFETY: i + 16 <= n ≤ both lengths: 16 halves (two 16-byte loads)
            // of each are in bounds; unaligned loads.
            unsafe {
                let x0 = _mm256_cvtph_ps(_mm_loadu_si128(a.as_ptr().add(i) as *const __m128i));
                let x1 = _mm256_cvtph_ps(_mm_loadu_si128(a.as_ptr().add(i + 8) as *const __m128i));
                let y0 = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i) as *const __m128i));
                let y1 = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(i + 8) as *const __m128i));
                acc0 = _mm256_fmadd_ps(x0, y0, acc0);
                acc1 = _mm256_fmadd_ps(x1, y1, acc1);
            }
            i += 16;
        }
        let mut sum = hsum256(_mm256_add_ps(acc0, acc1));
        while i < n {
            sum += super::widen(a[i]) * super::widen(b[i]);
            i += 1;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn dispatch_matches_portable(v in proptest::collection::vec((-1f32..1f32, -1f32..1f32), 0..700)) {
            let (a, b): (Vec<f32>, Vec<f32>) = v.into_iter().unzip();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            prop_assert!((dot(&a, &b) as f64 - exact).abs() < 1e-4);
            prop_assert!((dot_portable(&a, &b) as f64 - exact).abs() < 1e-4);
        }

        /// The f16 kernels compute the exact dot product of the f16-rounded
        /// values (to f32 accumulation error): the dispatched kernel, the
        /// portable one, and each x86 kernel this CPU can run.
        #[test]
        fn f16_dispatch_matches_widened(v in proptest::collection::vec((-1f32..1f32, -1f32..1f32), 0..700)) {
            let (a, b): (Vec<f32>, Vec<f32>) = v.into_iter().unzip();
            let (ha, hb) = (to_f16(&a), to_f16(&b));
            let (wa, wb) = (from_f16(&ha), from_f16(&hb));
            let mixed: f64 = a.iter().zip(&wb).map(|(x, y)| *x as f64 * *y as f64).sum();
            let both: f64 = wa.iter().zip(&wb).map(|(x, y)| *x as f64 * *y as f64).sum();
            prop_assert!((dot_f16(&a, &hb) as f64 - mixed).abs() < 1e-4);
            prop_assert!((dot_f16_portable(&a, &hb) as f64 - mixed).abs() < 1e-4);
            prop_assert!((dot_f16_f16(&ha, &hb) as f64 - both).abs() < 1e-4);
            prop_assert!((dot_f16_f16_portable(&ha, &hb) as f64 - both).abs() < 1e-4);
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F detected just above.
                    let (m, b2) = unsafe { (x86::dot_f16_avx512(&a, &hb), x86::dot_f16_f16_avx512(&ha, &hb)) };
                    prop_assert!((m as f64 - mixed).abs() < 1e-4 && (b2 as f64 - both).abs() < 1e-4);
                }
                if has_avx2_f16c() {
                    // SAFETY: AVX2, FMA and F16C detected just above.
                    let (m, b2) = unsafe { (x86::dot_f16_avx2(&a, &hb), x86::dot_f16_f16_avx2(&ha, &hb)) };
                    prop_assert!((m as f64 - mixed).abs() < 1e-4 && (b2 as f64 - both).abs() < 1e-4);
                }
            }
        }
    }
}

/// f16 storage keeps a cosine within the module docs' bound on random 384-d
/// unit vectors (f32 query against an f16-rounded vector; typical errors are
/// ~3e-5, so this checks the kernel reads f16 and nothing grossly worse).
#[cfg(test)]
#[test]
fn f16_rounding_moves_a_cosine_by_less_than_5e_4() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let unit = |rng: &mut rand::rngs::StdRng| {
        let v: Vec<f32> = (0..384).map(|_| rng.random_range(-1f32..1f32)).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let mut worst = 0f32;
    for _ in 0..2000 {
        let (q, x) = (unit(&mut rng), unit(&mut rng));
        worst = worst.max((dot(&q, &x) - dot_f16(&q, &to_f16(&x))).abs());
    }
    assert!(worst < 5e-4, "worst error {worst}");
    assert!(
        worst > 0.0,
        "f16 rounding changed nothing: the kernel did not read f16"
    );
}
