//! The pipeline's workflow: the S3 events that start it, the state machine, and the process
//! step's Fargate task.

use super::*;

/// The process step as an ECS task on Fargate, and what the state machine runs it with.
pub struct FargateProcess {
    /// The ECS cluster.
    pub cluster: LogicalId,
    /// The task definition.
    pub task: LogicalId,
    /// The private subnets' logical ids.
    pub subnets: Vec<String>,
    /// The security group (the functions', which the database admits).
    pub security_group: LogicalId,
    /// Files with more rows than this go to Fargate ([`StageConfig::fargate_process_rows`]).
    pub rows: u64,
}

/// The container name of the process task, which the state machine's overrides name.
pub const PROCESS_CONTAINER: &str = "process";

/// Where the API image carries the process function's binary, run by the process task.
pub const PROCESS_BINARY: &str = "/usr/local/bin/hiring-process";

/// The `hiring.Waiting` retrier: delays from 5 s growing by half up to 60 s, as many attempts as
/// fit within `wait_seconds` (the stage's workflow wait).
pub fn waiting_retrier(wait_seconds: u64) -> Value {
    const INTERVAL: f64 = 5.0;
    const BACKOFF: f64 = 1.5;
    const MAX_DELAY: f64 = 60.0;
    let (mut attempts, mut total, mut delay) = (0u64, 0.0, INTERVAL);
    while total + delay.min(MAX_DELAY) <= wait_seconds as f64 {
        total += delay.min(MAX_DELAY);
        delay *= BACKOFF;
        attempts += 1;
    }
    json!({
        "ErrorEquals": ["hiring.Waiting"], "IntervalSeconds": INTERVAL as u64, "MaxAttempts": attempts.max(1),
        "BackoffRate": BACKOFF, "MaxDelaySeconds": MAX_DELAY as u64
    })
}

