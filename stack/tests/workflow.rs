//! The pipeline's state machine: every way out of a step that fails records the failure on its
//! ingestion before the execution fails, and a crashed function is retried before that.

use serde_json::Value;
use stack::template::Template;
use stack::{Stage, Topology};

fn definition(t: &Template) -> Value {
    let text =
        t.resource("StateMachine").unwrap().properties["DefinitionString"]["Fn::Sub"].as_str().unwrap().to_owned();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_failure_path_records_the_failure_on_the_ingestion_then_fails_the_execution() {
    for stage in Stage::ALL {
        let t = Topology::stage(&stage.config()).template;
        let states = &definition(&t)["States"];
        for (name, state) in states.as_object().unwrap().iter().filter(|(name, _)| *name != "RecordFailure") {
            for catch in state["Catch"].as_array().into_iter().flatten() {
                let target = catch["Next"].as_str().unwrap();
                if states[target]["Type"] == "Fail" {
                    panic!(
                        "{stage}: {name}'s Catch goes to {target}, a bare Fail: the ingestion would stay unfinished"
                    );
                }
                let record = &states[target];
                assert_eq!(record["Type"], "Task", "{stage}: {name}'s Catch goes to {target}");
                assert_eq!(record["Resource"], "arn:aws:states:::lambda:invoke");
                assert_eq!(record["Parameters"]["FunctionName"], "${ValidateFunction.Arn}", "{stage}");
                assert_eq!(
                    record["Parameters"]["Payload"]["failed.$"], "$",
                    "{stage}: the whole state, error included"
                );
                assert_eq!(record["ResultPath"], Value::Null, "{stage}: the error stays for the Fail state");
                let failed = record["Next"].as_str().unwrap();
                assert_eq!(states[failed]["Type"], "Fail", "{stage}");
                assert_eq!(states[failed]["ErrorPath"], "$.error.Error");
                for catch in record["Catch"].as_array().unwrap() {
                    assert_eq!(catch["Next"], failed, "{stage}: a failure to record still fails the execution");
                }
            }
        }
    }
}

#[test]
fn only_the_failure_path_reaches_a_fail_state() {
    for stage in Stage::ALL {
        let t = Topology::stage(&stage.config()).template;
        let states = &definition(&t)["States"];
        for (name, state) in states.as_object().unwrap() {
            let mut nexts: Vec<&Value> = vec![&state["Next"], &state["Default"]];
            nexts.extend(state["Choices"].as_array().into_iter().flatten().map(|choice| &choice["Next"]));
            for next in nexts.into_iter().filter_map(Value::as_str) {
                if states[next]["Type"] == "Fail" {
                    assert_eq!(
                        name, "RecordFailure",
                        "{stage}: {name} goes to the Fail state {next} without recording"
                    );
                }
            }
        }
    }
}

#[test]
fn a_crashed_or_timed_out_function_is_retried_before_the_workflow_gives_up() {
    for stage in Stage::ALL {
        let t = Topology::stage(&stage.config()).template;
        let states = &definition(&t)["States"];
        for step in ["Validate", "Process"] {
            let retried: Vec<&str> = states[step]["Retry"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|retrier| retrier["ErrorEquals"].as_array().unwrap())
                .filter_map(Value::as_str)
                .collect();
            // "Unhandled errors in Lambda are reported as Lambda.Unknown" (Step Functions
            // developer guide, "Handle transient Lambda service exceptions").
            assert!(retried.contains(&"Lambda.Unknown"), "{stage}: {step} retries {retried:?}");
            assert!(!retried.contains(&"States.ALL") && !retried.contains(&"hiring.Fatal"), "{stage}: {step}");
        }
    }
}

/// The longest a retrier waits in all: each delay is the interval times the backoff rate to
/// the attempt, capped at the largest delay, without jitter.
fn longest_wait_seconds(retrier: &Value) -> f64 {
    let (interval, rate) = (retrier["IntervalSeconds"].as_f64().unwrap(), retrier["BackoffRate"].as_f64().unwrap());
    let cap = retrier["MaxDelaySeconds"].as_f64().unwrap_or(f64::INFINITY);
    (0..retrier["MaxAttempts"].as_u64().unwrap()).map(|n| (interval * rate.powi(n as i32)).min(cap)).sum()
}

#[test]
fn the_workflow_gives_up_waiting_before_the_upload_urls_expire_and_the_sweep_closes_after_both() {
    for stage in Stage::ALL {
        let cfg = stage.config();
        let t = Topology::stage(&cfg).template;
        let states = &definition(&t)["States"];
        let waiting = states["Validate"]["Retry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|retrier| retrier["ErrorEquals"][0] == "hiring.Waiting")
            .expect("the validate step waits for its upload");
        let container = &t.resource("ApiTaskDefinition").unwrap().properties["ContainerDefinitions"][0];
        let setting: u64 = container["Environment"]
            .as_array()
            .unwrap()
            .iter()
            .find(|variable| variable["Name"] == "HIRING_WORKFLOW_WAIT_SECS")
            .and_then(|variable| variable["Value"].as_str())
            .expect("the API is told the stage's workflow wait")
            .parse()
            .unwrap();
        assert_eq!(setting, u64::from(cfg.workflow_wait_minutes) * 60, "{stage}");
        // What the API derives from it (hiring::lifecycle::Deadlines): URLs live twice the
        // wait, waiting ingestions are swept four times the wait after their last move.
        let (upload_expiry, sweep_after) = (2 * setting, 4 * setting);
        let workflow_wait = longest_wait_seconds(waiting);
        assert!(workflow_wait <= setting as f64, "{stage}: the workflow waits {workflow_wait} s, over {setting} s");
        assert!(
            workflow_wait < upload_expiry as f64 && upload_expiry < sweep_after,
            "{stage}: workflow wait {workflow_wait} s < upload expiry {upload_expiry} s < sweep {sweep_after} s"
        );
        assert!(workflow_wait > setting as f64 * 0.9, "{stage}: the workflow waits nearly all of its setting");
    }
}

#[test]
fn what_the_sweep_closes_is_counted_from_the_api_logs_and_alarmed() {
    for stage in Stage::ALL {
        let cfg = stage.config();
        let t = Topology::stage(&cfg).template;
        let filter = &t.resource("SweptIngestionsMetricFilter").expect("a metric filter").properties;
        assert_eq!(filter["LogGroupName"], serde_json::json!({ "Ref": "ApiLogGroup" }), "{stage}");
        // The API logs `{"swept": n, …}` (api::SWEPT_FIELD) as a JSON line.
        assert_eq!(filter["FilterPattern"], "{ $.swept > 0 }");
        let transformation = &filter["MetricTransformations"][0];
        assert_eq!(transformation["MetricValue"], "$.swept");
        let alarm = &t.resource("IngestionsSweptAlarm").expect("an alarm").properties;
        assert_eq!(alarm["MetricName"], transformation["MetricName"], "{stage}");
        assert_eq!(alarm["Namespace"], transformation["MetricNamespace"], "{stage}");
    }
}
