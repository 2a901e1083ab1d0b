//! Model files in an object store (`model_path: s3://BUCKET/PREFIX`,
//! `gs://...`, `az://CONTAINER/PREFIX`): the URL's scheme picks the client
//! (the `object_store` crate), the operator's environment gives its
//! credentials under Anomstack's names (and the clouds' own), never the
//! batch. A model file is read and written whole: a put replaces it in one
//! step, so a reader sees the old file or the new one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest service account key read.
const MAX_KEY_BYTES: u64 = 64 << 10;

/// The operator's variables.
pub type Env = BTreeMap<String, String>;

/// An object store and the prefix model files go under.
pub struct Remote {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// `model_path` as written, for messages.
    url: String,
}

/// The first of `names` set (not empty) in `env`.
fn first(env: &Env, names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| env.get(*n))
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
}

fn client_options(allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_allow_http(allow_http)
}

impl Remote {
    /// The store `model_path` names; None for a scheme that is not an
    /// object store. The error says what to set.
    pub fn open(model_path: &str, env: &Env) -> Option<Result<Remote, String>> {
        let (scheme, rest) = model_path.split_once("://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let built = match scheme {
            "s3" | "s3a" => s3(bucket, env),
            "gs" | "gcs" => gcs(bucket, env),
            "az" | "azure" | "abfs" | "abfss" => azure(bucket, env),
            _ => return None,
        };
        Some(built.and_then(|store| {
            if bucket.is_empty() {
                return Err(format!(
                    "model_path `{model_path}` names no bucket: write {scheme}://BUCKET/PREFIX"
                ));
            }
            let prefix = ObjectPath::parse(prefix.trim_matches('/'))
                .map_err(|e| format!("model_path `{model_path}`: {e}"))?;
            Ok(Remote {
                store,
                prefix,
                url: model_path.to_string(),
            })
        }))
    }

    /// Where the file `parts` (already safe names) lives, for messages.
    pub fn location(&self, parts: &[&str]) -> String {
        format!("{}/{}", self.url.trim_end_matches('/'), parts.join("/"))
    }

    fn key(&self, parts: &[&str]) -> ObjectPath {
        parts
            .iter()
            .fold(self.prefix.clone(), |p, part| p.clone().join(*part))
    }

    /// The file's bytes, None when there is none; at most `max_bytes`.
    pub fn get(&self, parts: &[&str], max_bytes: u64) -> Result<Option<Vec<u8>>, String> {
        let key = self.key(parts);
        let store = self.store.clone();
        let read = async move {
            let got = match store.get(&key).await {
                Ok(g) => g,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
            if got.meta.size > max_bytes {
                return Err(format!(
                    "it is {} bytes, over the {max_bytes} a model file may have",
                    got.meta.size
                ));
            }
            got.bytes()
                .await
                .map(|b| Some(b.to_vec()))
                .map_err(|e| e.to_string())
        };
        crate::outbound::block_on(read).map_err(|e| e.to_string())?
    }

    /// Write the whole file, replacing any.
    pub fn put(&self, parts: &[&str], bytes: Vec<u8>) -> Result<(), String> {
        let key = self.key(parts);
        let store = self.store.clone();
        let write = async move {
            store
                .put(&key, PutPayload::from(bytes))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        crate::outbound::block_on(write).map_err(|e| e.to_string())?
    }
}

/// S3, or any store speaking its API: Anomstack's `ANOMSTACK_AWS_*`, else
/// AWS's own variables; with none, the machine's role (instance metadata).
fn s3(bucket: &str, env: &Env) -> Result<Arc<dyn ObjectStore>, String> {
    use object_store::aws::AmazonS3Builder;
    let mut b = AmazonS3Builder::new().with_bucket_name(bucket).with_region(
        first(
            env,
            &["ANOMSTACK_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"],
        )
        .unwrap_or_else(|| "us-east-1".into()),
    );
    let key = first(env, &["ANOMSTACK_AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"]);
    let secret = first(
        env,
        &["ANOMSTACK_AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"],
    );
    match (key, secret) {
        (Some(k), Some(s)) => {
            b = b.with_access_key_id(k).with_secret_access_key(s);
            if let Some(t) = first(env, &["ANOMSTACK_AWS_SESSION_TOKEN", "AWS_SESSION_TOKEN"]) {
                b = b.with_token(t);
            }
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(
                "s3://: set both ANOMSTACK_AWS_ACCESS_KEY_ID and ANOMSTACK_AWS_SECRET_ACCESS_KEY \
                 (or neither, to use the machine's role)"
                    .into(),
            )
        }
        (None, None) => {}
    }
    let endpoint = first(
        env,
        &[
            "ANOMSTACK_AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT_URL",
        ],
    );
    let mut allow_http = false;
    if let Some(e) = endpoint {
        allow_http = e.starts_with("http://");
        // A store other than AWS (MinIO, Ceph, R2) takes the bucket in the path.
        b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
    }
    b.with_client_options(client_options(allow_http))
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| format!("s3://{bucket}: {e}"))
}

/// Google Cloud Storage with a service account's key (Anomstack's
/// `ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS`, its file, or `..._JSON`, the
/// key itself; else Google's own `GOOGLE_APPLICATION_CREDENTIALS`).
fn gcs(bucket: &str, env: &Env) -> Result<Arc<dyn ObjectStore>, String> {
    use object_store::gcp::GoogleCloudStorageBuilder;
    let key = if let Some(path) = first(
        env,
        &[
            "ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS",
            "GOOGLE_APPLICATION_CREDENTIALS",
        ],
    ) {
        crate::config::folder_files::read_regular(std::path::Path::new(&path), MAX_KEY_BYTES)
            .map_err(|e| format!("gs://: cannot read the service account key {path}: {e}"))?
    } else if let Some(json) = first(env, &["ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS_JSON"]) {
        json
    } else {
        return Err(
            "gs://: set ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS to a service account's JSON key \
             (or ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS_JSON to the key itself)"
                .into(),
        );
    };
    // An emulator's key names its address (`gcs_base_url`); plain HTTP is
    // allowed only then.
    let allow_http = serde_json::from_str::<serde_json::Value>(&key)
        .ok()
        .and_then(|v| {
            v.get("gcs_base_url")?
                .as_str()
                .map(|u| u.starts_with("http://"))
        })
        .unwrap_or(false);
    GoogleCloudStorageBuilder::new()
        .with_bucket_name(bucket)
        .with_service_account_key(key)
        .with_client_options(client_options(allow_http))
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| format!("gs://{bucket}: {e}"))
}

