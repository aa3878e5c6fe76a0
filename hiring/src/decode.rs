//! A streaming CSV decoder: one record at a time, in memory bounded by constants, whatever
//! the file or its records hold.
//!
//! It accepts LF or CRLF (or a bare CR), an optional UTF-8 BOM, RFC 4180 quoting and an
//! optional header row (a first record equal to the table's column names). It is built on
//! `csv-core`, the state machine under the `csv` crate, rather than on `csv::Reader`, which
//! grows its record to hold the longest one: a single 1 GB line was held whole (twice, with
//! its raw text). Here a record's fields are kept up to [`MAX_RECORD_BYTES`] and its raw text
//! up to [`MAX_RAW_BYTES`]; past them the record is still read to its end (so the next record
//! starts where it should) but only counted, hashed and rejected.

use std::io::{self, BufRead, BufReader, Read};

use csv_core::{ReadRecordResult, Reader as CoreReader};
use sha2::{Digest, Sha256};

use crate::reject::{MAX_RAW_BYTES, Raw, Reason, Violation};
use crate::table::Table;
use crate::validate::{MAX_TEXT_BYTES, Row, parse_row};

/// The most field bytes of one record kept for validation: five fields of at most
/// [`MAX_TEXT_BYTES`] (1 KiB) each fit many times over. A longer record is rejected as
/// `field_too_long` without being held.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The longest a quoted field may stay open: past it, the quote is taken for a stray one (the
/// rest of the file would be one field) and the file is malformed. A closed field over
/// [`MAX_RECORD_BYTES`] is one `field_too_long` reject.
pub const MAX_QUOTED_BYTES: u64 = 1024 * 1024;

/// The most fields of a record kept; more are only counted (no table has more than five).
const MAX_FIELDS: usize = 6;

/// One decoded record.
#[derive(Debug)]
pub struct Decoded {
    /// The 1-based line where the record starts.
    pub line: i64,
    /// The valid row, or the rule it breaks.
    pub outcome: Result<Row, Violation>,
}

/// Decodes the CSV rows of one table from any reader.
pub struct Decoder<R: Read> {
    input: BufReader<Bom<R>>,
    core: CoreReader,
    table: Table,
    /// The current record's fields as far as they are kept (its first `kept` bytes).
    fields: Vec<u8>,
    kept: usize,
    /// Where each kept field ends in `fields`.
    ends: [usize; MAX_FIELDS],
    /// The current record's field count and field bytes, also those not kept.
    count: usize,
    field_bytes: usize,
    /// Overwritten output for the part of a record that is not kept.
    scratch: Box<[u8]>,
    raw: RawKeeper,
    /// Counts lines over the bytes of every record, as LF, CRLF or a bare CR.
    lines: LineCounter,
    /// Whether the current record is inside a quoted field.
    quoting: Quoting,
    first: bool,
    done: bool,
}

impl<R: Read> Decoder<R> {
    /// A decoder of `table`'s rows.
    pub fn new(table: Table, input: R) -> Self {
        Decoder {
            input: BufReader::with_capacity(64 * 1024, Bom::new(input)),
            core: CoreReader::new(),
            table,
            fields: vec![0; 1024],
            kept: 0,
            ends: [0; MAX_FIELDS],
            count: 0,
            field_bytes: 0,
            scratch: vec![0; 8 * 1024].into_boxed_slice(),
            raw: RawKeeper::default(),
            lines: LineCounter::default(),
            quoting: Quoting::default(),
            first: true,
            done: false,
        }
    }

    /// The next record, or `None` at the end of the input.
    pub fn next_record(&mut self) -> io::Result<Option<Decoded>> {
        while let Some(line) = self.read_record()? {
            let first = std::mem::replace(&mut self.first, false);
            if first && self.is_header() {
                continue;
            }
            return Ok(Some(Decoded { line, outcome: self.check() }));
        }
        Ok(None)
    }

