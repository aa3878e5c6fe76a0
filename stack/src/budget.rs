//! The connection budget: how many PostgreSQL connections a stage can open at most, against
//! what its database class accepts.
//!
//! Read off the synthesized template (what CloudFormation deploys), not off the stage
//! configuration, so a template edited by hand is checked too:
//! - the API: its pool (`HIRING_DB_MAX_CONNECTIONS`) plus the metrics cache's `LISTEN`
//!   connection and one of the master user's (which applies the application role's password
//!   after a refusal or a change), times its largest task count, which is the scaling target's
//!   maximum times the deployment's `MaximumPercent` (a rolling deploy runs old and new tasks
//!   side by side);
//! - each function: its reserved concurrency times its pool plus the master user's one.
//!
//! RDS for PostgreSQL sets `max_connections` to `LEAST({DBInstanceClassMemory/9531392}, 5000)`
//! (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/CHAP_Limits.html#RDS_Limits.MaxConnections).
//! `DBInstanceClassMemory` is the class's memory less what the OS and RDS keep, which AWS does
//! not publish, so the budget takes three quarters of the formula on the nominal memory, then
//! leaves the slots PostgreSQL reserves for superusers (`superuser_reserved_connections`, 3,
//! and RDS's `rds.rds_superuser_reserved_connections`, 2) and [`OPERATOR_CONNECTIONS`] for
//! people (psql, a migration run by hand).

use serde_json::Value;

use crate::template::{ResourceType, Template};

/// Connections kept for operators beyond the budget.
pub const OPERATOR_CONNECTIONS: u32 = 10;
/// The slots PostgreSQL and RDS reserve for superusers.
pub const RESERVED_CONNECTIONS: u32 = 5;

/// The nominal memory (GiB) of the database classes the stages may use.
const CLASS_MEMORY_GIB: [(&str, u32); 12] = [
    ("db.t4g.micro", 1),
    ("db.t4g.small", 2),
    ("db.t4g.medium", 4),
    ("db.t4g.large", 8),
    ("db.m7g.large", 8),
    ("db.m7g.xlarge", 16),
    ("db.m7g.2xlarge", 32),
    ("db.r7g.large", 16),
    ("db.r7g.xlarge", 32),
    ("db.t3.micro", 1),
    ("db.m6g.large", 8),
    ("db.r6g.large", 16),
];

/// RDS's default `max_connections` for `class`, on its nominal memory; `None` for a class the
/// table does not know.
pub fn max_connections(class: &str) -> Option<u32> {
    let gib = CLASS_MEMORY_GIB.iter().find(|(name, _)| *name == class)?.1;
    Some(((u64::from(gib) << 30) / 9_531_392).min(5000) as u32)
}

/// What the stage's components may open at most, and what the database allows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// The database class.
    pub class: String,
    /// RDS's default `max_connections` for it (on nominal memory).
    pub max_connections: u32,
    /// What the components may use: three quarters of it, less the reserved slots and the
    /// operators' share.
    pub limit: u32,
    /// Each component's share: name, connections per instance, instances at most.
    pub shares: Vec<Share>,
}

/// One component's share of the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// `api`, or the function's logical id.
    pub component: String,
    /// Connections one instance opens at most.
    pub per_instance: u32,
    /// Instances running at once at most.
    pub instances: u32,
}

impl Share {
    /// The component's connections at most.
    pub fn total(&self) -> u32 {
        self.per_instance * self.instances
    }
}

impl Budget {
    /// The connections all components may open together.
    pub fn total(&self) -> u32 {
        self.shares.iter().map(Share::total).sum()
    }

    /// `Err` with one line per share when the components may open more than the limit.
    pub fn check(&self) -> Result<(), String> {
        if self.total() <= self.limit {
            return Ok(());
        }
        let shares: Vec<String> = self
            .shares
            .iter()
            .map(|s| format!("{} {} x {} = {}", s.component, s.per_instance, s.instances, s.total()))
            .collect();
        Err(format!(
            "the stage may open {} database connections ({}) but its {} takes {} (of max_connections {}): \
             lower the pools, the API's maximum tasks or the functions' reserved concurrency, or pick a larger \
             class (stack/src/stage.rs)",
            self.total(),
            shares.join(", "),
            self.class,
            self.limit,
            self.max_connections
        ))
    }
}

fn environment_number(variables: impl Iterator<Item = (String, Value)>, what: &str) -> Result<u32, String> {
    let value =
        variables.filter(|(name, _)| name == "HIRING_DB_MAX_CONNECTIONS").map(|(_, value)| value).next().ok_or_else(
            || format!("{what} sets no HIRING_DB_MAX_CONNECTIONS, so its pool is unbounded by the stack"),
        )?;
    value
        .as_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{what}'s HIRING_DB_MAX_CONNECTIONS {value} is not a number"))
}

/// The budget of a stage template.
pub fn of(template: &Template) -> Result<Budget, String> {
    let of_type = |kind: ResourceType| template.resources.iter().filter(move |(_, r)| r.kind == kind);
    let (_, database) = of_type(ResourceType::RdsDbInstance).next().ok_or("the template has no database")?;
    let class = database.properties["DBInstanceClass"].as_str().ok_or("the database has no DBInstanceClass")?;
    let max = max_connections(class).ok_or_else(|| {
        format!("the connection budget knows no class {class}: add its memory to stack/src/budget.rs")
    })?;
    let limit = (max * 3 / 4).saturating_sub(RESERVED_CONNECTIONS + OPERATOR_CONNECTIONS);
    let mut shares = Vec::new();

    let (_, task) = of_type(ResourceType::EcsTaskDefinition).next().ok_or("the template has no API task")?;
    let container = &task.properties["ContainerDefinitions"][0];
    let environment = container["Environment"].as_array().cloned().unwrap_or_default();
    let pool = environment_number(
        environment.iter().map(|e| (e["Name"].as_str().unwrap_or_default().to_owned(), e["Value"].clone())),
        "the API's task",
    )?;
    let (_, target) = of_type(ResourceType::AutoScalingTarget)
        .next()
        .ok_or("the API has no scalable target, so nothing bounds its task count")?;
    let max_tasks = target.properties["MaxCapacity"].as_u64().ok_or("the scalable target has no MaxCapacity")?;
    let (_, service) = of_type(ResourceType::EcsService).next().ok_or("the template has no API service")?;
    let percent = service.properties["DeploymentConfiguration"]["MaximumPercent"].as_u64().unwrap_or(200);
    // The metrics cache listens on a connection of its own (api::cache); the master user's
    // connection applies the application role's password (secrets).
    shares.push(Share {
        component: "api".to_owned(),
        per_instance: pool + 2,
        instances: u32::try_from((max_tasks * percent).div_ceil(100)).map_err(|e| e.to_string())?,
    });

    for (id, function) in of_type(ResourceType::LambdaFunction) {
        let variables = function.properties["Environment"]["Variables"].as_object().cloned().unwrap_or_default();
        let pool = environment_number(variables.into_iter(), &format!("function {id}"))?;
        let concurrency = function.properties["ReservedConcurrentExecutions"].as_u64().ok_or_else(|| {
            format!("function {id} has no ReservedConcurrentExecutions, so its instances are unbounded")
        })?;
        shares.push(Share {
            component: id.to_string(),
            per_instance: pool + 1,
            instances: u32::try_from(concurrency).map_err(|e| e.to_string())?,
        });
    }
    Ok(Budget { class: class.to_owned(), max_connections: max, limit, shares })
}
