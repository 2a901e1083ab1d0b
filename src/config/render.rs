//! Rendering a batch's templates: at load, every key sandstack reads (short
//! values first, so SQL sees `table_key` rendered); at use, the keys of
//! [`keys::RENDERED_AT_USE`] with that use's run-time variables; and again
//! with overridden values ([`with_values`], a backfill's wider window).

use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use super::renderer::TemplateRenderer;
use super::{keys, spec, BatchSpec, ConfigError};

/// Render a batch's merged keys, read them into a spec that remembers its
/// source, and hold it to the source's policy: the one way a [`BatchSpec`]
/// is made, at load and every time after. A template that fails does not
/// hide the batch's other problems: every error of the batch is returned
/// at once. The policy's warnings join `warnings`.
pub(super) fn render_and_read(
    renderer: &TemplateRenderer,
    file: &Path,
    name: &str,
    source: spec::BatchSource,
    warnings: &mut Vec<String>,
) -> Result<BatchSpec, Vec<ConfigError>> {
    let origin = |key: &str| source.origin_of(key, file);
    let llmalert_off = spec::llmalert_off(&source.merged);
    let wanted = |key: &str| keys::is_rendered(key) && !(llmalert_off && key == "llmalert_sql");
    let (rendered, mut errors) = render_all(renderer, &source.merged, &origin, &wanted);
    errors.extend(check_rendered_at_use(renderer, &source, file));
    let raw_text = |key: &str| source.merged.get(key).and_then(Value::as_str);
    let raw = spec::RawTemplates {
        ingest_fn: raw_text("ingest_fn"),
        preprocess_fn: raw_text("preprocess_fn"),
    };
    match spec::read_spec(file, name, &rendered, raw, source.origins.clone()) {
        Ok(mut spec) if errors.is_empty() => {
            if let Err(e) = spec::check_model_path(&spec, &source) {
                return Err(vec![e]);
            }
            let policy = source.policy.clone();
            spec.source = std::sync::Arc::new(source);
            let (refused, warned) = policy.apply(&mut spec);
            warnings.extend(warned);
            if refused.is_empty() {
                Ok(spec)
            } else {
                Err(refused)
            }
        }
        Ok(_) => Err(errors),
        Err(read_errors) => {
            // A key whose template failed is reported once, for the template.
            let failed: Vec<String> = errors
                .iter()
                .filter_map(|e| e.key().map(str::to_string))
                .collect();
            errors.extend(
                read_errors
                    .into_iter()
                    .filter(|e| e.key().is_none_or(|k| !failed.iter().any(|f| f == k))),
            );
            Err(errors)
        }
    }
}

/// The representative run-time variables a template rendered at use is
/// checked with at load: the dashboard's `last_n` is the points it shows.
fn representative_values(merged: &Mapping) -> Vec<(&'static str, Value)> {
    let max_n = merged
        .get("alert_max_n")
        .cloned()
        .unwrap_or_else(|| keys::default_value("alert_max_n").clone());
    vec![("last_n", max_n)]
}

/// Render each template of [`keys::RENDERED_AT_USE`] once, with
/// representative values, so `validate` reports what would fail at use.
fn check_rendered_at_use(
    renderer: &TemplateRenderer,
    source: &spec::BatchSource,
    file: &Path,
) -> Vec<ConfigError> {
    let values = representative_values(&source.merged);
    keys::RENDERED_AT_USE
        .iter()
        .filter(|key| source.merged.contains_key(**key))
        .filter_map(|key| render_one(renderer, source, file, key, &values).err())
        .collect()
}

/// `key`'s template rendered with the batch's values and `params` (which
/// win over the batch's). Only the short values it may use are rendered
/// first, not every other template of the batch: this runs on each use.
fn render_one(
    renderer: &TemplateRenderer,
    source: &spec::BatchSource,
    file: &Path,
    key: &str,
    params: &[(&str, Value)],
) -> Result<String, ConfigError> {
    let (merged, _) = source.merged_with(params);
    let origin = |k: &str| source.origin_of(k, file);
    let Some(text) = merged.get(key).and_then(Value::as_str) else {
        return Err(ConfigError::BadValue {
            file: origin(key),
            key: key.to_string(),
            message: "expected a SQL template (a string)".into(),
        });
    };
    // The other keys' errors are theirs, reported at load.
    let mut others = Vec::new();
    let short = render_pass(
        renderer,
        &merged,
        &merged,
        &origin,
        &|k, t| keys::is_rendered(k) && is_short(t),
        &mut others,
    );
    renderer
        .render(key, text, &short)
        .map_err(|message| ConfigError::Template {
            file: origin(key),
            key: key.to_string(),
            message,
        })
}

