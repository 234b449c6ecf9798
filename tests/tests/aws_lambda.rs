//! The two Lambda functions built by their production builders against moto: API Gateway v2
//! event fixtures through `lambda_http` into `collect`, the FIFO queue's messages as SQS
//! events into `enrich`, the records in DynamoDB and the requests at a destination stand-in.

use std::collections::HashMap;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use http::header::SET_COOKIE;
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use lambda_http::request::LambdaRequest;
use lambda_http::tower::{Service as _, ServiceExt as _};
use lambda_http::{Adapter, Body, Request, Response};
use serde_json::{Value, json};

use revisit_shared::adapters::dynamodb::{DynamoTables, index_partition, profile_key};
use revisit_shared::adapters::sqs_consumer::SqsPoller;
use revisit_shared::ports::IdentifierKind;
use revisit_shared::worker::Worker;
use revisit_shared::{CollectedEvent, VisitorId};
use revisit_tests::aws::{Moto, moto, unique_name};
use revisit_tests::{Scripted, StandIn, fixture};

const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";

/// One deployment's resources in moto, named for one test.
struct Deployment {
    moto: Moto,
    tables: DynamoTables,
    queue_url: String,
    dead_letter_url: String,
    quarantine_url: String,
    klaviyo: StandIn,
    variables: HashMap<String, String>,
}

impl Deployment {
    /// Creates tables, queues and SSM parameters as template.yaml does, with Klaviyo live
    /// against a stand-in and no delivery retries (so one scripted response is one attempt).
    async fn create(moto: Moto, test: &str) -> Self {
        let tables = moto.create_tables(test).await;
        let (queue_url, dead_letter_url) = moto.create_event_queue(test, 30, 3).await;
        let quarantine_url = moto.create_queue(&format!("{test}-quarantine"), &[]).await;
        let klaviyo = StandIn::start().await;
        klaviyo.answer_by_default(Scripted::status(202));
        let prefix = format!("/{}/", unique_name(test));
        let destinations = std::fs::read_to_string(fixture("destinations-klaviyo.toml"))
            .expect("fixture")
            .replace("{prefix}", &prefix)
            .replace("{endpoint}", &klaviyo.url());
        moto.put_secure_parameter(&format!("{prefix}secret"), SECRET)
            .await;
        moto.put_secure_parameter(&format!("{prefix}destinations"), &destinations)
            .await;
        moto.put_secure_parameter(&format!("{prefix}klaviyo"), "pk_test_0123456789")
            .await;
        let variables = HashMap::from([
            ("REVISIT_SITE_HOST", "www.shop.example".to_owned()),
            (
                "REVISIT_ALLOWED_ORIGINS",
                "https://www.shop.example".to_owned(),
            ),
            ("REVISIT_SECRET", format!("ssm:{prefix}secret")),
            ("REVISIT_QUEUE_URL", queue_url.clone()),
            ("REVISIT_QUARANTINE_QUEUE_URL", quarantine_url.clone()),
            ("REVISIT_QUEUE_MAX_MESSAGE_BYTES", "262144".to_owned()),
            ("REVISIT_PROFILES_TABLE", tables.profiles.clone()),
            ("REVISIT_COUNTERS_TABLE", tables.counters.clone()),
            (
                "REVISIT_DESTINATIONS_PARAMETER",
                format!("{prefix}destinations"),
            ),
            ("REVISIT_DELIVERY_BUDGET_MS", "0".to_owned()),
            (
                "REVISIT_OUTBOX_DIR",
                std::env::temp_dir()
                    .join(unique_name("outbox"))
                    .display()
                    .to_string(),
            ),
        ])
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        Self {
            moto,
            tables,
            queue_url,
            dead_letter_url,
            quarantine_url,
            klaviyo,
            variables,
        }
    }

    fn lookup(&self) -> impl Fn(&str) -> Option<String> + Sync + '_ {
        |name| self.variables.get(name).cloned()
    }

    async fn collect_app(&self) -> axum::Router {
        revisit_collect::build(&self.moto.sdk, &self.lookup())
            .await
            .expect("collect function builds")
    }

    async fn worker(&self) -> Worker {
        revisit_enrich::build(&self.moto.sdk, &self.lookup())
            .await
            .expect("enrich function builds")
    }

    async fn profile_item(
        &self,
        visitor_id: &VisitorId,
    ) -> Option<HashMap<String, AttributeValue>> {
        let output = self
            .moto
            .dynamodb()
            .get_item()
            .table_name(&self.tables.profiles)
            .set_key(Some(profile_key(visitor_id)))
            .consistent_read(true)
            .send()
            .await
            .expect("get item");
        output.item
    }
}

