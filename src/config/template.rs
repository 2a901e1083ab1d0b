//! Jinja rendering of config values with minijinja, in-process: what the
//! template helper process runs ([`super::renderer`] is the loader's side,
//! which never renders a batch's template in sandstack's own process).
//! `{% include %}` paths are relative to the metrics folder, may not leave
//! it, and must lie in the batch's own folder or `defaults/`
//! ([`IncludeScope`]).

use std::path::{Component, Path, PathBuf};

use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde::{Deserialize, Serialize};

/// Instructions one render may run: the shipped templates need a few
/// thousand; a loop over 10^10 items stops within a second.
pub const TEMPLATE_FUEL: u64 = 5_000_000;
/// Nesting of blocks, includes and macros.
const TEMPLATE_RECURSION: usize = 64;
/// Largest rendered value.
pub const MAX_RENDERED_BYTES: usize = 8 << 20;

/// Where a batch's includes may come from, as folder paths relative to the
/// metrics folder: its own folder and below (`allowed`), but not a folder
/// below it that belongs to another batch (`excluded`), and the shared
/// `defaults/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IncludeScope {
    pub allowed: Vec<PathBuf>,
    pub excluded: Vec<PathBuf>,
}

impl IncludeScope {
    /// Includes from anywhere in the metrics folder (sandstack's own
    /// tests of the renderer).
    pub fn whole_folder() -> IncludeScope {
        IncludeScope {
            allowed: vec![PathBuf::new()],
            excluded: Vec::new(),
        }
    }
}

/// One minijinja environment per metrics folder and scope, so included
/// files are read and parsed once however many templates include them.
pub struct Jinja {
    env: Environment<'static>,
}

impl Jinja {
    pub fn new(root: &Path, scope: IncludeScope) -> Self {
        let mut env = Environment::new();
        // Strict: a typo in a variable name is an error naming it, not an
        // empty string in the middle of a SQL query.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        // Templates are the batch author's: a loop that runs too long or
        // nests too deep ends in an error, not a stalled loader.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(TEMPLATE_RECURSION);
        let folder = root.to_path_buf();
        env.set_loader(move |name| load_include(&folder, &scope, name));
        Jinja { env }
    }

    /// Render `text` with `context`; `name` labels the template in errors.
    pub fn render(
        &self,
        name: &str,
        text: &str,
        context: &minijinja::Value,
    ) -> Result<String, String> {
        let mut out = CappedText::default();
        let rendered = self
            .env
            .template_from_named_str(name, text)
            .and_then(|t| t.render_captured_to(context, &mut out).map(|_| ()));
        if out.over {
            return Err(format!(
                "the template renders to more than {} MiB; render less, or include a file",
                MAX_RENDERED_BYTES >> 20
            ));
        }
        rendered.map(|()| out.text()).map_err(|err| {
            if err.kind() == ErrorKind::OutOfFuel {
                return format!(
                    "the template ran too long (over {TEMPLATE_FUEL} steps): loops must stay small"
                );
            }
            if let Some(undefined) = undefined_cause(&err) {
                if let Some(names) = self.undefined_names(name, text, undefined.name(), context) {
                    let place = match (undefined.name(), undefined.line()) {
                        (Some(file), Some(l)) if file != name => format!(" (in {file} line {l})"),
                        (_, Some(l)) => format!(" (line {l})"),
                        _ => String::new(),
                    };
                    return format!("undefined variable {names}{place}: template variables are the batch's config keys");
                }
            }
            describe_error(err)
        })
    }

    /// The variables that `context` lacks and the template the error arose in
    /// uses (`text` itself, or the file it included), for a message that
    /// names them (minijinja's own error does not).
    fn undefined_names(
        &self,
        name: &str,
        text: &str,
        failed_in: Option<&str>,
        context: &minijinja::Value,
    ) -> Option<String> {
        let tmpl = match failed_in {
            Some(file) if file != name => self.env.get_template(file).ok()?,
            _ => self.env.template_from_named_str(name, text).ok()?,
        };
        let mut missing: Vec<String> = tmpl
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| context.get_attr(v).map_or(true, |x| x.is_undefined()))
            .map(|v| format!("`{v}`"))
            .collect();
        missing.sort();
        (!missing.is_empty()).then(|| missing.join(", "))
    }
}