/// A template sandstack renders when it is used (see
/// [`keys::RENDERED_AT_USE`]), with that use's run-time variables.
pub fn render_at_use(
    spec: &BatchSpec,
    key: &str,
    params: &[(&str, Value)],
) -> Result<Option<String>, ConfigError> {
    if !spec.source.merged.contains_key(key) {
        return Ok(None);
    }
    render_one(
        &spec.source.renderer(),
        &spec.source,
        &spec.file,
        key,
        params,
    )
    .map(Some)
}

/// `spec` as if its batch file also set `values`: its templates rendered,
/// its keys read again and held to the same policy (for a backfill's wider
/// scoring window).
pub fn with_values(
    spec: &BatchSpec,
    values: &[(&str, Value)],
) -> Result<BatchSpec, Vec<ConfigError>> {
    let (merged, profiled) = spec.source.merged_with(values);
    let source = spec::BatchSource {
        dir: spec.source.dir.clone(),
        scope: spec.source.scope.clone(),
        merged,
        profiled,
        origins: spec.source.origins.clone(),
        policy: spec.source.policy.clone(),
    };
    // Its warnings were said when it loaded.
    let mut warnings = Vec::new();
    render_and_read(
        &source.renderer(),
        &spec.file,
        &spec.metric_batch,
        source,
        &mut warnings,
    )
}

/// Render every top-level string sandstack reads (see
/// [`keys::is_rendered`]): Anomstack's templates for jobs sandstack does not
/// run (`dashboard_sql`, `prompt_fn`, ...) and keys it does not know stay as
/// written, as in Anomstack, which renders a key only when a job uses it.
/// Short values (those without an include) are rendered first, so a SQL
/// template sees `table_key` already rendered. Keys that fail keep their
/// text; the errors come back beside the mapping.
fn render_all(
    renderer: &TemplateRenderer,
    merged: &Mapping,
    origin: &dyn Fn(&str) -> PathBuf,
    wanted: &dyn Fn(&str) -> bool,
) -> (Mapping, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let short = render_pass(
        renderer,
        merged,
        merged,
        origin,
        &|k, t| wanted(k) && is_short(t),
        &mut errors,
    );
    let all = render_pass(
        renderer,
        merged,
        &short,
        origin,
        &|k, t| wanted(k) && !is_short(t),
        &mut errors,
    );
    (all, errors)
}

/// A value without an include: rendered in the first pass, so templates
/// that include files see it rendered.
fn is_short(text: &str) -> bool {
    !text.contains("include")
}

/// `context` with the templates among `merged`'s strings that `pick`
/// selects (by key and text) rendered against it; a key that fails keeps
/// its text and its error joins `errors`.
fn render_pass(
    renderer: &TemplateRenderer,
    merged: &Mapping,
    context: &Mapping,
    origin: &dyn Fn(&str) -> PathBuf,
    pick: &dyn Fn(&str, &str) -> bool,
    errors: &mut Vec<ConfigError>,
) -> Mapping {
    let mut out = context.clone();
    let vars = match super::renderer::Variables::of(context) {
        Ok(v) => v,
        Err(message) => {
            errors.push(ConfigError::Template {
                file: origin("metric_batch"),
                key: "metric_batch".into(),
                message,
            });
            return out;
        }
    };
    for (k, v) in merged {
        let (Some(key), Value::String(text)) = (k.as_str(), v) else {
            continue;
        };
        let is_template = text.contains("{{") || text.contains("{%") || text.contains("{#");
        if !is_template || !pick(key, text) {
            continue;
        }
        match renderer.render_with(&vars, key, text) {
            Ok(r) => {
                out.insert(k.clone(), Value::String(r));
            }
            Err(message) => errors.push(ConfigError::Template {
                file: origin(key),
                key: key.to_string(),
                message,
            }),
        }
    }
    out
}
