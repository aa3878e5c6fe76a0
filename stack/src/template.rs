//! The CloudFormation layer: a template of typed resources, rendered to canonical JSON.
//!
//! Everything is kept in ordered maps and every JSON object is written with its keys sorted, so
//! the same topology always gives the same bytes (`cargo xtask synth --check` relies on it).
//! Property bags are `serde_json` values built by the topology modules; their names and types are
//! checked against the CloudFormation registry schemas by cfn-lint in `cargo xtask test`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value, json};

/// A logical id: ASCII letters and digits only, starting with a letter (CloudFormation's rule).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogicalId(String);

impl LogicalId {
    /// Panics on an invalid id: ids are written in code, so a bad one is a programming error.
    pub fn new(id: impl Into<String>) -> Self {
        let id = id.into();
        assert!(
            id.len() <= 255
                && id.starts_with(|c: char| c.is_ascii_alphabetic())
                && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "`{id}` is not a CloudFormation logical id (letters and digits, starting with a letter)"
        );
        LogicalId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `{"Ref": id}`: a parameter's value, or a resource's primary identifier.
    pub fn r#ref(&self) -> Value {
        json!({ "Ref": self.0 })
    }

    /// `{"Fn::GetAtt": [id, attribute]}`.
    pub fn get_att(&self, attribute: &str) -> Value {
        json!({ "Fn::GetAtt": [self.0, attribute] })
    }
}

impl fmt::Display for LogicalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `{"Fn::Sub": text}`: `${Name}` and `${Name.Attribute}` are replaced by CloudFormation.
pub fn sub(text: impl Into<String>) -> Value {
    json!({ "Fn::Sub": text.into() })
}

/// `{"Fn::Join": ["", parts]}`.
pub fn join(parts: Vec<Value>) -> Value {
    json!({ "Fn::Join": ["", parts] })
}

/// CloudFormation's limit on a template sent inline (`TemplateBody` of CreateChangeSet).
pub const TEMPLATE_BODY_LIMIT: usize = 51_200;

/// CloudFormation's limit on a template read from S3 (`TemplateURL`): "Template body size in an
/// Amazon S3 object: 1 MB" (CloudFormation quotas). The stage stacks go this way.
pub const TEMPLATE_URL_LIMIT: usize = 1_048_576;

/// The template as `deploy` sends it: compact JSON without the resources' `Metadata`, which
/// holds only the static checkers' exceptions (checkov, cfn-lint) and which CloudFormation
/// does not need; the committed files keep it for reviewers.
pub fn deployable(template: &Value) -> String {
    let mut body = template.clone();
    if let Some(resources) = body.get_mut("Resources").and_then(Value::as_object_mut) {
        for resource in resources.values_mut() {
            if let Some(resource) = resource.as_object_mut() {
                resource.remove("Metadata");
            }
        }
    }
    serde_json::to_string(&body).expect("JSON values serialize")
}

/// `{"Fn::Select": [index, {"Fn::GetAZs": ""}]}`: the region's n-th availability zone.
pub fn availability_zone(index: usize) -> Value {
    json!({ "Fn::Select": [index, { "Fn::GetAZs": "" }] })
}