/// The undefined-variable error at the root of `err`, which an include
/// wraps in an error of its own.
fn undefined_cause(err: &minijinja::Error) -> Option<&minijinja::Error> {
    let mut current: &(dyn std::error::Error + 'static) = err;
    loop {
        if let Some(e) = current.downcast_ref::<minijinja::Error>() {
            if e.kind() == ErrorKind::UndefinedError {
                return Some(e);
            }
        }
        current = current.source()?;
    }
}

/// Rendered text, refused past [`MAX_RENDERED_BYTES`].
#[derive(Default)]
struct CappedText {
    bytes: Vec<u8>,
    over: bool,
}

impl CappedText {
    fn text(self) -> String {
        // minijinja writes UTF-8; a lossy read cannot lose anything.
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

impl std::io::Write for CappedText {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_BYTES {
            self.over = true;
            return Err(std::io::Error::other("rendered text over the cap"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn describe_error(err: minijinja::Error) -> String {
    // The include loader's own messages (InvalidOperation) say everything;
    // for minijinja's, name the kind of problem before the detail.
    let mut text = match (err.kind(), err.detail()) {
        (ErrorKind::InvalidOperation, Some(detail)) => detail.to_string(),
        (kind, Some(detail)) => format!("{}: {detail}", kind_text(kind)),
        (_, None) => err.to_string(),
    };
    if let Some(line) = err.line() {
        if let Some(name) = err.name() {
            text.push_str(&format!(" (in {name} line {line})"));
        }
    }
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

fn kind_text(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::UndefinedError => "undefined variable",
        ErrorKind::SyntaxError => "template syntax error",
        _ => "template error",
    }
}

/// Whether `rel` (a path inside the metrics folder) is the batch's own
/// (in its folder, not in a folder below it that belongs to another batch)
/// or the shared defaults'.
fn in_scope(rel: &Path, scope: &IncludeScope) -> bool {
    rel.starts_with("defaults")
        || (scope.allowed.iter().any(|d| rel.starts_with(d))
            && !scope.excluded.iter().any(|d| rel.starts_with(d)))
}

/// Why `name` is not the batch's to include: a batch reads its own files
/// and the shared defaults, not another batch's code or SQL.
fn outside_scope(name: &str, scope: &IncludeScope) -> minijinja::Error {
    let own: Vec<String> = scope
        .allowed
        .iter()
        .map(|d| format!("{}/", d.display()))
        .collect();
    let why = if own.is_empty() {
        "a batch file at the top of the metrics folder has no folder of its own, so it may include \
         only from defaults/ (move it into a folder of its own)"
            .to_string()
    } else {
        format!(
            "a batch may include only from its own folder ({}) and defaults/",
            own.join(", ")
        )
    };
    minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("include \"{name}\" is outside this batch's files: {why}"),
    )
}

/// Resolve an include name against the metrics folder, refusing any path
/// that leaves it (by `..`, an absolute path or a symlink) or that is not
/// the batch's own (see [`in_scope`]; checked on the name as written,
/// before anything on disk is looked at, and again where a symlink leads).
fn load_include(
    root: &Path,
    scope: &IncludeScope,
    name: &str,
) -> Result<Option<String>, minijinja::Error> {
    let refuse = |why: &str| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("include \"{name}\" {why}: includes must stay inside the metrics folder"),
        )
    };
    let rel = Path::new(name);
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, Component::Prefix(_) | Component::RootDir))
    {
        return Err(refuse("is an absolute path"));
    }
    let mut normal = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::ParentDir => {
                let popped = normal.pop();
                if !popped {
                    return Err(refuse("escapes the metrics folder"));
                }
            }
            Component::Normal(part) => normal.push(part),
            _ => {}
        }
    }
    if !in_scope(&normal, scope) {
        return Err(outside_scope(name, scope));
    }
    let path = root.join(&normal);
    let canonical_root = root.canonicalize().map_err(|e| {
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("metrics folder: {e}"))
    })?;
    let canonical = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                // Relative to the folder: where it lies on the host is the
                // operator's business.
                format!(
                    "include \"{name}\" not found: no such file {} in the metrics folder",
                    normal.display()
                ),
            ));
        }
        Err(e) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("include \"{name}\": {e}"),
            ))
        }
    };
    let Ok(inside) = canonical.strip_prefix(&canonical_root) else {
        return Err(refuse(
            "resolves outside the metrics folder (through a symlink)",
        ));
    };
    if !in_scope(inside, scope) {
        return Err(outside_scope(name, scope));
    }
    super::folder_files::read_regular(&canonical, MAX_RENDERED_BYTES as u64)
        .map(Some)
        .map_err(|e| {
            minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("include \"{name}\": cannot read {}: {e}", normal.display()),
            )
        })
}

