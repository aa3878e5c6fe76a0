//! The stage stack `hiring-<stage>`: network, buckets, pipeline, database, API, alarms.
//!
//! [`Topology::stage`] declares every component and, once, what each one touches
//! ([`Grant`]s) and how data flows between them ([`Flow`]s); IAM policies and the diagram of
//! docs/architecture.md are both derived from those declarations.

use serde_json::{Value, json};

use crate::checks;
use crate::iam::{Access, Grant, Target};
use crate::parts::{log_group, private_bucket, role};
use crate::stage::{
    FUNCTION_DB_POOL, PROCESS_TASK_CPU, PROCESS_TASK_MEMORY_MB, PROCESS_TASK_TIMEOUT_SECONDS, StageConfig,
};
use crate::template::{Keep, LogicalId, Resource, ResourceType, Template, availability_zone, join, sub};
use crate::{
    API_DATA_DIR, API_PORT, DB_NAME, DB_PORT, DB_USER, GATEWAY_DEADLINE_SECS, GATEWAY_UPLOAD_BYTES, assets_bucket_name,
};

/// "`from` → `to`": a data or control flow the diagram draws (grants are drawn too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub from: LogicalId,
    pub label: &'static str,
    pub to: LogicalId,
}

/// A stage's template with the declarations it was derived from.
#[derive(Clone, Debug)]
pub struct Topology {
    pub template: Template,
    pub grants: Vec<Grant>,
    pub flows: Vec<Flow>,
    /// Which component each role belongs to (role → function, task, rule…), for the diagram.
    pub role_owners: Vec<(LogicalId, LogicalId)>,
}

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

/// The template parameter holding the API image (`<repository uri>@sha256:<digest>`).
pub const API_IMAGE_PARAMETER: &str = "ApiImage";

/// The first two octets of a `/16`, for its subnets.
fn vpc_prefix(cidr: &str) -> String {
    let mut octets = cidr.split('.');
    let (Some(a), Some(b)) = (octets.next(), octets.next()) else { panic!("`{cidr}` is not an IPv4 CIDR") };
    assert!(cidr.ends_with(".0.0/16"), "the stage's VPC must be a /16, not `{cidr}`");
    format!("{a}.{b}")
}

impl Topology {
    pub fn stage(cfg: &StageConfig) -> Topology {
        let mut stage = StageBuilder::new(cfg);
        let parameters = stage.parameters();
        let network = stage.network();
        let groups = stage.security_groups(&network);
        let zones = stage.buckets();
        let database = stage.database(&network, &groups);
        let dead_letters = stage.dead_letters();
        let functions = stage.functions(&parameters, &network, &groups, &zones, &database, &dead_letters);
        let cluster = stage.cluster();
        let fargate = stage.process_task(&parameters, &network, &groups, &zones, &database, &cluster);
        let state_machine = stage.state_machine(&functions, &fargate);
        stage.events(&zones, &state_machine, &dead_letters);
        stage.backups(&functions, &dead_letters);
        let api = stage.api(&parameters, &network, &groups, &zones, &database, &cluster);
        stage.analytics(&zones);
        let topic = stage.alarms(&state_machine, &api, &database, &dead_letters);
        stage.dashboard(&state_machine, &api, &database);
        stage.outputs(&parameters, &zones, &database, &state_machine, &api, &topic);
        stage.finish()
    }
}

/// A stage's template under construction, with the declarations it is derived from.
struct StageBuilder<'a> {
    cfg: &'a StageConfig,
    t: Template,
    grants: Vec<Grant>,
    flows: Vec<Flow>,
    role_owners: Vec<(LogicalId, LogicalId)>,
    tags: Value,
    data_keep: Keep,
}

/// The template parameters `cargo xtask deploy` fills.
struct Parameters {
    /// Each function's code key, in the order of [`FUNCTIONS`].
    code_keys: Vec<LogicalId>,
    image: LogicalId,
}

/// The VPC and its private subnets.
struct Network {
    vpc: LogicalId,
    /// The private subnets' ids, as a JSON list of `Ref`s.
    subnet_ids: Value,
}

/// The security groups of the components in the VPC.
struct SecurityGroups {
    functions: LogicalId,
    vpc_link: LogicalId,
    load_balancer: LogicalId,
    api: LogicalId,
    database: LogicalId,
}

/// The storage zones' buckets.
struct Zones {
    raw: LogicalId,
    rejects: LogicalId,
    processed: LogicalId,
    backups: LogicalId,
    /// `HIRING_<ZONE>_URL` → `s3://<bucket>/`, for the functions' and the API's environment.
    urls: Vec<(String, Value)>,
}

/// PostgreSQL and how its clients reach it.
struct Database {
    id: LogicalId,
    /// The master user's secret, as a grant target.
    secret: Target,
    /// The master user's secret's ARN, as `Fn::Sub` text.
    secret_arn: String,
    /// The application role's secret (`hiring_app`, which the API and the functions serve
    /// as), as a grant target.
    app_secret: Target,
    /// Its ARN, as `Fn::Sub` text.
    app_secret_arn: String,
    /// Host, port and database name, for the clients' environment.
    env: [(String, Value); 4],
}

impl Database {
    /// The clients' environment: the server, the application role's secret (the pool's user)
    /// and the master user's (the migrations, and the application role's password).
    fn client_env(&self) -> Vec<(String, Value)> {
        let mut env = self.env.to_vec();
        env.push(("HIRING_DB_SECRET_ARN".to_owned(), sub(self.app_secret_arn.clone())));
        env.push(("HIRING_DB_ADMIN_SECRET_ARN".to_owned(), sub(self.secret_arn.clone())));
        env
    }

    /// The two secrets, as grant targets.
    fn secrets(&self) -> [Target; 2] {
        [self.secret.clone(), self.app_secret.clone()]
    }
}

/// The pipeline functions.
struct Functions {
    validate: LogicalId,
    process: LogicalId,
    backup: LogicalId,
}

/// The API's bearer token: a secret, or on the emulator a parameter naming one.
struct ApiToken {
    id: LogicalId,
    arn: String,
}

/// The API's ECS cluster and task definition.
struct ApiTask {
    cluster: LogicalId,
    task: LogicalId,
}

/// What differs between the stack's Fargate task definitions ([`StageBuilder::image_task`]).
struct ImageTask<'a> {
    id: &'a str,
    execution_role: &'a str,
    task_role: LogicalId,
    family: String,
    cpu: u32,
    memory_mb: u32,
    image: &'a LogicalId,
    zones: &'a Zones,
    database: &'a Database,
    /// After the zones' and the database's variables.
    env: Vec<Value>,
    logs: &'a LogicalId,
    log_prefix: &'a str,
    /// The container's own properties, an object.
    container: Value,
}

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

/// The CloudWatch namespace of the functions' own metrics (`HIRING_METRICS_NAMESPACE`).
pub fn metrics_namespace(cfg: &StageConfig) -> String {
    format!("hiring-{}", cfg.stage)
}

