//! Batches of rows sent as JSON objects with the data dictionary's field names.

use serde_json::Value;

use crate::reject::{Reason, Violation};
use crate::table::Table;
use crate::validate::{Row, missing, parse_row};

/// The largest batch accepted.
pub const MAX_BATCH_ROWS: usize = 1000;

/// Checks one JSON batch element: an object with exactly the table's fields, ids as JSON
/// integers and text as JSON strings, then the same rules as a CSV row.
pub fn parse_json_row(table: Table, value: &Value) -> Result<Row, Violation> {
    let Value::Object(object) = value else {
        return Err(Violation::new(
            Reason::NotAnObject,
            format!("each row must be a JSON object with the fields {}", table.columns().join(", ")),
        ));
    };
    if let Some(extra) = object.keys().find(|key| !table.columns().contains(&key.as_str())) {
        return Err(Violation::new(
            Reason::UnexpectedField,
            format!("`{extra}` is not a field of {table}; expected {}", table.columns().join(", ")),
        ));
    }
    let mut texts = Vec::with_capacity(table.columns().len());
    for &column in table.columns() {
        let is_id = column == "id" || column.ends_with("_id");
        let text = match object.get(column) {
            None | Some(Value::Null) => return Err(missing(column)),
            Some(Value::Number(n)) if is_id => match n.as_i64() {
                Some(i) => i.to_string(),
                None => return Err(wrong_type(column, "an integer", "a fractional or huge number")),
            },
            Some(Value::String(s)) if !is_id => s.clone(),
            Some(other) => {
                let expected = if is_id { "an integer" } else { "a string" };
                return Err(wrong_type(column, expected, json_type(other)));
            }
        };
        texts.push(text);
    }
    let fields: Vec<&str> = texts.iter().map(String::as_str).collect();
    parse_row(table, &fields)
}

fn wrong_type(column: &str, expected: &str, got: &str) -> Violation {
    Violation::new(Reason::WrongType, format!("{column} must be {expected}, got {got}"))
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reason(value: Value) -> Reason {
        parse_json_row(Table::HiredEmployees, &value).unwrap_err().reason
    }

    #[test]
    fn ids_as_strings_or_floats_are_wrong_types() {
        let row = |id: Value| json!({"id": id, "name": "a", "datetime": "2021-01-01T00:00:00Z", "department_id": 1, "job_id": 1});
        assert_eq!(reason(row(json!("5"))), Reason::WrongType);
        assert_eq!(reason(row(json!(5.5))), Reason::WrongType);
        assert_eq!(reason(row(json!(5.0))), Reason::WrongType);
        assert_eq!(reason(row(json!(0))), Reason::InvalidId);
        assert_eq!(reason(row(json!(3_000_000_000i64))), Reason::InvalidId);
        assert!(parse_json_row(Table::HiredEmployees, &row(json!(5))).is_ok());
    }

    #[test]
    fn shape_errors_have_their_reasons() {
        assert_eq!(reason(json!([1, "a"])), Reason::NotAnObject);
        assert_eq!(
            reason(json!({"id": 1, "name": "a", "datetime": "2021-01-01T00:00:00Z", "department_id": 1})),
            Reason::MissingField
        );
        assert_eq!(
            reason(
                json!({"id": 1, "name": "a", "datetime": "2021-01-01T00:00:00Z", "department_id": 1, "job_id": 1, "x": 1})
            ),
            Reason::UnexpectedField
        );
        assert_eq!(
            reason(json!({"id": 1, "name": 7, "datetime": "2021-01-01T00:00:00Z", "department_id": 1, "job_id": 1})),
            Reason::WrongType
        );
    }
}