/// Runs an API Gateway v2 event through `lambda_http`'s adapter around `app`, as
/// `lambda_http::run` does in the function, and returns the serialised response envelope.
async fn invoke_collect(app: axum::Router, event: &Value) -> Value {
    let request: LambdaRequest = serde_json::from_value(event.clone()).expect("a v2 event");
    let mut adapter = Adapter::from(app);
    let adapter = adapter.ready().await.expect("adapter ready");
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .expect("the router never fails");
    serde_json::to_value(&response).expect("serialisable response")
}

fn read_fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// Builds an SQS event from the fixture's record template, one record per (message id, event).
fn sqs_event(records: &[(&str, &CollectedEvent)]) -> SqsEvent {
    let template = read_fixture("sqs-event.json")["Records"][0].clone();
    let records: Vec<Value> = records
        .iter()
        .map(|(message_id, event)| {
            let mut record = template.clone();
            record["messageId"] = json!(message_id);
            record["body"] = json!(serde_json::to_string(event).expect("event JSON"));
            record["attributes"]["MessageGroupId"] = json!(event.visitor_id.to_string());
            record["attributes"]["MessageDeduplicationId"] = json!(event.event_id);
            record
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
}

/// The batch response as the function serialises it for Lambda.
fn response_json(response: &SqsBatchResponse) -> Value {
    serde_json::to_value(response).expect("serialisable response")
}

/// Events as `collect` puts them on the queue: one per visitor in `emails`, each with the
/// fixture body and the visitor's email.
async fn collected_events(deployment: &Deployment, emails: &[&str]) -> Vec<CollectedEvent> {
    let app = deployment.collect_app().await;
    let mut events = Vec::new();
    for (n, email) in emails.iter().enumerate() {
        let mut event = read_fixture("apigw-v2-collect.json");
        let mut body: Value =
            serde_json::from_str(event["body"].as_str().expect("body")).expect("body JSON");
        body["event_id"] = json!(format!("evt-{n}"));
        body["user_properties"]["customer_email"] = json!(email);
        event["body"] = json!(body.to_string());
        let response = invoke_collect(app.clone(), &event).await;
        assert_eq!(response["statusCode"], 202, "{response}");
        let messages = deployment.moto.take_all(&deployment.queue_url).await;
        assert_eq!(messages.len(), 1);
        let message = messages[0].body().expect("body");
        events.push(serde_json::from_str(message).expect("a collected event"));
    }
    events
}

#[tokio::test]
async fn collect_returns_cookie_in_v2_cookies() {
    let Some(moto) = moto("collect_returns_cookie_in_v2_cookies").await else {
        return;
    };
    let deployment = Deployment::create(moto, "collect-cookie").await;
    let app = deployment.collect_app().await;

    let response = invoke_collect(app, &read_fixture("apigw-v2-collect.json")).await;
    let messages = deployment.moto.take_all(&deployment.queue_url).await;

    assert_eq!(response["statusCode"], 202, "{response}");
    let cookies = response["cookies"].as_array().expect("a cookies array");
    assert_eq!(cookies.len(), 1);
    let cookie = cookies[0].as_str().expect("cookie text");
    assert!(cookie.starts_with("rv_uid="), "{cookie}");
    assert!(cookie.contains("Max-Age=31536000"), "{cookie}");
    assert!(cookie.contains("Domain=shop.example"), "{cookie}");
    assert!(
        response["headers"].get("set-cookie").is_none(),
        "{response}"
    );
    assert_eq!(
        response["headers"]["access-control-allow-origin"],
        "https://www.shop.example"
    );
    assert_eq!(messages.len(), 1);
    let event: CollectedEvent =
        serde_json::from_str(messages[0].body().expect("body")).expect("a collected event");
    assert_eq!(event.event_id, "evt-apigw-1");
    // The address comes from the request context, not from a header the client controls.
    assert_eq!(event.client.ip.as_deref(), Some("203.0.113.7"));
    let body: Value = serde_json::from_str(response["body"].as_str().expect("body")).expect("JSON");
    assert_eq!(body["visitor_id"], event.visitor_id.to_string());
}

#[tokio::test]
async fn collect_reads_v2_cookies_array() {
    let Some(moto) = moto("collect_reads_v2_cookies_array").await else {
        return;
    };
    let deployment = Deployment::create(moto, "collect-returning").await;
    let app = deployment.collect_app().await;
    let first = invoke_collect(app.clone(), &read_fixture("apigw-v2-collect.json")).await;
    let cookie = first["cookies"][0]
        .as_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair");
    let mut returning = read_fixture("apigw-v2-collect.json");
    // API Gateway v2 puts request cookies in `cookies`, not in a Cookie header.
    returning["cookies"] = json!(["_ga=GA1.1.123.456", cookie]);

    let second = invoke_collect(app, &returning).await;

    let visitor = |response: &Value| -> String {
        let body: Value =
            serde_json::from_str(response["body"].as_str().expect("body")).expect("JSON");
        body["visitor_id"].as_str().expect("visitor id").to_owned()
    };
    assert_eq!(visitor(&second), visitor(&first));
}

#[tokio::test]
async fn lambda_adapter_moves_every_set_cookie() {
    // API Gateway v2 responses have no multi-value headers: every Set-Cookie must travel in
    // the `cookies` array, or the browser receives only one of them.
    let first = "uid=u-123; Max-Age=31536000; Path=/; Secure; HttpOnly; SameSite=Lax";
    let second = "_fbc=fb.1.1700000000000.AbC123; Max-Age=7776000; Path=/; Secure; SameSite=Lax";
    let handler = lambda_http::service_fn(move |_request: Request| async move {
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header(SET_COOKIE, first)
            .header(SET_COOKIE, second)
            .body(Body::from("{}"))
    });
    let request: LambdaRequest =
        serde_json::from_value(read_fixture("apigw-v2-collect.json")).expect("a v2 event");

    let mut adapter = Adapter::from(handler);
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .expect("response");
    let envelope = serde_json::to_value(&response).expect("serialisable response");

    assert_eq!(envelope["cookies"], json!([first, second]));
    assert!(
        envelope["headers"].get("set-cookie").is_none(),
        "{envelope}"
    );
}

#[tokio::test]
async fn collect_reads_decoded_base64_body() {
    let Some(moto) = moto("collect_reads_decoded_base64_body").await else {
        return;
    };
    let deployment = Deployment::create(moto, "collect-base64").await;
    let app = deployment.collect_app().await;
    // A Blob beacon without a type: API Gateway base64-encodes the body and sets isBase64Encoded.
    let event = read_fixture("apigw-v2-collect-base64.json");

    let response = invoke_collect(app, &event).await;
    let quarantined = deployment.moto.take_all(&deployment.quarantine_url).await;

    // `page_view` is not a data-layer event, so the item is rejected and kept, as decoded
    // JSON: the collector never saw the base64 text.
    assert_eq!(response["statusCode"], 400, "{response}");
    assert_eq!(quarantined.len(), 1);
    let item: Value = serde_json::from_str(quarantined[0].body().expect("body")).expect("JSON");
    assert_eq!(item["raw"], json!({"event": "page_view", "uid": "u-123"}));
    assert_eq!(item["errors"][0]["path"], "event");
}

#[tokio::test]
async fn pipeline_stores_and_delivers() {
    let Some(moto) = moto("pipeline_stores_and_delivers").await else {
        return;
    };
    let deployment = Deployment::create(moto, "pipeline").await;
    let logs = capture_logs();
    let app = deployment.collect_app().await;
    let worker = deployment.worker().await;

    let collected = invoke_collect(app, &read_fixture("apigw-v2-collect.json")).await;
    assert_eq!(collected["statusCode"], 202, "{collected}");
    let messages = deployment.moto.take_all(&deployment.queue_url).await;
    let events: Vec<CollectedEvent> = messages
        .iter()
        .map(|m| serde_json::from_str(m.body().expect("body")).expect("a collected event"))
        .collect();
    let records: Vec<(String, &CollectedEvent)> = messages
        .iter()
        .zip(&events)
        .map(|(m, e)| (m.message_id().expect("id").to_owned(), e))
        .collect();
    let records: Vec<(&str, &CollectedEvent)> =
        records.iter().map(|(id, e)| (id.as_str(), *e)).collect();
    let response = revisit_enrich::handle(&worker, sqs_event(&records)).await;

    assert_eq!(response_json(&response), json!({"batchItemFailures": []}));
    let visitor_id = &events[0].visitor_id;
    let item = deployment
        .profile_item(visitor_id)
        .await
        .expect("profile stored");
    assert_eq!(item["version"], AttributeValue::N("1".into()));
    let profile: Value = serde_json::from_str(item["profile"].as_s().expect("JSON")).expect("JSON");
    assert_eq!(profile["identity"]["email"]["value"], "user@example.com");
    let expires_at: i64 = item["expires_at"]
        .as_n()
        .expect("number")
        .parse()
        .expect("seconds");
    assert!(
        expires_at > chrono::Utc::now().timestamp() + 300 * 86_400,
        "{expires_at}"
    );
    // The identity index contains a keyed hash of the email, never the email itself.
    let digest = worker.index_digest(IdentifierKind::Email, "user@example.com");
    let link = deployment
        .moto
        .dynamodb()
        .get_item()
        .table_name(&deployment.tables.profiles)
        .key(
            "pk",
            AttributeValue::S(index_partition(IdentifierKind::Email, &digest)),
        )
        .key("sk", AttributeValue::S(format!("visitor#{visitor_id}")))
        .send()
        .await
        .expect("get link")
        .item
        .expect("index entry stored");
    assert!(!format!("{link:?}").contains("user@example.com"));
    let requests = deployment.klaviyo.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("authorization"),
        Some("Klaviyo-API-Key pk_test_0123456789")
    );
    assert!(String::from_utf8_lossy(&requests[0].body).contains("user@example.com"));
    let counters = deployment
        .moto
        .dynamodb()
        .scan()
        .table_name(&deployment.tables.counters)
        .send()
        .await
        .expect("scan counters");
    assert_eq!(counters.items().len(), 1);
    assert!(
        counters.items()[0].contains_key("klaviyo#accepted"),
        "{:?}",
        counters.items()
    );
    let logged = logs.text();
    assert!(logged.contains("batch processed"), "no logs were captured");
    assert!(
        !logged.contains("user@example.com"),
        "an email reached the logs"
    );
    assert!(
        !logged.contains("pk_test_0123456789"),
        "a credential reached the logs"
    );
}

/// Installs, once per test binary, a global subscriber that writes JSON log lines at DEBUG
/// into memory, and returns that buffer. It is global rather than per thread because tracing
/// caches per call site whether anything listens, and a thread-local subscriber misses call
/// sites that another test thread reached first.
fn capture_logs() -> LogBuffer {
    static LOGS: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(logs.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        logs
    })
    .clone()
}

