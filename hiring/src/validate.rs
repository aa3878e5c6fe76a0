//! The rules of the data contract, applied field by field and row by row.
//!
//! [`parse_row`] checks what a row says on its own (field count, required fields, ids,
//! datetime, lengths); [`Context`] checks what depends on other rows (duplicate ids in the
//! same load, department and job ids that must exist).

use chrono::{DateTime, Datelike, NaiveDateTime, Timelike, Utc};
use roaring::RoaringBitmap;

use crate::reject::{Reason, Violation};
use crate::table::Table;

/// The longest text field accepted, in bytes after trimming.
pub const MAX_TEXT_BYTES: usize = 1024;

/// A hire, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hire {
    /// The employee id (> 0).
    pub id: i32,
    /// The employee's name, trimmed.
    pub name: String,
    /// The hire time, in UTC.
    pub datetime: DateTime<Utc>,
    /// The department, which must exist.
    pub department_id: i32,
    /// The job, which must exist.
    pub job_id: i32,
}

/// A valid row of one of the tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    /// A row of `departments`.
    Department {
        /// The id (> 0).
        id: i32,
        /// The department's name, trimmed.
        department: String,
    },
    /// A row of `jobs`.
    Job {
        /// The id (> 0).
        id: i32,
        /// The job's name, trimmed.
        job: String,
    },
    /// A row of `hired_employees`.
    Hire(Hire),
}

impl Row {
    /// The row's id.
    pub fn id(&self) -> i32 {
        match self {
            Row::Department { id, .. } | Row::Job { id, .. } => *id,
            Row::Hire(hire) => hire.id,
        }
    }
}

/// Checks one row's fields (already UTF-8) against the table's rules.
pub fn parse_row(table: Table, fields: &[&str]) -> Result<Row, Violation> {
    let columns = table.columns();
    if fields.len() != columns.len() {
        return Err(Violation::new(
            Reason::WrongFieldCount,
            format!("expected {} fields ({}), found {}", columns.len(), columns.join(","), fields.len()),
        ));
    }
    // Report the first missing field before any malformed one, so the reason of a row does
    // not depend on the order of its columns.
    if let Some(position) = fields.iter().position(|f| f.trim().is_empty()) {
        return Err(missing(columns[position]));
    }
    Ok(match table {
        Table::Departments => {
            Row::Department { id: parse_id("id", fields[0])?, department: parse_text("department", fields[1])? }
        }
        Table::Jobs => Row::Job { id: parse_id("id", fields[0])?, job: parse_text("job", fields[1])? },
        Table::HiredEmployees => Row::Hire(Hire {
            id: parse_id("id", fields[0])?,
            name: parse_text("name", fields[1])?,
            datetime: parse_datetime(fields[2])?,
            department_id: parse_id("department_id", fields[3])?,
            job_id: parse_id("job_id", fields[4])?,
        }),
    })
}

pub(crate) fn wrong_field_count(table: Table, found: usize) -> Violation {
    let columns = table.columns();
    Violation::new(
        Reason::WrongFieldCount,
        format!("expected {} fields ({}), found {found}", columns.len(), columns.join(",")),
    )
}

pub(crate) fn missing(column: &str) -> Violation {
    Violation::new(Reason::MissingField, format!("{column} is required but empty"))
}

/// Parses an id: an integer that fits PostgreSQL `integer` and is > 0.
pub fn parse_id(column: &str, text: &str) -> Result<i32, Violation> {
    let text = text.trim();
    if text.is_empty() {
        return Err(missing(column));
    }
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Violation::new(Reason::InvalidId, format!("{column} `{}` is not an integer", shorten(text))));
    }
    match text.parse::<i32>() {
        Ok(id) if id > 0 => Ok(id),
        Ok(id) => Err(Violation::new(Reason::InvalidId, format!("{column} {id} must be greater than 0"))),
        Err(_) => Err(Violation::new(
            Reason::InvalidId,
            format!("{column} {} does not fit a 32-bit integer (1..=2147483647)", shorten(text)),
        )),
    }
}

