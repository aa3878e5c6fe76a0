//! The templates of every stage: complete, deterministic, fast, and least-privilege.

use std::time::{Duration, Instant};

use serde_json::Value;
use stack::iam::is_unscoped;
use stack::template::{Keep, ResourceType};
use stack::{Stage, Topology};

#[test]
fn every_stage_synthesizes_the_same_bytes_twice_with_no_dangling_reference() {
    for stage in Stage::ALL {
        let first: Vec<String> = stack::synth(stage).iter().map(|s| s.template.to_json()).collect();
        let second: Vec<String> = stack::synth(stage).iter().map(|s| s.template.to_json()).collect();
        assert_eq!(first, second, "{stage} is not deterministic");
        for synthesized in stack::synth(stage) {
            synthesized.template.check_references().unwrap_or_else(|e| panic!("{}: {e}", synthesized.file));
        }
    }
}

#[test]
fn synthesizing_all_stages_takes_well_under_a_second() {
    // Not a benchmark: a guard against an accidental quadratic blow-up (debug build included).
    let started = Instant::now();
    for stage in Stage::ALL {
        for synthesized in stack::synth(stage) {
            assert!(synthesized.template.to_json().len() > 1000);
        }
    }
    assert!(started.elapsed() < Duration::from_secs(1), "synth took {:?}", started.elapsed());
}

#[test]
fn the_stage_stack_has_every_component_of_the_design() {
    let topology = Topology::stage(&Stage::Prod.config());
    let count = |kind: ResourceType| topology.template.resources.values().filter(|r| r.kind == kind).count();
    assert_eq!(count(ResourceType::S3Bucket), 5, "raw, rejects, processed, backups, analytics results");
    assert_eq!(count(ResourceType::S3BucketPolicy), 5, "a TLS-only policy per bucket");
    assert_eq!(count(ResourceType::GlueTable), 3, "one per zone folder");
    assert_eq!(count(ResourceType::LambdaFunction), 3);
    assert_eq!(count(ResourceType::Ec2Subnet), 2);
    assert_eq!(count(ResourceType::Ec2VpcEndpoint), 5);
    for kind in [
        ResourceType::StepFunctionsStateMachine,
        ResourceType::EventsRule,
        ResourceType::SchedulerSchedule,
        ResourceType::RdsDbInstance,
        ResourceType::EcsCluster,
        ResourceType::EcsService,
        ResourceType::LoadBalancer,
        ResourceType::ApiGatewayV2Api,
        ResourceType::ApiGatewayV2VpcLink,
    ] {
        assert_eq!(count(kind), 1, "{kind:?}");
    }
    assert_eq!(count(ResourceType::EcsTaskDefinition), 2, "the API's, and the process step's for large files");
    assert!(count(ResourceType::CloudWatchAlarm) >= 7);
    let outputs: Vec<&str> = topology.template.outputs.keys().map(|k| k.as_str()).collect();
    for output in ["ApiUrl", "RawBucketName", "StateMachineArn", "ApiImage", "DatabaseEndpoint"] {
        assert!(outputs.contains(&output), "missing output {output}");
    }
}

#[test]
fn policies_name_actions_and_use_resource_star_only_where_aws_requires_it() {
    for stage in Stage::ALL {
        for synthesized in stack::synth(stage) {
            for (id, resource) in &synthesized.template.resources {
                if resource.kind != ResourceType::IamRole {
                    continue;
                }
                let Some(policies) = resource.properties.get("Policies").and_then(Value::as_array) else { continue };
                for statement in policies
                    .iter()
                    .flat_map(|p| p["PolicyDocument"]["Statement"].as_array().cloned().unwrap_or_default())
                {
                    let actions: Vec<&str> = match &statement["Action"] {
                        Value::String(a) => vec![a.as_str()],
                        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
                        other => panic!("{id}: Action {other}"),
                    };
                    for action in &actions {
                        assert!(
                            !action.contains('*'),
                            "{}: {id} allows the wildcard action {action}",
                            synthesized.file
                        );
                    }
                    let star = statement["Resource"] == "*"
                        || statement["Resource"].as_array().is_some_and(|r| r.iter().any(|v| v == "*"));
                    if star {
                        for action in &actions {
                            assert!(
                                is_unscoped(action),
                                "{}: {id} allows {action} on every resource",
                                synthesized.file
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn prod_is_protected_and_the_emulator_stage_is_disposable() {
    let prod = Topology::stage(&Stage::Prod.config()).template;
    let db = prod.resource("Database").expect("a database");
    assert_eq!(db.properties["DeletionProtection"], true);
    assert_eq!(db.properties["MultiAZ"], true);
    assert_eq!(db.keep, Keep::Snapshot);
    assert_eq!(prod.resource("RawBucket").unwrap().keep, Keep::Retain);
    let local = Topology::stage(&Stage::Local.config()).template;
    assert_eq!(local.resource("Database").unwrap().properties["DeletionProtection"], false);
    assert_eq!(local.resource("RawBucket").unwrap().keep, Keep::Delete);
    assert!(local.parameters.keys().any(|p| p.as_str() == "DatabaseSecretArn"));
    assert!(!prod.parameters.keys().any(|p| p.as_str() == "DatabaseSecretArn"));
}

#[test]
fn the_diagram_draws_the_pipeline_and_the_grants() {
    let diagram = stack::diagram::mermaid(&Topology::stage(&Stage::Prod.config()));
    assert!(diagram.starts_with("flowchart LR\n"));
    for edge in [
        "RawBucket -->|Object Created| PipelineRule",
        "PipelineRule -->|starts| StateMachine",
        "StateMachine -->|1. validate| ValidateFunction",
        "ProcessFunction -->|writes| ProcessedBucket",
        "HttpApi -->|VPC link| LoadBalancer",
    ] {
        assert!(diagram.contains(edge), "missing `{edge}` in\n{diagram}");
    }
}

#[test]
fn every_template_fits_in_a_create_change_set_request() {
    // `ops::cfn` sends a stage stack's template by URL from the assets bucket (`TemplateURL`:
    // at most 1 MB), and the others inline (`TemplateBody`: compact, without Metadata, at most
    // 51,200 bytes; API_CreateChangeSet); keep a margin for what comes next.
    for stage in Stage::ALL {
        for synthesized in stack::synth(stage) {
            let body: Value = serde_json::from_str(&synthesized.template.to_json()).unwrap();
            let size = stack::template::deployable(&body).len();
            let (limit, how) = if synthesized.stack_name == stage.stack_name() {
                (stack::template::TEMPLATE_URL_LIMIT, "a TemplateURL object")
            } else {
                (stack::template::TEMPLATE_BODY_LIMIT, "a TemplateBody")
            };
            assert!(
                size <= limit * 9 / 10,
                "{}: {size} bytes, over 90% of the {limit} {how} may have",
                synthesized.file
            );
        }
    }
}
