//! `Y = X · Wᵀ + b` for inference, with `W` packed once at load.
//!
//! General GEMM libraries (the `gemm` crate under candle) repack the weight matrix
//! on every call; at the small row counts of a query (15–40 tokens) that repacking is
//! about half of a forward pass (issue 8's perf profile). Here a [`PackedLinear`]
//! stores `W` (`[out, in]`, PyTorch's layout) as column panels of [`NR`] output
//! features, `k`-major (`panel[k][j] = W[p·NR + j][k]`), so the micro-kernel reads
//! each panel sequentially and only `X` is touched in its natural layout.
//!
//! Micro-kernels (run-time dispatch, like `crate::simd`): AVX-512F computes up to a
//! 12 × 32 block of `Y` in 24 zmm accumulators per step over `k` (two panel loads,
//! twelve broadcasts, 24 FMAs); AVX2+FMA a 6 × 16 block in 12 ymm accumulators;
//! elsewhere a portable loop that the compiler vectorizes. The panel width is
//! fixed at 32 floats for all three, so one packing serves every kernel. Panels
//! are distributed over rayon's pool when the product is large enough to pay for it.
//!
//! ## Parallel tasks, and checking them with Miri
//!
//! A task computes one tile of `Y` (a chunk of rows × one panel's columns) and
//! reaches it only through `DisjointOut::tile`: no task ever holds a reference
//! to cells another task writes (a `&mut` over all of `Y` in each task would be
//! undefined behaviour even though the writes are disjoint). `fast`'s attention
//! heads write `ctx` the same way. Miri checks both on the portable kernels,
//! which run-time dispatch picks under `cfg(miri)`, with the tasks on two scoped
//! std threads (`Workers::Scoped`: rayon's pool registers its threads with
//! crossbeam-epoch, which Miri's default aliasing model, Stacked Borrows,
//! rejects):
//!
//! ```text
//! rustup component add --toolchain nightly miri rust-src
//! cargo +nightly miri test --lib -- disjoint_tiles tiles_reject
//! ```
//!
//! The first run builds the dependencies for Miri (~10 min on 2 cores); the three
//! tests then take ~10 s. `MIRIFLAGS=-Zmiri-many-seeds=0..16` tries 16 thread
//! schedules. The same tests flag the former code (a whole-buffer `&mut` per
//! task): "not granting access to tag … strongly protected".

use std::marker::PhantomData;
use std::sync::OnceLock;

use rayon::prelude::*;

/// Output features per packed panel.
pub const NR: usize = 32;
/// Rows of `X` per micro-kernel step.
const MR: usize = 6;
/// Rows per call of the AVX-512 kernels: 24 of the 32 zmm registers accumulate,
/// so each panel load feeds 24 FMAs instead of 12. Against 6 rows, in
/// alternating A/B runs (2 threads): a single query's forward 10–15% faster,
/// batch 8 and 32 throughput 2–10% higher.
const MR_AVX512: usize = 12;
/// How many k-steps ahead the x86 kernels prefetch their panel (2 KiB of f32,
/// 1 KiB of f16). A query's first row block streams each panel from memory and
/// the hardware prefetcher stops at every 4 KiB page; with it a single query's
/// forward took 8–15% less time (alternating A/B, 2 threads; distances 16–48
/// were alike).
const PREFETCH: usize = 16;
/// Multiply-adds below which one thread does the whole product (a fork costs
/// ~10–20 µs; a 15 × 384 × 384 product is 2.2 M multiply-adds, ~40 µs).
const PARALLEL_MIN_MACS: usize = 1 << 21;

/// How packed weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// [`WeightFormat::F16`] where this CPU has a vectorized f16 kernel (x86-64
    /// with AVX-512F, or AVX2 + FMA + F16C), else [`WeightFormat::F32`].
    #[default]
    Auto,
    /// f32, as in the checkpoint.
    F32,
    /// IEEE half precision (10-bit mantissa), widened to f32 in the kernel
    /// (`vcvtph2ps`); arithmetic stays f32. Halves the bytes streamed per product,
    /// which is what bounds small batches (a query streams every weight once):
    /// a single query's forward took 10–25% less time than with f32 weights and
    /// batch throughput was the same or better (README, "Performance"); outputs
    /// stay within cosine 0.999999 of the f32 ones.
    F16,
}

impl WeightFormat {
    /// The concrete format `self` stands for on this CPU (`Auto` resolved).
    pub fn resolve(self) -> WeightFormat {
        match self {
            WeightFormat::Auto if fast_f16() => WeightFormat::F16,
            WeightFormat::Auto => WeightFormat::F32,
            other => other,
        }
    }

    /// `auto`, `f32` or `f16`.
    pub fn as_str(self) -> &'static str {
        match self {
            WeightFormat::Auto => "auto",
            WeightFormat::F32 => "f32",
            WeightFormat::F16 => "f16",
        }
    }
}

