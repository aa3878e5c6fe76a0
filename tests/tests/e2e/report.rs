//! `GET /`: the visual report, rendered by the server, checked in headless Chromium.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::TestApp;

/// The browser `cargo xtask test` installed (`HIRING_CHROMIUM`), or `None` after printing why
/// the browser test is skipped (`HIRING_CHROMIUM_SKIP`: it could not be installed here).
pub(crate) fn chromium() -> Option<PathBuf> {
    if let Ok(reason) = std::env::var("HIRING_CHROMIUM_SKIP") {
        eprintln!("SKIPPED: the report's browser test needs Chromium, which could not be installed: {reason}");
        return None;
    }
    let path = std::env::var_os("HIRING_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.is_file(),
        "no Chromium at {}: run the tests with `cargo xtask test`, which installs Debian's chromium, or set HIRING_CHROMIUM",
        path.display()
    );
    Some(path)
}

/// Runs headless Chromium on `url` with `args` (e.g. `--dump-dom`), bounded to 60 s.
pub(crate) fn headless(chromium: &PathBuf, url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("a profile folder");
    let mut command = Command::new(chromium);
    command
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=5000", "--hide-scrollbars"])
        .args(args)
        .arg(url);
    let output = run_bounded(&mut command, Duration::from_secs(60));
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("the DOM is UTF-8")
}

fn run_bounded(command: &mut Command, limit: Duration) -> std::process::Output {
    use std::process::Stdio;
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("chromium starts");
    let id = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(limit) {
        Ok(output) => output.expect("chromium ran"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
            panic!("chromium did not finish within {limit:?}");
        }
    }
}

/// The part of `dom` from the element with `id` to the end of its `</svg>`.
fn svg<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the page"));
    let end = dom[start..].find("</svg>").expect("the chart ends") + start;
    &dom[start..end]
}

/// The values of `attribute` on the elements of `html` that have `class="<class>"`.
fn attributes(html: &str, class: &str, attribute: &str) -> Vec<String> {
    html.split(&format!("class=\"{class}\""))
        .skip(1)
        .map(|rest| {
            let tag = &rest[..rest.find('>').expect("the tag ends")];
            let from = tag.find(&format!("{attribute}=\"")).unwrap_or_else(|| panic!("no {attribute} in {tag}"));
            let value = &tag[from + attribute.len() + 2..];
            value[..value.find('"').expect("the value ends")].replace("&amp;", "&")
        })
        .collect()
}