    /// The raw text of the last record returned, without its line ending: its first
    /// [`MAX_RAW_BYTES`], its length, and its SHA-256 when it is longer.
    pub fn raw(&self) -> Raw<'_> {
        self.raw.raw()
    }

    /// Reads one record; returns the line it starts on, or `None` at the end of the input.
    fn read_record(&mut self) -> io::Result<Option<i64>> {
        if self.done {
            return Ok(None);
        }
        (self.kept, self.count, self.field_bytes) = (0, 0, 0);
        self.raw.clear();
        self.quoting = Quoting::default();
        let mut ignored_ends = [0usize; 16];
        loop {
            if self.kept == self.fields.len() && self.kept < MAX_RECORD_BYTES {
                self.fields.resize((self.kept * 2).min(MAX_RECORD_BYTES), 0);
            }
            let keeping = self.kept < self.fields.len() && self.kept == self.field_bytes;
            let input = self.input.fill_buf()?;
            let output = if keeping { &mut self.fields[self.kept..] } else { &mut self.scratch[..] };
            let ends = if self.count < MAX_FIELDS { &mut self.ends[self.count..] } else { &mut ignored_ends[..] };
            let (result, nin, nout, nend) = self.core.read_record(input, output, ends);
            take(&mut self.raw, &mut self.lines, &input[..nin]);
            self.quoting.feed(&input[..nin]);
            let at_end = input.is_empty();
            self.input.consume(nin);
            // A quoted field still open past the record limit, or at the end of the input, is a
            // stray quote: everything after it would be one field. The file is malformed, not
            // one row of it.
            if self.quoting.open() && (at_end || self.raw.bytes > MAX_QUOTED_BYTES) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "line {}: a quoted field opens there and is not closed {}: a stray quote? A quote inside a \
                         field is written twice (\"\"); fix the file and send it again",
                        self.raw.line,
                        if at_end {
                            "before the file ends".to_owned()
                        } else {
                            format!("within {} KiB", MAX_RECORD_BYTES / 1024)
                        }
                    ),
                ));
            }
            if keeping {
                self.kept += nout;
            }
            self.field_bytes += nout;
            self.count += nend;
            match result {
                ReadRecordResult::InputEmpty | ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
                ReadRecordResult::Record => {
                    self.raw.finish();
                    return Ok(Some(self.raw.line));
                }
                ReadRecordResult::End => {
                    self.done = true;
                    return Ok(None);
                }
            }
        }
    }

    /// The kept fields of the current record (all of them unless it is over the limits).
    fn fields(&self) -> impl Iterator<Item = &[u8]> {
        let count = self.count.min(MAX_FIELDS);
        (0..count).map(move |i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.fields[start.min(self.kept)..self.ends[i].min(self.kept)]
        })
    }

    fn is_header(&self) -> bool {
        let columns = self.table.columns();
        self.count == columns.len()
            && self.kept == self.field_bytes
            && self
                .fields()
                .zip(columns)
                .all(|(field, column)| field.trim_ascii().eq_ignore_ascii_case(column.as_bytes()))
    }

    fn check(&self) -> Result<Row, Violation> {
        let columns = self.table.columns();
        if self.count != columns.len() {
            return Err(crate::validate::wrong_field_count(self.table, self.count));
        }
        if self.kept < self.field_bytes {
            return Err(Violation::new(
                Reason::FieldTooLong,
                format!(
                    "the row's fields hold {} bytes, more than the {MAX_RECORD_BYTES} a row may hold \
                     (a text field holds at most {MAX_TEXT_BYTES})",
                    self.field_bytes
                ),
            ));
        }
        // At most five columns: no allocation per row.
        let mut fields = [""; 5];
        for (index, field) in self.fields().enumerate() {
            fields[index] = std::str::from_utf8(field).map_err(|e| {
                Violation::new(
                    Reason::InvalidUtf8,
                    format!("{} is not valid UTF-8 (invalid byte at offset {})", columns[index], e.valid_up_to()),
                )
            })?;
        }
        parse_row(self.table, &fields[..columns.len()])
    }
}

fn is_line_end(byte: u8) -> bool {
    matches!(byte, b'\r' | b'\n')
}

/// Whether a record is inside a quoted field, over the bytes csv-core consumed (RFC 4180: a
/// quote opens a quoted field only at the field's start; inside, `""` is a quote and a single
/// quote closes it). csv-core keeps this state to itself.
#[derive(Debug, Clone, Copy)]
struct Quoting {
    field_start: bool,
    inside: bool,
    after_quote: bool,
}

