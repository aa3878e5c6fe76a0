//! What AWS's documentation requires of the templates, one requirement per test, on the
//! synthesized templates: the API task's scratch volume, the grants each role needs for the calls
//! it makes, the delivery pipeline's CodeBuild and ECR settings, names, retention and trust. What
//! the emulator can also show (IAM denials) is shown again by `cargo xtask test-local` with IAM
//! enforced; these pin what moto cannot evaluate (CodeBuild, CodePipeline, ECR lifecycle,
//! Fargate volumes).

use serde_json::Value;
use stack::template::{ResourceType, Template};
use stack::{Stage, Topology};

mod common;
use common::{list, statements};

/// A file of the checkout the test runs in (cargo gives the package's folder at run time).
fn repo_file(path: &str) -> std::path::PathBuf {
    let package = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    std::path::Path::new(&package).join("..").join(path)
}

fn stage(stage: Stage) -> Template {
    Topology::stage(&stage.config()).template
}

fn pipeline(stage: Stage) -> Template {
    stack::delivery::template(&stage.config()).expect("the stage has a pipeline")
}

/// Whether `role` is allowed `action` on a resource whose JSON text contains `on`.
fn allows(t: &Template, role: &str, action: &str, on: &str) -> bool {
    statements(t, role).iter().any(|s| {
        s["Effect"] == "Allow"
            && list(&s["Action"]).iter().any(|a| a == action)
            && list(&s["Resource"]).iter().any(|r| r.to_string().contains(on))
    })
}

fn container(t: &Template) -> Value {
    t.resource("ApiTaskDefinition").expect("a task definition").properties["ContainerDefinitions"][0].clone()
}

#[test]
fn the_api_task_has_a_writable_scratch_volume_where_uploads_are_staged() {
    for s in Stage::ALL {
        let t = stage(s);
        let task = &t.resource("ApiTaskDefinition").unwrap().properties;
        let c = container(&t);
        assert_eq!(c["ReadonlyRootFilesystem"], true, "{s}: the root filesystem stays read-only");
        let data_dir = list(&c["Environment"])
            .into_iter()
            .find(|e| e["Name"] == "HIRING_DATA_DIR")
            .unwrap_or_else(|| panic!("{s}: the container sets no HIRING_DATA_DIR"))["Value"]
            .as_str()
            .expect("a path")
            .to_owned();
        assert!(data_dir.starts_with('/'), "{s}: HIRING_DATA_DIR `{data_dir}` is relative");
        let mount = list(&c["MountPoints"])
            .into_iter()
            .find(|m| m["ContainerPath"] == data_dir.as_str())
            .unwrap_or_else(|| panic!("{s}: nothing is mounted at HIRING_DATA_DIR {data_dir}"));
        assert_ne!(mount["ReadOnly"], true, "{s}: the scratch mount is read-only");
        let volume = mount["SourceVolume"].as_str().expect("a volume name");
        assert!(
            list(&task["Volumes"]).iter().any(|v| v["Name"] == volume),
            "{s}: the task declares no volume {volume}"
        );
        assert_eq!(data_dir, stack::API_DATA_DIR, "the image declares the same path (xtask::image)");
    }
}

#[test]
fn the_api_task_role_can_head_the_raw_object_it_wrote() {
    let t = stage(Stage::Prod);
    assert!(allows(&t, "ApiTaskRole", "s3:PutObject", "RawBucket.Arn}/*"));
    // HeadObject is authorized as s3:GetObject.
    assert!(allows(&t, "ApiTaskRole", "s3:GetObject", "RawBucket.Arn}/*"), "the API cannot head what it uploaded");
}

#[test]
fn publish_may_describe_the_repository_and_its_images() {
    for s in [Stage::Dev, Stage::Staging, Stage::Prod] {
        let t = pipeline(s);
        for action in ["ecr:DescribeRepositories", "ecr:DescribeImages", "ecr:PutImage"] {
            assert!(
                allows(&t, "PublishBuildRole", action, "repository/hiring-api"),
                "{s}: PublishBuildRole lacks {action}"
            );
        }
    }
}

