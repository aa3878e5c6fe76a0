//! The stage stack deploys: the bootstrap and `local` templates are created on the moto
//! server's CloudFormation, then every resource the emulator supports is looked up with the
//! AWS SDK (or, for services nothing else calls, a plain signed API call) and checked against the configuration the stack declares.
//!
//! moto's CloudFormation creates most types for real, but for some it only pretends (it
//! reports CREATE_COMPLETE and creates nothing) and for others it creates the resource but
//! ignores some properties. Both lists are explicit below ([`PRETENDED`], and the comments of
//! each check); what moto cannot show is checked on the template by cfn-guard
//! (`stack/rules/`, run by `cargo xtask test`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use devenv::moto::Moto;
use serde_json::Value;
use sha2::{Digest, Sha256};
use stack::Stage;
use stack::template::Template;

/// Resource types moto's CloudFormation accepts without creating anything.
const PRETENDED: [&str; 16] = [
    // The sweep's metric filter (stack/tests/workflow.rs checks its pattern, metric and alarm
    // on the template); moto has no CloudFormation model for it.
    "AWS::Logs::MetricFilter",
    // The API's autoscaling (stack/tests/budget.rs checks its bounds on the template).
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
    // The dead-letter queue's policy and the alarm subscription (stack/tests/aws_requirements.rs and
    // checkov check them on the template).
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::Subscription",
    "AWS::S3::BucketPolicy",
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::VpcLink",
    "AWS::ApiGatewayV2::Integration",
    "AWS::ApiGatewayV2::Route",
    "AWS::ApiGatewayV2::Stage",
    "AWS::Scheduler::Schedule",
    "AWS::CloudWatch::Alarm",
    // The analytics catalog and workgroup (tests/tests/e2e/analytics.rs checks the tables
    // against the Parquet files; stack/src/iam.rs's grants are linted by parliament).
    "AWS::Glue::Database",
    "AWS::Glue::Table",
    "AWS::Athena::WorkGroup",
];

/// Resource types this test looks up with the SDK.
const VERIFIED: [&str; 24] = [
    "AWS::SQS::Queue",
    "AWS::S3::Bucket",
    "AWS::Lambda::Function",
    "AWS::StepFunctions::StateMachine",
    "AWS::Events::Rule",
    "AWS::IAM::Role",
    "AWS::Logs::LogGroup",
    "AWS::RDS::DBInstance",
    "AWS::RDS::DBSubnetGroup",
    "AWS::ECS::Cluster",
    "AWS::ECS::Service",
    "AWS::ECS::TaskDefinition",
    "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AWS::ElasticLoadBalancingV2::Listener",
    "AWS::EC2::VPC",
    "AWS::EC2::Subnet",
    "AWS::EC2::SecurityGroup",
    "AWS::EC2::VPCEndpoint",
    "AWS::EC2::RouteTable",
    "AWS::EC2::SubnetRouteTableAssociation",
    "AWS::SNS::Topic",
    "AWS::ECR::Repository",
    // Created with its name as the physical id (its metric names are checked against what the
    // functions print in tests/tests/lambda_emulator.rs).
    "AWS::CloudWatch::Dashboard",
];

fn lambda_dir() -> PathBuf {
    std::env::var_os("HIRING_LAMBDA_DIR").map(PathBuf::from).unwrap_or_else(|| {
        panic!("HIRING_LAMBDA_DIR is not set: run `cargo xtask test`, which builds the functions first")
    })
}

async fn create_stack(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    template: &Template,
    parameters: Vec<Parameter>,
) -> BTreeMap<String, String> {
    cfn.create_stack()
        .stack_name(name)
        .template_body(template.to_json())
        .set_parameters(Some(parameters))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStack {name}: {}", aws_sdk_cloudformation::error::DisplayErrorContext(&e)));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stacks = cfn.describe_stacks().stack_name(name).send().await.expect("DescribeStacks");
        let stack = &stacks.stacks()[0];
        match stack.stack_status() {
            Some(StackStatus::CreateComplete) => {
                return stack
                    .outputs()
                    .iter()
                    .map(|o| {
                        (o.output_key().unwrap_or_default().to_owned(), o.output_value().unwrap_or_default().to_owned())
                    })
                    .collect();
            }
            Some(StackStatus::CreateInProgress) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => {
                let events = cfn.describe_stack_events().stack_name(name).send().await.expect("DescribeStackEvents");
                let failures: Vec<String> = events
                    .stack_events()
                    .iter()
                    .filter(|e| e.resource_status().is_some_and(|s| s.as_str().ends_with("FAILED")))
                    .map(|e| format!("{:?}: {:?}", e.logical_resource_id(), e.resource_status_reason()))
                    .collect();
                panic!("{name} ended {other:?} ({:?}): {failures:?}", stack.stack_status_reason());
            }
        }
    }
}

