//! Saved models under `model_path` (`local://DIR`, or an object store:
//! `s3://`, `gs://`, `az://`, see [`super::remote`]): one file per batch and
//! model tag holding every metric's model, with what each was trained on
//! (`DIR/<batch>/<tag>.models`). The file is a magic word and a format
//! version, then the models as zstd-compressed JSON (exact f64 round
//! trips): a score job reads one file per model instead of one per metric.
//! A file of another format is refused with a message saying to retrain.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TrainedModel;
use crate::file_names::file_stem as safe;

pub const FORMAT_VERSION: u32 = 3;

/// The first bytes of a model file.
const MAGIC: &[u8; 8] = b"SSMODELS";

/// Most bytes a model file unpacks to (a batch of 10,000 metrics' KNN
/// models, 2,500 rows of a few features each, is about 2 GB of JSON... at
/// most; the cap stops a damaged file from filling memory).
const MAX_UNPACKED: u64 = 8 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ModelStoreError {
    #[error(
        "model_path `{0}`: sandstack keeps models in local://DIR, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX; write one of those"
    )]
    Scheme(String),
    /// The object store could not be opened, read or written.
    #[error("model_path `{url}`: {message}")]
    Remote { url: String, message: String },
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path} was saved by model format {found}, this sandstack reads format {FORMAT_VERSION}: run `sandstack train` for the batch again")]
    Version { path: PathBuf, found: u32 },
}

/// What a metric's model was trained on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainedOn {
    /// Observations read (before preprocessing).
    pub observations: usize,
    pub first_us: i64,
    pub last_us: i64,
    /// When it was trained (the run's clock).
    pub trained_at_us: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub trained_on: TrainedOn,
    pub model: TrainedModel,
}

/// Every metric's model of one batch and tag.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Bundle {
    batch: String,
    model_tag: String,
    metrics: BTreeMap<String, Saved>,
}

/// Where a batch's model files are.
enum Place {
    Local(PathBuf),
    Remote(super::remote::Remote),
}

pub struct ModelStore {
    place: Place,
}

impl ModelStore {
    /// `model_path` as configured: `local://` paths relative to `base`, an
    /// object store with the credentials in the operator's `env`.
    pub fn open(
        model_path: &str,
        base: &Path,
        env: &super::remote::Env,
    ) -> Result<ModelStore, ModelStoreError> {
        if let Some(dir) = model_path.strip_prefix("local://") {
            return Ok(ModelStore {
                place: Place::Local(base.join(dir)),
            });
        }
        match super::remote::Remote::open(model_path, env) {
            Some(Ok(remote)) => Ok(ModelStore {
                place: Place::Remote(remote),
            }),
            Some(Err(message)) => Err(ModelStoreError::Remote {
                url: model_path.to_string(),
                message,
            }),
            None => Err(ModelStoreError::Scheme(model_path.to_string())),
        }
    }

    /// The file's name parts under the root: the batch's folder, the tag's file.
    fn parts(batch: &str, tag: &str) -> [String; 2] {
        [safe(batch), format!("{}.models", safe(tag))]
    }

    /// Where the models of `batch` and `tag` are, for messages.
    pub fn location(&self, batch: &str, tag: &str) -> String {
        let [dir, file] = Self::parts(batch, tag);
        match &self.place {
            Place::Local(root) => root.join(dir).join(file).display().to_string(),
            Place::Remote(r) => r.location(&[&dir, &file]),
        }
    }

    /// The local file of `batch` and `tag` (None in an object store).
    pub fn path(&self, batch: &str, tag: &str) -> Option<PathBuf> {
        let [dir, file] = Self::parts(batch, tag);
        match &self.place {
            Place::Local(root) => Some(root.join(dir).join(file)),
            Place::Remote(_) => None,
        }
    }