#[test]
fn publish_can_diff_the_stage_stack_and_both_builds_can_remove_an_empty_review_stack() {
    for s in [Stage::Dev, Stage::Prod] {
        let t = pipeline(s);
        let stage_stack = format!("stack/{}/", s.stack_name());
        for action in [
            "cloudformation:DescribeStacks",
            "cloudformation:GetTemplate",
            "cloudformation:CreateChangeSet",
            "cloudformation:DescribeChangeSet",
            "cloudformation:DeleteChangeSet",
        ] {
            assert!(allows(&t, "PublishBuildRole", action, &stage_stack), "{s}: publish's diff lacks {action}");
        }
        assert!(allows(&t, "PublishBuildRole", "cloudformation:DeleteStack", "stack/hiring-bootstrap/"));
        assert!(allows(&t, "DeployBuildRole", "cloudformation:DeleteStack", &stage_stack));
    }
}

#[test]
fn the_source_action_can_write_its_artifact_through_either_connection_namespace() {
    let t = pipeline(Stage::Prod);
    for action in ["codestar-connections:UseConnection", "codeconnections:UseConnection"] {
        assert!(allows(&t, "PipelineRole", action, "SourceConnection"), "PipelineRole lacks {action}");
    }
    for action in ["s3:PutObjectAcl", "s3:PutObjectVersionAcl", "s3:GetObjectVersion", "s3:GetBucketVersioning"] {
        assert!(allows(&t, "PipelineRole", action, "ArtifactsBucket"), "PipelineRole lacks {action}");
    }
}

