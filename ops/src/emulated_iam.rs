//! IAM enforced on moto, for `test-local`: every component acts with the credentials of its own
//! role, and a call outside the role's grants is denied, as on AWS.
//!
//! How: moto authorizes requests once its auth is on (`POST /moto-api/reset-auth` with `0`;
//! `INITIAL_NO_AUTH_ACTION_COUNT` does the same at start). Before that, [`Iam::enable`] makes
//! an operator user whose inline policy allows everything (the administrator who deploys), and
//! turns auth on; from then on the emulator's test keys are refused (`InvalidClientTokenId`).
//! [`Iam::assume`] gives a component the credentials of a role made from the synthesized
//! template's role — its inline policy's statements — through `sts:AssumeRole`, as Lambda and
//! ECS give a function or a task its role's credentials.
//!
//! Why twins of the roles rather than the roles the stack made: moto 5.2.5 stores the inline
//! `Policies` of a role CloudFormation created in a shape its own evaluator cannot read (every
//! call made with such a role answers HTTP 500), and it cannot assume a role whose trust policy
//! names only a service principal (`lambda.amazonaws.com`). The twin has the template's
//! statements, resolved against the deployed stack, and trusts the operator.
//!
//! What moto evaluates, and so what this proves (moto 5.2.5, `moto/iam/access_control.py`):
//! actions, for every service; resources, for S3 only among the services the platform calls
//! (SQS and IAM too, which it does not call with a role): a grant scoped to a Secrets Manager,
//! Step Functions, ECR, CloudFormation or Logs ARN is checked against `*` and would always be
//! denied. Those statements are given `Resource: "*"` on the twin ([`EXACT_RESOURCES`] lists
//! the services kept exact). Conditions, `iam:PassRole` and a change set's `RoleARN` are not
//! evaluated by moto at all; parliament and checkov (`cargo xtask lint`) check those statically.
//!
//! moto's signature checks under enforcement are fixed where they failed for correct requests
//! (`devenv/src/moto/server.py`). The harness's own IAM set-up of the twins is made with auth
//! off for the call ([`Iam::unchecked`]); no component's call is made that way.

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};
use aws_credential_types::Credentials;
use devenv::moto::Moto;
use serde_json::{Value, json};

use crate::cfn;

/// The services whose grants keep their exact resources on the emulator: the ones moto
/// evaluates resource ARNs for (and the platform's components call). Every other statement's
/// resources become `*` (see the module documentation).
pub const EXACT_RESOURCES: [&str; 1] = ["s3"];

/// The emulator's account, region and partition, for the template's pseudo parameters.
const ACCOUNT: &str = "123456789012";
const REGION: &str = devenv::moto::REGION;

/// IAM on a moto server: the operator's credentials, and roles to assume.
pub struct Iam<'a> {
    moto: &'a Moto,
    operator: Credentials,
    operator_arn: String,
    /// The twin roles made so far: role name → ARN.
    twins: std::sync::Mutex<BTreeMap<String, String>>,
}

