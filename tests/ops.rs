//! Operations (issue 5): the demo's HTTP endpoints answer, and every metric that the Grafana
//! dashboard and the Prometheus rules under `deploy/` use is exported by a running processor.
//! A dashboard panel on a misspelt metric shows "No data" forever; this catches it.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use healthscore::pipeline::demo::{run_demo, DemoOptions};
use healthscore::score::Scorecard;
use serde_json::Value;

/// A request's path, and the response's status and body.
type Answer = (String, u16, String);

/// A plain HTTP/1.1 GET: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response head");
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status code");
    (status, body.to_string())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// The `healthscore_*` metric names a file mentions (queries, rules, annotations).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("healthscore_") {
        let start = i + at;
        let boundary = start == 0
            || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_' || bytes[start - 1] == b':');
        let mut end = start;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
        {
            end += 1;
        }
        if boundary {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Recording-rule names (`healthscore:...`) a file uses.
fn recorded_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("healthscore:") {
        let tail = &rest[at..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
        if end > "healthscore:".len() {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

fn files(dir: &Path, ext: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p, ext));
        } else if p.extension().is_some_and(|x| ext.iter().any(|e| x == *e)) {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn the_demo_serves_metrics_health_and_the_query_api_and_exports_every_metric_deploy_uses() {
    let options = DemoOptions {
        customers: 60,
        days: 30,
        seed: 5,
        partitions: 3,
        rate: 200_000.0,
        duration: Some(Duration::from_secs(12)),
        every: Duration::from_secs(1),
        http: Some("127.0.0.1:0".parse().unwrap()),
        http_tokens: Vec::new(),
    };
    // The checks run inside the demo's print callback, while it runs: at its fourth summary, or
    // the first after it whose scrape has a lag sample (the lag gauge has a partition's sample only
    // once librdkafka has cached its watermarks, which a busy machine can delay). The demo stops
    // once they have run.
    let mut seen: Option<(String, Vec<Answer>)> = None;
    let mut addr: Option<SocketAddr> = None;
    let mut summaries = 0;
    let stop = Arc::new(AtomicBool::new(false));
    run_demo(&options, Arc::new(Scorecard::default_scorecard()), stop.clone(), |line| {
        if let Some(rest) = line.strip_prefix("HTTP on http://") {
            addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
        } else if line.contains("customers") && line.contains("green") {
            summaries += 1;
            if summaries >= 4 && seen.is_none() {
                let a = addr.expect("the demo printed its HTTP address first");
                let (_, metrics) = get(a, "/metrics");
                if !metrics.contains("healthscore_consumer_lag_records{") && summaries < 10 {
                    return;
                }
                let mut answers = Vec::new();
                for path in [
                    "/healthz",
                    "/readyz",
                    "/customers?band=red&limit=3",
                    "/customers?limit=2",
                    "/scorecard",
                    "/scorecard?format=toml",
                    "/customers?band=purple",
                    "/customers?limit=x",
                    "/nope",
                ] {
                    let (status, body) = get(a, path);
                    answers.push((path.to_string(), status, body));
                }
                let first = answers.iter().find(|(p, ..)| p == "/customers?limit=2").map(|(_, _, b)| json(b)).unwrap();
                let id = first["customers"][0]["customer_id"].as_str().expect("a customer listed").to_string();
                let (status, body) = get(a, &format!("/customers/{id}"));
                answers.push((format!("/customers/{id}"), status, body));
                seen = Some((metrics, answers));
                stop.store(true, Ordering::SeqCst);
            }
        }
    })
    .expect("demo runs");
    let (metrics, answers) = seen.expect("the demo ran long enough to be scraped");
    let answer = |path: &str| answers.iter().find(|(p, ..)| p == path).map(|(_, s, b)| (*s, b.clone())).unwrap();

    assert_eq!(answer("/healthz").0, 200);
    let (status, body) = answer("/readyz");
    assert_eq!(status, 200, "every partition restored and consuming by now: {body}");
    let (status, body) = answer("/customers?band=red&limit=3");
    assert_eq!(status, 200, "{body}");
    let red = json(&body);
    let listed = red["customers"].as_array().unwrap();
    assert!(listed.len() <= 3 && listed.iter().all(|c| c["band"] == "red"), "{red:#}");
    assert_eq!(red["partitions"], serde_json::json!([0, 1, 2]));
    let (status, body) = answer("/customers?limit=2");
    assert_eq!(status, 200, "{body}");
    let any = json(&body);
    let scores: Vec<f64> = any["customers"].as_array().unwrap().iter().map(|c| c["score"].as_f64().unwrap()).collect();
    assert!(scores.len() == 2 && scores[0] <= scores[1], "the worst two, worst first: {any:#}");

    let (path, status, body) = answers.last().unwrap();
    assert_eq!(*status, 200, "{path}: {body}");
    let c = json(body);
    for field in ["score", "band", "stage", "segment", "components", "trend_7d", "recent_alerts", "partition"] {
        assert!(c.get(field).is_some(), "{field} in {c:#}");
    }
    assert!(c["components"][0]["contribution"].is_number(), "{c:#}");

    let (status, body) = answer("/customers?band=purple");
    assert_eq!(status, 400);
    assert!(json(&body)["error"].as_str().unwrap().contains("red, yellow, green"), "{body}");
    assert_eq!(answer("/customers?limit=x").0, 400);
    assert_eq!(answer("/nope").0, 404);
    let (status, body) = answer("/scorecard");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["version"], "default-2026.12");
    let (status, body) = answer("/scorecard?format=toml");
    assert_eq!(status, 200);
    assert!(body.contains("[bands]") || body.contains("version"), "{body}");

    // Every sample name exported, then every name deploy/ uses.
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    let mut used = BTreeSet::new();
    let mut recorded_used = BTreeSet::new();
    let sources = files(&deploy(), &["json", "yml", "yaml"]);
    assert!(sources.iter().any(|p| p.extension().is_some_and(|e| e == "json")), "a dashboard under deploy/");
    for p in &sources {
        let text = std::fs::read_to_string(p).unwrap();
        for name in metric_names(&text) {
            used.insert((name, p.strip_prefix(deploy()).unwrap().display().to_string()));
        }
        if p.starts_with(deploy().join("grafana")) || p.starts_with(deploy().join("prometheus")) {
            recorded_used.extend(recorded_names(&text));
        }
    }
    let missing: Vec<String> =
        used.iter().filter(|(n, _)| !exported.contains(n)).map(|(n, f)| format!("{n} (in {f})")).collect();
    assert!(
        missing.is_empty(),
        "used in deploy/ but not exported:\n  {}\nexported: {exported:?}",
        missing.join("\n  ")
    );
    assert!(used.len() > 15, "the dashboard and rules use the metrics: {used:?}");

    // Recording rules the dashboard uses are defined.
    let rules = std::fs::read_to_string(deploy().join("prometheus/rules.yml")).unwrap();
    let defined: BTreeSet<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record:").or_else(|| l.trim().strip_prefix("record:")))
        .map(|n| n.trim().to_string())
        .collect();
    let undefined: Vec<&String> = recorded_used.iter().filter(|n| !defined.contains(*n)).collect();
    assert!(undefined.is_empty(), "recording rules used but not defined: {undefined:?}");
}

/// A processor on the mock cluster that has joined no group yet: what a starting instance has.
/// (The mock cluster is returned too: it must outlive the processor.)
async fn starting_processor() -> (
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    healthscore::pipeline::Processor,
    Arc<Scorecard>,
) {
    use healthscore::pipeline::config::{Config, GroupProtocol, Guarantee};
    use healthscore::pipeline::{Processor, Stats};

    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    let mut config = Config::default();
    config.kafka.brokers = mock.bootstrap_servers();
    config.kafka.group_protocol = GroupProtocol::Classic;
    config.kafka.processing_guarantee = Guarantee::AtLeastOnce;
    let t = config.kafka.topics.clone();
    for topic in [&t.usage, &t.support, &t.billing, &t.output, &t.dead_letter] {
        mock.create_topic(topic, 6, 1).unwrap();
    }
    let scorecard = Arc::new(Scorecard::default_scorecard());
    let processor = tokio::task::spawn_blocking({
        let scorecard = scorecard.clone();
        move || Processor::new(Arc::new(config), scorecard, Arc::new(Stats::default()))
    })
    .await
    .unwrap()
    .expect("connects to the mock cluster");
    (mock, processor, scorecard)
}

/// The router without a socket (`oneshot`), on a processor that has joined no group yet: what
/// a starting instance answers. It owns no partition, so every customer is someone else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_starting_instance_is_alive_not_ready_and_names_the_owning_partition() {
    use axum::body::Body;
    use axum::http::Request;
    use healthscore::pipeline::http::{router, Api};
    use tower::ServiceExt;

    let (_mock, processor, scorecard) = starting_processor().await;
    let app = router(Arc::new(Api::new(processor.shared.clone(), scorecard, processor.partitions())));
    let call = |path: &str| {
        let app = app.clone();
        let request = Request::get(path).body(Body::empty()).unwrap();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            (status, String::from_utf8(bytes.to_vec()).unwrap())
        }
    };

    assert_eq!(call("/healthz").await.0, 200);
    let (status, body) = call("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no partitions assigned"), "{body}");
    let (status, body) = call("/customers/cus_9999").await;
    assert_eq!(status, 404, "{body}");
    let partition = healthscore::partition::kafka_partition(b"cus_9999", 6);
    assert!(
        body.contains(&format!("does not own customer `cus_9999`: it is on partition {partition}")),
        "says so and names the partition: {body}"
    );
    let (status, body) = call("/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("healthscore_ready 0") && body.contains("healthscore_assigned_partitions 0"), "{body}");
}

