//! The HTTP transport: sends a destination's request with reqwest (rustls), adding its
//! credentials only here.

use std::time::Duration;

use async_trait::async_trait;

use crate::delivery::retry_after;
use crate::destinations::{OutboundRequest, SecretPlacement, TransportResponse};
use crate::ports::{Transport, TransportError};

/// Sends requests over HTTPS (or HTTP to loopback test servers).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
}

impl HttpTransport {
    /// A transport whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("revisit/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }
}

/// Tells whether the request declares a form-encoded body (OAuth token requests).
fn is_form(request: &OutboundRequest) -> bool {
    request.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type")
            && value.starts_with("application/x-www-form-urlencoded")
    })
}

/// Encodes the string fields of the JSON body and the form credentials as a form.
fn form_body(request: &OutboundRequest) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    if let Some(fields) = request.body.as_object() {
        for (name, value) in fields {
            if let Some(text) = value.as_str() {
                form.append_pair(name, text);
            }
        }
    }
    for (placement, secret) in &request.secrets {
        if let SecretPlacement::Form(name) = placement {
            form.append_pair(name, secret.expose());
        }
    }
    form.finish()
}

#[async_trait]
impl Transport for HttpTransport {
    async fn send(&self, request: &OutboundRequest) -> Result<TransportResponse, TransportError> {
        let destination = request.destination.to_owned();
        let mut url =
            reqwest::Url::parse(&request.url).map_err(|error| TransportError::Invalid {
                destination: destination.clone(),
                source: Box::new(error),
            })?;
        for (placement, secret) in &request.secrets {
            if let SecretPlacement::Query(name) = placement {
                url.query_pairs_mut().append_pair(name, secret.expose());
            }
        }
        let mut builder = self.client.request(request.method.clone(), url);
        for (placement, secret) in &request.secrets {
            if let SecretPlacement::Header(name) = placement {
                builder = builder.header(name, secret.expose());
            }
        }
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let body = if is_form(request) {
            form_body(request).into_bytes()
        } else {
            serde_json::to_vec(&request.body).map_err(|error| TransportError::Invalid {
                destination: destination.clone(),
                source: Box::new(error),
            })?
        };
        let response = builder.body(body).send().await.map_err(|error| {
            if error.is_timeout() {
                TransportError::Timeout {
                    destination: destination.clone(),
                }
            } else {
                TransportError::Connect {
                    destination: destination.clone(),
                    source: Box::new(error.without_url()),
                }
            }
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(retry_after::parse);
        let body = match response.text().await {
            Ok(body) => body,
            Err(error) if error.is_timeout() => {
                return Err(TransportError::Timeout { destination });
            }
            Err(_) => String::new(),
        };
        Ok(TransportResponse {
            status,
            retry_after,
            body,
        })
    }
}
