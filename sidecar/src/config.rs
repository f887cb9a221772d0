//! A service's configuration layers, lowest first: the package's `default.toml`, the
//! `HAB_<PKGNAME>` environment variable (TOML or JSON), `<root>/user/<name>/config/user.toml`,
//! and the gossiped config of the highest incarnation. Tables merge deeply; anything else
//! (arrays, scalars, a change of type) replaces. Every layer is checked on the way in: a bad
//! layer is a `ConfigError` naming it, and the layer it would replace stays as it was (the last
//! good config), so one bad edit never takes a running service's config away.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// Deepest nesting of tables (and arrays) a layer may have; the root table is depth 1. Habitat
/// allows 30 levels of merging; 64 leaves room while keeping recursion far from the stack limit.
pub const MAX_DEPTH: usize = 64;

/// Which layer a config came from, as error messages name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerSource {
    /// The package's `default.toml`.
    Default(PathBuf),
    /// The environment variable, by name (`HAB_REDIS`).
    Env(String),
    /// `user.toml`.
    User(PathBuf),
    /// Gossiped config (`hab config apply`) of this incarnation.
    Gossip(u64),
}

impl fmt::Display for LayerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerSource::Default(path) | LayerSource::User(path) => {
                write!(f, "{}", path.display())
            }
            LayerSource::Env(var) => f.write_str(var),
            LayerSource::Gossip(incarnation) => {
                write!(f, "gossiped config (incarnation {incarnation})")
            }
        }
    }
}

/// A layer that cannot be used: "HAB_REDIS: expected a TOML or JSON table: ...".
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{layer}: {problem}")]
pub struct ConfigError {
    pub layer: LayerSource,
    pub problem: String,
}

impl ConfigError {
    fn new(layer: LayerSource, problem: impl Into<String>) -> Self {
        ConfigError {
            layer,
            problem: problem.into(),
        }
    }
}