/// Parses the hire time: RFC 3339 / ISO-8601; an offset converts to UTC, no offset is UTC.
///
/// The contract, applied here once so storage, rollups, Parquet and AVRO all see the same
/// instant: UTC times from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z, to the
/// microsecond. Digits past the sixth are dropped (truncated, never rounded, so a time never
/// moves to the next second, day or year, and every load path stores the same value). A leap
/// second (`:60`) is refused: PostgreSQL, Parquet and AVRO have none, and PostgreSQL would
/// store the next minute while the rollup counted the old one.
pub fn parse_datetime(text: &str) -> Result<DateTime<Utc>, Violation> {
    let text = text.trim();
    if text.is_empty() {
        return Err(missing("datetime"));
    }
    if let Some(datetime) = parse_canonical_utc(text) {
        return Ok(datetime);
    }
    let parsed = DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map(|dt| dt.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
                .map(|naive| naive.and_utc())
        });
    match parsed {
        // chrono keeps a leap second as a nanosecond count of one second or more.
        Ok(datetime) if datetime.nanosecond() >= 1_000_000_000 => Err(Violation::new(
            Reason::InvalidDatetime,
            format!(
                "datetime `{}` is a leap second (:60), which cannot be stored: send :59.999999 or the next minute",
                shorten(text)
            ),
        )),
        // Four-digit years only: RFC 3339 has no others, and PostgreSQL's range is narrower
        // than chrono's.
        Ok(datetime) if (1..=9999).contains(&datetime.year()) => {
            Ok(datetime.with_nanosecond(datetime.nanosecond() / 1_000 * 1_000).unwrap_or(datetime))
        }
        _ => Err(Violation::new(
            Reason::InvalidDatetime,
            format!("datetime `{}` is not an ISO-8601 date and time such as 2021-07-27T16:02:08Z", shorten(text)),
        )),
    }
}

/// The fast path for the usual form, `YYYY-MM-DDTHH:MM:SSZ`; `None` sends anything else (and
/// impossible dates) through the general parser.
fn parse_canonical_utc(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let date = chrono::NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)?;
    let datetime = date.and_hms_opt(number(11..13)?, number(14..16)?, number(17..19)?)?;
    (datetime.year() >= 1).then(|| datetime.and_utc())
}

/// Parses a text field: trimmed, required, at most [`MAX_TEXT_BYTES`].
pub fn parse_text(column: &str, text: &str) -> Result<String, Violation> {
    let text = text.trim();
    if text.is_empty() {
        return Err(missing(column));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(Violation::new(
            Reason::FieldTooLong,
            format!("{column} is {} bytes long; the limit is {MAX_TEXT_BYTES}", text.len()),
        ));
    }
    if text.contains('\0') {
        return Err(Violation::new(Reason::InvalidCharacter, format!("{column} contains a NUL character")));
    }
    Ok(text.to_owned())
}

/// Cuts a value quoted in a message to a readable length.
fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The rules that depend on other rows: ids seen earlier in this load, and the department and
/// job ids that exist when the load runs.
#[derive(Debug, Default)]
pub struct Context {
    seen: RoaringBitmap,
    departments: RoaringBitmap,
    jobs: RoaringBitmap,
}

impl Context {
    /// A context for a load whose hires may reference these department and job ids.
    pub fn new(departments: RoaringBitmap, jobs: RoaringBitmap) -> Self {
        Context { seen: RoaringBitmap::new(), departments, jobs }
    }

    /// Accepts the row, or says which rule it breaks. Only accepted ids count as seen.
    pub fn accept(&mut self, row: &Row) -> Result<(), Violation> {
        if let Row::Hire(hire) = row {
            if !self.departments.contains(hire.department_id as u32) {
                return Err(Violation::new(
                    Reason::UnknownDepartment,
                    format!("department_id {} does not exist in departments", hire.department_id),
                ));
            }
            if !self.jobs.contains(hire.job_id as u32) {
                return Err(Violation::new(
                    Reason::UnknownJob,
                    format!("job_id {} does not exist in jobs", hire.job_id),
                ));
            }
        }
        // Ids are > 0, so they fit u32.
        if !self.seen.insert(row.id() as u32) {
            return Err(Violation::new(
                Reason::DuplicateId,
                format!("id {} was already accepted earlier in this load", row.id()),
            ));
        }
        Ok(())
    }
}

/// Valid rows gathered column by column, ready to be bound as PostgreSQL arrays.
#[derive(Debug, Default)]
pub struct Columns {
    /// The ids.
    pub ids: Vec<i32>,
    /// The text column: department, job or name.
    pub texts: Vec<String>,
    /// Hires only: the hire times.
    pub datetimes: Vec<DateTime<Utc>>,
    /// Hires only: the departments.
    pub department_ids: Vec<i32>,
    /// Hires only: the jobs.
    pub job_ids: Vec<i32>,
}

