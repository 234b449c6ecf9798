//! Invariants of template.yaml that cfn-lint does not check on SAM functions: runtime and
//! architecture, partial batch responses, the visibility timeout, TTL, backups, encryption,
//! least-privilege roles, secrets only from SSM, the dead-letter alarm and the outputs.

use std::path::PathBuf;

use serde_json::{Map, Value, json};

/// template.yaml as JSON, with each CloudFormation short form (`!Ref X`, `!GetAtt A.B`,
/// `!Sub ...`) turned into its long form (`{"Ref": "X"}`, `{"Fn::GetAtt": "A.B"}`, ...).
fn template() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let text = std::fs::read_to_string(&path).expect("template.yaml is readable");
    let yaml: serde_norway::Value = serde_norway::from_str(&text).expect("template.yaml is YAML");
    to_json(yaml)
}

fn to_json(yaml: serde_norway::Value) -> Value {
    use serde_norway::Value as Yaml;
    match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(value) => Value::Bool(value),
        Yaml::Number(number) => serde_json::to_value(number).expect("a JSON number"),
        Yaml::String(text) => Value::String(text),
        Yaml::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Yaml::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Yaml::String(text) => text,
                    other => serde_norway::to_string(&other)
                        .expect("key")
                        .trim()
                        .to_owned(),
                };
                object.insert(key, to_json(value));
            }
            Value::Object(object)
        }
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let long = if name == "Ref" || name == "Condition" {
                name.to_owned()
            } else {
                format!("Fn::{name}")
            };
            json!({ long: to_json(tagged.value) })
        }
    }
}

fn resource<'a>(template: &'a Value, name: &str) -> &'a Value {
    let resource = &template["Resources"][name];
    assert!(resource.is_object(), "resource {name} is missing");
    resource
}

fn properties<'a>(template: &'a Value, name: &str) -> &'a Value {
    &resource(template, name)["Properties"]
}

/// Resources of one CloudFormation type.
fn resources_of<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    template["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(_, resource)| resource["Type"] == kind)
        .collect()
}

/// Returns every IAM statement of a role, as (actions, resources).
fn statements(template: &Value, role: &str) -> Vec<(Vec<String>, Vec<Value>)> {
    let policies = properties(template, role)["Policies"]
        .as_array()
        .expect("Policies");
    let mut found = Vec::new();
    for policy in policies {
        for statement in policy["PolicyDocument"]["Statement"]
            .as_array()
            .expect("Statement")
        {
            assert_eq!(statement["Effect"], "Allow", "{statement}");
            let actions = match &statement["Action"] {
                Value::String(action) => vec![action.clone()],
                Value::Array(actions) => actions
                    .iter()
                    .map(|a| a.as_str().expect("action").to_owned())
                    .collect(),
                other => panic!("unexpected Action {other}"),
            };
            let resources = match &statement["Resource"] {
                Value::Array(resources) => resources.clone(),
                other => vec![other.clone()],
            };
            found.push((actions, resources));
        }
    }
    found
}

/// Why a queue's visibility timeout is too short for a function timeout, if it is: AWS
/// advises at least six times the timeout of the function the queue feeds.
fn visibility_problem(function_timeout: u64, visibility_timeout: u64) -> Option<String> {
    (visibility_timeout < 6 * function_timeout).then(|| {
        format!(
            "visibility timeout {visibility_timeout} s is under 6 x the {function_timeout} s \
             function timeout; use at least {} s",
            6 * function_timeout
        )
    })
}