/// Merges `over` into `base`: where both hold a table under a key, the tables merge
/// (recursively); anything else in `over` replaces what `base` had. Recursion follows `over`,
/// and every layer loaded here is at most `MAX_DEPTH` deep.
///
/// Order, as Habitat's order-preserving maps give it: a key `base` already has keeps its place
/// (with the new value), a key only `over` has is appended, in `over`'s order. So the merged
/// config lists default.toml's keys as written, then what each higher layer added.
pub fn deep_merge(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(mine)), toml::Value::Table(theirs)) => {
                deep_merge(mine, theirs)
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Checks that `table` nests at most `MAX_DEPTH` levels; the error names the deepest path.
pub fn check_depth(table: &toml::Table) -> Result<(), String> {
    fn walk(value: &toml::Value, depth: usize, path: &mut Vec<String>) -> Result<(), String> {
        let children: Box<dyn Iterator<Item = (String, &toml::Value)>> = match value {
            toml::Value::Table(t) => Box::new(t.iter().map(|(k, v)| (k.clone(), v))),
            toml::Value::Array(a) => {
                Box::new(a.iter().enumerate().map(|(i, v)| (format!("[{i}]"), v)))
            }
            _ => return Ok(()),
        };
        if depth > MAX_DEPTH {
            return Err(format!(
                "nested {depth} levels deep at {}; the limit is {MAX_DEPTH}",
                path.join(".")
            ));
        }
        for (key, child) in children {
            path.push(key);
            walk(child, depth + 1, path)?;
            path.pop();
        }
        Ok(())
    }
    let mut path = Vec::new();
    for (key, value) in table {
        path.push(key.clone());
        walk(value, 2, &mut path)?;
        path.pop();
    }
    Ok(())
}

/// `HAB_<NAME>`: the package name upper-cased with `-` turned into `_`, as Habitat names it
/// (`redis-server` -> `HAB_REDIS_SERVER`).
pub fn env_var_name(pkg_name: &str) -> String {
    format!("HAB_{}", pkg_name.to_ascii_uppercase().replace('-', "_"))
}

/// `<root>/user/<name>/config/user.toml`.
pub fn user_toml_path(root: &Path, pkg_name: &str) -> PathBuf {
    root.join("user")
        .join(pkg_name)
        .join("config")
        .join("user.toml")
}

/// "line L, column C: message" for a TOML syntax error in `text`.
fn toml_problem(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim_end();
    match err.span() {
        Some(span) => {
            // `get` rather than indexing: a span off a char boundary must not panic.
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("TOML syntax error at line {line}, column {column}: {message}")
        }
        None => format!("TOML error: {message}"),
    }
}

/// Parses a TOML table and checks its depth; errors name `layer`.
pub fn parse_toml_layer(layer: LayerSource, text: &str) -> Result<toml::Table, ConfigError> {
    let table: toml::Table = toml::from_str(text)
        .map_err(|e| ConfigError::new(layer.clone(), toml_problem(text, &e)))?;
    check_depth(&table).map_err(|p| ConfigError::new(layer, p))?;
    Ok(table)
}

/// The `HAB_<NAME>` layer: TOML first, then JSON (as Habitat tries them). JSON objects become
/// tables, numbers integers or floats; a JSON null has no TOML form and is an error naming its
/// key.
pub fn parse_env_layer(var: &str, text: &str) -> Result<toml::Table, ConfigError> {
    let layer = || LayerSource::Env(var.to_string());
    let toml_err = match toml::from_str::<toml::Table>(text) {
        Ok(table) => {
            check_depth(&table).map_err(|p| ConfigError::new(layer(), p))?;
            return Ok(table);
        }
        Err(e) => e,
    };
    let expected = "expected a TOML or JSON table";
    let looks_like_json = text.trim_start().starts_with(['{', '[']);
    let json: serde_json::Value = match serde_json::from_str(text) {
        Ok(json) => json,
        Err(e) if looks_like_json => {
            return Err(ConfigError::new(
                layer(),
                format!(
                    "{expected}: JSON syntax error at line {}, column {}: {e}",
                    e.line(),
                    e.column()
                ),
            ))
        }
        Err(_) => {
            return Err(ConfigError::new(
                layer(),
                format!("{expected}: {}", toml_problem(text, &toml_err)),
            ))
        }
    };
    let serde_json::Value::Object(object) = &json else {
        return Err(ConfigError::new(
            layer(),
            format!("{expected}, found a JSON {}", json_kind(&json)),
        ));
    };
    let mut path = Vec::new();
    let table =
        json_object_to_table(object, &mut path).map_err(|p| ConfigError::new(layer(), p))?;
    check_depth(&table).map_err(|p| ConfigError::new(layer(), p))?;
    Ok(table)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn json_object_to_table(
    object: &serde_json::Map<String, serde_json::Value>,
    path: &mut Vec<String>,
) -> Result<toml::Table, String> {
    let mut table = toml::Table::new();
    for (key, value) in object {
        path.push(key.clone());
        table.insert(key.clone(), json_to_toml(value, path)?);
        path.pop();
    }
    Ok(table)
}

/// serde_json stops nesting at 128 levels, so this recursion is bounded.
fn json_to_toml(value: &serde_json::Value, path: &mut Vec<String>) -> Result<toml::Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        J::Null => {
            return Err(format!(
                "JSON null at key {} has no TOML equivalent; leave the key out instead",
                path.join(".")
            ))
        }
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(_)) if n.is_u64() => {
                return Err(format!(
                    "number {n} at key {} is above TOML's largest integer ({})",
                    path.join("."),
                    i64::MAX
                ))
            }
            (None, Some(f)) => toml::Value::Float(f),
            (None, None) => return Err(format!("number {n} at key {}", path.join("."))),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(format!("[{i}]"));
                out.push(json_to_toml(item, path)?);
                path.pop();
            }
            toml::Value::Array(out)
        }
        J::Object(object) => toml::Value::Table(json_object_to_table(object, path)?),
    })
}

/// Reads `user.toml`; a missing file is `None` (no user layer).
pub fn read_user_toml(path: &Path) -> Result<Option<toml::Table>, ConfigError> {
    let layer = || LayerSource::User(path.to_path_buf());
    match fs::read_to_string(path) {
        Ok(text) => parse_toml_layer(layer(), &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::new(layer(), format!("cannot read: {e}"))),
    }
}

/// The four layers of one service, each already checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layers {
    pub default: toml::Table,
    pub env: Option<toml::Table>,
    pub user: Option<toml::Table>,
    /// Incarnation and value of the gossiped config.
    pub gossip: Option<(u64, toml::Table)>,
}

impl Layers {
    /// The effective config: default, then env, user and gossip merged on top in that order.
    pub fn merged(&self) -> toml::Table {
        let mut out = self.default.clone();
        for layer in [
            self.env.as_ref(),
            self.user.as_ref(),
            self.gossip.as_ref().map(|(_, t)| t),
        ]
        .into_iter()
        .flatten()
        {
            deep_merge(&mut out, layer);
        }
        out
    }