/// The resource types this project deploys. The list is closed on purpose: a new type is added
/// here, with the rules it must pass (see `stack/rules/`), before a topology module uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    ApiGatewayV2Api,
    ApiGatewayV2Integration,
    ApiGatewayV2Route,
    ApiGatewayV2Stage,
    ApiGatewayV2VpcLink,
    AthenaWorkGroup,
    AutoScalingPolicy,
    AutoScalingTarget,
    CloudWatchAlarm,
    CloudWatchDashboard,
    CodeBuildProject,
    CodePipelinePipeline,
    CodeStarConnection,
    Ec2RouteTable,
    Ec2SecurityGroup,
    Ec2SecurityGroupIngress,
    Ec2Subnet,
    Ec2SubnetRouteTableAssociation,
    Ec2Vpc,
    Ec2VpcEndpoint,
    EcrRepository,
    EcsCluster,
    EcsService,
    EcsTaskDefinition,
    EventsRule,
    GlueDatabase,
    GlueTable,
    IamPolicy,
    IamRole,
    LambdaFunction,
    LoadBalancer,
    LoadBalancerListener,
    LoadBalancerTargetGroup,
    LogGroup,
    LogMetricFilter,
    RdsDbInstance,
    RdsDbSubnetGroup,
    S3Bucket,
    S3BucketPolicy,
    SchedulerSchedule,
    SecretsManagerSecret,
    SnsSubscription,
    SnsTopic,
    SnsTopicPolicy,
    SqsQueue,
    SqsQueuePolicy,
    StepFunctionsStateMachine,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        use ResourceType::*;
        match self {
            ApiGatewayV2Api => "AWS::ApiGatewayV2::Api",
            ApiGatewayV2Integration => "AWS::ApiGatewayV2::Integration",
            ApiGatewayV2Route => "AWS::ApiGatewayV2::Route",
            ApiGatewayV2Stage => "AWS::ApiGatewayV2::Stage",
            ApiGatewayV2VpcLink => "AWS::ApiGatewayV2::VpcLink",
            AthenaWorkGroup => "AWS::Athena::WorkGroup",
            AutoScalingPolicy => "AWS::ApplicationAutoScaling::ScalingPolicy",
            AutoScalingTarget => "AWS::ApplicationAutoScaling::ScalableTarget",
            CloudWatchAlarm => "AWS::CloudWatch::Alarm",
            CloudWatchDashboard => "AWS::CloudWatch::Dashboard",
            CodeBuildProject => "AWS::CodeBuild::Project",
            CodePipelinePipeline => "AWS::CodePipeline::Pipeline",
            CodeStarConnection => "AWS::CodeStarConnections::Connection",
            Ec2RouteTable => "AWS::EC2::RouteTable",
            Ec2SecurityGroup => "AWS::EC2::SecurityGroup",
            Ec2SecurityGroupIngress => "AWS::EC2::SecurityGroupIngress",
            Ec2Subnet => "AWS::EC2::Subnet",
            Ec2SubnetRouteTableAssociation => "AWS::EC2::SubnetRouteTableAssociation",
            Ec2Vpc => "AWS::EC2::VPC",
            Ec2VpcEndpoint => "AWS::EC2::VPCEndpoint",
            EcrRepository => "AWS::ECR::Repository",
            EcsCluster => "AWS::ECS::Cluster",
            EcsService => "AWS::ECS::Service",
            EcsTaskDefinition => "AWS::ECS::TaskDefinition",
            EventsRule => "AWS::Events::Rule",
            GlueDatabase => "AWS::Glue::Database",
            GlueTable => "AWS::Glue::Table",
            IamPolicy => "AWS::IAM::Policy",
            IamRole => "AWS::IAM::Role",
            LambdaFunction => "AWS::Lambda::Function",
            LoadBalancer => "AWS::ElasticLoadBalancingV2::LoadBalancer",
            LoadBalancerListener => "AWS::ElasticLoadBalancingV2::Listener",
            LoadBalancerTargetGroup => "AWS::ElasticLoadBalancingV2::TargetGroup",
            LogGroup => "AWS::Logs::LogGroup",
            LogMetricFilter => "AWS::Logs::MetricFilter",
            RdsDbInstance => "AWS::RDS::DBInstance",
            RdsDbSubnetGroup => "AWS::RDS::DBSubnetGroup",
            S3Bucket => "AWS::S3::Bucket",
            S3BucketPolicy => "AWS::S3::BucketPolicy",
            SchedulerSchedule => "AWS::Scheduler::Schedule",
            SecretsManagerSecret => "AWS::SecretsManager::Secret",
            SnsSubscription => "AWS::SNS::Subscription",
            SnsTopic => "AWS::SNS::Topic",
            SnsTopicPolicy => "AWS::SNS::TopicPolicy",
            SqsQueue => "AWS::SQS::Queue",
            SqsQueuePolicy => "AWS::SQS::QueuePolicy",
            StepFunctionsStateMachine => "AWS::StepFunctions::StateMachine",
        }
    }
}

