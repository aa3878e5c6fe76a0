//! `cargo xtask logs --stage S [--component api|validate|process|backup|pipeline] [--since 1h]
//! [--follow]`: the stage's logs from CloudWatch Logs, oldest first, one readable line per event.
//!
//! The log groups are found through the stack's resources (`ApiLogGroup` and `ApiAccessLogGroup`
//! for the API, `<Function>LogGroup` for the Lambda functions, `StateMachineLogGroup` for the
//! pipeline), never by guessing names. Events come from `FilterLogEvents` over every group of the
//! component (all components without `--component`), merged by time. A JSON line (the API's and
//! the functions' `tracing` output, Step Functions' execution logs) is rendered as
//! `time component LEVEL message key=value…`, with `request_id` and `ingestion` kept wherever
//! they were nested; any other line is printed as it is. `--follow` asks again every 2 s for what
//! came since the last event, until interrupted.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::Value;
use stack::Stage;

use crate::{aws, cfn};

#[derive(Args)]
pub struct Logs {
    /// The stage: local, dev, staging, prod.
    #[arg(long)]
    stage: Stage,
    /// Only this component's logs (default: all).
    #[arg(long, value_enum)]
    component: Option<Component>,
    /// How far back to start, e.g. 15m, 1h, 2d.
    #[arg(long, default_value = "1h", value_parser = crate::upload::parse_duration)]
    since: Duration,
    /// Keep printing new events as they arrive (every 2 s) until interrupted.
    #[arg(long)]
    follow: bool,
}

/// What writes logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Component {
    /// The API's container (ECS) and its API Gateway access log.
    Api,
    /// The validate function.
    Validate,
    /// The process function.
    Process,
    /// The backup function.
    Backup,
    /// The state machine's executions.
    Pipeline,
}

impl Component {
    const ALL: [Component; 5] =
        [Component::Api, Component::Validate, Component::Process, Component::Backup, Component::Pipeline];

    fn name(self) -> &'static str {
        match self {
            Component::Api => "api",
            Component::Validate => "validate",
            Component::Process => "process",
            Component::Backup => "backup",
            Component::Pipeline => "pipeline",
        }
    }

    /// The logical ids of its log groups in the stage stack.
    fn log_groups(self) -> &'static [&'static str] {
        match self {
            Component::Api => &["ApiLogGroup", "ApiAccessLogGroup"],
            Component::Validate => &["ValidateLogGroup"],
            Component::Process => &["ProcessLogGroup"],
            Component::Backup => &["BackupLogGroup"],
            Component::Pipeline => &["StateMachineLogGroup"],
        }
    }
}

/// One log event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    timestamp: i64,
    id: String,
    component: Component,
    message: String,
}