#[test]
fn functions_run_on_al2023_arm64() {
    let template = template();

    let globals = &template["Globals"]["Function"];

    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Architectures"], json!(["arm64"]));
    assert_eq!(globals["LoggingConfig"]["LogFormat"], "JSON");
    let functions = resources_of(&template, "AWS::Serverless::Function");
    assert_eq!(functions.len(), 2);
    for (name, function) in functions {
        assert_eq!(
            function["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{name}"
        );
        assert!(
            function["Properties"].get("Runtime").is_none(),
            "{name} overrides Runtime"
        );
        let architectures = function["Properties"].get("Architectures");
        assert!(architectures.is_none(), "{name} overrides Architectures");
    }
    let binary =
        |name: &str| resource(&template, name)["Metadata"]["BuildProperties"]["Binary"].clone();
    assert_eq!(binary("CollectFunction"), "collect");
    assert_eq!(binary("EnrichFunction"), "enrich");
}

#[test]
fn enrich_reports_batch_item_failures() {
    let template = template();

    let events = &properties(&template, "EnrichFunction")["Events"];
    let sqs: Vec<&Value> = events
        .as_object()
        .expect("Events")
        .values()
        .filter(|event| event["Type"] == "SQS")
        .collect();

    assert_eq!(sqs.len(), 1);
    let mapping = &sqs[0]["Properties"];
    assert_eq!(
        mapping["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(mapping["Queue"], json!({"Fn::GetAtt": "EventQueue.Arn"}));
    assert_eq!(mapping["BatchSize"], json!({"Ref": "BatchSize"}));
    assert_eq!(template["Parameters"]["BatchSize"]["MaxValue"], 10);
    let window = &mapping["MaximumBatchingWindowInSeconds"]["Fn::If"];
    assert_eq!(window[0], "HasBatchingWindow");
    assert_eq!(window[1], json!({"Ref": "BatchingWindowSeconds"}));
}

#[test]
fn visibility_check_rejects_equal_timeouts() {
    assert!(visibility_problem(30, 30).is_some());
    assert!(visibility_problem(30, 179).is_some());
    assert_eq!(visibility_problem(30, 180), None);
}

#[test]
fn queue_visibility_covers_enrich_timeout() {
    let template = template();

    let timeout = &properties(&template, "EnrichFunction")["Timeout"];
    let visibility = &properties(&template, "EventQueue")["VisibilityTimeout"];
    let allowed = template["Parameters"]["EnrichTimeoutSeconds"]["AllowedValues"]
        .as_array()
        .expect("AllowedValues");

    assert_eq!(timeout, &json!({"Ref": "EnrichTimeoutSeconds"}));
    assert_eq!(
        visibility,
        &json!({"Fn::FindInMap": ["QueueVisibility", {"Ref": "EnrichTimeoutSeconds"}, "Seconds"]})
    );
    assert!(!allowed.is_empty());
    for value in allowed {
        let key = value.as_str().expect("a string value");
        let seconds = template["Mappings"]["QueueVisibility"][key]["Seconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("no visibility timeout for an enrich timeout of {key}"));
        let function_timeout: u64 = key.parse().expect("whole seconds");
        assert_eq!(visibility_problem(function_timeout, seconds), None);
    }
}

#[test]
fn event_queue_is_fifo_with_dead_letters() {
    let template = template();

    let queue = properties(&template, "EventQueue");
    let dead_letter = properties(&template, "EventDeadLetterQueue");

    assert_eq!(queue["FifoQueue"], true);
    assert_eq!(queue["ContentBasedDeduplication"], false);
    assert_eq!(queue["DeduplicationScope"], "messageGroup");
    assert_eq!(queue["SqsManagedSseEnabled"], true);
    assert_eq!(
        queue["RedrivePolicy"]["deadLetterTargetArn"],
        json!({"Fn::GetAtt": "EventDeadLetterQueue.Arn"})
    );
    assert_eq!(
        queue["RedrivePolicy"]["maxReceiveCount"],
        json!({"Ref": "MaxReceiveCount"})
    );
    assert_eq!(dead_letter["FifoQueue"], true);
    assert_eq!(dead_letter["SqsManagedSseEnabled"], true);
    let retention = |queue: &Value| queue["MessageRetentionPeriod"].as_u64().expect("seconds");
    assert!(retention(dead_letter) > retention(queue));
    // The collector checks messages against the same parameter the queues are created with.
    let variables = &properties(&template, "CollectFunction")["Environment"]["Variables"];
    assert_eq!(
        queue["MaximumMessageSize"],
        json!({"Ref": "MaxMessageBytes"})
    );
    assert_eq!(
        variables["REVISIT_QUEUE_MAX_MESSAGE_BYTES"],
        json!({"Ref": "MaxMessageBytes"})
    );
}

#[test]
fn dead_letter_depth_raises_alarm() {
    let template = template();

    let alarm = properties(&template, "DeadLetterAlarm");

    assert_eq!(alarm["Namespace"], "AWS/SQS");
    assert_eq!(alarm["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(
        alarm["Dimensions"][0]["Value"],
        json!({"Fn::GetAtt": "EventDeadLetterQueue.QueueName"})
    );
    assert_eq!(alarm["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(alarm["Threshold"], 0);
}

#[test]
fn tables_expire_back_up_and_encrypt() {
    let template = template();

    let tables = resources_of(&template, "AWS::DynamoDB::Table");

    assert_eq!(tables.len(), 2);
    for (name, table) in tables {
        let properties = &table["Properties"];
        assert_eq!(
            properties["TimeToLiveSpecification"]["AttributeName"], "expires_at",
            "{name}"
        );
        assert_eq!(
            properties["TimeToLiveSpecification"]["Enabled"], true,
            "{name}"
        );
        assert_eq!(
            properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true,
            "{name}"
        );
        assert_eq!(properties["SSESpecification"]["SSEEnabled"], true, "{name}");
        assert_eq!(properties["KeySchema"][0]["AttributeName"], "pk", "{name}");
        assert_eq!(properties["KeySchema"][1]["AttributeName"], "sk", "{name}");
        assert_eq!(table["DeletionPolicy"], "Retain", "{name}");
    }
}

#[test]
fn collect_role_may_only_send() {
    let template = template();

    let statements = statements(&template, "CollectRole");

    let actions: Vec<&String> = statements.iter().flat_map(|(actions, _)| actions).collect();
    assert_eq!(
        actions,
        vec![
            "logs:CreateLogStream",
            "logs:PutLogEvents",
            "sqs:SendMessage",
            "ssm:GetParameters"
        ]
    );
    let send = statements
        .iter()
        .find(|(a, _)| a == &["sqs:SendMessage"])
        .expect("send statement");
    assert_eq!(
        send.1,
        vec![
            json!({"Fn::GetAtt": "EventQueue.Arn"}),
            json!({"Fn::GetAtt": "QuarantineQueue.Arn"})
        ]
    );
    let ssm = statements
        .iter()
        .find(|(a, _)| a == &["ssm:GetParameters"])
        .expect("ssm statement");
    let parameter = ssm.1[0]["Fn::Sub"].as_str().expect("a parameter ARN");
    assert!(
        parameter.ends_with(":parameter${SsmPathPrefix}secret"),
        "{parameter}"
    );
}

#[test]
fn enrich_role_is_least_privilege() {
    let template = template();

    let statements = statements(&template, "EnrichRole");

    for (actions, resources) in &statements {
        for action in actions {
            assert!(!action.contains('*'), "wildcard action {action}");
            assert!(action != "sqs:SendMessage", "enrich may not send to queues");
            assert!(
                !action.starts_with("dynamodb:Delete"),
                "enrich never deletes items"
            );
            assert!(!action.starts_with("dynamodb:Scan"), "enrich never scans");
        }
        for resource in resources {
            assert_ne!(
                resource,
                &json!("*"),
                "statement {actions:?} applies to every resource"
            );
        }
    }
    let dynamodb: Vec<&String> = statements
        .iter()
        .flat_map(|(actions, _)| actions)
        .filter(|action| action.starts_with("dynamodb:"))
        .collect();
    assert_eq!(
        dynamodb,
        vec![
            "dynamodb:BatchGetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:Query",
            "dynamodb:UpdateItem",
            "dynamodb:Query"
        ]
    );
}

#[test]
fn no_role_uses_wildcard_resource() {
    let template = template();

    for (name, _) in resources_of(&template, "AWS::IAM::Role") {
        for (actions, resources) in statements(&template, name) {
            assert!(!resources.contains(&json!("*")), "{name}: {actions:?} on *");
        }
    }
    for (name, function) in resources_of(&template, "AWS::Serverless::Function") {
        assert!(
            function["Properties"].get("Policies").is_none(),
            "{name} adds SAM policies"
        );
        assert!(
            function["Properties"]["Role"].is_object(),
            "{name} has no explicit role"
        );
    }
}

#[test]
fn secrets_come_only_from_ssm() {
    let template = template();

    for (name, function) in resources_of(&template, "AWS::Serverless::Function") {
        let variables = &function["Properties"]["Environment"]["Variables"];
        let secret = variables["REVISIT_SECRET"]["Fn::Sub"]
            .as_str()
            .expect("a reference");
        assert!(secret.starts_with("ssm:"), "{name}: {secret}");
        for key in variables.as_object().expect("variables").keys() {
            // The SDK takes endpoints only from AWS_ENDPOINT_URL*; a deployed function
            // must always reach the real services.
            assert!(!key.starts_with("AWS_ENDPOINT_URL"), "{name} sets {key}");
        }
    }
    for (name, parameter) in template["Parameters"].as_object().expect("Parameters") {
        let lower = name.to_ascii_lowercase();
        let secret_like = ["token", "apikey", "password"]
            .iter()
            .any(|w| lower.contains(w))
            || lower == "secret";
        assert!(
            !secret_like,
            "parameter {name} would carry a secret in plain text"
        );
        assert!(
            parameter.get("NoEcho").is_none(),
            "parameter {name} carries a secret"
        );
    }
}

#[test]
fn http_api_cors_and_domain() {
    let template = template();

    let cors = &properties(&template, "HttpApi")["CorsConfiguration"];
    let domain = resource(&template, "CustomDomain");
    let mapping = resource(&template, "CustomDomainMapping");

    assert_eq!(
        cors["AllowOrigins"],
        json!({"Fn::Split": [",", {"Ref": "AllowedOrigins"}]})
    );
    assert_eq!(cors["AllowCredentials"], true);
    assert_eq!(domain["Condition"], "HasCustomDomain");
    assert_eq!(
        domain["Properties"]["DomainName"],
        json!({"Ref": "CustomDomainName"})
    );
    assert_eq!(mapping["Condition"], "HasCustomDomain");
    let collect_events = &properties(&template, "CollectFunction")["Events"];
    assert_eq!(collect_events["Collect"]["Properties"]["Path"], "/collect");
    assert_eq!(collect_events["Collect"]["Properties"]["Method"], "POST");
}

#[test]
fn outputs_name_endpoint_and_tables() {
    let template = template();

    let outputs = &template["Outputs"];

    let url = outputs["CollectUrl"]["Value"]["Fn::Sub"]
        .as_str()
        .expect("URL");
    assert!(url.starts_with("https://${HttpApi}.execute-api."), "{url}");
    assert!(url.ends_with("/collect"), "{url}");
    assert_eq!(
        outputs["ProfilesTableName"]["Value"],
        json!({"Ref": "ProfilesTable"})
    );
    assert_eq!(
        outputs["CountersTableName"]["Value"],
        json!({"Ref": "CountersTable"})
    );
    assert_eq!(outputs["CustomDomainUrl"]["Condition"], "HasCustomDomain");
}