/// Log output kept in memory, for tests that check what the functions log.
#[derive(Debug, Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log lock")).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn enrich_reports_only_failed_message() {
    let Some(moto) = moto("enrich_reports_only_failed_message").await else {
        return;
    };
    let deployment = Deployment::create(moto, "enrich-partial").await;
    let events = collected_events(
        &deployment,
        &["a@example.com", "b@example.com", "c@example.com"],
    )
    .await;
    let worker = deployment.worker().await;
    let batch = sqs_event(&[
        ("m-1", &events[0]),
        ("m-2", &events[1]),
        ("m-3", &events[2]),
    ]);
    // Klaviyo takes one event per request, in batch order; the second gets HTTP 500.
    deployment.klaviyo.script([
        Scripted::status(202),
        Scripted::status(500),
        Scripted::status(202),
    ]);

    let first = revisit_enrich::handle(&worker, batch.clone()).await;
    let redelivered = revisit_enrich::handle(&worker, sqs_event(&[("m-2", &events[1])])).await;
    let all_again = revisit_enrich::handle(&worker, batch).await;

    assert_eq!(
        serde_json::to_string(&first).expect("JSON"),
        r#"{"batchItemFailures":[{"itemIdentifier":"m-2"}]}"#
    );
    assert_eq!(
        response_json(&redelivered),
        json!({"batchItemFailures": []})
    );
    assert_eq!(response_json(&all_again), json!({"batchItemFailures": []}));
    // Three first attempts and one retry of m-2; the full redelivery sent nothing again.
    let sent: Vec<String> = deployment
        .klaviyo
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(sent.len(), 4);
    assert!(sent[3].contains("b@example.com"));
}

