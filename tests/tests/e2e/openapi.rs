//! The OpenAPI document (`GET /openapi.json`), Swagger UI (`/docs`), and generated requests
//! to every endpoint (schemathesis).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{TOKEN, TestApp};

/// `(METHOD, /path)` of every operation in the document.
fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut all = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                all.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    all
}

/// The endpoints the table of docs/api.md lists: rows like ``| `GET` | `/metrics/hires` | … |``.
fn readme_endpoints() -> BTreeSet<(String, String)> {
    let readme = std::fs::read_to_string(devenv::project_root().join("docs/api.md")).expect("docs/api.md");
    let section = &readme[readme.find("### Endpoints").expect("docs/api.md has an Endpoints section")..];
    let section = &section[..section[4..].find("\n#").map_or(section.len(), |end| end + 4)];
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(|c| c.trim().trim_matches('`')).collect();
            (cells.len() > 3 && ["GET", "POST", "PUT"].contains(&cells[1]))
                .then(|| (cells[1].to_owned(), cells[2].to_owned()))
        })
        .collect()
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn every_route_is_in_the_document_and_the_readme(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let (status, spec) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."), "OpenAPI 3");
    let documented = operations(&spec);
    assert_eq!(documented, readme_endpoints(), "the endpoint table of docs/api.md and the OpenAPI document differ");
    assert_eq!(documented.len(), 18, "{documented:?}");

    // Every documented operation is routed (the fallback answers `not_found` for anything else),
    // and every one documents its errors in the one error shape.
    for (method, path) in &documented {
        let concrete = path.replace("{table}", "departments").replace("{id}", "1");
        let request = match method.as_str() {
            "GET" => app.client.get(app.url(&concrete)),
            "PUT" => app.client.put(app.url(&concrete)),
            _ => app.client.post(app.url(&concrete)).bearer_auth("wrong-token"),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(
            !(status == 404 && body.contains("no endpoint at")) && status != 405,
            "{method} {path} is documented but not routed: {status} {body}"
        );
        let operation = &spec["paths"][path][method.to_lowercase()];
        assert!(
            operation["summary"].is_string() || operation["description"].is_string(),
            "{method} {path} is described"
        );
        let errors: Vec<&String> =
            operation["responses"].as_object().unwrap().keys().filter(|s| s.starts_with('4')).collect();
        for code in errors {
            let schema = &operation["responses"][code]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path} {code} uses the error shape");
        }
        if method == "POST" {
            assert_eq!(operation["security"][0]["bearer"], serde_json::json!([]), "{method} {path} needs the token");
        }
    }
    // A route outside the document would be found here: anything undocumented is the fallback.
    let (status, body) = app.get_json("/admin").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    assert!(body["error"]["message"].as_str().unwrap().contains("/docs"));
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn swagger_ui_is_served_with_its_own_assets(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let response = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
    for asset in ["swagger-ui.css", "swagger-ui-bundle.js", "swagger-initializer.js"] {
        let response = app.client.get(app.url(&format!("/docs/{asset}"))).send().await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        let text = response.text().await.unwrap();
        assert!(text.len() > 100, "{asset} has content");
        if asset == "swagger-initializer.js" {
            assert!(text.contains("/openapi.json"), "the UI loads our document: {text}");
        }
    }
    // In a browser, under the page's Content-Security-Policy, the UI lists every operation.
    let Some(chromium) = crate::report::chromium() else { return };
    let url = app.url("/docs/");
    let dom =
        tokio::task::spawn_blocking(move || crate::report::headless(&chromium, &url, &["--dump-dom"])).await.unwrap();
    let (_, spec) = app.get_json("/openapi.json").await;
    let operations = operations(&spec).len();
    assert_eq!(
        dom.matches("class=\"opblock-summary-path\" data-path=").count(),
        operations,
        "Swagger UI rendered every operation"
    );
}

/// schemathesis generates requests from the document, valid and invalid, for every operation,
/// and checks no answer is a 5xx. Bounded: a few examples per operation, 10 minutes at most.
#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn generated_requests_to_every_endpoint_find_no_server_error(pool: PgPool) {
    let Some(st) = std::env::var_os("HIRING_SCHEMATHESIS") else {
        panic!(
            "HIRING_SCHEMATHESIS is not set: run the tests with `cargo xtask test`, which installs schemathesis in the venv"
        );
    };
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    let reports = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(st);
    command
        .arg("run")
        .arg(app.url("/openapi.json"))
        // The coverage phase is left out: schemathesis 4.32.5 fails in it on its own ("AST
        // constructor recursion depth mismatch", a hypothesis internal), whatever the API answers.
        .args(["--checks", "not_a_server_error", "--phases", "examples,fuzzing,stateful"])
        .args(["--max-examples", "20", "--seed", "20261128"])
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--request-timeout", "30", "--max-time", "90", "--workers", "2", "--no-color"])
        .current_dir(reports.path())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .expect("schemathesis finished within 10 minutes")
        .expect("schemathesis ran");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    eprintln!("{said}");
    assert!(output.status.success(), "schemathesis found failures (above)");
    let (_, spec) = app.get_json("/openapi.json").await;
    let count = operations(&spec).len();
    assert!(said.contains(&format!("Tested: {count}")), "schemathesis tested all {count} operations");
}
