//! Each rule of `stack/rules/` catches what it is about: for every rule, a synthesized template
//! broken in exactly that way fails cfn-guard with that rule named, while the templates as
//! synthesized pass. A rule added without a case here fails [`every_rule_has_a_breaking_case`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use stack::Stage;

/// (rule, template, how to break it).
type Case = (&'static str, &'static str, fn(&mut Value));

fn resources(t: &mut Value) -> &mut serde_json::Map<String, Value> {
    t["Resources"].as_object_mut().expect("resources")
}

fn props<'a>(t: &'a mut Value, id: &str) -> &'a mut Value {
    &mut resources(t).get_mut(id).unwrap_or_else(|| panic!("no resource {id}"))["Properties"]
}

fn remove(value: &mut Value, key: &str) {
    value.as_object_mut().expect("an object").remove(key).unwrap_or_else(|| panic!("no {key} to remove"));
}

const CASES: &[Case] = &[
    ("s3_bucket_encrypted", "local/stage.json", |t| remove(props(t, "RawBucket"), "BucketEncryption")),
    ("s3_bucket_public_access_blocked", "local/stage.json", |t| {
        props(t, "RawBucket")["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] = json!(false)
    }),
    ("s3_bucket_versioned", "local/stage.json", |t| remove(props(t, "RejectsBucket"), "VersioningConfiguration")),
    ("s3_bucket_tls_only", "local/stage.json", |t| {
        resources(t).remove("BackupsBucketPolicy");
    }),
    ("rds_encrypted", "local/stage.json", |t| props(t, "Database")["StorageEncrypted"] = json!(false)),
    ("rds_private", "local/stage.json", |t| props(t, "Database")["PubliclyAccessible"] = json!(true)),
    ("rds_managed_master_password", "local/stage.json", |t| {
        let db = props(t, "Database");
        remove(db, "ManageMasterUserPassword");
        db["MasterUserPassword"] = json!("hunter2hunter2");
    }),
    ("rds_snapshot_on_delete", "local/stage.json", |t| resources(t)["Database"]["DeletionPolicy"] = json!("Delete")),
    ("rds_protected_in_prod", "prod/stage.json", |t| props(t, "Database")["DeletionProtection"] = json!(false)),
    ("iam_no_wildcard_actions", "local/stage.json", |t| {
        props(t, "ProcessRole")["Policies"][0]["PolicyDocument"]["Statement"][0]["Action"] = json!(["s3:*"])
    }),
    ("iam_star_resource_only_where_required", "local/stage.json", |t| {
        props(t, "ProcessRole")["Policies"][0]["PolicyDocument"]["Statement"][0] =
            json!({ "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*" })
    }),
    ("iam_managed_policies_only_for_cloudformation", "local/stage.json", |t| {
        props(t, "ProcessRole")["ManagedPolicyArns"] = json!(["arn:aws:iam::aws:policy/AdministratorAccess"])
    }),
    ("log_group_retention", "local/stage.json", |t| remove(props(t, "ApiLogGroup"), "RetentionInDays")),
    ("ecs_rollback_on_failure", "local/stage.json", |t| {
        props(t, "ApiService")["DeploymentConfiguration"]["DeploymentCircuitBreaker"]["Rollback"] = json!(false)
    }),
    ("ecs_no_public_ip", "local/stage.json", |t| {
        props(t, "ApiService")["NetworkConfiguration"]["AwsvpcConfiguration"]["AssignPublicIp"] = json!("ENABLED")
    }),
    ("ecs_containers_hardened", "local/stage.json", |t| {
        props(t, "ApiTaskDefinition")["ContainerDefinitions"][0]["ReadonlyRootFilesystem"] = json!(false)
    }),
    ("state_machine_logging", "local/stage.json", |t| {
        props(t, "StateMachine")["LoggingConfiguration"]["IncludeExecutionData"] = json!(true)
    }),
    ("ecr_scan_and_immutable", "bootstrap.json", |t| {
        props(t, "ApiRepository")["ImageTagMutability"] = json!("MUTABLE")
    }),
    ("security_group_no_open_ingress", "local/stage.json", |t| {
        props(t, "ApiSecurityGroup")["SecurityGroupIngress"][0] =
            json!({ "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "CidrIp": "0.0.0.0/0" })
    }),
    ("load_balancer_internal", "local/stage.json", |t| props(t, "LoadBalancer")["Scheme"] = json!("internet-facing")),
    ("subnets_private", "local/stage.json", |t| props(t, "PrivateSubnetA")["MapPublicIpOnLaunch"] = json!(true)),
    ("functions_in_vpc", "local/stage.json", |t| remove(props(t, "ValidateFunction"), "VpcConfig")),
];

fn cfn_guard() -> PathBuf {
    std::env::var_os("HIRING_CFN_GUARD").map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "HIRING_CFN_GUARD is not set: run `cargo xtask test` (it installs cfn-guard), or `cargo xtask lint` once"
        )
    })
}