impl Default for Quoting {
    fn default() -> Self {
        Quoting { field_start: true, inside: false, after_quote: false }
    }
}

impl Quoting {
    fn feed(&mut self, bytes: &[u8]) {
        // Most chunks hold no quote at all: only where the last field stands matters.
        if !self.inside && memchr::memchr(b'"', bytes).is_none() {
            if let Some(&last) = bytes.last() {
                self.field_start = matches!(last, b',' | b'\n' | b'\r');
            }
            return;
        }
        for &byte in bytes {
            if self.inside {
                if self.after_quote {
                    self.after_quote = false;
                    if byte == b'"' {
                        continue;
                    }
                    self.inside = false;
                } else {
                    self.after_quote = byte == b'"';
                    continue;
                }
            }
            match byte {
                b'"' if self.field_start => (self.inside, self.field_start) = (true, false),
                b',' | b'\n' | b'\r' => self.field_start = true,
                _ => self.field_start = false,
            }
        }
    }

    /// Inside a quoted field whose closing quote has not come.
    fn open(&self) -> bool {
        self.inside && !self.after_quote
    }
}

/// Passes the bytes csv-core consumed for the current record to the line counter and the raw
/// text: the line ends before a record (blank lines, the LF of a CRLF) are counted but are not
/// part of it, and the record's line is where its first other byte is.
fn take(raw: &mut RawKeeper, lines: &mut LineCounter, mut bytes: &[u8]) {
    if !raw.started {
        let skip = bytes.iter().position(|&b| !is_line_end(b)).unwrap_or(bytes.len());
        lines.advance(&bytes[..skip]);
        bytes = &bytes[skip..];
        if bytes.is_empty() {
            return;
        }
        raw.started = true;
        raw.line = lines.current;
    }
    lines.advance(bytes);
    raw.push(bytes);
}

/// The raw text of one record, kept up to [`MAX_RAW_BYTES`], counted, and hashed once it is
/// longer (a short record is never hashed). A record's own bytes never end with a line end
/// (a quoted field ends with its quote), so trailing CR/LF bytes are held back until more
/// bytes follow and dropped at the end of the record: they are its terminator.
#[derive(Default)]
struct RawKeeper {
    started: bool,
    line: i64,
    kept: Vec<u8>,
    bytes: u64,
    /// Trailing line-end bytes not yet known to be part of the record (at most two).
    pending: Vec<u8>,
    hasher: Option<Sha256>,
    sha256: Option<[u8; 32]>,
}

impl RawKeeper {
    fn clear(&mut self) {
        self.started = false;
        self.kept.clear();
        self.bytes = 0;
        self.pending.clear();
        self.hasher = None;
        self.sha256 = None;
    }

    fn push(&mut self, bytes: &[u8]) {
        let body = bytes.len() - bytes.iter().rev().take_while(|&&b| is_line_end(b)).count();
        if body > 0 {
            let pending = std::mem::take(&mut self.pending);
            self.append(&pending);
            self.pending = pending;
            self.pending.clear();
            self.append(&bytes[..body]);
        }
        self.pending.extend_from_slice(&bytes[body..]);
        // A terminator is at most CRLF: anything before the last two is the record's own.
        if self.pending.len() > 2 {
            let excess: Vec<u8> = self.pending.drain(..self.pending.len() - 2).collect();
            self.append(&excess);
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        let room = MAX_RAW_BYTES.saturating_sub(self.kept.len()).min(bytes.len());
        let (head, tail) = bytes.split_at(room);
        self.kept.extend_from_slice(head);
        if !tail.is_empty() {
            let kept = &self.kept;
            self.hasher.get_or_insert_with(|| Sha256::new_with_prefix(kept)).update(tail);
        }
    }

    fn finish(&mut self) {
        self.pending.clear();
        self.sha256 = self.hasher.take().map(|hasher| hasher.finalize().into());
    }

    fn raw(&self) -> Raw<'_> {
        Raw { kept: &self.kept, bytes: self.bytes, sha256: self.sha256 }
    }
}

/// Counts line breaks: LF, CRLF or a bare CR, each once, across consecutive slices.
#[derive(Debug)]
struct LineCounter {
    /// The 1-based line the next byte is on.
    current: i64,
    after_cr: bool,
}