/// The data endpoints need the bearer token; the scrape and probe endpoints do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_query_api_refuses_a_missing_or_wrong_token_and_metrics_stay_open() {
    use axum::body::Body;
    use axum::http::Request;
    use healthscore::pipeline::http::{router, Api};
    use tower::ServiceExt;

    let (_mock, processor, scorecard) = starting_processor().await;
    let tokens = ["new-token-0123456789".to_string(), "old-token-0123456789".to_string()];
    let api = Api::new(processor.shared.clone(), scorecard, processor.partitions()).with_tokens(tokens);
    let app = router(Arc::new(api));
    let call = |path: &str, auth: Option<&str>| {
        let app = app.clone();
        let mut request = Request::get(path);
        if let Some(a) = auth {
            request = request.header("authorization", a);
        }
        let request = request.body(Body::empty()).unwrap();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string());
            (response.status().as_u16(), challenge)
        }
    };
    for path in ["/customers/cus_1", "/customers?band=red", "/scorecard"] {
        assert_eq!(call(path, None).await, (401, Some("Bearer realm=\"healthscore\"".into())), "{path}");
        assert_eq!(call(path, Some("Bearer wrong")).await.0, 401, "{path}");
        assert_eq!(call(path, Some("new-token-0123456789")).await.0, 401, "{path}: not a bearer header");
    }
    assert_eq!(call("/customers/cus_1", Some("Bearer new-token-0123456789")).await.0, 404, "past auth: not owned");
    assert_eq!(call("/scorecard", Some("Bearer old-token-0123456789")).await.0, 200, "either token while rotating");
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_ne!(call(path, None).await.0, 401, "{path} stays open for scrapers and probes");
    }
}