    /// Re-reads `user.toml` (after `UserTomlWatch` saw a change). Returns whether the layer
    /// changed; on error the previous user layer stays in place.
    pub fn reload_user(&mut self, path: &Path) -> Result<bool, ConfigError> {
        let user = read_user_toml(path)?;
        let changed = user != self.user;
        self.user = user;
        Ok(changed)
    }

    /// Takes a gossiped config if its incarnation is above the one held (gossip may deliver an
    /// older one late). Returns whether the layer changed; on error nothing changes.
    pub fn apply_gossip(
        &mut self,
        incarnation: u64,
        table: &toml::Table,
    ) -> Result<bool, ConfigError> {
        if self
            .gossip
            .as_ref()
            .is_some_and(|(held, _)| *held >= incarnation)
        {
            return Ok(false);
        }
        check_depth(table).map_err(|p| ConfigError::new(LayerSource::Gossip(incarnation), p))?;
        self.gossip = Some((incarnation, table.clone()));
        Ok(true)
    }
}

/// What a package gives the config layers: its name and its parsed `default.toml`. (Config
/// sits below packages: it takes these, not a `Package`.)
#[derive(Clone, Debug)]
pub struct PackageDefaults<'a> {
    pub name: &'a str,
    pub default_toml: &'a toml::Table,
    /// Where default.toml was read from, for errors.
    pub default_path: PathBuf,
}

/// Loads every layer for a package: `default.toml` (already parsed), the `HAB_<NAME>` variable
/// through `env`, `user.toml` under `root`, and the gossiped config the caller found (the
/// highest incarnation in the census). The first bad layer is the error.
pub fn load_layers(
    pkg: PackageDefaults<'_>,
    root: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    gossip: Option<(u64, &toml::Table)>,
) -> Result<Layers, ConfigError> {
    check_depth(pkg.default_toml)
        .map_err(|p| ConfigError::new(LayerSource::Default(pkg.default_path.clone()), p))?;
    let var = env_var_name(pkg.name);
    let env_layer = env(&var)
        .map(|text| parse_env_layer(&var, &text))
        .transpose()?;
    let user = read_user_toml(&user_toml_path(root, pkg.name))?;
    let mut layers = Layers {
        default: pkg.default_toml.clone(),
        env: env_layer,
        user,
        gossip: None,
    };
    if let Some((incarnation, table)) = gossip {
        layers.apply_gossip(incarnation, table)?;
    }
    Ok(layers)
}

/// What `UserTomlWatch` remembers of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Missing,
    /// Metadata could not be read (other than "not found"); the reload will report why.
    Unreadable(std::io::ErrorKind),
    Present {
        modified: Option<SystemTime>,
        len: u64,
        hash: Option<[u8; 32]>,
    },
}

/// A cheap change detector for `user.toml`, polled every 2 s by the service runtime.
/// A poll is one `stat`; the file is read and hashed only when its size or mtime moved, and a
/// rewrite with identical content (e.g. `touch`) is not a change. On filesystems with coarse
/// mtimes, a same-size rewrite within one mtime tick is seen only at the next change.
#[derive(Clone, Debug)]
pub struct UserTomlWatch {
    path: PathBuf,
    last: Seen,
}

impl UserTomlWatch {
    /// Starts from the file as it is now: the first `changed()` is false unless it moves.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let last = Self::look(&path, None);
        UserTomlWatch { path, last }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the file appeared, disappeared or its content changed since the last call.
    pub fn changed(&mut self) -> bool {
        let now = Self::look(&self.path, Some(&self.last));
        let changed = match (&self.last, &now) {
            (Seen::Present { hash: a, .. }, Seen::Present { hash: b, .. }) => a != b,
            (a, b) => a != b,
        };
        self.last = now;
        changed
    }

