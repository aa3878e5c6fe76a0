//! What operators watch: the functions' metric names, the dashboard, the alarms and their topic.

use super::*;

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

impl StageBuilder<'_> {
    /// Alarms, published to a topic operators subscribe to.
    /// The stage's CloudWatch dashboard: ingest rows/s and rejects by reason (the metrics the
    /// functions publish, `hiring_functions::ROWS_LOADED` and `ROWS_REJECTED`, in
    /// [`metrics_namespace`]), pipeline failures (Step Functions), the API's latency and 5xx
    /// (API Gateway), the database's CPU, connections and free storage (RDS). The metrics of
    /// AWS's namespaces are those services' own: "Monitoring Step Functions metrics",
    /// "Monitor HTTP API metrics", "Metrics for Amazon RDS".
    pub(super) fn dashboard(&mut self, state_machine: &LogicalId, api: &Api, database: &Database) {
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

    pub(super) fn alarms(
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
}
