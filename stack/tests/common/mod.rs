//! What the template tests share: reading a role's policy statements.

use serde_json::Value;
use stack::template::Template;

/// A JSON value as a list: an array's items, nothing for null, else the value itself.
pub fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// The statements of `role`'s inline policies.
pub fn statements(t: &Template, role: &str) -> Vec<Value> {
    let resource = t.resource(role).unwrap_or_else(|| panic!("no role {role}"));
    list(&resource.properties["Policies"]).iter().flat_map(|p| list(&p["PolicyDocument"]["Statement"])).collect()
}
