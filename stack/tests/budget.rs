//! The connection budget: no stage may be configured so that its API tasks and
//! functions together can open more connections than its database class accepts.

use stack::budget;
use stack::{Stage, StageConfig, Topology};

fn budget_of(cfg: &StageConfig) -> Result<budget::Budget, String> {
    budget::of(&Topology::stage(cfg).template)
}

#[test]
fn every_stage_fits_its_database() {
    for stage in Stage::ALL {
        let budget = budget_of(&stage.config()).unwrap_or_else(|e| panic!("{stage}: {e}"));
        println!("{stage}: {budget:?} total {}", budget.total());
        budget.check().unwrap_or_else(|e| panic!("{stage}: {e}"));
        // Every component is counted: the API and the three functions.
        assert_eq!(budget.shares.len(), 4, "{stage}: {:?}", budget.shares);
        assert!(budget.shares.iter().all(|s| s.total() > 0 || stage == Stage::Local), "{stage}: {budget:?}");
    }
}

#[test]
fn the_budget_counts_what_the_template_deploys() {
    let cfg = Stage::Prod.config();
    let budget = budget_of(&cfg).expect("prod's budget");
    let api = &budget.shares[0];
    // The pool, the metrics cache's listener and the master user's, on twice the maximum tasks (a rolling deploy
    // at MaximumPercent 200 runs old and new side by side).
    assert_eq!((api.per_instance, api.instances), (cfg.api_db_pool + 2, cfg.api_max_tasks * 2));
    let process = budget.shares.iter().find(|s| s.component == "ProcessFunction").expect("the process function");
    assert_eq!(
        (process.per_instance, process.instances),
        (stack::stage::FUNCTION_DB_POOL + 1, cfg.function_concurrency.process)
    );
    // db.m7g.large has 8 GiB: LEAST(8 GiB / 9531392, 5000) = 901.
    assert_eq!((budget.class.as_str(), budget.max_connections), ("db.m7g.large", 901));
    assert_eq!(budget::max_connections("db.t4g.micro"), Some(112));
}

#[test]
fn a_stage_configured_past_its_database_is_refused() {
    let too_many_tasks = StageConfig { api_max_tasks: 40, ..Stage::Prod.config() };
    let error = budget_of(&too_many_tasks).and_then(|b| b.check()).unwrap_err();
    assert!(error.contains("database connections") && error.contains("db.m7g.large"), "{error}");

    let functions = StageConfig {
        function_concurrency: stack::stage::FunctionConcurrency { validate: 30, process: 30, backup: 1 },
        ..Stage::Dev.config()
    };
    let error = budget_of(&functions).and_then(|b| b.check()).unwrap_err();
    assert!(error.contains("ValidateFunction 3 x 30 = 90"), "{error}");

    let unknown_class = StageConfig { db_instance_class: "db.x99.huge", ..Stage::Dev.config() };
    assert!(budget_of(&unknown_class).unwrap_err().contains("knows no class db.x99.huge"));
}

#[test]
fn a_function_without_reserved_concurrency_is_refused() {
    let mut template = Topology::stage(&Stage::Staging.config()).template;
    for resource in template.resources.values_mut() {
        if let Some(properties) = resource.properties.as_object_mut() {
            properties.remove("ReservedConcurrentExecutions");
        }
    }
    let error = budget::of(&template).unwrap_err();
    assert!(error.contains("no ReservedConcurrentExecutions"), "{error}");
}

/// Review of issue 15: with `DesiredCount` in the template, every stack update sets it again,
/// so a deploy would cut a service the policy scaled out back to its minimum. Left out, a
/// CloudFormation update leaves the count to Application Auto Scaling
/// (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-ecs-service.html,
/// DesiredCount: "For existing services, if a desired count is not specified, it is omitted
/// from the operation").
#[test]
fn a_deploy_leaves_the_scaled_task_count_alone() {
    for stage in [Stage::Dev, Stage::Staging, Stage::Prod] {
        let template = Topology::stage(&stage.config()).template;
        let service = template.resource("ApiService").expect("the API service");
        assert!(
            service.properties.get("DesiredCount").is_none(),
            "{stage}: the service sets DesiredCount, which every deploy would apply over the scaled count"
        );
        let target = template.resource("ApiScalableTarget").expect("the scalable target");
        assert!(target.properties["MinCapacity"].as_u64() >= Some(1), "{stage}: the minimum keeps a task running");
    }
}

/// Review of issue 15: a process also opens a master-user connection beside its pool (the
/// application role's password applied after a refusal or a change), which the budget counts.
#[test]
fn the_budget_counts_the_master_user_s_connection() {
    let cfg = Stage::Prod.config();
    let budget = budget_of(&cfg).expect("prod's budget");
    assert_eq!(budget.shares[0].per_instance, cfg.api_db_pool + 2, "pool, listener and the master user's");
    let validate = budget.shares.iter().find(|s| s.component == "ValidateFunction").unwrap();
    assert_eq!(validate.per_instance, stack::stage::FUNCTION_DB_POOL + 1, "pool and the master user's");
}
