//! CloudFormation for the ops commands: stack state, change sets, their diff, execution with
//! live events, and the root cause of a failure.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::config::http::HttpResponse;
use aws_sdk_cloudformation::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudformation::types::{
    Capability, ChangeAction, ChangeSetStatus, ChangeSetType, Parameter, Replacement as CfnReplacement, Stack,
    StackEvent,
};
use serde_json::Value;
use stack::diff::{self, Action, Replacement, ResourceChange};

/// An AWS call's failure in one line, never a Debug dump: "what: Code: message (request id R)"
/// when the service said so; "what: HTTP status: body" when it answered something the SDK
/// could not read (moto's plain-text errors); else "what: " and the causes' messages (a network
/// failure, a credentials problem).
pub fn failed<E>(what: String, error: &SdkError<E, HttpResponse>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let request = error.meta().extra("aws_request_id").map(|id| format!(" (request id {id})")).unwrap_or_default();
    if let (Some(code), Some(message)) = (error.code(), error.message()) {
        return anyhow::anyhow!("{what}: {code}: {message}{request}");
    }
    let answer = error.raw_response().filter(|response| !response.status().is_success()).map(|response| {
        let body = String::from_utf8_lossy(response.body().bytes().unwrap_or_default());
        let body: String = body.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(500).collect();
        (response.status().as_u16(), body)
    });
    match answer {
        Some((status, body)) if !body.is_empty() => anyhow::anyhow!("{what}: HTTP {status}: {body}{request}"),
        _ => anyhow::anyhow!("{what}: {}{request}", crate::aws::causes(error)),
    }
}

/// A stack as CloudFormation reports it, or `None` when there is none by that name.
pub async fn describe(client: &Client, name: &str) -> anyhow::Result<Option<Stack>> {
    match client.describe_stacks().stack_name(name).send().await {
        Ok(out) => Ok(out.stacks().first().cloned()),
        Err(error) if error.message().is_some_and(|m| m.contains("does not exist")) => Ok(None),
        Err(error) => Err(failed(format!("DescribeStacks {name}"), &error)),
    }
}

/// The deployed template as JSON (`{}` when there is no stack).
pub async fn deployed_template(client: &Client, name: &str) -> anyhow::Result<Value> {
    if describe(client, name).await?.is_none() {
        return Ok(serde_json::json!({}));
    }
    template_of(client, name).await
}

/// The template of a stack known to exist.
async fn template_of(client: &Client, name: &str) -> anyhow::Result<Value> {
    let out =
        client.get_template().stack_name(name).send().await.map_err(|e| failed(format!("GetTemplate {name}"), &e))?;
    serde_json::from_str(out.template_body().unwrap_or("{}")).context("the deployed template is not JSON")
}

/// The physical id of every resource of the stack, by logical id (moto reports no outputs
/// for stacks made by change sets; the resources are always there).
pub async fn physical_ids(client: &Client, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let out = client
        .describe_stack_resources()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| failed(format!("DescribeStackResources {name}"), &e))?;
    Ok(out
        .stack_resources()
        .iter()
        .filter_map(|r| {
            let physical = r.physical_resource_id().filter(|p| !p.is_empty())?;
            Some((r.logical_resource_id()?.to_owned(), physical.to_owned()))
        })
        .collect())
}

/// The stack's outputs, by key.
pub fn outputs(stack: &Stack) -> BTreeMap<String, String> {
    stack
        .outputs()
        .iter()
        .map(|o| (o.output_key().unwrap_or_default().to_owned(), o.output_value().unwrap_or_default().to_owned()))
        .collect()
}

/// A change set waiting for execution.
pub struct ChangeSet {
    pub name: String,
    pub changes: Vec<ResourceChange>,
}

/// Where the stage stacks' templates go before a change set is made of them: the assets bucket
/// of the account and region (the bootstrap stack's, `hiring-assets-<account>-<region>`), under
/// `templates/<stack>/<sha256>.json`. CloudFormation takes a `TemplateBody` of at most 51,200
/// bytes but a `TemplateURL` object of up to 1 MB (CreateChangeSet, CloudFormation API
/// Reference), and the stage template with its dashboard, analytics and Fargate process step is
/// past the first. CloudFormation reads the object as the caller ("TemplateURL must reference a
/// valid S3 object to which you have access"), so the deploying role needs `s3:PutObject` and
/// `s3:GetObject` on that prefix (the pipeline's build roles have them).
pub struct TemplateStore {
    s3: aws_sdk_s3::Client,
    bucket: String,
    region: String,
}