/// The same over a real socket, as the demo serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_query_api_over_a_socket_needs_the_token() {
    use healthscore::pipeline::http::{Api, BackgroundServer};
    use std::io::{Read as _, Write as _};

    let (_mock, processor, scorecard) = starting_processor().await;
    let api = Api::new(processor.shared.clone(), scorecard, processor.partitions())
        .with_tokens(["socket-token-0123456789".to_string()]);
    // The server runs its own runtime on its own thread, as in the demo: start it off this one.
    let server =
        tokio::task::spawn_blocking(move || BackgroundServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(api)))
            .await
            .unwrap()
            .unwrap();
    let addr = server.addr;
    let get = move |auth: &str| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET /scorecard HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.lines().next().unwrap_or("").to_string()
    };
    let (no, yes) = tokio::task::spawn_blocking(move || {
        let answers = (get(""), get("Authorization: Bearer socket-token-0123456789\r\n"));
        drop(server);
        answers
    })
    .await
    .unwrap();
    assert!(no.starts_with("HTTP/1.1 401"), "{no}");
    assert!(yes.starts_with("HTTP/1.1 200"), "{yes}");
}

/// A self-signed certificate for 127.0.0.1 made with the openssl tool: (certificate, key).
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl tool (Debian: openssl) makes the test certificate");
    assert!(status.success());
    (cert, key)
}

