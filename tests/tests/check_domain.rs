//! `revisit check-domain`: Safari's 7-day cap on cookies from CNAME-cloaked or third-party-IP
//! subresources, with the page `shop.example` at 203.0.113.10.

use std::net::IpAddr;
use std::process::ExitCode;

use clap::Parser;
use revisit::check_domain::{self, CheckDomainArgs, Resolved, Verdict, assess, report};

const PAGE_ADDR: &str = "203.0.113.10";

fn ip(text: &str) -> IpAddr {
    text.parse().expect("valid address")
}

fn page() -> Resolved {
    Resolved::given("shop.example", None, &[ip(PAGE_ADDR)])
}

fn collector(host: &str, cname: Option<&str>, addrs: &[&str]) -> Resolved {
    let addrs: Vec<IpAddr> = addrs.iter().map(|addr| ip(addr)).collect();
    Resolved::given(host, cname, &addrs)
}

fn verdict(storefront: &Resolved, collector: &Resolved) -> Verdict {
    assess(storefront, collector).expect("assessable")
}

#[test]
fn api_gateway_address_is_capped() {
    let endpoint = collector("t.shop.example", None, &["198.51.100.20"]);

    let verdict = verdict(&page(), &endpoint);

    assert!(verdict.capped(), "{verdict:?}");
    assert_eq!(
        verdict,
        Verdict::OtherNetwork {
            collector: ip("198.51.100.20"),
            storefront: Some(ip(PAGE_ADDR)),
            shared_bits: 4,
        }
    );
    let text = report(&page(), &endpoint, &verdict);
    assert!(text.starts_with("CAPPED"), "{text}");
    assert!(text.contains("https://shop.example/t/collect"), "{text}");
}

#[test]
fn same_host_path_is_not_capped() {
    let endpoint = collector("https://shop.example/t/", None, &[PAGE_ADDR]);

    let verdict = verdict(&page(), &endpoint);

    assert_eq!(verdict, Verdict::SameHost);
    assert!(!verdict.capped());
}

#[test]
fn same_ipv4_16_is_not_capped() {
    let storefront = Resolved::given("shop.example", None, &[ip("203.0.5.5")]);
    let endpoint = collector("t.shop.example", None, &[PAGE_ADDR]);

    let verdict = verdict(&storefront, &endpoint);

    assert!(!verdict.capped(), "{verdict:?}");
    assert!(matches!(verdict, Verdict::SameNetwork { shared_bits, .. } if shared_bits >= 16));
}

#[test]
fn ipv4_boundary_is_16_bits() {
    let storefront = Resolved::given("shop.example", None, &[ip("203.0.0.1")]);
    let sixteen = collector("t.shop.example", None, &["203.0.255.1"]);
    let fifteen = collector("t.shop.example", None, &["203.1.0.1"]);

    let at_sixteen = verdict(&storefront, &sixteen);
    let at_fifteen = verdict(&storefront, &fifteen);

    assert!(!at_sixteen.capped(), "{at_sixteen:?}");
    assert!(at_fifteen.capped(), "{at_fifteen:?}");
}

#[test]
fn same_ipv6_64_is_not_capped() {
    let storefront = Resolved::given("shop.example", None, &[ip("2001:db8:1:2::10")]);
    let endpoint = collector("t.shop.example", None, &["2001:db8:1:2::99"]);

    let verdict = verdict(&storefront, &endpoint);

    assert!(!verdict.capped(), "{verdict:?}");
}

#[test]
fn other_ipv6_64_is_capped() {
    let storefront = Resolved::given("shop.example", None, &[ip("2001:db8:1:2::10")]);
    let endpoint = collector("t.shop.example", None, &["2001:db8:1:3::10"]);

    let verdict = verdict(&storefront, &endpoint);

    assert!(verdict.capped(), "{verdict:?}");
}

#[test]
fn ipv6_without_page_ipv6_is_capped() {
    let endpoint = collector("t.shop.example", None, &[PAGE_ADDR, "2001:db8::1"]);

    let verdict = verdict(&page(), &endpoint);

    assert_eq!(
        verdict,
        Verdict::OtherNetwork {
            collector: ip("2001:db8::1"),
            storefront: None,
            shared_bits: 0,
        }
    );
}

#[test]
fn cname_to_cloudfront_is_capped() {
    let endpoint = collector("t.shop.example", Some("d111.cloudfront.net"), &[]);

    let verdict = verdict(&page(), &endpoint);

    assert_eq!(
        verdict,
        Verdict::CnameToOtherSite {
            target: "d111.cloudfront.net".to_owned()
        }
    );
    assert!(verdict.capped());
}

#[test]
fn cname_within_site_is_not_capped() {
    let endpoint = collector("t.shop.example", Some("lb.eu.shop.example"), &[]);

    let verdict = verdict(&page(), &endpoint);

    assert!(!verdict.capped(), "{verdict:?}");
}

