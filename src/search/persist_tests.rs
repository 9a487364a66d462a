//! Graph dumps survive only whole: torn, truncated or unfinished generations are
//! discarded and the newest whole one is used.

use super::*;
use crate::core::types::{Message, Role};
use crate::search::vector::NamespaceIndex;

fn graph(n: usize, seed: u64) -> (vector_graph::Graph, Vec<u64>) {
    vector_graph::make(n, seed)
}

mod vector_graph {
    use super::*;
    use rand::{Rng, SeedableRng};

    pub type Graph = crate::search::vector::SharedGraph;

    pub fn make(n: usize, seed: u64) -> (Graph, Vec<u64>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut idx = NamespaceIndex::new(
            8,
            IndexConfig {
                exact_threshold: 10,
                ..IndexConfig::default()
            },
        );
        for i in 0..n {
            let mut v: Vec<f32> = (0..8).map(|_| rng.random_range(-1.0..1.0)).collect();
            crate::embed::l2_normalize(&mut v);
            let m = Message {
                id: String::new(),
                namespace: "t".into(),
                role: Role::User,
                name: None,
                content: String::new(),
                timestamp: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                agent_id: None,
                session_id: None,
                exchange_id: None,
                metadata: Default::default(),
            };
            idx.push(i as u64 + 1, &m, &v);
        }
        let g = NamespaceIndex::rebuilt_from(&idx.snapshot());
        g.graph_for_dump().unwrap()
    }
}

fn gens(dir: &Path) -> Vec<u64> {
    let mut g: Vec<u64> = generations(dir).into_iter().map(|(g, _)| g).collect();
    g.sort();
    g
}

#[test]
fn a_new_generation_replaces_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = IndexConfig::default();
    let (a, sa) = graph(50, 1);
    let (b, sb) = graph(80, 2);
    dump(dir.path(), "t", &a, &sa, 8, &cfg).unwrap();
    dump(dir.path(), "t", &b, &sb, 8, &cfg).unwrap();
    assert_eq!(gens(dir.path()), [2]);
    let loaded = load(dir.path(), "t", 8, &IndexConfig::default()).unwrap();
    assert_eq!(loaded.seqs, sb);
    assert_eq!(loaded.hnsw.get_nb_point(), 80);
}

/// `kill -9` in the middle of a dump leaves a generation without a manifest, or
/// (a crash after the manifest but on a file system that lost data) files that do
/// not match it: both are discarded, and the previous whole generation is used.
#[test]
fn an_unfinished_or_torn_generation_is_discarded_for_the_previous_one() {
    let cfg = IndexConfig::default();
    let (a, sa) = graph(50, 1);
    let (b, sb) = graph(80, 2);
    for damage in [
        "no manifest",
        "truncated data",
        "flipped graph byte",
        "short rows",
    ] {
        let dir = tempfile::tempdir().unwrap();
        dump(dir.path(), "t", &a, &sa, 8, &cfg).unwrap();
        // The second dump is written while the first is held aside (a successful
        // dump deletes older generations), then numbered 2 beside it and damaged.
        let keep = dir.path().join("g-1");
        let hold = dir.path().join("hold");
        fs::rename(&keep, &hold).unwrap();
        dump(dir.path(), "t", &b, &sb, 8, &cfg).unwrap();
        fs::rename(&keep, dir.path().join("g-2")).unwrap();
        fs::rename(&hold, &keep).unwrap();
        assert_eq!(gens(dir.path()), [1, 2]);
        let g2 = dir.path().join("g-2");
        match damage {
            "no manifest" => fs::remove_file(g2.join(MANIFEST)).unwrap(),
            "truncated data" => {
                let p = g2.join("graph.hnsw.data");
                let len = fs::metadata(&p).unwrap().len();
                File::options()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_len(len / 2)
                    .unwrap();
            }
            "flipped graph byte" => {
                let p = g2.join("graph.hnsw.graph");
                let mut bytes = fs::read(&p).unwrap();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x40;
                fs::write(&p, bytes).unwrap();
            }
            _ => {
                let p = g2.join(ROWS);
                let bytes = fs::read(&p).unwrap();
                fs::write(&p, &bytes[..bytes.len() - 8]).unwrap();
            }
        }
        let loaded = load(dir.path(), "t", 8, &IndexConfig::default())
            .unwrap_or_else(|| panic!("{damage}: nothing loaded"));
        assert_eq!(loaded.seqs, sa, "{damage}: the previous generation is used");
        assert_eq!(
            gens(dir.path()),
            [1],
            "{damage}: the damaged one is deleted"
        );
    }
}

#[test]
fn nothing_whole_loads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(load(dir.path(), "t", 8, &IndexConfig::default()).is_none());
    let (a, sa) = graph(30, 3);
    dump(dir.path(), "t", &a, &sa, 8, &IndexConfig::default()).unwrap();
    fs::remove_file(dir.path().join("g-1").join(MANIFEST)).unwrap();
    assert!(load(dir.path(), "t", 8, &IndexConfig::default()).is_none());
    assert!(gens(dir.path()).is_empty());
}

/// Damage that the checksums cannot see (the manifest rewritten to match): a
/// rows file shorter than the graph, and a graph file hnsw_rs cannot parse (it
/// asserts; the panic is caught). Nothing is loaded and the generation goes.
#[test]
fn damage_behind_a_matching_manifest_loads_nothing() {
    let cfg = IndexConfig::default();
    let (a, sa) = graph(60, 4);
    for damage in ["short rows", "garbage graph", "garbage data"] {
        let dir = tempfile::tempdir().unwrap();
        let g1 = dump(dir.path(), "t", &a, &sa, 8, &cfg).unwrap();
        let file = match damage {
            "short rows" => ROWS,
            "garbage graph" => "graph.hnsw.graph",
            _ => "graph.hnsw.data",
        };
        let p = g1.join(file);
        let mut bytes = fs::read(&p).unwrap();
        match damage {
            "short rows" => bytes.truncate(bytes.len() - 16),
            _ => bytes.iter_mut().take(64).for_each(|b| *b = 0xA5),
        }
        fs::write(&p, &bytes).unwrap();
        // Rewrite the manifest so the checksums match the damaged file.
        let mut manifest: Manifest =
            serde_json::from_slice(&fs::read(g1.join(MANIFEST)).unwrap()).unwrap();
        for f in &mut manifest.files {
            let (bytes, crc32) = sum(&g1.join(&f.name)).unwrap();
            (f.bytes, f.crc32) = (bytes, crc32);
        }
        fs::write(g1.join(MANIFEST), serde_json::to_vec(&manifest).unwrap()).unwrap();
        assert!(load(dir.path(), "t", 8, &cfg).is_none(), "{damage}");
        assert!(
            gens(dir.path()).is_empty(),
            "{damage}: the generation is deleted"
        );
    }
}

/// A dump written before the graph stored f16 points (format 1: f32 vectors in
/// its data file) is discarded, not read as f16: the graph is then rebuilt.
#[test]
fn a_format_1_dump_of_f32_points_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let (a, sa) = graph(40, 4);
    dump(dir.path(), "t", &a, &sa, 8, &IndexConfig::default()).unwrap();
    let path = dir.path().join("g-1").join(MANIFEST);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        manifest["format"], FORMAT,
        "dumps are written at the current format"
    );
    manifest["format"] = 1.into();
    fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    assert!(load(dir.path(), "t", 8, &IndexConfig::default()).is_none());
    assert!(gens(dir.path()).is_empty(), "the old generation is deleted");
}
