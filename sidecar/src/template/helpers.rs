//! Habitat's template helpers, with Habitat's output byte for byte, quirks included: `eachAlive`
//! counts `@index` from 1, `strConcat`/`strJoin` print values as JSON text with every `"`
//! removed, and helper output is never escaped. Each helper is a unit struct registered by
//! [`register_all`]; none keeps state except `pkgPathFor`, which knows the packages root.

use std::path::{Path, PathBuf};

use handlebars::{
    BlockContext, BlockParams, Context, Handlebars, Helper, HelperDef, HelperResult, Output,
    PathAndJson, RenderContext, RenderError, RenderErrorReason, Renderable,
};
use serde_json::Value;

use crate::package::PackageIdent;

/// Registers every Habitat helper under Habitat's name. `fs_root` is the supervisor root
/// (`/hab` by default): `pkgPathFor` answers `<fs_root>/pkgs/ORIGIN/NAME/VERSION/RELEASE`.
pub fn register_all(hb: &mut Handlebars<'static>, fs_root: &Path) {
    hb.register_helper("eachAlive", Box::new(EachAlive));
    hb.register_helper(
        "pkgPathFor",
        Box::new(PkgPathFor {
            pkgs_dir: fs_root.join("pkgs"),
        }),
    );
    hb.register_helper("strConcat", Box::new(StrConcat));
    hb.register_helper("strJoin", Box::new(StrJoin));
    hb.register_helper("strReplace", Box::new(StrReplace));
    for helper in [
        OneValue::TO_UPPERCASE,
        OneValue::TO_LOWERCASE,
        OneValue::TO_JSON,
        OneValue::TO_TOML,
        OneValue::TO_YAML,
    ] {
        hb.register_helper(helper.name, Box::new(helper));
    }
}

fn fail(message: impl Into<String>) -> RenderError {
    RenderErrorReason::Other(message.into()).into()
}

/// Habitat's truthiness: empty collections, empty strings, `0`, `null` and `false` are false.
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(f64::is_normal),
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A census member counts as alive only when it says `alive: true`.
fn is_alive(member: &Value) -> bool {
    member.get("alive").and_then(Value::as_bool) == Some(true)
}

/// How Habitat's `strConcat`/`strJoin` print a value: its JSON text with every `"` dropped
/// (so `"a\"b"` prints `ab`, `[1, "x"]` prints `[1,x]`, a missing value prints `null`).
fn unquoted_json(value: &Value) -> String {
    value.to_string().replace('"', "")
}

/// A block whose `this` is the helper's parameter, as handlebars' own `each` starts one.
fn block_for<'rc>(param: &PathAndJson<'rc>) -> BlockContext<'rc> {
    let mut block = BlockContext::new();
    if let Some(path) = param.context_path() {
        block.base_path_mut().clone_from(path);
    } else {
        block.set_base_value(param.value().clone());
    }
    block
}

/// Points the block's `this` at one item, by path when the collection has one (so `../` and
/// `@root` keep working), by value otherwise.
fn enter_item(
    block: &mut BlockContext<'_>,
    base_path: Option<&Vec<String>>,
    item_key: String,
    first: bool,
    item: &Value,
) {
    match base_path {
        Some(path) if first => {
            let mut full = path.clone();
            full.push(item_key);
            *block.base_path_mut() = full;
        }
        Some(_) => {
            if let Some(last) = block.base_path_mut().last_mut() {
                *last = item_key;
            }
        }
        None => block.set_base_value(item.clone()),
    }
}

/// `as |item|` or `as |item key|`.
fn set_block_params<'rc>(
    block: &mut BlockContext<'rc>,
    h: &Helper<'rc>,
    base_path: Option<&Vec<String>>,
    key: &Value,
    item: &Value,
) -> Result<(), RenderError> {
    let (item_name, key_name) = match (h.block_param(), h.block_param_pair()) {
        (Some(name), _) => (name, None),
        (None, Some((name, key_name))) => (name, Some(key_name)),
        (None, None) => return Ok(()),
    };
    let mut params = BlockParams::new();
    if base_path.is_some() {
        params.add_path(item_name, Vec::new())?;
    } else {
        params.add_value(item_name, item.clone())?;
    }
    if let Some(key_name) = key_name {
        params.add_value(key_name, key.clone())?;
    }
    block.set_block_params(params);
    Ok(())
}