/// What CloudFormation does with a resource's data when it is deleted or replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Deleted with the stack (CloudFormation's default).
    Delete,
    /// Left in the account (buckets, repositories).
    Retain,
    /// A final snapshot is taken (databases).
    Snapshot,
}

impl Keep {
    fn as_str(self) -> Option<&'static str> {
        match self {
            Keep::Delete => None,
            Keep::Retain => Some("Retain"),
            Keep::Snapshot => Some("Snapshot"),
        }
    }
}

/// One resource: its type, properties, explicit dependencies and deletion policy.
#[derive(Clone, Debug)]
pub struct Resource {
    pub kind: ResourceType,
    pub properties: Value,
    pub depends_on: BTreeSet<LogicalId>,
    pub keep: Keep,
    /// The template condition the resource is created under, if any.
    pub condition: Option<LogicalId>,
    /// `Metadata`: the static checks' exceptions kept for this resource, with their reasons.
    pub metadata: Map<String, Value>,
}

impl Resource {
    pub fn new(kind: ResourceType, properties: Value) -> Self {
        assert!(properties.is_object(), "the properties of a {} must be an object", kind.as_str());
        Resource {
            kind,
            properties,
            depends_on: BTreeSet::new(),
            keep: Keep::Delete,
            condition: None,
            metadata: Map::new(),
        }
    }

    pub fn depends_on(mut self, id: &LogicalId) -> Self {
        self.depends_on.insert(id.clone());
        self
    }

    pub fn keep(mut self, keep: Keep) -> Self {
        self.keep = keep;
        self
    }

    /// Keeps an exception to a checkov check for this resource, with the reason a reviewer
    /// reads next to it (checkov's `Metadata.checkov.skip` syntax).
    pub fn skip_check(mut self, (check, reason): crate::checks::Exception) -> Self {
        let skips = self.metadata.entry("checkov").or_insert_with(|| json!({ "skip": [] }));
        skips["skip"].as_array_mut().expect("a list").push(json!({ "id": check, "comment": reason }));
        self
    }

    /// Has cfn-lint ignore `rule` for this resource (`Metadata.cfn-lint.config.ignore_checks`);
    /// the caller says why in a comment.
    pub fn ignore_lint(mut self, rule: &str) -> Self {
        let config = self.metadata.entry("cfn-lint").or_insert_with(|| json!({ "config": { "ignore_checks": [] } }));
        config["config"]["ignore_checks"].as_array_mut().expect("a list").push(json!(rule));
        self
    }

    /// Creates the resource only where the template condition `condition` holds.
    pub fn only_if(mut self, condition: &LogicalId) -> Self {
        self.condition = Some(condition.clone());
        self
    }
}

/// A template parameter (always a string here: keys, digests, names).
#[derive(Clone, Debug)]
pub struct Parameter {
    pub description: String,
    pub default: Option<String>,
    pub pattern: Option<String>,
}

/// A template output.
#[derive(Clone, Debug)]
pub struct Output {
    pub description: String,
    pub value: Value,
}

/// A CloudFormation template under construction.
#[derive(Clone, Debug, Default)]
pub struct Template {
    pub description: String,
    pub parameters: BTreeMap<LogicalId, Parameter>,
    /// Template conditions by name (`Fn::Equals` and friends).
    pub conditions: BTreeMap<LogicalId, Value>,
    pub resources: BTreeMap<LogicalId, Resource>,
    pub outputs: BTreeMap<LogicalId, Output>,
}

impl Template {
    pub fn new(description: impl Into<String>) -> Self {
        Template { description: description.into(), ..Template::default() }
    }

    /// Adds a resource; a second resource with the same id is a programming error.
    pub fn add(&mut self, id: &str, resource: Resource) -> LogicalId {
        let id = LogicalId::new(id);
        let previous = self.resources.insert(id.clone(), resource);
        assert!(previous.is_none(), "the template already has a resource `{id}`");
        id
    }

