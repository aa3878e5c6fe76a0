//! A streaming CSV decoder: one record at a time, in memory bounded by the longest record,
//! whatever the file's size.
//!
//! It accepts LF or CRLF, an optional UTF-8 BOM, RFC 4180 quoting and an optional header row
//! (a first record equal to the table's column names), and keeps the exact bytes of the
//! current record so a rejected row can be stored as it was received.

use std::io::{self, Read};

use csv::ByteRecord;

use crate::reject::{Reason, Violation};
use crate::table::Table;
use crate::validate::{Row, parse_row};

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
    reader: csv::Reader<Tee<R>>,
    table: Table,
    record: ByteRecord,
    raw: (u64, u64),
    /// Counts lines over the bytes of every record. csv's own count is off by one after CRLF
    /// (it counts the `\n` as the start of the next record) and ignores bare CR line ends,
    /// which it does accept as record ends, so we count ourselves.
    lines: LineCounter,
    first: bool,
}

impl<R: Read> Decoder<R> {
    /// A decoder of `table`'s rows.
    pub fn new(table: Table, input: R) -> Self {
        let reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(Tee::new(input));
        Decoder { reader, table, record: ByteRecord::new(), raw: (0, 0), lines: LineCounter::default(), first: true }
    }

    /// The next record, or `None` at the end of the input.
    pub fn next_record(&mut self) -> io::Result<Option<Decoded>> {
        loop {
            let start = self.reader.position().byte();
            let more = self.reader.read_byte_record(&mut self.record).map_err(|e| match e.into_kind() {
                csv::ErrorKind::Io(io) => io,
                other => io::Error::new(io::ErrorKind::InvalidData, format!("{other:?}")),
            })?;
            if !more {
                return Ok(None);
            }
            let end = self.reader.position().byte();
            let start_byte = self.record.position().map_or(start, |p| p.byte());
            self.raw = (start_byte, end);
            self.reader.get_mut().forget_before(start_byte);
            let raw = self.reader.get_ref().slice(start_byte, end);
            let content = raw.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(raw.len());
            self.lines.advance(&raw[..content]);
            let line = self.lines.current;
            self.lines.advance(&raw[content..]);
            let first = std::mem::replace(&mut self.first, false);
            if first && self.is_header() {
                continue;
            }
            return Ok(Some(Decoded { line, outcome: self.check() }));
        }
    }

    /// The exact bytes of the last record returned, without its line ending.
    pub fn raw(&self) -> &[u8] {
        let raw = self.reader.get_ref().slice(self.raw.0, self.raw.1);
        let start = raw.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(raw.len());
        let raw = &raw[start..];
        let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
        raw.strip_suffix(b"\r").unwrap_or(raw)
    }

    fn is_header(&self) -> bool {
        let columns = self.table.columns();
        self.record.len() == columns.len()
            && self
                .record
                .iter()
                .zip(columns)
                .all(|(field, column)| field.trim_ascii().eq_ignore_ascii_case(column.as_bytes()))
    }

    fn check(&self) -> Result<Row, Violation> {
        let columns = self.table.columns();
        if self.record.len() != columns.len() {
            return Err(crate::validate::wrong_field_count(self.table, self.record.len()));
        }
        // At most five columns: no allocation per row.
        let mut fields = [""; 5];
        for (index, field) in self.record.iter().enumerate() {
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

/// A reader that skips a leading UTF-8 BOM and keeps the bytes it passes on until told to
/// forget them, so the decoder can recover a record's raw text.
struct Tee<R> {
    inner: R,
    kept: Vec<u8>,
    /// The stream offset of `kept[0]`.
    base: u64,
    at_start: bool,
}

impl<R> Tee<R> {
    /// Bytes kept before compaction; compaction copies at most this much once per this much.
    const COMPACT_AFTER: u64 = 256 * 1024;

    fn new(inner: R) -> Self {
        Tee { inner, kept: Vec::new(), base: 0, at_start: true }
    }

    fn slice(&self, start: u64, end: u64) -> &[u8] {
        let from = (start.saturating_sub(self.base) as usize).min(self.kept.len());
        let to = (end.saturating_sub(self.base) as usize).clamp(from, self.kept.len());
        &self.kept[from..to]
    }

    fn forget_before(&mut self, offset: u64) {
        let consumed = offset.saturating_sub(self.base);
        if consumed >= Self::COMPACT_AFTER {
            self.kept.drain(..consumed as usize);
            self.base = offset;
        }
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at_start {
            self.at_start = false;
            let mut head = [0u8; 3];
            let mut filled = 0;
            while filled < 3 {
                match self.inner.read(&mut head[filled..])? {
                    0 => break,
                    n => filled += n,
                }
            }
            let skip = if head[..filled] == [0xEF, 0xBB, 0xBF] { 3 } else { 0 };
            let pending = &head[skip..filled];
            if !pending.is_empty() {
                let n = pending.len().min(out.len());
                out[..n].copy_from_slice(&pending[..n]);
                self.kept.extend_from_slice(&pending[..n]);
                // `out` always holds at least 3 bytes in practice (csv reads through a buffer);
                // keep the rule simple and exact anyway.
                if n < pending.len() {
                    return Err(io::Error::other("read buffer smaller than 3 bytes"));
                }
                return Ok(n);
            }
            if filled == 0 {
                return Ok(0);
            }
        }
        let n = self.inner.read(out)?;
        self.kept.extend_from_slice(&out[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(table: Table, input: &[u8]) -> Vec<(i64, Result<Row, Reason>, String)> {
        let mut decoder = Decoder::new(table, input);
        let mut out = Vec::new();
        while let Some(d) = decoder.next_record().unwrap() {
            let raw = String::from_utf8_lossy(decoder.raw()).into_owned();
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
