//! `cargo xtask publish --stage S [--yes]`: builds the stage's artifacts (see `artifacts`) and
//! puts them where its stack takes them from, then writes the template parameters that name
//! them to `<target>/publish/<stage>.json`, which `deploy` reads.
//!
//! 1. The bootstrap stack `hiring-bootstrap` (assets bucket, ECR repository) is created or
//!    updated through a change set, as `deploy` does it.
//! 2. Each Lambda zip goes to `s3://<assets>/functions/<name>/<sha256>.zip`, unless an object
//!    is already there (content-addressed: the same key is the same bytes).
//! 3. The image goes to ECR through its layer-upload API: each blob (config, layers) is
//!    uploaded unless `BatchCheckLayerAvailability` has it, then the manifest is put with the
//!    stage's tag `<stage>-<digest hex>` unless the image already has it. Stacks reference
//!    images by digest; the tag is what ECR's lifecycle rules keep each stage's images by
//!    (`stack::bootstrap::lifecycle_policy`). The repository is `IMMUTABLE`: a tag, once
//!    pushed, names one image for good, and putting the same manifest and tag again is
//!    refused (`ImageAlreadyExistsException`), so the tags are read first.
//!
//! "Absent" is only ever concluded from a not-found answer (`NotFound`,
//! `ImageNotFoundException`): any other error of a describe or head call — a denied
//! permission, throttling — fails publish with that error, so a role that cannot read can
//! never be mistaken for an empty repository.
//! 4. On the emulator stage (`local`), the two secrets AWS would create (RDS's managed user
//!    secret, the API token) are made in Secrets Manager unless they exist.
//!
//! Re-running it with nothing rebuilt uploads nothing: it says so, item by item.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use aws_sdk_ecr::primitives::Blob as EcrBlob;
use aws_sdk_ecr::types::{ImageIdentifier, LayerAvailability};
use clap::Args;
use stack::Stage;
use stack::bootstrap::BOOTSTRAP_STACK;

use crate::artifacts::{self, Artifacts};
use crate::cfn::failed;
use crate::{aws, deploy};
use xtask::image::{self, Blob, Image};

#[derive(Args)]
pub struct Publish {
    /// The stage to publish for: local, dev, staging, prod.
    #[arg(long)]
    stage: Stage,
    /// Update the bootstrap stack without asking, even when the change broadens access.
    #[arg(long)]
    yes: bool,
}

impl Publish {
    pub fn run(self) -> anyhow::Result<()> {
        // Who and where first: without credentials, stop before building anything.
        let sdk = aws::block_on(aws::connect(self.stage))?;
        let artifacts = artifacts::build(self.stage)?;
        let (published, _) = aws::block_on(publish(&sdk, self.stage, &artifacts, self.yes))?;
        println!("==> publish: parameters of {} in {}", self.stage.stack_name(), published.display());
        Ok(())
    }
}

/// What one publish did, for its summary and the tests.
#[derive(Debug, Default)]
pub struct Counts {
    pub uploaded: usize,
    pub present: usize,
}

/// Publishes `artifacts` for `stage` and writes the parameters file; returns its path and
/// what was uploaded.
pub async fn publish(
    sdk: &aws_config::SdkConfig,
    stage: Stage,
    artifacts: &Artifacts,
    yes: bool,
) -> anyhow::Result<(PathBuf, Counts)> {
    publish_as(sdk, sdk, stage, artifacts, yes).await
}

