//! Rejected rows: not inserted, but kept with a stable reason code, a message and the raw text.

use serde::Serialize;

/// Why a row was rejected. The `snake_case` names are stable codes: clients may match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The row does not have exactly the table's number of fields.
    WrongFieldCount,
    /// A required field is absent, null, or empty after trimming.
    MissingField,
    /// An id is not an integer, does not fit PostgreSQL `integer`, or is not > 0.
    InvalidId,
    /// `datetime` is not an RFC 3339 / ISO-8601 date and time.
    InvalidDatetime,
    /// `department_id` does not exist in `departments` when the row is loaded.
    UnknownDepartment,
    /// `job_id` does not exist in `jobs` when the row is loaded.
    UnknownJob,
    /// The id was already accepted earlier in the same file or batch.
    DuplicateId,
    /// The row is not valid UTF-8.
    InvalidUtf8,
    /// A text field holds a NUL character, which PostgreSQL text cannot store.
    InvalidCharacter,
    /// A text field is longer than [`crate::validate::MAX_TEXT_BYTES`].
    FieldTooLong,
    /// A JSON field has the wrong type (an id given as a string or a float, a name as a number…).
    WrongType,
    /// A JSON row has a field the table does not have.
    UnexpectedField,
    /// A JSON batch element is not an object.
    NotAnObject,
}

impl Reason {
    /// The stable code, as stored and served.
    pub fn code(self) -> &'static str {
        match self {
            Reason::WrongFieldCount => "wrong_field_count",
            Reason::MissingField => "missing_field",
            Reason::InvalidId => "invalid_id",
            Reason::InvalidDatetime => "invalid_datetime",
            Reason::UnknownDepartment => "unknown_department",
            Reason::UnknownJob => "unknown_job",
            Reason::DuplicateId => "duplicate_id",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::InvalidCharacter => "invalid_character",
            Reason::FieldTooLong => "field_too_long",
            Reason::WrongType => "wrong_type",
            Reason::UnexpectedField => "unexpected_field",
            Reason::NotAnObject => "not_an_object",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A rule broken by a row: the reason and a human message naming the field and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The stable reason code.
    pub reason: Reason,
    /// What is wrong, for a person.
    pub message: String,
}

impl Violation {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        Violation { reason, message: message.into() }
    }
}

/// The largest raw text kept for one reject; longer rows are cut (the cut is marked).
pub const MAX_RAW_BYTES: usize = 64 * 1024;

/// A rejected row, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The 1-based line of a file, or the 0-based index in a batch.
    pub position: i64,
    /// What rule it broke.
    pub violation: Violation,
    /// The row as received (lossy UTF-8, NUL bytes replaced, cut at [`MAX_RAW_BYTES`]).
    pub raw: String,
}

impl Reject {
    /// Builds a reject from raw bytes, making them storable as PostgreSQL `text`.
    pub fn new(position: i64, violation: Violation, raw: &[u8]) -> Self {
        let kept = &raw[..raw.len().min(MAX_RAW_BYTES)];
        let mut text = String::from_utf8_lossy(kept).replace('\0', "\u{FFFD}");
        if raw.len() > MAX_RAW_BYTES {
            text.push_str(&format!("…[{} more bytes not kept]", raw.len() - MAX_RAW_BYTES));
        }
        Reject { position, violation, raw: text }
    }
}

/// `text` as PostgreSQL can store it: NUL characters, which `text` cannot hold, become U+2400
/// (␀, the symbol for NUL), so the rest is kept as received.
pub fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\u{2400}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}
