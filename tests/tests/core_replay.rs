//! `revisit replay` on a small visit log: the identification counts, the simulated script
//! cookie, bad lines, and that only `--live` reaches a destination.

use revisit::replay::{ReplayArgs, replay};
use revisit_tests::{StandIn, fixture};

fn args(outbox: &std::path::Path) -> ReplayArgs {
    ReplayArgs {
        file: fixture("core/visit-log.jsonl"),
        outbox: outbox.to_path_buf(),
        report: None,
        script_cookie_days: 7,
        site_host: None,
        quiet: true,
        destinations: None,
        live: false,
    }
}

#[tokio::test]
async fn replay_counts_identification_three_ways() {
    let outbox = tempfile::tempdir().expect("temporary directory");

    let report = replay(&args(outbox.path())).await.expect("replay runs");

    assert_eq!(report.events, 6);
    assert_eq!(report.browsers, 2);
    assert_eq!(report.anonymous_jars, 1);
    assert_eq!(report.rejected, 1);
    assert_eq!(report.invalid_lines.len(), 1);
    assert_eq!(report.invalid_lines[0].line, 6);
    // Only log-2 carries the email itself.
    assert_eq!(report.payload_identified, 1);
    // The script cookie written at log-2 and refreshed at log-3 (day 3) is gone by day 10.
    assert_eq!(report.script_cookie_identified, 2);
    // The server cookie keeps log-2, log-3 and log-4 identified.
    assert_eq!(report.enriched_identified, 3);
    assert_eq!(report.destinations["klaviyo"].identifiable, 3);
    assert_eq!(report.destinations["klaviyo"].mode, "outbox");
    let meta = std::fs::read_to_string(outbox.path().join("meta.jsonl")).expect("meta outbox");
    let cart = meta
        .lines()
        .find(|line| line.contains("log-4"))
        .expect("log-4 sent to Meta");
    let cart: serde_json::Value = serde_json::from_str(cart).expect("JSON line");
    let fbc = cart["body"]["data"][0]["user_data"]["fbc"]
        .as_str()
        .expect("fbc kept");
    assert!(fbc.ends_with(".IwAR2F4-dbP0l7Mn"));
}

#[tokio::test]
async fn replay_reaches_platforms_only_with_live() {
    let klaviyo = StandIn::start().await;
    let outbox = tempfile::tempdir().expect("temporary directory");
    let file = outbox.path().join("destinations.toml");
    // PATH is set in every environment, so it stands in for a credential reference.
    let toml = format!(
        "[klaviyo]\napi_key = \"env:PATH\"\nendpoint = \"{}\"\n",
        klaviyo.url()
    );
    std::fs::write(&file, toml).expect("destinations file");
    let mut replay_args = args(outbox.path());
    replay_args.destinations = Some(file);

    let dry = replay(&replay_args).await.expect("replay runs");
    let requests_after_dry_run = klaviyo.requests().len();
    replay_args.live = true;
    let live = replay(&replay_args).await.expect("replay runs");

    assert_eq!(dry.destinations["klaviyo"].mode, "outbox");
    assert_eq!(requests_after_dry_run, 0);
    assert_eq!(live.destinations["klaviyo"].mode, "live");
    assert!(!klaviyo.requests().is_empty());
}
