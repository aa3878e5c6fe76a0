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
    /// Writes, and deletes what it wrote when the step that wrote it fails (a partial rejects
    /// or Parquet file): buckets only.
    WriteDelete,
    ReadWrite,
}

impl Access {
    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }
    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::WriteDelete | Access::ReadWrite)
    }
    pub fn verb(self) -> &'static str {
        match self {
            Access::Read => "reads",
            Access::Write | Access::WriteDelete => "writes",
            Access::ReadWrite => "reads and writes",
        }
    }
}

/// What a principal touches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// An S3 bucket of the template (objects; reading includes listing).
    Bucket(LogicalId),
    /// CodePipeline's artifact store: the bucket-level reads CodeBuild makes of it
    /// (`GetBucketAcl`, `GetBucketLocation`) and object versions; writing includes the object
    /// ACLs a source action sets.
    ArtifactStore(LogicalId),
    /// An SQS queue of the template (sending: a dead-letter queue's writers).
    Queue(LogicalId),
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
    /// An Athena workgroup of the template (running queries in it and reading their results).
    AthenaWorkGroup(LogicalId),
    /// Glue Data Catalog tables of the template, by database and table names (reading their
    /// definitions and partitions).
    GlueTables { database: String, tables: Vec<String> },
    /// A bucket Athena reads a table's files from (with the bucket's location, which Athena asks).
    AthenaSource(LogicalId),
    /// A bucket Athena writes query results to.
    AthenaResults(LogicalId),
    /// Running an ECS task definition of the template from Step Functions with `.sync`: the
    /// task in `cluster` (by name), and passing its `roles`.
    EcsTask { definition: LogicalId, cluster: String, roles: Vec<LogicalId> },
}

