//! The ECS cluster and the Fargate task definitions, which the process step and the API share.

use super::*;

/// What differs between the stack's Fargate task definitions ([`StageBuilder::image_task`]).
pub(super) struct ImageTask<'a> {
    pub(super) id: &'a str,
    pub(super) execution_role: &'a str,
    pub(super) task_role: LogicalId,
    pub(super) family: String,
    pub(super) cpu: u32,
    pub(super) memory_mb: u32,
    pub(super) image: &'a LogicalId,
    pub(super) zones: &'a Zones,
    pub(super) database: &'a Database,
    /// After the zones' and the database's variables.
    pub(super) env: Vec<Value>,
    pub(super) logs: &'a LogicalId,
    pub(super) log_prefix: &'a str,
    /// The container's own properties, an object.
    pub(super) container: Value,
}

impl StageBuilder<'_> {
    /// The stage's ECS cluster: the API's service and the process step's tasks run in it.
    pub(super) fn cluster(&mut self) -> LogicalId {
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

    /// A Fargate task definition of the API image, the one way the stack's tasks are made. Its
    /// execution role (`spec.execution_role`, with any grant declared for it before) pulls the
    /// image and writes `spec.logs`. The container runs as user 65532 on a read-only root
    /// filesystem; its one writable place is the task volume `scratch`, mounted at
    /// `API_DATA_DIR`, where the image declares a VOLUME owned by that user: Fargate bind mounts
    /// are root's, mode 0755, unless the image has a VOLUME at the same path, whose ownership is
    /// copied (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/bind-mounts.html).
    /// Its environment is the zones' and the database's, then `spec.env`; `spec.container`
    /// adds the container's own properties (name, entry point, ports, health check…).
    pub(super) fn image_task(&mut self, spec: ImageTask<'_>) -> LogicalId {
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
}
