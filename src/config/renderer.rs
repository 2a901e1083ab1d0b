//! Rendering a batch's templates out of sandstack's own process. minijinja
//! bounds a render's steps and its output, but not the values built on the
//! way: `range(100000) | join(...)`, `indent(50000)` of a long string or a
//! string doubled thirty times by `~` each take gigabytes within a few
//! steps. So every template is rendered in a helper process
//! ([`crate::child`], role `render`) whose memory the kernel caps: a
//! template that builds too much ends that render with an error naming the
//! file and key, and the loader, a running daemon's hot reload among them,
//! carries on (the next render starts a new helper).
//!
//! One helper serves a whole folder load ([`RenderSession`]); it keeps one
//! minijinja environment per include scope, so shared files are parsed
//! once. The session also holds the folder's budget of rendered text: a
//! key renders to at most 8 MiB and the folder, in all, to at most
//! [`MAX_FOLDER_RENDERED_BYTES`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Mapping;

use super::template::{IncludeScope, Jinja};
use crate::child;

/// The helper's role name (`sandstack __child render`).
pub const ROLE: &str = "render";

/// The helper's memory: ample for templates of any sensible size (each
/// renders to at most 8 MiB).
pub const HELPER_MEMORY_MB: u64 = 512;

/// How long one template may take to render.
pub const RENDER_TIME: Duration = Duration::from_secs(10);

/// All the text one folder load may render, every batch and key together.
pub const MAX_FOLDER_RENDERED_BYTES: usize = 64 << 20;

mod tag {
    /// Parent to helper: the metrics folder (once), the context and include
    /// scope of the templates that follow, a template.
    pub const FOLDER: u8 = b'S';
    pub const CONTEXT: u8 = b'C';
    pub const TEMPLATE: u8 = b'T';
    /// Helper to parent.
    pub const RENDERED: u8 = b'O';
    pub const FAILED: u8 = b'E';
}

#[derive(Serialize, Deserialize)]
struct Context {
    scope: IncludeScope,
    /// The variables, as YAML (a batch's keys may be any YAML value).
    values: String,
}

#[derive(Serialize, Deserialize)]
struct Template {
    name: String,
    text: String,
}

/// One folder load's rendering: its helper and its budget.
pub struct RenderSession {
    /// The metrics folder as the loader names it.
    dir: PathBuf,
    /// The same, absolute, for the helper.
    root: PathBuf,
    helper: RefCell<Option<child::Child>>,
    /// The context the helper holds now, to send it only when it changes.
    sent: RefCell<Option<(IncludeScope, String)>>,
    used: Cell<usize>,
}

impl RenderSession {
    pub fn new(root: &Path) -> Rc<RenderSession> {
        Rc::new(RenderSession {
            dir: root.to_path_buf(),
            // The helper works in `/`: a relative folder would not resolve.
            root: std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()),
            helper: RefCell::new(None),
            sent: RefCell::new(None),
            used: Cell::new(0),
        })
    }

    fn helper(&self) -> Result<std::cell::RefMut<'_, child::Child>, String> {
        let mut slot = self.helper.borrow_mut();
        if slot.is_none() {
            let mut helper = child::spawn(
                ROLE,
                child::Limits {
                    memory_bytes: HELPER_MEMORY_MB << 20,
                    cpu_seconds: 3600,
                },
            )
            .map_err(|e| e.to_string())?;
            helper.watch(None, None);
            let folder = self.root.to_string_lossy().into_owned();
            helper
                .send(tag::FOLDER, folder.as_bytes())
                .map_err(|e| e.to_string())?;
            *slot = Some(helper);
            *self.sent.borrow_mut() = None;
        }
        Ok(std::cell::RefMut::map(slot, |s| {
            s.as_mut().expect("started above")
        }))
    }

    /// Render one template in the helper; a helper that dies is replaced
    /// at the next render, and its death explained.
    fn render(
        &self,
        scope: &IncludeScope,
        values: &str,
        name: &str,
        text: &str,
    ) -> Result<String, String> {
        if self.used.get() > MAX_FOLDER_RENDERED_BYTES {
            return Err(format!(
                "the metrics folder's templates render to more than {} MiB in all; render less",
                MAX_FOLDER_RENDERED_BYTES >> 20
            ));
        }
        let answer = self.ask(scope, values, name, text);
        let answer = match answer {
            Ok(a) => a,
            Err(()) => return Err(self.bury()),
        };
        let rendered = answer?;
        self.used.set(self.used.get() + rendered.len());
        if self.used.get() > MAX_FOLDER_RENDERED_BYTES {
            return Err(format!(
                "the metrics folder's templates render to more than {} MiB in all; render less",
                MAX_FOLDER_RENDERED_BYTES >> 20
            ));
        }
        Ok(rendered)
    }

    /// The helper's answer, or Err(()) when it did not give one.
    fn ask(
        &self,
        scope: &IncludeScope,
        values: &str,
        name: &str,
        text: &str,
    ) -> Result<Result<String, String>, ()> {
        let mut helper = match self.helper() {
            Ok(h) => h,
            Err(message) => return Ok(Err(message)),
        };
        let fresh = self
            .sent
            .borrow()
            .as_ref()
            .is_none_or(|(s, v)| s != scope || v != values);
        if fresh {
            let context = Context {
                scope: scope.clone(),
                values: values.to_string(),
            };
            let bytes = serde_json::to_vec(&context).map_err(|_| ())?;
            helper.send(tag::CONTEXT, &bytes).map_err(|_| ())?;
            *self.sent.borrow_mut() = Some((scope.clone(), values.to_string()));
        }
        let template = Template {
            name: name.to_string(),
            text: text.to_string(),
        };
        let bytes = serde_json::to_vec(&template).map_err(|_| ())?;
        helper.set_deadline(Some(Instant::now() + RENDER_TIME));
        helper.send(tag::TEMPLATE, &bytes).map_err(|_| ())?;
        let answer = helper.read_frame();
        helper.set_deadline(None);
        match answer {
            Ok(Some((tag::RENDERED, text))) => Ok(Ok(String::from_utf8_lossy(&text).into_owned())),
            Ok(Some((tag::FAILED, text))) => Ok(Err(String::from_utf8_lossy(&text).into_owned())),
            _ => Err(()),
        }
    }

    /// The helper ended without answering: why, and a fresh one next time.
    fn bury(&self) -> String {
        let Some(helper) = self.helper.borrow_mut().take() else {
            return "the template helper is gone".into();
        };
        *self.sent.borrow_mut() = None;
        let ended = helper.finish();
        if ended.killed_for.is_some() {
            return format!(
                "the template took longer than {} s to render: loops and filters must stay small",
                RENDER_TIME.as_secs()
            );
        }
        if ended.out_of_memory() {
            return format!(
                "rendering it needed more than {HELPER_MEMORY_MB} MiB of memory: a template may not build \
                 values that large (a long string joined, indented, replaced or repeated)"
            );
        }
        format!(
            "the template helper ended unexpectedly ({}): {}",
            ended.status,
            ended.stderr.trim()
        )
    }
}

