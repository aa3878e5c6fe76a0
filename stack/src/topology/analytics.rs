//! Analytics over the processed zone: the Glue database and tables, the Athena workgroup.

use super::*;

/// The Glue tables over the processed zone: (zone folder and table name, logical id, columns
/// with their Glue types). The columns must be the Parquet files' (`hiring::processed::schema`):
/// `tests/tests/e2e/analytics.rs` reads the files and compares.
pub const ANALYTICS_TABLES: [(&str, &str, Columns); 3] = [
    (
        "hired_employees",
        "HiredEmployeesTable",
        &[("id", "int"), ("name", "string"), ("datetime", "timestamp"), ("department_id", "int"), ("job_id", "int")],
    ),
    ("departments", "DepartmentsTable", &[("id", "int"), ("department", "string")]),
    ("jobs", "JobsTable", &[("id", "int"), ("job", "string")]),
];

/// A Glue table's columns: (name, Glue type).
pub type Columns = &'static [(&'static str, &'static str)];

/// The analytics workgroup's per-query cutoff: 10 GiB scanned.
pub const ANALYTICS_BYTES_SCANNED_CUTOFF: u64 = 10 * 1024 * 1024 * 1024;

/// The stage's Glue database: `hiring_<stage>` (Athena names take underscores, not hyphens).
pub fn analytics_database(cfg: &StageConfig) -> String {
    format!("hiring_{}", cfg.stage)
}

impl StageBuilder<'_> {
    /// Analytics over the processed zone: a Glue database with one table per
    /// zone folder (Parquet, partition projection on `ingest_date`, so no crawler and no
    /// partitions to add), an Athena workgroup whose results go to a bucket of their own, and
    /// `AnalystRole`, which anyone in the account allowed to assume it uses to query: it may run
    /// queries in that workgroup, read those tables' definitions and the processed zone, and
    /// write results. See docs/analytics.md.
    pub(super) fn analytics(&mut self, zones: &Zones) {
        let cfg = self.cfg;
        let results = private_bucket(
            &mut self.t,
            "AnalyticsResultsBucket",
            cfg,
            None,
            json!({ "LifecycleConfiguration": { "Rules": [
                {
                    "Id": "expire-results",
                    "Status": "Enabled",
                    "ExpirationInDays": 30,
                    "NoncurrentVersionExpiration": { "NoncurrentDays": 1 },
                    "AbortIncompleteMultipartUpload": { "DaysAfterInitiation": 1 }
                }
            ] } }),
            self.data_keep,
        );
        let database_name = analytics_database(cfg);
        let database = self.t.add(
            "AnalyticsDatabase",
            Resource::new(
                ResourceType::GlueDatabase,
                json!({
                    "CatalogId": { "Ref": "AWS::AccountId" },
                    "DatabaseInput": {
                        "Name": database_name,
                        "Description": "The processed zone's Parquet files: every row each file load accepted"
                    }
                }),
            ),
        );
        let mut tables = Vec::new();
        for (table, logical, columns) in ANALYTICS_TABLES {
            let location = format!("s3://${{{}}}/{table}/", zones.processed);
            self.t.add(
                logical,
                Resource::new(
                    ResourceType::GlueTable,
                    json!({
                        "CatalogId": { "Ref": "AWS::AccountId" },
                        "DatabaseName": database.r#ref(),
                        "TableInput": {
                            "Name": table,
                            "TableType": "EXTERNAL_TABLE",
                            // Partition projection: Athena computes the partitions from these
                            // settings instead of reading them from the catalog ("Partition
                            // projection with Amazon Athena"); a file load writes
                            // `<table>/ingest_date=YYYY-MM-DD/<ingestion>.parquet`.
                            "Parameters": {
                                "classification": "parquet",
                                "projection.enabled": "true",
                                "projection.ingest_date.type": "date",
                                "projection.ingest_date.format": "yyyy-MM-dd",
                                "projection.ingest_date.range": "2025-01-01,NOW",
                                "projection.ingest_date.interval": "1",
                                "projection.ingest_date.interval.unit": "DAYS",
                                "storage.location.template": sub(format!("{location}ingest_date=${{!ingest_date}}/"))
                            },
                            "PartitionKeys": [{ "Name": "ingest_date", "Type": "string" }],
                            "StorageDescriptor": {
                                "Columns": columns.iter().map(|(name, kind)| json!({ "Name": name, "Type": kind })).collect::<Vec<_>>(),
                                "Location": sub(location),
                                "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                                "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
                                "SerdeInfo": { "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe" }
                            }
                        }
                    }),
                ),
            );
            tables.push(table.to_owned());
        }
        let workgroup = self.t.add(
            "AnalyticsWorkGroup",
            Resource::new(
                ResourceType::AthenaWorkGroup,
                json!({
                    "Name": cfg.name("analytics"),
                    "Description": "Queries over the processed zone",
                    "State": "ENABLED",
                    "RecursiveDeleteOption": true,
                    "WorkGroupConfiguration": {
                        "EnforceWorkGroupConfiguration": true,
                        "PublishCloudWatchMetricsEnabled": true,
                        // A runaway query stops at 10 GiB scanned (about $0.05 at $5 per TB).
                        "BytesScannedCutoffPerQuery": ANALYTICS_BYTES_SCANNED_CUTOFF,
                        "EngineVersion": { "SelectedEngineVersion": "Athena engine version 3" },
                        "ResultConfiguration": {
                            "OutputLocation": sub(format!("s3://${{{results}}}/")),
                            "EncryptionConfiguration": { "EncryptionOption": "SSE_S3" }
                        }
                    },
                    "Tags": self.tags,
                }),
            ),
        );
        self.grant("AnalystRole", Access::Read, Target::AthenaWorkGroup(workgroup.clone()));
        self.grant("AnalystRole", Access::Read, Target::GlueTables { database: database_name, tables });
        self.grant("AnalystRole", Access::Read, Target::AthenaSource(zones.processed.clone()));
        self.grant("AnalystRole", Access::Write, Target::AthenaResults(results.clone()));
        let role = LogicalId::new("AnalystRole");
        let statements = crate::iam::policy_statements(&role, &self.grants);
        self.t.add(
            "AnalystRole",
            Resource::new(
                ResourceType::IamRole,
                json!({
                    // Any principal of this account that its own policies allow to assume it.
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [{
                            "Effect": "Allow",
                            "Principal": { "AWS": sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root") },
                            "Action": "sts:AssumeRole"
                        }]
                    },
                    "Policies": [{
                        "PolicyName": "least-privilege",
                        "PolicyDocument": { "Version": "2012-10-17", "Statement": statements }
                    }],
                    "MaxSessionDuration": 3600,
                    "Tags": cfg.tag_list(),
                }),
            ),
        );
        self.flow(&workgroup, "reads", &zones.processed);
        self.flow(&workgroup, "writes results", &results);
        self.flow(&workgroup, "tables from", &database);
        let t = &mut self.t;
        t.output("AnalyticsWorkGroup", "The Athena workgroup of the analytics queries", workgroup.r#ref());
        t.output("AnalyticsDatabase", "The Glue database of the processed zone's tables", database.r#ref());
        t.output("AnalystRoleArn", "The role to assume to query the processed zone", role.get_att("Arn"));
    }
}
