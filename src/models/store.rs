//! Saved models under `model_path` (`local://DIR`), one file per batch,
//! metric and model tag, in a versioned JSON envelope: a file written by
//! another format version is refused with a message saying to retrain.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TrainedModel;
use crate::file_names::file_stem as safe;

pub const FORMAT_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ModelStoreError {
    #[error(
        "model_path `{0}`: sandstack keeps models on local disk only for now (local://DIR; s3:// and gs:// are planned), so this batch cannot train or score; its ingest, change detection and threshold alerts run"
    )]
    Scheme(String),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path} was saved by model format {found}, this sandstack reads format {FORMAT_VERSION}: run `sandstack train` for the batch again")]
    Version { path: PathBuf, found: u32 },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    format: u32,
    batch: String,
    metric: String,
    model: TrainedModel,
}

pub struct ModelStore {
    root: PathBuf,
}

impl ModelStore {
    /// `model_path` as configured, relative paths against `base`.
    pub fn open(model_path: &str, base: &Path) -> Result<ModelStore, ModelStoreError> {
        let Some(dir) = model_path.strip_prefix("local://") else {
            return Err(ModelStoreError::Scheme(model_path.to_string()));
        };
        Ok(ModelStore {
            root: base.join(dir),
        })
    }

    pub fn path(&self, batch: &str, metric: &str, tag: &str) -> PathBuf {
        self.root
            .join(safe(batch))
            .join(safe(metric))
            .join(format!("{}.json", safe(tag)))
    }

    pub fn save(
        &self,
        batch: &str,
        metric: &str,
        model: &TrainedModel,
    ) -> Result<PathBuf, ModelStoreError> {
        let path = self.path(batch, metric, &model.model_tag);
        let io = |message: String| ModelStoreError::Io {
            path: path.clone(),
            message,
        };
        let envelope = Envelope {
            format: FORMAT_VERSION,
            batch: batch.into(),
            metric: metric.into(),
            model: model.clone(),
        };
        let text = serde_json::to_vec(&envelope).map_err(|e| io(e.to_string()))?;
        let dir = path
            .parent()
            .ok_or_else(|| io("a model file needs a folder".into()))?;
        std::fs::create_dir_all(dir).map_err(|e| io(e.to_string()))?;
        // A new file of a name no one can guess, renamed over the model: a
        // link planted where the model goes is replaced, never written
        // through.
        let mut tmp = tempfile::Builder::new()
            .prefix(".model-")
            .tempfile_in(dir)
            .map_err(|e| io(e.to_string()))?;
        std::io::Write::write_all(&mut tmp, &text).map_err(|e| io(e.to_string()))?;
        tmp.persist(&path).map_err(|e| io(e.to_string()))?;
        Ok(path)
    }

    /// The saved model, None if there is none.
    pub fn load(
        &self,
        batch: &str,
        metric: &str,
        tag: &str,
    ) -> Result<Option<TrainedModel>, ModelStoreError> {
        let path = self.path(batch, metric, tag);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ModelStoreError::Io {
                    path,
                    message: e.to_string(),
                })
            }
        };
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let v: Version = serde_json::from_slice(&bytes).map_err(|e| ModelStoreError::Io {
            path: path.clone(),
            message: format!("not a sandstack model file: {e}"),
        })?;
        if v.format != FORMAT_VERSION {
            return Err(ModelStoreError::Version {
                path,
                found: v.format,
            });
        }
        let env: Envelope = serde_json::from_slice(&bytes).map_err(|e| ModelStoreError::Io {
            path: path.clone(),
            message: format!("corrupt model file: {e}"),
        })?;
        Ok(Some(env.model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;

    #[test]
    fn saves_loads_and_refuses_other_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ModelStore::open("local://models", dir.path()).expect("local");
        let rows: Vec<Vec<f64>> = (0..50)
            .map(|i| vec![i as f64, (i * i % 7) as f64])
            .collect();
        let cfg = ModelConfig {
            model_name: crate::config::ModelKind::Pca,
            model_tag: Some("pca_default".into()),
            model_params: Default::default(),
        };
        let m = TrainedModel::fit(&cfg, &rows, 1).expect("fits");
        let path = store.save("b", "../etc/passwd", &m).expect("save");
        assert!(
            path.starts_with(dir.path().join("models/b")),
            "{}",
            path.display()
        );
        assert_eq!(
            store
                .load("b", "../etc/passwd", "pca_default")
                .expect("load"),
            Some(m)
        );
        assert_eq!(store.load("b", "other", "pca_default").expect("load"), None);

        let text = std::fs::read_to_string(&path).expect("read").replacen(
            "\"format\":2",
            "\"format\":1",
            1,
        );
        std::fs::write(&path, text).expect("write");
        let err = store
            .load("b", "../etc/passwd", "pca_default")
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("was saved by model format 1, this sandstack reads format 2: run `sandstack train` for the batch again"), "{err}");
        assert!(ModelStore::open("s3://bucket/models", dir.path()).is_err());
    }

    #[test]
    fn a_link_where_a_model_goes_is_replaced_not_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "the operator's file").expect("write");
        let store = ModelStore::open("local://models", dir.path()).expect("local");
        let rows: Vec<Vec<f64>> = (0..20).map(|i| vec![i as f64, 1.0]).collect();
        let cfg = ModelConfig {
            model_name: crate::config::ModelKind::Pca,
            model_tag: Some("t".into()),
            model_params: Default::default(),
        };
        let m = TrainedModel::fit(&cfg, &rows, 1).expect("fits");
        let path = store.path("b", "m", "t");
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::os::unix::fs::symlink(&victim, &path).expect("link");
        std::os::unix::fs::symlink(&victim, path.with_extension("partial")).expect("link");
        store.save("b", "m", &m).expect("save");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("read"),
            "the operator's file"
        );
        assert!(std::fs::symlink_metadata(&path).expect("meta").is_file());
        assert!(store.load("b", "m", "t").expect("load").is_some());
    }
}