/// [`publish`] uploading the zips and pushing the image as `sdk`, with the bootstrap stack and
/// the emulator stage's secrets (which AWS would create: RDS, the stack) made as `operator`.
/// `test-local` publishes as the pipeline's Publish role, which has no Secrets Manager
/// rights; its CloudFormation rights are on the dev stacks it is made for, not `hiring-local`.
pub async fn publish_as(
    sdk: &aws_config::SdkConfig,
    operator: &aws_config::SdkConfig,
    stage: Stage,
    artifacts: &Artifacts,
    yes: bool,
) -> anyhow::Result<(PathBuf, Counts)> {
    let cfn = aws_sdk_cloudformation::Client::new(operator);
    println!("==> publish: {BOOTSTRAP_STACK}");
    let bootstrap = serde_json::from_str(&stack::bootstrap::template().to_json())?;
    deploy::deploy_stack(&cfn, BOOTSTRAP_STACK, &bootstrap, &BTreeMap::new(), None, yes, false).await?;
    let resources = crate::cfn::physical_ids(&cfn, BOOTSTRAP_STACK).await?;
    let (Some(bucket), Some(repository)) = (resources.get("AssetsBucket"), resources.get("ApiRepository")) else {
        bail!("{BOOTSTRAP_STACK} has no AssetsBucket or ApiRepository: `cargo xtask status` and the console tell why");
    };

    let mut parameters = BTreeMap::new();
    let mut counts = Counts::default();
    let s3 = s3_client(sdk);
    for (prefix, name, _) in stack::topology::FUNCTIONS {
        let artifact = artifacts
            .functions
            .iter()
            .find(|a| a.function.name == name)
            .with_context(|| format!("the build made no {name} function"))?;
        let key = format!("functions/{name}/{}.zip", artifact.sha256);
        let present = match s3.head_object().bucket(bucket).key(&key).send().await {
            Ok(_) => true,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => false,
            Err(error) => return Err(failed(format!("HeadObject s3://{bucket}/{key}"), &error)),
        };
        if present {
            counts.present += 1;
        } else {
            let body = aws_sdk_s3::primitives::ByteStream::from_path(&artifact.zip)
                .await
                .with_context(|| format!("failed to read {}", artifact.zip.display()))?;
            s3.put_object()
                .bucket(bucket)
                .key(&key)
                .body(body)
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                .send()
                .await
                .map_err(|e| failed(format!("PutObject s3://{bucket}/{key}"), &e))?;
            counts.uploaded += 1;
        }
        println!("  {:<9} s3://{bucket}/{key}  {}", name, if present { "present" } else { "uploaded" });
        parameters.insert(stack::topology::code_key_parameter(prefix), key);
    }

    let ecr = aws_sdk_ecr::Client::new(sdk);
    let uri =
        push_image(&ecr, repository, &artifacts.image, &image_tag(stage, &artifacts.image.digest), &mut counts).await?;
    parameters.insert(stack::topology::API_IMAGE_PARAMETER.to_owned(), format!("{uri}@{}", artifacts.image.digest));

    if stage.config().emulator {
        let secrets = aws_sdk_secretsmanager::Client::new(operator);
        for (parameter, name, value) in emulator_secrets(stage) {
            let arn = ensure_secret(&secrets, &name, &value).await?;
            parameters.insert(parameter.to_owned(), arn);
        }
    }

    let path = deploy::parameters_file(stage);
    std::fs::create_dir_all(path.parent().expect("a parent"))?;
    std::fs::write(&path, serde_json::to_vec_pretty(&parameters)?)
        .with_context(|| format!("failed to write {}", path.display()))?;
    println!(
        "==> publish: {} uploaded, {} already present{}",
        counts.uploaded,
        counts.present,
        if counts.uploaded == 0 { " (nothing new)" } else { "" }
    );
    Ok((path, counts))
}

/// An S3 client over `sdk` that makes path-style requests.
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    // Path-style requests work on AWS and on emulators alike (no per-bucket DNS names).
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(true).build())
}