impl Columns {
    /// An empty set of columns with room for `capacity` rows.
    pub fn with_capacity(capacity: usize) -> Self {
        Columns { ids: Vec::with_capacity(capacity), texts: Vec::with_capacity(capacity), ..Default::default() }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Row) {
        match row {
            Row::Department { id, department: text } | Row::Job { id, job: text } => {
                self.ids.push(id);
                self.texts.push(text);
            }
            Row::Hire(hire) => {
                self.ids.push(hire.id);
                self.texts.push(hire.name);
                self.datetimes.push(hire.datetime);
                self.department_ids.push(hire.department_id);
                self.job_ids.push(hire.job_id);
            }
        }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there is no row.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(table: Table, fields: &[&str]) -> Reason {
        parse_row(table, fields).unwrap_err().reason
    }

    #[test]
    fn a_valid_hire_is_parsed_trimmed_and_in_utc() {
        let row =
            parse_row(Table::HiredEmployees, &[" 4535 ", " Marcelo Gonzalez ", "2021-07-27T16:02:08-03:00", "1", "2"])
                .unwrap();
        let Row::Hire(hire) = row else { panic!("not a hire") };
        assert_eq!(hire.id, 4535);
        assert_eq!(hire.name, "Marcelo Gonzalez");
        assert_eq!(hire.datetime.to_rfc3339(), "2021-07-27T19:02:08+00:00");
    }

    #[test]
    fn a_datetime_without_offset_is_utc() {
        assert_eq!(parse_datetime("2021-07-27T16:02:08").unwrap().to_rfc3339(), "2021-07-27T16:02:08+00:00");
        assert_eq!(parse_datetime("2021-07-27 16:02:08.5").unwrap().to_rfc3339(), "2021-07-27T16:02:08.500+00:00");
    }

    #[test]
    fn the_fast_datetime_path_agrees_with_the_general_one() {
        for text in ["2021-07-27T16:02:08Z", "2020-02-29T23:59:59Z", "0001-01-01T00:00:00Z"] {
            assert_eq!(parse_canonical_utc(text), Some(DateTime::parse_from_rfc3339(text).unwrap().to_utc()), "{text}");
        }
        for text in ["2021-02-29T00:00:00Z", "2021-07-27T24:00:00Z", "2021-07-27T16:02:60Z", "0000-01-01T00:00:00Z"] {
            assert_eq!(parse_canonical_utc(text), None, "{text}");
        }
        assert_eq!(parse_datetime("2021-02-29T00:00:00Z").unwrap_err().reason, Reason::InvalidDatetime);
    }

    #[test]
    fn ids_must_be_positive_32_bit_integers() {
        for bad in ["0", "-1", "2147483648", "12.5", "1e3", "abc", "99999999999999999999999"] {
            assert_eq!(parse_id("id", bad).unwrap_err().reason, Reason::InvalidId, "{bad}");
        }
        assert_eq!(parse_id("id", "2147483647").unwrap(), i32::MAX);
        assert_eq!(parse_id("id", "+7").unwrap(), 7);
    }

    #[test]
    fn each_row_rule_has_its_reason() {
        let t = Table::HiredEmployees;
        assert_eq!(reason(t, &["1", "a", "2021-01-01T00:00:00Z", "1"]), Reason::WrongFieldCount);
        assert_eq!(reason(t, &["1", "  ", "2021-01-01T00:00:00Z", "1", "1"]), Reason::MissingField);
        assert_eq!(reason(t, &["x", "a", "2021-01-01T00:00:00Z", "1", "1"]), Reason::InvalidId);
        assert_eq!(reason(t, &["1", "a", "2021-13-01T00:00:00Z", "1", "1"]), Reason::InvalidDatetime);
        assert_eq!(reason(t, &["1", "a", "yesterday", "1", "1"]), Reason::InvalidDatetime);
        assert_eq!(
            reason(t, &["1", &"n".repeat(MAX_TEXT_BYTES + 1), "2021-01-01T00:00:00Z", "1", "1"]),
            Reason::FieldTooLong
        );
    }

    #[test]
    fn the_context_rejects_unknown_references_and_duplicates() {
        let mut context = Context::new([1u32].into_iter().collect(), [2u32].into_iter().collect());
        let hire = |id, department_id, job_id| {
            Row::Hire(Hire { id, name: "a".into(), datetime: Utc::now(), department_id, job_id })
        };
        assert_eq!(context.accept(&hire(1, 9, 2)).unwrap_err().reason, Reason::UnknownDepartment);
        assert_eq!(context.accept(&hire(1, 1, 9)).unwrap_err().reason, Reason::UnknownJob);
        context.accept(&hire(1, 1, 2)).unwrap();
        assert_eq!(context.accept(&hire(1, 1, 2)).unwrap_err().reason, Reason::DuplicateId);
    }
}