    fn look(path: &Path, previous: Option<&Seen>) -> Seen {
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Seen::Missing,
            Err(e) => return Seen::Unreadable(e.kind()),
        };
        let modified = meta.modified().ok();
        let len = meta.len();
        if let Some(Seen::Present {
            modified: m,
            len: l,
            hash,
        }) = previous
        {
            if *m == modified && *l == len {
                return Seen::Present {
                    modified,
                    len,
                    hash: *hash,
                };
            }
        }
        // An unreadable file hashes to None, which differs from any readable content.
        let hash = fs::read(path)
            .ok()
            .map(|bytes| Sha256::digest(&bytes).into());
        Seen::Present {
            modified,
            len,
            hash,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn t(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn shallow_keys_are_replaced_and_added() {
        let mut base = t("fruit = 'apple'\nveggie = 'carrot'\nn = 10");
        deep_merge(&mut base, &t("fruit = 'orange'\nn = 99\nnew = true"));
        assert_eq!(
            base,
            t("fruit = 'orange'\nveggie = 'carrot'\nn = 99\nnew = true")
        );
    }

    #[test]
    fn tables_merge_deeply() {
        let mut base =
            t("top = 1\n[server]\nport = 1000\nname = 'a'\n[server.tls]\non = false\nca = 'x'");
        deep_merge(
            &mut base,
            &t("[server]\nport = 5000\n[server.tls]\non = true\n[other]\nk = 1"),
        );
        assert_eq!(
            base,
            t("top = 1\n[server]\nport = 5000\nname = 'a'\n[server.tls]\non = true\nca = 'x'\n[other]\nk = 1")
        );
    }

    #[test]
    fn a_change_of_type_replaces() {
        let mut base = t("heat = 42\n[server]\nport = 1");
        deep_merge(&mut base, &t("heat = 'hot'\nserver = 'none'"));
        assert_eq!(base, t("heat = 'hot'\nserver = 'none'"));
        let mut base = t("server = 'none'");
        deep_merge(&mut base, &t("[server]\nport = 1"));
        assert_eq!(base, t("[server]\nport = 1"));
    }

    #[test]
    fn arrays_replace_rather_than_append() {
        let mut base = t("things = ['a', 'b', 'c']\n[[peers]]\nhost = 'x'\n[[peers]]\nhost = 'y'");
        deep_merge(&mut base, &t("things = ['z']\n[[peers]]\nport = 1"));
        assert_eq!(base, t("things = ['z']\n[[peers]]\nport = 1"));
    }

    fn nested(depth: usize) -> String {
        // `depth` tables including the root: a.b.c... with depth-1 keys.
        let keys: Vec<String> = (1..depth).map(|i| format!("k{i}")).collect();
        format!("[{}]\nv = 1\n", keys.join("."))
    }

    #[test]
    fn depth_limit_allows_the_limit_and_refuses_one_more() {
        assert!(check_depth(&t(&nested(MAX_DEPTH))).is_ok());
        let err = check_depth(&t(&nested(MAX_DEPTH + 1))).unwrap_err();
        assert!(
            err.contains("65 levels deep") && err.contains("limit is 64"),
            "{err}"
        );
        assert!(err.contains("k1.k2.k3"), "{err}");
        // Arrays count as a level too.
        let mut deep = toml::Value::Integer(1);
        for _ in 0..MAX_DEPTH {
            deep = toml::Value::Array(vec![deep]);
        }
        let mut table = toml::Table::new();
        table.insert("a".into(), deep);
        assert!(check_depth(&table).unwrap_err().contains("a.[0].[0]"));
    }

    #[test]
    fn a_too_deep_layer_is_an_error_naming_it() {
        let err = parse_env_layer("HAB_APP", &nested(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(err.layer, LayerSource::Env("HAB_APP".into()));
        assert!(
            err.to_string().starts_with("HAB_APP: nested 65 levels"),
            "{err}"
        );
        let mut layers = Layers::default();
        let err = layers
            .apply_gossip(3, &t(&nested(MAX_DEPTH + 1)))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("gossiped config (incarnation 3): nested"),
            "{err}"
        );
        assert_eq!(layers.gossip, None);
    }

    #[test]
    fn env_var_names_follow_habitat() {
        assert_eq!(env_var_name("redis"), "HAB_REDIS");
        assert_eq!(env_var_name("redis-server"), "HAB_REDIS_SERVER");
        assert_eq!(env_var_name("Node_js"), "HAB_NODE_JS");
    }

    #[test]
    fn env_layer_reads_toml() {
        let table = parse_env_layer("HAB_REDIS", "port = 7000\n[tls]\non = true").unwrap();
        assert_eq!(table, t("port = 7000\n[tls]\non = true"));
        assert_eq!(
            parse_env_layer("HAB_REDIS", "").unwrap(),
            toml::Table::new()
        );
    }

    #[test]
    fn env_layer_reads_json() {
        let table = parse_env_layer(
            "HAB_REDIS",
            r#"{"port": 7000, "ratio": 0.5, "name": "r", "on": true, "list": [1, 2], "tls": {"ca": "x"}}"#,
        )
        .unwrap();
        assert_eq!(
            table,
            t("port = 7000\nratio = 0.5\nname = 'r'\non = true\nlist = [1, 2]\n[tls]\nca = 'x'")
        );
    }

    #[test]
    fn invalid_env_layers_name_the_variable_and_the_problem() {
        let err = parse_env_layer("HAB_REDIS", "port = ").unwrap_err();
        assert_eq!(err.layer, LayerSource::Env("HAB_REDIS".into()));
        let text = err.to_string();
        assert!(
            text.starts_with(
                "HAB_REDIS: expected a TOML or JSON table: TOML syntax error at line 1, column"
            ),
            "{text}"
        );
        let err = parse_env_layer("HAB_REDIS", "{\"port\": }")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "HAB_REDIS: expected a TOML or JSON table: JSON syntax error at line 1, column 10"
            ),
            "{err}"
        );
        let err = parse_env_layer("HAB_REDIS", "[1, 2]")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "HAB_REDIS: expected a TOML or JSON table, found a JSON array"
        );
        let err = parse_env_layer("HAB_REDIS", r#"{"tls": {"ca": null}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("HAB_REDIS: JSON null at key tls.ca"),
            "{err}"
        );
        let err = parse_env_layer("HAB_REDIS", r#"{"big": 18446744073709551615}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at key big is above TOML's largest integer"),
            "{err}"
        );
    }

