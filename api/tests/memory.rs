//! One client must not exhaust the server: the worst inputs the API's limits
//! allow, each sent to a `hiring-api` process of its own, whose peak resident memory (VmHWM) is
//! then read. Before the bounds, each of these cost the server more than its body: a batch body
//! was parsed whole before its rows were counted, a CSV record had no size cap (held twice),
//! and a chunk of rejects held 16k raw texts of up to 64 KiB. `cargo xtask bench` measures the
//! same inputs at full size.

use sha2::Digest;
use sqlx::PgPool;

mod server;

use server::{Server, TOKEN, database_url};

/// The bound the test holds each server to: an idle debug server takes about 20 MB.
const MAX_RSS_MB: f64 = 100.0;

async fn started(pool: &PgPool) -> (Server, reqwest::Client, tempfile::TempDir) {
    let data_dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let server = Server::start(&database_url(pool), data_dir.path());
    server.wait_healthy(&client).await;
    (server, client, data_dir)
}

async fn batch(server: &Server, client: &reqwest::Client, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = client
        .post(format!("{}/batch/hired_employees", server.base))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn assert_bounded(server: &Server, what: &str) {
    let peak = server.peak_rss_mb();
    assert!(peak <= MAX_RSS_MB, "{what}: the server's peak RSS was {peak:.1} MB, over {MAX_RSS_MB} MB");
}

/// 16 MiB, the batch body limit, less a little.
const BODY: usize = 16 * 1024 * 1024 - 64;

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_batch_body_of_millions_of_numbers_is_refused_past_row_1000_in_bounded_memory(pool: PgPool) {
    let (server, client, _dir) = started(&pool).await;
    let mut body = b"[1".to_vec();
    while body.len() < BODY - 2 {
        body.extend_from_slice(b",1");
    }
    body.push(b']');
    let (status, answer) = batch(&server, &client, body).await;
    assert_bounded(&server, "a 16 MiB array of numbers");
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "batch_size", "{answer}");
    assert_eq!(answer["error"]["message"], "a batch holds 1 to 1000 rows; this one holds more than 1000");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_batch_row_holding_a_huge_array_is_a_reject_in_bounded_memory(pool: PgPool) {
    let (server, client, _dir) = started(&pool).await;
    let mut body = br#"[{"id":[1"#.to_vec();
    while body.len() < BODY - 100 {
        body.extend_from_slice(b",1");
    }
    body.extend_from_slice(br#"],"name":"A","datetime":"2021-01-01T00:00:00Z","department_id":1,"job_id":1}]"#);
    let row_bytes = body.len() - 2;
    let (status, answer) = batch(&server, &client, body.clone()).await;
    assert_bounded(&server, "a batch row holding a 16 MiB array");
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["rows"].as_i64(), answer["rejected"].as_i64()), (Some(1), Some(1)), "{answer}");
    assert_eq!(answer["rejects"][0]["reason"], "wrong_type");
    assert_eq!(answer["rejects"][0]["message"], "id must be an integer, got an array");

    // The stored reject keeps the row's first 4 KiB as sent, its length and its hash.
    let id = answer["id"].as_i64().unwrap();
    let rejects = server.get_json(&client, &format!("/ingestions/{id}/rejects")).await;
    let reject = &rejects[0];
    assert_eq!(reject["raw"].as_str().unwrap().as_bytes(), &body[1..1 + 4096]);
    assert_eq!(reject["raw_bytes"].as_u64(), Some(row_bytes as u64));
    assert_eq!(
        reject["raw_sha256"].as_str().unwrap(),
        hiring::reject::hex(&sha2::Sha256::digest(&body[1..1 + row_bytes]))
    );
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_single_huge_csv_record_is_one_reject_in_bounded_memory(pool: PgPool) {
    let (server, client, _dir) = started(&pool).await;
    let mut record = b"1,".to_vec();
    record.resize(96 << 20, b'a');
    let mut file = record.clone();
    file.extend_from_slice(b"\r\n2,Support\n");
    let response = server.upload(&client, "departments", file).await.unwrap();
    assert_bounded(&server, "one 96 MiB CSV record");
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    let report = &answer["ingestions"][0];
    assert_eq!(
        (report["rows"].as_i64(), report["inserted"].as_i64(), report["rejected"].as_i64()),
        (Some(2), Some(1), Some(1)),
        "{answer}"
    );

    let id = report["id"].as_i64().unwrap();
    let rejects = server.get_json(&client, &format!("/ingestions/{id}/rejects")).await;
    let reject = &rejects[0];
    assert_eq!((reject["line"].as_i64(), reject["reason"].as_str()), (Some(1), Some("field_too_long")), "{reject}");
    assert!(reject["message"].as_str().unwrap().contains("more than the 65536 a row may hold"), "{reject}");
    assert_eq!(reject["raw"].as_str().unwrap().as_bytes(), &record[..4096]);
    assert_eq!(reject["raw_bytes"].as_u64(), Some(record.len() as u64));
    assert_eq!(reject["raw_sha256"].as_str().unwrap(), hiring::reject::hex(&sha2::Sha256::digest(&record)));
    let names: Vec<(i32, String)> =
        sqlx::query_as("SELECT id, department FROM departments").fetch_all(&pool).await.unwrap();
    assert_eq!(names, [(2, "Support".to_owned())], "the record after the huge one is read where it starts");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_quoted_field_open_past_its_bound_fails_the_file_in_bounded_memory(pool: PgPool) {
    let (server, client, _dir) = started(&pool).await;
    let mut file = b"1,\"".to_vec();
    file.resize(96 << 20, b'a');
    file.extend_from_slice(b"\"\r\n2,Support\n");
    let response = server.upload(&client, "departments", file).await.unwrap();
    assert_bounded(&server, "a 96 MiB quoted field");
    assert_eq!(response.status(), 422);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "malformed_file", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("line 1"), "{answer}");
    let departments: i64 = sqlx::query_scalar("SELECT count(*) FROM departments").fetch_one(&pool).await.unwrap();
    assert_eq!(departments, 0, "nothing of a malformed file is loaded");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_file_of_long_rejected_rows_is_held_and_paged_by_bytes(pool: PgPool) {
    let (server, client, _dir) = started(&pool).await;
    let name = "n".repeat(8 * 1024);
    let mut file = Vec::new();
    for id in 1..=17_000 {
        file.extend_from_slice(format!("{id},{name},2021-01-01T00:00:00Z,1,1\n").as_bytes());
    }
    let response = server.upload(&client, "hired_employees", file).await.unwrap();
    assert_bounded(&server, "17,000 rejected rows of 8 KiB");
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    let report = &answer["ingestions"][0];
    assert_eq!((report["rows"].as_i64(), report["rejected"].as_i64()), (Some(17_000), Some(17_000)), "{answer}");

    // A page of 1000 such rejects stops at about 1 MiB and points at the rest.
    let id = report["id"].as_i64().unwrap();
    let response = client
        .get(format!("{}/ingestions/{id}/rejects?limit=1000", server.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let link = response.headers()["link"].to_str().unwrap().to_owned();
    let body = response.bytes().await.unwrap();
    let page: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert!(body.len() <= 1024 * 1024 + 64 * 1024, "a page of {} bytes", body.len());
    assert!((200..1000).contains(&page.len()), "{} rejects in the page", page.len());
    let last = page.last().unwrap()["line"].as_i64().unwrap();
    assert_eq!(link, format!("</ingestions/{id}/rejects?limit=1000&after={last}>; rel=\"next\""));
    let row = format!("1,{name},2021-01-01T00:00:00Z,1,1");
    assert_eq!(page[0]["raw"].as_str().unwrap(), &row[..4096]);
    assert_eq!(page[0]["raw_bytes"].as_u64(), Some(row.len() as u64));
    assert_eq!(page[0]["raw_sha256"].as_str().unwrap(), hiring::reject::hex(&sha2::Sha256::digest(row.as_bytes())));
}

/// An Avro object container file of departments whose blocks may lie about their size.
fn avro_file(codec: &str, blocks: &[(i64, i64, &[u8])]) -> Vec<u8> {
    use hiring::avro_blocks::{write_block, write_header};
    let marker = [7u8; 16];
    let schema = hiring::backup::schema_json(hiring::table::Table::Departments);
    let mut file = Vec::new();
    write_header(&mut file, &[(b"avro.schema", schema.as_bytes()), (b"avro.codec", codec.as_bytes())], &marker);
    for (count, declared, data) in blocks {
        write_block(&mut file, *count, *declared, data, &marker);
    }
    file
}

/// Puts `file` in the server's backups zone and asks for a restore of departments from it.
async fn restore(
    server: &Server,
    client: &reqwest::Client,
    data_dir: &std::path::Path,
    file: &[u8],
) -> serde_json::Value {
    let name = "20261205T000000.000000Z-0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b.avro";
    let folder = data_dir.join("backups").join("departments");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join(name), file).unwrap();
    let response = client
        .post(format!("{}/restore/departments", server.base))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"key": format!("departments/{name}")}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_backup", "{answer}");
    answer
}

/// The hand-built Avro files the tests below and `cargo xtask bench` restore, committed so the
/// bench reads the same bytes (`HIRING_BLESS=1` writes them again).
const AVRO_FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/avro");

/// A block declaring 2^29 bytes with 16 present: the file is a few hundred bytes.
fn claiming_512_mib() -> Vec<u8> {
    avro_file("null", &[(1, 1 << 29, &[0u8; 16])])
}

/// About 200 KB of deflate that inflates to 200 MiB of zeros.
fn deflate_bomb() -> Vec<u8> {
    let bomb = miniz_oxide::deflate::compress_to_vec(&vec![0u8; 200 << 20], 10);
    avro_file("deflate", &[(1, bomb.len() as i64, &bomb)])
}

#[test]
fn the_committed_avro_fixtures_are_the_files_built_here() {
    for (name, file, most) in
        [("block-claims-512-mib.avro", claiming_512_mib(), 600), ("deflate-bomb.avro", deflate_bomb(), 250_000)]
    {
        assert!(file.len() < most, "{name}: {} bytes", file.len());
        let path = std::path::Path::new(AVRO_FIXTURES).join(name);
        if std::env::var_os("HIRING_BLESS").is_some() {
            std::fs::create_dir_all(AVRO_FIXTURES).unwrap();
            std::fs::write(&path, &file).unwrap();
        }
        assert!(std::fs::read(&path).unwrap() == file, "{name} differs: run with HIRING_BLESS=1 to write it again");
    }
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(AVRO_FIXTURES).join(name)).unwrap()
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_avro_block_claiming_more_than_its_file_holds_is_refused_in_bounded_memory(pool: PgPool) {
    let (server, client, data_dir) = started(&pool).await;
    let answer = restore(&server, &client, data_dir.path(), &fixture("block-claims-512-mib.avro")).await;
    assert_bounded(&server, "a block declaring 512 MiB in a file of 500 bytes");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("block") && message.contains("536870912"), "{message}");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_deflate_bomb_in_a_backup_is_refused_in_bounded_memory(pool: PgPool) {
    let (server, client, data_dir) = started(&pool).await;
    let answer = restore(&server, &client, data_dir.path(), &fixture("deflate-bomb.avro")).await;
    assert_bounded(&server, "a 200 KB deflate bomb");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("block") && message.contains("inflates"), "{message}");
    let departments: i64 = sqlx::query_scalar("SELECT count(*) FROM departments").fetch_one(&pool).await.unwrap();
    assert_eq!(departments, 0);
}

/// Millions of empty metadata pairs in a backup's header: two bytes each in the file, but an
/// entry each in any map built from them. Refused by their number, in bounded memory.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn a_backup_header_of_millions_of_metadata_pairs_is_refused_in_bounded_memory(pool: PgPool) {
    use hiring::avro_blocks::write_header;
    let (server, client, data_dir) = started(&pool).await;
    let schema = hiring::backup::schema_json(hiring::table::Table::Departments);
    let mut metadata: Vec<(&[u8], &[u8])> = vec![(b"avro.schema", schema.as_bytes()), (b"avro.codec", b"null")];
    metadata.extend(std::iter::repeat_n((&b""[..], &b""[..]), 4_000_000));
    let mut file = Vec::new();
    write_header(&mut file, &metadata, &[7u8; 16]);
    let answer = restore(&server, &client, data_dir.path(), &file).await;
    assert_bounded(&server, "a header of 4M empty metadata pairs");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("metadata"), "{message}");
}
