//! The process step's second engine: files past the stage's threshold run
//! the same process binary as a Fargate task. These pin the template's side: the Choice, the
//! task the state machine runs and how, and the permissions each role needs for it ("IAM
//! policies for Amazon ECS/AWS Fargate", Step Functions developer guide). test-local runs both
//! branches on moto's interpreter and the task's command against the emulator.

use serde_json::Value;
use stack::template::Template;
use stack::topology::{PROCESS_BINARY, PROCESS_CONTAINER};
use stack::{Stage, Topology};

mod common;
use common::{list, statements};

/// The actions `role` is allowed on resources whose JSON text contains `on`, sorted.
fn actions_on(t: &Template, role: &str, on: &str) -> Vec<String> {
    let mut actions: Vec<String> = statements(t, role)
        .iter()
        .filter(|s| s["Resource"].to_string().contains(on))
        .flat_map(|s| list(&s["Action"]))
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    actions.sort();
    actions.dedup();
    actions
}

fn definition(t: &Template) -> Value {
    let text =
        t.resource("StateMachine").unwrap().properties["DefinitionString"]["Fn::Sub"].as_str().unwrap().to_owned();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn large_files_go_to_a_fargate_task_running_the_process_binary_once() {
    for stage in Stage::ALL {
        let cfg = stage.config();
        let t = Topology::stage(&cfg).template;
        let states = &definition(&t)["States"];
        assert_eq!(states["Loadable?"]["Choices"][0]["Next"], "Engine?");
        let engine = &states["Engine?"];
        assert_eq!(engine["Choices"][0]["Variable"], "$.validation.report.rows");
        assert_eq!(engine["Choices"][0]["NumericGreaterThan"], cfg.fargate_process_rows(), "{stage}");
        assert_eq!(
            (engine["Choices"][0]["Next"].as_str(), engine["Default"].as_str()),
            (Some("ProcessOnFargate"), Some("Process"))
        );
        // Half the function's timeout at the assumed rate: 100k rows/s per GB.
        let seconds = f64::from(cfg.lambda_timeout_seconds) / 2.0;
        let expected = 100_000.0 * f64::from(cfg.lambda_memory_mb) / 1024.0 * seconds;
        assert_eq!(cfg.fargate_process_rows() as f64, expected, "{stage}");

        let fargate = &states["ProcessOnFargate"];
        assert_eq!(fargate["Resource"], "arn:aws:states:::ecs:runTask.sync");
        let parameters = &fargate["Parameters"];
        assert_eq!(parameters["TaskDefinition"], "${ProcessTaskDefinition}");
        assert_eq!(parameters["LaunchType"], "FARGATE");
        assert_eq!(
            parameters["NetworkConfiguration"]["AwsvpcConfiguration"]["SecurityGroups"][0],
            "${FunctionsSecurityGroup.GroupId}"
        );
        assert_eq!(parameters["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"].as_array().unwrap().len(), 2);
        let container = &parameters["Overrides"]["ContainerOverrides"][0];
        assert_eq!(container["Name"], PROCESS_CONTAINER);
        assert_eq!(container["Environment"][0]["Name"], "HIRING_STEP_INPUT");
        assert_eq!(container["Environment"][0]["Value.$"], "States.JsonToString($.validation.report)");
        assert_eq!(fargate["Next"], "Processed?");
        assert_eq!(states["Processed?"]["Default"], "ProcessFailed");
        assert_eq!(fargate["Catch"][0]["Next"], "RecordFailure");

        let task = &t.resource("ProcessTaskDefinition").unwrap().properties;
        assert_eq!(task["RequiresCompatibilities"], serde_json::json!(["FARGATE"]));
        let definition = &task["ContainerDefinitions"][0];
        assert_eq!(definition["Name"], PROCESS_CONTAINER);
        assert_eq!(definition["EntryPoint"], serde_json::json!([PROCESS_BINARY]));
        assert_eq!(definition["Image"], serde_json::json!({ "Ref": "ApiImage" }));
        assert_eq!(definition["ReadonlyRootFilesystem"], true);
        // The Parquet file is staged in TMPDIR, on the task's volume, mounted where the image
        // declares a VOLUME owned by the task's user (a Fargate bind mount elsewhere is root's).
        let tmpdir = list(&definition["Environment"]).into_iter().find(|e| e["Name"] == "TMPDIR").unwrap();
        assert_eq!(definition["MountPoints"][0]["ContainerPath"], tmpdir["Value"]);
        assert_eq!(tmpdir["Value"], stack::API_DATA_DIR);
        assert_eq!(definition["User"], "65532");
        assert_eq!(
            fargate["Retry"][0]["ErrorEquals"],
            serde_json::json!(["AmazonECS.Unknown", "ECS.AmazonECSException"])
        );
        assert_eq!(fargate["TimeoutSeconds"], 43_200);
        assert_eq!(task["TaskRoleArn"], serde_json::json!({ "Fn::GetAtt": ["ProcessTaskRole", "Arn"] }));
    }
}

#[test]
fn the_roles_have_what_running_the_task_needs_and_the_task_what_the_function_has() {
    let t = Topology::stage(&Stage::Prod.config()).template;
    assert_eq!(actions_on(&t, "StateMachineRole", "ProcessTaskDefinition"), ["ecs:RunTask"]);
    assert_eq!(
        actions_on(&t, "StateMachineRole", ":task/hiring-prod-cluster/*"),
        ["ecs:DescribeTasks", "ecs:StopTask"]
    );
    assert_eq!(
        actions_on(&t, "StateMachineRole", "rule/StepFunctionsGetEventsForECSTaskRule"),
        ["events:DescribeRule", "events:PutRule", "events:PutTargets"]
    );
    let pass: Vec<Value> = statements(&t, "StateMachineRole")
        .into_iter()
        .filter(|s| list(&s["Action"]).contains(&Value::from("iam:PassRole")))
        .collect();
    assert_eq!(pass.len(), 1);
    assert_eq!(pass[0]["Condition"]["StringEquals"]["iam:PassedToService"], "ecs-tasks.amazonaws.com");
    let passed = pass[0]["Resource"].to_string();
    assert!(passed.contains("ProcessTaskRole") && passed.contains("ProcessExecutionRole"), "{passed}");

    // The task role may do, on the zones and the secrets, exactly what the function's role may.
    let zone_and_secret_statements = |role: &str| {
        let mut kept: Vec<String> = statements(&t, role)
            .iter()
            .filter(|s| {
                let text = s["Resource"].to_string();
                text.contains("Bucket") || s["Action"].to_string().contains("secretsmanager")
            })
            .map(|s| s.to_string())
            .collect();
        kept.sort();
        kept
    };
    assert_eq!(zone_and_secret_statements("ProcessTaskRole"), zone_and_secret_statements("ProcessRole"));
    let trust = &t.resource("ProcessTaskRole").unwrap().properties["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Principal"]["Service"], "ecs-tasks.amazonaws.com");
    // The execution role pulls the image and writes the process log group.
    assert!(actions_on(&t, "ProcessExecutionRole", "ProcessLogGroup").contains(&"logs:PutLogEvents".to_owned()));
    assert!(actions_on(&t, "ProcessExecutionRole", "repository/").contains(&"ecr:BatchGetImage".to_owned()));
}
