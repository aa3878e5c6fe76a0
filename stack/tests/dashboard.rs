//! The stage dashboard: its panels, and the custom metrics it reads from the
//! namespace the functions and the process task publish to (tests/tests/lambda_emulator.rs
//! checks the built binaries' lines against the same names).

use serde_json::Value;
use stack::topology::{DASHBOARD_ROWS_LOADED, DASHBOARD_ROWS_REJECTED, metrics_namespace};
use stack::{Stage, Topology};

#[test]
fn the_dashboard_reads_the_metrics_the_pipeline_publishes() {
    for stage in Stage::ALL {
        let cfg = stage.config();
        let template = Topology::stage(&cfg).template;
        let body =
            template.resource("Dashboard").unwrap().properties["DashboardBody"]["Fn::Sub"].as_str().unwrap().to_owned();
        let body: Value = serde_json::from_str(&body).expect("the body is JSON");
        let widgets = body["widgets"].as_array().unwrap();
        let titles: Vec<&str> = widgets.iter().map(|w| w["properties"]["title"].as_str().unwrap()).collect();
        assert_eq!(titles.len(), 5, "{titles:?}");
        let namespace = metrics_namespace(&cfg);
        let loaded = widgets[0]["properties"]["metrics"].as_array().unwrap();
        for (i, table) in ["hired_employees", "departments", "jobs"].iter().enumerate() {
            let metric = loaded[i].as_array().unwrap();
            assert_eq!(
                metric[..4],
                [
                    Value::from(namespace.as_str()),
                    Value::from(DASHBOARD_ROWS_LOADED),
                    Value::from("Table"),
                    Value::from(*table)
                ]
            );
        }
        // A hyphenated namespace is quoted inside a SEARCH schema ("CloudWatch search expression syntax").
        let search = widgets[1]["properties"]["metrics"][0][0]["expression"].as_str().unwrap();
        assert_eq!(
            search,
            format!(r#"SEARCH('{{"{namespace}",Table,Reason}} MetricName="{DASHBOARD_ROWS_REJECTED}"', 'Sum', 300)"#)
        );
        // Everything that publishes is told the namespace.
        for (id, env) in [
            ("ProcessFunction", template.resource("ProcessFunction").unwrap().properties["Environment"]["Variables"]["HIRING_METRICS_NAMESPACE"].clone()),
            ("ValidateFunction", template.resource("ValidateFunction").unwrap().properties["Environment"]["Variables"]["HIRING_METRICS_NAMESPACE"].clone()),
        ] {
            assert_eq!(env, Value::from(namespace.as_str()), "{id}");
        }
        let task =
            &template.resource("ProcessTaskDefinition").unwrap().properties["ContainerDefinitions"][0]["Environment"];
        assert!(
            task.as_array()
                .unwrap()
                .iter()
                .any(|e| e["Name"] == "HIRING_METRICS_NAMESPACE" && e["Value"] == namespace.as_str()),
            "{task}"
        );
    }
}
