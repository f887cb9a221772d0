//! Templates render byte for byte as Habitat's own renderer renders them. The corpus in
//! `render_golden/cases/` (our templates, default.toml, user.toml and mock data, written to
//! exercise every helper, block helper, context path and TOML type) was rendered once with
//! Habitat 2.1.78's `hab plan render` by `render_golden/habitat-render.sh`; its output is in
//! `render_golden/expected/<case>/<template>` (or `<template>.error` where Habitat refused).
//! Here each template goes through our `hab plan render` and must give the same bytes, or fail
//! where Habitat failed. Where Habitat's output is a bug we do not copy, `render_golden/ours/`
//! holds our output instead and `render_golden/DIFFERENCES.md` says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use habitat_sidecar::plan::{run_render, RenderArgs};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/render_golden")
}

/// The templates of a case's `templates.txt`: the lines after `=== NAME` up to the next
/// header, each with its newline (as the generator's awk writes them).
fn templates(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("=== ") {
            out.push((name.to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

/// What one template gave: the rendered bytes, or the error.
fn render(case: &Path, name: &str, template: &str, scratch: &Path) -> Result<Vec<u8>, String> {
    let template_path = scratch.join(name);
    fs::write(&template_path, template).unwrap();
    let optional = |file: &str| Some(case.join(file)).filter(|p| p.exists());
    let render_dir = scratch.join(format!("out-{name}"));
    let args = RenderArgs {
        template: template_path,
        default_toml: case.join("default.toml"),
        user_toml: optional("user.toml"),
        mock_data: optional("mock.json"),
        print: false,
        render_dir: render_dir.clone(),
        no_render: false,
        quiet: true,
    };
    run_render(&args, &mut Vec::new(), &mut Vec::new()).map_err(|e| e.to_string())?;
    Ok(fs::read(render_dir.join(name)).unwrap())
}

#[test]
fn every_template_renders_as_habitats_renderer_does() {
    let root = corpus();
    let scratch = tempfile::tempdir().unwrap();
    let mut cases: Vec<PathBuf> = fs::read_dir(root.join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    let (mut checked, mut failures) = (0, Vec::new());
    for case in &cases {
        let case_name = case.file_name().unwrap().to_string_lossy().to_string();
        let text = fs::read_to_string(case.join("templates.txt")).unwrap();
        for (name, template) in templates(&text) {
            checked += 1;
            let expected_file = |dir: &str, suffix: &str| {
                Some(
                    root.join(dir)
                        .join(&case_name)
                        .join(format!("{name}{suffix}")),
                )
                .filter(|p| p.exists())
            };
            let ours = render(case, &name, &template, scratch.path());
            let label = format!("{case_name}/{name}");
            if let Some(path) = expected_file("ours", "").or_else(|| expected_file("expected", ""))
            {
                let expected = fs::read(&path).unwrap();
                match ours {
                    Ok(bytes) if bytes == expected => {}
                    Ok(bytes) => failures.push(format!(
                        "{label}: expected {:?}\n    got {:?}",
                        String::from_utf8_lossy(&expected),
                        String::from_utf8_lossy(&bytes)
                    )),
                    Err(e) => failures.push(format!("{label}: failed where Habitat renders: {e}")),
                }
            } else if expected_file("expected", ".error").is_some() {
                if let Ok(bytes) = ours {
                    failures.push(format!(
                        "{label}: Habitat refuses it, we rendered {:?}",
                        String::from_utf8_lossy(&bytes)
                    ));
                }
            } else {
                failures.push(format!("{label}: no golden file (run habitat-render.sh)"));
            }
        }
    }
    assert!(checked >= 150, "only {checked} renders in the corpus");
    assert!(
        failures.is_empty(),
        "{} of {checked} renders differ from Habitat's:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