    pub fn parameter(&mut self, id: &str, description: &str, pattern: Option<&str>) -> LogicalId {
        let id = LogicalId::new(id);
        self.parameters.insert(
            id.clone(),
            Parameter { description: description.to_owned(), default: None, pattern: pattern.map(str::to_owned) },
        );
        id
    }

    /// [`Resource::skip_check`] on the resource `id` already added.
    pub fn skip_check(&mut self, id: &LogicalId, exception: crate::checks::Exception) {
        let resource = self.resources.remove(id).unwrap_or_else(|| panic!("no resource `{id}` to skip a check on"));
        self.resources.insert(id.clone(), resource.skip_check(exception));
    }

    /// A parameter the stack may leave at `default`.
    pub fn optional_parameter(&mut self, id: &str, description: &str, default: &str, pattern: &str) -> LogicalId {
        let id = self.parameter(id, description, Some(pattern));
        self.parameters.get_mut(&id).expect("just added").default = Some(default.to_owned());
        id
    }

    /// A named template condition.
    pub fn condition(&mut self, id: &str, expression: Value) -> LogicalId {
        let id = LogicalId::new(id);
        self.conditions.insert(id.clone(), expression);
        id
    }

    pub fn output(&mut self, id: &str, description: &str, value: Value) {
        self.outputs.insert(LogicalId::new(id), Output { description: description.to_owned(), value });
    }

    pub fn resource(&self, id: &str) -> Option<&Resource> {
        self.resources.get(&LogicalId::new(id))
    }

    /// The ids a value refers to through `Ref`, `Fn::GetAtt` and `${…}` in `Fn::Sub`.
    pub fn references(value: &Value) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        collect_references(value, &mut found);
        found
    }

    /// The template as CloudFormation JSON: keys sorted, two-space indent, final newline.
    pub fn to_json(&self) -> String {
        let mut root = Map::new();
        root.insert("AWSTemplateFormatVersion".into(), json!("2010-09-09"));
        root.insert("Description".into(), json!(self.description));
        if !self.parameters.is_empty() {
            let parameters = self
                .parameters
                .iter()
                .map(|(id, p)| {
                    let mut body = Map::new();
                    body.insert("Type".into(), json!("String"));
                    body.insert("Description".into(), json!(p.description));
                    if let Some(default) = &p.default {
                        body.insert("Default".into(), json!(default));
                    }
                    if let Some(pattern) = &p.pattern {
                        body.insert("AllowedPattern".into(), json!(pattern));
                    }
                    (id.0.clone(), Value::Object(body))
                })
                .collect();
            root.insert("Parameters".into(), Value::Object(parameters));
        }
        if !self.conditions.is_empty() {
            let conditions = self.conditions.iter().map(|(id, c)| (id.0.clone(), c.clone())).collect();
            root.insert("Conditions".into(), Value::Object(conditions));
        }
        let resources = self
            .resources
            .iter()
            .map(|(id, r)| {
                let mut body = Map::new();
                body.insert("Type".into(), json!(r.kind.as_str()));
                body.insert("Properties".into(), r.properties.clone());
                if !r.depends_on.is_empty() {
                    body.insert(
                        "DependsOn".into(),
                        json!(r.depends_on.iter().map(|d| d.0.clone()).collect::<Vec<_>>()),
                    );
                }
                if !r.metadata.is_empty() {
                    body.insert("Metadata".into(), Value::Object(r.metadata.clone()));
                }
                if let Some(condition) = &r.condition {
                    body.insert("Condition".into(), json!(condition.0));
                }
                if let Some(policy) = r.keep.as_str() {
                    body.insert("DeletionPolicy".into(), json!(policy));
                    body.insert("UpdateReplacePolicy".into(), json!(policy));
                }
                (id.0.clone(), Value::Object(body))
            })
            .collect();
        root.insert("Resources".into(), Value::Object(resources));
        if !self.outputs.is_empty() {
            let outputs = self
                .outputs
                .iter()
                .map(|(id, o)| (id.0.clone(), json!({ "Description": o.description, "Value": o.value })))
                .collect();
            root.insert("Outputs".into(), Value::Object(outputs));
        }
        let mut text = serde_json::to_string_pretty(&canonical(Value::Object(root))).expect("JSON values serialize");
        text.push('\n');
        text
    }

    /// Checks every `Ref`/`GetAtt`/`Sub` target exists and every `DependsOn` names a resource.
    pub fn check_references(&self) -> Result<(), String> {
        let known = |id: &str| {
            id.starts_with("AWS::")
                || self.resources.contains_key(&LogicalId::new(id))
                || self.parameters.contains_key(&LogicalId::new(id))
        };
        for (id, resource) in &self.resources {
            for target in Self::references(&resource.properties) {
                if !known(&target) {
                    return Err(format!("{id} refers to `{target}`, which the template does not define"));
                }
            }
            for target in &resource.depends_on {
                if !self.resources.contains_key(target) {
                    return Err(format!("{id} depends on `{target}`, which the template does not define"));
                }
            }
        }
        for (id, output) in &self.outputs {
            for target in Self::references(&output.value) {
                if !known(&target) {
                    return Err(format!("output {id} refers to `{target}`, which the template does not define"));
                }
            }
        }
        Ok(())
    }
}

