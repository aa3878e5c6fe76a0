//! The exceptions to checkov's checks the templates keep, each with its reason.
//!
//! `cargo xtask lint` runs checkov over every synthesized template and fails on any failed
//! check. Where a check does not fit this platform, the generator writes the exception into
//! the resource's `Metadata` ([`crate::template::Resource::skip_check`]) with the reason below,
//! so a reviewer reads it next to the resource. One constant per reason: the same reason is
//! never worded twice.

/// A checkov check id and why this project does not follow it.
pub type Exception = (&'static str, &'static str);

pub const BUCKET_ACCESS_LOGS: Exception = (
    "CKV_AWS_18",
    "No S3 server access logs: only this stack's roles reach the bucket (least-privilege grants, TLS-only policy, \
     public access blocked); server access logs are best-effort and need a log bucket per stack. CloudTrail S3 data \
     events are the audit trail when one is required.",
);
pub const LOG_GROUP_CMK: Exception = (
    "CKV_AWS_158",
    "CloudWatch Logs encrypts log data at rest by default; a customer managed key (1 USD a month, a key policy for \
     logs.<region>.amazonaws.com) would add only key-level access control, which nothing here uses.",
);
pub const INTERNAL_HTTP_LISTENER: Exception = (
    "CKV_AWS_2",
    "An internal load balancer reached only from the API Gateway VPC link's security group; clients use API \
     Gateway's HTTPS endpoint, where TLS terminates. HTTPS here would need a certificate for a domain the stage \
     does not have.",
);
pub const INTERNAL_LISTENER_TLS_POLICY: Exception = (
    "CKV_AWS_103",
    "The listener is HTTP (see CKV_AWS_2): no TLS policy applies; clients reach API Gateway over HTTPS.",
);
pub const LOAD_BALANCER_ACCESS_LOGS: Exception = (
    "CKV_AWS_91",
    "Every request reaches this internal load balancer through API Gateway, whose stage writes access logs \
     (ApiAccessLogGroup); ALB access logs would duplicate them and need a log bucket with an ELB delivery policy.",
);
pub const ALARM_TOPIC_CMK: Exception = (
    "CKV_AWS_26",
    "Alarm notifications carry alarm names and states only. CloudWatch alarms cannot publish to a topic encrypted \
     with the AWS managed key alias/aws/sns, and a customer managed key costs 1 USD a month per stage.",
);
pub const DEAD_LETTER_QUEUE_CMK: Exception = (
    "CKV_AWS_27",
    "Encrypted at rest with SSE-SQS (SqsManagedSseEnabled). EventBridge delivers dead letters as \
     events.amazonaws.com, which the AWS managed key aws/sqs cannot be granted to; SSE-KMS would need a customer \
     managed key for messages that hold event envelopes only.",
);
pub const SYNCHRONOUS_FUNCTION_DLQ: Exception = (
    "CKV_AWS_116",
    "Invoked synchronously by the state machine (Retry, then Catch to RecordFailure); a Lambda dead-letter queue \
     applies to asynchronous invocations only.",
);
pub const FUNCTION_ENVIRONMENT_CMK: Exception = (
    "CKV_AWS_173",
    "No secret in the environment (CKV_AWS_45 passes): host, port, bucket URLs and secret ARNs only, values are \
     read from Secrets Manager at run time; Lambda encrypts the variables with its AWS managed key.",
);
pub const FUNCTION_CONCURRENCY: Exception = (
    "CKV_AWS_115",
    "No reserved concurrency: Lambda refuses a reservation that leaves less than 100 unreserved, and new accounts \
     start with a quota of 10, so the stage would not deploy there. Executions are bounded by the raw bucket's \
     events and the retries of the state machine, which backs off on throttling.",
);
pub const NETWORK_INTERFACE_ACTIONS: Exception = (
    "CKV_AWS_111",
    "The network-interface actions a function in a VPC needs are granted on \"*\" as in AWS's managed policy \
     AWSLambdaVPCAccessExecutionRole; Lambda checks the role for them when it creates the function, against \
     interfaces that do not exist yet (stack/src/iam.rs, Target::NetworkInterfaces).",
);
pub const DATABASE_ENHANCED_MONITORING: Exception = (
    "CKV_AWS_118",
    "RDS's standard CloudWatch metrics and the CPU and storage alarms are enough at this size; enhanced monitoring \
     needs another role and is billed as CloudWatch Logs.",
);
pub const DATABASE_IAM_AUTHENTICATION: Exception = (
    "CKV_AWS_161",
    "Clients authenticate with the RDS-managed master user secret (Secrets Manager, rotated by RDS); IAM database \
     authentication is not used.",
);
pub const DATABASE_SINGLE_AZ: Exception =
    ("CKV_AWS_157", "Single-AZ outside prod to halve the database's cost; prod runs Multi-AZ.");
pub const SECRET_CMK: Exception = (
    "CKV_AWS_149",
    "Encrypted with the AWS managed key aws/secretsmanager; only this stage's task execution role reads it, in this \
     account, so a customer managed key (1 USD a month) adds no control that is used.",
);
pub const REPOSITORY_CMK: Exception = (
    "CKV_AWS_136",
    "Encrypted at rest with AES256 (ECR's server-side encryption); a KMS key adds key management without a \
     requirement, and EncryptionConfiguration is create-only (changing it replaces the repository).",
);
