//! `hab plan render` run as a user runs it: the built binary on files in a temp directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

const TEMPLATE: &str = "\
listen {{cfg.port}}
{{#each cfg.upstreams}}server {{this}}{{#unless @last}};{{/unless}}
{{/each}}tls={{cfg.tls.enabled}} mode={{cfg.tls.mode}}
me={{sys.ip}}
";

const DEFAULT_TOML: &str = r#"
port = 8080
upstreams = ["a:1", "b:2"]
[tls]
enabled = false
mode = "off"
"#;

struct Plan {
    dir: tempfile::TempDir,
}

impl Plan {
    fn new() -> Plan {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        std::fs::write(dir.path().join("config/app.conf"), TEMPLATE).unwrap();
        std::fs::write(dir.path().join("default.toml"), DEFAULT_TOML).unwrap();
        Plan { dir }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.path(rel), text).unwrap();
    }

    /// Runs `hab plan render config/app.conf ARGS...` in the plan directory.
    fn render(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_hab"))
            .current_dir(self.dir.path())
            .args(["plan", "render", "config/app.conf"])
            .args(args)
            .output()
            .expect("run hab")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn print_quiet_writes_only_the_rendered_template_to_stdout() {
    let plan = Plan::new();
    let out = plan.render(&["--default-toml", "default.toml", "--print", "--quiet"]);
    assert_ok(&out);
    assert_eq!(
        text(&out.stdout),
        "listen 8080\nserver a:1;\nserver b:2\ntls=false mode=off\nme=\n\n"
    );
    assert_eq!(text(&out.stderr), "");
    // --print alone still writes the file (Habitat renders unless --no-render).
    assert!(plan.path("results/app.conf").is_file());
}

#[test]
fn renders_into_render_dir_under_the_template_file_name() {
    let plan = Plan::new();
    plan.write("user.toml", "port = 9090\n[tls]\nenabled = true\n");
    let out = plan.render(&[
        "-d",
        "default.toml",
        "--user-toml",
        "user.toml",
        "--render-dir",
        "out/rendered",
    ]);
    assert_ok(&out);
    let rendered = std::fs::read_to_string(plan.path("out/rendered/app.conf")).unwrap();
    // user.toml is deep-merged: `tls.mode` survives from default.toml.
    assert_eq!(
        rendered,
        "listen 9090\nserver a:1;\nserver b:2\ntls=true mode=off\nme=\n"
    );
    assert_eq!(text(&out.stdout), "");
    let info = text(&out.stderr);
    assert!(info.contains("Importing user.toml: user.toml"), "{info}");
    assert!(info.contains("out/rendered/app.conf"), "{info}");
}

#[test]
fn mock_data_is_merged_over_the_render_data() {
    let plan = Plan::new();
    plan.write(
        "mock.json",
        r#"{"sys": {"ip": "10.1.2.3"}, "cfg": {"tls": {"mode": "strict"}, "upstreams": ["m:3"]}}"#,
    );
    let out = plan.render(&[
        "-d",
        "default.toml",
        "--mock-data",
        "mock.json",
        "--print",
        "--no-render",
        "-q",
    ]);
    assert_ok(&out);
    assert_eq!(
        text(&out.stdout),
        "listen 8080\nserver m:3\ntls=false mode=strict\nme=10.1.2.3\n\n"
    );
    assert!(!plan.path("results").exists(), "--no-render wrote files");
}

#[test]
fn bad_default_toml_fails_naming_the_file_and_line() {
    let plan = Plan::new();
    plan.write("default.toml", "port = 8080\nupstreams = [\"a\",\n[tls]\n");
    let out = plan.render(&["--default-toml", "default.toml", "--print"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("default.toml: line "), "{err}");
    assert!(err.contains("invalid TOML"), "{err}");
    assert!(!plan.path("results/app.conf").exists());
}

#[test]
fn bad_mock_json_and_missing_files_are_named() {
    let plan = Plan::new();
    plan.write("mock.json", "{\"sys\": \n  [1,}\n");
    let out = plan.render(&["-d", "default.toml", "-m", "mock.json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("mock.json: line 2"), "{err}");

    let out = plan.render(&["-d", "nope.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("nope.toml"), "{err}");

    plan.write("config/app.conf", "{{#if cfg.port}}unclosed\n");
    let out = plan.render(&["-d", "default.toml"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("config/app.conf"), "{err}");
    assert!(Path::new(&plan.path("config/app.conf")).is_file());
}
