//! The API: its token, its ECS service and task, its load balancer, its scaling, and API Gateway
//! in front of it.

use super::*;

/// The API's bearer token: a secret, or on the emulator a parameter naming one.
pub(super) struct ApiToken {
    pub(super) id: LogicalId,
    pub(super) arn: String,
}

/// The API's ECS cluster and task definition.
pub(super) struct ApiTask {
    pub(super) cluster: LogicalId,
    pub(super) task: LogicalId,
}

/// The API's ECS service behind its internal load balancer.
pub(super) struct ApiService {
    pub(super) load_balancer: LogicalId,
    pub(super) listener: LogicalId,
    pub(super) service: LogicalId,
}

/// What the alarms and outputs need of the API.
pub(super) struct Api {
    pub(super) token_arn: String,
    pub(super) cluster: LogicalId,
    pub(super) load_balancer: LogicalId,
    pub(super) service: LogicalId,
    pub(super) http_api: LogicalId,
}

impl StageBuilder<'_> {
    /// The API: ECS Fargate behind an internal load balancer, API Gateway in front.
    pub(super) fn api(
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

    /// The API's bearer tokens: a generated secret.
    pub(super) fn api_token(&mut self) -> ApiToken {
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
    pub(super) fn api_task(
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

    /// The API's ECS service, behind an internal load balancer.
    pub(super) fn api_service(
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
    pub(super) fn api_autoscaling(&mut self, task: &ApiTask, service: &LogicalId) {
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
    pub(super) fn api_gateway(
        &mut self,
        network: &Network,
        groups: &SecurityGroups,
        service: &ApiService,
    ) -> LogicalId {
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
}
