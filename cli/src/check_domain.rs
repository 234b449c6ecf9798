//! `revisit check-domain`: whether Safari would cap the collector's one-year visitor cookie to
//! 7 days, and what to change.
//!
//! WebKit's tracking prevention caps every cookie set by a first-party subresource response to
//! 7 days when the subresource host is a CNAME to another site ("CNAME cloaking"). Without a
//! CNAME, it caps them when the subresource's IP address shares fewer than half of its leading
//! bits with the page's address: 16 of IPv4, 64 of IPv6 (WebKit bug 246477, "Cap cookie
//! lifetimes to 7 days for responses from third party IP addresses"). A CNAME to the page's own site, or to the site the page's host is
//! itself a CNAME to, is first-party. Top-level navigations are exempt.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use revisit_shared::attribution::registrable_domain;
use revisit_shared::collect::cookie::cookie_domain;

/// Exit status when Safari would cap the cookie, so scripts can tell it from a failure (1).
pub const CAPPED_EXIT_CODE: u8 = 3;

/// Options of `revisit check-domain`.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Exit status: 0 when Safari keeps the cookie for a year, 3 when it \
    would cap it to 7 days or block it, 1 on errors."
)]
pub struct CheckDomainArgs {
    /// Storefront host, such as www.shop.example (a URL is accepted).
    pub storefront: String,
    /// Collector host, such as t.shop.example, or its URL, such as
    /// https://www.shop.example/t/collect.
    pub collector: String,
    /// Storefront addresses to use instead of resolving the host (repeat or separate with commas).
    #[arg(long, value_delimiter = ',')]
    pub storefront_addr: Vec<IpAddr>,
    /// Collector addresses to use instead of resolving the host (repeat or separate with commas).
    #[arg(long, value_delimiter = ',')]
    pub collector_addr: Vec<IpAddr>,
    /// Name the storefront host is a CNAME to, used instead of resolving the host.
    #[arg(long)]
    pub storefront_cname: Option<String>,
    /// Name the collector host is a CNAME to, used instead of resolving the host.
    #[arg(long)]
    pub collector_cname: Option<String>,
}

/// A host with what it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub host: String,
    /// The canonical name at the end of the host's CNAME chain, `None` without a CNAME.
    pub cname: Option<String>,
    pub addrs: Vec<IpAddr>,
}

impl Resolved {
    /// Builds a host record from a CNAME and addresses given on the command line.
    pub fn given(host: &str, cname: Option<&str>, addrs: &[IpAddr]) -> Self {
        let host = normalize_host(host);
        let cname = cname.map(normalize_host).filter(|name| *name != host);
        Self {
            host,
            cname,
            addrs: addrs.to_vec(),
        }
    }

    /// Resolves `host` with the system resolver (getaddrinfo with `AI_CANONNAME`, so the
    /// result includes the canonical name at the end of any CNAME chain).
    pub fn resolve(host: &str) -> anyhow::Result<Self> {
        let host = normalize_host(host);
        let hints = dns_lookup::AddrInfoHints {
            flags: libc::AI_CANONNAME,
            socktype: dns_lookup::SockType::Stream.into(),
            ..dns_lookup::AddrInfoHints::default()
        };
        let answers = dns_lookup::getaddrinfo(Some(&host), None, Some(hints))
            .map_err(std::io::Error::from)
            .with_context(|| {
                format!("resolving {host} failed; pass --storefront-addr or --collector-addr")
            })?;
        let mut resolved = Self::given(&host, None, &[]);
        for answer in answers {
            let answer = answer.with_context(|| format!("reading the addresses of {host}"))?;
            if resolved.cname.is_none() {
                resolved.cname = answer
                    .canonname
                    .as_deref()
                    .map(normalize_host)
                    .filter(|name| !name.is_empty() && *name != host);
            }
            let ip = answer.sockaddr.ip();
            if !resolved.addrs.contains(&ip) {
                resolved.addrs.push(ip);
            }
        }
        Ok(resolved)
    }
}

/// The reason the collector's cookie keeps or loses its year in Safari.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The collector is a path on the storefront's own host.
    SameHost,
    /// The collector is on another registrable domain: its cookie is a third-party cookie.
    OtherSite {
        storefront_site: String,
        collector_site: String,
    },
    /// The collector host is a CNAME to a name on the storefront's site, or to the site the
    /// storefront itself is a CNAME to.
    FirstPartyCname { target: String },
    /// The collector host is a CNAME to another site.
    CnameToOtherSite { target: String },
    /// Every collector address shares at least half its leading bits with a storefront address.
    SameNetwork {
        collector: IpAddr,
        storefront: IpAddr,
        shared_bits: u32,
    },
    /// A collector address shares fewer than half its leading bits with every storefront
    /// address of its family (`storefront` is `None` when the storefront has none).
    OtherNetwork {
        collector: IpAddr,
        storefront: Option<IpAddr>,
        shared_bits: u32,
    },
}