/// `curl` trusting `ca` for `url`: the HTTP status, or `None` when no answer came (a refused
/// handshake, an untrusted certificate).
fn curl(ca: &Path, url: &str, token: Option<&str>) -> Option<u16> {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--cacert"]).arg(ca).arg(url);
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {t}"));
    }
    let out = cmd.output().expect("curl (Debian: curl) is the test's HTTPS client");
    String::from_utf8_lossy(&out.stdout).trim().parse().ok().filter(|code| *code != 0)
}

/// With `http.tls_cert`/`tls_key` the endpoints speak HTTPS only, the token rule still holds,
/// and a certificate replaced on disk is served without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn https_serves_the_query_api_with_the_token_and_picks_up_a_renewed_certificate() {
    use healthscore::pipeline::http::{Api, BackgroundServer};
    use healthscore::pipeline::tls::Tls;

    let dir = std::env::temp_dir().join(format!("healthscore-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (first, first_key) = self_signed(&dir, "first");
    let (renewed, renewed_key) = self_signed(&dir, "renewed");
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::copy(&first, &cert).unwrap();
    std::fs::copy(&first_key, &key).unwrap();

    let (_mock, processor, scorecard) = starting_processor().await;
    let token = "tls-token-0123456789";
    let api = Api::new(processor.shared.clone(), scorecard, processor.partitions()).with_tokens([token.to_string()]);
    let tls = Tls::load(&cert, &key).await.unwrap().checked_every(Duration::from_millis(100));
    let server = tokio::task::spawn_blocking(move || {
        BackgroundServer::start_with("127.0.0.1:0".parse().unwrap(), Arc::new(api), Some(tls))
    })
    .await
    .unwrap()
    .unwrap();
    let port = server.addr.port();
    let url = format!("https://127.0.0.1:{port}/scorecard");
    let (first2, renewed2, url2, dir2) = (first.clone(), renewed.clone(), url.clone(), dir.clone());
    let answers = tokio::task::spawn_blocking(move || {
        let before = (
            curl(&first2, &url2, Some(token)),
            curl(&first2, &url2, None),
            curl(&first2, &format!("http://127.0.0.1:{port}/scorecard"), Some(token)),
            curl(&renewed2, &url2, Some(token)),
        );
        // The renewal: both files replaced, as cert-manager does.
        std::fs::copy(&renewed2, dir2.join("tls.crt")).unwrap();
        std::fs::copy(&renewed_key, dir2.join("tls.key")).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut after = curl(&renewed2, &url2, Some(token));
        while after != Some(200) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            after = curl(&renewed2, &url2, Some(token));
        }
        drop(server);
        (before, after)
    })
    .await
    .unwrap();
    let ((with_token, without, plain, other_ca), after) = answers;
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(with_token, Some(200), "HTTPS with the token");
    assert_eq!(without, Some(401), "HTTPS still needs the token");
    assert_ne!(plain, Some(200), "no data over plain HTTP on the HTTPS port");
    assert_eq!(other_ca, None, "a client that trusts another certificate gets no answer");
    assert_eq!(after, Some(200), "the renewed certificate is served without a restart");
}
