//! Habitat's JSON Schemas (shared/reference/habitat/), loaded into one registry so their
//! cross-references resolve, strict or relaxed as the reference README says: extra fields
//! allowed, topology `initializer` allowed, and the services schema's dangling
//! `#/definitions/package_identifier` pointed at the render context schema.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use jsonschema::{Registry, Validator};
use serde_json::{json, Value};

pub const SCHEMA_FILES: [&str; 4] = [
    "http_gateway_butterfly_schema.json",
    "http_gateway_census_schema.json",
    "http_gateway_services_schema.json",
    "render_context_schema.json",
];
pub const BASE: &str = "https://habitat-reference.invalid/";

pub fn reference_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/reference/habitat/"
    ))
}

pub fn load(file: &str) -> Value {
    let path = reference_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Drops `additionalProperties: false`, adds `initializer` to the topology enum, and points the
/// services schema's dangling `#/definitions/package_identifier` at the render context schema.
fn relax(value: &mut Value, file: &str) {
    match value {
        Value::Object(map) => {
            if map.get("additionalProperties") == Some(&Value::Bool(false)) {
                map.remove("additionalProperties");
            }
            if let Some(Value::Array(variants)) = map.get_mut("enum") {
                if variants.contains(&json!("standalone")) && variants.contains(&json!("leader")) {
                    variants.push(json!("initializer"));
                }
            }
            fix_dangling_ref(map, file);
            for child in map.values_mut() {
                relax(child, file);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| relax(v, file)),
        _ => {}
    }
}

fn fix_dangling_ref(map: &mut serde_json::Map<String, Value>, file: &str) {
    if file == "http_gateway_services_schema.json"
        && map.get("$ref") == Some(&json!("#/definitions/package_identifier"))
    {
        map.insert(
            "$ref".into(),
            json!("render_context_schema.json#/definitions/package_identifier"),
        );
    }
}

/// Every schema, with its file name as `$id` under one base, so their cross-references resolve.
fn schemas(relaxed: bool) -> Vec<(String, Value)> {
    SCHEMA_FILES
        .iter()
        .map(|file| {
            let mut schema = load(file);
            if relaxed {
                relax(&mut schema, file);
            } else if let Value::Object(map) = &mut schema {
                // Even the strict set needs the dangling reference pointed somewhere.
                fix_dangling_ref_everywhere(map, file);
            }
            let uri = format!("{BASE}{file}");
            // Draft 4 (the render context schema) names a schema's base URI `id`.
            schema["id"] = json!(uri);
            schema["$id"] = json!(uri);
            (uri, schema)
        })
        .collect()
}

fn fix_dangling_ref_everywhere(map: &mut serde_json::Map<String, Value>, file: &str) {
    fix_dangling_ref(map, file);
    for child in map.values_mut() {
        match child {
            Value::Object(inner) => fix_dangling_ref_everywhere(inner, file),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(inner) = item {
                        fix_dangling_ref_everywhere(inner, file);
                    }
                }
            }
            _ => {}
        }
    }
}

pub struct Schemas {
    all: Vec<(String, Value)>,
}

impl Schemas {
    pub fn new(relaxed: bool) -> Schemas {
        Schemas {
            all: schemas(relaxed),
        }
    }

    pub fn validator(&self, file: &str) -> Validator {
        let registry = Registry::new()
            .extend(
                self.all
                    .iter()
                    .map(|(uri, schema)| (uri.clone(), schema.clone())),
            )
            .expect("schema uris")
            .prepare()
            .expect("registry of Habitat's schemas");
        let (_, schema) = self
            .all
            .iter()
            .find(|(uri, _)| uri.ends_with(file))
            .expect("known schema");
        jsonschema::options()
            .offline()
            .with_registry(&registry)
            .build(schema)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    pub fn errors(&self, file: &str, doc: &Value) -> Vec<String> {
        self.validator(file)
            .iter_errors(doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }
}

pub fn assert_valid(schemas: &Schemas, file: &str, doc: &Value) {
    let errors = schemas.errors(file, doc);
    assert!(errors.is_empty(), "{file}: {errors:#?}");
}