impl std::str::FromStr for WeightFormat {
    type Err = crate::core::error::Error;
    fn from_str(s: &str) -> crate::core::error::Result<WeightFormat> {
        match s {
            "auto" => Ok(WeightFormat::Auto),
            "f32" => Ok(WeightFormat::F32),
            "f16" => Ok(WeightFormat::F16),
            _ => Err(crate::core::error::Error::invalid(
                "weights",
                "must be auto, f32 or f16",
            )),
        }
    }
}

/// Whether f16 panels get a SIMD kernel on this CPU (the portable one widens
/// element by element and is slower than f32).
fn fast_f16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        !cfg!(miri) && (std::arch::is_x86_feature_detected!("avx512f") || has_avx2_f16())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_f16() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

enum Panels {
    F32(Vec<f32>),
    /// f16 bit patterns.
    F16(Vec<u16>),
}

/// A linear layer with its weight pre-packed: `y = x · Wᵀ + b`.
pub struct PackedLinear {
    /// Input features (`k`).
    pub inputs: usize,
    /// Output features (`n`).
    pub outputs: usize,
    /// `ceil(outputs / NR)` panels of `[inputs, NR]`, zero-padded past `outputs`,
    /// starting at element `offset` (64-byte aligned, so no panel load splits a
    /// cache line).
    storage: Panels,
    offset: usize,
    /// `[outputs]`, zero-padded to a multiple of `NR`.
    bias: Vec<f32>,
}

