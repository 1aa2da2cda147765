//! The web console in a real browser: headless Chromium, driven through
//! chromedriver (WebDriver, via fantoccini), opens every page against a
//! live broker, checks the figures it shows against the JSON API, reads
//! records (one of them binary), publishes one, runs a dry-run redrive and
//! a purge through the page, and saves a screenshot of every page under
//! `target/console-screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `chromium`,
//! `chromium-driver`; `.ci/run` installs them). Without them the test
//! fails and says so, unless `SHOAL_SKIP_BROWSER_TEST=1` asks to skip.

mod console_support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use console_support::{make_scene, Http, Scene, BINARY_B64, GROUP, INVOICES, ORDERS, QUARANTINED};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use shoal_tests::BrokerProcess;

/// Longest the page may take to show what a step waits for.
const WAIT_MS_MAX: u64 = 15_000;
/// The flags that run Chromium headless in a container (no sandbox, no
/// GPU) without it reaching out to the network on its own.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1250",
];

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver on a free loopback port; killed on drop.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(program: &Path) -> Driver {
        // Ask the kernel for a free port, then hand it to chromedriver; a
        // clash with another process in between fails the start below.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let driver = Driver { child, port };
        let ready = shoal_tests::wait_until(Duration::from_secs(20), || {
            ureq::get(&format!("http://127.0.0.1:{port}/status"))
                .call()
                .is_ok()
        });
        assert!(ready, "chromedriver did not answer on port {port}");
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    // target/<profile>/deps/<test> -> target/console-screenshots
    let exe = std::env::current_exe().expect("test executable");
    let target = exe.ancestors().nth(3).expect("target dir").to_path_buf();
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// The page, with the waits and reads every step uses.
struct Page<'a> {
    client: &'a Client,
    base: String,
    shots: PathBuf,
}

impl Page<'_> {
    /// Opens `route` (a `#/...` fragment) and waits until its data arrived.
    async fn open(&self, route: &str, page: &str) {
        self.client
            .goto(&format!("{}/{route}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {route}: {e}"));
        self.wait(&format!("main[data-page='{page}'][data-loaded='true']"))
            .await;
    }

    async fn wait(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_millis(WAIT_MS_MAX))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("waiting for {css}: {e}"))
    }

    /// The text of `css`. The page replaces its tables on every refresh,
    /// so an element found a moment ago may be gone: look it up again.
    async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        loop {
            match self.wait(css).await.text().await {
                Ok(t) => return t.trim().to_string(),
                Err(e) => assert!(Instant::now() < deadline, "text of {css}: {e}"),
            }
        }
    }

    async fn attr(&self, css: &str, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        loop {
            match self.wait(css).await.attr(name).await {
                Ok(v) => return v.unwrap_or_else(|| panic!("{css} has no {name}")),
                Err(e) => assert!(Instant::now() < deadline, "{name} of {css}: {e}"),
            }
        }
    }

    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("find_all")
            .len()
    }

    /// Waits until `css`'s text satisfies `ok` (the page refreshes itself).
    async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                if let Ok(t) = e.text().await {
                    if ok(t.trim()) {
                        return t.trim().to_string();
                    }
                    assert!(Instant::now() < deadline, "{css} still shows {t:?}");
                }
            }
            assert!(Instant::now() < deadline, "{css} never appeared");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
        while let Err(e) = self.wait(css).await.click().await {
            assert!(Instant::now() < deadline, "click {css}: {e}");
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.wait(css).await;
        e.clear().await.expect("clear");
        e.send_keys(text)
            .await
            .unwrap_or_else(|err| panic!("type into {css}: {err}"));
    }

    async fn refreshes(&self) -> u64 {
        self.attr("main", "data-refreshes")
            .await
            .parse()
            .expect("refresh count")
    }

    async fn shot(&self, name: &str) {
        // From the top of the page, whatever the last click scrolled to.
        self.client
            .execute("window.scrollTo(0, 0);", vec![])
            .await
            .expect("scroll");
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

fn cell(row: &str, field: &str) -> String {
    format!("{row} td[data-field='{field}']")
}

#[test]
fn console_pages_in_headless_chromium() {
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]);
    let chromedriver = find_program(&["chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        if std::env::var("SHOAL_SKIP_BROWSER_TEST").is_ok_and(|v| v == "1") {
            println!("SKIPPED: chromium or chromedriver not on PATH (SHOAL_SKIP_BROWSER_TEST=1)");
            return;
        }
        panic!(
            "the console's browser test needs headless Chromium and chromedriver on PATH \
             (Debian: apt-get install chromium chromium-driver; .ci/run installs them). \
             Set SHOAL_SKIP_BROWSER_TEST=1 to skip it on a machine without them."
        );
    };
    let broker = BrokerProcess::start();
    let http = Http::new(&broker);
    let scene = make_scene(&http);
    let driver = Driver::start(&chromedriver);
    let profile = tempfile::tempdir().expect("profile dir");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": chromium.display().to_string(), "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .expect("chromedriver session");
        let page = Page {
            client: &client,
            base: http.base.clone(),
            shots: screenshot_dir(),
        };
        overview(&page, &http).await;
        topics(&page, &http).await;
        topic_records(&page, &http, &scene).await;
        groups(&page, &http).await;
        quarantine(&page, &http).await;
        client.close().await.expect("close the browser");
    });
    println!("screenshots in {}", screenshot_dir().display());
}