/// The pipeline's Amazon States Language definition, as `Fn::Sub` text.
///
/// validate → `Loadable?` → process, or `Rejected` (nothing loadable: a data outcome, recorded
/// on the ingestion, not a failure). Retryable errors (`hiring.Retryable`, Lambda's transient
/// ones, a crashed or timed-out function) are retried with exponential backoff and jitter;
/// anything else, or retries run out, goes to `RecordFailure`: the validate function records
/// the failure on the object's ingestion (`failed`, for good, with the error and what to do),
/// then `Failed` fails the execution with the step's error, so the execution, its alarm and
/// `cargo xtask status` show the cause.
pub fn state_machine_definition(
    validate: &LogicalId,
    process: &LogicalId,
    fargate: &FargateProcess,
    workflow_wait_seconds: u64,
) -> String {
    let retry = json!([
        {
            "ErrorEquals": ["hiring.Retryable", "Lambda.ServiceException", "Lambda.AWSLambdaException",
                            "Lambda.SdkClientException"],
            "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2.0, "MaxDelaySeconds": 60, "JitterStrategy": "FULL"
        },
        {
            // A function at its reserved concurrency (the connection budget) throttles: a burst
            // of files waits its turn (20 attempts, each delay at most 60 s and jittered: up to
            // about 18 minutes, about half that on average) instead of failing.
            "ErrorEquals": ["Lambda.TooManyRequestsException"],
            "IntervalSeconds": 5, "MaxAttempts": 20, "BackoffRate": 2.0, "MaxDelaySeconds": 60, "JitterStrategy": "FULL"
        },
        {
            // "Unhandled errors in Lambda are reported as Lambda.Unknown", out-of-memory errors
            // and timeouts included (Step Functions developer guide, "Handle transient Lambda
            // service exceptions"), and Lambda does not retry a synchronous invocation itself.
            // A crashed step left nothing committed (its ingestion is found abandoned and
            // claimed again) or committed and left its Parquet file staged, which the replay
            // publishes: so it runs once more before the workflow gives up.
            "ErrorEquals": ["Lambda.Unknown"],
            "IntervalSeconds": 10, "MaxAttempts": 2, "BackoffRate": 2.0, "JitterStrategy": "FULL"
        }
    ]);
    // Validate only: a hires file waits for the departments or jobs file of its upload (each
    // file runs its own execution, in any order) for at most the stage's workflow wait, which
    // is shorter than an upload URL's life (hiring::lifecycle::Deadlines); then the workflow
    // gives up and records it. No jitter needed: one waiter per upload. Within the retrier's
    // bounds (Step Functions developer guide, "Handling errors in Step Functions workflows":
    // MaxAttempts up to 99999999, MaxDelaySeconds below 31622401) and far inside a Standard
    // workflow's one-year duration quota.
    let mut validate_retry = retry.clone();
    validate_retry.as_array_mut().expect("an array").insert(1, waiting_retrier(workflow_wait_seconds));
    let catch = json!([{ "ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure" }]);
    let subnets: Vec<String> = fargate.subnets.iter().map(|id| format!("${{{id}}}")).collect();
    let definition = json!({
        "Comment": "The hiring pipeline: validate a raw object, then process it if anything is loadable (on Fargate when it is large)",
        "StartAt": "Validate",
        "States": {
            "Validate": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": { "FunctionName": format!("${{{validate}.Arn}}"), "Payload.$": "$" },
                "ResultSelector": { "report.$": "$.Payload" },
                "ResultPath": "$.validation",
                "Retry": validate_retry,
                "Catch": catch,
                "Next": "Loadable?"
            },
            "Loadable?": {
                "Type": "Choice",
                "Choices": [{ "Variable": "$.validation.report.loadable", "BooleanEquals": true, "Next": "Engine?" }],
                "Default": "Rejected"
            },
            // Lambda stops a function at its timeout (at most 15 minutes): a file whose rows
            // would take longer than half of it (StageConfig::fargate_process_rows) runs the
            // same process code as a Fargate task, which has no time limit.
            "Engine?": {
                "Type": "Choice",
                "Choices": [{ "Variable": "$.validation.report.rows", "NumericGreaterThan": fargate.rows, "Next": "ProcessOnFargate" }],
                "Default": "Process"
            },
            // https://docs.aws.amazon.com/step-functions/latest/dg/connect-ecs.html: `.sync`
            // waits for the task to stop; its output is the task's description. The report
            // goes in as HIRING_STEP_INPUT (ECS overrides: at most 8192 characters, a report is
            // well under 1 KB).
            "ProcessOnFargate": {
                "Type": "Task",
                "Resource": "arn:aws:states:::ecs:runTask.sync",
                "Parameters": {
                    "Cluster": format!("${{{}.Arn}}", fargate.cluster),
                    "TaskDefinition": format!("${{{}}}", fargate.task),
                    "LaunchType": "FARGATE",
                    "NetworkConfiguration": { "AwsvpcConfiguration": {
                        "Subnets": subnets,
                        "SecurityGroups": [format!("${{{}.GroupId}}", fargate.security_group)],
                        "AssignPublicIp": "DISABLED"
                    } },
                    "Overrides": { "ContainerOverrides": [{
                        "Name": PROCESS_CONTAINER,
                        "Environment": [{ "Name": "HIRING_STEP_INPUT", "Value.$": "States.JsonToString($.validation.report)" }]
                    }] }
                },
                "ResultSelector": { "task.$": "$.TaskArn", "exit_code.$": "$.Containers[0].ExitCode" },
                "ResultPath": "$.process",
                // AmazonECS.Unknown: RunTask answered with failures (no capacity), the one ECS
                // error connect-ecs.html names; ECS.AmazonECSException: throttling and the like.
                // A task that stops with an error is States.TaskFailed: not retried, a load is
                // one transaction and its failure says why. A hung task stops after 12 hours.
                // A task that stopped with an error (States.TaskFailed: the process crashed, ran
                // out of memory, or its step failed) runs once more: a replay of a failed
                // ingestion answers at once, and one whose process died is claimed again.
                "Retry": [{
                    "ErrorEquals": ["AmazonECS.Unknown", "ECS.AmazonECSException"],
                    "IntervalSeconds": 10, "MaxAttempts": 3, "BackoffRate": 2.0, "JitterStrategy": "FULL"
                }, {
                    "ErrorEquals": ["States.TaskFailed"],
                    "IntervalSeconds": 30, "MaxAttempts": 1, "BackoffRate": 2.0, "JitterStrategy": "FULL"
                }],
                "TimeoutSeconds": PROCESS_TASK_TIMEOUT_SECONDS,
                "Catch": catch,
                "Next": "Processed?"
            },
            // A task whose container exited non-zero fails the state on AWS already (observed,
            // not documented); this says so in any case, with the task's reason.
            "Processed?": {
                "Type": "Choice",
                "Choices": [{ "Variable": "$.process.exit_code", "NumericEquals": 0, "Next": "Processed" }],
                "Default": "ProcessFailed"
            },
            "Processed": { "Type": "Succeed" },
            "ProcessFailed": {
                "Type": "Pass",
                "Result": {
                    "Error": "hiring.ProcessTaskFailed",
                    "Cause": "The process task exited non-zero: its logs are in the process log group (cargo xtask logs --component process)"
                },
                "ResultPath": "$.error",
                "Next": "RecordFailure"
            },
            "Rejected": {
                "Type": "Succeed",
                "Comment": "Nothing loadable: the ingestion is recorded as rejected with its rejects"
            },
            "Process": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": { "FunctionName": format!("${{{process}.Arn}}"), "Payload.$": "$.validation.report" },
                "ResultSelector": { "report.$": "$.Payload" },
                "ResultPath": "$.process",
                "Retry": retry.clone(),
                "Catch": catch,
                "End": true
            },
            // The failure is recorded on the ingestion (hiring_functions::record_failure), so no
            // ingestion stays unfinished when its execution fails; then the execution fails
            // with the step's own error whether or not that worked.
            "RecordFailure": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": { "FunctionName": format!("${{{validate}.Arn}}"), "Payload": { "failed.$": "$" } },
                "ResultPath": null,
                "Retry": retry,
                "Catch": [{ "ErrorEquals": ["States.ALL"], "ResultPath": "$.record_error", "Next": "Failed" }],
                "Next": "Failed"
            },
            "Failed": {
                "Type": "Fail",
                "ErrorPath": "$.error.Error",
                "CausePath": "$.error.Cause"
            }
        }
    });
    serde_json::to_string(&definition).expect("JSON values serialize")
}

