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

/// The most bytes of a rejected row's raw text that are stored; a longer row is stored cut,
/// with its length and SHA-256, so a reject costs a bounded amount of memory and storage
/// while the row can still be identified.
pub const MAX_RAW_BYTES: usize = 4 * 1024;

/// A row's raw text as received: its first [`MAX_RAW_BYTES`], its length, and its SHA-256 when
/// it is longer than that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a> {
    /// The first bytes of the row, all of them when it is short.
    pub kept: &'a [u8],
    /// The row's length in bytes.
    pub bytes: u64,
    /// The SHA-256 of the whole row, when `kept` is not all of it.
    pub sha256: Option<[u8; 32]>,
}

impl<'a> Raw<'a> {
    /// The raw text of a row held whole.
    pub fn of(row: &'a [u8]) -> Self {
        use sha2::Digest;
        let cut = row.len() > MAX_RAW_BYTES;
        Raw {
            kept: &row[..row.len().min(MAX_RAW_BYTES)],
            bytes: row.len() as u64,
            sha256: cut.then(|| sha2::Sha256::digest(row).into()),
        }
    }
}

/// A rejected row, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The 1-based line of a file, or the 0-based index in a batch.
    pub position: i64,
    /// What rule it broke.
    pub violation: Violation,
    /// The row as received (lossy UTF-8, NUL bytes replaced), its first [`MAX_RAW_BYTES`].
    pub raw: String,
    /// The row's length in bytes as received.
    pub raw_bytes: i64,
    /// The SHA-256 of the whole row, when `raw` holds only its beginning.
    pub raw_sha256: Option<[u8; 32]>,
}

impl Reject {
    /// Builds a reject from a row's raw text, making it storable as PostgreSQL `text`.
    pub fn new(position: i64, violation: Violation, raw: Raw<'_>) -> Self {
        let text = String::from_utf8_lossy(raw.kept).replace('\0', "\u{FFFD}");
        Reject { position, violation, raw: text, raw_bytes: raw.bytes as i64, raw_sha256: raw.sha256 }
    }

    /// The SHA-256 of a cut row, in lowercase hex.
    pub fn sha256_hex(&self) -> Option<String> {
        self.raw_sha256.map(|digest| hex(&digest))
    }

    /// The memory this reject holds, roughly: what a chunk of rejects is flushed by.
    pub fn heap_bytes(&self) -> usize {
        self.raw.len() + self.violation.message.len()
    }
}

/// Bytes in lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
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
