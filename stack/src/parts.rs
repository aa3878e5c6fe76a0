//! Building blocks shared by the templates: private buckets, roles from grants, log groups.

use serde_json::{Value, json};

use crate::checks;
use crate::iam::{Grant, assume_role_policy, policy_statements};
use crate::stage::StageConfig;
use crate::template::{Keep, LogicalId, Resource, ResourceType, Template, sub};

/// A private bucket: encrypted (SSE-S3), versioned, public access blocked, owner-enforced,
/// old versions and unfinished uploads expired, and a policy refusing plain HTTP.
pub fn private_bucket(
    t: &mut Template,
    id: &str,
    cfg: &StageConfig,
    name: Option<Value>,
    extra: Value,
    keep: Keep,
) -> LogicalId {
    let mut properties = json!({
        "BucketEncryption": { "ServerSideEncryptionConfiguration": [
            { "ServerSideEncryptionByDefault": { "SSEAlgorithm": "AES256" }, "BucketKeyEnabled": true }
        ] },
        "VersioningConfiguration": { "Status": "Enabled" },
        "PublicAccessBlockConfiguration": {
            "BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true
        },
        "OwnershipControls": { "Rules": [{ "ObjectOwnership": "BucketOwnerEnforced" }] },
        "LifecycleConfiguration": { "Rules": [{
            "Id": "expire-old-versions",
            "Status": "Enabled",
            "NoncurrentVersionExpiration": { "NoncurrentDays": 30 },
            "AbortIncompleteMultipartUpload": { "DaysAfterInitiation": 7 }
        }] },
        "Tags": cfg.tag_list(),
    });
    let map = properties.as_object_mut().expect("an object");
    if let Some(name) = name {
        map.insert("BucketName".into(), name);
    }
    if let Value::Object(mut extra) = extra {
        // `ExtraLifecycleRules`: rules added to the shared one (a bucket's own prefixes).
        if let Some(Value::Array(rules)) = extra.remove("ExtraLifecycleRules")
            && let Some(Value::Array(shared)) = map.get_mut("LifecycleConfiguration").and_then(|c| c.get_mut("Rules"))
        {
            shared.extend(rules);
        }
        map.extend(extra);
    }
    let bucket =
        t.add(id, Resource::new(ResourceType::S3Bucket, properties).keep(keep).skip_check(checks::BUCKET_ACCESS_LOGS));
    t.add(
        &format!("{id}Policy"),
        Resource::new(
            ResourceType::S3BucketPolicy,
            json!({
                "Bucket": bucket.r#ref(),
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": { "AWS": "*" },
                        "Action": "s3:*",
                        "Resource": [bucket.get_att("Arn"), sub(format!("${{{bucket}.Arn}}/*"))],
                        "Condition": { "Bool": { "aws:SecureTransport": "false" } }
                    }]
                }
            }),
        ),
    );
    bucket
}

/// A role for `service` whose only permissions are the statements derived from `grants`.
pub fn role(t: &mut Template, id: &str, cfg: &StageConfig, service: &str, grants: &[Grant]) -> LogicalId {
    let role = LogicalId::new(id);
    let statements = policy_statements(&role, grants);
    assert!(!statements.is_empty(), "{id} has no grants: declare what it touches");
    t.add(
        id,
        Resource::new(
            ResourceType::IamRole,
            json!({
                "AssumeRolePolicyDocument": assume_role_policy(service),
                "Policies": [{
                    "PolicyName": "least-privilege",
                    "PolicyDocument": { "Version": "2012-10-17", "Statement": statements }
                }],
                "Tags": cfg.tag_list(),
            }),
        ),
    )
}

/// A log group with the stage's retention.
pub fn log_group(t: &mut Template, id: &str, cfg: &StageConfig, name: Value) -> LogicalId {
    t.add(
        id,
        Resource::new(
            ResourceType::LogGroup,
            json!({ "LogGroupName": name, "RetentionInDays": cfg.log_retention_days, "Tags": cfg.tag_list() }),
        )
        .skip_check(checks::LOG_GROUP_CMK),
    )
}
