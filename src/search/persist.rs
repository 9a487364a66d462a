//! Graph dumps: a namespace's HNSW graph saved beside the store, so that opening
//! the engine reloads it instead of rebuilding it (a 100k-vector build takes
//! minutes on two cores; a reload, seconds).
//!
//! Layout, one directory per namespace (`<data_dir>/graphs/<32 hex of
//! SHA-256(name)>/`), one generation directory per dump:
//! ```text
//! g-<generation>/graph.hnsw.graph   hnsw_rs `file_dump` (links)
//! g-<generation>/graph.hnsw.data    hnsw_rs `file_dump` (the vectors, f16 since format 2)
//! g-<generation>/rows.bin           the row (seq) of every graph position, u64 LE
//! g-<generation>/manifest.json      written last: namespace, shape, sizes, CRC-32s
//! ```
//! A generation counts only once its manifest exists and every file matches the
//! size and CRC-32 it names; files are fsynced before the manifest is renamed into
//! place and the directory after. So `kill -9` during a dump leaves a directory
//! without a (valid) manifest, which the next load deletes; the previous
//! generation, if any, is still whole. CRC-32 detects torn and truncated files,
//! not tampering: whoever can write the data directory can write the store too.
//!
//! A dump holds vectors and row numbers, never text. What a reload may use is
//! decided against the store by the caller ([`super::vector::NamespaceIndex::restore`]):
//! a position counts only if its row is live and its stored vector rounds to
//! the dump's f16 vector bit for bit.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;

use super::vector::{DistDotF16, GraphF16};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::core::params::IndexConfig;

/// Version of the layout above; a dump of another version is discarded (and the
/// graph rebuilt in the background). 1: f32 points; 2: f16 points (issue 19).
const FORMAT: u32 = 2;
const BASENAME: &str = "graph";
const MANIFEST: &str = "manifest.json";
const ROWS: &str = "rows.bin";

/// The dump directory of namespace `name` under `root` (`<data_dir>/graphs`).
pub fn namespace_dir(root: &Path, name: &str) -> PathBuf {
    let digest = Sha256::digest(name.as_bytes());
    root.join(hex::encode(&digest[..16]))
}

#[derive(Debug, Serialize, Deserialize)]
struct FileSum {
    name: String,
    bytes: u64,
    crc32: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    namespace: String,
    dim: usize,
    m: usize,
    ef_construction: usize,
    /// Graph positions (points) in the dump.
    len: usize,
    files: Vec<FileSum>,
}

/// A reloaded graph and the row of each of its positions (`seqs[p]` for `p`).
pub struct Loaded {
    /// The graph; hnsw_rs's own copy of the vectors included, as f16.
    pub hnsw: GraphF16,
    /// Row of every position, `len` entries.
    pub seqs: Vec<u64>,
}

fn generations(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let generation = name.strip_prefix("g-")?.parse().ok()?;
            Some((generation, e.path()))
        })
        .collect();
    out.sort_by_key(|(g, _)| std::cmp::Reverse(*g));
    out
}

fn sum(path: &Path) -> io::Result<(u64, u32)> {
    let mut f = File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hasher.finalize()))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `hnsw` (positions `0..seqs.len()`, the row of each) as a new
/// generation of `dir`, then deletes the older ones. The graph must not change
/// while it is written (the caller is its only writer). Blocking: seconds at
/// 100k vectors (~190 MB of files at 384 dimensions).
///
/// Returns the generation directory written.
///
/// # Errors
/// I/O errors; hnsw_rs's dump errors (and panics) as [`io::ErrorKind::Other`].
/// A failed dump deletes what it wrote; one cut short by a crash leaves an
/// incomplete generation that the next load deletes.
pub fn dump(
    dir: &Path,
    namespace: &str,
    hnsw: &GraphF16,
    seqs: &[u64],
    dim: usize,
    config: &IndexConfig,
) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    let generation = generations(dir).first().map_or(1, |(g, _)| g + 1);
    let gen_dir = dir.join(format!("g-{generation}"));
    fs::create_dir(&gen_dir)?;
    match write_generation(&gen_dir, namespace, hnsw, seqs, dim, config) {
        Ok(()) => {}
        Err(e) => {
            let _ = fs::remove_dir_all(&gen_dir);
            return Err(e);
        }
    }
    sync_dir(dir)?;
    for (g, path) in generations(dir) {
        if g < generation {
            let _ = fs::remove_dir_all(path);
        }
    }
    Ok(gen_dir)
}

