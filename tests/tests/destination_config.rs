//! The destinations file: the documented example builds every destination live, and each
//! incomplete or invalid setting stops start-up with the setting's name.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use revisit_shared::adapters::http::HttpTransport;
use revisit_shared::config::ConfigError;
use revisit_shared::delivery::Route;
use revisit_shared::destinations::config::build_destinations;
use revisit_shared::destinations::{DestinationsConfig, Secret};

/// The TOML block of the full example in `docs/destinations.md`.
fn documented_example() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/destinations.md");
    let text = std::fs::read_to_string(&path).expect("docs/destinations.md");
    let (_, after) = text
        .split_once("## Full example")
        .expect("a full example section");
    let (_, block) = after.split_once("```toml\n").expect("a TOML block");
    block
        .split_once("```")
        .expect("a closed block")
        .0
        .to_owned()
}

fn build(text: &str, resolved: &BTreeMap<String, Secret>) -> Result<Vec<Route>, ConfigError> {
    let config = DestinationsConfig::parse(text)?;
    let http = Arc::new(HttpTransport::new(Duration::from_secs(1)).expect("HTTP client"));
    build_destinations(&config, resolved, http.clone(), http)
}

/// Every reference of `text` resolved to a value, as the hosting adapter does at start-up.
fn resolve_all(text: &str) -> BTreeMap<String, Secret> {
    let config = DestinationsConfig::parse(text).expect("TOML");
    config
        .secret_refs()
        .into_iter()
        .map(|reference| {
            (
                reference.clone(),
                Secret::new(format!("value-of-{reference}")),
            )
        })
        .collect()
}

#[test]
fn documented_example_builds_every_destination() {
    let example = documented_example();

    let routes = build(&example, &resolve_all(&example)).expect("valid example");

    let names: Vec<&str> = routes.iter().map(|r| r.destination.name()).collect();
    assert_eq!(
        names,
        [
            "klaviyo",
            "meta",
            "ga4",
            "tiktok",
            "pinterest",
            "snapchat",
            "google_ads",
            "microsoft"
        ]
    );
    assert!(routes.iter().all(|route| route.live));
}

#[test]
fn outbox_only_enables_every_destination() {
    let config = DestinationsConfig::outbox_only();
    let http = Arc::new(HttpTransport::new(Duration::from_secs(1)).expect("HTTP client"));

    let routes = build_destinations(&config, &BTreeMap::new(), http.clone(), http).expect("valid");

    assert_eq!(routes.len(), 8);
    assert!(routes.iter().all(|route| !route.live));
}

#[test]
fn incomplete_settings_name_the_setting() {
    let resolved: BTreeMap<String, Secret> = [("env:T".to_owned(), Secret::new("t"))].into();
    let cases = [
        ("[meta]\naccess_token = \"env:T\"\n", "meta.pixel_id"),
        ("[meta]\npixel_id = \"abc\"\n", "meta.pixel_id"),
        ("[meta]\napi_version = \"25\"\n", "meta.api_version"),
        ("[ga4]\napi_secret = \"env:T\"\n", "ga4.measurement_id"),
        ("[ga4]\nmeasurement_id = \"G-ABC\"\n", "ga4.api_secret"),
        (
            "[ga4]\nmeasurement_id = \"UA-1\"\napi_secret = \"env:T\"\n",
            "ga4.measurement_id",
        ),
        ("[tiktok]\naccess_token = \"env:T\"\n", "tiktok.pixel_code"),
        ("[tiktok]\napi_version = \"1.3\"\n", "tiktok.api_version"),
        (
            "[pinterest]\naccess_token = \"env:T\"\n",
            "pinterest.ad_account_id",
        ),
        (
            "[pinterest]\nad_account_id = \"1234567890123456789\"\n",
            "pinterest.ad_account_id",
        ),
        (
            "[snapchat]\naccess_token = \"env:T\"\n",
            "snapchat.pixel_id",
        ),
        (
            "[google_ads]\ndeveloper_token = \"env:T\"\n",
            "google_ads.client_id",
        ),
        (
            "[google_ads]\ndeveloper_token = \"env:T\"\nclient_id = \"c\"\nclient_secret = \"env:T\"\nrefresh_token = \"env:T\"\n",
            "google_ads.customer_id",
        ),
        (
            "[google_ads]\ndeveloper_token = \"env:T\"\nclient_id = \"c\"\nclient_secret = \"env:T\"\nrefresh_token = \"env:T\"\ncustomer_id = \"123-456-7890\"\n",
            "google_ads.conversion_action_id",
        ),
        (
            "[google_ads]\ncustomer_id = \"12345\"\n",
            "google_ads.customer_id",
        ),
        (
            "[microsoft]\napi_token = \"env:T\"\n",
            "microsoft.uet_tag_id",
        ),
        (
            "[microsoft]\nphone_format = \"plus\"\n",
            "microsoft.phone_format",
        ),
        ("[klaviyo]\nrevision = \"2026-13-40\"\n", "klaviyo.revision"),
        ("[klaviyo]\nendpoint = \"ftp://x\"\n", "klaviyo.endpoint"),
    ];

    for (text, setting) in cases {
        let error = build(text, &resolved).expect_err(text);

        assert_eq!(error.setting, setting, "{text}");
    }
}

#[test]
fn secrets_must_be_references() {
    let error = build(
        "[tiktok]\npixel_code = \"P\"\naccess_token = \"abc123\"\n",
        &BTreeMap::new(),
    )
    .expect_err("an inline token is rejected");

    assert_eq!(error.setting, "tiktok.access_token");
    assert!(!error.to_string().contains("abc123"), "{error}");
}

#[test]
fn unknown_setting_rejected() {
    let error = build("[snapchat]\npixel = \"p\"\n", &BTreeMap::new()).expect_err("unknown key");

    assert_eq!(error.setting, "REVISIT_DESTINATIONS_FILE");
    assert!(error.problem.contains("pixel"), "{}", error.problem);
}

#[test]
fn routes_never_print_secrets() {
    let example = documented_example();
    let resolved = resolve_all(&example);

    let routes = build(&example, &resolved).expect("valid example");

    let printed = format!("{routes:?}");
    for secret in resolved.values() {
        assert!(!printed.contains(secret.expose()), "a secret is printed");
    }
    assert!(printed.contains("[redacted]"));
}