fn screenshots() -> PathBuf {
    let dir = devenv::target_dir().join("report");
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_report_of_the_sample_year_renders_in_chromium(pool: PgPool) {
    let Some(chromium) = chromium() else { return };
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    let (_, hires) = app.get_json("/metrics/hires?year=2021").await;
    let hires = hires.as_array().expect("rows").clone();
    let mut departments: Vec<String> = hires.iter().map(|r| r["department"].as_str().unwrap().to_owned()).collect();
    departments.dedup();
    let total: i64 =
        hires.iter().map(|r| ["Q1", "Q2", "Q3", "Q4"].iter().map(|q| r[q].as_i64().unwrap()).sum::<i64>()).sum();
    let (_, above) = app.get_json("/metrics/departments?year=2021").await;
    let above: Vec<(String, i64)> = above
        .as_array()
        .expect("rows")
        .iter()
        .map(|d| (d["department"].as_str().unwrap().to_owned(), d["hired"].as_i64().unwrap()))
        .collect();

    let url = app.url("/?year=2021");
    let browser = chromium.clone();
    let dom = tokio::task::spawn_blocking(move || headless(&browser, &url, &["--dump-dom"])).await.unwrap();

    // Hires by department, stacked by quarter: a bar per department, in name order, 4 segments each.
    let chart = svg(&dom, "hires-chart");
    assert_eq!(attributes(chart, "bar", "data-label"), departments, "one labelled bar per department with hires");
    assert_eq!(attributes(chart, "segment", "data-name").len(), departments.len() * 4, "Q1..Q4 on every bar");
    let totals: i64 = attributes(chart, "bar", "data-total").iter().map(|t| t.parse::<i64>().unwrap()).sum();
    assert_eq!(totals, total, "the bars add up to the year's hires");
    assert!(chart.contains("<title id=\"hires-chart-title\">Hires by department in 2021"), "the chart has a title");
    assert!(chart.contains("role=\"img\""), "the chart is announced as an image");
    // The full table beneath it.
    let table = &dom[dom.find("id=\"hires-table\"").expect("the table")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr>").count(), hires.len() + 1, "a row per department and job, plus the header");

    // Above the mean: a bar per department, the mean drawn as a line and labelled.
    let chart = svg(&dom, "above-chart");
    let labels = attributes(chart, "bar", "data-label");
    assert_eq!(labels, above.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>());
    let (hired, departments_total): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM hired_employees WHERE datetime >= '2021-01-01Z' AND datetime < '2022-01-01Z'), (SELECT count(*) FROM departments)")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let mean = format!("mean {:.1}", hired as f64 / departments_total as f64);
    assert!(chart.contains("class=\"mean\""), "the mean line is drawn");
    assert!(chart.contains(&format!(">{mean}</text>")), "the mean line is labelled {mean}");
    let mean_x: f64 = attributes(chart, "mean", "x1")[0].parse().unwrap();
    for (x, width) in attributes(chart, "segment", "x").iter().zip(attributes(chart, "segment", "width")) {
        let end = x.parse::<f64>().unwrap() + width.parse::<f64>().unwrap();
        assert!(end > mean_x, "every bar reaches past the mean line");
    }

    // The data-quality panel, shown to a reader with a token (the browser above sent none: the
    // public report has aggregates only): the three loads, the hires' rejects by reason with a
    // link to them.
    assert!(!dom.contains("id=\"ingestions\""), "the public report shows no ingestion metadata");
    let private = app
        .client
        .get(app.url("/?year=2021"))
        .bearer_auth(crate::helpers::READ_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let panel = &private[private.find("id=\"ingestions\"").expect("the quality panel")..];
    let panel = &panel[..panel.find("</table>").unwrap()];
    assert_eq!(panel.matches("<tr>").count(), 4, "three ingestions and the header");
    let (rejects_by_reason,): (i64,) =
        sqlx::query_as("SELECT count(DISTINCT reason) FROM rejects").fetch_one(&app.pool).await.unwrap();
    assert!(rejects_by_reason > 0, "the sample has rejected hires");
    assert!(panel.contains("class=\"rejects\" href=\"/ingestions/"), "the rejects are linked");

    // A screenshot for people (and docs/api.md).
    let shot = screenshots().join("report.png");
    let (url, path) = (app.url("/?year=2021"), shot.clone());
    let browser = chromium.clone();
    tokio::task::spawn_blocking(move || {
        headless(&browser, &url, &[&format!("--screenshot={}", path.display()), "--window-size=1200,1650"])
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real picture, {} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());

    // A year without hires shows an empty state, not empty charts.
    let url = app.url("/?year=1999");
    let dom = tokio::task::spawn_blocking(move || headless(&chromium, &url, &["--dump-dom"])).await.unwrap();
    assert!(dom.contains("No hires are recorded in 1999."), "{dom}");
    assert!(!dom.contains("id=\"hires-chart\""));
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn an_empty_database_gets_a_page_saying_how_to_load_data(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let response = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert!(headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    let page = response.text().await.unwrap();
    assert!(page.contains("No data yet") && page.contains("POST /upload"), "{page}");
    assert!(!page.contains("<svg"), "no empty charts");
    assert!(!page.contains("<script"), "the report needs no JavaScript");

    let (status, body): (u16, Value) = app.get_json("/?year=twenty").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_year")));
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn names_are_escaped_in_the_page(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.upload_csv("departments", "1,<script>alert(1)</script> & Co\n").await;
    app.upload_csv("jobs", "1,Analyst\n").await;
    app.upload_csv("hired_employees", "1,Ann,2021-02-03T04:05:06Z,1,1\n").await;
    let page = app.client.get(app.url("/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("alert(1)"), "the name is on the page: {page}");
    assert!(!page.contains("<script>") && !page.contains("</script> &"), "names are HTML-escaped: {page}");
}

#[sqlx::test(migrator = "hiring::MIGRATOR")]
async fn the_public_report_shows_aggregates_only_and_serves_them_from_the_cache(pool: PgPool) {
    let app = TestApp::start(pool).await;
    app.load_sample().await;
    let page = |token: Option<&'static str>| {
        let mut request = app.client.get(app.url("/?year=2021"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.unwrap().text().await.unwrap() }
    };
    let public = page(None).await;
    assert!(public.contains("id=\"hires-chart\""), "the aggregates are public");
    assert!(
        !public.contains("id=\"ingestions\"") && !public.contains("/ingestions/"),
        "no ingestion metadata: {public}"
    );
    let private = page(Some(crate::helpers::READ_TOKEN)).await;
    assert!(private.contains("id=\"ingestions\""), "a read token sees the latest loads");

    // The aggregates come from the metrics cache: the rollup emptied behind the API's back (no
    // change notification) does not show until the cache is told.
    let sentence =
        |page: &str| page[page.find(" hires in ").unwrap() - 8..page.find(" departments;").unwrap()].to_owned();
    let before = sentence(&public);
    sqlx::query("DELETE FROM hires_rollup").execute(&app.pool).await.unwrap();
    assert_eq!(sentence(&page(None).await), before, "served from the cache");
}
