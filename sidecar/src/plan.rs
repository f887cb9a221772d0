//! `hab plan render`: renders one config template outside a supervisor, as Habitat's command
//! does, to check a plan's templates. The data is `{"cfg": default.toml deep-merged with
//! user.toml}` with the `--mock-data` JSON deep-merged over it (so `sys`, `pkg`, `svc`, `bind`
//! exist only if the mock data provides them, as in Habitat). Informational lines go to stderr,
//! so `--print --quiet` leaves only the rendered text (plus a newline) on stdout.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Value};

use crate::census::toml_table_to_json;
use crate::template::{Renderer, TemplateError};

#[derive(Args, Debug, Clone)]
pub struct RenderArgs {
    /// The template to render, e.g. habitat/config/app.conf.
    #[arg(value_name = "TEMPLATE")]
    pub template: PathBuf,
    /// The plan's default.toml.
    #[arg(
        short = 'd',
        long,
        value_name = "FILE",
        default_value = "./default.toml"
    )]
    pub default_toml: PathBuf,
    /// A user.toml merged over default.toml.
    #[arg(short = 'u', long, value_name = "FILE")]
    pub user_toml: Option<PathBuf>,
    /// A JSON file merged over the render data (e.g. {"sys": {...}, "svc": {...}}).
    #[arg(short = 'm', long, value_name = "FILE")]
    pub mock_data: Option<PathBuf>,
    /// Print the rendered template to stdout.
    #[arg(short = 'p', long)]
    pub print: bool,
    /// Directory the rendered file is written to, under the template's file name.
    #[arg(short = 'r', long, value_name = "DIR", default_value = "./results")]
    pub render_dir: PathBuf,
    /// Do not write anything to disk (ignores --render-dir).
    #[arg(short = 'n', long)]
    pub no_render: bool,
    /// No informational lines: with --print only the rendered text is printed.
    #[arg(short = 'q', long, visible_alias = "no-verbose")]
    pub quiet: bool,
}

/// Runs `hab plan render`; `out` gets the rendered text (`--print`), `info` the progress lines.
pub fn run_render(
    args: &RenderArgs,
    out: &mut dyn Write,
    info: &mut dyn Write,
) -> Result<(), TemplateError> {
    let file_name = args
        .template
        .file_name()
        .map(PathBuf::from)
        .ok_or_else(|| TemplateError::Input {
            path: args.template.clone(),
            problem: "expected a template file, not a directory".into(),
        })?;
    let shown = args.template.display().to_string();
    let mut say = |line: String| {
        if !args.quiet {
            // Progress lines are best effort: a closed stderr must not fail the render.
            let _ = writeln!(info, "» {line}");
        }
    };
    say(format!(
        "Rendering: {shown} into: {} as: {}",
        args.render_dir.display(),
        file_name.display()
    ));
    say(format!(
        "Importing default.toml: {}",
        args.default_toml.display()
    ));
    if let Some(path) = &args.user_toml {
        say(format!("Importing user.toml: {}", path.display()));
    }
    if let Some(path) = &args.mock_data {
        say(format!("Importing override file: {}", path.display()));
    }
    let data = render_data(
        &args.default_toml,
        args.user_toml.as_deref(),
        args.mock_data.as_deref(),
    )?;
    let mut renderer = Renderer::new();
    renderer.add_file(&shown, &args.template)?;
    let rendered = renderer.render_one(&shown, &data)?;

    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TemplateError::Io { path, source }
    };
    if args.print {
        say(format!("###======== Rendered template: {shown}"));
        writeln!(out, "{rendered}")
            .and_then(|()| out.flush())
            .map_err(write_err(Path::new("<stdout>")))?;
        say(format!("========### End rendered template: {shown}"));
    }
    if !args.no_render {
        let target = args.render_dir.join(&file_name);
        say(format!("Creating file: {}", target.display()));
        fs::create_dir_all(&args.render_dir).map_err(write_err(&args.render_dir))?;
        fs::write(&target, rendered.as_bytes()).map_err(write_err(&target))?;
    }
    Ok(())
}

/// `{"cfg": default.toml <- user.toml}` with the mock data JSON deep-merged over it.
pub fn render_data(
    default_toml: &Path,
    user_toml: Option<&Path>,
    mock_data: Option<&Path>,
) -> Result<Value, TemplateError> {
    let mut cfg = read_toml(default_toml)?;
    if let Some(path) = user_toml {
        crate::config::deep_merge(&mut cfg, &read_toml(path)?);
    }
    let mut data = json!({ "cfg": toml_table_to_json(&cfg) });
    if let Some(path) = mock_data {
        let text = read(path)?;
        let mock: Value = serde_json::from_str(&text).map_err(|e| TemplateError::Input {
            path: path.to_path_buf(),
            problem: format!(
                "line {}, column {}: invalid JSON: {e}",
                e.line(),
                e.column()
            ),
        })?;
        if !mock.is_object() {
            return Err(TemplateError::Input {
                path: path.to_path_buf(),
                problem: "expected a JSON object (e.g. {\"sys\": {...}, \"cfg\": {...}})".into(),
            });
        }
        merge_json(&mut data, mock);
    }
    Ok(data)
}

fn read(path: &Path) -> Result<String, TemplateError> {
    fs::read_to_string(path).map_err(|source| TemplateError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_toml(path: &Path) -> Result<toml::Table, TemplateError> {
    let text = read(path)?;
    toml::from_str::<toml::Table>(&text).map_err(|e| {
        let position = e.span().map(|span| line_col(&text, span.start));
        let message = e.message().trim_end().replace('\n', "; ");
        let problem = match position {
            Some((line, column)) => {
                format!("line {line}, column {column}: invalid TOML: {message}")
            }
            None => format!("invalid TOML: {message}"),
        };
        TemplateError::Input {
            path: path.to_path_buf(),
            problem,
        }
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Habitat's JSON merge: objects merge key by key, anything else replaces.
fn merge_json(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                merge_json(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, over) => *base = over,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn toml_merge_keeps_unrelated_keys_and_replaces_leaves() {
        let mut base: toml::Table =
            toml::from_str("a = 1\n[t]\nx = 1\ny = [1, 2]\n[u]\nz = 1").unwrap();
        let over: toml::Table = toml::from_str("u = 5\n[t]\ny = [3]\nw = true").unwrap();
        crate::config::deep_merge(&mut base, &over);
        let expected: toml::Table =
            toml::from_str("a = 1\nu = 5\n[t]\nx = 1\ny = [3]\nw = true").unwrap();
        assert_eq!(base, expected);
    }

    #[test]
    fn json_merge_is_deep_and_replaces_non_objects() {
        let mut base = json!({"cfg": {"a": 1, "b": {"c": 2}}, "x": [1]});
        merge_json(
            &mut base,
            json!({"cfg": {"b": {"d": 3}}, "x": {"y": 1}, "sys": {"ip": "1.2.3.4"}}),
        );
        assert_eq!(
            base,
            json!({"cfg": {"a": 1, "b": {"c": 2, "d": 3}}, "x": {"y": 1}, "sys": {"ip": "1.2.3.4"}})
        );
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
