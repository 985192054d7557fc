//! asyncapi.yaml against what the code sends: a test hands every order message and catalogue
//! event it sees on the broker to [`assert_documented`], which fails when the document does not
//! describe it (its name, its AMQP type, its body by the message's JSON schema).

use std::sync::OnceLock;

use serde_json::Value;

/// asyncapi.yaml as JSON, every local `$ref` replaced by what it points at.
fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../asyncapi.yaml");
        let text = std::fs::read_to_string(path).expect("asyncapi.yaml beside Cargo.toml");
        let document: Value = serde_norway::from_str(&text).expect("asyncapi.yaml is YAML");
        resolved(&document, &document)
    })
}

fn resolved(value: &Value, root: &Value) -> Value {
    match value {
        Value::Object(map) => match map.get("$ref").and_then(Value::as_str) {
            Some(pointer) => {
                let target = pointer
                    .strip_prefix('#')
                    .and_then(|pointer| root.pointer(pointer))
                    .unwrap_or_else(|| panic!("asyncapi.yaml: {pointer} points at nothing"));
                resolved(target, root)
            }
            None => Value::Object(
                map.iter()
                    .map(|(key, value)| (key.clone(), resolved(value, root)))
                    .collect(),
            ),
        },
        Value::Array(items) => Value::Array(items.iter().map(|v| resolved(v, root)).collect()),
        other => other.clone(),
    }
}

/// Panics unless asyncapi.yaml has a message named `name` (an event's routing key, the order
/// message's type) whose AMQP type is `amqp_type` and whose payload schema `body` satisfies.
pub fn assert_documented(name: &str, amqp_type: Option<&str>, body: &[u8]) {
    let messages = document()["components"]["messages"]
        .as_object()
        .expect("asyncapi.yaml has components.messages");
    let message = messages
        .values()
        .find(|message| message["name"] == name)
        .unwrap_or_else(|| panic!("asyncapi.yaml describes no message named {name}"));
    assert_eq!(
        message["bindings"]["amqp"]["messageType"].as_str(),
        amqp_type,
        "asyncapi.yaml: the AMQP type of {name}"
    );
    let payload: Value = serde_json::from_slice(body).expect("a JSON body");
    let validator = jsonschema::validator_for(&message["payload"])
        .unwrap_or_else(|e| panic!("asyncapi.yaml: {name}'s payload is no JSON schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&payload)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name} as sent does not match asyncapi.yaml: {}\n{payload}",
        errors.join("; ")
    );
}
