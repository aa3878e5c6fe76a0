//! Batches of rows sent as JSON objects with the data dictionary's field names.
//!
//! A body is read in one pass and in memory bounded by the body itself: reading stops at the
//! row past [`MAX_BATCH_ROWS`], each row is kept as its JSON text (a `RawValue` borrowed from
//! the body), and a row's fields are held only when they are scalars (an array or object in a
//! field is skipped, not built). A body of millions of numbers, or a row holding a huge array,
//! costs no more than its bytes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::reject::{Reason, Violation};
use crate::table::Table;
use crate::validate::{Row, missing, parse_row};

/// The largest batch accepted.
pub const MAX_BATCH_ROWS: usize = 1000;

/// One row of a batch: its JSON text as sent, and the row or the rule it breaks.
#[derive(Debug)]
pub struct BatchRow<'a> {
    /// The row's JSON text, as it is in the body.
    pub raw: &'a str,
    /// The valid row, or the rule it breaks (before the checks against the database).
    pub outcome: std::result::Result<Row, Violation>,
}

/// Reads a batch body: a JSON array of 1..=[`MAX_BATCH_ROWS`] elements, each checked as a
/// row of `table` by [`parse_row_json`].
pub fn parse(table: Table, body: &[u8]) -> Result<Vec<BatchRow<'_>>> {
    let first = body.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'[') {
        return Err(match serde_json::from_slice::<IgnoredAny>(body) {
            Ok(_) => Error::BatchNotArray,
            Err(e) => Error::BatchJson(e.to_string()),
        });
    }
    let mut over = false;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let rows = match deserializer.deserialize_seq(Elements { over: &mut over }) {
        Ok(rows) => rows,
        Err(_) if over => return Err(Error::BatchSize { got: MAX_BATCH_ROWS + 1 }),
        Err(e) => return Err(Error::BatchJson(e.to_string())),
    };
    deserializer.end().map_err(|e| Error::BatchJson(e.to_string()))?;
    if rows.is_empty() {
        return Err(Error::BatchSize { got: 0 });
    }
    Ok(rows.into_iter().map(|raw| BatchRow { raw: raw.get(), outcome: parse_row_json(table, raw.get()) }).collect())
}

/// How many rows a refused batch holds, for its error: reading stops past the limit.
pub(crate) fn held(got: usize) -> String {
    if got > MAX_BATCH_ROWS { format!("more than {MAX_BATCH_ROWS}") } else { got.to_string() }
}

/// The array's elements as JSON texts; stops (with an error, `over` set) at the element past
/// the limit.
struct Elements<'a> {
    over: &'a mut bool,
}

impl<'de> Visitor<'de> for Elements<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of row objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        let mut rows = Vec::new();
        while let Some(row) = seq.next_element::<&'de RawValue>()? {
            if rows.len() == MAX_BATCH_ROWS {
                *self.over = true;
                return Err(de::Error::custom("too many rows"));
            }
            rows.push(row);
        }
        Ok(rows)
    }
}

/// Checks one JSON batch element: an object with exactly the table's fields, ids as JSON
/// integers and text as JSON strings, then the same rules as a CSV row.
pub fn parse_row_json(table: Table, json: &str) -> std::result::Result<Row, Violation> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let object = RowSeed { table }
        .deserialize(&mut deserializer)
        .map_err(|e| Violation::new(Reason::WrongType, format!("the row is not valid JSON: {e}")))?;
    let fields = match object {
        RowObject::NotAnObject => {
            return Err(Violation::new(
                Reason::NotAnObject,
                format!("each row must be a JSON object with the fields {}", table.columns().join(", ")),
            ));
        }
        RowObject::Unexpected(extra) => {
            return Err(Violation::new(
                Reason::UnexpectedField,
                format!("`{extra}` is not a field of {table}; expected {}", table.columns().join(", ")),
            ));
        }
        RowObject::Fields(fields) => fields,
    };
    let mut texts: [Cow<'_, str>; 5] = Default::default();
    for (index, &column) in table.columns().iter().enumerate() {
        let is_id = column == "id" || column.ends_with("_id");
        texts[index] = match &fields[index] {
            None | Some(Field::Null) => return Err(missing(column)),
            Some(Field::Int(i)) if is_id => Cow::Owned(i.to_string()),
            Some(Field::OtherNumber) if is_id => {
                return Err(wrong_type(column, "an integer", "a fractional or huge number"));
            }
            Some(Field::Str(s)) if !is_id => Cow::Borrowed(s.as_ref()),
            Some(other) => {
                let expected = if is_id { "an integer" } else { "a string" };
                return Err(wrong_type(column, expected, other.kind()));
            }
        };
    }
    let fields: Vec<&str> = texts[..table.columns().len()].iter().map(AsRef::as_ref).collect();
    parse_row(table, &fields)
}