fn write_generation(
    gen_dir: &Path,
    namespace: &str,
    hnsw: &GraphF16,
    seqs: &[u64],
    dim: usize,
    config: &IndexConfig,
) -> io::Result<()> {
    // hnsw_rs panics when it cannot create its files (e.g. the directory vanished).
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        hnsw.file_dump(gen_dir, BASENAME)
    }))
    .map_err(|_| io::Error::other("hnsw_rs panicked writing the dump"))?
    .map_err(|e| io::Error::other(format!("hnsw dump: {e}")))?;
    {
        let mut w = BufWriter::new(File::create(gen_dir.join(ROWS))?);
        for s in seqs {
            w.write_all(&s.to_le_bytes())?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    let mut files = Vec::new();
    for name in [
        format!("{BASENAME}.hnsw.graph"),
        format!("{BASENAME}.hnsw.data"),
        ROWS.to_owned(),
    ] {
        let path = gen_dir.join(&name);
        File::open(&path)?.sync_all()?;
        let (bytes, crc32) = sum(&path)?;
        files.push(FileSum { name, bytes, crc32 });
    }
    let manifest = Manifest {
        format: FORMAT,
        namespace: namespace.to_owned(),
        dim,
        m: config.m,
        ef_construction: config.ef_construction,
        len: seqs.len(),
        files,
    };
    // Fault injection for the crash tests: hold the dump here, with every file
    // written and no manifest yet, so a `kill -9` lands inside it.
    if let Some(ms) = std::env::var("MEMORYD_FAULT_DUMP_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    let tmp = gen_dir.join("manifest.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(&manifest).map_err(io::Error::other)?)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, gen_dir.join(MANIFEST))?;
    sync_dir(gen_dir)
}

/// Why a generation was not used.
fn check(
    gen_dir: &Path,
    namespace: &str,
    dim: usize,
    config: &IndexConfig,
) -> Result<Manifest, String> {
    let bytes = fs::read(gen_dir.join(MANIFEST)).map_err(|e| format!("no manifest: {e}"))?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("manifest unreadable: {e}"))?;
    if manifest.format != FORMAT {
        return Err(format!(
            "format {} (this build reads {FORMAT})",
            manifest.format
        ));
    }
    if manifest.namespace != namespace || manifest.dim != dim {
        return Err(format!(
            "dump of {:?} at {} dimensions, not {namespace:?} at {dim}",
            manifest.namespace, manifest.dim
        ));
    }
    if (manifest.m, manifest.ef_construction) != (config.m, config.ef_construction) {
        return Err(format!(
            "built with M {} and ef_construction {}, configured {} and {}",
            manifest.m, manifest.ef_construction, config.m, config.ef_construction
        ));
    }
    for f in &manifest.files {
        let (bytes, crc32) = sum(&gen_dir.join(&f.name)).map_err(|e| format!("{}: {e}", f.name))?;
        if (bytes, crc32) != (f.bytes, f.crc32) {
            return Err(format!("{} does not match its checksum", f.name));
        }
    }
    Ok(manifest)
}

/// Reloads the newest whole generation of `dir` for `namespace` at `dim`
/// dimensions built with `config`'s M and ef_construction; deletes every other generation (older ones and incomplete
/// newer ones). `None` when there is none or it cannot be read (logged).
/// Blocking: reads every file twice (checksum, then hnsw_rs).
pub fn load(dir: &Path, namespace: &str, dim: usize, config: &IndexConfig) -> Option<Loaded> {
    let mut found = None;
    for (_, gen_dir) in generations(dir) {
        if found.is_none() {
            match check(&gen_dir, namespace, dim, config) {
                Ok(manifest) => match read(&gen_dir, &manifest) {
                    Ok(loaded) => {
                        found = Some(loaded);
                        continue;
                    }
                    Err(e) => tracing::warn!(
                        namespace, dir = %gen_dir.display(), error = %e,
                        "graph dump not loadable; discarded"
                    ),
                },
                Err(e) => tracing::warn!(
                    namespace, dir = %gen_dir.display(), reason = %e,
                    "graph dump discarded"
                ),
            }
        }
        let _ = fs::remove_dir_all(&gen_dir);
    }
    found
}

fn read(gen_dir: &Path, manifest: &Manifest) -> Result<Loaded, String> {
    let rows = fs::read(gen_dir.join(ROWS)).map_err(|e| e.to_string())?;
    let seqs: Vec<u64> = rows
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    if seqs.len() != manifest.len {
        return Err(format!(
            "{} rows for {} positions",
            seqs.len(),
            manifest.len
        ));
    }
    // hnsw_rs ties the graph's lifetime to its reader (which could hold a memory
    // map; this one does not): the reader, a few hundred bytes of paths and
    // options, is leaked once per reload so the graph can be `'static`.
    let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(gen_dir, BASENAME)));
    // hnsw_rs asserts on malformed files; the checksums make that unlikely, and a
    // panic here must not take the engine's open down with it.
    let hnsw = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        // Moved out of the capture (the closure is then FnOnce and the reader's
        // borrow can be 'static).
        let io = io;
        io.load_hnsw::<u16, DistDotF16>()
    }))
    .map_err(|_| "hnsw_rs panicked reading the dump".to_owned())?
    .map_err(|e| e.to_string())?;
    if hnsw.get_nb_point() != manifest.len {
        return Err(format!(
            "{} points for {} positions",
            hnsw.get_nb_point(),
            manifest.len
        ));
    }
    Ok(Loaded { hnsw, seqs })
}

/// Deletes every dump of the namespace (it was deleted or no longer needs a graph).
pub fn remove(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot delete a graph dump");
    }
}

#[cfg(test)]
#[path = "persist_tests.rs"]
mod tests;