/// The metric names the dashboard shows from [`metrics_namespace`]; they must be the ones the
/// functions emit (`hiring_functions::ROWS_LOADED`, `ROWS_REJECTED`): tests/tests/lambda_emulator.rs
/// compares them with what the built binaries print.
pub const DASHBOARD_ROWS_LOADED: &str = "RowsLoaded";
/// The metric counting the ingestions the API's sweep closed past their deadline, read from its
/// log line's `swept` field (`api::SWEPT_FIELD`) by a metric filter; an alarm watches it.
pub const SWEPT_METRIC: &str = "IngestionsSwept";
pub const DASHBOARD_ROWS_REJECTED: &str = "RowsRejected";

/// The stage's Glue database: `hiring_<stage>` (Athena names take underscores, not hyphens).
pub fn analytics_database(cfg: &StageConfig) -> String {
    format!("hiring_{}", cfg.stage)
}

/// The container name of the process task, which the state machine's overrides name.
pub const PROCESS_CONTAINER: &str = "process";

/// Where the API image carries the process function's binary, run by the process task.
pub const PROCESS_BINARY: &str = "/usr/local/bin/hiring-process";

/// The API's ECS service behind its internal load balancer.
struct ApiService {
    load_balancer: LogicalId,
    listener: LogicalId,
    service: LogicalId,
}

/// What the alarms and outputs need of the API.
struct Api {
    token_arn: String,
    cluster: LogicalId,
    load_balancer: LogicalId,
    service: LogicalId,
    http_api: LogicalId,
}

impl<'a> StageBuilder<'a> {
    fn new(cfg: &'a StageConfig) -> Self {
        let t = Template::new(format!(
            "hiring-{}: the hiring data platform (buckets, pipeline, database, API). Generated by `cargo xtask synth`; do not edit.",
            cfg.stage
        ));
        StageBuilder {
            cfg,
            t,
            grants: Vec::new(),
            flows: Vec::new(),
            role_owners: Vec::new(),
            tags: cfg.tag_list(),
            data_keep: if cfg.emulator { Keep::Delete } else { Keep::Retain },
        }
    }

    fn finish(self) -> Topology {
        Topology { template: self.t, grants: self.grants, flows: self.flows, role_owners: self.role_owners }
    }

    fn grant(&mut self, principal: &str, access: Access, target: Target) {
        self.grants.push(Grant { principal: LogicalId::new(principal), access, target })
    }

    fn flow(&mut self, from: &LogicalId, label: &'static str, to: &LogicalId) {
        self.flows.push(Flow { from: from.clone(), label, to: to.clone() })
    }

    /// The role `id` for `service`, with the grants declared for it so far.
    fn role(&mut self, id: &str, service: &str) -> LogicalId {
        role(&mut self.t, id, self.cfg, service, &self.grants)
    }

    fn log_group(&mut self, id: &str, name: Value) -> LogicalId {
        log_group(&mut self.t, id, self.cfg, name)
    }

    fn security_group(
        &mut self,
        id: &str,
        description: &str,
        vpc: &LogicalId,
        ingress: Value,
        egress: Value,
    ) -> LogicalId {
        let mut properties = json!({
            "GroupDescription": description, "VpcId": vpc.r#ref(), "SecurityGroupEgress": egress, "Tags": self.tags
        });
        if ingress.as_array().is_some_and(|rules| !rules.is_empty()) {
            properties["SecurityGroupIngress"] = ingress;
        }
        self.t.add(id, Resource::new(ResourceType::Ec2SecurityGroup, properties))
    }

    /// Parameters filled by `cargo xtask deploy` from what `publish` uploaded.
    fn parameters(&mut self) -> Parameters {
        let mut code_keys = Vec::new();
        for (prefix, binary, _) in FUNCTIONS {
            code_keys.push(self.t.parameter(
                &code_key_parameter(prefix),
                &format!("The {binary} function's zip in the assets bucket (functions/{binary}/<sha256>.zip)"),
                Some(&format!("^functions/{binary}/[0-9a-f]{{64}}\\.zip$")),
            ));
        }
        let image = self.t.parameter(
            API_IMAGE_PARAMETER,
            "The API image by digest (<account>.dkr.ecr.<region>.amazonaws.com/hiring-api@sha256:<digest>)",
            Some("^[^@]+@sha256:[0-9a-f]{64}$"),
        );
        Parameters { code_keys, image }
    }