fn rules_dir() -> PathBuf {
    devenv::project_root().join("stack/rules")
}

/// The template synthesized in-process (the same bytes `cargo xtask synth` commits).
fn template(file: &str) -> Value {
    let stage = match file.split_once('/') {
        Some((stage, _)) => stage.parse().expect("a stage folder"),
        None => Stage::Local,
    };
    let synthesized = stack::synth(stage).into_iter().find(|s| s.file == file).expect("the template is synthesized");
    serde_json::from_str(&synthesized.template.to_json()).expect("JSON")
}

/// The rules cfn-guard reports as failing for `template`, and its exit code.
fn failing_rules(template: &Value) -> (BTreeSet<String>, Option<i32>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("template.json");
    std::fs::write(&path, serde_json::to_vec_pretty(template).expect("JSON")).expect("write the template");
    let output = Command::new(cfn_guard())
        .args(["validate", "--output-format", "json", "--structured", "--show-summary", "none", "--rules"])
        .arg(rules_dir())
        .arg("--data")
        .arg(&path)
        .output()
        .expect("cfn-guard runs");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "cfn-guard's report is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let mut failing = BTreeSet::new();
    for file in report.as_array().into_iter().flatten() {
        for rule in file["not_compliant"].as_array().into_iter().flatten() {
            if let Some(name) = rule["Rule"]["name"].as_str() {
                failing.insert(name.to_owned());
            }
        }
    }
    (failing, output.status.code())
}

#[test]
fn every_rule_has_a_breaking_case() {
    let mut declared = BTreeSet::new();
    for entry in std::fs::read_dir(rules_dir()).expect("stack/rules") {
        let text = std::fs::read_to_string(entry.expect("an entry").path()).expect("a rules file");
        for line in text.lines() {
            if let Some(rest) = line.trim_start().strip_prefix("rule ") {
                declared.insert(rest.split_whitespace().next().expect("a rule name").to_owned());
            }
        }
    }
    let covered: BTreeSet<String> = CASES.iter().map(|(rule, _, _)| rule.to_string()).collect();
    assert_eq!(declared, covered, "every rule of stack/rules/ needs a case in CASES, and every case a rule");
}

#[test]
fn the_synthesized_templates_keep_every_rule() {
    for file in ["bootstrap.json", "local/stage.json", "prod/stage.json", "prod/pipeline.json"] {
        let (failing, code) = failing_rules(&template(file));
        assert!(failing.is_empty(), "{file} breaks {failing:?}");
        assert_eq!(code, Some(0), "{file}");
    }
}

#[test]
fn each_rule_fails_on_a_template_that_breaks_it() {
    for (rule, file, mut_template) in CASES {
        let mut broken = template(file);
        mut_template(&mut broken);
        let (failing, code) = failing_rules(&broken);
        assert!(failing.contains(*rule), "{rule} did not fail on {file} broken for it; failing: {failing:?}");
        assert_eq!(code, Some(19), "cfn-guard exits 19 on a failing rule ({rule})");
    }
}

/// `stack/registry/create-only.json` (which `stack::diff` marks replacements from) is what the
/// pinned cfn-lint's registry schemas say for every type the stack uses.
#[test]
fn the_create_only_table_matches_the_registry_schemas() {
    let python = std::env::var_os("HIRING_PYTHON")
        .unwrap_or_else(|| panic!("HIRING_PYTHON is not set: run `cargo xtask test` (the venv has cfn-lint)"));
    let script = devenv::project_root().join("stack/registry/extract.py");
    let output = Command::new(python).arg(&script).output().expect("the venv's python runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let committed = std::fs::read_to_string(script.with_file_name("create-only.json")).expect("the committed table");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        committed,
        "stack/registry/create-only.json is stale: run `target/venv/bin/python stack/registry/extract.py > stack/registry/create-only.json`"
    );
}
