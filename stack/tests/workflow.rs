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
