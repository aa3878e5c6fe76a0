//! The exceptions to checkov's checks the templates keep, each with its reason.
//!
//! `cargo xtask lint` runs checkov over every synthesized template and fails on any failed
//! check. Where a check does not fit this platform, the generator writes the exception into
//! the resource's `Metadata` ([`crate::template::Resource::skip_check`]) with the reason below,
//! so a reviewer reads it next to the resource. One constant per reason: the same reason is
//! never worded twice. The reasons are one short sentence each: they are repeated on every
//! resource they apply to, and a template sent inline must stay under CloudFormation's
//! 51,200 bytes (`stack/tests/synth.rs`).

/// A checkov check id and why this project does not follow it.
pub type Exception = (&'static str, &'static str);

pub const BUCKET_ACCESS_LOGS: Exception = (
    "CKV_AWS_18",
    "No server access logs: only this stack's roles reach the bucket (TLS only, public access blocked); CloudTrail data events are the audit trail if one is needed.",
);
pub const LOG_GROUP_CMK: Exception = (
    "CKV_AWS_158",
    "Encrypted at rest by CloudWatch Logs; a customer managed key would add key-level access control nothing here uses.",
);
pub const INTERNAL_HTTP_LISTENER: Exception = (
    "CKV_AWS_2",
    "Internal ALB reached only from the API Gateway VPC link; clients use API Gateway's HTTPS endpoint, where TLS ends.",
);
pub const INTERNAL_LISTENER_TLS_POLICY: Exception =
    ("CKV_AWS_103", "HTTP listener (see CKV_AWS_2): no TLS policy applies.");
pub const LOAD_BALANCER_ACCESS_LOGS: Exception =
    ("CKV_AWS_91", "API Gateway's stage logs every request that reaches this internal ALB (ApiAccessLogGroup).");
pub const ALARM_TOPIC_CMK: Exception = (
    "CKV_AWS_26",
    "Alarm names and states only; CloudWatch alarms cannot publish to a topic under the AWS managed SNS key.",
);
pub const DEAD_LETTER_QUEUE_CMK: Exception = (
    "CKV_AWS_27",
    "SSE-SQS: EventBridge cannot be granted the AWS managed key aws/sqs; the messages are event envelopes.",
);
pub const SYNCHRONOUS_FUNCTION_DLQ: Exception = (
    "CKV_AWS_116",
    "Invoked synchronously by the state machine (Retry, then Catch); a Lambda DLQ applies to asynchronous calls only.",
);
pub const FUNCTION_ENVIRONMENT_CMK: Exception = (
    "CKV_AWS_173",
    "No secret in the environment (names, endpoints, secret ARNs); Lambda's AWS managed key encrypts it.",
);
pub const NETWORK_INTERFACE_ACTIONS: Exception = (
    "CKV_AWS_111",
    "VPC access actions on * as in AWS's AWSLambdaVPCAccessExecutionRole; Lambda checks them before the interfaces exist.",
);
pub const DATABASE_ENHANCED_MONITORING: Exception =
    ("CKV_AWS_118", "RDS's standard metrics and the CPU and storage alarms suffice at this size.");
pub const DATABASE_IAM_AUTHENTICATION: Exception =
    ("CKV_AWS_161", "Clients use the RDS-managed master user secret, which RDS rotates.");
pub const DATABASE_SINGLE_AZ: Exception =
    ("CKV_AWS_157", "Single-AZ outside prod halves the database's cost; prod is Multi-AZ.");
pub const SECRET_CMK: Exception =
    ("CKV_AWS_149", "AWS managed key aws/secretsmanager; only this stage's own roles read it.");
pub const REPOSITORY_CMK: Exception = (
    "CKV_AWS_136",
    "ECR's AES256 encryption; EncryptionConfiguration is create-only and a KMS key adds nothing required.",
);