    #[test]
    fn toml_errors_report_line_and_column() {
        let err = parse_toml_layer(
            LayerSource::User("/u.toml".into()),
            "a = 1\nb = 2\nc = = 3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("/u.toml: TOML syntax error at line 3, column 5"),
            "{err}"
        );
    }

    #[test]
    fn layers_merge_in_order_with_gossip_on_top() {
        let layers = Layers {
            default: t(
                "a = 'default'\nb = 'default'\nc = 'default'\nd = 'default'\n[t]\nx = 1\ny = 1",
            ),
            env: Some(t("b = 'env'\nc = 'env'\nd = 'env'\n[t]\nx = 2")),
            user: Some(t("c = 'user'\nd = 'user'")),
            gossip: Some((4, t("d = 'gossip'\n[t]\ny = 9"))),
        };
        assert_eq!(
            layers.merged(),
            t("a = 'default'\nb = 'env'\nc = 'user'\nd = 'gossip'\n[t]\nx = 2\ny = 9")
        );
    }

    #[test]
    fn gossip_only_moves_to_higher_incarnations() {
        let mut layers = Layers::default();
        assert!(layers.apply_gossip(2, &t("v = 2")).unwrap());
        assert!(!layers.apply_gossip(1, &t("v = 1")).unwrap());
        assert!(!layers.apply_gossip(2, &t("v = 'other'")).unwrap());
        assert_eq!(layers.merged(), t("v = 2"));
        assert!(layers.apply_gossip(5, &t("v = 5")).unwrap());
        assert_eq!(layers.gossip.as_ref().map(|g| g.0), Some(5));
        assert_eq!(layers.merged(), t("v = 5"));
    }

    #[test]
    fn a_bad_user_toml_keeps_the_last_good_user_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("user.toml");
        let mut layers = Layers::default();
        assert!(
            !layers.reload_user(&path).unwrap(),
            "missing file: no layer, no change"
        );
        fs::write(&path, "port = 1").unwrap();
        assert!(layers.reload_user(&path).unwrap());
        assert!(
            !layers.reload_user(&path).unwrap(),
            "same content: no change"
        );
        fs::write(&path, "port = ").unwrap();
        let err = layers.reload_user(&path).unwrap_err();
        assert_eq!(err.layer, LayerSource::User(path.clone()));
        assert_eq!(layers.user, Some(t("port = 1")));
        fs::remove_file(&path).unwrap();
        assert!(layers.reload_user(&path).unwrap());
        assert_eq!(layers.user, None);
    }

    #[test]
    fn user_toml_watch_sees_writes_removals_and_ignores_touches() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("user.toml");
        let mut watch = UserTomlWatch::new(&path);
        assert_eq!(watch.path(), path);
        assert!(!watch.changed(), "still missing");
        fs::write(&path, "port = 1").unwrap();
        assert!(watch.changed(), "created");
        assert!(!watch.changed(), "nothing new");
        fs::write(&path, "port = 22").unwrap();
        assert!(watch.changed(), "longer content");
        fs::write(&path, "port = 33").unwrap();
        assert!(watch.changed(), "same length, new content");
        // Rewriting the same bytes with a new mtime is not a change.
        fs::write(&path, "port = 33").unwrap();
        assert!(!watch.changed(), "touched only");
        fs::remove_file(&path).unwrap();
        assert!(watch.changed(), "removed");
        assert!(!watch.changed());
    }

    #[test]
    fn a_watch_starts_from_the_current_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("user.toml");
        fs::write(&path, "a = 1").unwrap();
        let mut watch = UserTomlWatch::new(&path);
        assert!(!watch.changed());
    }
}