impl Verdict {
    /// Returns whether Safari would cap the visitor cookie to 7 days (or block it, for another
    /// site).
    pub fn capped(&self) -> bool {
        matches!(
            self,
            Self::OtherSite { .. } | Self::CnameToOtherSite { .. } | Self::OtherNetwork { .. }
        )
    }
}

/// Decides what Safari does with cookies that `collector` sets on pages of `storefront`.
pub fn assess(storefront: &Resolved, collector: &Resolved) -> anyhow::Result<Verdict> {
    if storefront.host == collector.host {
        return Ok(Verdict::SameHost);
    }
    let storefront_site = site_of(&storefront.host);
    let collector_site = site_of(&collector.host);
    if storefront_site != collector_site {
        return Ok(Verdict::OtherSite {
            storefront_site,
            collector_site,
        });
    }
    if let Some(target) = &collector.cname {
        let target_site = site_of(target);
        let storefront_target_site = storefront.cname.as_deref().map(site_of);
        let first_party = target_site == storefront_site
            || storefront_target_site.as_deref() == Some(target_site.as_str());
        let target = target.clone();
        return Ok(if first_party {
            Verdict::FirstPartyCname { target }
        } else {
            Verdict::CnameToOtherSite { target }
        });
    }
    compare_addresses(storefront, collector)
}

fn compare_addresses(storefront: &Resolved, collector: &Resolved) -> anyhow::Result<Verdict> {
    if collector.addrs.is_empty() || storefront.addrs.is_empty() {
        let host = if collector.addrs.is_empty() {
            &collector.host
        } else {
            &storefront.host
        };
        anyhow::bail!(
            "{host} has no addresses to compare; pass --storefront-addr or --collector-addr"
        );
    }
    let mut best_of_worst: Option<Verdict> = None;
    for &address in &collector.addrs {
        let closest = storefront
            .addrs
            .iter()
            .filter(|candidate| candidate.is_ipv4() == address.is_ipv4())
            .map(|&candidate| (candidate, shared_prefix_bits(address, candidate)))
            .max_by_key(|(_, bits)| *bits);
        let verdict = match closest {
            Some((candidate, bits)) if bits >= half_bits(address) => Verdict::SameNetwork {
                collector: address,
                storefront: candidate,
                shared_bits: bits,
            },
            Some((candidate, bits)) => Verdict::OtherNetwork {
                collector: address,
                storefront: Some(candidate),
                shared_bits: bits,
            },
            None => Verdict::OtherNetwork {
                collector: address,
                storefront: None,
                shared_bits: 0,
            },
        };
        // A browser may connect to any of the addresses, so one mismatch decides.
        if verdict.capped() {
            return Ok(verdict);
        }
        best_of_worst.get_or_insert(verdict);
    }
    best_of_worst.context("no collector address")
}

/// Leading bits that two addresses of one family have in common.
pub fn shared_prefix_bits(a: IpAddr, b: IpAddr) -> u32 {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (a.to_bits() ^ b.to_bits()).leading_zeros(),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits() ^ b.to_bits()).leading_zeros(),
        _ => 0,
    }
}

fn half_bits(address: IpAddr) -> u32 {
    if address.is_ipv4() { 16 } else { 64 }
}

/// Returns the site of a host: its registrable domain, or the host itself for IP addresses and
/// names without one.
fn site_of(host: &str) -> String {
    if host.parse::<IpAddr>().is_ok() {
        return host.to_owned();
    }
    registrable_domain(host).unwrap_or_else(|| host.to_owned())
}

/// Rejects an empty host and a URL whose scheme is not https: the visitor cookie is `Secure`,
/// so a browser keeps it only from an https response.
fn check_input(role: &str, input: &str) -> anyhow::Result<()> {
    if input.trim().is_empty() {
        anyhow::bail!("the {role} host is empty; give a host such as www.shop.example");
    }
    if let Some((scheme, _)) = input.trim().split_once("://")
        && !scheme.eq_ignore_ascii_case("https")
    {
        anyhow::bail!(
            "the {role} URL uses {scheme}://; serve it over https, since browsers keep the Secure visitor cookie only from https responses"
        );
    }
    Ok(())
}