/// If a value is exactly one include (Anomstack's idiom for `ingest_fn`),
/// the included path: the rendered code then has that file's line numbers.
pub fn sole_include(raw: &str) -> Option<String> {
    let t = raw.trim();
    let inner = t.strip_prefix("{%")?.strip_suffix("%}")?;
    let inner = inner.trim_matches('-').trim();
    let arg = inner.strip_prefix("include")?.trim();
    let quoted = arg
        .strip_prefix('"')
        .and_then(|a| a.strip_suffix('"'))
        .or_else(|| arg.strip_prefix('\'').and_then(|a| a.strip_suffix('\'')))?;
    if quoted.contains(['"', '\'']) {
        return None;
    }
    Some(quoted.trim_start_matches("./").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str) -> Result<String, String> {
        let dir = tempfile::tempdir().expect("tmp");
        Jinja::new(dir.path(), IncludeScope::whole_folder()).render(
            "t",
            text,
            &minijinja::Value::from(()),
        )
    }

    #[test]
    fn a_loop_that_runs_too_long_is_stopped_quickly() {
        let t = std::time::Instant::now();
        let err = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        )
        .unwrap_err();
        assert!(err.starts_with("the template ran too long"), "{err}");
        // Unstopped, the loop runs for hours; the bound leaves a loaded
        // machine all the time it needs.
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn output_past_the_cap_is_refused() {
        let err = render("{% for i in range(100) %}{{ 'x' * 200000 }}{% endfor %}").unwrap_err();
        assert!(
            err.starts_with("the template renders to more than 8 MiB"),
            "{err}"
        );
        assert_eq!(render("{{ 'ab' * 3 }}").as_deref(), Ok("ababab"));
    }

    #[test]
    fn deep_recursion_is_an_error() {
        let err = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").unwrap_err();
        assert_eq!(err, "recursion limit exceeded (in t line 1)");
    }

    #[test]
    fn an_undefined_variable_in_an_included_file_is_named_with_its_file() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("q.sql"),
            "select *\nfrom {{ table_key }}\nwhere n < {{ last_n }}\n",
        )
        .expect("write");
        let ctx = minijinja::context! { table_key => "metrics" };
        let err = Jinja::new(dir.path(), IncludeScope::whole_folder())
            .render("dashboard_sql", "{% include \"q.sql\" %}", &ctx)
            .unwrap_err();
        assert!(err.contains("`last_n`"), "{err}");
        assert!(!err.contains("table_key"), "{err}");
        assert!(err.contains("q.sql line 3"), "{err}");
    }

    #[test]
    fn sole_include_recognises_the_idiom() {
        assert_eq!(
            sole_include("{% include \"./examples/hn/x.py\" %}\n").as_deref(),
            Some("examples/hn/x.py")
        );
        assert_eq!(
            sole_include("{%- include 'a.sql' -%}").as_deref(),
            Some("a.sql")
        );
        assert_eq!(sole_include("select 1; {% include \"a.sql\" %}"), None);
    }

    #[test]
    fn refuses_parent_escape_without_touching_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let whole = IncludeScope::whole_folder();
        let err = load_include(dir.path(), &whole, "../secret").unwrap_err();
        assert!(
            err.to_string().contains("escapes the metrics folder"),
            "{err}"
        );
        let err = load_include(dir.path(), &whole, "/etc/passwd").unwrap_err();
        assert!(err.to_string().contains("absolute path"), "{err}");
    }
}