    /// Network: two private subnets, no internet route; AWS services through endpoints.
    fn network(&mut self) -> Network {
        let cfg = self.cfg;
        let prefix = vpc_prefix(cfg.vpc_cidr);
        let vpc = self.t.add(
            "Vpc",
            Resource::new(
                ResourceType::Ec2Vpc,
                json!({
                    "CidrBlock": cfg.vpc_cidr, "EnableDnsHostnames": true, "EnableDnsSupport": true, "Tags": self.tags
                }),
            ),
        );
        let route_table = self.t.add(
            "PrivateRouteTable",
            Resource::new(ResourceType::Ec2RouteTable, json!({ "VpcId": vpc.r#ref(), "Tags": self.tags })),
        );
        let mut subnets = Vec::new();
        for (index, letter) in ["A", "B"].into_iter().enumerate() {
            let subnet = self.t.add(
                &format!("PrivateSubnet{letter}"),
                Resource::new(
                    ResourceType::Ec2Subnet,
                    json!({
                        "VpcId": vpc.r#ref(),
                        "CidrBlock": format!("{prefix}.{}.0/20", index * 16),
                        "AvailabilityZone": availability_zone(index),
                        "MapPublicIpOnLaunch": false,
                        "Tags": self.tags,
                    }),
                ),
            );
            self.t.add(
                &format!("PrivateSubnet{letter}Routes"),
                Resource::new(
                    ResourceType::Ec2SubnetRouteTableAssociation,
                    json!({ "SubnetId": subnet.r#ref(), "RouteTableId": route_table.r#ref() }),
                ),
            );
            subnets.push(subnet.r#ref());
        }
        let subnet_ids = Value::Array(subnets);
        self.t.add(
            "S3Endpoint",
            Resource::new(
                ResourceType::Ec2VpcEndpoint,
                json!({
                    "VpcId": vpc.r#ref(),
                    "ServiceName": sub("com.amazonaws.${AWS::Region}.s3"),
                    "VpcEndpointType": "Gateway",
                    "RouteTableIds": [route_table.r#ref()],
                }),
            ),
        );
        let endpoint_sg = self.security_group(
            "EndpointSecurityGroup",
            "HTTPS from the VPC to the AWS service endpoints",
            &vpc,
            json!([{ "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": cfg.vpc_cidr, "Description": "AWS APIs from the VPC" }]),
            json!([{ "IpProtocol": "-1", "CidrIp": "127.0.0.1/32", "Description": "no egress" }]),
        );
        // Secrets for the tasks, images for ECS, logs for the awslogs driver.
        for (id, service) in [
            ("SecretsManagerEndpoint", "secretsmanager"),
            ("EcrApiEndpoint", "ecr.api"),
            ("EcrDockerEndpoint", "ecr.dkr"),
            ("LogsEndpoint", "logs"),
        ] {
            self.t.add(
                id,
                Resource::new(
                    ResourceType::Ec2VpcEndpoint,
                    json!({
                        "VpcId": vpc.r#ref(),
                        "ServiceName": sub(format!("com.amazonaws.${{AWS::Region}}.{service}")),
                        "VpcEndpointType": "Interface",
                        "PrivateDnsEnabled": true,
                        "SubnetIds": subnet_ids,
                        "SecurityGroupIds": [endpoint_sg.get_att("GroupId")],
                    }),
                ),
            );
        }
        Network { vpc, subnet_ids }
    }

    /// The security groups of the functions, the API's path (VPC link → load balancer → tasks)
    /// and PostgreSQL.
    fn security_groups(&mut self, network: &Network) -> SecurityGroups {
        let cfg = self.cfg;
        let vpc = &network.vpc;
        // HTTPS anywhere reaches only the endpoints (there is no internet route).
        let https_out = json!({ "IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "0.0.0.0/0", "Description": "AWS APIs through the VPC endpoints" });
        let postgres_out = json!({ "IpProtocol": "tcp", "FromPort": DB_PORT, "ToPort": DB_PORT, "CidrIp": cfg.vpc_cidr, "Description": "PostgreSQL" });
        let functions_sg = self.security_group(
            "FunctionsSecurityGroup",
            "The pipeline functions: no inbound; out to PostgreSQL and the AWS endpoints",
            vpc,
            json!([]),
            json!([https_out, postgres_out]),
        );
        let vpc_link_sg = self.security_group(
            "VpcLinkSecurityGroup",
            "The API Gateway VPC link: out to the load balancer only",
            vpc,
            json!([]),
            json!([{ "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "CidrIp": cfg.vpc_cidr, "Description": "the load balancer" }]),
        );
        let alb_sg = self.security_group(
            "LoadBalancerSecurityGroup",
            "The internal load balancer: in from the VPC link, out to the API tasks",
            vpc,
            json!([{ "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "SourceSecurityGroupId": vpc_link_sg.get_att("GroupId"), "Description": "the API Gateway VPC link" }]),
            json!([{ "IpProtocol": "tcp", "FromPort": API_PORT, "ToPort": API_PORT, "CidrIp": cfg.vpc_cidr, "Description": "the API tasks" }]),
        );
        let api_sg = self.security_group(
            "ApiSecurityGroup",
            "The API tasks: in from the load balancer; out to PostgreSQL and the AWS endpoints",
            vpc,
            json!([{ "IpProtocol": "tcp", "FromPort": API_PORT, "ToPort": API_PORT, "SourceSecurityGroupId": alb_sg.get_att("GroupId"), "Description": "the load balancer" }]),
            json!([https_out, postgres_out]),
        );
        let db_sg = self.security_group(
            "DatabaseSecurityGroup",
            "PostgreSQL: in from the functions and the API tasks only",
            vpc,
            json!([
                { "IpProtocol": "tcp", "FromPort": DB_PORT, "ToPort": DB_PORT, "SourceSecurityGroupId": functions_sg.get_att("GroupId"), "Description": "the pipeline functions" },
                { "IpProtocol": "tcp", "FromPort": DB_PORT, "ToPort": DB_PORT, "SourceSecurityGroupId": api_sg.get_att("GroupId"), "Description": "the API tasks" }
            ]),
            json!([{ "IpProtocol": "-1", "CidrIp": "127.0.0.1/32", "Description": "no egress" }]),
        );
        SecurityGroups {
            functions: functions_sg,
            vpc_link: vpc_link_sg,
            load_balancer: alb_sg,
            api: api_sg,
            database: db_sg,
        }
    }

    /// Storage zones.
    fn buckets(&mut self) -> Zones {
        let (cfg, data_keep) = (self.cfg, self.data_keep);
        let raw = private_bucket(
            &mut self.t,
            "RawBucket",
            cfg,
            None,
            json!({ "NotificationConfiguration": { "EventBridgeConfiguration": { "EventBridgeEnabled": true } } }),
            data_keep,
        );
        let rejects = private_bucket(&mut self.t, "RejectsBucket", cfg, None, json!({}), data_keep);
        // A load's Parquet file waits under _staging/ until its load commits, then moves to its
        // key (hiring::processed::staging_key); what a crash leaves there (a load that never
        // committed, or one whose step and its retries all died before the move) expires after
        // a week, and the copies the moves leave behind (a versioned bucket keeps a deleted
        // object as a noncurrent version) after a day ("Expiring objects", S3 user guide).
        let staged = json!({ "ExtraLifecycleRules": [
            {
                "Id": "expire-staged-parquet",
                "Status": "Enabled",
                "Prefix": "_staging/",
                "ExpirationInDays": 7,
                "NoncurrentVersionExpiration": { "NoncurrentDays": 1 }
            },
            {
                "Id": "remove-staged-delete-markers",
                "Status": "Enabled",
                "Prefix": "_staging/",
                "ExpiredObjectDeleteMarker": true
            }
        ] });
        let processed = private_bucket(&mut self.t, "ProcessedBucket", cfg, None, staged, data_keep);
        let backups = private_bucket(&mut self.t, "BackupsBucket", cfg, None, json!({}), data_keep);
        let zone_urls = |bucket_of: &[(&str, &LogicalId)]| -> Vec<(String, Value)> {
            bucket_of
                .iter()
                .map(|(zone, id)| (format!("HIRING_{}_URL", zone.to_uppercase()), sub(format!("s3://${{{id}}}/"))))
                .collect()
        };
        let urls = zone_urls(&[("raw", &raw), ("rejects", &rejects), ("processed", &processed), ("backups", &backups)]);
        Zones { raw, rejects, processed, backups, urls }
    }

    /// Database: PostgreSQL with a master secret RDS manages and rotates.
    fn database(&mut self, network: &Network, groups: &SecurityGroups) -> Database {
        let cfg = self.cfg;
        let db_subnets = self.t.add(
            "DatabaseSubnetGroup",
            Resource::new(
                ResourceType::RdsDbSubnetGroup,
                json!({
                    "DBSubnetGroupDescription": "The private subnets",
                    "SubnetIds": network.subnet_ids,
                    "Tags": self.tags,
                }),
            ),
        );
        let database = self.t.add(
            "Database",
            Resource::new(
                ResourceType::RdsDbInstance,
                json!({
                    "Engine": "postgres",
                    // The major only: RDS picks its default minor and AutoMinorVersionUpgrade
                    // moves it on; a pinned minor drifts from what runs and fails new stacks
                    // once RDS retires it
                    // (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_UpgradeDBInstance.PostgreSQL.Minor.html).
                    "EngineVersion": "17",
                    "DBInstanceClass": cfg.db_instance_class,
                    "DBName": DB_NAME,
                    "MasterUsername": DB_USER,
                    "ManageMasterUserPassword": true,
                    "AllocatedStorage": cfg.db_storage_gb.to_string(),
                    "MaxAllocatedStorage": cfg.db_max_storage_gb,
                    "StorageType": "gp3",
                    "StorageEncrypted": true,
                    "PubliclyAccessible": false,
                    "MultiAZ": cfg.db_multi_az,
                    "DBSubnetGroupName": db_subnets.r#ref(),
                    "VPCSecurityGroups": [groups.database.get_att("GroupId")],
                    "Port": DB_PORT.to_string(),
                    "BackupRetentionPeriod": cfg.db_backup_retention_days,
                    "DeletionProtection": cfg.deletion_protection,
                    "CopyTagsToSnapshot": true,
                    "AutoMinorVersionUpgrade": true,
                    "EnableCloudwatchLogsExports": ["postgresql"],
                    "Tags": self.tags,
                }),
            )
            .keep(Keep::Snapshot)
            .skip_check(checks::DATABASE_ENHANCED_MONITORING)
            .skip_check(checks::DATABASE_IAM_AUTHENTICATION)
            // cfn-lint 1.58 calls a major-only EngineVersion deprecated (W3691): it knows the
            // minors; RDS documents the major alone as "the default minor of that major".
            .ignore_lint("W3691"),
        );
        // The emulator cannot create RDS's managed secret (moto has no `MasterUserSecret`), so
        // the local stage takes a secret's ARN as a parameter: test-local creates that secret
        // in the emulator's Secrets Manager, holding the local PostgreSQL's user.
        if !cfg.db_multi_az {
            self.t.skip_check(&database, checks::DATABASE_SINGLE_AZ);
        }
        let db_secret_arn = if cfg.emulator {
            self.t.parameter(
                "DatabaseSecretArn",
                "Emulator only: the Secrets Manager secret holding the database user (RDS manages it in AWS)",
                Some("^arn:[a-z-]+:secretsmanager:.+$"),
            );
            "${DatabaseSecretArn}".to_owned()
        } else {
            "${Database.MasterUserSecret.SecretArn}".to_owned()
        };
        let db_secret = Target::Secret { id: database.clone(), arn: db_secret_arn.clone() };
        // The application role's user: generated here, applied to the role by the API and the
        // functions as the master user (the `secrets` crate), and read again when PostgreSQL
        // refuses it. On the emulator, a parameter like the master's.
        let (app_id, app_secret_arn) = self.generated_secret(
            "AppDatabaseSecret",
            "the application role's user (hiring_app)",
            format!(
                "The user {} serves as, hiring_app (least privilege), {{\"username\", \"password\"}}",
                cfg.name("api")
            ),
            json!({ "username": "hiring_app" }),
            "password",
        );
        let app_secret = Target::Secret { id: app_id, arn: app_secret_arn.clone() };
        let db_env = [
            ("HIRING_DB_HOST".to_owned(), database.get_att("Endpoint.Address")),
            ("HIRING_DB_PORT".to_owned(), database.get_att("Endpoint.Port")),
            ("HIRING_DB_NAME".to_owned(), json!(DB_NAME)),
            // TLS that checks the server: its certificate must chain to Amazon RDS's
            // authorities (embedded by the `secrets` crate) and name the endpoint.
            ("HIRING_DB_SSLMODE".to_owned(), json!("verify-full")),
        ];
        Database { id: database, secret: db_secret, secret_arn: db_secret_arn, app_secret, app_secret_arn, env: db_env }
    }

    /// Pipeline functions.
    fn functions(
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

    /// Analytics over the processed zone: a Glue database with one table per
    /// zone folder (Parquet, partition projection on `ingest_date`, so no crawler and no
    /// partitions to add), an Athena workgroup whose results go to a bucket of their own, and
    /// `AnalystRole`, which anyone in the account allowed to assume it uses to query: it may run
    /// queries in that workgroup, read those tables' definitions and the processed zone, and
    /// write results. See docs/analytics.md.
    fn analytics(&mut self, zones: &Zones) {
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

    /// The stage's ECS cluster: the API's service and the process step's tasks run in it.
    fn cluster(&mut self) -> LogicalId {
        let cfg = self.cfg;
        self.t.add(
            "Cluster",
            Resource::new(
                ResourceType::EcsCluster,
                json!({
                    "ClusterName": cfg.name("cluster"),
                    "ClusterSettings": [{ "Name": "containerInsights", "Value": "enabled" }],
                    "Tags": self.tags,
                }),
            ),
        )
    }

    /// The process step as a Fargate task: the API image, whose
    /// [`PROCESS_BINARY`] is the process function's own binary, run once on the validation
    /// report in `HIRING_STEP_INPUT` (`hiring_functions::STEP_INPUT`), with the process
    /// function's grants, network and database settings. No time limit, and 20 GiB of task
    /// storage for the Parquet file it stages (Lambda's /tmp is 512 MB by default).
    fn process_task(
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
    fn state_machine(&mut self, functions: &Functions, fargate: &FargateProcess) -> LogicalId {
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

    /// The queue that keeps what EventBridge and Scheduler failed to deliver (after their
    /// retries), so a lost "Object Created" or a missed backup is visible and can be replayed.
    /// https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html,
    /// https://docs.aws.amazon.com/scheduler/latest/UserGuide/configuring-schedule-dlq.html
    fn dead_letters(&mut self) -> LogicalId {
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

    /// Raw bucket events start the state machine.
    fn events(&mut self, zones: &Zones, state_machine: &LogicalId, dead_letters: &LogicalId) {
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

    /// Nightly backups.
    fn backups(&mut self, functions: &Functions, dead_letters: &LogicalId) {
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

    /// The API: ECS Fargate behind an internal load balancer, API Gateway in front.
    fn api(
        &mut self,
        parameters: &Parameters,
        network: &Network,
        groups: &SecurityGroups,
        zones: &Zones,
        database: &Database,
        cluster: &LogicalId,
    ) -> Api {
        let token = self.api_token();
        let task = self.api_task(parameters, zones, database, &token, cluster);
        let service = self.api_service(network, groups, &task, database);
        let http_api = self.api_gateway(network, groups, &service);
        Api {
            token_arn: token.arn,
            cluster: task.cluster,
            load_balancer: service.load_balancer,
            service: service.service,
            http_api,
        }
    }

    /// A secret the stack generates: `template` with a random `key` (48 letters and digits);
    /// on the emulator stage, whose CloudFormation does not create secrets, the ARN of one made
    /// beforehand, as the parameter `<id>Arn`. Returns its logical id and its ARN as `Fn::Sub`
    /// text.
    fn generated_secret(
        &mut self,
        id: &str,
        holding: &str,
        description: String,
        template: Value,
        key: &str,
    ) -> (LogicalId, String) {
        if self.cfg.emulator {
            let parameter = format!("{id}Arn");
            let id = self.t.parameter(
                &parameter,
                &format!("Emulator only: the Secrets Manager secret holding {holding}"),
                Some("^arn:[a-z-]+:secretsmanager:.+$"),
            );
            return (id, format!("${{{parameter}}}"));
        }
        let id = self.t.add(
            id,
            Resource::new(
                ResourceType::SecretsManagerSecret,
                // No fixed Name: a deleted secret's name stays taken for its recovery window (7 to
                // 30 days), which would block destroying and redeploying the stage
                // (https://docs.aws.amazon.com/secretsmanager/latest/userguide/manage_delete-restore-secret.html).
                json!({
                    "Description": description,
                    "GenerateSecretString": {
                        "SecretStringTemplate": template.to_string(),
                        "GenerateStringKey": key,
                        "PasswordLength": 48,
                        "ExcludePunctuation": true
                    },
                    "Tags": self.tags,
                }),
            )
            .skip_check(checks::SECRET_CMK),
        );
        let arn = format!("${{{id}}}");
        (id, arn)
    }

    /// The API's bearer tokens: a generated secret.
    fn api_token(&mut self) -> ApiToken {
        let cfg = self.cfg;
        // {"write": "<generated>"} at first; add read tokens, or a second write token to
        // rotate, as {"read": […], "write": […]} (api::auth).
        let (id, arn) = self.generated_secret(
            "ApiTokenSecret",
            "the API's bearer tokens",
            format!("The bearer tokens of {} by scope, {{\"read\": […], \"write\": […]}}", cfg.name("api")),
            json!({}),
            "write",
        );
        ApiToken { id, arn }
    }

    /// The API's task: its roles, its cluster and its task definition.
    fn api_task(
        &mut self,
        parameters: &Parameters,
        zones: &Zones,
        database: &Database,
        token: &ApiToken,
        cluster: &LogicalId,
    ) -> ApiTask {
        let cfg = self.cfg;
        let api_logs = self.log_group("ApiLogGroup", json!(format!("/ecs/{}", cfg.name("api"))));
        // Each API task sweeps the ingestions past their deadlines every few seconds and logs
        // how many it closed ({"swept": n, …}, a JSON line): a metric filter counts them
        // ("Creating metrics from log events using filters", CloudWatch Logs user guide).
        self.t.add(
            "SweptIngestionsMetricFilter",
            Resource::new(
                ResourceType::LogMetricFilter,
                json!({
                    "LogGroupName": api_logs.r#ref(),
                    "FilterPattern": "{ $.swept > 0 }",
                    "MetricTransformations": [{
                        "MetricNamespace": metrics_namespace(cfg),
                        "MetricName": SWEPT_METRIC,
                        "MetricValue": "$.swept",
                        "Unit": "Count"
                    }]
                }),
            ),
        );
        self.grant("ApiExecutionRole", Access::Read, Target::Secret { id: token.id.clone(), arn: token.arn.clone() });
        // Reading too: in `stepfunctions` mode the upload heads the object it put, and
        // HeadObject is authorized as s3:GetObject
        // (https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html#API_HeadObject_Permissions).
        self.grant("ApiTaskRole", Access::ReadWrite, Target::Bucket(zones.raw.clone()));
        self.grant("ApiTaskRole", Access::Read, Target::Bucket(zones.rejects.clone()));
        // The database secret, read at start and again when PostgreSQL refuses the password
        // (RDS rotated it): the task reads it itself, not through ECS's injection, which
        // happens only when a task starts.
        for secret in database.secrets() {
            self.grant("ApiTaskRole", Access::Read, secret);
        }
        self.grant("ApiTaskRole", Access::ReadWrite, Target::Bucket(zones.backups.clone()));
        let task_role = self.role("ApiTaskRole", "ecs-tasks.amazonaws.com");
        let task = self.image_task(ImageTask {
            id: "ApiTaskDefinition",
            execution_role: "ApiExecutionRole",
            task_role,
            family: cfg.name("api"),
            cpu: cfg.api_cpu,
            memory_mb: cfg.api_memory_mb,
            image: &parameters.image,
            zones,
            database,
            env: vec![
                json!({ "Name": "HIRING_LISTEN", "Value": format!("0.0.0.0:{API_PORT}") }),
                json!({ "Name": "HIRING_PIPELINE", "Value": "stepfunctions" }),
                json!({ "Name": "HIRING_DB_MAX_CONNECTIONS", "Value": cfg.api_db_pool.to_string() }),
                json!({ "Name": "HIRING_MAX_UPLOAD_BYTES", "Value": GATEWAY_UPLOAD_BYTES.to_string() }),
                json!({ "Name": "HIRING_UPLOAD_TIMEOUT_SECS", "Value": GATEWAY_DEADLINE_SECS.to_string() }),
                json!({ "Name": "HIRING_REQUEST_TIMEOUT_SECS", "Value": GATEWAY_DEADLINE_SECS.to_string() }),
                json!({ "Name": "HIRING_PUBLIC_METRICS", "Value": cfg.public_metrics.to_string() }),
                // Every deadline of an ingestion derives from it (hiring::lifecycle::Deadlines):
                // the upload URLs' life and the API's sweep.
                json!({ "Name": "HIRING_WORKFLOW_WAIT_SECS", "Value": (u64::from(cfg.workflow_wait_minutes) * 60).to_string() }),
                // Uploads are staged on the task's volume (see `image_task`).
                json!({ "Name": "HIRING_DATA_DIR", "Value": API_DATA_DIR }),
                json!({ "Name": "RUST_LOG", "Value": "info" }),
            ],
            logs: &api_logs,
            log_prefix: "api",
            container: json!({
                "Name": "api",
                "PortMappings": [{ "ContainerPort": API_PORT, "Protocol": "tcp" }],
                "Secrets": [
                    { "Name": "HIRING_API_TOKENS", "ValueFrom": token.id.r#ref() }
                ],
                "HealthCheck": {
                    "Command": ["CMD", "/usr/local/bin/hiring-api", "--health"],
                    "Interval": 15, "Timeout": 5, "Retries": 3, "StartPeriod": 30
                },
            }),
        });
        ApiTask { cluster: cluster.clone(), task }
    }

    /// A Fargate task definition of the API image, the one way the stack's tasks are made. Its
    /// execution role (`spec.execution_role`, with any grant declared for it before) pulls the
    /// image and writes `spec.logs`. The container runs as user 65532 on a read-only root
    /// filesystem; its one writable place is the task volume `scratch`, mounted at
    /// `API_DATA_DIR`, where the image declares a VOLUME owned by that user: Fargate bind mounts
    /// are root's, mode 0755, unless the image has a VOLUME at the same path, whose ownership is
    /// copied (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/bind-mounts.html).
    /// Its environment is the zones' and the database's, then `spec.env`; `spec.container`
    /// adds the container's own properties (name, entry point, ports, health check…).
    fn image_task(&mut self, spec: ImageTask<'_>) -> LogicalId {
        let cfg = self.cfg;
        let repository = Target::Repository { id: "ApiRepository".into(), arn: crate::api_repository_arn() };
        self.grant(spec.execution_role, Access::Read, repository);
        self.grant(spec.execution_role, Access::Read, Target::EcrAuthorization);
        self.grant(spec.execution_role, Access::Write, Target::LogGroup(spec.logs.clone()));
        let execution_role = self.role(spec.execution_role, "ecs-tasks.amazonaws.com");
        let mut env: Vec<Value> = spec
            .zones
            .urls
            .iter()
            .chain(spec.database.client_env().iter())
            .map(|(k, v)| json!({ "Name": k, "Value": v }))
            .collect();
        env.extend(spec.env);
        let mut container = json!({
            "Image": spec.image.r#ref(),
            "Essential": true,
            "ReadonlyRootFilesystem": true,
            "User": "65532",
            "MountPoints": [{ "SourceVolume": "scratch", "ContainerPath": API_DATA_DIR, "ReadOnly": false }],
            "Environment": env,
            "LogConfiguration": {
                "LogDriver": "awslogs",
                "Options": {
                    "awslogs-group": spec.logs.r#ref(),
                    "awslogs-region": { "Ref": "AWS::Region" },
                    "awslogs-stream-prefix": spec.log_prefix
                }
            }
        });
        if let (Some(base), Value::Object(own)) = (container.as_object_mut(), spec.container) {
            base.extend(own);
        }
        let task = self.t.add(
            spec.id,
            Resource::new(
                ResourceType::EcsTaskDefinition,
                json!({
                    "Family": spec.family,
                    "RequiresCompatibilities": ["FARGATE"],
                    "NetworkMode": "awsvpc",
                    "Cpu": spec.cpu.to_string(),
                    "Memory": spec.memory_mb.to_string(),
                    "RuntimePlatform": { "CpuArchitecture": cfg.architecture.ecs(), "OperatingSystemFamily": "LINUX" },
                    "ExecutionRoleArn": execution_role.get_att("Arn"),
                    "TaskRoleArn": spec.task_role.get_att("Arn"),
                    "Volumes": [{ "Name": "scratch" }],
                    "ContainerDefinitions": [container],
                    "Tags": self.tags,
                }),
            ),
        );
        self.role_owners.push((execution_role, task.clone()));
        self.role_owners.push((spec.task_role, task.clone()));
        task
    }

    /// The API's ECS service, behind an internal load balancer.
    fn api_service(
        &mut self,
        network: &Network,
        groups: &SecurityGroups,
        task: &ApiTask,
        database: &Database,
    ) -> ApiService {
        let cfg = self.cfg;
        let load_balancer = self.t.add(
            "LoadBalancer",
            Resource::new(
                ResourceType::LoadBalancer,
                json!({
                    "Type": "application",
                    "Scheme": "internal",
                    "Subnets": network.subnet_ids,
                    "SecurityGroups": [groups.load_balancer.get_att("GroupId")],
                    "LoadBalancerAttributes": [
                        { "Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true" },
                        { "Key": "deletion_protection.enabled", "Value": cfg.deletion_protection.to_string() }
                    ],
                    "Tags": self.tags,
                }),
            )
            .skip_check(checks::LOAD_BALANCER_ACCESS_LOGS),
        );
        let target_group = self.t.add(
            "ApiTargetGroup",
            Resource::new(
                ResourceType::LoadBalancerTargetGroup,
                json!({
                    "TargetType": "ip",
                    "Protocol": "HTTP",
                    "Port": API_PORT,
                    "VpcId": network.vpc.r#ref(),
                    "HealthCheckPath": "/health",
                    "HealthCheckIntervalSeconds": 15,
                    "HealthyThresholdCount": 2,
                    "UnhealthyThresholdCount": 3,
                    "TargetGroupAttributes": [{ "Key": "deregistration_delay.timeout_seconds", "Value": "30" }],
                    "Tags": self.tags,
                }),
            ),
        );
        let listener = self.t.add(
            "ApiListener",
            Resource::new(
                ResourceType::LoadBalancerListener,
                json!({
                    "LoadBalancerArn": load_balancer.r#ref(),
                    "Protocol": "HTTP",
                    "Port": 80,
                    "DefaultActions": [{ "Type": "forward", "TargetGroupArn": target_group.r#ref() }],
                }),
            )
            .skip_check(checks::INTERNAL_HTTP_LISTENER)
            .skip_check(checks::INTERNAL_LISTENER_TLS_POLICY),
        );
        let service = self.t.add(
            "ApiService",
            Resource::new(
                ResourceType::EcsService,
                json!({
                    "ServiceName": cfg.name("api"),
                    "Cluster": task.cluster.r#ref(),
                    "TaskDefinition": task.task.r#ref(),
                    "LaunchType": "FARGATE",
                    "DeploymentConfiguration": {
                        "DeploymentCircuitBreaker": { "Enable": true, "Rollback": true },
                        "MinimumHealthyPercent": 100,
                        "MaximumPercent": 200
                    },
                    "HealthCheckGracePeriodSeconds": 60,
                    "NetworkConfiguration": { "AwsvpcConfiguration": {
                        "AssignPublicIp": "DISABLED",
                        "Subnets": network.subnet_ids,
                        "SecurityGroups": [groups.api.get_att("GroupId")]
                    } },
                    "LoadBalancers": [{ "ContainerName": "api", "ContainerPort": API_PORT, "TargetGroupArn": target_group.r#ref() }],
                    "PropagateTags": "SERVICE",
                    "Tags": self.tags,
                }),
            )
            .depends_on(&listener),
        );
        // No DesiredCount in AWS: every stack update would set it again, cutting a service the
        // policy scaled out back to its minimum. Left out, a new service starts with one task,
        // the scalable target raises it to the minimum, and updates leave the count alone
        // (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-ecs-service.html).
        // On the emulator, which runs no tasks and scales nothing, the service wants none.
        if cfg.emulator
            && let Some(resource) = self.t.resources.get_mut(&service)
        {
            resource.properties["DesiredCount"] = json!(0);
        }
        self.api_autoscaling(task, &service);
        self.flow(&task.cluster, "runs", &service);
        self.flow(&service, "runs", &task.task);
        self.flow(&load_balancer, "forwards to", &service);
        self.flow(&task.task, "queries", &database.id);
        ApiService { load_balancer, listener, service }
    }

    /// ECS target tracking on the service's average CPU, between the stage's minimum and maximum
    /// task counts. Application Auto Scaling acts through its service-linked role, which it
    /// creates on the first registration
    /// (https://docs.aws.amazon.com/autoscaling/application/userguide/services-that-can-integrate-ecs.html).
    fn api_autoscaling(&mut self, task: &ApiTask, service: &LogicalId) {
        let cfg = self.cfg;
        let target = self.t.add(
            "ApiScalableTarget",
            Resource::new(
                ResourceType::AutoScalingTarget,
                json!({
                    "ServiceNamespace": "ecs",
                    "ScalableDimension": "ecs:service:DesiredCount",
                    "ResourceId": join(vec![json!("service/"), task.cluster.r#ref(), json!("/"), service.get_att("Name")]),
                    "MinCapacity": cfg.api_min_tasks,
                    "MaxCapacity": cfg.api_max_tasks,
                }),
            ),
        );
        self.t.add(
            "ApiScalingPolicy",
            Resource::new(
                ResourceType::AutoScalingPolicy,
                json!({
                    "PolicyName": cfg.name("api-cpu"),
                    "PolicyType": "TargetTrackingScaling",
                    "ScalingTargetId": target.r#ref(),
                    "TargetTrackingScalingPolicyConfiguration": {
                        "PredefinedMetricSpecification": { "PredefinedMetricType": "ECSServiceAverageCPUUtilization" },
                        "TargetValue": cfg.api_cpu_target_percent,
                        "ScaleOutCooldown": 60,
                        "ScaleInCooldown": 300
                    },
                }),
            ),
        );
    }

    /// API Gateway in front of the load balancer, through a VPC link.
    fn api_gateway(&mut self, network: &Network, groups: &SecurityGroups, service: &ApiService) -> LogicalId {
        let cfg = self.cfg;
        let api_access_logs =
            self.log_group("ApiAccessLogGroup", json!(format!("/aws/apigateway/{}", cfg.name("api"))));
        let http_api = self.t.add(
            "HttpApi",
            Resource::new(
                ResourceType::ApiGatewayV2Api,
                json!({
                    "Name": cfg.name("api"),
                    "Description": "The hiring API (uploads, batches, metrics, backups)",
                    "ProtocolType": "HTTP",
                    "Tags": cfg.tags.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                }),
            ),
        );
        let vpc_link = self.t.add(
            "VpcLink",
            Resource::new(
                ResourceType::ApiGatewayV2VpcLink,
                json!({
                    "Name": cfg.name("api"),
                    "SubnetIds": network.subnet_ids,
                    "SecurityGroupIds": [groups.vpc_link.get_att("GroupId")],
                }),
            ),
        );
        let integration = self.t.add(
            "ApiIntegration",
            Resource::new(
                ResourceType::ApiGatewayV2Integration,
                json!({
                    "ApiId": http_api.r#ref(),
                    "IntegrationType": "HTTP_PROXY",
                    "IntegrationMethod": "ANY",
                    "IntegrationUri": service.listener.r#ref(),
                    "ConnectionType": "VPC_LINK",
                    "ConnectionId": vpc_link.r#ref(),
                    "PayloadFormatVersion": "1.0",
                    "TimeoutInMillis": 29000,
                }),
            ),
        );
        self.t.add(
            "ApiRoute",
            Resource::new(
                ResourceType::ApiGatewayV2Route,
                json!({ "ApiId": http_api.r#ref(), "RouteKey": "$default", "Target": sub(format!("integrations/${{{integration}}}")) }),
            ),
        );
        self.t.add(
            "ApiStage",
            Resource::new(
                ResourceType::ApiGatewayV2Stage,
                json!({
                    "ApiId": http_api.r#ref(),
                    "StageName": "$default",
                    "AutoDeploy": true,
                    "DefaultRouteSettings": {
                        "ThrottlingRateLimit": cfg.api_rate_limit,
                        "ThrottlingBurstLimit": cfg.api_burst_limit
                    },
                    "AccessLogSettings": {
                        "DestinationArn": api_access_logs.get_att("Arn"),
                        "Format": "{\"requestId\":\"$context.requestId\",\"ip\":\"$context.identity.sourceIp\",\"method\":\"$context.httpMethod\",\"path\":\"$context.path\",\"status\":\"$context.status\",\"latency\":\"$context.responseLatency\",\"integrationError\":\"$context.integrationErrorMessage\"}"
                    },
                }),
            ),
        );
        self.flow(&http_api, "VPC link", &service.load_balancer);
        http_api
    }

    /// Alarms, published to a topic operators subscribe to.
    /// The stage's CloudWatch dashboard: ingest rows/s and rejects by reason (the metrics the
    /// functions publish, `hiring_functions::ROWS_LOADED` and `ROWS_REJECTED`, in
    /// [`metrics_namespace`]), pipeline failures (Step Functions), the API's latency and 5xx
    /// (API Gateway), the database's CPU, connections and free storage (RDS). The metrics of
    /// AWS's namespaces are those services' own: "Monitoring Step Functions metrics",
    /// "Monitor HTTP API metrics", "Metrics for Amazon RDS".
    fn dashboard(&mut self, state_machine: &LogicalId, api: &Api, database: &Database) {
        let cfg = self.cfg;
        let namespace = metrics_namespace(cfg);
        let widget = |title: &str, x: u32, y: u32, properties: Value| {
            let mut properties = properties;
            properties["title"] = json!(title);
            properties["region"] = json!("${AWS::Region}");
            properties["view"] = json!("timeSeries");
            json!({ "type": "metric", "x": x, "y": y, "width": 12, "height": 6, "properties": properties })
        };
        let tables = ["hired_employees", "departments", "jobs"];
        let mut loaded: Vec<Value> = tables
            .iter()
            .enumerate()
            .map(|(i, table)| {
                json!([namespace, DASHBOARD_ROWS_LOADED, "Table", table, { "id": format!("m{i}"), "stat": "Sum", "visible": false }])
            })
            .collect();
        loaded.push(json!([{ "expression": "SUM([m0, m1, m2]) / PERIOD(m0)", "label": "rows/s", "id": "rate" }]));
        let body = json!({ "widgets": [
            widget("Ingest: rows loaded per second", 0, 0, json!({ "metrics": loaded, "period": 60 })),
            widget("Rejected rows by reason", 12, 0, json!({ "metrics": [[{
                // A namespace with a hyphen is quoted inside the schema ("CloudWatch search
                // expression syntax").
                "expression": format!("SEARCH('{{\"{namespace}\",Table,Reason}} MetricName=\"{DASHBOARD_ROWS_REJECTED}\"', 'Sum', 300)"),
                "id": "rejects", "label": ""
            }]], "period": 300 })),
            widget("Pipeline executions", 0, 6, json!({ "metrics": [
                ["AWS/States", "ExecutionsFailed", "StateMachineArn", format!("${{{state_machine}}}"), { "stat": "Sum" }],
                ["AWS/States", "ExecutionsTimedOut", "StateMachineArn", format!("${{{state_machine}}}"), { "stat": "Sum" }],
                ["AWS/States", "ExecutionsSucceeded", "StateMachineArn", format!("${{{state_machine}}}"), { "stat": "Sum" }]
            ], "period": 300 })),
            widget("API: latency and 5xx", 12, 6, json!({ "metrics": [
                ["AWS/ApiGateway", "Latency", "ApiId", format!("${{{}}}", api.http_api), "Stage", "$default", { "stat": "p50" }],
                ["AWS/ApiGateway", "Latency", "ApiId", format!("${{{}}}", api.http_api), "Stage", "$default", { "stat": "p99" }],
                ["AWS/ApiGateway", "5xx", "ApiId", format!("${{{}}}", api.http_api), "Stage", "$default", { "stat": "Sum", "yAxis": "right" }]
            ], "period": 60 })),
            widget("Database: CPU, connections, free storage", 0, 12, json!({ "metrics": [
                ["AWS/RDS", "CPUUtilization", "DBInstanceIdentifier", format!("${{{}}}", database.id), { "stat": "Average" }],
                ["AWS/RDS", "DatabaseConnections", "DBInstanceIdentifier", format!("${{{}}}", database.id), { "stat": "Maximum", "yAxis": "right" }],
                ["AWS/RDS", "FreeStorageSpace", "DBInstanceIdentifier", format!("${{{}}}", database.id), { "stat": "Minimum", "yAxis": "right" }]
            ], "period": 300 })),
        ] });
        let dashboard = self.t.add(
            "Dashboard",
            Resource::new(
                ResourceType::CloudWatchDashboard,
                json!({ "DashboardName": cfg.name("dashboard"), "DashboardBody": sub(body.to_string()) }),
            ),
        );
        self.flow(&dashboard, "shows", state_machine);
        self.t.output("DashboardName", "The stage's CloudWatch dashboard", dashboard.r#ref());
    }

    fn alarms(
        &mut self,
        state_machine: &LogicalId,
        api: &Api,
        database: &Database,
        dead_letters: &LogicalId,
    ) -> LogicalId {
        let cfg = self.cfg;
        let topic = self.t.add(
            "AlarmTopic",
            Resource::new(ResourceType::SnsTopic, json!({ "TopicName": cfg.name("alarms"), "Tags": self.tags }))
                .skip_check(checks::ALARM_TOPIC_CMK),
        );
        // Someone to tell: an address `cargo xtask deploy --alarm-email` passes (SNS mails it a
        // confirmation link once). Left empty, the topic has no subscriber, as before.
        let email = self.t.optional_parameter(
            "AlarmEmail",
            "The address the alarms are mailed to (it must confirm SNS's first message); empty: none",
            "",
            "^$|^[^@\\s]+@[^@\\s]+$",
        );
        let has_email =
            self.t.condition("HasAlarmEmail", json!({ "Fn::Not": [{ "Fn::Equals": [email.r#ref(), ""] }] }));
        self.t.add(
            "AlarmEmailSubscription",
            Resource::new(
                ResourceType::SnsSubscription,
                json!({ "TopicArn": topic.r#ref(), "Protocol": "email", "Endpoint": email.r#ref() }),
            )
            .only_if(&has_email),
        );
        let t = &mut self.t;
        let mut alarm = |id: &str, description: &str, metric: Value| {
            let mut properties = json!({
                "AlarmDescription": description,
                "AlarmActions": [topic.r#ref()],
                "OKActions": [topic.r#ref()],
                "TreatMissingData": "notBreaching",
            });
            properties.as_object_mut().expect("an object").extend(metric.as_object().expect("an object").clone());
            t.add(id, Resource::new(ResourceType::CloudWatchAlarm, properties));
        };
        let sum_at_least_one = |namespace: &str, metric: &str, dimensions: Value| {
            json!({
                "Namespace": namespace, "MetricName": metric, "Dimensions": dimensions,
                "Statistic": "Sum", "Period": 300, "EvaluationPeriods": 1,
                "Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            })
        };
        alarm(
            "PipelineFailedAlarm",
            "A pipeline execution failed: see the state machine's failed executions",
            sum_at_least_one(
                "AWS/States",
                "ExecutionsFailed",
                json!([{ "Name": "StateMachineArn", "Value": state_machine.r#ref() }]),
            ),
        );
        for (prefix, binary, _) in FUNCTIONS {
            alarm(
                &format!("{prefix}ErrorsAlarm"),
                &format!("The {binary} function failed"),
                sum_at_least_one(
                    "AWS/Lambda",
                    "Errors",
                    json!([{ "Name": "FunctionName", "Value": cfg.name(binary) }]),
                ),
            );
        }
        alarm(
            "IngestionsSweptAlarm",
            "The sweep closed ingestions that stayed unfinished past their deadline: see the API's logs (swept, ids) and each ingestion's error",
            sum_at_least_one(&metrics_namespace(cfg), SWEPT_METRIC, json!([])),
        );
        alarm(
            "Api5xxAlarm",
            "API Gateway answered 5xx",
            sum_at_least_one(
                "AWS/ApiGateway",
                "5xx",
                json!([{ "Name": "ApiId", "Value": api.http_api.r#ref() }, { "Name": "Stage", "Value": "$default" }]),
            ),
        );
        alarm(
            "ApiTarget5xxAlarm",
            "The API tasks answered 5xx",
            sum_at_least_one(
                "AWS/ApplicationELB",
                "HTTPCode_Target_5XX_Count",
                json!([{ "Name": "LoadBalancer", "Value": api.load_balancer.get_att("LoadBalancerFullName") }]),
            ),
        );
        alarm(
            "DeadLettersAlarm",
            "An event or a backup run could not be delivered: see the dead-letter queue",
            json!({
                "Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{ "Name": "QueueName", "Value": dead_letters.get_att("QueueName") }],
                "Statistic": "Maximum", "Period": 300, "EvaluationPeriods": 1,
                "Threshold": 1, "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            }),
        );
        let db_dimensions = json!([{ "Name": "DBInstanceIdentifier", "Value": database.id.r#ref() }]);
        alarm(
            "DatabaseCpuAlarm",
            "PostgreSQL's CPU stayed above 80% for 15 minutes",
            json!({
                "Namespace": "AWS/RDS", "MetricName": "CPUUtilization", "Dimensions": db_dimensions,
                "Statistic": "Average", "Period": 300, "EvaluationPeriods": 3,
                "Threshold": 80, "ComparisonOperator": "GreaterThanThreshold",
            }),
        );
        alarm(
            "DatabaseStorageAlarm",
            "PostgreSQL has less than 10% of its storage free",
            json!({
                "Namespace": "AWS/RDS", "MetricName": "FreeStorageSpace", "Dimensions": db_dimensions,
                "Statistic": "Minimum", "Period": 300, "EvaluationPeriods": 1,
                "Threshold": u64::from(cfg.db_storage_gb) * 1024 * 1024 * 1024 / 10,
                "ComparisonOperator": "LessThanThreshold",
            }),
        );
        topic
    }

    /// Outputs.
    fn outputs(
        &mut self,
        parameters: &Parameters,
        zones: &Zones,
        database: &Database,
        state_machine: &LogicalId,
        api: &Api,
        topic: &LogicalId,
    ) {
        let t = &mut self.t;
        if self.cfg.emulator {
            // moto only pretends to create API Gateway v2 resources; the load balancer is real.
            t.output(
                "ApiUrl",
                "The API's URL (the load balancer's: the emulator has no API Gateway v2)",
                sub("http://${LoadBalancer.DNSName}"),
            );
        } else {
            t.output("ApiUrl", "The API's URL", api.http_api.get_att("ApiEndpoint"));
        }
        for (id, what) in [
            (&zones.raw, "raw"),
            (&zones.rejects, "rejects"),
            (&zones.processed, "processed"),
            (&zones.backups, "backups"),
        ] {
            t.output(&format!("{id}Name"), &format!("The {what} zone's bucket"), id.r#ref());
        }
        t.output("StateMachineArn", "The pipeline's state machine", state_machine.r#ref());
        t.output("ApiTokenSecretArn", "The secret holding the API's tokens by scope", sub(api.token_arn.clone()));
        t.output("ApiImage", "The API image the service runs", parameters.image.r#ref());
        t.output("DatabaseEndpoint", "PostgreSQL's address", database.id.get_att("Endpoint.Address"));
        t.output("DatabaseSecretArn", "The secret holding PostgreSQL's master user", sub(database.secret_arn.clone()));
        t.output("ClusterName", "The ECS cluster", api.cluster.r#ref());
        t.output("ServiceName", "The API's ECS service", api.service.get_att("Name"));
        t.output("AlarmTopicArn", "Subscribe to this topic to hear about alarms", topic.r#ref());
    }
}

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