/// A micro-kernel: `y = x · panel + bias` over the `y.rows() × y.cols()` tile
/// (`y.rows()` ≤ the kernel's row limit, `y.cols()` ≤ [`NR`]). Its only safety
/// requirement is the CPU feature it was compiled for; it checks the shapes.
type KernelFn<T> = unsafe fn(x: &[f32], k: usize, panel: &[T], bias: &[f32], y: &mut Tile<'_>);

/// A micro-kernel and the most rows it takes per call.
#[derive(Clone, Copy)]
struct Kernel<T> {
    run: KernelFn<T>,
    mr: usize,
}

impl PackedLinear {
    /// Packs `weight` (`[outputs, inputs]`, row-major) and `bias` (`[outputs]`) as f32.
    ///
    /// # Panics
    /// When the slice lengths do not match the shape.
    pub fn new(weight: &[f32], bias: &[f32], outputs: usize, inputs: usize) -> Self {
        Self::with_format(weight, bias, outputs, inputs, WeightFormat::F32)
    }

    /// Packs `weight` and `bias` with the weights stored as `format`
    /// ([`WeightFormat::Auto`] resolved for this CPU). A weight beyond f16's range
    /// (|w| > 65,504) keeps the layer in f32.
    ///
    /// # Panics
    /// When the slice lengths do not match the shape.
    pub fn with_format(
        weight: &[f32],
        bias: &[f32],
        outputs: usize,
        inputs: usize,
        format: WeightFormat,
    ) -> Self {
        assert_eq!(weight.len(), outputs * inputs, "weight shape");
        assert_eq!(bias.len(), outputs, "bias shape");
        let n_panels = outputs.div_ceil(NR);
        let len = n_panels * inputs * NR;
        fn pack<T: Copy + Default>(
            weight: &[f32],
            outputs: usize,
            inputs: usize,
            len: usize,
            convert: impl Fn(f32) -> T,
        ) -> (Vec<T>, usize) {
            // 32 spare elements: enough to reach a 64-byte boundary for f32 or f16.
            let mut storage = vec![T::default(); len + 32];
            let offset = storage.as_ptr().align_offset(64).min(32);
            let panels = &mut storage[offset..offset + len];
            for p in 0..outputs.div_ceil(NR) {
                let panel = &mut panels[p * inputs * NR..(p + 1) * inputs * NR];
                for j in 0..NR.min(outputs - p * NR) {
                    let row = &weight[(p * NR + j) * inputs..(p * NR + j + 1) * inputs];
                    for (k, w) in row.iter().enumerate() {
                        panel[k * NR + j] = convert(*w);
                    }
                }
            }
            (storage, offset)
        }
        let mut format = format.resolve();
        if format == WeightFormat::F16 && weight.iter().any(|w| w.abs() > half::f16::MAX.to_f32()) {
            format = WeightFormat::F32;
        }
        let (storage, offset) = match format {
            WeightFormat::F32 | WeightFormat::Auto => {
                let (s, o) = pack(weight, outputs, inputs, len, |w| w);
                (Panels::F32(s), o)
            }
            WeightFormat::F16 => {
                let (s, o) = pack(weight, outputs, inputs, len, |w| {
                    half::f16::from_f32(w).to_bits()
                });
                (Panels::F16(s), o)
            }
        };
        let mut b = bias.to_vec();
        b.resize(n_panels * NR, 0.0);
        PackedLinear {
            inputs,
            outputs,
            storage,
            offset,
            bias: b,
        }
    }

    /// The format the weights are stored in (never `Auto`).
    pub fn format(&self) -> WeightFormat {
        match &self.storage {
            Panels::F32(_) => WeightFormat::F32,
            Panels::F16(_) => WeightFormat::F16,
        }
    }

    /// Bytes of packed weights.
    pub fn weight_bytes(&self) -> usize {
        match &self.storage {
            Panels::F32(v) => v.len() * 4,
            Panels::F16(v) => v.len() * 2,
        }
    }

    /// `y[m, outputs] = x[m, inputs] · Wᵀ + b`, overwriting `y`.
    ///
    /// # Panics
    /// When `x.len() != m * inputs` or `y.len() != m * outputs`.
    pub fn forward(&self, x: &[f32], m: usize, y: &mut [f32]) {
        let (k, n) = (self.inputs, self.outputs);
        assert_eq!(x.len(), m * k, "x shape");
        assert_eq!(y.len(), m * n, "y shape");
        if m == 0 {
            return;
        }
        let len = n.div_ceil(NR) * k * NR;
        let split = Split::DEFAULT;
        match &self.storage {
            Panels::F32(v) => {
                let panels = &v[self.offset..self.offset + len];
                self.drive(panels, kernel_f32(), x, m, y, split)
            }
            Panels::F16(v) => {
                let panels = &v[self.offset..self.offset + len];
                self.drive(panels, kernel_f16(), x, m, y, split)
            }
        }
    }

    fn drive<T: Sync>(
        &self,
        panels: &[T],
        kernel: Kernel<T>,
        x: &[f32],
        m: usize,
        y: &mut [f32],
        split: Split,
    ) {
        let (k, n) = (self.inputs, self.outputs);
        assert_eq!(x.len(), m * k, "x shape");
        assert_eq!(y.len(), m * n, "y shape");
        let n_panels = n.div_ceil(NR);
        assert!(panels.len() >= n_panels * k * NR && self.bias.len() >= n_panels * NR);
        // Rows are taken in chunks whose slice of X stays in L2 (~256 KiB) while
        // every panel passes over it; a task is one (row chunk, panel) pair.
        let mr = kernel.mr;
        let mc = split
            .chunk_rows
            .unwrap_or(((256 * 1024 / (4 * k.max(1))) / mr * mr).max(mr))
            .max(1);
        let n_chunks = m.div_ceil(mc);
        let y = DisjointOut::new(y);
        let run = |task: usize| {
            let (c, p) = (task / n_panels, task % n_panels);
            let panel = &panels[p * k * NR..(p + 1) * k * NR];
            let bias = &self.bias[p * NR..(p + 1) * NR];
            let (first, rows) = (c * mc, mc.min(m - c * mc));
            let cols = NR.min(n - p * NR);
            // SAFETY: task (c, p) is the only user of rows [c·mc, c·mc + rows) ×
            // columns [p·NR, p·NR + cols) of y: tasks differ in their row chunk or
            // their panel, and each task index runs once. `tile` checks the bounds.
            let mut tile = unsafe { y.tile(first * n + p * NR, rows, cols, n) };
            let mut r = 0;
            while r < rows {
                let step = mr.min(rows - r);
                // SAFETY: `kernel` runs on this CPU: `kernel_f32`/`kernel_f16`
                // pick one only after detecting its features, and the tests pass
                // only kernels the CPU has. The kernel checks its shapes itself.
                unsafe {
                    (kernel.run)(
                        &x[(first + r) * k..(first + r + step) * k],
                        k,
                        panel,
                        bias,
                        &mut tile.sub(r, step),
                    )
                };
                r += step;
            }
        };
        split
            .workers
            .run(n_chunks * n_panels, m * k * n < split.min_macs, run);
    }
}

/// How [`PackedLinear::drive`] cuts a product into tasks and where they run.
/// Tests shrink the numbers to run the parallel path on shapes small enough for
/// Miri.
#[derive(Debug, Clone, Copy)]
struct Split {
    /// Products with fewer multiply-adds run on the calling thread.
    min_macs: usize,
    /// Rows per task (`None`: as many as keep their slice of `X` in L2).
    chunk_rows: Option<usize>,
    workers: Workers,
}

impl Split {
    const DEFAULT: Split = Split {
        min_macs: PARALLEL_MIN_MACS,
        chunk_rows: None,
        workers: Workers::Pool,
    };
}

/// Where the tasks of a parallel kernel run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workers {
    /// Rayon's current pool, when it has more than one thread.
    Pool,
    /// This many scoped std threads, task `i` on thread `i mod n`. For tests
    /// under Miri: rayon's pool registers its threads with crossbeam-epoch,
    /// which Miri's default aliasing model (Stacked Borrows) rejects, so a
    /// check of our own tasks has to run them without rayon.
    #[cfg(test)]
    Scoped(usize),
}

impl Workers {
    /// Runs `check` with two scoped threads and (except under Miri, where
    /// rayon's pool runs only with Tree Borrows) on a 2-thread rayon pool.
    #[cfg(test)]
    pub(crate) fn each_for_tests(check: impl Fn(Workers) + Send + Sync) {
        check(Workers::Scoped(2));
        if !cfg!(miri) {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            pool.install(|| {
                assert_eq!(rayon::current_num_threads(), 2);
                check(Workers::Pool)
            });
        }
    }