impl Logs {
    pub fn run(self) -> anyhow::Result<()> {
        aws::block_on(async {
            let sdk = aws::connect(self.stage).await?;
            let stack_name = self.stage.stack_name();
            let resources = cfn::physical_ids(&aws_sdk_cloudformation::Client::new(&sdk), &stack_name).await?;
            let components = self.component.map_or(Component::ALL.to_vec(), |c| vec![c]);
            let groups: Vec<(Component, String)> = components
                .iter()
                .flat_map(|&component| component.log_groups().iter().map(move |id| (component, *id)))
                .filter_map(|(component, id)| resources.get(id).map(|group| (component, group.clone())))
                .collect();
            anyhow::ensure!(
                !groups.is_empty(),
                "{stack_name} has no log group for {}: deploy it with cargo xtask deploy --stage {}",
                components.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "),
                self.stage
            );
            let client = aws_sdk_cloudwatchlogs::Client::new(&sdk);
            let now = chrono::Utc::now().timestamp_millis();
            let mut since = now - i64::try_from(self.since.as_millis()).unwrap_or(i64::MAX).min(now);
            // Events at the last timestamp printed, which the next ask (from that millisecond
            // on) returns again.
            let mut seen_at_last: HashSet<String> = HashSet::new();
            loop {
                let mut events = Vec::new();
                for (component, group) in &groups {
                    events.extend(fetch(&client, *component, group, since).await?);
                }
                events.sort();
                for event in events {
                    if seen_at_last.contains(&event.id) {
                        continue;
                    }
                    if event.timestamp > since {
                        since = event.timestamp;
                        seen_at_last.clear();
                    }
                    seen_at_last.insert(event.id.clone());
                    println!("{}", render(&event));
                }
                if !self.follow {
                    return Ok(());
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    }
}

/// The events of `group` from `since` (milliseconds since the epoch) on, every page.
async fn fetch(
    client: &aws_sdk_cloudwatchlogs::Client,
    component: Component,
    group: &str,
    since: i64,
) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .filter_log_events()
            .log_group_name(group)
            .start_time(since)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| cfn::failed(format!("CloudWatch Logs FilterLogEvents {group}"), &e))?;
        for event in page.events() {
            events.push(Event {
                timestamp: event.timestamp().unwrap_or_default(),
                id: event.event_id().unwrap_or_default().to_owned(),
                component,
                message: event.message().unwrap_or_default().trim_end().to_owned(),
            });
        }
        match page.next_token() {
            Some(next) if !page.events().is_empty() => token = Some(next.to_owned()),
            _ => return Ok(events),
        }
    }
}

/// `time component LEVEL message key=value…` for a JSON line; the line as it is otherwise.
fn render(event: &Event) -> String {
    let time = chrono::DateTime::from_timestamp_millis(event.timestamp)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default();
    let prefix = format!("{time} {:<8}", event.component.name());
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(&event.message) else {
        return format!("{prefix} {}", event.message);
    };
    let mut fields = BTreeMap::new();
    flatten("", &Value::Object(object), &mut fields);
    let take = |fields: &mut BTreeMap<String, String>, keys: &[&str]| keys.iter().find_map(|k| fields.remove(*k));
    let level = take(&mut fields, &["level", "fields.level"]).unwrap_or_default();
    let message = take(&mut fields, &["message", "fields.message", "msg"]).unwrap_or_default();
    // The line's own time is kept only through the event's.
    for key in ["timestamp", "time", "target", "span.name"] {
        fields.remove(key);
    }
    // Identifiers first, under their short names, wherever the logger nested them.
    let mut line = format!("{prefix} {level:<5} {message}");
    for (short, keys) in [
        ("ingestion", &["ingestion", "fields.ingestion", "span.ingestion"][..]),
        ("request_id", &["request_id", "span.request_id", "fields.request_id", "requestId", "record.requestId"]),
    ] {
        if let Some(value) = take(&mut fields, keys) {
            line.push_str(&format!(" {short}={value}"));
        }
    }
    for (key, value) in fields {
        let key = key.strip_prefix("fields.").unwrap_or(&key);
        line.push_str(&format!(" {key}={value}"));
    }
    line
}

/// `value`'s leaves as dotted keys and their text.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                let key = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&key, value, out);
            }
        }
        Value::String(text) => {
            out.insert(prefix.to_owned(), text.clone());
        }
        Value::Null => {}
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// The stage's log groups by component, for `status` and the tests.
pub fn log_group_ids() -> Vec<(&'static str, &'static str)> {
    Component::ALL.iter().flat_map(|c| c.log_groups().iter().map(move |id| (c.name(), *id))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(message: &str) -> Event {
        Event { timestamp: 1_764_582_000_123, id: "1".into(), component: Component::Api, message: message.into() }
    }

    #[test]
    fn a_json_line_becomes_one_readable_line_with_its_ids() {
        let line = render(&event(
            r#"{"timestamp":"2025-12-01T09:40:00.123Z","level":"INFO","message":"file loaded","target":"hiring::load","ingestion":7,"rows":1000,"span":{"request_id":"r-1","name":"request"}}"#,
        ));
        assert_eq!(line, "2025-12-01T09:40:00.123Z api      INFO  file loaded ingestion=7 request_id=r-1 rows=1000");
    }

    #[test]
    fn any_other_line_is_kept_as_it_is() {
        assert_eq!(render(&event("START RequestId: abc")), "2025-12-01T09:40:00.123Z api      START RequestId: abc");
    }

    #[test]
    fn every_component_names_log_groups_the_stage_template_has() {
        let template = stack::Topology::stage(&Stage::Dev.config()).template;
        let json: Value = serde_json::from_str(&template.to_json()).unwrap();
        for (component, id) in log_group_ids() {
            assert_eq!(json["Resources"][id]["Type"], "AWS::Logs::LogGroup", "{component}: {id}");
        }
    }
}