#[tokio::test]
async fn enrich_holds_later_messages_of_visitor() {
    let Some(moto) = moto("enrich_holds_later_messages_of_visitor").await else {
        return;
    };
    let deployment = Deployment::create(moto, "enrich-order").await;
    let events = collected_events(&deployment, &["a@example.com", "b@example.com"]).await;
    let mut later = events[0].clone();
    later.event_id = "evt-0-later".into();
    let worker = deployment.worker().await;
    deployment.klaviyo.script([Scripted::status(500)]);

    let response = revisit_enrich::handle(
        &worker,
        sqs_event(&[("a-1", &events[0]), ("b-1", &events[1]), ("a-2", &later)]),
    )
    .await;

    assert_eq!(
        response_json(&response),
        json!({"batchItemFailures": [{"itemIdentifier": "a-1"}, {"itemIdentifier": "a-2"}]})
    );
    let visitor_b = deployment.profile_item(&events[1].visitor_id).await;
    assert!(
        visitor_b.is_some(),
        "the other visitor's event was not processed"
    );
}

#[tokio::test]
async fn enrich_redelivery_changes_nothing() {
    let Some(moto) = moto("enrich_redelivery_changes_nothing").await else {
        return;
    };
    let deployment = Deployment::create(moto, "enrich-idempotent").await;
    let events = collected_events(&deployment, &["a@example.com"]).await;
    let worker = deployment.worker().await;
    let batch = sqs_event(&[("m-1", &events[0])]);

    let first = revisit_enrich::handle(&worker, batch.clone()).await;
    let stored = deployment
        .profile_item(&events[0].visitor_id)
        .await
        .expect("profile");
    let again = revisit_enrich::handle(&worker, batch).await;
    let restored = deployment
        .profile_item(&events[0].visitor_id)
        .await
        .expect("profile");

    assert_eq!(response_json(&first), json!({"batchItemFailures": []}));
    assert_eq!(response_json(&again), json!({"batchItemFailures": []}));
    let event_count = |item: &HashMap<String, AttributeValue>| -> Value {
        let profile: Value =
            serde_json::from_str(item["profile"].as_s().expect("JSON")).expect("JSON");
        profile["event_count"].clone()
    };
    assert_eq!(event_count(&stored), json!(1));
    assert_eq!(event_count(&restored), json!(1));
    assert_eq!(deployment.klaviyo.requests().len(), 1);
}