#[test]
fn arm64_packages_come_from_the_ports_mirror() {
    let publish = std::fs::read_to_string(repo_file("codepipeline/publish.yml")).unwrap();
    assert!(
        !publish.contains("dpkg --add-architecture arm64 && apt-get update"),
        "arm64 added over the default mirrors, which serve no arm64 indexes"
    );
    assert!(publish.contains("codepipeline/arm64-apt.sh"), "publish.yml does not use the ports set-up");

    // The script on a copy of Ubuntu 22.04's apt sources (CodeBuild's standard:7.0), twice.
    let root = std::env::temp_dir().join(format!("hiring-apt-{}", std::process::id()));
    let apt = root.join("etc/apt");
    std::fs::create_dir_all(apt.join("sources.list.d")).unwrap();
    std::fs::write(root.join("etc/os-release"), "VERSION_CODENAME=jammy\nUBUNTU_CODENAME=jammy\n").unwrap();
    std::fs::write(
        apt.join("sources.list"),
        "deb http://archive.ubuntu.com/ubuntu/ jammy main restricted\n\
         deb [signed-by=/k.gpg] http://security.ubuntu.com/ubuntu/ jammy-security main\n",
    )
    .unwrap();
    for _ in 0..2 {
        let status = std::process::Command::new("bash")
            .arg(repo_file("codepipeline/arm64-apt.sh"))
            .env("APT_ROOT", &root)
            .env("HIRING_APT_DRY_RUN", "1")
            .status()
            .unwrap();
        assert!(status.success());
    }
    let main = std::fs::read_to_string(apt.join("sources.list")).unwrap();
    assert_eq!(
        main,
        "deb [arch=amd64] http://archive.ubuntu.com/ubuntu/ jammy main restricted\n\
         deb [arch=amd64 signed-by=/k.gpg] http://security.ubuntu.com/ubuntu/ jammy-security main\n"
    );
    let ports = std::fs::read_to_string(apt.join("sources.list.d/arm64-ports.list")).unwrap();
    for suite in ["jammy", "jammy-updates", "jammy-security"] {
        assert!(
            ports.contains(&format!("deb [arch=arm64] http://ports.ubuntu.com/ubuntu-ports {suite} main")),
            "{ports}"
        );
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn ecr_keeps_the_images_every_stage_references() {
    let t = stack::bootstrap::template();
    let text = t.resource("ApiRepository").unwrap().properties["LifecyclePolicy"]["LifecyclePolicyText"]
        .as_str()
        .unwrap()
        .to_owned();
    let policy: Value = serde_json::from_str(&text).unwrap();
    let rules = list(&policy["rules"]);
    assert!(
        !rules.iter().any(|r| r["selection"]["tagStatus"] == "any"),
        "a rule over every image can expire the one prod runs: {text}"
    );
    for s in [Stage::Dev, Stage::Staging, Stage::Prod] {
        let prefix = stack::image_tag_prefix(s);
        assert!(
            rules.iter().any(|r| r["selection"]["tagStatus"] == "tagged"
                && list(&r["selection"]["tagPrefixList"]).iter().any(|p| p == prefix.as_str())),
            "no rule keeps {s}'s images ({prefix}…): {text}"
        );
    }
    // A higher priority protects an image from every lower rule: prod's rule comes first.
    let priority = |prefix: String| {
        rules.iter().find(|r| list(&r["selection"]["tagPrefixList"]).iter().any(|p| p == prefix.as_str())).unwrap()
            ["rulePriority"]
            .as_u64()
            .unwrap()
    };
    assert!(priority(stack::image_tag_prefix(Stage::Prod)) < priority(stack::image_tag_prefix(Stage::Dev)));
}

#[test]
fn codebuild_roles_have_the_artifact_bucket_permissions_codebuild_needs() {
    let t = pipeline(Stage::Prod);
    for role in ["TestBuildRole", "PublishBuildRole", "DeployBuildRole"] {
        for action in ["s3:GetBucketAcl", "s3:GetBucketLocation"] {
            assert!(allows(&t, role, action, r#"["ArtifactsBucket","Arn"]"#), "{role} lacks {action} on the bucket");
        }
        assert!(allows(&t, role, "s3:GetObjectVersion", "ArtifactsBucket.Arn}/*"), "{role} lacks s3:GetObjectVersion");
    }
}

#[test]
fn functions_may_delete_the_partial_outputs_they_clean_up() {
    let t = stage(Stage::Prod);
    // validate removes a partial rejects file, process a partial Parquet file (hiring::pipeline).
    assert!(allows(&t, "ValidateRole", "s3:DeleteObject", "RejectsBucket.Arn}/*"));
    assert!(allows(&t, "ProcessRole", "s3:DeleteObject", "ProcessedBucket.Arn}/*"));
    assert!(!allows(&t, "ValidateRole", "s3:DeleteObject", "RawBucket"), "nothing deletes raw objects");
}

#[test]
fn builds_cache_and_the_toolchain_is_pinned() {
    let t = pipeline(Stage::Prod);
    for project in ["TestProject", "PublishProject", "DeployProject"] {
        let cache = &t.resource(project).unwrap().properties["Cache"];
        assert_eq!(cache["Type"], "S3", "{project}: the buildspec's cache paths need a project cache");
    }
    let toolchain = std::fs::read_to_string(repo_file("rust-toolchain.toml")).expect("rust-toolchain.toml");
    let channel = toolchain.lines().find(|l| l.trim_start().starts_with("channel")).expect("a channel");
    assert!(channel.contains("\"1."), "the toolchain is not pinned to a version: {channel}");
}

#[test]
fn postgres_pins_the_major_version_only() {
    for s in Stage::ALL {
        let t = stage(s);
        let version = t.resource("Database").unwrap().properties["EngineVersion"].as_str().unwrap().to_owned();
        assert!(!version.contains('.'), "{s}: EngineVersion {version} pins a minor that automatic upgrades move past");
    }
}

#[test]
fn no_secret_has_a_fixed_name() {
    for s in Stage::ALL {
        for synthesized in stack::synth(s) {
            for (id, r) in &synthesized.template.resources {
                if r.kind == ResourceType::SecretsManagerSecret {
                    assert!(r.properties.get("Name").is_none(), "{}: {id} has a fixed Name", synthesized.file);
                }
            }
        }
    }
}

#[test]
fn failed_deliveries_are_kept_alarms_reach_someone_and_service_trust_is_scoped() {
    let t = stage(Stage::Prod);
    let rule = &t.resource("PipelineRule").unwrap().properties;
    assert!(rule["Targets"][0]["DeadLetterConfig"]["Arn"].is_object(), "the rule's target has no DLQ");
    let schedule = &t.resource("BackupSchedule").unwrap().properties;
    assert!(schedule["Target"]["DeadLetterConfig"]["Arn"].is_object(), "the schedule has no DLQ");
    assert!(t.parameters.keys().any(|p| p.as_str() == "AlarmEmail"), "no parameter takes an alarm subscriber");
    assert!(
        t.resources.values().any(|r| r.kind == ResourceType::SnsSubscription),
        "the alarm topic has no subscription"
    );
    for role in ["PipelineRuleRole", "BackupScheduleRole"] {
        let trust = &t.resource(role).unwrap().properties["AssumeRolePolicyDocument"]["Statement"][0];
        assert!(
            trust["Condition"]["StringEquals"]["aws:SourceAccount"].is_object(),
            "{role}'s trust policy has no aws:SourceAccount condition: {trust}"
        );
    }
}