/// A row element: the table's fields when it is an object of them.
enum RowObject<'a> {
    Fields([Option<Field<'a>>; 5]),
    Unexpected(String),
    NotAnObject,
}

struct RowSeed {
    table: Table,
}

impl<'de> DeserializeSeed<'de> for RowSeed {
    type Value = RowObject<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed {
    type Value = RowObject<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        let columns = self.table.columns();
        let mut fields: [Option<Field<'de>>; 5] = Default::default();
        let mut unexpected = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match columns.iter().position(|column| *column == key) {
                Some(index) if unexpected.is_none() => fields[index] = Some(map.next_value()?),
                Some(_) => {
                    map.next_value::<IgnoredAny>()?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                    // The first unexpected field is named; the rest of the object is skipped.
                    unexpected.get_or_insert_with(|| key.into_owned());
                }
            }
        }
        Ok(unexpected.map_or(RowObject::Fields(fields), RowObject::Unexpected))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RowObject::NotAnObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(RowObject::NotAnObject)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<Self::Value, E> {
        Ok(RowObject::NotAnObject)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<Self::Value, E> {
        Ok(RowObject::NotAnObject)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(RowObject::NotAnObject)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<Self::Value, E> {
        Ok(RowObject::NotAnObject)
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(RowObject::NotAnObject)
    }
}

/// A field's JSON value, held only when it is a scalar.
enum Field<'a> {
    Null,
    Bool,
    Int(i64),
    OtherNumber,
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl Field<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Field::Null => "null",
            Field::Bool => "a boolean",
            Field::Int(_) | Field::OtherNumber => "a number",
            Field::Str(_) => "a string",
            Field::Array => "an array",
            Field::Object => "an object",
        }
    }
}

impl<'de> de::Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<Self::Value, E> {
        Ok(Field::Bool)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
        Ok(Field::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Field::OtherNumber, Field::Int))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<Self::Value, E> {
        Ok(Field::OtherNumber)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Object)
    }
}

fn wrong_type(column: &str, expected: &str, got: &str) -> Violation {
    Violation::new(Reason::WrongType, format!("{column} must be {expected}, got {got}"))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn reason(value: Value) -> Reason {
        parse_row_json(Table::HiredEmployees, &value.to_string()).unwrap_err().reason
    }

    #[test]
    fn ids_as_strings_or_floats_are_wrong_types() {
        let row = |id: Value| json!({"id": id, "name": "a", "datetime": "2021-01-01T00:00:00Z", "department_id": 1, "job_id": 1});
        assert_eq!(reason(row(json!("5"))), Reason::WrongType);
        assert_eq!(reason(row(json!(5.5))), Reason::WrongType);
        assert_eq!(reason(row(json!(5.0))), Reason::WrongType);
        assert_eq!(reason(row(json!(0))), Reason::InvalidId);
        assert_eq!(reason(row(json!(3_000_000_000i64))), Reason::InvalidId);
        assert!(parse_row_json(Table::HiredEmployees, &row(json!(5)).to_string()).is_ok());
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

    #[test]
    fn a_field_holding_an_array_or_object_is_a_wrong_type_not_built() {
        let huge = format!("[{{\"id\":[{}1],\"department\":\"a\"}}]", "1,".repeat(100_000));
        let rows = parse(Table::Departments, huge.as_bytes()).unwrap();
        assert_eq!(rows.len(), 1);
        let violation = rows[0].outcome.as_ref().unwrap_err();
        assert_eq!(
            (violation.reason, violation.message.as_str()),
            (Reason::WrongType, "id must be an integer, got an array")
        );
        assert_eq!(rows[0].raw.len(), huge.len() - 2, "the row's JSON text as sent");
        assert_eq!(reason(json!({"id": {"a": [1]}, "name": "a"})), Reason::WrongType);
    }

    #[test]
    fn reading_stops_past_the_limit_and_shapes_are_named() {
        let body = |n: usize| format!("[{}]", vec![r#"{"id":1,"department":"a"}"#; n].join(","));
        assert_eq!(parse(Table::Departments, body(1000).as_bytes()).unwrap().len(), 1000);
        // Past the limit nothing after row 1001 is read: the rest may even be broken JSON.
        let over = format!("{},{{broken", &body(1001)[..body(1001).len() - 1]);
        let error = parse(Table::Departments, over.as_bytes()).unwrap_err();
        assert!(matches!(error, Error::BatchSize { got: 1001 }), "{error}");
        assert_eq!(error.to_string(), "a batch holds 1 to 1000 rows; this one holds more than 1000");
        assert!(matches!(parse(Table::Departments, b" [ ] ").unwrap_err(), Error::BatchSize { got: 0 }));
        assert!(matches!(parse(Table::Departments, br#"{"id":1}"#).unwrap_err(), Error::BatchNotArray));
        assert!(matches!(parse(Table::Departments, b"[1,").unwrap_err(), Error::BatchJson(_)));
        assert!(matches!(parse(Table::Departments, b"[1] x").unwrap_err(), Error::BatchJson(_)));
        assert!(matches!(parse(Table::Departments, b"nope").unwrap_err(), Error::BatchJson(_)));
        let rows = parse(Table::Departments, br#"[7, {"id": 2, "department": "b", "x": [1]}]"#).unwrap();
        assert_eq!(rows[0].outcome.as_ref().unwrap_err().reason, Reason::NotAnObject);
        assert_eq!(rows[1].outcome.as_ref().unwrap_err().reason, Reason::UnexpectedField);
        assert_eq!(rows[1].raw, r#"{"id": 2, "department": "b", "x": [1]}"#);
    }
}