/// A batch's renderer: the folder's session and the batch's include scope.
pub struct TemplateRenderer {
    session: Rc<RenderSession>,
    scope: IncludeScope,
}

impl TemplateRenderer {
    pub fn new(session: &Rc<RenderSession>, scope: IncludeScope) -> Self {
        TemplateRenderer {
            session: session.clone(),
            scope,
        }
    }

    /// A renderer with a session of its own (one render at use).
    pub fn standalone(root: &Path, scope: IncludeScope) -> Self {
        Self::new(&RenderSession::new(root), scope)
    }

    /// The metrics folder includes are read from.
    pub fn dir(&self) -> &Path {
        &self.session.dir
    }

    pub fn scope(&self) -> &IncludeScope {
        &self.scope
    }

    /// Render `text` with `context`'s keys as variables; `name` labels it
    /// in errors.
    pub fn render(&self, name: &str, text: &str, context: &Mapping) -> Result<String, String> {
        self.render_with(&Variables::of(context)?, name, text)
    }

    /// [`TemplateRenderer::render`] with variables made once for many
    /// templates.
    pub fn render_with(&self, vars: &Variables, name: &str, text: &str) -> Result<String, String> {
        self.session.render(&self.scope, &vars.0, name, text)
    }
}

/// A context's keys, as the helper receives them.
pub struct Variables(String);

impl Variables {
    pub fn of(context: &Mapping) -> Result<Variables, String> {
        serde_yaml_ng::to_string(context)
            .map(Variables)
            .map_err(|e| e.to_string())
    }
}

/// The helper's main: render what it is sent until its input ends.
pub fn serve() -> u8 {
    let (mut input, mut output) = match child::stdio() {
        Ok(io) => io,
        Err(e) => {
            eprintln!("sandstack template helper: {e}");
            return 1;
        }
    };
    match serve_on(&mut input, &mut output) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("sandstack template helper: {message}");
            1
        }
    }
}

fn serve_on(input: &mut impl Read, output: &mut impl Write) -> Result<(), String> {
    let mut root = PathBuf::new();
    let mut envs: HashMap<IncludeScope, Jinja> = HashMap::new();
    let mut scope = IncludeScope::default();
    let mut context = minijinja::Value::UNDEFINED;
    while let Some((t, payload)) = child::read_frame(input).map_err(|e| e.to_string())? {
        match t {
            tag::FOLDER => root = PathBuf::from(String::from_utf8_lossy(&payload).into_owned()),
            tag::CONTEXT => {
                let c: Context = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                let values: Mapping =
                    serde_yaml_ng::from_str(&c.values).map_err(|e| e.to_string())?;
                context = minijinja::Value::from(minijinja::value::Serde(&values));
                scope = c.scope;
            }
            tag::TEMPLATE => {
                let tpl: Template = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
                let jinja = envs
                    .entry(scope.clone())
                    .or_insert_with(|| Jinja::new(&root, scope.clone()));
                let (t, text) = match jinja.render(&tpl.name, &tpl.text, &context) {
                    Ok(text) => (tag::RENDERED, text),
                    Err(message) => (tag::FAILED, message),
                };
                child::write_frame(output, t, text.as_bytes()).map_err(|e| e.to_string())?;
                output.flush().map_err(|e| e.to_string())?;
            }
            other => return Err(format!("unknown frame {other}")),
        }
    }
    Ok(())
}