#[test]
fn cname_matching_page_cname_is_not_capped() {
    let storefront = Resolved::given("www.shop.example", Some("edge.cdn.example"), &[]);
    let endpoint = collector("t.shop.example", Some("collect.cdn.example"), &[]);

    let verdict = verdict(&storefront, &endpoint);

    assert!(!verdict.capped(), "{verdict:?}");
}

#[test]
fn platform_subdomains_are_other_sites() {
    // cloudfront.net and myshopify.com are public suffixes, so their subdomains are sites.
    let storefront = Resolved::given("store-a.myshopify.com", None, &[ip(PAGE_ADDR)]);
    let endpoint = collector("store-b.myshopify.com", None, &[PAGE_ADDR]);

    let verdict = verdict(&storefront, &endpoint);

    assert!(matches!(verdict, Verdict::OtherSite { .. }), "{verdict:?}");
    assert!(verdict.capped());
}

#[test]
fn api_gateway_host_is_third_party() {
    let endpoint = collector(
        "abc123.execute-api.eu-west-1.amazonaws.com",
        None,
        &["198.51.100.20"],
    );

    let verdict = verdict(&page(), &endpoint);

    assert_eq!(
        verdict,
        Verdict::OtherSite {
            storefront_site: "shop.example".to_owned(),
            collector_site: "abc123.execute-api.eu-west-1.amazonaws.com".to_owned(),
        }
    );
}

#[test]
fn report_names_cookie_scope() {
    let storefront = Resolved::given("www.shop.co.uk", None, &[ip(PAGE_ADDR)]);
    let endpoint = collector("t.shop.co.uk", None, &["203.0.113.77"]);
    let hosted = Resolved::given("store-a.myshopify.com", None, &[ip(PAGE_ADDR)]);

    let text = report(&storefront, &endpoint, &verdict(&storefront, &endpoint));
    let hosted_text = report(&hosted, &hosted, &Verdict::SameHost);

    assert!(text.starts_with("OK"), "{text}");
    assert!(text.contains("Domain=shop.co.uk"), "{text}");
    assert!(hosted_text.contains("host-only"), "{hosted_text}");
}

#[test]
fn system_resolver_reads_localhost() {
    let resolved = Resolved::resolve("localhost").expect("localhost resolves");

    assert_eq!(resolved.host, "localhost");
    assert!(
        resolved.addrs.iter().all(|addr| addr.is_loopback()),
        "{resolved:?}"
    );
    assert!(!resolved.addrs.is_empty());
}

#[test]
fn missing_addresses_are_an_error() {
    let endpoint = collector("t.shop.example", None, &[]);

    let error = assess(&page(), &endpoint).expect_err("nothing to compare");

    assert!(error.to_string().contains("--collector-addr"), "{error}");
}

#[derive(Debug, Parser)]
struct Command {
    #[command(flatten)]
    args: CheckDomainArgs,
}

#[test]
fn command_line_exit_status() {
    let run = |extra: &[&str]| {
        let mut argv = vec!["revisit", "shop.example", "t.shop.example"];
        argv.extend_from_slice(extra);
        let command = Command::try_parse_from(argv).expect("valid arguments");
        check_domain::run(&command.args).expect("runs")
    };

    let capped = run(&[
        "--storefront-addr",
        PAGE_ADDR,
        "--collector-addr",
        "198.51.100.20",
    ]);
    let kept = run(&[
        "--storefront-addr",
        PAGE_ADDR,
        "--collector-addr",
        "203.0.113.99",
    ]);

    assert_eq!(capped, ExitCode::from(check_domain::CAPPED_EXIT_CODE));
    assert_eq!(kept, ExitCode::SUCCESS);
}

#[test]
fn command_line_rejects_http_and_empty_hosts() {
    let run = |storefront: &str, collector: &str| {
        let argv = [
            "revisit",
            storefront,
            collector,
            "--storefront-addr",
            PAGE_ADDR,
            "--collector-addr",
            PAGE_ADDR,
        ];
        let command = Command::try_parse_from(argv).expect("valid arguments");
        check_domain::run(&command.args)
    };

    let http = run("www.shop.example", "http://www.shop.example/t/collect").expect_err("http");
    let ftp = run("www.shop.example", "ftp://t.shop.example").expect_err("ftp");
    let empty = run("", "").expect_err("empty");
    let https = run("www.shop.example", "https://www.shop.example/t/collect");

    assert!(http.to_string().contains("https"), "{http}");
    assert!(ftp.to_string().contains("ftp://"), "{ftp}");
    assert!(empty.to_string().contains("empty"), "{empty}");
    assert!(https.is_ok());
}
