//! Rendering a batch's templates, and parsing the folder's YAML, out of
//! sandstack's own process. minijinja bounds a render's steps and its
//! output, but not the values built on the way: `range(100000) | join(...)`,
//! `indent(50000)` of a long string or a string doubled thirty times by `~`
//! each take gigabytes within a few steps; and a YAML parser takes minutes
//! over a few hundred kilobytes of nested brackets. So both happen in a
//! helper process ([`crate::child`], role `render`) whose memory the kernel
//! caps and whose every answer has a deadline: past either, that template
//! or file ends in an error naming it, and the loader, a running daemon's
//! hot reload among them, carries on (the next request starts a new
//! helper).
//!
//! One helper serves a whole folder load ([`RenderSession`]); it keeps one
//! minijinja environment per include scope, so shared files are parsed
//! once. Rendering is budgeted per batch and per tenant (a folder the
//! policy binds, else the whole metrics folder): text rendered and time
//! spent. A batch past its own budget fails alone; one that spends its
//! tenant's makes the rest of that tenant's batches fail, each error naming
//! the batches that spent the most.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

use super::template::{IncludeScope, Jinja};
use crate::child;

/// The helper's role name (`sandstack __child render`).
pub const ROLE: &str = "render";

/// The helper's memory: ample for templates of any sensible size (each
/// renders to at most 8 MiB) and YAML files (4 MiB, 32 MiB parsed).
pub const HELPER_MEMORY_MB: u64 = 512;

/// How long one template may take to render.
pub const RENDER_TIME: Duration = Duration::from_secs(5);

/// How long one YAML file may take to parse (an ordinary one: milliseconds).
pub const YAML_TIME: Duration = Duration::from_secs(2);

/// What one batch's templates may render in all: text, and time.
pub const BATCH_RENDERED_BYTES: usize = 32 << 20;
pub const BATCH_RENDER_TIME: Duration = Duration::from_secs(10);

/// What one tenant's batches (a policy folder's, else the whole metrics
/// folder's) may render in all.
pub const MAX_FOLDER_RENDERED_BYTES: usize = 64 << 20;
pub const TENANT_RENDER_TIME: Duration = Duration::from_secs(60);