/// `{{#eachAlive svc.members as |member|}}`: like `each`, over the members with `alive: true`
/// only. `@index` counts alive members from 1 (Habitat's behaviour since handlebars 4);
/// `@first`/`@last` are the first and last alive member. Given one member object, the block
/// iterates its keys if the member is alive. An empty or false value renders `{{else}}`.
#[derive(Clone, Copy)]
pub struct EachAlive;

impl HelperDef for EachAlive {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let param = h
            .param(0)
            .ok_or(RenderErrorReason::ParamNotFoundForIndex("eachAlive", 0))?;
        let Some(template) = h.template() else {
            return Ok(());
        };
        let value = param.value();
        if !is_truthy(value) {
            if let Some(inverse) = h.inverse() {
                inverse.render(r, ctx, rc, out)?;
            }
            return Ok(());
        }
        match value {
            Value::Array(list) => {
                let first_alive = list.iter().position(is_alive);
                let last_alive = list.iter().rposition(is_alive);
                let base_path = param.context_path();
                rc.push_block(block_for(param));
                let mut alive_index: u64 = 0;
                for (i, member) in list.iter().enumerate() {
                    if !is_alive(member) {
                        continue;
                    }
                    alive_index += 1;
                    if let Some(block) = rc.block_mut() {
                        let first = first_alive == Some(i);
                        let index = Value::from(alive_index);
                        block.set_local_var("first", Value::Bool(first));
                        block.set_local_var("last", Value::Bool(last_alive == Some(i)));
                        block.set_local_var("index", index.clone());
                        enter_item(block, base_path, i.to_string(), first, member);
                        set_block_params(block, h, base_path, &index, member)?;
                    }
                    template.render(r, ctx, rc, out)?;
                }
                rc.pop_block();
                Ok(())
            }
            Value::Object(object) => {
                if !is_alive(value) {
                    return Ok(());
                }
                let base_path = param.context_path();
                rc.push_block(block_for(param));
                for (i, (key, item)) in object.iter().enumerate() {
                    if let Some(block) = rc.block_mut() {
                        let key_json = Value::String(key.clone());
                        block.set_local_var("first", Value::Bool(i == 0));
                        block.set_local_var("key", key_json.clone());
                        enter_item(block, base_path, key.clone(), i == 0, item);
                        set_block_params(block, h, base_path, &key_json, item)?;
                    }
                    template.render(r, ctx, rc, out)?;
                }
                rc.pop_block();
                Ok(())
            }
            _ => Err(RenderErrorReason::InvalidParamType("Param type is not iterable.").into()),
        }
    }
}

/// `{{pkgPathFor "core/openssl"}}`: the install path of the first of `pkg.deps` that satisfies
/// the ident, or nothing when no dependency does.
#[derive(Clone)]
pub struct PkgPathFor {
    pkgs_dir: PathBuf,
}

fn satisfies(dep: &Value, wanted: &PackageIdent) -> bool {
    let part = |key: &str| dep.get(key).and_then(Value::as_str);
    part("origin") == Some(wanted.origin.as_str())
        && part("name") == Some(wanted.name.as_str())
        && wanted
            .version
            .as_deref()
            .is_none_or(|v| part("version") == Some(v))
        && wanted
            .release
            .as_deref()
            .is_none_or(|r| part("release") == Some(r))
}

impl HelperDef for PkgPathFor {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let wanted: PackageIdent = h
            .param(0)
            .and_then(|v| v.value().as_str())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| fail("Invalid package identifier for \"pkgPathFor\""))?;
        let deps = ctx.data()["pkg"]["deps"].as_array();
        let path = deps
            .into_iter()
            .flatten()
            .find(|dep| satisfies(dep, &wanted))
            .map(|dep| {
                let mut path = self.pkgs_dir.clone();
                for key in ["origin", "name", "version", "release"] {
                    if let Some(part) = dep.get(key).and_then(Value::as_str) {
                        path.push(part);
                    }
                }
                path.to_string_lossy().into_owned()
            })
            .unwrap_or_default();
        out.write(&path)?;
        Ok(())
    }
}

/// `{{strConcat a b ...}}`: every parameter that is not an object, as unquoted JSON text.
#[derive(Clone, Copy)]
pub struct StrConcat;

impl HelperDef for StrConcat {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let text: String = h
            .params()
            .iter()
            .map(PathAndJson::value)
            .filter(|v| !v.is_object())
            .map(unquoted_json)
            .collect();
        out.write(&text)?;
        Ok(())
    }
}