    /// Save `fitted` (metric, model, what it was trained on; all of model
    /// tag `tag`) over the batch's saved ones: metrics not in `fitted` keep
    /// theirs. A file of another format is replaced.
    pub fn save(
        &self,
        batch: &str,
        tag: &str,
        fitted: Vec<(String, Saved)>,
    ) -> Result<String, ModelStoreError> {
        let fresh = || Bundle {
            batch: batch.into(),
            model_tag: tag.into(),
            metrics: BTreeMap::new(),
        };
        let location = self.location(batch, tag);
        let mut bundle = match self.read(batch, tag) {
            Ok(Some(b)) => b,
            Ok(None) => fresh(),
            // Another format, or not a model file at all (a link planted
            // where it goes): replaced, with what was just trained.
            Err(ModelStoreError::Remote { url, message }) => {
                return Err(ModelStoreError::Remote { url, message })
            }
            Err(e) => {
                tracing::warn!(path = %location, error = %e, "replacing a model file that cannot be read");
                fresh()
            }
        };
        bundle.metrics.extend(fitted);
        let path = match &self.place {
            Place::Local(_) => self.path(batch, tag).unwrap_or_default(),
            Place::Remote(r) => {
                let [dir, file] = Self::parts(batch, tag);
                let mut bytes = Vec::new();
                encode(&bundle, &mut bytes).map_err(|message| ModelStoreError::Io {
                    path: location.clone().into(),
                    message,
                })?;
                r.put(&[&dir, &file], bytes)
                    .map_err(|message| ModelStoreError::Remote {
                        url: location.clone(),
                        message,
                    })?;
                return Ok(location);
            }
        };
        let io = |message: String| ModelStoreError::Io {
            path: path.clone(),
            message,
        };
        let dir = path
            .parent()
            .ok_or_else(|| io("a model file needs a folder".into()))?;
        std::fs::create_dir_all(dir).map_err(|e| io(e.to_string()))?;
        // A new file of a name no one can guess, renamed over the model: a
        // link planted where the model goes is replaced, never written
        // through.
        let tmp = tempfile::Builder::new()
            .prefix(".models-")
            .tempfile_in(dir)
            .map_err(|e| io(e.to_string()))?;
        let mut out = std::io::BufWriter::new(tmp);
        encode(&bundle, &mut out).map_err(io)?;
        let tmp = out.into_inner().map_err(|e| io(e.to_string()))?;
        tmp.persist(&path).map_err(|e| io(e.to_string()))?;
        Ok(path.display().to_string())
    }

    /// Every metric's saved model of `tag`; empty if there are none.
    pub fn load(&self, batch: &str, tag: &str) -> Result<BTreeMap<String, Saved>, ModelStoreError> {
        Ok(self
            .read(batch, tag)?
            .map(|b| b.metrics)
            .unwrap_or_default())
    }

    fn read(&self, batch: &str, tag: &str) -> Result<Option<Bundle>, ModelStoreError> {
        match &self.place {
            Place::Local(_) => {
                let path = self.path(batch, tag).unwrap_or_default();
                let file = match std::fs::File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => {
                        return Err(ModelStoreError::Io {
                            path,
                            message: e.to_string(),
                        })
                    }
                };
                decode(std::io::BufReader::new(file), &path).map(Some)
            }
            Place::Remote(r) => {
                let [dir, file] = Self::parts(batch, tag);
                let location = self.location(batch, tag);
                match r.get(&[&dir, &file], MAX_UNPACKED) {
                    Ok(Some(bytes)) => decode(bytes.as_slice(), Path::new(&location)).map(Some),
                    Ok(None) => Ok(None),
                    Err(message) => Err(ModelStoreError::Remote {
                        url: location,
                        message,
                    }),
                }
            }
        }
    }
}

/// A model file's bytes: the magic word, the format, the zstd'd JSON.
fn encode(bundle: &Bundle, out: &mut impl std::io::Write) -> Result<(), String> {
    out.write_all(MAGIC).map_err(|e| e.to_string())?;
    out.write_all(&FORMAT_VERSION.to_le_bytes())
        .map_err(|e| e.to_string())?;
    let mut z = zstd::stream::Encoder::new(out, 3).map_err(|e| e.to_string())?;
    serde_json::to_writer(&mut z, bundle).map_err(|e| e.to_string())?;
    z.finish().map(|_| ()).map_err(|e| e.to_string())
}

