//! The collector's HTTP routes, served unchanged by `revisit serve` and the `collect` Lambda.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

use super::cors::OPAQUE_ORIGIN;
use super::{CollectRequest, CollectResponse, Collector, MAX_BODY_BYTES};
use crate::event::EventSource;

/// The client address as the server socket saw it, set by the hosting adapter as a request
/// extension (the local server from its connection, the Lambda from the request context).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Routes: `POST /collect` (data-layer events), `POST /collect/shopify` (Shopify Web Pixel
/// events, also from the opaque origin of Shopify's pixel sandbox), their CORS preflights, and
/// `GET /healthz`.
pub fn router(collector: Arc<Collector>) -> Router {
    Router::new()
        .route("/collect", post(collect).options(preflight))
        .route(
            "/collect/shopify",
            post(collect_shopify).options(preflight_shopify),
        )
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::disable())
        .with_state(collector)
}

async fn collect(State(collector): State<Arc<Collector>>, request: Request) -> Response {
    handle(&collector, request, EventSource::DataLayer).await
}

async fn collect_shopify(State(collector): State<Arc<Collector>>, request: Request) -> Response {
    handle(&collector, request, EventSource::ShopifyPixel).await
}

async fn handle(collector: &Collector, request: Request, source: EventSource) -> Response {
    let (parts, body) = request.into_parts();
    let origin = header_text(&parts.headers, header::ORIGIN);
    let cors = &collector.settings().cors;

    let opaque_allowed = source == EventSource::ShopifyPixel;
    let apply_cors = |headers: &mut HeaderMap| {
        if opaque_allowed {
            cors.apply_with_opaque(origin.as_deref(), headers);
        } else {
            cors.apply(origin.as_deref(), headers);
        }
    };
    let is_allowed =
        |origin: &str| cors.allows(origin) || (opaque_allowed && origin == OPAQUE_ORIGIN);

    let forbidden = origin.as_deref().filter(|origin| !is_allowed(origin));
    if let Some(origin) = forbidden {
        let message = format!("origin {origin:?} is not allowed to send events");
        return json_response(
            StatusCode::FORBIDDEN,
            &json!({"error": message}),
            HeaderMap::new(),
        );
    }
    let cookies = cookie_header(&parts.headers);
    let declared_length = header_text(&parts.headers, header::CONTENT_LENGTH)
        .and_then(|length| length.trim().parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        // Respond at once instead of waiting for a body that will be rejected.
        let answer = collector.too_large(cookies.as_deref());
        return finish(answer, apply_cors);
    }
    let answer = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => {
            let socket_ip = parts.extensions.get::<ClientIp>().map(|ip| ip.0);
            let hops = collector.settings().trusted_proxy_hops;
            let request = CollectRequest {
                content_type: header_text(&parts.headers, header::CONTENT_TYPE),
                body,
                cookie_header: cookies,
                user_agent: header_text(&parts.headers, header::USER_AGENT),
                client_ip: client_ip(&parts.headers, socket_ip, hops).map(|ip| ip.to_string()),
            };
            match source {
                EventSource::DataLayer => collector.collect(request).await,
                EventSource::ShopifyPixel => collector.collect_shopify(request).await,
            }
        }
        // A limited read fails only when the body passes the limit (or the client hangs up).
        Err(_) => collector.too_large(cookies.as_deref()),
    };
    finish(answer, apply_cors)
}

/// Turns the collector's response into the HTTP response, with CORS and `Set-Cookie` headers.
fn finish(answer: CollectResponse, apply_cors: impl Fn(&mut HeaderMap)) -> Response {
    let mut headers = HeaderMap::new();
    apply_cors(&mut headers);
    for set_cookie in &answer.set_cookies {
        if let Ok(value) = HeaderValue::from_str(set_cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &answer.body, headers)
}

async fn preflight(State(collector): State<Arc<Collector>>, headers: HeaderMap) -> Response {
    let origin = header_text(&headers, header::ORIGIN);
    let mut response_headers = HeaderMap::new();
    collector
        .settings()
        .cors
        .apply_preflight(origin.as_deref(), &mut response_headers);
    no_content(response_headers)
}

async fn preflight_shopify(
    State(collector): State<Arc<Collector>>,
    headers: HeaderMap,
) -> Response {
    let origin = header_text(&headers, header::ORIGIN);
    let mut response_headers = HeaderMap::new();
    collector
        .settings()
        .cors
        .apply_preflight_with_opaque(origin.as_deref(), &mut response_headers);
    no_content(response_headers)
}

fn no_content(response_headers: HeaderMap) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response.headers_mut().extend(response_headers);
    response
}

fn json_response(status: StatusCode, body: &serde_json::Value, headers: HeaderMap) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let response_headers = response.headers_mut();
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in &headers {
        response_headers.append(name, value.clone());
    }
    response
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Joins every `Cookie` header: HTTP/2 clients and API Gateway may send several.
fn cookie_header(headers: &HeaderMap) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join("; "))
}

/// The client address: with `hops` trusted proxies, the entry that the outermost trusted proxy
/// appended to `X-Forwarded-For`; with none, the socket address.
fn client_ip(headers: &HeaderMap, socket_ip: Option<IpAddr>, hops: usize) -> Option<IpAddr> {
    if hops == 0 {
        return socket_ip;
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    let index = forwarded.len().checked_sub(hops)?;
    forwarded[index].parse().ok().or(socket_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_counts_trusted_hops_from_the_right() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.7"),
        );
        let socket = Some(IpAddr::from([10, 0, 0, 1]));

        assert_eq!(client_ip(&headers, socket, 0), socket);
        assert_eq!(
            client_ip(&headers, socket, 1),
            Some(IpAddr::from([203, 0, 113, 7]))
        );
        assert_eq!(
            client_ip(&headers, socket, 2),
            Some(IpAddr::from([6, 6, 6, 6]))
        );
        assert_eq!(client_ip(&headers, socket, 3), None);
    }
}