/// Azure Blob Storage with an account's name and key (Azure's
/// `AZURE_STORAGE_ACCOUNT_NAME` and `..._KEY`, or with `ANOMSTACK_`).
fn azure(container: &str, env: &Env) -> Result<Arc<dyn ObjectStore>, String> {
    use object_store::azure::MicrosoftAzureBuilder;
    let account = first(
        env,
        &[
            "ANOMSTACK_AZURE_STORAGE_ACCOUNT_NAME",
            "AZURE_STORAGE_ACCOUNT_NAME",
        ],
    )
    .ok_or("az://: set ANOMSTACK_AZURE_STORAGE_ACCOUNT_NAME (and its key)")?;
    let mut b = MicrosoftAzureBuilder::new()
        .with_account(account)
        .with_container_name(container);
    if let Some(k) = first(
        env,
        &[
            "ANOMSTACK_AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_STORAGE_ACCOUNT_KEY",
        ],
    ) {
        b = b.with_access_key(k);
    }
    let mut allow_http = false;
    if let Some(e) = first(
        env,
        &["ANOMSTACK_AZURE_STORAGE_ENDPOINT", "AZURE_STORAGE_ENDPOINT"],
    ) {
        allow_http = e.starts_with("http://");
        b = b.with_endpoint(e);
    }
    b.with_client_options(client_options(allow_http))
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| format!("az://{container}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_store_and_the_error_names_what_to_set() {
        let env = Env::new();
        assert!(Remote::open("local://models", &env).is_none());
        let e = Remote::open("gs://bucket/models", &env)
            .expect("gs")
            .err()
            .expect("no key");
        assert!(
            e.contains("ANOMSTACK_GOOGLE_APPLICATION_CREDENTIALS"),
            "{e}"
        );
        let e = Remote::open("az://c/models", &env)
            .expect("az")
            .err()
            .expect("no account");
        assert!(e.contains("ANOMSTACK_AZURE_STORAGE_ACCOUNT_NAME"), "{e}");
        let half = Env::from([("ANOMSTACK_AWS_ACCESS_KEY_ID".to_string(), "k".to_string())]);
        let e = Remote::open("s3://b/m", &half)
            .expect("s3")
            .err()
            .expect("half");
        assert!(e.contains("set both"), "{e}");
        let ok = Env::from([
            ("ANOMSTACK_AWS_ACCESS_KEY_ID".to_string(), "k".to_string()),
            (
                "ANOMSTACK_AWS_SECRET_ACCESS_KEY".to_string(),
                "s".to_string(),
            ),
        ]);
        let r = Remote::open("s3://b/some/prefix/", &ok)
            .expect("s3")
            .expect("built");
        assert_eq!(
            r.key(&["batch", "tag.models"]).as_ref(),
            "some/prefix/batch/tag.models"
        );
        assert_eq!(
            r.location(&["batch", "tag.models"]),
            "s3://b/some/prefix/batch/tag.models"
        );
        let e = Remote::open("s3:///m", &ok)
            .expect("s3")
            .err()
            .expect("no bucket");
        assert!(e.contains("names no bucket"), "{e}");
    }
}
