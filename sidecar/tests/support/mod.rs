//! Our JSON Schemas of the gateway documents and the render context (`tests/schemas/`), loaded
//! into one registry because they share definitions by file name.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use jsonschema::{Registry, Validator};
use serde_json::Value;

/// The documents we keep a schema of: `tests/schemas/<name>.schema.json`.
pub const DOCUMENTS: [&str; 4] = ["butterfly", "census", "services", "render_context"];

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

pub struct Schemas {
    validators: BTreeMap<&'static str, Validator>,
}

impl Schemas {
    pub fn load() -> Schemas {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemas"));
        let schemas: Vec<(&str, Value)> = DOCUMENTS
            .iter()
            .map(|name| (*name, read_json(&dir.join(format!("{name}.schema.json")))))
            .collect();
        let registry = Registry::new()
            .extend(schemas.iter().map(|(name, schema)| {
                let id = schema["$id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: no $id"));
                (id.to_string(), schema.clone())
            }))
            .expect("schema ids")
            .prepare()
            .expect("schema registry");
        let validators = schemas
            .iter()
            .map(|(name, schema)| {
                let validator = jsonschema::options()
                    .offline()
                    .with_registry(&registry)
                    .build(schema)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                (*name, validator)
            })
            .collect();
        Schemas { validators }
    }

    /// Every error of `doc` against the schema of document `name`, each with where it is.
    pub fn errors(&self, name: &str, doc: &Value) -> Vec<String> {
        self.validators
            .get(name)
            .unwrap_or_else(|| panic!("no schema {name}"))
            .iter_errors(doc)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect()
    }
}

pub fn assert_valid(schemas: &Schemas, name: &str, doc: &Value) {
    let errors = schemas.errors(name, doc);
    assert!(errors.is_empty(), "{name}: {errors:#?}");
}