impl TemplateStore {
    /// The store of the account and region `sdk` acts in.
    pub async fn of(sdk: &aws_config::SdkConfig) -> anyhow::Result<TemplateStore> {
        let identity = crate::aws::identify(sdk).await?;
        Ok(TemplateStore {
            s3: crate::publish::s3_client(sdk),
            bucket: format!("hiring-assets-{}-{}", identity.account, identity.region),
            region: identity.region,
        })
    }

    /// Stores `body` (content-addressed) and returns its `TemplateURL`.
    async fn url(&self, stack_name: &str, body: &str) -> anyhow::Result<String> {
        use sha2::{Digest, Sha256};
        let digest: String = Sha256::digest(body.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect();
        let key = format!("templates/{stack_name}/{digest}.json");
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .map_err(|e| failed(format!("PutObject s3://{}/{key}", self.bucket), &e))?;
        Ok(format!("https://{}.s3.{}.amazonaws.com/{key}", self.bucket, self.region))
    }
}

/// Creates a change set of `template` for `stack_name` and returns its changes, or `None` when
/// the template changes nothing (the empty change set is deleted). With a `store`, the template
/// goes there and CloudFormation reads it by URL; without (the bootstrap stack, which makes the
/// bucket), it is sent inline.
pub async fn create_change_set(
    client: &Client,
    stack_name: &str,
    template: &Value,
    parameters: &BTreeMap<String, String>,
    store: Option<&TemplateStore>,
) -> anyhow::Result<Option<ChangeSet>> {
    let mut existing = settled(client, stack_name).await?;
    if existing.as_ref().is_some_and(|s| s.stack_status().is_some_and(|s| s.as_str() == "REVIEW_IN_PROGRESS")) {
        // A first deploy stopped after making its change set: the stack has no resources, only
        // the stale change set. Start over from no stack.
        println!("{stack_name} is REVIEW_IN_PROGRESS (a first deploy was interrupted): removing the empty stack");
        client
            .delete_stack()
            .stack_name(stack_name)
            .send()
            .await
            .map_err(|e| failed(format!("DeleteStack {stack_name}"), &e))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(300);
        while describe(client, stack_name)
            .await?
            .is_some_and(|s| s.stack_status().is_some_and(|s| s.as_str() != "DELETE_COMPLETE"))
        {
            if std::time::Instant::now() > deadline {
                bail!("{stack_name} (REVIEW_IN_PROGRESS) was not deleted within 5 minutes; delete it and deploy again");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        existing = None;
    }
    if let Some(stack) = &existing
        && stack.stack_status().is_some_and(|s| s.as_str() == "ROLLBACK_COMPLETE")
    {
        bail!(
            "{stack_name} is ROLLBACK_COMPLETE (its creation failed) and cannot be updated: \
             delete it (`cargo xtask destroy`) and deploy again"
        );
    }
    let change_type =
        if existing.as_ref().is_some_and(|s| s.stack_status().is_some_and(|s| s.as_str() != "REVIEW_IN_PROGRESS")) {
            ChangeSetType::Update
        } else {
            ChangeSetType::Create
        };
    // A parameter with a default that the caller leaves out keeps the stack's value on an
    // update (an alarm address given once stays), and takes the default on a create.
    let mut parameters: Vec<Parameter> =
        parameters.iter().map(|(k, v)| Parameter::builder().parameter_key(k).parameter_value(v).build()).collect();
    if change_type == ChangeSetType::Update
        && let Some(stack) = &existing
    {
        let declared = template["Parameters"].as_object().into_iter().flatten().map(|(k, _)| k);
        for key in declared {
            let given = parameters.iter().any(|p| p.parameter_key() == Some(key.as_str()));
            let deployed = stack.parameters().iter().any(|p| p.parameter_key() == Some(key.as_str()));
            if !given && deployed {
                parameters.push(Parameter::builder().parameter_key(key).use_previous_value(true).build());
            }
        }
    }
    let name = format!("xtask-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs());
    let body = stack::template::deployable(template);
    let sent: Value = serde_json::from_str(&body)?;
    let unchanged_parameters = existing.as_ref().is_some_and(|stack| {
        parameters.iter().all(|given| {
            given.use_previous_value() == Some(true)
                || stack.parameters().iter().any(|deployed| {
                    deployed.parameter_key() == given.parameter_key()
                        && deployed.parameter_value() == given.parameter_value()
                })
        })
    });
    let (inline, url) = match store {
        Some(store) => (None, Some(store.url(stack_name, &body).await?)),
        None if body.len() > stack::template::TEMPLATE_BODY_LIMIT => bail!(
            "the template of {stack_name} is {} bytes, over the {} CloudFormation takes inline, and it has no \
             bucket to go to",
            body.len(),
            stack::template::TEMPLATE_BODY_LIMIT
        ),
        None => (Some(body), None),
    };
    let created = client
        .create_change_set()
        .stack_name(stack_name)
        .change_set_name(&name)
        .change_set_type(change_type)
        .set_template_body(inline)
        .set_template_url(url)
        .set_parameters(Some(parameters))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        // In the pipeline, CloudFormation acts as its execution role, not as the build's role.
        .set_role_arn(std::env::var("HIRING_CFN_EXECUTION_ROLE").ok().filter(|arn| !arn.is_empty()))
        .send()
        .await;
    if let Err(error) = created {
        // moto answers an unchanged template here; AWS with a FAILED change set (below).
        if error.message().is_some_and(no_changes) {
            return Ok(None);
        }
        return Err(failed(format!("CreateChangeSet {stack_name}"), &error));
    }
    let described = loop {
        let out = client
            .describe_change_set()
            .stack_name(stack_name)
            .change_set_name(&name)
            .send()
            .await
            .map_err(|e| failed("DescribeChangeSet".to_owned(), &e))?;
        match out.status() {
            Some(ChangeSetStatus::CreateComplete) => break out,
            Some(ChangeSetStatus::Failed) => {
                let reason = out.status_reason().unwrap_or_default().to_owned();
                let _ = client.delete_change_set().stack_name(stack_name).change_set_name(&name).send().await;
                if no_changes(&reason) {
                    return Ok(None);
                }
                bail!("CloudFormation refused the change set for {stack_name}: {reason}");
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    // Replacement and access are also computed from the templates: CloudFormation reports
    // replacement only where it knows it, and says nothing of what a policy change allows.
    let deployed = match existing {
        Some(_) => template_of(client, stack_name).await?,
        None => serde_json::json!({}),
    };
    // CloudFormation fails a change set that changes nothing ("didn't contain changes", above);
    // moto, given a TemplateURL, makes an empty one instead. The same template with the same
    // parameters is nothing to deploy either way.
    if described.changes().is_empty() && unchanged_parameters && deployed == sent {
        let _ = client.delete_change_set().stack_name(stack_name).change_set_name(&name).send().await;
        return Ok(None);
    }
    let offline = diff::diff(&deployed, template);
    let mut changes = Vec::new();
    for change in described.changes() {
        let Some(resource) = change.resource_change() else { continue };
        let id = resource.logical_resource_id().unwrap_or_default().to_owned();
        let computed = offline.iter().find(|c| c.id == id);
        let action = match resource.action() {
            Some(ChangeAction::Add) => Action::Add,
            Some(ChangeAction::Remove) => Action::Remove,
            _ => Action::Modify,
        };
        let replacement = match resource.replacement() {
            Some(CfnReplacement::True) => Replacement::Always,
            Some(CfnReplacement::Conditional) => Replacement::Conditional,
            Some(CfnReplacement::False) => Replacement::Never,
            _ => computed.map_or(Replacement::Never, |c| c.replacement),
        };
        changes.push(ResourceChange {
            id,
            kind: resource.resource_type().unwrap_or_default().to_owned(),
            action,
            replacement: if action == Action::Modify { replacement } else { Replacement::Never },
            properties: computed.map(|c| c.properties.clone()).unwrap_or_default(),
            broadens: computed.map(|c| c.broadens.clone()).unwrap_or_default(),
            stateful: computed.is_some_and(|c| c.stateful),
        });
    }
    changes.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Some(ChangeSet { name, changes }))
}

/// The stack once no operation is running on it (an earlier deploy, interrupted here but
/// going on in CloudFormation): waits for it, saying so, up to [`DEPLOY_TIMEOUT`].
async fn settled(client: &Client, stack_name: &str) -> anyhow::Result<Option<Stack>> {
    let deadline = std::time::Instant::now() + DEPLOY_TIMEOUT;
    let mut said = false;
    loop {
        let stack = describe(client, stack_name).await?;
        let status = stack.as_ref().and_then(|s| s.stack_status()).map(|s| s.as_str().to_owned()).unwrap_or_default();
        if !status.ends_with("_IN_PROGRESS") || status == "REVIEW_IN_PROGRESS" {
            if status.ends_with("ROLLBACK_FAILED") {
                bail!(
                    "{stack_name} is {status}: a rollback could not finish. Fix what its events name, then \
                     `aws cloudformation continue-update-rollback --stack-name {stack_name}` (or delete it)"
                );
            }
            return Ok(stack);
        }
        if !said {
            println!("{stack_name} is {status} (an earlier deploy still running): waiting for it to settle");
            said = true;
        }
        if std::time::Instant::now() > deadline {
            bail!("{stack_name} is still {status} after {DEPLOY_TIMEOUT:?}; `cargo xtask status` shows where it is");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Whether CloudFormation's message says the template changes nothing.
fn no_changes(message: &str) -> bool {
    message.contains("didn't contain changes") || message.contains("No updates are to be performed")
}

/// Deletes a change set that will not be executed, and the empty stack a first change set
/// leaves behind (`REVIEW_IN_PROGRESS`, no resources), so the next deploy starts clean.
pub async fn discard(client: &Client, stack_name: &str, change_set: &ChangeSet) {
    let _ = client.delete_change_set().stack_name(stack_name).change_set_name(&change_set.name).send().await;
    if let Ok(Some(stack)) = describe(client, stack_name).await
        && stack.stack_status().is_some_and(|s| s.as_str() == "REVIEW_IN_PROGRESS")
    {
        let _ = client.delete_stack().stack_name(stack_name).send().await;
    }
}

/// How long a deploy may take before the command gives up watching (the stack goes on).
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

/// Executes the change set, printing the stack's events as they come, and returns the stack
/// once it has settled; fails with the root cause when it did not end in `*_COMPLETE`.
pub async fn execute(client: &Client, stack_name: &str, change_set: &ChangeSet) -> anyhow::Result<Stack> {
    let started =
        aws_sdk_cloudformation::primitives::DateTime::from(std::time::SystemTime::now() - Duration::from_secs(2));
    client
        .execute_change_set()
        .stack_name(stack_name)
        .change_set_name(&change_set.name)
        .send()
        .await
        .map_err(|e| failed(format!("ExecuteChangeSet {stack_name}"), &e))?;
    let total = change_set.changes.len() as u64;
    let bar = indicatif::ProgressBar::new(total.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("a valid template"),
    );
    let mut seen = std::collections::BTreeSet::new();
    let mut events: Vec<StackEvent> = Vec::new();
    let deadline = std::time::Instant::now() + DEPLOY_TIMEOUT;
    loop {
        if std::time::Instant::now() > deadline {
            bar.finish_and_clear();
            bail!("{stack_name} is still updating after {DEPLOY_TIMEOUT:?}; `cargo xtask status` shows where it is");
        }
        let mut fresh: Vec<StackEvent> = client
            .describe_stack_events()
            .stack_name(stack_name)
            .send()
            .await
            .map_err(|e| failed("DescribeStackEvents".to_owned(), &e))?
            .stack_events()
            .iter()
            .filter(|e| e.timestamp().is_some_and(|t| t.secs() >= started.secs()))
            .filter(|e| seen.insert(e.event_id().unwrap_or_default().to_owned()))
            .cloned()
            .collect();
        fresh.reverse(); // oldest first
        for event in &fresh {
            let status = event.resource_status().map(|s| s.as_str()).unwrap_or_default();
            bar.println(format!(
                "  {:<28} {:<40} {}{}",
                status,
                event.logical_resource_id().unwrap_or_default(),
                event.resource_type().unwrap_or_default(),
                event.resource_status_reason().map(|r| format!(": {r}")).unwrap_or_default()
            ));
            if status.ends_with("_COMPLETE") && event.logical_resource_id() != Some(stack_name) {
                bar.inc(1);
            }
        }
        events.extend(fresh);
        let stack = describe(client, stack_name).await?.context("the stack disappeared while deploying")?;
        let status = stack.stack_status().map(|s| s.as_str().to_owned()).unwrap_or_default();
        bar.set_message(status.clone());
        if !status.ends_with("_IN_PROGRESS") {
            bar.finish_and_clear();
            if status.contains("ROLLBACK") || status.ends_with("_FAILED") {
                let cause = events
                    .iter()
                    .find(|e| e.resource_status().is_some_and(|s| s.as_str().ends_with("_FAILED")))
                    .map(|e| {
                        format!(
                            "{} ({}): {}",
                            e.logical_resource_id().unwrap_or_default(),
                            e.resource_type().unwrap_or_default(),
                            e.resource_status_reason().unwrap_or("no reason given")
                        )
                    })
                    .unwrap_or_else(|| stack.stack_status_reason().unwrap_or("no reason given").to_owned());
                bail!("deploying {stack_name} failed; the stack is now {status}\nroot cause: {cause}");
            }
            return Ok(stack);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