/// `{{strJoin list ","}}`: the list's non-object items as unquoted JSON text, joined.
#[derive(Clone, Copy)]
pub struct StrJoin;

impl HelperDef for StrJoin {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let usage = || fail("Expected 2 parameters for \"strJoin\"");
        let items: Vec<String> = h
            .param(0)
            .and_then(|v| v.value().as_array())
            .ok_or_else(usage)?
            .iter()
            .filter(|v| !v.is_object())
            .map(unquoted_json)
            .collect();
        let separator = h
            .param(1)
            .and_then(|v| v.value().as_str())
            .ok_or_else(usage)?;
        out.write(&items.join(separator))?;
        Ok(())
    }
}

fn string_param<'a>(h: &'a Helper<'_>, index: usize, usage: &str) -> Result<&'a str, RenderError> {
    h.param(index)
        .and_then(|v| v.value().as_str())
        .ok_or_else(|| fail(usage))
}

/// `{{strReplace text "old" "new"}}`: every occurrence replaced.
#[derive(Clone, Copy)]
pub struct StrReplace;

impl HelperDef for StrReplace {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let usage = "Expected 3 string parameters for \"strReplace\"";
        let text = string_param(h, 0, usage)?;
        let old = string_param(h, 1, usage)?;
        let new = string_param(h, 2, usage)?;
        out.write(&text.replace(old, new))?;
        Ok(())
    }
}

fn first_param<'a>(h: &'a Helper<'_>, name: &str) -> Result<&'a Value, RenderError> {
    h.param(0)
        .map(PathAndJson::value)
        .ok_or_else(|| fail(format!("Expected 1 parameter for \"{name}\"")))
}

/// A helper of one parameter whose output is a function of its value: the case helpers and the
/// serializers (`toJson` pretty JSON with a two-space indent and no trailing newline, `toToml` a
/// TOML document of a table, `toYaml` a YAML document ending in a newline).
#[derive(Clone, Copy)]
pub struct OneValue {
    name: &'static str,
    convert: fn(&Value) -> Result<String, String>,
}

/// An empty error means "not a string": the helper words the message.
fn upper(value: &Value) -> Result<String, String> {
    value
        .as_str()
        .map(str::to_uppercase)
        .ok_or_else(String::new)
}

fn lower(value: &Value) -> Result<String, String> {
    value
        .as_str()
        .map(str::to_lowercase)
        .ok_or_else(String::new)
}

fn json(value: &Value) -> Result<String, String> {
    serde_json::to_string_pretty(value)
        .map_err(|e| format!("Can't serialize parameter to JSON: {e}"))
}

/// A table as a TOML document (values before tables, as TOML needs, so key order is kept only
/// among values and among tables); anything else as a TOML value (`9638`, `"redis"`,
/// `["6379"]`, an array of tables inline), as Habitat's helper does.
fn toml_text(value: &Value) -> Result<String, String> {
    let text = if value.is_object() {
        toml::to_string(value)
    } else {
        let mut text = String::new();
        serde::Serialize::serialize(value, toml::ser::ValueSerializer::new(&mut text))
            .map(|_| ())
            .map(|()| text)
    };
    text.map_err(|e| format!("Can't serialize parameter to TOML: {e}"))
}

fn yaml(value: &Value) -> Result<String, String> {
    serde_yaml::to_string(value).map_err(|e| format!("Can't serialize parameter to YAML: {e}"))
}

impl OneValue {
    pub const TO_UPPERCASE: OneValue = OneValue {
        name: "toUppercase",
        convert: upper,
    };
    pub const TO_LOWERCASE: OneValue = OneValue {
        name: "toLowercase",
        convert: lower,
    };
    pub const TO_JSON: OneValue = OneValue {
        name: "toJson",
        convert: json,
    };
    pub const TO_TOML: OneValue = OneValue {
        name: "toToml",
        convert: toml_text,
    };
    pub const TO_YAML: OneValue = OneValue {
        name: "toYaml",
        convert: yaml,
    };
}

impl HelperDef for OneValue {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let text = match (self.convert)(first_param(h, self.name)?) {
            Ok(text) => text,
            // The case helpers take strings only, with Habitat's message.
            Err(problem) if problem.is_empty() => {
                return Err(fail(format!(
                    "Expected a string parameter for \"{}\"",
                    self.name
                )))
            }
            Err(problem) => return Err(fail(problem)),
        };
        out.write(&text)?;
        Ok(())
    }
}
