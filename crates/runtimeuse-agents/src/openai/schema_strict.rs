//! The caller's JSON schema in the form OpenAI's strict structured outputs demand, and the
//! way back from an answer to that form to one the caller's schema accepts.
//!
//! Strict mode wants, at every object level, `additionalProperties: false` and every
//! property listed in `required`. A property the caller left optional is therefore made
//! nullable, and the model answers `null` for "absent"; [`drop_null_optionals`] removes
//! those nulls again before the answer is validated against the caller's original schema.
//! `oneOf` (not available in strict mode) becomes `anyOf`; the original schema still
//! enforces exclusivity when the answer is validated.
//!
//! Some schemas cannot be closed without changing their meaning: a map
//! (`additionalProperties` holding a schema or `true`), `patternProperties`, a free-form
//! object (no `properties`, extra properties allowed)… Closed, such an object could only
//! be answered with `{}`, which the caller's schema would then accept. Those schemas are
//! sent as they are with `strict: false` (see [`output_format`]); the answer is validated
//! against the caller's schema all the same.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// Keywords holding a map of named sub-schemas.
const SCHEMA_MAPS: [&str; 4] = ["$defs", "definitions", "properties", "patternProperties"];
/// Keywords holding one sub-schema (or, for `items`, possibly a list).
const SCHEMA_ONE: [&str; 4] = ["items", "additionalItems", "contains", "not"];
/// Keywords holding a list of sub-schemas.
const SCHEMA_LISTS: [&str; 4] = ["anyOf", "oneOf", "allOf", "prefixItems"];

/// How deep `$ref`s are followed when removing nulls (recursive schemas).
const MAX_DEPTH: usize = 64;

/// Keywords about an object's other properties that strict mode cannot express: with
/// any of them (other than `false`), closing the object would change what it accepts.
const OPEN_OBJECT_KEYWORDS: [&str; 7] = [
    "additionalProperties",
    "unevaluatedProperties",
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
];

/// The `text.format` of structured output: the schema sent to the API and whether it is
/// sent in strict mode.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OutputFormat {
    /// The strict copy of the caller's schema, or the caller's schema itself.
    pub schema: Value,
    /// Whether `schema` is strict (and answers hold `null` for absent optionals).
    pub strict: bool,
}

/// The format asking for answers to `schema`: its strict copy when closing every object
/// keeps its meaning, else `schema` unchanged and not strict.
pub(crate) fn output_format(schema: &Value) -> OutputFormat {
    if can_be_strict(schema, 0) {
        OutputFormat {
            schema: strictify(schema),
            strict: true,
        }
    } else {
        tracing::debug!("the output schema has open objects; asking for it without strict mode");
        OutputFormat {
            schema: schema.clone(),
            strict: false,
        }
    }
}

/// Whether [`strictify`] keeps the meaning of `node`: no object in it allows properties
/// other than those it lists.
fn can_be_strict(node: &Value, depth: usize) -> bool {
    let Value::Object(map) = node else {
        return true;
    };
    if depth > MAX_DEPTH {
        return false;
    }
    let open = OPEN_OBJECT_KEYWORDS.iter().any(|key| {
        map.get(*key)
            .is_some_and(|value| value != &Value::Bool(false))
    });
    if open {
        return false;
    }
    let lists_properties = map
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|properties| !properties.is_empty());
    let closed = map.get("additionalProperties") == Some(&Value::Bool(false));
    if is_object_schema(map) && !lists_properties && !closed {
        // A free-form object: closing it would leave only `{}`.
        return false;
    }
    let maps = SCHEMA_MAPS
        .iter()
        .filter_map(|key| map.get(*key).and_then(Value::as_object))
        .flat_map(Map::values);
    let ones = SCHEMA_ONE
        .iter()
        .filter_map(|key| map.get(*key))
        .flat_map(|child| match child {
            Value::Array(children) => children.iter().collect::<Vec<_>>(),
            child => vec![child],
        });
    let lists = SCHEMA_LISTS
        .iter()
        .filter_map(|key| map.get(*key).and_then(Value::as_array))
        .flatten();
    maps.chain(ones)
        .chain(lists)
        .all(|child| can_be_strict(child, depth + 1))
}

/// A strict copy of `schema` (see the module documentation); `schema` itself is kept
/// for validating the answer.
pub(crate) fn strictify(schema: &Value) -> Value {
    let mut strict = schema.clone();
    make_strict(&mut strict);
    strict
}

