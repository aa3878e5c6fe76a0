//! Storage zones (`hiring::zones::Zone`) against both of their backends: a local directory and
//! S3, here moto's emulation of it (one private moto server per test, see
//! `devenv::moto`). One helper states what a zone must do and runs on both.
//!
//! Run them with `cargo xtask test`, or after `cargo xtask venv` with
//! `HIRING_MOTO_SERVER=$(pwd)/target/venv/bin/moto_server cargo nextest run -p hiring-tests --test zones`.

use devenv::moto::Moto;
use hiring::error::Error;
use hiring::zones::Zone;

/// The bucket every S3 test creates in its own moto.
const BUCKET: &str = "hiring-zones";

/// Opens `s3://hiring-zones/<prefix>` on a fresh moto. Keep both values alive for the whole
/// test: the server and the zone.
async fn s3_zone(prefix: &str) -> anyhow::Result<(Moto, Zone)> {
    let moto = Moto::start()?;
    moto.create_bucket(BUCKET).await?;
    let zone = open(&moto, &format!("s3://{BUCKET}/{prefix}"))?;
    Ok((moto, zone))
}

/// A zone of this moto, configured explicitly (the process environment is left alone).
fn open(moto: &Moto, url: &str) -> hiring::error::Result<Zone> {
    let env = moto.aws_env();
    Zone::open_with(url, |name| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()))
}

/// What every zone does, whatever its backend: keeps bytes as put, describes them with `head`,
/// lists exactly the keys under a prefix, and reports missing objects as missing.
async fn behaves_like_a_zone(zone: &Zone) -> anyhow::Result<()> {
    let csv = b"1,Supply Chain\n2,Maintenance\n".to_vec();
    zone.put("raw/departments/a.csv", csv.clone()).await?;
    assert_eq!(zone.get("raw/departments/a.csv").await?, csv, "get returns what put wrote");

    let head = zone.head("raw/departments/a.csv").await?.expect("head finds the object put");
    assert_eq!(head.size, csv.len() as u64, "head gives the size");
    assert!(head.e_tag.as_deref().is_some_and(|tag| !tag.is_empty()), "head gives an ETag: {head:?}");
    assert_eq!(head.location.as_ref(), "raw/departments/a.csv", "head names the key as given");

    zone.put("raw/departments/b.csv", b"3,Staff\n".to_vec()).await?;
    zone.put("raw/jobs/c.csv", b"1,Recruiter\n".to_vec()).await?;
    zone.put("raw/departments-old/d.csv", b"not under raw/departments\n".to_vec()).await?;
    assert_eq!(
        listed(zone, "raw/departments").await?,
        ["raw/departments/a.csv", "raw/departments/b.csv"],
        "list gives exactly the keys under the prefix"
    );
    assert_eq!(
        listed(zone, "").await?,
        ["raw/departments-old/d.csv", "raw/departments/a.csv", "raw/departments/b.csv", "raw/jobs/c.csv"],
        "list of the whole zone gives every key, sorted, in the zone's own terms"
    );

    assert!(zone.head("raw/departments/missing.csv").await?.is_none(), "head of a missing key is None");
    match zone.get("raw/departments/missing.csv").await {
        Err(Error::ObjectNotFound(what)) => {
            assert!(what.contains("raw/departments/missing.csv"), "the error names the key: {what}")
        }
        other => panic!("get of a missing key should be ObjectNotFound, got {other:?}"),
    }

    // Overwriting replaces the object whole.
    zone.put("raw/departments/a.csv", b"4,Sales\n".to_vec()).await?;
    assert_eq!(zone.get("raw/departments/a.csv").await?, b"4,Sales\n".as_slice());
    Ok(())
}

/// Puts 20 MB of non-repeating bytes and reads them back.
async fn keeps_a_large_object_byte_for_byte(zone: &Zone) -> anyhow::Result<()> {
    let bytes = pseudo_random_bytes(20 * 1024 * 1024);
    zone.put("backups/large.bin", bytes.clone()).await?;
    let head = zone.head("backups/large.bin").await?.expect("the large object exists");
    assert_eq!(head.size, bytes.len() as u64);
    let read = zone.get("backups/large.bin").await?;
    assert_eq!(read.len(), bytes.len());
    assert!(read == bytes, "the 20 MB object differs from what was put");
    Ok(())
}

/// Deterministic bytes without the long runs of zeros that could hide an offset mistake.
fn pseudo_random_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// The keys `zone.list(prefix)` gives, in its order.
async fn listed(zone: &Zone, prefix: &str) -> anyhow::Result<Vec<String>> {
    Ok(zone.list(prefix).await?.into_iter().map(|meta| meta.location.to_string()).collect())
}

#[tokio::test]
async fn a_local_directory_zone_keeps_lists_and_describes_what_is_put() -> anyhow::Result<()> {
    let directory = tempfile::tempdir()?;
    behaves_like_a_zone(&Zone::local(directory.path())?).await
}

#[tokio::test]
async fn an_s3_zone_keeps_lists_and_describes_what_is_put() -> anyhow::Result<()> {
    let (_moto, zone) = s3_zone("zone-prefix").await?;
    behaves_like_a_zone(&zone).await
}

#[tokio::test]
async fn an_s3_zone_stores_under_its_prefix_and_keeps_the_prefix_out_of_its_keys() -> anyhow::Result<()> {
    let (moto, zone) = s3_zone("lake/raw").await?;
    zone.put("departments/a.csv", b"1,Sales\n".to_vec()).await?;
    assert_eq!(listed(&zone, "departments").await?, ["departments/a.csv"]);
    assert_eq!(zone.head("departments/a.csv").await?.expect("exists").location.as_ref(), "departments/a.csv");

    // The whole bucket shows where the object really is.
    let bucket = open(&moto, &format!("s3://{BUCKET}"))?;
    assert_eq!(listed(&bucket, "").await?, ["lake/raw/departments/a.csv"]);
    assert_eq!(bucket.get("lake/raw/departments/a.csv").await?, b"1,Sales\n".as_slice());
    // A sibling prefix sees nothing of it.
    let sibling = open(&moto, &format!("s3://{BUCKET}/lake/rejects"))?;
    assert!(sibling.list("").await?.is_empty());
    assert!(matches!(sibling.get("departments/a.csv").await, Err(Error::ObjectNotFound(_))));
    Ok(())
}

#[tokio::test]
async fn an_s3_zone_in_a_bucket_that_does_not_exist_fails_and_names_the_bucket() -> anyhow::Result<()> {
    let moto = Moto::start()?;
    let zone = open(&moto, "s3://no-such-bucket/raw")?;
    // S3 answers 404 NoSuchBucket, which object_store reports as not found like a missing
    // object: the zone tells the two apart, and names the bucket.
    match zone.put("a.csv", b"x".to_vec()).await {
        Err(error @ Error::BucketNotFound { .. }) => {
            let message = error.to_string();
            assert!(message.contains("no-such-bucket"), "the error names the bucket: {message}");
            assert!(!error.is_retryable(), "a missing bucket stays missing");
        }
        other => panic!("a put into a missing bucket should be BucketNotFound, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_20_mb_object_round_trips_byte_for_byte_through_an_s3_zone() -> anyhow::Result<()> {
    let (_moto, zone) = s3_zone("zone-prefix").await?;
    keeps_a_large_object_byte_for_byte(&zone).await
}

#[tokio::test]
async fn a_20_mb_object_round_trips_byte_for_byte_through_a_local_directory_zone() -> anyhow::Result<()> {
    let directory = tempfile::tempdir()?;
    keeps_a_large_object_byte_for_byte(&Zone::local(directory.path())?).await
}