impl Default for LineCounter {
    fn default() -> Self {
        LineCounter { current: 1, after_cr: false }
    }
}

impl LineCounter {
    fn advance(&mut self, bytes: &[u8]) {
        let Some(&last) = bytes.last() else { return };
        for at in memchr::memchr2_iter(b'\r', b'\n', bytes) {
            // A `\n` right after a `\r` ends the same line the `\r` already counted.
            let after_cr = if at == 0 { self.after_cr } else { bytes[at - 1] == b'\r' };
            if bytes[at] == b'\r' || !after_cr {
                self.current += 1;
            }
        }
        self.after_cr = last == b'\r';
    }
}

/// A reader that skips a leading UTF-8 BOM.
struct Bom<R> {
    inner: R,
    /// The first bytes read (at most three), and how many of them are still to be served.
    head: [u8; 3],
    served: usize,
    filled: usize,
    started: bool,
}

impl<R> Bom<R> {
    fn new(inner: R) -> Self {
        Bom { inner, head: [0; 3], served: 0, filled: 0, started: false }
    }
}

impl<R: Read> Read for Bom<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if !self.started {
            while self.filled < 3 {
                match self.inner.read(&mut self.head[self.filled..])? {
                    0 => break,
                    n => self.filled += n,
                }
            }
            self.started = true;
            if self.head[..self.filled] == [0xEF, 0xBB, 0xBF] {
                self.served = 3;
            }
        }
        if self.served < self.filled {
            let n = (self.filled - self.served).min(out.len());
            out[..n].copy_from_slice(&self.head[self.served..self.served + n]);
            self.served += n;
            return Ok(n);
        }
        self.inner.read(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(table: Table, input: &[u8]) -> Vec<(i64, Result<Row, Reason>, String)> {
        let mut decoder = Decoder::new(table, input);
        let mut out = Vec::new();
        while let Some(d) = decoder.next_record().unwrap() {
            let raw = String::from_utf8_lossy(decoder.raw().kept).into_owned();
            out.push((d.line, d.outcome.map_err(|v| v.reason), raw));
        }
        out
    }

    #[test]
    fn bom_crlf_header_and_quotes_are_understood() {
        let input = "\u{feff}id,department\r\n1,\"Sales, \"\"EMEA\"\"\"\r\n2,Support\r\n";
        let rows = decode(Table::Departments, input.as_bytes());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, 2, "{rows:?}");
        assert_eq!(rows[0].1, Ok(Row::Department { id: 1, department: "Sales, \"EMEA\"".into() }));
        assert_eq!(rows[0].2, "1,\"Sales, \"\"EMEA\"\"\"");
        assert_eq!(rows[1].2, "2,Support");
    }

    #[test]
    fn raw_text_survives_compaction_in_long_files() {
        let mut input = String::new();
        for id in 1..=50_000 {
            input.push_str(&format!("{id},Job number {id}\n"));
        }
        input.push_str("x,broken\n");
        let rows = decode(Table::Jobs, input.as_bytes());
        assert_eq!(rows.len(), 50_001);
        assert_eq!(rows[49_999].2, "50000,Job number 50000");
        assert_eq!(rows[50_000], (50_001, Err(Reason::InvalidId), "x,broken".into()));
    }

    #[test]
    fn lines_are_counted_across_blank_lines_crlf_and_quoted_newlines() {
        let rows = decode(Table::Jobs, b"1,a\r\n\r\n2,\"b\r\nc\"\r\n3,d\n\n\n4,e");
        let lines: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(lines, [1, 3, 5, 8]);
        assert_eq!(rows[1].2, "2,\"b\r\nc\"");
        let bare_cr = decode(Table::Jobs, b"1,a\r2,b\r\r3,c");
        assert_eq!(bare_cr.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 4]);
    }

    #[test]
    fn invalid_utf8_is_a_reject_not_an_error() {
        let rows = decode(Table::Jobs, b"1,caf\xe9\n2,ok\n");
        assert_eq!(rows[0].1, Err(Reason::InvalidUtf8));
        assert!(rows[1].1.is_ok());
    }

    #[test]
    fn an_empty_input_has_no_rows() {
        assert!(decode(Table::Jobs, b"").is_empty());
        assert!(decode(Table::Jobs, b"\xef\xbb\xbf").is_empty());
    }
}
