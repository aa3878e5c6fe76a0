//! The three tables of the data contract.

use serde::{Deserialize, Serialize};

/// One of the contract's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// `departments.csv`: id, department.
    Departments,
    /// `jobs.csv`: id, job.
    Jobs,
    /// `hired_employees.csv`: id, name, datetime, department_id, job_id.
    HiredEmployees,
}

impl Table {
    /// Every table, in dependency order: hires reference departments and jobs.
    pub const LOAD_ORDER: [Table; 3] = [Table::Departments, Table::Jobs, Table::HiredEmployees];

    /// The table's name, as in URLs, file names and the database.
    pub fn name(self) -> &'static str {
        match self {
            Table::Departments => "departments",
            Table::Jobs => "jobs",
            Table::HiredEmployees => "hired_employees",
        }
    }

    /// The table's columns, in file order (the data dictionary's field names).
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Table::Departments => &["id", "department"],
            Table::Jobs => &["id", "job"],
            Table::HiredEmployees => &["id", "name", "datetime", "department_id", "job_id"],
        }
    }

    /// Parses a table name; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::LOAD_ORDER.into_iter().find(|t| t.name() == name)
    }

    /// The lock key serialising writers of this table (`pg_advisory_xact_lock`).
    pub(crate) fn lock_key(self) -> i64 {
        // A fixed, arbitrary namespace in the high bits keeps clear of other advisory locks.
        0x4849_5249_4e47_0000 + self as i64
    }
}

impl Table {
    /// The first key of the per-id-block locks of batches (`pg_advisory_xact_lock(class, block)`).
    pub(crate) fn block_lock_class(self) -> i32 {
        0x4849_0000 + self as i32
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Table {
    type Err = crate::error::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Table::from_name(s).ok_or_else(|| crate::error::Error::UnknownTable(s.to_owned()))
    }
}
