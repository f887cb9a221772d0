//! Habitat-compatible templating: a handlebars 6 registry with HTML escaping off, non-strict
//! (a missing key renders as empty text), and Habitat's helpers ([`helpers`]); the render
//! context ([`context`]). Compiles a package's `config/` tree (and hooks, which Habitat renders
//! as templates too) and renders them to strings; writing files is the caller's job.
//! Values render as handlebars does: arrays as `[a, b]`, objects as `[object]`.

pub mod context;
pub mod helpers;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use handlebars::{Context, Handlebars};
use serde_json::Value;

pub use context::{render_context, PkgContext, RenderInput, SysContext};

/// Where Habitat installs everything; `pkgPathFor` answers paths under `<root>/pkgs`.
pub const DEFAULT_FS_ROOT: &str = "/hab";

/// What can go wrong compiling or rendering templates; each names the file or template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The template does not parse; `line`/`column` are 1-based.
    #[error("template {name}{}: {reason}", at(*line, *column))]
    Compile {
        name: String,
        line: Option<usize>,
        column: Option<usize>,
        reason: String,
    },
    /// Rendering failed (a helper refused its arguments, say).
    #[error("rendering template {name}: {reason}")]
    Render { name: String, reason: String },
    #[error("no template named {0:?}")]
    NotFound(String),
    /// An input file (TOML, JSON) is malformed or not what was expected.
    #[error("{path}: {problem}")]
    Input { path: PathBuf, problem: String },
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" line {line}, column {column}"),
        (Some(line), None) => format!(" line {line}"),
        _ => String::new(),
    }
}

/// Compiled templates, each under a name (for a config tree, its path relative to `config/`).
pub struct Renderer {
    hb: Handlebars<'static>,
    /// Names of templates compiled from a config tree, rendered by [`Renderer::render_all`].
    config_names: Vec<String>,
}

impl Default for Renderer {
    fn default() -> Self {
        Renderer::new()
    }
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("config_names", &self.config_names)
            .finish_non_exhaustive()
    }
}

impl Renderer {
    /// A renderer with no templates, `pkgPathFor` answering under [`DEFAULT_FS_ROOT`].
    pub fn new() -> Renderer {
        Renderer::with_fs_root(Path::new(DEFAULT_FS_ROOT))
    }

    /// A renderer whose `pkgPathFor` answers under `<fs_root>/pkgs`.
    pub fn with_fs_root(fs_root: &Path) -> Renderer {
        let mut hb = Handlebars::new();
        hb.register_escape_fn(handlebars::no_escape);
        hb.set_strict_mode(false);
        helpers::register_all(&mut hb, fs_root);
        Renderer {
            hb,
            config_names: Vec::new(),
        }
    }

    /// Compiles every file under `config_dir`, recursively, named by relative path with `/`.
    pub fn load_dir(config_dir: &Path) -> Result<Renderer, TemplateError> {
        let mut renderer = Renderer::new();
        renderer.add_dir(config_dir)?;
        Ok(renderer)
    }

    /// Adds every file under `config_dir` to the templates [`Renderer::render_all`] renders.
    /// Errors name the file; a missing directory is an error.
    pub fn add_dir(&mut self, config_dir: &Path) -> Result<(), TemplateError> {
        let mut files = Vec::new();
        collect_files(config_dir, config_dir, &mut files)?;
        files.sort();
        for (name, path) in files {
            self.add_file(&name, &path)?;
            self.config_names.push(name);
        }
        Ok(())
    }

    /// Compiles the given files under the given names (hooks, say): not part of `render_all`.
    pub fn from_files(files: &[(&str, &Path)]) -> Result<Renderer, TemplateError> {
        let mut renderer = Renderer::new();
        for (name, path) in files {
            renderer.add_file(name, path)?;
        }
        Ok(renderer)
    }

    /// Compiles one file as template `name`; a compile error names the file and line.
    pub fn add_file(&mut self, name: &str, path: &Path) -> Result<(), TemplateError> {
        let bytes = fs::read(path).map_err(|source| TemplateError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| TemplateError::Compile {
            name: path.display().to_string(),
            line: None,
            column: None,
            reason: "not UTF-8 text".into(),
        })?;
        self.compile(name, &text, &path.display().to_string())
    }

    /// Compiles `text` as template `name`.
    pub fn add_template(&mut self, name: &str, text: &str) -> Result<(), TemplateError> {
        self.compile(name, text, name)
    }

    fn compile(&mut self, name: &str, text: &str, shown_as: &str) -> Result<(), TemplateError> {
        self.hb.register_template_string(name, text).map_err(|e| {
            let (line, column) = e.pos().map_or((None, None), |(l, c)| (Some(l), Some(c)));
            TemplateError::Compile {
                name: shown_as.to_string(),
                line,
                column,
                reason: e.reason().to_string(),
            }
        })
    }

    pub fn has_template(&self, name: &str) -> bool {
        self.hb.has_template(name)
    }

    /// Names of the config templates, sorted.
    pub fn config_names(&self) -> &[String] {
        &self.config_names
    }

    /// Renders template `name` with `ctx` (usually [`render_context`]'s output).
    pub fn render_one(&self, name: &str, ctx: &Value) -> Result<String, TemplateError> {
        self.render_in(name, &Context::from(ctx.clone()))
    }

    /// Renders every config template: relative path -> content.
    pub fn render_all(&self, ctx: &Value) -> Result<BTreeMap<PathBuf, String>, TemplateError> {
        // One copy of the data for all templates: handlebars would copy it per render.
        let ctx = Context::from(ctx.clone());
        self.config_names
            .iter()
            .map(|name| Ok((PathBuf::from(name), self.render_in(name, &ctx)?)))
            .collect()
    }

    fn render_in(&self, name: &str, ctx: &Context) -> Result<String, TemplateError> {
        if !self.hb.has_template(name) {
            return Err(TemplateError::NotFound(name.to_string()));
        }
        self.hb
            .render_with_context(name, ctx)
            .map_err(|e| TemplateError::Render {
                name: name.to_string(),
                reason: e.to_string(),
            })
    }
}

fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), TemplateError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TemplateError::Io { path, source }
    };
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        // Follows symlinks: packages may link shared templates into config/.
        let meta = fs::metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            collect_files(root, &path, out)?;
        } else if meta.is_file() {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let parts: Option<Vec<&str>> = relative.iter().map(|p| p.to_str()).collect();
            let name = parts
                .map(|p| p.join("/"))
                .ok_or_else(|| TemplateError::Input {
                    path: path.clone(),
                    problem: "expected a UTF-8 file name".into(),
                })?;
            out.push((name, path));
        }
    }
    Ok(())
}