mod tag {
    /// Parent to helper: the metrics folder (once), the context and include
    /// scope of the templates that follow, a template, a YAML text to parse.
    pub const FOLDER: u8 = b'S';
    pub const CONTEXT: u8 = b'C';
    pub const TEMPLATE: u8 = b'T';
    pub const YAML: u8 = b'Y';
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

/// What a batch or a tenant has spent.
#[derive(Debug, Clone, Copy, Default)]
struct Spent {
    bytes: usize,
    time: Duration,
}

/// One folder load's rendering: its helper and what each tenant spent.
pub struct RenderSession {
    /// The metrics folder as the loader names it.
    dir: PathBuf,
    /// The same, absolute, for the helper.
    root: PathBuf,
    helper: RefCell<Option<child::Child>>,
    /// The context the helper holds now, to send it only when it changes.
    sent: RefCell<Option<(IncludeScope, String)>>,
    /// Per tenant, per batch.
    spent: RefCell<HashMap<String, BTreeMap<String, Spent>>>,
}

/// How the helper's answer came, or why none did.
enum Asked {
    Answer(Result<String, String>),
    Died(String),
}

impl RenderSession {
    pub fn new(root: &Path) -> Rc<RenderSession> {
        Rc::new(RenderSession {
            dir: root.to_path_buf(),
            // The helper works in `/`: a relative folder would not resolve.
            root: std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf()),
            helper: RefCell::new(None),
            sent: RefCell::new(None),
            spent: RefCell::new(HashMap::new()),
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

    /// Parse a YAML file's `text` in the helper, within [`YAML_TIME`]: the
    /// value, or why not (its budget, the parser's words, or the time).
    pub fn parse_yaml(&self, text: &str) -> Result<Value, String> {
        let answer = match self.helper() {
            Err(message) => return Err(message),
            Ok(mut helper) => {
                let sent = helper.send(tag::YAML, text.as_bytes());
                read_answer(&mut helper, sent.is_ok(), YAML_TIME)
            }
        };
        match answer {
            Some(Ok(parsed)) => serde_yaml_ng::from_str(&parsed).map_err(|e| e.to_string()),
            Some(Err(message)) => Err(message),
            None => Err(self.bury(&format!(
                "parsing it took longer than {} s (deep nesting?)",
                YAML_TIME.as_secs()
            ))),
        }
    }

    /// Render one template in the helper within `time`.
    fn ask(
        &self,
        scope: &IncludeScope,
        values: &str,
        name: &str,
        text: &str,
        time: Duration,
    ) -> Asked {
        let mut helper = match self.helper() {
            Ok(h) => h,
            Err(message) => return Asked::Answer(Err(message)),
        };
        let fresh = self
            .sent
            .borrow()
            .as_ref()
            .is_none_or(|(s, v)| s != scope || v != values);
        let mut sent = true;
        if fresh {
            let context = Context {
                scope: scope.clone(),
                values: values.to_string(),
            };
            sent = serde_json::to_vec(&context)
                .ok()
                .is_some_and(|bytes| helper.send(tag::CONTEXT, &bytes).is_ok());
            *self.sent.borrow_mut() = Some((scope.clone(), values.to_string()));
        }
        let template = Template {
            name: name.to_string(),
            text: text.to_string(),
        };
        sent = sent
            && serde_json::to_vec(&template)
                .ok()
                .is_some_and(|bytes| helper.send(tag::TEMPLATE, &bytes).is_ok());
        let answer = read_answer(&mut helper, sent, time);
        drop(helper);
        match answer {
            Some(a) => Asked::Answer(a),
            None => Asked::Died(self.bury(&format!(
                "the template took longer than {} s to render: loops and filters must stay small",
                time.as_secs_f64()
            ))),
        }
    }

    /// The helper ended without answering: why, and a fresh one next time.
    fn bury(&self, timed_out: &str) -> String {
        let Some(helper) = self.helper.borrow_mut().take() else {
            return "the template helper is gone".into();
        };
        *self.sent.borrow_mut() = None;
        let ended = helper.finish();
        if ended.killed_for.is_some() {
            return timed_out.to_string();
        }
        if ended.out_of_memory() {
            return format!(
                "it needed more than {HELPER_MEMORY_MB} MiB of memory: a template may not build values that \
                 large (a long string joined, indented, replaced or repeated), nor a YAML file expand that far"
            );
        }
        format!(
            "the template helper ended unexpectedly ({}): {}",
            ended.status,
            ended.stderr.trim()
        )
    }

    /// Charge `spent` to `batch` of `tenant`.
    fn charge(&self, tenant: &str, batch: &str, spent: Spent) {
        let mut all = self.spent.borrow_mut();
        let e = all
            .entry(tenant.to_string())
            .or_default()
            .entry(batch.to_string())
            .or_default();
        e.bytes += spent.bytes;
        e.time += spent.time;
    }

    /// Why `tenant` may render no more, naming the batches that spent its
    /// budget; None while it may.
    fn tenant_spent(&self, tenant: &str) -> Option<String> {
        let all = self.spent.borrow();
        let batches = all.get(tenant)?;
        let bytes: usize = batches.values().map(|s| s.bytes).sum();
        let time: Duration = batches.values().map(|s| s.time).sum();
        let (what, key): (String, fn(&Spent) -> u128) = if bytes > MAX_FOLDER_RENDERED_BYTES {
            (
                format!(
                    "render to more than {} MiB",
                    MAX_FOLDER_RENDERED_BYTES >> 20
                ),
                |s| s.bytes as u128,
            )
        } else if time > TENANT_RENDER_TIME {
            (
                format!(
                    "took more than {} s to render",
                    TENANT_RENDER_TIME.as_secs()
                ),
                |s| s.time.as_millis(),
            )
        } else {
            return None;
        };
        let mut top: Vec<(&String, &Spent)> = batches.iter().collect();
        top.sort_by_key(|(_, s)| std::cmp::Reverse(key(s)));
        let named: Vec<String> = top
            .iter()
            .take(3)
            .map(|(b, s)| format!("{b} ({} KiB, {:.1} s)", s.bytes >> 10, s.time.as_secs_f64()))
            .collect();
        Some(format!(
            "the templates of {tenant} {what} in all, so no more of its batches are rendered; most was spent by {}",
            named.join(", ")
        ))
    }
}

/// The helper's answer within `time`: Some(rendered or refused), or None
/// when none came (it died or ran out of time, or could not be sent to).
fn read_answer(
    helper: &mut child::Child,
    sent: bool,
    time: Duration,
) -> Option<Result<String, String>> {
    if !sent {
        return None;
    }
    helper.set_deadline(Some(Instant::now() + time));
    let answer = helper.read_frame();
    helper.set_deadline(None);
    match answer {
        Ok(Some((tag::RENDERED, text))) => Some(Ok(String::from_utf8_lossy(&text).into_owned())),
        Ok(Some((tag::FAILED, text))) => Some(Err(String::from_utf8_lossy(&text).into_owned())),
        _ => None,
    }
}

/// A batch's renderer: the folder's session, the batch's include scope,
/// and the budgets it draws on.
pub struct TemplateRenderer {
    session: Rc<RenderSession>,
    scope: IncludeScope,
    batch: String,
    /// The policy folder the batch is in, or the metrics folder.
    tenant: String,
    spent: Cell<Spent>,
}

impl TemplateRenderer {
    pub fn new(
        session: &Rc<RenderSession>,
        scope: IncludeScope,
        batch: &str,
        tenant: &str,
    ) -> Self {
        TemplateRenderer {
            session: session.clone(),
            scope,
            batch: batch.to_string(),
            tenant: tenant.to_string(),
            spent: Cell::new(Spent::default()),
        }
    }

    /// A renderer with a session of its own (one render at use).
    pub fn standalone(root: &Path, scope: IncludeScope) -> Self {
        Self::new(&RenderSession::new(root), scope, "", "the metrics folder")
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
        if let Some(why) = self.session.tenant_spent(&self.tenant) {
            return Err(why);
        }
        let spent = self.spent.get();
        if spent.bytes > BATCH_RENDERED_BYTES || spent.time >= BATCH_RENDER_TIME {
            return Err(format!(
                "this batch's templates render to more than {} MiB or take more than {} s in all",
                BATCH_RENDERED_BYTES >> 20,
                BATCH_RENDER_TIME.as_secs()
            ));
        }
        let time = RENDER_TIME.min(BATCH_RENDER_TIME - spent.time);
        let started = Instant::now();
        let asked = self.session.ask(&self.scope, &vars.0, name, text, time);
        let now = Spent {
            bytes: match &asked {
                Asked::Answer(Ok(t)) => t.len(),
                _ => 0,
            },
            time: started.elapsed(),
        };
        self.spent.set(Spent {
            bytes: spent.bytes + now.bytes,
            time: spent.time + now.time,
        });
        self.session.charge(&self.tenant, &self.batch, now);
        let rendered = match asked {
            Asked::Answer(a) => a?,
            Asked::Died(why) => return Err(why),
        };
        if let Some(why) = self.session.tenant_spent(&self.tenant) {
            return Err(why);
        }
        Ok(rendered)
    }
}

/// A context's keys, as the helper receives them, with the variables
/// sandstack adds to every template ([`super::bins`]).
pub struct Variables(String);

impl Variables {
    pub fn of(context: &Mapping) -> Result<Variables, String> {
        serde_yaml_ng::to_string(&super::bins::with_bin_variables(context))
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
            tag::YAML => {
                let text = String::from_utf8_lossy(&payload);
                let (t, answer) = match parse_yaml(&text) {
                    Ok(parsed) => (tag::RENDERED, parsed),
                    Err(message) => (tag::FAILED, message),
                };
                child::write_frame(output, t, answer.as_bytes()).map_err(|e| e.to_string())?;
                output.flush().map_err(|e| e.to_string())?;
            }
            other => return Err(format!("unknown frame {other}")),
        }
    }
    Ok(())
}

/// A YAML text within its budget, parsed and written again plainly (no
/// aliases, block style): what the loader then reads in its own process is
/// linear to parse.
fn parse_yaml(text: &str) -> Result<String, String> {
    super::yaml_budget::check_expanded(text, super::yaml_budget::MAX_EXPANDED_BYTES)?;
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    serde_yaml_ng::to_string(&value).map_err(|e| e.to_string())
}
