//! The processed zone's files: accepted rows as Parquet, with typed columns and UTC timestamps.
//!
//! Written with the `parquet` crate's own column writers (no Arrow), one row group per chunk of
//! a load, so a file of any size is written in bounded memory.

use std::fs::File;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use crate::error::{Error, Result};
use crate::table::Table;
use crate::validate::Columns;

/// The Parquet schema of a table: the data dictionary's names and types.
pub fn schema(table: Table) -> &'static str {
    match table {
        Table::Departments => "message departments { REQUIRED INT32 id; REQUIRED BYTE_ARRAY department (STRING); }",
        Table::Jobs => "message jobs { REQUIRED INT32 id; REQUIRED BYTE_ARRAY job (STRING); }",
        Table::HiredEmployees => {
            "message hired_employees {
                REQUIRED INT32 id;
                REQUIRED BYTE_ARRAY name (STRING);
                REQUIRED INT64 datetime (TIMESTAMP(MICROS, true));
                REQUIRED INT32 department_id;
                REQUIRED INT32 job_id;
            }"
        }
    }
}

/// A Parquet file being written, a row group at a time.
pub struct ParquetSink {
    table: Table,
    writer: SerializedFileWriter<File>,
    rows: i64,
}

impl ParquetSink {
    /// Starts a Parquet file of `table`'s rows in `file`.
    pub fn create(table: Table, file: File) -> Result<ParquetSink> {
        let schema = Arc::new(parse_message_type(schema(table)).map_err(parquet_error)?);
        let properties = Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
        let writer = SerializedFileWriter::new(file, schema, properties).map_err(parquet_error)?;
        Ok(ParquetSink { table, writer, rows: 0 })
    }

    /// Appends rows as one row group.
    pub fn write(&mut self, rows: &Columns) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let texts: Vec<ByteArray> = rows.texts.iter().map(|t| ByteArray::from(t.as_str())).collect();
        let micros: Vec<i64> = rows.datetimes.iter().map(|d| d.timestamp_micros()).collect();
        let mut group = self.writer.next_row_group().map_err(parquet_error)?;
        let mut index = 0;
        while let Some(mut column) = group.next_column().map_err(parquet_error)? {
            let written = match (self.table, index) {
                (_, 0) => column.typed::<Int32Type>().write_batch(&rows.ids, None, None),
                (_, 1) => column.typed::<ByteArrayType>().write_batch(&texts, None, None),
                (Table::HiredEmployees, 2) => column.typed::<Int64Type>().write_batch(&micros, None, None),
                (Table::HiredEmployees, 3) => column.typed::<Int32Type>().write_batch(&rows.department_ids, None, None),
                (Table::HiredEmployees, 4) => column.typed::<Int32Type>().write_batch(&rows.job_ids, None, None),
                _ => return Err(Error::Interrupted(format!("unexpected column {index} in {}'s schema", self.table))),
            };
            written.map_err(parquet_error)?;
            column.close().map_err(parquet_error)?;
            index += 1;
        }
        group.close().map_err(parquet_error)?;
        self.rows += rows.len() as i64;
        Ok(())
    }

    /// Writes the footer; returns the number of rows.
    pub fn finish(self) -> Result<i64> {
        self.writer.close().map_err(parquet_error)?;
        Ok(self.rows)
    }
}

fn parquet_error(error: parquet::errors::ParquetError) -> Error {
    Error::Zone(format!("could not write Parquet: {error}"))
}

/// Where a load's Parquet file waits for its commit: under `_staging/`, outside the location of
/// every table over the zone (`<table>/`), so Athena never reads a file of an uncommitted load.
/// The stack expires what a crash leaves there.
pub fn staging_key(key: &str) -> String {
    format!("{STAGING_PREFIX}{key}")
}

/// The prefix of [`staging_key`].
pub const STAGING_PREFIX: &str = "_staging/";

/// Publishes the Parquet file of a committed load that is still staged (its step died between
/// the commit and the move); nothing when it is published or has no file.
pub async fn publish_staged(zone: &crate::zones::Zone, key: &str) -> crate::error::Result<()> {
    let staging = staging_key(key);
    if zone.head(key).await?.is_none() && zone.head(&staging).await?.is_some() {
        zone.promote(&staging, key).await?;
    }
    Ok(())
}