/// Extracts the host of a host name or URL, lower case, without port or trailing dot.
fn normalize_host(input: &str) -> String {
    let input = input.trim();
    let host = url::Url::parse(input)
        .ok()
        .filter(|url| url.has_host())
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_else(|| {
            let without_path = input.split('/').next().unwrap_or(input);
            match without_path.rsplit_once(':') {
                Some((name, port)) if port.parse::<u16>().is_ok() && !name.contains(':') => {
                    name.to_owned()
                }
                _ => without_path.to_owned(),
            }
        });
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Writes the report for a verdict: what Safari does and what to change.
pub fn report(storefront: &Resolved, collector: &Resolved, verdict: &Verdict) -> String {
    let mut text = String::new();
    let summary = if verdict.capped() {
        "CAPPED: Safari would not keep the visitor cookie for a year."
    } else {
        "OK: Safari keeps the one-year visitor cookie."
    };
    let _ = writeln!(text, "{summary}");
    let _ = writeln!(text, "  storefront {}", describe(storefront));
    let _ = writeln!(text, "  collector  {}", describe(collector));
    let _ = write!(text, "{}", explain(storefront, collector, verdict));
    if matches!(verdict, Verdict::OtherSite { .. }) {
        return text;
    }
    let scope = cookie_domain(&storefront.host)
        .map(|domain| format!("Domain={domain}"))
        .unwrap_or_else(|| format!("host-only (no Domain attribute) on {}", storefront.host));
    let _ = write!(
        text,
        "\nSet REVISIT_SITE_HOST={} so the cookie is scoped {scope}.",
        storefront.host
    );
    text
}

fn describe(side: &Resolved) -> String {
    let addresses: Vec<String> = side.addrs.iter().map(IpAddr::to_string).collect();
    let cname = side
        .cname
        .as_deref()
        .map(|target| format!(" CNAME {target}"))
        .unwrap_or_default();
    format!("{}{cname} [{}]", side.host, addresses.join(", "))
}

fn explain(storefront: &Resolved, collector: &Resolved, verdict: &Verdict) -> String {
    let path_fix = format!(
        "serve the collector from a path on the storefront's own host, such as \
         https://{}/t/collect, through the storefront's CDN or proxy",
        storefront.host
    );
    match verdict {
        Verdict::SameHost => "The collector is a path on the storefront's host, so its \
             responses are first-party."
            .to_owned(),
        Verdict::OtherSite {
            storefront_site,
            collector_site,
        } => format!(
            "The collector is on {collector_site}, another site than {storefront_site}: its \
             cookie is a third-party cookie, which Safari blocks. Serve it under \
             {storefront_site}, or {path_fix}."
        ),
        Verdict::FirstPartyCname { target } => format!(
            "{} is a CNAME to {target}, which Safari counts as the storefront's own site.",
            collector.host
        ),
        Verdict::CnameToOtherSite { target } => format!(
            "{} is a CNAME to {target}, another site, so Safari caps its cookies to 7 days. \
             Either {path_fix}, or replace the CNAME with A/AAAA records in the storefront's \
             network (the same /16 for IPv4, the same /64 for IPv6).",
            collector.host
        ),
        Verdict::SameNetwork {
            collector: address,
            storefront: other,
            shared_bits,
        } => format!(
            "{address} shares {shared_bits} leading bits with the storefront's {other}, at \
             least half of the address, so Safari treats the collector as first-party."
        ),
        Verdict::OtherNetwork {
            collector: address,
            storefront: other,
            shared_bits,
        } => {
            let compared = match other {
                Some(other) => format!(
                    "shares only {shared_bits} leading bits with the storefront's {other} \
                     (Safari needs {})",
                    half_bits(*address)
                ),
                None => "has no storefront address of its family to match".to_owned(),
            };
            format!(
                "The collector's address {address} {compared}, so Safari caps its cookies to \
                 7 days. Either {path_fix}, or put {} behind the storefront's CDN or load \
                 balancer so its addresses share the storefront's /16 (IPv4) and /64 (IPv6).",
                collector.host
            )
        }
    }
}

/// Runs `revisit check-domain` and prints the report. The exit status is `CAPPED_EXIT_CODE`
/// when Safari would cap the cookie.
pub fn run(args: &CheckDomainArgs) -> anyhow::Result<ExitCode> {
    check_input("storefront", &args.storefront)?;
    check_input("collector", &args.collector)?;
    let side = |host: &str, cname: &Option<String>, addrs: &[IpAddr]| {
        if addrs.is_empty() && cname.is_none() {
            Resolved::resolve(host)
        } else {
            Ok(Resolved::given(host, cname.as_deref(), addrs))
        }
    };
    let storefront = side(
        &args.storefront,
        &args.storefront_cname,
        &args.storefront_addr,
    )?;
    let collector = side(&args.collector, &args.collector_cname, &args.collector_addr)?;
    let verdict = assess(&storefront, &collector)?;
    #[allow(clippy::print_stdout)]
    {
        println!("{}", report(&storefront, &collector, &verdict));
    }
    Ok(if verdict.capped() {
        ExitCode::from(CAPPED_EXIT_CODE)
    } else {
        ExitCode::SUCCESS
    })
}
