//! Least-privilege IAM, derived from declared relationships.
//!
//! A topology declares what each component touches once, as [`Grant`]s ("process reads raw,
//! writes processed, reads the database secret"); [`policy_statements`] turns a principal's
//! grants into IAM statements with explicit actions on exact resources. The same grants draw
//! the diagram of docs/architecture.md.
//!
//! `Resource: "*"` appears only where AWS offers no resource-level permission; each such case
//! is a [`Grant`] target below with the reason next to it:
//! - [`Target::NetworkInterfaces`]: the ENI actions Lambda needs to run in a VPC
//!   (`ec2:DescribeNetworkInterfaces` and friends take no resource ARN);
//! - [`Target::LogDelivery`]: Step Functions' vended log delivery (`logs:CreateLogDelivery` and
//!   friends are not resource-scoped);
//! - [`Target::EcrAuthorization`]: `ecr:GetAuthorizationToken` is account-wide by design.

use serde_json::{Value, json};

use crate::template::{LogicalId, sub};

/// How a principal uses a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }
    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
    pub fn verb(self) -> &'static str {
        match self {
            Access::Read => "reads",
            Access::Write => "writes",
            Access::ReadWrite => "reads and writes",
        }
    }
}

/// What a principal touches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// An S3 bucket of the template (objects; reading includes listing).
    Bucket(LogicalId),
    /// A bucket of another stack, by its name as `Fn::Sub` text (the bootstrap's assets bucket).
    NamedBucket(String),
    /// A secret, by an expression giving its ARN (reading only).
    Secret { id: LogicalId, arn: String },
    /// A log group of the template (writing log streams).
    LogGroup(LogicalId),
    /// A Step Functions state machine (starting executions).
    StateMachine(LogicalId),
    /// A Lambda function (invoking it).
    Function(LogicalId),
    /// An ECR repository, by ARN expression (pulling images; writing pushes).
    Repository { id: String, arn: String },
    /// The network interfaces Lambda manages for VPC access.
    NetworkInterfaces,
    /// Step Functions' vended log delivery.
    LogDelivery,
    /// ECR's account-wide authorization token.
    EcrAuthorization,
}

impl Target {
    /// The node the diagram draws for this target, if any.
    pub fn node(&self) -> Option<&str> {
        match self {
            Target::Bucket(id) | Target::LogGroup(id) | Target::StateMachine(id) | Target::Function(id) => {
                Some(id.as_str())
            }
            Target::Secret { id, .. } => Some(id.as_str()),
            Target::NamedBucket(_) => Some("AssetsBucket"),
            Target::Repository { id, .. } => Some(id.as_str()),
            Target::NetworkInterfaces | Target::LogDelivery | Target::EcrAuthorization => None,
        }
    }
}

/// "`principal` `access` `target`": the one declaration policies are generated from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// The role's logical id.
    pub principal: LogicalId,
    pub access: Access,
    pub target: Target,
}

/// The IAM statements of `principal`'s grants, in declaration order.
pub fn policy_statements(principal: &LogicalId, grants: &[Grant]) -> Vec<Value> {
    grants.iter().filter(|g| &g.principal == principal).flat_map(|g| statements(g.access, &g.target)).collect()
}

fn statement(actions: &[&str], resources: Vec<Value>) -> Value {
    json!({ "Effect": "Allow", "Action": actions, "Resource": resources })
}

fn statements(access: Access, target: &Target) -> Vec<Value> {
    match target {
        Target::Bucket(_) | Target::NamedBucket(_) => {
            let (bucket, objects) = match target {
                Target::Bucket(id) => (id.get_att("Arn"), sub(format!("${{{id}.Arn}}/*"))),
                Target::NamedBucket(name) => (
                    sub(format!("arn:${{AWS::Partition}}:s3:::{name}")),
                    sub(format!("arn:${{AWS::Partition}}:s3:::{name}/*")),
                ),
                _ => unreachable!("matched above"),
            };
            let mut out = Vec::new();
            if access.reads() {
                out.push(statement(&["s3:ListBucket"], vec![bucket]));
                out.push(statement(&["s3:GetObject"], vec![objects.clone()]));
            }
            if access.writes() {
                out.push(statement(&["s3:PutObject", "s3:AbortMultipartUpload"], vec![objects]));
            }
            out
        }
        Target::Secret { arn, .. } => {
            vec![statement(&["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], vec![sub(arn.clone())])]
        }
        Target::LogGroup(id) => {
            vec![statement(&["logs:CreateLogStream", "logs:PutLogEvents"], vec![id.get_att("Arn")])]
        }
        Target::StateMachine(id) => vec![statement(&["states:StartExecution"], vec![id.r#ref()])],
        Target::Function(id) => {
            vec![statement(&["lambda:InvokeFunction"], vec![id.get_att("Arn"), sub(format!("${{{id}.Arn}}:*"))])]
        }
        Target::Repository { arn, .. } => {
            let mut actions =
                vec!["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"];
            if access.writes() {
                actions.extend([
                    "ecr:InitiateLayerUpload",
                    "ecr:UploadLayerPart",
                    "ecr:CompleteLayerUpload",
                    "ecr:PutImage",
                ]);
            }
            vec![statement(&actions, vec![sub(arn.clone())])]
        }
        // AWS requires "*": these actions take no resource ARN (see the module documentation).
        Target::NetworkInterfaces => vec![statement(NETWORK_INTERFACE_ACTIONS, vec![json!("*")])],
        Target::LogDelivery => vec![statement(LOG_DELIVERY_ACTIONS, vec![json!("*")])],
        Target::EcrAuthorization => vec![statement(ECR_AUTHORIZATION_ACTIONS, vec![json!("*")])],
    }
}

/// Lambda's network interfaces in a VPC.
const NETWORK_INTERFACE_ACTIONS: &[&str] = &[
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
];

/// Step Functions' vended log delivery.
const LOG_DELIVERY_ACTIONS: &[&str] = &[
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
];

const ECR_AUTHORIZATION_ACTIONS: &[&str] = &["ecr:GetAuthorizationToken"];

/// The actions allowed on `Resource: "*"`; `stack/rules/iam.guard` holds the same list.
pub const UNSCOPED_ACTIONS: [&[&str]; 3] = [NETWORK_INTERFACE_ACTIONS, LOG_DELIVERY_ACTIONS, ECR_AUTHORIZATION_ACTIONS];

/// Whether `action` may be granted on `Resource: "*"`.
pub fn is_unscoped(action: &str) -> bool {
    UNSCOPED_ACTIONS.iter().any(|group| group.contains(&action))
}

/// A role's trust policy for an AWS service principal (`lambda.amazonaws.com`, …).
pub fn assume_role_policy(service: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Principal": { "Service": service }, "Action": "sts:AssumeRole" }],
    })
}