impl StageBuilder<'_> {
    /// The process step as a Fargate task: the API image, whose
    /// [`PROCESS_BINARY`] is the process function's own binary, run once on the validation
    /// report in `HIRING_STEP_INPUT` (`hiring_functions::STEP_INPUT`), with the process
    /// function's grants, network and database settings. No time limit, and 20 GiB of task
    /// storage for the Parquet file it stages (Lambda's /tmp is 512 MB by default).
    pub(super) fn process_task(
        &mut self,
        parameters: &Parameters,
        network: &Network,
        groups: &SecurityGroups,
        zones: &Zones,
        database: &Database,
        cluster: &LogicalId,
    ) -> FargateProcess {
        let cfg = self.cfg;
        self.grant("ProcessTaskRole", Access::Read, Target::Bucket(zones.raw.clone()));
        self.grant("ProcessTaskRole", Access::Read, Target::Bucket(zones.processed.clone()));
        self.grant("ProcessTaskRole", Access::WriteDelete, Target::Bucket(zones.processed.clone()));
        for secret in database.secrets() {
            self.grant("ProcessTaskRole", Access::Read, secret);
        }
        let task_role = self.role("ProcessTaskRole", "ecs-tasks.amazonaws.com");
        let task = self.image_task(ImageTask {
            id: "ProcessTaskDefinition",
            execution_role: "ProcessExecutionRole",
            task_role,
            family: cfg.name("process"),
            cpu: PROCESS_TASK_CPU,
            memory_mb: PROCESS_TASK_MEMORY_MB,
            image: &parameters.image,
            zones,
            database,
            env: vec![
                json!({ "Name": "HIRING_DB_MAX_CONNECTIONS", "Value": FUNCTION_DB_POOL.to_string() }),
                json!({ "Name": "RUST_LOG", "Value": "info" }),
                // Its embedded-metric-format lines reach CloudWatch through awslogs too (the
                // x-amzn-logs-format header is optional: "PutLogEvents", EMF).
                json!({ "Name": "HIRING_METRICS_NAMESPACE", "Value": metrics_namespace(cfg) }),
                // The Parquet file is staged on the task's volume (see `image_task`).
                json!({ "Name": "TMPDIR", "Value": API_DATA_DIR }),
            ],
            logs: &LogicalId::new("ProcessLogGroup"),
            log_prefix: "fargate",
            container: json!({
                "Name": PROCESS_CONTAINER,
                "EntryPoint": [PROCESS_BINARY],
                // The whole task's memory (a hard limit; moto's RunTask also needs it to
                // account the task).
                "Memory": PROCESS_TASK_MEMORY_MB,
            }),
        });
        self.flow(&task, "loads (large files)", &database.id);
        let subnets = network
            .subnet_ids
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|subnet| subnet["Ref"].as_str().map(str::to_owned))
            .collect();
        FargateProcess {
            cluster: cluster.clone(),
            task,
            subnets,
            security_group: groups.functions.clone(),
            rows: cfg.fargate_process_rows(),
        }
    }

    /// The state machine: validate → loadable? → engine? → process (Lambda, or Fargate for
    /// large files); retries; a failure path.
    pub(super) fn state_machine(&mut self, functions: &Functions, fargate: &FargateProcess) -> LogicalId {
        let cfg = self.cfg;
        let sfn_logs =
            self.log_group("StateMachineLogGroup", json!(format!("/aws/vendedlogs/states/{}", cfg.name("pipeline"))));
        self.grant("StateMachineRole", Access::Read, Target::Function(functions.validate.clone()));
        self.grant("StateMachineRole", Access::Read, Target::Function(functions.process.clone()));
        self.grant(
            "StateMachineRole",
            Access::Write,
            Target::EcsTask {
                definition: fargate.task.clone(),
                cluster: cfg.name("cluster"),
                roles: vec![LogicalId::new("ProcessTaskRole"), LogicalId::new("ProcessExecutionRole")],
            },
        );
        self.grant("StateMachineRole", Access::Write, Target::LogDelivery);
        let sfn_role = self.role("StateMachineRole", "states.amazonaws.com");
        let state_machine = self.t.add(
            "StateMachine",
            Resource::new(
                ResourceType::StepFunctionsStateMachine,
                json!({
                    "StateMachineName": cfg.name("pipeline"),
                    "StateMachineType": "STANDARD",
                    "RoleArn": sfn_role.get_att("Arn"),
                    "DefinitionString": sub(state_machine_definition(
                        &functions.validate,
                        &functions.process,
                        fargate,
                        u64::from(cfg.workflow_wait_minutes) * 60,
                    )),
                    "LoggingConfiguration": {
                        "Level": "ALL",
                        "IncludeExecutionData": false,
                        "Destinations": [{ "CloudWatchLogsLogGroup": { "LogGroupArn": sfn_logs.get_att("Arn") } }]
                    },
                    "Tags": self.tags,
                }),
            ),
        );
        self.role_owners.push((sfn_role, state_machine.clone()));
        self.flow(&state_machine, "1. validate", &functions.validate);
        self.flow(&state_machine, "2. process if loadable", &functions.process);
        self.flow(&state_machine, "2. process if large", &fargate.task);
        state_machine
    }

    /// Raw bucket events start the state machine.
    pub(super) fn events(&mut self, zones: &Zones, state_machine: &LogicalId, dead_letters: &LogicalId) {
        self.grant("PipelineRuleRole", Access::Write, Target::StateMachine(state_machine.clone()));
        let rule_role = self.role("PipelineRuleRole", "events.amazonaws.com");
        let rule = self.t.add(
            "PipelineRule",
            Resource::new(
                ResourceType::EventsRule,
                json!({
                    "Description": "Starts the pipeline for every object created in the raw bucket",
                    "State": "ENABLED",
                    "EventPattern": {
                        "source": ["aws.s3"],
                        "detail-type": ["Object Created"],
                        "detail": { "bucket": { "name": [zones.raw.r#ref()] } }
                    },
                    "Targets": [{
                        "Id": "pipeline",
                        "Arn": state_machine.r#ref(),
                        "RoleArn": rule_role.get_att("Arn"),
                        "RetryPolicy": { "MaximumRetryAttempts": 10, "MaximumEventAgeInSeconds": 3600 },
                        "DeadLetterConfig": { "Arn": dead_letters.get_att("Arn") }
                    }],
                }),
            ),
        );
        // EventBridge sends to a rule's DLQ as the service, under the queue's policy, for this
        // rule only (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html#eb-dlq-perms).
        self.t.add(
            "DeadLetterQueuePolicy",
            Resource::new(
                ResourceType::SqsQueuePolicy,
                json!({
                    "Queues": [dead_letters.r#ref()],
                    "PolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [{
                            "Sid": "PipelineRuleDeadLetters",
                            "Effect": "Allow",
                            "Principal": { "Service": "events.amazonaws.com" },
                            "Action": "sqs:SendMessage",
                            "Resource": dead_letters.get_att("Arn"),
                            "Condition": { "ArnEquals": { "aws:SourceArn": rule.get_att("Arn") } }
                        }]
                    }
                }),
            ),
        );
        self.role_owners.push((rule_role, rule.clone()));
        self.flow(&zones.raw, "Object Created", &rule);
    }
}