impl<'a> Iam<'a> {
    /// Makes the operator (a user allowed everything, with an access key), then turns moto's
    /// auth on: from here every request needs a key moto knows and a policy that allows it.
    pub async fn enable(moto: &'a Moto) -> anyhow::Result<Iam<'a>> {
        const USER: &str = "test-local-operator";
        let created = moto.query("iam", "2010-05-08", "CreateUser", &[("UserName", USER)]).await?;
        let operator_arn = created.text("Arn")?;
        let admin =
            json!({ "Version": "2012-10-17", "Statement": [{ "Effect": "Allow", "Action": "*", "Resource": "*" }] });
        moto.query(
            "iam",
            "2010-05-08",
            "PutUserPolicy",
            &[("UserName", USER), ("PolicyName", "administrator"), ("PolicyDocument", &admin.to_string())],
        )
        .await?;
        let key = moto.query("iam", "2010-05-08", "CreateAccessKey", &[("UserName", USER)]).await?;
        let operator =
            Credentials::new(key.text("AccessKeyId")?, key.text("SecretAccessKey")?, None, None, "test-local-operator");
        set_auth(moto, true).await?;
        Ok(Iam { moto, operator, operator_arn, twins: Default::default() })
    }

    /// The operator's credentials (the administrator who deploys and inspects).
    pub fn operator(&self) -> Credentials {
        self.operator.clone()
    }

    /// Runs `work` (the harness's own inspection, never a component's call) with auth off, for
    /// the requests moto cannot authorize (see the module documentation).
    pub async fn unchecked<T>(&self, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
        set_auth(self.moto, false).await?;
        let result = work.await;
        set_auth(self.moto, true).await?;
        result
    }

    /// Credentials of `role` (a logical id of `template`, deployed as the stack whose
    /// `physical` ids are given): a twin role with the template's statements, assumed through
    /// STS as the operator.
    pub async fn assume(
        &self,
        template: &stack::Template,
        role: &str,
        physical: &BTreeMap<String, String>,
    ) -> anyhow::Result<Credentials> {
        let name = format!("emulated-{role}");
        let made = self.twins.lock().map_err(|_| anyhow::anyhow!("a poisoned lock"))?.get(&name).cloned();
        let arn = match made {
            Some(arn) => arn,
            None => {
                let trust = json!({ "Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": { "AWS": self.operator_arn }, "Action": "sts:AssumeRole"
                }] });
                let statements = emulated_statements(template, role, physical)?;
                let policy = json!({ "Version": "2012-10-17", "Statement": statements });
                self.make_twin(&name, &trust, &policy).await?
            }
        };
        let sts = aws_sdk_sts::Client::new(&devenv::moto::sdk_config(&self.moto.endpoint(), self.operator()).await);
        let assumed = sts
            .assume_role()
            .role_arn(&arn)
            .role_session_name(format!("test-local-{role}"))
            .send()
            .await
            .map_err(|e| cfn::failed(format!("AssumeRole {arn}"), &e))?;
        let credentials = assumed.credentials().context("AssumeRole returned no credentials")?;
        Ok(Credentials::new(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            Some(credentials.session_token().to_owned()),
            None,
            "assumed-role",
        ))
    }

    /// Makes the twin role `name` (trust, inline policy), with auth off for the set-up.
    async fn make_twin(&self, name: &str, trust: &Value, policy: &Value) -> anyhow::Result<String> {
        let arn = self
            .unchecked(async {
                let created = self
                    .moto
                    .query(
                        "iam",
                        "2010-05-08",
                        "CreateRole",
                        &[("RoleName", name), ("AssumeRolePolicyDocument", &trust.to_string())],
                    )
                    .await?;
                self.moto
                    .query(
                        "iam",
                        "2010-05-08",
                        "PutRolePolicy",
                        &[
                            ("RoleName", name),
                            ("PolicyName", "least-privilege"),
                            ("PolicyDocument", &policy.to_string()),
                        ],
                    )
                    .await?;
                created.text("Arn")
            })
            .await?;
        self.twins.lock().map_err(|_| anyhow::anyhow!("a poisoned lock"))?.insert(name.to_owned(), arn.clone());
        Ok(arn)
    }
}

/// The environment a process acting with `credentials` gets (as Lambda and ECS set it).
pub fn credentials_env(credentials: &Credentials) -> Vec<(String, String)> {
    let mut env = vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), credentials.access_key_id().to_owned()),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), credentials.secret_access_key().to_owned()),
    ];
    if let Some(token) = credentials.session_token() {
        env.push(("AWS_SESSION_TOKEN".to_owned(), token.to_owned()));
    }
    env
}

/// `POST /moto-api/reset-auth`: `0` turns authorization on now, `inf` off.
async fn set_auth(moto: &Moto, on: bool) -> anyhow::Result<()> {
    let url = format!("{}/moto-api/reset-auth", moto.endpoint());
    let response = reqwest::Client::new()
        .post(&url)
        .body(if on { "0" } else { "inf" })
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    ensure!(response.status().is_success(), "POST {url} answered {}", response.status());
    Ok(())
}