fn make_strict(node: &mut Value) {
    let Value::Object(map) = node else {
        return;
    };
    if let Some(one_of) = map.remove("oneOf") {
        let any_of = map.entry("anyOf").or_insert_with(|| json!([]));
        if let (Value::Array(any), Value::Array(one)) = (any_of, one_of) {
            any.extend(one);
        }
    }
    for key in SCHEMA_MAPS {
        if let Some(Value::Object(children)) = map.get_mut(key) {
            children.values_mut().for_each(make_strict);
        }
    }
    for key in SCHEMA_ONE {
        match map.get_mut(key) {
            Some(Value::Array(children)) => children.iter_mut().for_each(make_strict),
            Some(child) => make_strict(child),
            None => {}
        }
    }
    for key in SCHEMA_LISTS {
        if let Some(Value::Array(children)) = map.get_mut(key) {
            children.iter_mut().for_each(make_strict);
        }
    }
    if is_object_schema(map) {
        close_object(map);
    }
}

fn is_object_schema(map: &Map<String, Value>) -> bool {
    match map.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(types)) => types.iter().any(|t| t == "object"),
        _ => map.contains_key("properties"),
    }
}

/// Every property required (optional ones made nullable), no other property allowed.
fn close_object(map: &mut Map<String, Value>) {
    let required = required_names(map);
    let properties = map
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    let mut names = Vec::new();
    if let Value::Object(properties) = properties {
        for (name, property) in properties.iter_mut() {
            if !required.contains(name.as_str()) {
                make_nullable(property);
            }
            names.push(Value::String(name.clone()));
        }
    }
    map.insert("required".into(), Value::Array(names));
    map.insert("additionalProperties".into(), Value::Bool(false));
}