    /// Runs `task(i)` for every `i < n`: in parallel unless `serial`, each index
    /// once.
    #[inline]
    pub(crate) fn run(self, n: usize, serial: bool, task: impl Fn(usize) + Sync) {
        match self {
            Workers::Pool if !serial && rayon::current_num_threads() > 1 => {
                (0..n).into_par_iter().for_each(&task)
            }
            #[cfg(test)]
            Workers::Scoped(threads) if !serial => std::thread::scope(|scope| {
                let task = &task;
                for t in 0..threads.max(1) {
                    scope.spawn(move || (t..n).step_by(threads.max(1)).for_each(task));
                }
            }),
            _ => (0..n).for_each(task),
        }
    }
}

/// An `f32` buffer that parallel tasks write in disjoint parts, some of them
/// strided: a GEMM task owns a column range of a range of rows, an attention
/// task (`fast`) a head's columns of a text's rows, so the parts cannot be cut
/// out with `chunks_mut`/`split_at_mut`.
///
/// It holds the buffer's exclusive borrow for `'a`, so nothing but its tiles
/// touches the buffer meanwhile, and it never forms a reference to more than one
/// [`Tile`]'s cells: each task reaches its part only through the `unsafe`
/// [`DisjointOut::tile`], whose caller promises that tiles in use at the same
/// time do not overlap.
pub(crate) struct DisjointOut<'a> {
    ptr: *mut f32,
    len: usize,
    _buf: PhantomData<&'a mut [f32]>,
}

// SAFETY: `DisjointOut` stands for an exclusive borrow of a `[f32]` (itself
// `Send`), and moving it to another thread moves that borrow.
unsafe impl Send for DisjointOut<'_> {}
// SAFETY: a shared `&DisjointOut` gives access to the buffer only through the
// `unsafe` `tile`, whose contract makes concurrently used tiles disjoint; no
// cell is then reachable from two threads at once.
unsafe impl Sync for DisjointOut<'_> {}

impl<'a> DisjointOut<'a> {
    /// Takes `buf` for as long as the tasks writing it run.
    pub(crate) fn new(buf: &'a mut [f32]) -> Self {
        DisjointOut {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _buf: PhantomData,
        }
    }

    /// The `rows × cols` cells starting at element `start`, rows `stride`
    /// elements apart (`buf[start + r·stride + j]` for `r < rows`, `j < cols`).
    ///
    /// # Panics
    /// When the cells do not all lie in the buffer, or when rows of the tile
    /// would overlap (`cols > stride` with more than one row).
    ///
    /// # Safety
    /// While the returned tile (or anything borrowed from it) is in use, no other
    /// tile of this buffer that shares a cell with it may be in use, on any
    /// thread.
    pub(crate) unsafe fn tile(
        &self,
        start: usize,
        rows: usize,
        cols: usize,
        stride: usize,
    ) -> Tile<'_> {
        if rows > 0 {
            assert!(rows == 1 || cols <= stride, "tile rows overlap");
            let end = (rows - 1)
                .checked_mul(stride)
                .and_then(|v| v.checked_add(start))
                .and_then(|v| v.checked_add(cols));
            assert!(end.is_some_and(|e| e <= self.len), "tile out of bounds");
        }
        Tile {
            // In bounds (or one past the end) whenever the tile has a row (checked
            // above); never offset or read when it has none.
            ptr: self.ptr.wrapping_add(start),
            rows,
            cols,
            stride,
            _cells: PhantomData,
        }
    }
}

/// `rows × cols` cells of a row-major `f32` buffer, rows `stride` elements apart,
/// that nothing else accesses while the tile lives (the invariant
/// [`DisjointOut::tile`]'s contract establishes). Hands out one row at a time.
pub(crate) struct Tile<'a> {
    ptr: *mut f32,
    rows: usize,
    cols: usize,
    stride: usize,
    _cells: PhantomData<&'a mut f32>,
}

impl Tile<'_> {
    /// Rows in the tile.
    #[inline]
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Cells per row.
    #[inline]
    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Row `r`'s `cols` cells.
    ///
    /// # Panics
    /// When `r >= self.rows()`.
    #[inline]
    pub(crate) fn row(&mut self, r: usize) -> &mut [f32] {
        assert!(r < self.rows, "tile row out of range");
        // SAFETY: the cells `ptr + r·stride .. + cols` lie in the buffer and
        // belong to this tile alone (type invariant); the slice borrows `self`
        // mutably, so no other row of this tile is handed out while it lives.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r * self.stride), self.cols) }
    }

    /// Rows `[first, first + rows)` as a tile of their own, borrowing this one.
    ///
    /// # Panics
    /// When the rows are not all in this tile.
    #[inline]
    pub(crate) fn sub(&mut self, first: usize, rows: usize) -> Tile<'_> {
        assert!(
            first.checked_add(rows).is_some_and(|e| e <= self.rows),
            "tile rows out of range"
        );
        Tile {
            ptr: self.ptr.wrapping_add(first * self.stride),
            rows,
            cols: self.cols,
            stride: self.stride,
            _cells: PhantomData,
        }
    }
}