/// Overview: shard and group figures match `/stats`, and the page refreshes
/// by itself while records flow, so its rate chart draws a line.
async fn overview(page: &Page<'_>, http: &Http) {
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (stop, base) = (Arc::clone(&stop), http.base.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"key": format!("k{}", i % 5), "value": format!("live {i}")});
                let _ = ureq::post(&format!("{base}/topics/{ORDERS}/messages")).send_json(body);
                // And a reader, so the consume side of the charts moves too.
                let read = json!({"partition": i % 3, "offset": 0, "max": 5});
                let _ = ureq::post(&format!("{base}/topics/{ORDERS}/replay")).send_json(read);
                i += 1;
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    page.open("#/", "overview").await;
    // Refresh every second, so the charts gather points quickly.
    page.wait("#refresh-ms option[value='1000']")
        .await
        .click()
        .await
        .expect("1 s refresh");
    let stats = http.get("/stats");
    assert_eq!(page.text("#ov-shards").await, "2 / 2");
    assert_eq!(page.text("#ov-topics").await, "2");
    assert_eq!(page.count("#shards-table tbody tr").await, 2);
    let billing = "#overview-groups-table tr[data-group='billing']";
    assert_eq!(
        page.text(&cell(billing, "quarantine_depth")).await,
        QUARANTINED.to_string()
    );
    let group = &stats["groups"][0];
    assert_eq!(
        page.text(&cell(billing, "state")).await,
        group["state"].as_str().unwrap()
    );
    let first = page.refreshes().await;
    page.wait_text("#ov-produce-rate", |t| t != "–" && t != "0.0/s")
        .await;
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while page.refreshes().await < first + 8 {
        assert!(
            Instant::now() < deadline,
            "the overview did not refresh by itself"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        page.count("#ov-rate-chart path.line").await >= 1,
        "no rate line drawn"
    );
    assert!(
        page.count("#ov-latency-chart path.line").await >= 1,
        "no latency line drawn"
    );
    page.wait_text("#ov-ack-p99", |t| t.ends_with("ms") || t.ends_with("µs"))
        .await;
    page.shot("overview").await;
    stop.store(true, Ordering::Relaxed);
    producer.join().expect("producer thread");
    // Every figure of a shard row against /stats taken now that writes stopped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = http.get("/stats");
    let before = page.refreshes().await;
    while page.refreshes().await < before + 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for s in stats["shards"].as_array().expect("shards") {
        let row = format!("#shards-table tr[data-shard='{}']", s["shard"]);
        assert_eq!(
            page.text(&cell(&row, "records_in")).await,
            fmt_count(&s["records_in"])
        );
        assert_eq!(
            page.text(&cell(&row, "partitions")).await,
            fmt_count(&s["partitions"])
        );
    }
}