fn required_names(map: &Map<String, Value>) -> BTreeSet<String> {
    map.get("required")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn make_nullable(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    let null = Value::String("null".into());
    if !map.contains_key("const") {
        match map.get_mut("type") {
            Some(Value::String(t)) if t == "null" => return,
            Some(Value::String(t)) => {
                let t = Value::String(std::mem::take(t));
                map.insert("type".into(), Value::Array(vec![t, null]));
                allow_null_in_enum(map);
                return;
            }
            Some(Value::Array(types)) => {
                if !types.contains(&null) {
                    types.push(null);
                }
                allow_null_in_enum(map);
                return;
            }
            _ => {}
        }
        if let Some(Value::Array(branches)) = map.get_mut("anyOf") {
            if !branches.iter().any(|b| b.get("type") == Some(&null)) {
                branches.push(json!({"type": "null"}));
            }
            return;
        }
    }
    let original = std::mem::take(schema);
    *schema = json!({"anyOf": [original, {"type": "null"}]});
}

fn allow_null_in_enum(map: &mut Map<String, Value>) {
    match map.get_mut("enum") {
        Some(Value::Array(values)) if !values.contains(&Value::Null) => values.push(Value::Null),
        _ => {}
    }
}

/// Removes, from an answer to the strict schema, the `null`s standing for properties the
/// caller's `schema` does not require, so that the answer can be checked against it.
pub(crate) fn drop_null_optionals(answer: &mut Value, schema: &Value) {
    walk(answer, schema, schema, 0);
}

fn walk(instance: &mut Value, schema: &Value, root: &Value, depth: usize) {
    let Value::Object(s) = schema else {
        return;
    };
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(target) = s
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| resolve(root, r))
    {
        walk(instance, target, root, depth + 1);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for branch in s.get(key).and_then(Value::as_array).into_iter().flatten() {
            walk(instance, branch, root, depth + 1);
        }
    }
    match instance {
        Value::Object(object) => {
            let Some(Value::Object(properties)) = s.get("properties") else {
                return;
            };
            let required = required_names(s);
            object.retain(|name, value| {
                !(value.is_null() && properties.contains_key(name) && !required.contains(name))
            });
            for (name, value) in object.iter_mut() {
                if let Some(property) = properties.get(name) {
                    walk(value, property, root, depth + 1);
                }
            }
        }
        Value::Array(elements) => {
            let prefix = s.get("prefixItems").and_then(Value::as_array);
            let prefix_len = prefix.map_or(0, Vec::len);
            for (i, element) in elements.iter_mut().enumerate() {
                let element_schema = match prefix {
                    Some(prefix) if i < prefix_len => prefix.get(i),
                    _ => s.get("items"),
                };
                if let Some(element_schema) = element_schema {
                    walk(element, element_schema, root, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// A local `$ref` (`#`, `#/$defs/…`) inside `root`.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    root.pointer(reference.strip_prefix('#')?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_level_is_closed_and_fully_required() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
                "pet": {"$ref": "#/$defs/pet"},
                "kind": {"enum": ["a", "b"], "type": "string"},
                "either": {"oneOf": [{"type": "string"}, {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}]}
            },
            "required": ["name"],
            "$defs": {"pet": {"type": "object", "properties": {"legs": {"type": "integer"}}}}
        });
        let strict = strictify(&schema);
        assert_eq!(strict["additionalProperties"], false);
        let mut required: Vec<&str> = strict["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        required.sort_unstable();
        assert_eq!(required, ["age", "either", "kind", "name", "pet", "tags"]);
        assert_eq!(strict["properties"]["name"]["type"], "string");
        assert_eq!(
            strict["properties"]["age"]["type"],
            json!(["integer", "null"])
        );
        assert_eq!(
            strict["properties"]["kind"]["enum"],
            json!(["a", "b", null])
        );
        let item = &strict["properties"]["tags"]["items"];
        assert_eq!(item["additionalProperties"], false);
        assert_eq!(item["properties"]["k"]["type"], json!(["string", "null"]));
        assert_eq!(
            strict["properties"]["pet"],
            json!({"anyOf": [{"$ref": "#/$defs/pet"}, {"type": "null"}]})
        );
        assert_eq!(strict["$defs"]["pet"]["required"], json!(["legs"]));
        let either = &strict["properties"]["either"];
        assert!(either.get("oneOf").is_none());
        assert_eq!(either["anyOf"][1]["additionalProperties"], false);
        assert_eq!(either["anyOf"][2], json!({"type": "null"}));
        // The caller's schema is left alone.
        assert!(schema.get("additionalProperties").is_none());
    }

    #[test]
    fn schemas_with_open_objects_are_sent_unchanged_and_not_strict() {
        let open = [
            json!({"type": "object", "additionalProperties": {"type": "integer"}}),
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": true}),
            json!({"type": "object"}),
            json!({"type": "object", "properties": {}}),
            json!({"type": "object", "patternProperties": {"^x": {"type": "string"}}}),
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "propertyNames": {"maxLength": 3}}),
            // Nested: in a property, in items, in $defs, in a branch.
            json!({"type": "object", "properties": {"counts": {"type": "object", "additionalProperties": {"type": "integer"}}}}),
            json!({"type": "array", "items": {"type": "object"}}),
            json!({"type": "object", "properties": {"p": {"$ref": "#/$defs/m"}}, "$defs": {"m": {"additionalProperties": {}}}}),
            json!({"anyOf": [{"type": "string"}, {"type": "object", "properties": {"x": {"type": "number"}}, "unevaluatedProperties": true}]}),
        ];
        for schema in open {
            assert_eq!(
                output_format(&schema),
                OutputFormat {
                    schema: schema.clone(),
                    strict: false
                },
                "{schema}"
            );
        }
        let closed = [
            json!({"type": "object", "properties": {"a": {"type": "string"}}}),
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}),
            json!({"type": "object", "properties": {}, "additionalProperties": false}),
            json!({"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}),
        ];
        for schema in closed {
            let format = output_format(&schema);
            assert!(format.strict, "{schema}");
            assert_eq!(format.schema, strictify(&schema));
            assert_eq!(format.schema["additionalProperties"], false);
        }
    }

    #[test]
    fn nulls_of_optional_properties_are_dropped_before_validation() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "pets": {"type": "array", "items": {"$ref": "#/$defs/pet"}}
            },
            "required": ["name", "pets"],
            "$defs": {"pet": {"type": "object", "properties": {"legs": {"type": "integer"}}}}
        });
        let mut answer = json!({"name": "x", "age": null, "pets": [{"legs": null}, {"legs": 4}]});
        drop_null_optionals(&mut answer, &schema);
        assert_eq!(answer, json!({"name": "x", "pets": [{}, {"legs": 4}]}));
        assert!(runtimeuse_server::schema::validate(&schema, &answer).is_ok());
        // A required property keeps its null, and validation then fails as it should.
        let mut bad = json!({"name": null, "pets": []});
        drop_null_optionals(&mut bad, &schema);
        assert_eq!(bad, json!({"name": null, "pets": []}));
    }
}