fn kernel_f32() -> Kernel<f32> {
    static K: OnceLock<Kernel<f32>> = OnceLock::new();
    *K.get_or_init(|| {
        // Miri does not implement these intrinsics: under it, the portable kernel.
        #[cfg(target_arch = "x86_64")]
        if !cfg!(miri) {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Kernel {
                    run: x86::kernel_avx512,
                    mr: MR_AVX512,
                };
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernel {
                    run: x86::kernel_avx2,
                    mr: MR,
                };
            }
        }
        Kernel {
            run: kernel_portable,
            mr: MR,
        }
    })
}

fn kernel_f16() -> Kernel<u16> {
    static K: OnceLock<Kernel<u16>> = OnceLock::new();
    *K.get_or_init(|| {
        // Miri does not implement these intrinsics: under it, the portable kernel.
        #[cfg(target_arch = "x86_64")]
        if !cfg!(miri) {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Kernel {
                    run: x86::kernel_avx512_f16,
                    mr: MR_AVX512,
                };
            }
            if has_avx2_f16() {
                return Kernel {
                    run: x86::kernel_avx2_f16,
                    mr: MR,
                };
            }
        }
        Kernel {
            run: kernel_portable_f16,
            mr: MR,
        }
    })
}

/// Portable micro-kernel body: the tile's rows (≤ MR) of `x` times one panel
/// whose elements `widen` turns into f32. Slice bounds are checked.
#[inline(always)]
fn portable<T: Copy>(
    x: &[f32],
    k: usize,
    panel: &[T],
    bias: &[f32],
    y: &mut Tile<'_>,
    widen: impl Fn(T) -> f32,
) {
    let cols = y.cols();
    for r in 0..y.rows() {
        let mut acc = [0f32; NR];
        acc.copy_from_slice(&bias[..NR]);
        let xr = &x[r * k..(r + 1) * k];
        for (kk, &a) in xr.iter().enumerate() {
            let w = &panel[kk * NR..(kk + 1) * NR];
            for j in 0..NR {
                acc[j] += a * widen(w[j]);
            }
        }
        y.row(r).copy_from_slice(&acc[..cols]);
    }
}

/// Portable micro-kernel over f32 panels.
///
/// # Safety
/// None: the slice bounds are checked; `unsafe` only to share the [`Kernel`]
/// signature.
unsafe fn kernel_portable(x: &[f32], k: usize, panel: &[f32], bias: &[f32], y: &mut Tile<'_>) {
    portable(x, k, panel, bias, y, |w| w)
}