/// A model file read back; `path` names it in errors.
fn decode(mut r: impl Read, path: &Path) -> Result<Bundle, ModelStoreError> {
    let io = |message: String| ModelStoreError::Io {
        path: path.to_path_buf(),
        message,
    };
    let mut head = [0u8; 12];
    r.read_exact(&mut head)
        .map_err(|_| io("not a sandstack model file (too short)".into()))?;
    if &head[..8] != MAGIC {
        return Err(io("not a sandstack model file".into()));
    }
    let found = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if found != FORMAT_VERSION {
        return Err(ModelStoreError::Version {
            path: path.to_path_buf(),
            found,
        });
    }
    let z = zstd::stream::Decoder::new(r).map_err(|e| io(e.to_string()))?;
    // Unpacked whole, then parsed: serde_json reads a slice several
    // times faster than a stream.
    let mut json = Vec::new();
    z.take(MAX_UNPACKED)
        .read_to_end(&mut json)
        .map_err(|e| io(format!("corrupt model file: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| io(format!("corrupt model file: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;

    fn model(tag: &str, n: usize) -> Saved {
        let rows: Vec<Vec<f64>> = (0..n).map(|i| vec![i as f64, (i * i % 7) as f64]).collect();
        let cfg = ModelConfig {
            model_name: crate::config::ModelKind::Knn,
            model_tag: Some(tag.into()),
            model_params: Default::default(),
        };
        Saved {
            trained_on: TrainedOn {
                observations: n,
                first_us: 0,
                last_us: n as i64,
                trained_at_us: 7,
            },
            model: TrainedModel::fit(&cfg, &rows, 1).expect("fits"),
        }
    }

    #[test]
    fn saves_merges_loads_and_refuses_other_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            ModelStore::open("local://models", dir.path(), &Default::default()).expect("local");
        let (a, b) = (model("knn", 50), model("knn", 60));
        let path = std::path::PathBuf::from(
            store
                .save("../b", "knn", vec![("../etc/passwd".into(), a.clone())])
                .expect("save"),
        );
        assert!(
            path.starts_with(dir.path().join("models")),
            "{}",
            path.display()
        );
        store
            .save("../b", "knn", vec![("m2".into(), b.clone())])
            .expect("merge");
        let all = store.load("../b", "knn").expect("load");
        assert_eq!(all.get("../etc/passwd"), Some(&a), "kept, to the bit");
        assert_eq!(all.get("m2"), Some(&b));
        assert!(store.load("../b", "other").expect("none").is_empty());

        let mut bytes = std::fs::read(&path).expect("read");
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        std::fs::write(&path, &bytes).expect("write");
        let err = store.load("../b", "knn").unwrap_err().to_string();
        assert!(err.ends_with("was saved by model format 2, this sandstack reads format 3: run `sandstack train` for the batch again"), "{err}");
        // Training again replaces a file of another format.
        store
            .save("../b", "knn", vec![("m2".into(), b)])
            .expect("save over");
        assert_eq!(store.load("../b", "knn").expect("load").len(), 1);
        std::fs::write(&path, b"{\"format\": 3}").expect("write");
        let err = store.load("../b", "knn").unwrap_err().to_string();
        assert!(err.contains("not a sandstack model file"), "{err}");
        assert!(ModelStore::open("ftp://bucket/models", dir.path(), &Default::default()).is_err());
    }

    #[test]
    fn a_link_where_a_model_goes_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "the operator's file").expect("write");
        let store =
            ModelStore::open("local://models", dir.path(), &Default::default()).expect("local");
        let path = store.path("b", "t").expect("local");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::os::unix::fs::symlink(&victim, &path).expect("link");
        store
            .save("b", "t", vec![("m".into(), model("t", 20))])
            .expect("save");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("read"),
            "the operator's file"
        );
        assert!(std::fs::symlink_metadata(&path).expect("meta").is_file());
        assert_eq!(store.load("b", "t").expect("load").len(), 1);
    }
}