/// Rebuilds every object with sorted keys, whatever map serde_json was built with.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<String, Value> = map.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

fn collect_references(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("Ref") {
                found.insert(target.clone());
            }
            if let Some(Value::Array(parts)) = map.get("Fn::GetAtt")
                && let Some(Value::String(target)) = parts.first()
            {
                found.insert(target.clone());
            }
            if let Some(Value::String(text)) = map.get("Fn::Sub") {
                let mut rest = text.as_str();
                while let Some(start) = rest.find("${") {
                    let after = &rest[start + 2..];
                    let Some(end) = after.find('}') else { break };
                    let name = &after[..end];
                    if !name.starts_with('!') {
                        found.insert(name.split('.').next().unwrap_or(name).to_owned());
                    }
                    rest = &after[end + 1..];
                }
            }
            for inner in map.values() {
                collect_references(inner, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_references(item, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_template_gives_the_same_bytes_with_sorted_keys() {
        let build = || {
            let mut t = Template::new("test");
            t.add("Zeta", Resource::new(ResourceType::S3Bucket, json!({ "b": 1, "a": { "z": 1, "y": 2 } })));
            t.add("Alpha", Resource::new(ResourceType::LogGroup, json!({ "RetentionInDays": 7 })).keep(Keep::Retain));
            t.to_json()
        };
        let text = build();
        assert_eq!(text, build());
        assert!(text.find("\"Alpha\"").unwrap() < text.find("\"Zeta\"").unwrap());
        assert!(text.find("\"y\"").unwrap() < text.find("\"z\"").unwrap());
        assert!(text.contains("\"DeletionPolicy\": \"Retain\""));
    }

    #[test]
    fn references_are_found_in_ref_getatt_and_sub() {
        let value = json!({ "a": { "Ref": "One" }, "b": [{ "Fn::GetAtt": ["Two", "Arn"] }],
            "c": { "Fn::Sub": "arn:${AWS::Partition}:x:${Three.Arn}/${Four}${!Literal}" } });
        let refs: Vec<_> = Template::references(&value).into_iter().collect();
        assert_eq!(refs, ["AWS::Partition", "Four", "One", "Three", "Two"]);
    }

    #[test]
    fn a_dangling_reference_is_an_error() {
        let mut t = Template::new("test");
        t.add(
            "Bucket",
            Resource::new(ResourceType::S3Bucket, json!({ "Tags": [{ "Key": "k", "Value": { "Ref": "Missing" } }] })),
        );
        assert!(t.check_references().unwrap_err().contains("Missing"));
    }

    #[test]
    #[should_panic(expected = "not a CloudFormation logical id")]
    fn logical_ids_are_checked() {
        LogicalId::new("raw-bucket");
    }
}