/// The query-protocol API versions of the services inspected with plain signed calls
/// (`devenv::aws`): one SDK crate each would cost minutes of compile time for one or two calls.
const EC2: &str = "2016-11-15";
const ELB: &str = "2015-12-01";
const IAM: &str = "2010-05-08";
const RDS: &str = "2014-10-31";
const SNS: &str = "2010-03-31";
const SQS: &str = "2012-11-05";

fn parameter(key: &str, value: &str) -> Parameter {
    Parameter::builder().parameter_key(key).parameter_value(value).build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_stage_deploys_on_the_emulator_with_the_declared_configuration() {
    let moto = Moto::start().expect("moto starts");
    let sdk = moto.sdk_config().await;
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let templates = stack::synth(Stage::Local);
    let template_of = |file: &str| &templates.iter().find(|s| s.file == file).expect("synthesized").template;

    // Bootstrap: the assets bucket and the image repository.
    let bootstrap = create_stack(&cfn, "hiring-bootstrap", template_of("bootstrap.json"), vec![]).await;
    let assets = &bootstrap["AssetsBucketName"];
    assert_eq!(assets, "hiring-assets-123456789012-us-east-1");
    let ecr = aws_sdk_ecr::Client::new(&sdk);
    let repositories =
        ecr.describe_repositories().repository_names("hiring-api").send().await.expect("DescribeRepositories");
    let repository = &repositories.repositories()[0];
    assert_eq!(repository.image_tag_mutability().map(|m| m.as_str()), Some("IMMUTABLE"));
    // moto ignores ImageScanningConfiguration (scan on push): cfn-guard checks it.
    assert_eq!(bootstrap["RepositoryUri"], repository.repository_uri().unwrap_or_default());

    // Publish the built functions under their content hash, as `publish` does.
    let mut parameters = Vec::new();
    for (prefix, binary, _) in stack::topology::FUNCTIONS {
        let zip = std::fs::read(lambda_dir().join(binary).join("bootstrap.zip"))
            .unwrap_or_else(|e| panic!("the {binary} zip (cargo xtask build-functions): {e}"));
        let key = format!("functions/{binary}/{:x}.zip", Sha256::digest(&zip));
        s3.put_object().bucket(assets).key(&key).body(zip.into()).send().await.expect("PutObject");
        parameters.push(parameter(&stack::topology::code_key_parameter(prefix), &key));
    }
    let image = format!("{}@sha256:{}", bootstrap["RepositoryUri"], "ab".repeat(32));
    parameters.push(parameter(stack::topology::API_IMAGE_PARAMETER, &image));
    // The emulator stage takes its secrets as parameters (see stack::topology).
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let mut secret_arns = BTreeMap::new();
    for (parameter_key, name, value) in [
        ("DatabaseSecretArn", "hiring-local/db", r#"{"username":"postgres","password":"local"}"#),
        ("AppDatabaseSecretArn", "hiring-local/db-app", r#"{"username":"hiring_app","password":"local"}"#),
        ("ApiTokenSecretArn", "hiring-local/api-tokens", r#"{"write":"local-write-token-0123456789"}"#),
    ] {
        let created = secrets.create_secret().name(name).secret_string(value).send().await.expect("CreateSecret");
        let arn = created.arn().expect("an ARN").to_owned();
        parameters.push(parameter(parameter_key, &arn));
        secret_arns.insert(parameter_key, arn);
    }

    let stage = template_of("local/stage.json");
    let outputs = create_stack(&cfn, "hiring-local", stage, parameters).await;

    // Every resource type is either verified below or known to be pretended.
    let types: BTreeSet<&str> = stage.resources.values().map(|r| r.kind.as_str()).collect();
    for kind in &types {
        assert!(
            VERIFIED.contains(kind) || PRETENDED.contains(kind),
            "{kind} is neither verified by this test nor listed as pretended by moto: add it to one list"
        );
    }
    let resources =
        cfn.describe_stack_resources().stack_name("hiring-local").send().await.expect("DescribeStackResources");
    let physical: BTreeMap<String, String> = resources
        .stack_resources()
        .iter()
        .map(|r| {
            (
                r.logical_resource_id().unwrap_or_default().to_owned(),
                r.physical_resource_id().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let created: BTreeSet<&str> = resources.stack_resources().iter().filter_map(|r| r.resource_type()).collect();
    for kind in PRETENDED.iter().filter(|k| types.contains(*k)) {
        assert!(!created.contains(kind), "moto now creates {kind}: move it to VERIFIED and check it");
    }
    let missing: Vec<String> = stage
        .resources
        .iter()
        // moto reports no physical id for the DB subnet group; it is checked through RDS below.
        .filter(|(_, r)| r.kind.as_str() != "AWS::RDS::DBSubnetGroup")
        .filter(|(id, r)| VERIFIED.contains(&r.kind.as_str()) && physical.get(id.as_str()).is_none_or(|p| p.is_empty()))
        .map(|(id, r)| format!("{id} ({})", r.kind.as_str()))
        .collect();
    assert!(missing.is_empty(), "not created: {missing:?}\nthe stack's resources: {physical:?}");

    // Buckets: moto applies the encryption; versioning, the public access block, the
    // EventBridge notification and the TLS-only policy are accepted but not applied (cfn-guard
    // checks them on the template).
    for zone in ["Raw", "Rejects", "Processed", "Backups"] {
        let bucket = &outputs[&format!("{zone}BucketName")];
        assert_eq!(bucket, &physical[&format!("{zone}Bucket")]);
        let encryption = s3.get_bucket_encryption().bucket(bucket).send().await.expect("GetBucketEncryption");
        let rule = &encryption.server_side_encryption_configuration().expect("encryption").rules()[0];
        assert_eq!(
            rule.apply_server_side_encryption_by_default().map(|d| d.sse_algorithm().as_str()),
            Some("AES256"),
            "{bucket}"
        );
    }

    // Functions: runtime, handler, architecture, size, VPC, and the zones and secret they use.
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    for (prefix, binary, _) in stack::topology::FUNCTIONS {
        let function =
            lambda.get_function().function_name(format!("hiring-local-{binary}")).send().await.expect("GetFunction");
        let config = function.configuration().expect("a configuration");
        assert_eq!(config.runtime().map(|r| r.as_str()), Some("provided.al2023"));
        assert_eq!(config.handler(), Some("bootstrap"));
        assert_eq!(config.architectures().iter().map(|a| a.as_str()).collect::<Vec<_>>(), ["x86_64"]);
        assert_eq!(config.memory_size(), Some(512));
        assert_eq!(config.timeout(), Some(300));
        assert_eq!(config.vpc_config().map(|v| v.subnet_ids().len()), Some(2), "{prefix} runs in both private subnets");
        let env = config.environment().and_then(|e| e.variables()).expect("variables");
        assert_eq!(env["HIRING_RAW_URL"], format!("s3://{}/", outputs["RawBucketName"]));
        assert_eq!(env["HIRING_PROCESSED_URL"], format!("s3://{}/", outputs["ProcessedBucketName"]));
        // The pool serves as the application role; the master user applies the migrations.
        assert_eq!(env["HIRING_DB_SECRET_ARN"], secret_arns["AppDatabaseSecretArn"]);
        assert_eq!(env["HIRING_DB_ADMIN_SECRET_ARN"], secret_arns["DatabaseSecretArn"]);
        assert_eq!(env["HIRING_DB_SSLMODE"], "verify-full");
        assert_eq!(env["HIRING_DB_MAX_CONNECTIONS"], "2");
        assert_eq!(env["HIRING_DB_HOST"], outputs["DatabaseEndpoint"]);
        assert!(config.role().is_some_and(|r| r.contains(&format!("{prefix}Role"))), "{prefix}: its own role");
    }

    // The state machine: the definition with the functions' ARNs; validate → choice → process.
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let machine = sfn
        .describe_state_machine()
        .state_machine_arn(&outputs["StateMachineArn"])
        .send()
        .await
        .expect("DescribeStateMachine");
    let definition: Value = serde_json::from_str(machine.definition()).expect("the definition is JSON");
    assert_eq!(definition["StartAt"], "Validate");
    let validate_arn = "arn:aws:lambda:us-east-1:123456789012:function:hiring-local-validate";
    assert_eq!(definition["States"]["Validate"]["Parameters"]["FunctionName"], validate_arn);
    assert_eq!(definition["States"]["Loadable?"]["Choices"][0]["Next"], "Engine?");
    assert_eq!(definition["States"]["Engine?"]["Default"], "Process");
    // The large-file branch names the deployed cluster, task definition and subnets.
    let fargate = &definition["States"]["ProcessOnFargate"]["Parameters"];
    assert_eq!(fargate["Cluster"], "arn:aws:ecs:us-east-1:123456789012:cluster/hiring-local-cluster");
    assert!(
        fargate["TaskDefinition"].as_str().is_some_and(|arn| arn.contains(":task-definition/hiring-local-process"))
    );
    assert!(
        fargate["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"][0]
            .as_str()
            .is_some_and(|s| s.starts_with("subnet-"))
    );
    assert_eq!(definition["States"]["Process"]["Retry"][0]["ErrorEquals"][0], "hiring.Retryable");
    // A hires file waiting for its upload's departments and jobs is retried for the stage's
    // workflow wait, shorter than a presigned URL's life: the sum of its delays.
    let waiting = &definition["States"]["Validate"]["Retry"][1];
    assert_eq!(waiting["ErrorEquals"][0], "hiring.Waiting");
    let (interval, rate, cap) = (
        waiting["IntervalSeconds"].as_f64().unwrap(),
        waiting["BackoffRate"].as_f64().unwrap(),
        waiting["MaxDelaySeconds"].as_f64().unwrap(),
    );
    let waited: f64 =
        (0..waiting["MaxAttempts"].as_i64().unwrap()).map(|n| (interval * rate.powi(n as i32)).min(cap)).sum();
    let wait = f64::from(stack::Stage::Local.config().workflow_wait_minutes) * 60.0;
    assert!(waited <= wait && waited > wait * 0.9, "a hires file waits {waited} s at most, for a {wait} s wait");
    // Its failure path records the failure on the ingestion, then fails the execution.
    assert_eq!(definition["States"]["Validate"]["Catch"][0]["Next"], "RecordFailure");
    assert_eq!(definition["States"]["RecordFailure"]["Type"], "Task");
    assert_eq!(definition["States"]["RecordFailure"]["Next"], "Failed");
    assert_eq!(definition["States"]["Failed"]["Type"], "Fail");

    // The rule: raw bucket events → the state machine, through its role.
    let rule_name = &physical["PipelineRule"];
    let rule = moto
        .json("events", "AWSEvents.DescribeRule", serde_json::json!({"Name": rule_name}))
        .await
        .expect("DescribeRule");
    let pattern: Value = serde_json::from_str(rule["EventPattern"].as_str().expect("a pattern")).expect("JSON");
    assert_eq!(pattern["detail"]["bucket"]["name"][0], outputs["RawBucketName"]);
    assert_eq!(pattern["detail-type"][0], "Object Created");
    let targets = moto
        .json("events", "AWSEvents.ListTargetsByRule", serde_json::json!({"Rule": rule_name}))
        .await
        .expect("ListTargetsByRule");
    assert_eq!(targets["Targets"][0]["Arn"], outputs["StateMachineArn"]);

    // What the rule and the backup schedule cannot deliver goes to the dead-letter queue,
    // encrypted at rest. (Its policy, which lets EventBridge send for this rule only, moto
    // does not apply: see PRETENDED.)
    let queue_url = &physical["DeadLetterQueue"];
    let queue = moto
        .query("sqs", SQS, "GetQueueAttributes", &[("QueueUrl", queue_url), ("AttributeName.1", "All")])
        .await
        .expect("GetQueueAttributes");
    let attributes: BTreeMap<String, String> =
        queue.texts("Name").unwrap().into_iter().zip(queue.texts("Value").unwrap()).collect();
    assert_eq!(targets["Targets"][0]["DeadLetterConfig"]["Arn"], attributes["QueueArn"]);
    assert_eq!(attributes.get("SqsManagedSseEnabled").map(String::as_str), Some("true"), "{attributes:?}");

    // IAM: process reads raw and writes processed, nothing else of the zones.
    let process_role = physical["ProcessRole"].rsplit('/').next().expect("a name").to_owned();
    let policy = moto
        .query("iam", IAM, "GetRolePolicy", &[("RoleName", &process_role), ("PolicyName", "least-privilege")])
        .await
        .expect("GetRolePolicy");
    let document = urlencoding_decode(&policy.text("PolicyDocument").expect("a document"));
    let raw_arn = format!("arn:aws:s3:::{}", outputs["RawBucketName"]);
    let processed_arn = format!("arn:aws:s3:::{}", outputs["ProcessedBucketName"]);
    let grants = statements(&document);
    assert!(grants.contains(&("s3:GetObject".to_owned(), format!("{raw_arn}/*"))), "{grants:?}");
    assert!(grants.contains(&("s3:PutObject".to_owned(), format!("{processed_arn}/*"))), "{grants:?}");
    assert!(!grants.iter().any(|(a, r)| a == "s3:PutObject" && r.starts_with(&raw_arn)), "process never writes raw");
    assert!(!grants.iter().any(|(a, _)| a.contains('*')), "no wildcard action: {grants:?}");

    // Log groups, with the stage's retention.
    let groups = moto
        .json(
            "logs",
            "Logs_20140328.DescribeLogGroups",
            serde_json::json!({"logGroupNamePrefix": "/aws/lambda/hiring-local-"}),
        )
        .await
        .expect("DescribeLogGroups");
    let groups = groups["logGroups"].as_array().expect("log groups");
    assert_eq!(groups.len(), 3);
    assert!(groups.iter().all(|g| g["retentionInDays"] == 7), "{groups:?}");

    // PostgreSQL: encrypted, private, in the subnet group.
    let db = moto
        .query("rds", RDS, "DescribeDBInstances", &[("DBInstanceIdentifier", &physical["Database"])])
        .await
        .expect("DescribeDBInstances");
    assert_eq!(db.text("Engine").unwrap(), "postgres");
    assert_eq!(db.text("StorageEncrypted").unwrap(), "true");
    assert_eq!(db.text("PubliclyAccessible").unwrap(), "false");
    let group_subnets: BTreeSet<String> = db.texts("SubnetIdentifier").unwrap().into_iter().collect();
    assert_eq!(
        group_subnets,
        [physical["PrivateSubnetA"].clone(), physical["PrivateSubnetB"].clone()].into_iter().collect()
    );
    assert_eq!(db.text("Address").unwrap(), outputs["DatabaseEndpoint"]);

    // ECS: the service runs the task definition with the image by digest and its secrets. moto
    // ignores the deployment configuration (circuit breaker), checked by cfn-guard instead.
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    let services = ecs
        .describe_services()
        .cluster(&outputs["ClusterName"])
        .services(&outputs["ServiceName"])
        .send()
        .await
        .expect("DescribeServices");
    let service = &services.services()[0];
    assert_eq!(service.desired_count(), 0, "the emulator stage runs the API locally, not on ECS");
    let task = ecs
        .describe_task_definition()
        .task_definition(service.task_definition().expect("a task"))
        .send()
        .await
        .expect("DescribeTaskDefinition");
    let container = &task.task_definition().expect("a task definition").container_definitions()[0];
    assert_eq!(container.image(), Some(image.as_str()));
    assert_eq!(container.readonly_root_filesystem(), Some(true));
    let secrets_of: BTreeMap<&str, &str> = container.secrets().iter().map(|s| (s.name(), s.value_from())).collect();
    assert_eq!(secrets_of["HIRING_API_TOKENS"], secret_arns["ApiTokenSecretArn"]);
    let env: BTreeMap<&str, &str> =
        container.environment().iter().filter_map(|kv| Some((kv.name()?, kv.value()?))).collect();
    // The task reads the database secret itself, again after a rotation (not injected once).
    assert!(!secrets_of.contains_key("HIRING_DB_SECRET"));
    assert_eq!(env["HIRING_DB_SECRET_ARN"], secret_arns["AppDatabaseSecretArn"]);
    assert_eq!(env["HIRING_DB_ADMIN_SECRET_ARN"], secret_arns["DatabaseSecretArn"]);
    assert_eq!(env["HIRING_PIPELINE"], "stepfunctions");
    assert_eq!(env["HIRING_RAW_URL"], format!("s3://{}/", outputs["RawBucketName"]));

    // The internal load balancer and its target group's health check.
    let balancers = moto
        .query(
            "elasticloadbalancing",
            ELB,
            "DescribeLoadBalancers",
            &[("LoadBalancerArns.member.1", &physical["LoadBalancer"])],
        )
        .await
        .expect("DescribeLoadBalancers");
    assert_eq!(balancers.text("Scheme").unwrap(), "internal");
    let groups = moto
        .query(
            "elasticloadbalancing",
            ELB,
            "DescribeTargetGroups",
            &[("TargetGroupArns.member.1", &physical["ApiTargetGroup"])],
        )
        .await
        .expect("DescribeTargetGroups");
    assert_eq!(groups.text("HealthCheckPath").unwrap(), "/health");
    assert_eq!(outputs["ApiUrl"], format!("http://{}", balancers.text("DNSName").unwrap()));

    // The network: the VPC, two subnets in two zones, five endpoints, five security groups.
    let vpc_id = &physical["Vpc"];
    let vpcs = moto.query("ec2", EC2, "DescribeVpcs", &[("VpcId.1", vpc_id)]).await.expect("DescribeVpcs");
    assert_eq!(vpcs.text("cidrBlock").unwrap(), "10.10.0.0/16");
    let subnets = moto
        .query(
            "ec2",
            EC2,
            "DescribeSubnets",
            &[("SubnetId.1", &physical["PrivateSubnetA"]), ("SubnetId.2", &physical["PrivateSubnetB"])],
        )
        .await
        .expect("DescribeSubnets");
    let zones: BTreeSet<String> = subnets.texts("availabilityZone").unwrap().into_iter().collect();
    assert_eq!(zones.len(), 2, "two availability zones");
    let vpc_filter = [("Filter.1.Name", "vpc-id"), ("Filter.1.Value.1", vpc_id.as_str())];
    let endpoints = moto.query("ec2", EC2, "DescribeVpcEndpoints", &vpc_filter).await.expect("DescribeVpcEndpoints");
    let services: BTreeSet<String> = endpoints.texts("serviceName").unwrap().into_iter().collect();
    assert_eq!(
        services,
        ["s3", "secretsmanager", "ecr.api", "ecr.dkr", "logs"]
            .iter()
            .map(|s| format!("com.amazonaws.us-east-1.{s}"))
            .collect()
    );
    let groups = moto.query("ec2", EC2, "DescribeSecurityGroups", &vpc_filter).await.expect("DescribeSecurityGroups");
    // The database group's ingress sources: the group ids of its `ipPermissions`.
    let sources: BTreeSet<String> = groups
        .texts_within("item", "groupId", &physical["DatabaseSecurityGroup"], "ipPermissions", "groupId")
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        sources,
        [physical["FunctionsSecurityGroup"].clone(), physical["ApiSecurityGroup"].clone()].into_iter().collect()
    );

    // The alarm topic.
    let topic = moto
        .query("sns", SNS, "GetTopicAttributes", &[("TopicArn", &outputs["AlarmTopicArn"])])
        .await
        .expect("GetTopicAttributes");
    assert!(!topic.texts("entry").unwrap().is_empty(), "the topic has attributes");
}

/// IAM answers policy documents URL-encoded; moto answers the policies CloudFormation created
/// as a Python dict's repr (single quotes), which our documents survive by swapping the quotes
/// (they contain no quote characters of their own).
fn urlencoding_decode(text: &str) -> Value {
    if let Ok(value) = serde_json::from_str(text) {
        return value;
    }
    if text.starts_with("{'")
        && let Ok(value) = serde_json::from_str(&text.replace('\'', "\""))
    {
        return value;
    }
    let decoded = percent_encoding::percent_decode_str(&text.replace('+', " ")).collect::<Vec<u8>>();
    serde_json::from_slice(&decoded).unwrap_or_else(|e| panic!("the policy document is not JSON: {e}: {text}"))
}

/// (action, resource) pairs of a policy document.
fn statements(document: &Value) -> Vec<(String, String)> {
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
            _ => vec![],
        }
    };
    let mut out = Vec::new();
    for statement in document["Statement"].as_array().expect("statements") {
        for action in list(&statement["Action"]) {
            for resource in list(&statement["Resource"]) {
                out.push((action.clone(), resource));
            }
        }
    }
    out
}