/// Portable micro-kernel over f16 panels (widened per element, no copy).
///
/// # Safety
/// As [`kernel_portable`].
unsafe fn kernel_portable_f16(x: &[f32], k: usize, panel: &[u16], bias: &[f32], y: &mut Tile<'_>) {
    portable(x, k, panel, bias, y, |h| half::f16::from_bits(h).to_f32())
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR, MR_AVX512, NR, PREFETCH, Tile};
    use std::arch::x86_64::*;

    /// The AVX-512F 12 × 32 micro-kernel body, for panels of any element type:
    /// `$load(ptr)` turns 16 panel elements at `ptr` into 16 f32 lanes. Checks
    /// the shapes its raw loads rely on; expands to code that must run inside an
    /// `unsafe` block of a function compiled with AVX-512F.
    macro_rules! avx512_kernel {
        ($x:ident, $k:ident, $panel:ident, $bias:ident, $y:ident, $load:expr) => {{
            let (rows, cols) = ($y.rows(), $y.cols());
            assert!(rows <= MR_AVX512 && cols <= NR && $bias.len() >= NR);
            assert!($x.len() >= rows * $k && $panel.len() >= $k * NR);
            let b0 = _mm512_loadu_ps($bias.as_ptr());
            let b1 = _mm512_loadu_ps($bias.as_ptr().add(16));
            let mut acc = [[b0, b1]; MR_AVX512];
            let xp = $x.as_ptr();
            let mut wp = $panel.as_ptr();
            // The row count is a run-time value; branching once per k-step on it
            // costs less than the tail rows' wasted FMAs would.
            macro_rules! step {
                ($n:literal) => {
                    for kk in 0..$k {
                        _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(PREFETCH * NR) as *const i8);
                        _mm_prefetch::<_MM_HINT_T0>(
                            wp.wrapping_add(PREFETCH * NR + 16) as *const i8
                        );
                        let w0 = $load(wp);
                        let w1 = $load(wp.add(16));
                        for r in 0..$n {
                            let a = _mm512_set1_ps(*xp.add(r * $k + kk));
                            acc[r][0] = _mm512_fmadd_ps(a, w0, acc[r][0]);
                            acc[r][1] = _mm512_fmadd_ps(a, w1, acc[r][1]);
                        }
                        wp = wp.add(NR);
                    }
                };
            }
            match rows {
                12 => step!(12),
                11 => step!(11),
                10 => step!(10),
                9 => step!(9),
                8 => step!(8),
                7 => step!(7),
                6 => step!(6),
                5 => step!(5),
                4 => step!(4),
                3 => step!(3),
                2 => step!(2),
                _ => step!(1),
            }
            for (r, a) in acc.iter().enumerate().take(rows) {
                // `cols` cells, written only through this slice.
                let out = $y.row(r);
                if cols == NR {
                    _mm512_storeu_ps(out.as_mut_ptr(), a[0]);
                    _mm512_storeu_ps(out.as_mut_ptr().add(16), a[1]);
                } else {
                    let mut tmp = [0f32; NR];
                    _mm512_storeu_ps(tmp.as_mut_ptr(), a[0]);
                    _mm512_storeu_ps(tmp.as_mut_ptr().add(16), a[1]);
                    out.copy_from_slice(&tmp[..cols]);
                }
            }
        }};
    }

    /// AVX-512F micro-kernel, up to 12 × 32, f32 panels.
    ///
    /// # Safety
    /// The CPU must support AVX-512F. The shapes are checked (panics unless
    /// `y.rows() ≤ MR_AVX512`, `y.cols() ≤ NR`, `x` holds `rows × k` floats,
    /// `panel` `k × NR` and `bias` `NR`).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn kernel_avx512(
        x: &[f32],
        k: usize,
        panel: &[f32],
        bias: &[f32],
        y: &mut Tile<'_>,
    ) {
        // SAFETY: the caller guarantees AVX-512F (this fn's contract); the
        // macro asserts that `x`, `panel` and `bias` hold every element its raw
        // loads read, and it stores only through `y.row(r)`.
        unsafe { avx512_kernel!(x, k, panel, bias, y, |p: *const f32| { _mm512_loadu_ps(p) }) }
    }

    /// AVX-512F micro-kernel over f16 panels (`vcvtph2ps` widens 16 weights per load).
    ///
    /// # Safety
    /// As [`kernel_avx512`], with `panel` holding f16 bit patterns.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn kernel_avx512_f16(
        x: &[f32],
        k: usize,
        panel: &[u16],
        bias: &[f32],
        y: &mut Tile<'_>,
    ) {
        // SAFETY: the caller guarantees AVX-512F (this fn's contract); the
        // macro asserts that `x`, `panel` and `bias` hold every element its raw
        // loads read, and it stores only through `y.row(r)`.
        unsafe {
            avx512_kernel!(x, k, panel, bias, y, |p: *const u16| {
                _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
            })
        }
    }

    /// The AVX2 micro-kernel body: the 32-wide panel as two 6 × 16 halves;
    /// `$load` reads 8 weights as f32 from an element pointer. Checks the shapes
    /// its raw loads rely on; expands to code that must run inside an `unsafe`
    /// block of a function compiled with AVX2 and FMA.
    macro_rules! avx2_kernel {
        ($x:ident, $k:ident, $panel:ident, $bias:ident, $y:ident, $load:expr) => {{
            let (rows, cols) = ($y.rows(), $y.cols());
            assert!(rows <= MR && cols <= NR && $bias.len() >= NR);
            assert!($x.len() >= rows * $k && $panel.len() >= $k * NR);
            for half in 0..2 {
                let off = half * 16;
                let b0 = _mm256_loadu_ps($bias.as_ptr().add(off));
                let b1 = _mm256_loadu_ps($bias.as_ptr().add(off + 8));
                let mut acc = [[b0, b1]; MR];
                let xp = $x.as_ptr();
                let mut wp = $panel.as_ptr().add(off);
                macro_rules! step {
                    ($n:literal) => {
                        for kk in 0..$k {
                            _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(PREFETCH * NR) as *const i8);
                            let w0 = $load(wp);
                            let w1 = $load(wp.add(8));
                            for r in 0..$n {
                                let a = _mm256_set1_ps(*xp.add(r * $k + kk));
                                acc[r][0] = _mm256_fmadd_ps(a, w0, acc[r][0]);
                                acc[r][1] = _mm256_fmadd_ps(a, w1, acc[r][1]);
                            }
                            wp = wp.add(NR);
                        }
                    };
                }
                match rows {
                    6 => step!(6),
                    5 => step!(5),
                    4 => step!(4),
                    3 => step!(3),
                    2 => step!(2),
                    _ => step!(1),
                }
                for (r, a) in acc.iter().enumerate().take(rows) {
                    let mut tmp = [0f32; 16];
                    _mm256_storeu_ps(tmp.as_mut_ptr(), a[0]);
                    _mm256_storeu_ps(tmp.as_mut_ptr().add(8), a[1]);
                    let n = cols.saturating_sub(off).min(16);
                    if n > 0 {
                        $y.row(r)[off..off + n].copy_from_slice(&tmp[..n]);
                    }
                }
            }
        }};
    }

    /// AVX2+FMA micro-kernel, f32 panels.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA. Shapes checked as in
    /// [`kernel_avx512`], with `y.rows() ≤ MR`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn kernel_avx2(x: &[f32], k: usize, panel: &[f32], bias: &[f32], y: &mut Tile<'_>) {
        // SAFETY: the caller guarantees AVX2 and FMA (this fn's contract); the
        // macro asserts that `x`, `panel` and `bias` hold every element its raw
        // loads read, and it stores only through `y.row(r)`.
        unsafe { avx2_kernel!(x, k, panel, bias, y, |p: *const f32| { _mm256_loadu_ps(p) }) }
    }

    /// AVX2+FMA micro-kernel over f16 panels (F16C's `vcvtph2ps` widens 8
    /// weights per load).
    ///
    /// # Safety
    /// As [`kernel_avx2`], plus F16C; `panel` holds f16 bit patterns.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn kernel_avx2_f16(
        x: &[f32],
        k: usize,
        panel: &[u16],
        bias: &[f32],
        y: &mut Tile<'_>,
    ) {
        // SAFETY: the caller guarantees AVX2, FMA and F16C (this fn's contract); the
        // macro asserts that `x`, `panel` and `bias` hold every element its raw
        // loads read, and it stores only through `y.row(r)`.
        unsafe {
            avx2_kernel!(x, k, panel, bias, y, |p: *const u16| {
                _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], w: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = b[j] as f64;
                for kk in 0..k {
                    s += x[i * k + kk] as f64 * w[j * k + kk] as f64;
                }
                y[i * n + j] = s as f32;
            }
        }
        y
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 2001) as f32 / 1000.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn every_kernel_matches_a_reference_product_on_odd_shapes() {
        for &(m, n, k) in &[
            (1, 32, 8),
            (7, 40, 13),
            (13, 384, 384),
            (6, 1, 3),
            (40, 96, 64),
            (100, 1536, 384),
            (301, 72, 1536),
            (500, 40, 384),
        ] {
            let (x, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
            let want = reference(&x, &w, &b, m, n, k);
            let lin = PackedLinear::new(&w, &b, n, k);
            let mut got = vec![f32::NAN; m * n];
            lin.forward(&x, m, &mut got);
            for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - r).abs() <= 1e-4 * (1.0 + r.abs()),
                    "dispatch {m}x{n}x{k} [{i}]: {g} vs {r}"
                );
            }
            // Every f32 kernel this CPU can run, on the same packing.
            for (name, kernel) in f32_kernels() {
                let mut out = vec![f32::NAN; m * n];
                lin.drive(f32_panels(&lin), kernel, &x, m, &mut out, Split::DEFAULT);
                for (g, r) in out.iter().zip(&want) {
                    assert!(
                        (g - r).abs() <= 1e-4 * (1.0 + r.abs()),
                        "{name} {m}x{n}x{k}: {g} vs {r}"
                    );
                }
            }
            // f16 weights: against the same product with f16-rounded weights,
            // through the dispatcher and every f16 kernel.
            let w16: Vec<f32> = w.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
            let want16 = reference(&x, &w16, &b, m, n, k);
            let lin16 = PackedLinear::with_format(&w, &b, n, k, WeightFormat::F16);
            assert_eq!(lin16.format(), WeightFormat::F16);
            assert_eq!(lin16.weight_bytes() * 2, lin.weight_bytes());
            let mut got16 = vec![f32::NAN; m * n];
            lin16.forward(&x, m, &mut got16);
            let len = n.div_ceil(NR) * k * NR;
            let Panels::F16(v) = &lin16.storage else {
                panic!("f16 packing expected")
            };
            let panels16 = &v[lin16.offset..lin16.offset + len];
            let mut outs = vec![("dispatch", got16)];
            for (name, kernel) in f16_kernels() {
                let mut out = vec![f32::NAN; m * n];
                lin16.drive(panels16, kernel, &x, m, &mut out, Split::DEFAULT);
                outs.push((name, out));
            }
            for (name, out) in &outs {
                for (g, r) in out.iter().zip(&want16) {
                    assert!(
                        (g - r).abs() <= 1e-4 * (1.0 + r.abs()),
                        "f16 {name} {m}x{n}x{k}: {g} vs {r}"
                    );
                }
            }
        }
    }

    fn f32_kernels() -> Vec<(&'static str, Kernel<f32>)> {
        let mut all = vec![(
            "portable",
            Kernel {
                run: kernel_portable as KernelFn<f32>,
                mr: MR,
            },
        )];
        #[cfg(target_arch = "x86_64")]
        if !cfg!(miri) {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") {
                all.push((
                    "avx512",
                    Kernel {
                        run: x86::kernel_avx512,
                        mr: MR_AVX512,
                    },
                ));
            }
            if has!("avx2") && has!("fma") {
                all.push((
                    "avx2",
                    Kernel {
                        run: x86::kernel_avx2,
                        mr: MR,
                    },
                ));
            }
        }
        all
    }

    fn f16_kernels() -> Vec<(&'static str, Kernel<u16>)> {
        let mut all = vec![(
            "portable",
            Kernel {
                run: kernel_portable_f16 as KernelFn<u16>,
                mr: MR,
            },
        )];
        #[cfg(target_arch = "x86_64")]
        if !cfg!(miri) {
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push((
                    "avx512",
                    Kernel {
                        run: x86::kernel_avx512_f16,
                        mr: MR_AVX512,
                    },
                ));
            }
            if has_avx2_f16() {
                all.push((
                    "avx2",
                    Kernel {
                        run: x86::kernel_avx2_f16,
                        mr: MR,
                    },
                ));
            }
        }
        all
    }

    /// The parallel driver on a shape small enough for Miri (see the module
    /// docs): three row chunks (one of them two kernel calls, one a single row)
    /// times three panels (one partial), all nine tasks on two threads (scoped
    /// std threads, and natively also a two-thread rayon pool).
    /// Natively it checks the result; under Miri, also that no task forms a
    /// reference over cells another task writes.
    #[test]
    fn parallel_tasks_write_disjoint_tiles_and_match_the_reference() {
        let (m, n, k) = (15, 70, 5);
        let (x, w, b) = (values(m * k, 5), values(n * k, 6), values(n, 7));
        let check = |workers| {
            let split = Split {
                min_macs: 0,
                chunk_rows: Some(7),
                workers,
            };
            let want = reference(&x, &w, &b, m, n, k);
            let lin = PackedLinear::new(&w, &b, n, k);
            for (name, kernel) in f32_kernels() {
                let mut out = vec![f32::NAN; m * n];
                lin.drive(f32_panels(&lin), kernel, &x, m, &mut out, split);
                for (i, (g, r)) in out.iter().zip(&want).enumerate() {
                    assert!(
                        (g - r).abs() <= 1e-4 * (1.0 + r.abs()),
                        "{name} [{i}]: {g} vs {r}"
                    );
                }
            }
            let w16: Vec<f32> = w.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
            let want16 = reference(&x, &w16, &b, m, n, k);
            let lin16 = PackedLinear::with_format(&w, &b, n, k, WeightFormat::F16);
            let Panels::F16(v) = &lin16.storage else {
                panic!("f16 packing expected")
            };
            let panels16 = &v[lin16.offset..lin16.offset + n.div_ceil(NR) * k * NR];
            for (name, kernel) in f16_kernels() {
                let mut out = vec![f32::NAN; m * n];
                lin16.drive(panels16, kernel, &x, m, &mut out, split);
                for (i, (g, r)) in out.iter().zip(&want16).enumerate() {
                    assert!(
                        (g - r).abs() <= 1e-4 * (1.0 + r.abs()),
                        "f16 {name} [{i}]: {g} vs {r}"
                    );
                }
            }
        };
        Workers::each_for_tests(check);
    }

    #[test]
    fn tiles_reject_cells_outside_the_buffer_or_overlapping_rows() {
        let mut buf = vec![0f32; 20];
        let out = DisjointOut::new(&mut buf);
        let tile = |start, rows, cols, stride| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                // SAFETY: one tile at a time, on this thread.
                let mut t = unsafe { out.tile(start, rows, cols, stride) };
                if t.rows() > 0 {
                    let last = t.rows() - 1;
                    t.row(last).fill(1.0);
                }
            }))
            .is_ok()
        };
        assert!(tile(2, 4, 3, 5)); // last cell 2 + 3·5 + 2 = 19
        assert!(!tile(3, 4, 3, 5)); // last cell 20
        assert!(!tile(0, 2, 6, 5)); // rows overlap
        assert!(tile(0, 1, 20, 5)); // one row may be wider than the stride
        assert!(!tile(usize::MAX, 2, 1, 1)); // overflow
        assert!(tile(20, 0, 3, 5)); // no rows: nothing to check
        // SAFETY: one tile at a time, on this thread.
        let mut t = unsafe { out.tile(0, 4, 2, 5) };
        let mut s = t.sub(1, 2);
        s.row(1)[1] = 7.0; // row 2 of the tile, cell 2·5 + 1
        assert!(
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.sub(3, 2).rows())).is_err()
        );
        // The tiles' borrow of `buf` has ended.
        assert_eq!(buf[11], 7.0);
        assert_eq!(buf[19], 1.0);
    }

    #[test]
    fn auto_resolves_and_out_of_range_weights_stay_f32() {
        let auto = WeightFormat::Auto.resolve();
        assert_ne!(auto, WeightFormat::Auto);
        assert_eq!(auto == WeightFormat::F16, fast_f16());
        assert_eq!(WeightFormat::F32.resolve(), WeightFormat::F32);
        for s in ["auto", "f32", "f16"] {
            assert_eq!(s.parse::<WeightFormat>().unwrap().as_str(), s);
        }
        assert!("bf16".parse::<WeightFormat>().is_err());
        let mut w = values(64 * 8, 4);
        w[7] = 70_000.0;
        let lin = PackedLinear::with_format(&w, &[0.0; 64], 64, 8, WeightFormat::F16);
        assert_eq!(lin.format(), WeightFormat::F32);
    }

    fn f32_panels(lin: &PackedLinear) -> &[f32] {
        let len = lin.outputs.div_ceil(NR) * lin.inputs * NR;
        match &lin.storage {
            Panels::F32(v) => &v[lin.offset..lin.offset + len],
            Panels::F16(_) => panic!("f32 packing expected"),
        }
    }
}
