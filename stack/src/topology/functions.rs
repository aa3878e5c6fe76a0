//! The Lambda functions (validate, process, backup), their dead letters and the backup schedule.

use super::*;

/// The Lambda functions: logical id prefix, binary (package `hiring-fn-<binary>`), description.
pub const FUNCTIONS: [(&str, &str, &str); 3] = [
    ("Validate", "validate", "Checks a raw CSV object, stores its rejects, records the validation report"),
    ("Process", "process", "Loads a validated object into PostgreSQL and writes it to the processed zone as Parquet"),
    ("Backup", "backup", "Backs up the three tables as one set, read in one snapshot, to the backups zone as AVRO"),
];

/// The template parameter holding a function's code key (`functions/<name>/<sha256>.zip`).
pub fn code_key_parameter(prefix: &str) -> String {
    format!("{prefix}CodeKey")
}

/// The pipeline functions.
pub(super) struct Functions {
    pub(super) validate: LogicalId,
    pub(super) process: LogicalId,
    pub(super) backup: LogicalId,
}

impl StageBuilder<'_> {
    /// Pipeline functions.
    pub(super) fn functions(
        &mut self,
        parameters: &Parameters,
        network: &Network,
        groups: &SecurityGroups,
        zones: &Zones,
        database: &Database,
        dead_letters: &LogicalId,
    ) -> Functions {
        let cfg = self.cfg;
        let mut functions = Vec::new();
        for ((prefix, binary, description), code_key) in FUNCTIONS.into_iter().zip(&parameters.code_keys) {
            let name = cfg.name(binary);
            let logs = self.log_group(&format!("{prefix}LogGroup"), json!(format!("/aws/lambda/{name}")));
            let role_id = format!("{prefix}Role");
            self.grant(&role_id, Access::Write, Target::LogGroup(logs.clone()));
            for secret in database.secrets() {
                self.grant(&role_id, Access::Read, secret);
            }
            self.grant(&role_id, Access::Write, Target::NetworkInterfaces);
            match binary {
                // Each removes its partial output when recording it fails (hiring::pipeline,
                // hiring::load), which needs s3:DeleteObject.
                "validate" => {
                    self.grant(&role_id, Access::Read, Target::Bucket(zones.raw.clone()));
                    self.grant(&role_id, Access::WriteDelete, Target::Bucket(zones.rejects.clone()));
                }
                "process" => {
                    self.grant(&role_id, Access::Read, Target::Bucket(zones.raw.clone()));
                    // A load's Parquet file is staged, then moved to its key once the load
                    // commits (hiring::processed::staging_key): CopyObject reads the source
                    // (s3:GetObject) and writes the target (s3:PutObject), and the staged copy
                    // is deleted ("CopyObject", Amazon S3 API Reference). s3:ListBucket lets a
                    // replay's HeadObject of a file not yet moved answer 404, not 403
                    // ("HeadObject", Amazon S3 API Reference).
                    self.grant(&role_id, Access::Read, Target::Bucket(zones.processed.clone()));
                    self.grant(&role_id, Access::WriteDelete, Target::Bucket(zones.processed.clone()));
                }
                _ => {
                    self.grant(&role_id, Access::ReadWrite, Target::Bucket(zones.backups.clone()));
                    // Scheduler invokes it asynchronously: a run that fails after Lambda's own
                    // retries goes to the dead-letter queue, sent with the function's role.
                    self.grant(&role_id, Access::Write, Target::Queue(dead_letters.clone()));
                }
            }
            let role = self.role(&role_id, "lambda.amazonaws.com");
            self.t.skip_check(&role, checks::NETWORK_INTERFACE_ACTIONS);
            // validate and process are the state machine's synchronous tasks; backup is not.
            let dead_letter_config = match binary {
                "backup" => json!({ "TargetArn": dead_letters.get_att("Arn") }),
                _ => Value::Null,
            };
            let mut env: serde_json::Map<String, Value> = zones.urls.iter().cloned().collect();
            env.extend(database.client_env());
            env.insert("HIRING_DB_MAX_CONNECTIONS".into(), json!(FUNCTION_DB_POOL.to_string()));
            env.insert("RUST_LOG".into(), json!("info"));
            env.insert("HIRING_METRICS_NAMESPACE".into(), json!(metrics_namespace(cfg)));
            let function = self.t.add(
                &format!("{prefix}Function"),
                Resource::new(
                    ResourceType::LambdaFunction,
                    json!({
                        "FunctionName": name,
                        "Description": description,
                        "Runtime": "provided.al2023",
                        "Handler": "bootstrap",
                        "Architectures": [cfg.architecture.lambda()],
                        "MemorySize": cfg.lambda_memory_mb,
                        "Timeout": cfg.lambda_timeout_seconds,
                        "Code": { "S3Bucket": assets_bucket_name(), "S3Key": code_key.r#ref() },
                        "Role": role.get_att("Arn"),
                        "Environment": { "Variables": env },
                        "VpcConfig": {
                            "SubnetIds": network.subnet_ids,
                            "SecurityGroupIds": [groups.functions.get_att("GroupId")]
                        },
                        "LoggingConfig": { "LogGroup": logs.r#ref(), "LogFormat": "JSON" },
                        // The function's share of the database's connections (`budget`); the
                        // state machine retries a throttled invocation
                        // (Lambda.TooManyRequestsException).
                        "ReservedConcurrentExecutions": cfg.function_concurrency.of(binary),
                        "Tags": self.tags,
                    }),
                )
                .skip_check(checks::FUNCTION_ENVIRONMENT_CMK),
            );
            if dead_letter_config.is_null() {
                self.t.skip_check(&function, checks::SYNCHRONOUS_FUNCTION_DLQ);
            } else if let Some(resource) = self.t.resources.get_mut(&function) {
                resource.properties["DeadLetterConfig"] = dead_letter_config;
            }
            self.role_owners.push((role, function.clone()));
            functions.push(function);
        }
        let [validate, process, backup] = [functions[0].clone(), functions[1].clone(), functions[2].clone()];
        self.flow(&validate, "connects", &database.id);
        self.flow(&process, "loads", &database.id);
        self.flow(&backup, "dumps", &database.id);
        Functions { validate, process, backup }
    }

    /// The queue that keeps what EventBridge and Scheduler failed to deliver (after their
    /// retries), so a lost "Object Created" or a missed backup is visible and can be replayed.
    /// https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html,
    /// https://docs.aws.amazon.com/scheduler/latest/UserGuide/configuring-schedule-dlq.html
    pub(super) fn dead_letters(&mut self) -> LogicalId {
        let cfg = self.cfg;
        self.t.add(
            "DeadLetterQueue",
            Resource::new(
                ResourceType::SqsQueue,
                json!({
                    "QueueName": cfg.name("dead-letters"),
                    "MessageRetentionPeriod": 1_209_600,
                    "SqsManagedSseEnabled": true,
                    "Tags": self.tags,
                }),
            )
            .skip_check(checks::DEAD_LETTER_QUEUE_CMK),
        )
    }

    /// Nightly backups.
    pub(super) fn backups(&mut self, functions: &Functions, dead_letters: &LogicalId) {
        let cfg = self.cfg;
        self.grant("BackupScheduleRole", Access::Read, Target::Function(functions.backup.clone()));
        // Scheduler sends to the DLQ with the schedule's role.
        self.grant("BackupScheduleRole", Access::Write, Target::Queue(dead_letters.clone()));
        let schedule_role = self.role("BackupScheduleRole", "scheduler.amazonaws.com");
        let schedule = self.t.add(
            "BackupSchedule",
            Resource::new(
                ResourceType::SchedulerSchedule,
                json!({
                    "Name": cfg.name("backup"),
                    "Description": "Backs up the three tables as one set (one snapshot) to the backups bucket as AVRO",
                    "ScheduleExpression": cfg.backup_schedule,
                    "ScheduleExpressionTimezone": "UTC",
                    "FlexibleTimeWindow": { "Mode": "OFF" },
                    "State": "ENABLED",
                    "Target": {
                        "Arn": functions.backup.get_att("Arn"),
                        "RoleArn": schedule_role.get_att("Arn"),
                        "Input": "{\"source\":\"schedule\"}",
                        "RetryPolicy": { "MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 3600 },
                        "DeadLetterConfig": { "Arn": dead_letters.get_att("Arn") }
                    },
                }),
            ),
        );
        self.role_owners.push((schedule_role, schedule));
    }
}