impl Target {
    /// The node the diagram draws for this target, if any.
    pub fn node(&self) -> Option<&str> {
        match self {
            Target::Bucket(id)
            | Target::ArtifactStore(id)
            | Target::Queue(id)
            | Target::LogGroup(id)
            | Target::StateMachine(id)
            | Target::Function(id) => Some(id.as_str()),
            Target::Secret { id, .. } => Some(id.as_str()),
            Target::NamedBucket(_) => Some("AssetsBucket"),
            Target::Repository { id, .. } => Some(id.as_str()),
            Target::EcsTask { definition, .. } => Some(definition.as_str()),
            Target::AthenaWorkGroup(id) | Target::AthenaSource(id) | Target::AthenaResults(id) => Some(id.as_str()),
            Target::GlueTables { .. } => Some("AnalyticsDatabase"),
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
            match access {
                Access::WriteDelete => {
                    out.push(statement(&["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"], vec![objects]))
                }
                _ if access.writes() => {
                    out.push(statement(&["s3:PutObject", "s3:AbortMultipartUpload"], vec![objects]))
                }
                _ => {}
            }
            out
        }
        // https://docs.aws.amazon.com/codebuild/latest/userguide/setting-up-service-role.html
        // (CodeBuild: GetBucketAcl, GetBucketLocation, GetObjectVersion on the artifact bucket);
        // https://docs.aws.amazon.com/codepipeline/latest/userguide/security-iam.html#how-to-custom-role
        // (the pipeline role: GetBucketVersioning, PutObjectAcl and PutObjectVersionAcl, which a
        // CodeStar/CodeConnections source action needs to write its artifact).
        Target::ArtifactStore(id) => {
            let (bucket, objects) = (id.get_att("Arn"), sub(format!("${{{id}.Arn}}/*")));
            let mut out = vec![statement(
                &["s3:ListBucket", "s3:GetBucketAcl", "s3:GetBucketLocation", "s3:GetBucketVersioning"],
                vec![bucket],
            )];
            let mut actions = vec!["s3:GetObject", "s3:GetObjectVersion"];
            if access.writes() {
                actions.extend([
                    "s3:PutObject",
                    "s3:PutObjectAcl",
                    "s3:PutObjectVersionAcl",
                    "s3:AbortMultipartUpload",
                ]);
            }
            out.push(statement(&actions, vec![objects]));
            out
        }
        Target::Queue(id) => vec![statement(&["sqs:SendMessage"], vec![id.get_att("Arn")])],
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
                // `publish` describes the repository (its URI) and the image (present, and
                // which stages' tags it has) before it pushes: a denied describe must fail
                // publish, never read as "absent".
                actions.extend([
                    "ecr:DescribeRepositories",
                    "ecr:DescribeImages",
                    "ecr:InitiateLayerUpload",
                    "ecr:UploadLayerPart",
                    "ecr:CompleteLayerUpload",
                    "ecr:PutImage",
                ]);
            }
            vec![statement(&actions, vec![sub(arn.clone())])]
        }
        // "IAM policies for Amazon ECS/AWS Fargate" (Step Functions developer guide): RunTask on
        // the task definition; StopTask and DescribeTasks on the tasks (scoped here to the
        // cluster's, where the guide allows "*"); the managed rule through which `.sync` hears
        // that the task stopped; and passing the task's roles to ECS.
        Target::EcsTask { definition, cluster, roles } => vec![
            statement(&["ecs:RunTask"], vec![definition.r#ref()]),
            statement(
                &["ecs:StopTask", "ecs:DescribeTasks"],
                vec![sub(format!("arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:task/{cluster}/*"))],
            ),
            statement(
                &["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                vec![sub(
                    "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/StepFunctionsGetEventsForECSTaskRule",
                )],
            ),
            json!({
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": roles.iter().map(|role| role.get_att("Arn")).collect::<Vec<_>>(),
                "Condition": { "StringEquals": { "iam:PassedToService": "ecs-tasks.amazonaws.com" } }
            }),
        ],
        // "Identity and access management in Athena" (Athena user guide): running queries in a
        // workgroup, and the catalog and bucket actions a query needs ("Access to Amazon S3",
        // "Fine-grained access to databases and tables in the AWS Glue Data Catalog").
        Target::AthenaWorkGroup(id) => vec![statement(
            &[
                "athena:StartQueryExecution",
                "athena:GetQueryExecution",
                "athena:GetQueryResults",
                "athena:StopQueryExecution",
                "athena:GetWorkGroup",
                "athena:ListQueryExecutions",
            ],
            vec![sub(format!(
                "arn:${{AWS::Partition}}:athena:${{AWS::Region}}:${{AWS::AccountId}}:workgroup/${{{id}}}"
            ))],
        )],
        Target::GlueTables { database, tables } => {
            let glue =
                |what: &str| sub(format!("arn:${{AWS::Partition}}:glue:${{AWS::Region}}:${{AWS::AccountId}}:{what}"));
            let mut resources = vec![glue("catalog"), glue(&format!("database/{database}"))];
            resources.extend(tables.iter().map(|table| glue(&format!("table/{database}/{table}"))));
            // Partition projection spares Athena GetPartitions ("Partition projection with
            // Amazon Athena"); Athena reads the `default` database too ("Configure access to
            // databases and tables in the AWS Glue Data Catalog").
            vec![
                statement(&["glue:GetDatabase", "glue:GetDatabases"], vec![glue("catalog"), glue("database/default")]),
                statement(&["glue:GetDatabase", "glue:GetTable", "glue:GetTables"], resources),
            ]
        }
        Target::AthenaSource(id) => vec![
            statement(&["s3:ListBucket", "s3:GetBucketLocation"], vec![id.get_att("Arn")]),
            statement(&["s3:GetObject"], vec![sub(format!("${{{id}.Arn}}/*"))]),
        ],
        Target::AthenaResults(id) => vec![
            statement(
                &["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"],
                vec![id.get_att("Arn")],
            ),
            statement(
                &["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                vec![sub(format!("${{{id}.Arn}}/*"))],
            ),
        ],
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

/// The service principals whose trust policies are limited to this account's resources
/// (confused-deputy prevention with `aws:SourceAccount`):
/// https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-identity-based.html,
/// https://docs.aws.amazon.com/scheduler/latest/UserGuide/setting-up.html#setting-up-execution-role,
/// https://docs.aws.amazon.com/step-functions/latest/dg/cross-service-confused-deputy-prevention.html.
const SOURCE_ACCOUNT_SCOPED: [&str; 3] = ["events.amazonaws.com", "scheduler.amazonaws.com", "states.amazonaws.com"];

/// A role's trust policy for an AWS service principal (`lambda.amazonaws.com`, …).
pub fn assume_role_policy(service: &str) -> Value {
    let mut statement = json!({ "Effect": "Allow", "Principal": { "Service": service }, "Action": "sts:AssumeRole" });
    if SOURCE_ACCOUNT_SCOPED.contains(&service) {
        statement["Condition"] = json!({ "StringEquals": { "aws:SourceAccount": { "Ref": "AWS::AccountId" } } });
    }
    json!({ "Version": "2012-10-17", "Statement": [statement] })
}