/// Numbers as the page prints them (en-US grouping).
fn fmt_count(v: &Value) -> String {
    let digits = v
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {v}"))
        .to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn topics(page: &Page<'_>, http: &Http) {
    page.open("#/topics", "topics").await;
    for topic in [ORDERS, INVOICES] {
        let d = http.get(&format!("/topics/{topic}"));
        let row = format!("#topics-table tr[data-topic='{topic}']");
        assert_eq!(
            page.text(&cell(&row, "partitions")).await,
            fmt_count(&d["config"]["partitions"])
        );
        assert_eq!(page.text(&cell(&row, "flush")).await, "always");
    }
    let orders = "#topics-table tr[data-topic='orders']";
    assert_eq!(page.text(&cell(orders, "retention")).await, "7 d");
    page.shot("topics").await;
}

/// A topic's partitions against its description; records read by offset
/// and by time (the binary one shown as base64); a test record published.
async fn topic_records(page: &Page<'_>, http: &Http, scene: &Scene) {
    page.open(&format!("#/topics/{ORDERS}"), "topic").await;
    let d = http.get(&format!("/topics/{ORDERS}"));
    for p in d["partitions"].as_array().expect("partitions") {
        let row = format!("#partitions-table tr[data-partition='{}']", p["partition"]);
        for field in ["shard", "log_start", "high_watermark", "log_end"] {
            assert_eq!(
                page.text(&cell(&row, field)).await,
                fmt_count(&p[field]),
                "{row} {field}"
            );
        }
    }
    assert_eq!(
        page.text("#topic-config-list dd[data-field='retention']").await,
        "7 d"
    );

    page.wait("#rec-partition option[value='1']")
        .await
        .click()
        .await
        .expect("partition 1");
    page.type_into("#rec-offset", "0").await;
    page.type_into("#rec-max", "100").await;
    page.click("#rec-read").await;
    let binary = format!("#records-table tr[data-offset='{}']", scene.binary_offset);
    assert_eq!(page.text(&cell(&binary, "value")).await, BINARY_B64);
    assert_eq!(
        page.text(&format!("{binary} td[data-field='encoding']")).await,
        "base64"
    );
    let replay = http.post(
        &format!("/topics/{ORDERS}/replay"),
        json!({"partition": 1, "offset": 0, "max": 100}),
    );
    let records = replay["partitions"][0]["records"]
        .as_array()
        .expect("records")
        .clone();
    assert_eq!(page.count("#records-table tbody tr").await, records.len());
    let first = &records[0];
    let row = format!("#records-table tr[data-offset='{}']", first["offset"]);
    assert_eq!(
        page.text(&cell(&row, "key")).await,
        first["key"].as_str().unwrap()
    );
    assert_eq!(
        page.text(&cell(&row, "value")).await,
        first["value"].as_str().unwrap()
    );

    // Seek by time: from the binary record's timestamp on, it comes first.
    let stamp = records
        .iter()
        .find(|r| r["offset"] == scene.binary_offset)
        .expect("binary record")["timestamp_ms"]
        .as_i64()
        .expect("timestamp");
    let local = page
        .client
        .execute(
            "const d = new Date(arguments[0]); return d.toISOString().slice(0, 19);",
            vec![json!(stamp)],
        )
        .await
        .expect("format time");
    page.client
        .execute(
            "document.getElementById('rec-mode').value = 'time'; document.getElementById('rec-time').value = arguments[0];",
            vec![local],
        )
        .await
        .expect("set time");
    page.click("#rec-read").await;
    page.wait_text(
        "#records-table tbody tr:first-child td[data-field='offset']",
        |t| t.parse::<u64>().is_ok_and(|o| o <= scene.binary_offset),
    )
    .await;

    let before = http.get(&format!("/topics/{ORDERS}"))["partitions"][2]["high_watermark"].clone();
    page.type_into("#pub-key", "console").await;
    page.type_into("#pub-value", "hello from the console").await;
    page.type_into("#pub-headers", "source=browser-test").await;
    page.type_into("#pub-partition", "2").await;
    page.click("#pub-send").await;
    let result = page.wait_text("#pub-result", |t| t.contains("published")).await;
    assert!(result.contains(&format!("at offset {before}")), "{result}");
    let after = http.post(
        &format!("/topics/{ORDERS}/replay"),
        json!({"partition": 2, "offset": before, "max": 1}),
    );
    let rec = &after["partitions"][0]["records"][0];
    assert_eq!(rec["value"], "hello from the console", "{after}");
    assert_eq!(rec["headers"]["source"], "browser-test", "{after}");
    page.shot("topic").await;
}

async fn groups(page: &Page<'_>, http: &Http) {
    page.open("#/groups", "groups").await;
    let g = http.get(&format!("/groups/{GROUP}"));
    let row = format!("#groups-table tr[data-group='{GROUP}']");
    assert_eq!(
        page.text(&cell(&row, "generation")).await,
        fmt_count(&g["generation"])
    );
    assert_eq!(
        page.text(&cell(&row, "quarantine_depth")).await,
        QUARANTINED.to_string()
    );
    assert_eq!(
        page.text(&format!("{row} [data-field='circuit']")).await,
        g["circuit"].as_str().unwrap()
    );
    page.shot("groups").await;

    page.click(&row).await;
    page.wait("main[data-page='group'][data-loaded='true']").await;
    assert_eq!(page.text("#g-generation").await, fmt_count(&g["generation"]));
    for p in g["partitions"].as_array().expect("partitions") {
        let row = format!(
            "#group-partitions-table tr[data-topic='{}'][data-partition='{}']",
            p["topic"].as_str().unwrap(),
            p["partition"]
        );
        for field in ["committed_offset", "log_end", "lag_records", "quarantine_depth"] {
            assert_eq!(
                page.text(&cell(&row, field)).await,
                fmt_count(&p[field]),
                "{row} {field}"
            );
        }
    }
    // The lag chart accumulates one sample per refresh.
    page.wait_text("#g-lag-records-chart .legend", |t| t.contains("invoices/0"))
        .await;
    page.shot("group").await;
}

/// Browse, detail, a dry-run redrive (nothing moves) and purges with the
/// typed confirmation (the button stays disabled until the name matches).
async fn quarantine(page: &Page<'_>, http: &Http) {
    page.open(
        &format!("#/quarantine?topic={INVOICES}&group={GROUP}"),
        "quarantine",
    )
    .await;
    assert_eq!(page.attr("#q-total", "data-total").await, QUARANTINED.to_string());
    assert_eq!(
        page.count("#q-entries-table tbody tr").await,
        QUARANTINED as usize
    );
    let browse = http.get(&format!("/topics/{INVOICES}/quarantine?group={GROUP}"));
    let entry = &browse["entries"][0];
    let id = entry["entry_id"].as_u64().expect("entry id");
    page.click(&format!("#q-entries-table tr[data-entry-id='{id}']"))
        .await;
    assert_eq!(page.attr("#q-detail-list", "data-entry-id").await, id.to_string());
    assert_eq!(
        page.text("#q-detail-list dd[data-field='reason']").await,
        entry["reason"].as_str().unwrap()
    );
    assert_eq!(
        page.text("#q-detail-list dd[data-field='attempts']").await,
        fmt_count(&entry["attempts"])
    );
    assert_eq!(
        page.text("#q-detail-list dd[data-field='value']").await,
        entry["value"].as_str().unwrap()
    );

    page.click("#q-dry-run").await;
    assert_eq!(page.attr("#q-redrive-outcome", "data-dry-run").await, "true");
    assert_eq!(
        page.attr("#q-redrive-outcome", "data-matched").await,
        QUARANTINED.to_string()
    );
    let counts = http.get(&format!("/topics/{INVOICES}/quarantine/counts"));
    assert_eq!(counts["total"], QUARANTINED, "a dry run moved entries: {counts}");
    page.shot("quarantine").await;

    // Purge one entry: disabled until the topic name is typed exactly.
    let purge = page.wait("#q-purge").await;
    assert!(
        !purge.is_enabled().await.expect("enabled"),
        "purge enabled without confirmation"
    );
    page.type_into("#q-purge-confirm", "invoice").await;
    assert!(
        !purge.is_enabled().await.expect("enabled"),
        "purge enabled by a wrong name"
    );
    page.click("#q-only-selected").await;
    page.type_into("#q-purge-confirm", INVOICES).await;
    assert!(purge.is_enabled().await.expect("enabled"), "purge still disabled");
    purge.click().await.expect("click purge");
    assert_eq!(page.attr("#q-purge-outcome", "data-purged").await, "1");
    let counts = http.get(&format!("/topics/{INVOICES}/quarantine/counts"));
    assert_eq!(counts["total"], QUARANTINED - 1, "{counts}");
    let left = http.get(&format!("/topics/{INVOICES}/quarantine?group={GROUP}"));
    assert!(
        left["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e["entry_id"] != id),
        "the purged entry is still there: {left}"
    );
    page.wait_text("#q-total", |t| t.starts_with(&(QUARANTINED - 1).to_string()))
        .await;
}