#[tokio::test]
async fn enrich_fails_undecodable_message_and_group() {
    let Some(moto) = moto("enrich_fails_undecodable_message_and_group").await else {
        return;
    };
    let deployment = Deployment::create(moto, "enrich-undecodable").await;
    let events = collected_events(&deployment, &["a@example.com", "b@example.com"]).await;
    let worker = deployment.worker().await;
    let mut batch = sqs_event(&[
        ("a-1", &events[0]),
        ("b-1", &events[1]),
        ("a-2", &events[0]),
    ]);
    batch.records[0].body = Some("{not json".into());

    let response = revisit_enrich::handle(&worker, batch).await;

    assert_eq!(
        response_json(&response),
        json!({"batchItemFailures": [{"itemIdentifier": "a-1"}, {"itemIdentifier": "a-2"}]})
    );
    assert!(
        deployment
            .profile_item(&events[0].visitor_id)
            .await
            .is_none()
    );
    assert!(
        deployment
            .profile_item(&events[1].visitor_id)
            .await
            .is_some()
    );
}

#[tokio::test]
async fn poison_message_reaches_dead_letter_queue() {
    let Some(moto) = moto("poison_message_reaches_dead_letter_queue").await else {
        return;
    };
    let deployment = Deployment::create(moto, "enrich-poison").await;
    let worker = deployment.worker().await;
    let sqs = deployment.moto.sqs();
    sqs.set_queue_attributes()
        .queue_url(&deployment.queue_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1",
        )
        .send()
        .await
        .expect("shorten visibility timeout");
    sqs.send_message()
        .queue_url(&deployment.queue_url)
        .message_body("{not json")
        .message_group_id("0123456789abcdef0123456789abcdef")
        .message_deduplication_id("poison-1")
        .send()
        .await
        .expect("send poison message");
    let mut poller = SqsPoller::new(sqs, &deployment.queue_url);
    poller.wait_seconds = 0;

    // maxReceiveCount is 3: three failed receives, then the queue moves the message.
    let mut failed = 0;
    for _ in 0..3 {
        let report = poller.poll_once(&worker).await.expect("poll");
        failed += report.failed;
        tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    }
    let after = poller.poll_once(&worker).await.expect("poll");
    let dead = deployment.moto.take_all(&deployment.dead_letter_url).await;

    assert_eq!(failed, 3);
    assert_eq!(after.received, 0);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some("{not json"));
}

#[tokio::test]
async fn poller_deletes_processed_messages() {
    let Some(moto) = moto("poller_deletes_processed_messages").await else {
        return;
    };
    let deployment = Deployment::create(moto, "poller").await;
    let app = deployment.collect_app().await;
    let worker = deployment.worker().await;
    let response = invoke_collect(app, &read_fixture("apigw-v2-collect.json")).await;
    assert_eq!(response["statusCode"], 202, "{response}");
    let mut poller = SqsPoller::new(deployment.moto.sqs(), &deployment.queue_url);
    poller.wait_seconds = 0;

    let first = poller.poll_once(&worker).await.expect("poll");
    let second = poller.poll_once(&worker).await.expect("poll");

    assert_eq!(first.received, 1);
    assert_eq!(first.failed, 0);
    assert_eq!(second.received, 0);
    assert_eq!(deployment.klaviyo.requests().len(), 1);
}