/// The secrets an emulator stage takes as parameters (parameter, name, initial value): on AWS,
/// RDS and the stack create them. The database secret's user is PostgreSQL's `postgres`,
/// as `cargo xtask dev` and `test-local` run it; `test-local` writes the real value.
pub fn emulator_secrets(stage: Stage) -> [(&'static str, String, String); 3] {
    [
        (
            "DatabaseSecretArn",
            format!("hiring-{stage}/database"),
            r#"{"username":"postgres","password":""}"#.to_owned(),
        ),
        (
            "AppDatabaseSecretArn",
            format!("hiring-{stage}/database-app"),
            serde_json::json!({ "username": "hiring_app", "password": random_token() }).to_string(),
        ),
        (
            "ApiTokenSecretArn",
            format!("hiring-{stage}/api-tokens"),
            serde_json::json!({ "read": random_token(), "write": random_token() }).to_string(),
        ),
    ]
}

/// A secret's ARN, creating it with `value` when there is none by that name.
async fn ensure_secret(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) -> anyhow::Result<String> {
    match client.describe_secret().secret_id(name).send().await {
        Ok(found) if found.arn().is_some() => return Ok(found.arn().unwrap_or_default().to_owned()),
        Ok(_) => {}
        Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {}
        Err(error) => return Err(failed(format!("DescribeSecret {name}"), &error)),
    }
    let created = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .map_err(|e| failed(format!("CreateSecret {name}"), &e))?;
    println!("  secret    {name}  created");
    created.arn().map(str::to_owned).context("CreateSecret returned no ARN")
}

/// 32 random bytes from the kernel, as hex.
fn random_token() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("/dev/urandom is readable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tag an image published for `stage` gets: `<stage>-<digest hex>`.
pub fn image_tag(stage: Stage, digest: &str) -> String {
    format!("{}{}", stack::image_tag_prefix(stage), digest.trim_start_matches("sha256:"))
}

/// Pushes the image's blobs and manifest to `repository`, tagged `tag`; returns the
/// repository's URI.
async fn push_image(
    ecr: &aws_sdk_ecr::Client,
    repository: &str,
    image: &Image,
    tag: &str,
    counts: &mut Counts,
) -> anyhow::Result<String> {
    let described = ecr
        .describe_repositories()
        .repository_names(repository)
        .send()
        .await
        .map_err(|e| failed(format!("DescribeRepositories {repository}"), &e))?;
    let uri = described
        .repositories()
        .first()
        .and_then(|r| r.repository_uri())
        .with_context(|| format!("ECR knows no repository {repository}"))?
        .to_owned();

    let blobs: Vec<&Blob> = std::iter::once(&image.config).chain(&image.layers).collect();
    let checked = ecr
        .batch_check_layer_availability()
        .repository_name(repository)
        .set_layer_digests(Some(blobs.iter().map(|b| b.digest.clone()).collect()))
        .send()
        .await
        .map_err(|e| failed(format!("BatchCheckLayerAvailability {repository}"), &e))?;
    for blob in blobs {
        let present = checked.layers().iter().any(|layer| {
            layer.layer_digest() == Some(blob.digest.as_str())
                && layer.layer_availability() == Some(&LayerAvailability::Available)
        });
        if present {
            counts.present += 1;
        } else {
            upload_blob(ecr, repository, blob).await?;
            counts.uploaded += 1;
        }
        println!(
            "  blob      {uri}@{}  {:>9}  {}",
            blob.digest,
            format!("{:.1} MiB", blob.size as f64 / 1048576.0),
            if present { "present" } else { "uploaded" }
        );
    }

    let id = ImageIdentifier::builder().image_digest(&image.digest).build();
    let tags: Option<Vec<String>> = match ecr.describe_images().repository_name(repository).image_ids(id).send().await {
        Ok(described) => Some(described.image_details().iter().flat_map(|d| d.image_tags().iter().cloned()).collect()),
        Err(error) if error.as_service_error().is_some_and(|e| e.is_image_not_found_exception()) => None,
        Err(error) => return Err(failed(format!("DescribeImages {repository}@{}", image.digest), &error)),
    };
    let present = tags.as_ref().is_some_and(|tags| tags.iter().any(|t| t == tag));
    if present {
        counts.present += 1;
    } else {
        // A new image, or one another stage pushed: the manifest again, with this stage's tag.
        let manifest = String::from_utf8(image.manifest.clone()).context("the manifest is not UTF-8")?;
        ecr.put_image()
            .repository_name(repository)
            .image_manifest(manifest)
            .image_manifest_media_type(image::MANIFEST_TYPE)
            .image_digest(&image.digest)
            .image_tag(tag)
            .send()
            .await
            .map_err(|e| failed(format!("PutImage {repository}:{tag}"), &e))?;
        counts.uploaded += 1;
    }
    let what = match (&tags, present) {
        (_, true) => "present",
        (Some(_), false) => "tagged",
        (None, false) => "pushed",
    };
    println!("  image     {uri}:{tag}  {what}");
    Ok(uri)
}

/// One blob through InitiateLayerUpload, UploadLayerPart (in the parts ECR asks for) and
/// CompleteLayerUpload, which checks the digest.
async fn upload_blob(ecr: &aws_sdk_ecr::Client, repository: &str, blob: &Blob) -> anyhow::Result<()> {
    let data = std::fs::read(&blob.path).with_context(|| format!("failed to read {}", blob.path.display()))?;
    let started = ecr
        .initiate_layer_upload()
        .repository_name(repository)
        .send()
        .await
        .map_err(|e| failed(format!("InitiateLayerUpload {repository}"), &e))?;
    let upload_id = started.upload_id().context("InitiateLayerUpload returned no upload id")?;
    let part_size = started.part_size().filter(|s| *s > 0).unwrap_or(10 << 20) as usize;
    for (index, part) in data.chunks(part_size).enumerate() {
        let first = (index * part_size) as i64;
        ecr.upload_layer_part()
            .repository_name(repository)
            .upload_id(upload_id)
            .part_first_byte(first)
            .part_last_byte(first + part.len() as i64 - 1)
            .layer_part_blob(EcrBlob::new(part))
            .send()
            .await
            .map_err(|e| failed(format!("UploadLayerPart {repository} {}", blob.digest), &e))?;
    }
    let completed = ecr
        .complete_layer_upload()
        .repository_name(repository)
        .upload_id(upload_id)
        .layer_digests(&blob.digest)
        .send()
        .await
        .map_err(|e| failed(format!("CompleteLayerUpload {repository} {}", blob.digest), &e))?;
    if completed.layer_digest() != Some(blob.digest.as_str()) {
        bail!(
            "ECR stored {} as {}: the upload was corrupted; publish again",
            blob.digest,
            completed.layer_digest().unwrap_or("no digest")
        );
    }
    Ok(())
}