/// `role`'s statements from `template`, resolved for the emulator: S3 resources exact (the
/// deployed buckets' ARNs), every other service's resources `*` ([`EXACT_RESOURCES`]).
pub fn emulated_statements(
    template: &stack::Template,
    role: &str,
    physical: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<Value>> {
    let resource = template.resource(role).with_context(|| format!("the template has no role {role}"))?;
    let mut out = Vec::new();
    for policy in resource.properties["Policies"].as_array().into_iter().flatten() {
        for statement in policy["PolicyDocument"]["Statement"].as_array().into_iter().flatten() {
            let actions: Vec<&str> = match &statement["Action"] {
                Value::String(action) => vec![action.as_str()],
                Value::Array(actions) => actions.iter().filter_map(Value::as_str).collect(),
                other => bail!("{role}: an Action that is neither a string nor a list: {other}"),
            };
            let exact = actions.iter().all(|a| EXACT_RESOURCES.iter().any(|s| a.starts_with(&format!("{s}:"))));
            let resources = if exact {
                let listed = match &statement["Resource"] {
                    Value::Array(items) => items.clone(),
                    one => vec![one.clone()],
                };
                listed.iter().map(|r| resolve(r, physical).map(Value::String)).collect::<anyhow::Result<Vec<_>>>()?
            } else {
                vec![json!("*")]
            };
            out.push(json!({ "Effect": statement["Effect"], "Action": actions, "Resource": resources }));
        }
    }
    ensure!(!out.is_empty(), "{role} has no statements");
    Ok(out)
}

/// An S3 resource of a statement as moto sees it: `Fn::GetAtt [Bucket, Arn]`, `Fn::Sub
/// "${Bucket.Arn}/*"` or a `Fn::Sub` ARN with pseudo parameters.
fn resolve(value: &Value, physical: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let bucket_arn = |id: &str| {
        physical.get(id).map(|name| format!("arn:aws:s3:::{name}")).with_context(|| format!("the stack has no {id}"))
    };
    if let Some(text) = value.as_str() {
        return Ok(text.to_owned());
    }
    if let Some([id, attribute]) = value["Fn::GetAtt"].as_array().map(Vec::as_slice)
        && attribute == "Arn"
    {
        return bucket_arn(id.as_str().unwrap_or_default());
    }
    if let Some(text) = value["Fn::Sub"].as_str() {
        let mut out = text.replace("${AWS::Partition}", "aws").replace("${AWS::AccountId}", ACCOUNT);
        out = out.replace("${AWS::Region}", REGION);
        while let Some(start) = out.find("${") {
            let end = out[start..].find('}').map(|e| start + e).context("an unclosed ${ in Fn::Sub")?;
            let reference = &out[start + 2..end];
            let id = reference.strip_suffix(".Arn").with_context(|| format!("cannot resolve ${{{reference}}}"))?;
            out = format!("{}{}{}", &out[..start], bucket_arn(id)?, &out[end + 1..]);
        }
        return Ok(out);
    }
    bail!("cannot resolve the S3 resource {value} for the emulator")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_grants_stay_exact_and_other_services_are_widened_for_moto() {
        let template = stack::Topology::stage(&stack::Stage::Local.config()).template;
        let physical: BTreeMap<String, String> = ["RawBucket", "RejectsBucket", "ProcessedBucket", "BackupsBucket"]
            .into_iter()
            .map(|id| (id.to_owned(), format!("bucket-{}", id.to_lowercase())))
            .collect();
        let statements = emulated_statements(&template, "ApiTaskRole", &physical).unwrap();
        let text = serde_json::to_string(&statements).unwrap();
        assert!(text.contains(r#""arn:aws:s3:::bucket-rawbucket/*""#), "{text}");
        assert!(!text.contains("processedbucket"), "the API has no grant on processed: {text}");
        let validate =
            serde_json::to_string(&emulated_statements(&template, "ValidateRole", &physical).unwrap()).unwrap();
        assert!(validate.contains(r#"{"Action":["secretsmanager:GetSecretValue","secretsmanager:DescribeSecret"],"Effect":"Allow","Resource":["*"]}"#), "{validate}");
    }
}
