//! A transport that adds an OAuth 2.0 access token to each request, obtained with a refresh
//! token and kept until shortly before it expires (Google Ads).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::destinations::{OutboundRequest, Secret, SecretPlacement, TransportResponse};
use crate::ports::{Transport, TransportError};

/// A token is renewed this long before the expiry the token endpoint stated.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct CachedToken {
    bearer: Secret,
    renew_at: Instant,
}

/// Wraps a transport and authorises requests with `Authorization: Bearer <access token>`.
#[derive(Debug)]
pub struct TokenTransport {
    inner: Arc<dyn Transport>,
    token_request: OutboundRequest,
    cached: Mutex<Option<CachedToken>>,
}

impl TokenTransport {
    /// A transport that obtains tokens by sending `token_request` (a refresh-token grant).
    pub fn new(inner: Arc<dyn Transport>, token_request: OutboundRequest) -> Self {
        Self {
            inner,
            token_request,
            cached: Mutex::new(None),
        }
    }

    /// Returns the cached bearer value, or obtains a new one. A failed token request becomes
    /// the response the API gives without a valid token: 401 for a refused grant, the
    /// endpoint's own status for 429 and 5xx, so that delivery retries only what may pass.
    async fn bearer(&self) -> Result<Result<Secret, TransportResponse>, TransportError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.renew_at > Instant::now()) {
            return Ok(Ok(token.bearer.clone()));
        }
        let response = self.inner.send(&self.token_request).await?;
        let parsed: Value = serde_json::from_str(&response.body).unwrap_or_default();
        let token = parsed["access_token"].as_str().filter(|t| !t.is_empty());
        let (true, Some(token)) = ((200..300).contains(&response.status), token) else {
            let status = match response.status {
                429 | 500..=599 => response.status,
                _ => 401,
            };
            tracing::warn!(
                destination = self.token_request.destination,
                status = response.status,
                "OAuth token request failed"
            );
            return Ok(Err(TransportResponse {
                status,
                retry_after: response.retry_after,
                body: format!(
                    "OAuth token request failed with HTTP {}: {}",
                    response.status,
                    parsed["error"].as_str().unwrap_or("no error code")
                ),
            }));
        };
        let lifetime = Duration::from_secs(parsed["expires_in"].as_u64().unwrap_or(3600));
        let bearer = Secret::new(format!("Bearer {token}"));
        *cached = Some(CachedToken {
            bearer: bearer.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN),
        });
        Ok(Ok(bearer))
    }

    /// Sends with a token. The flag is `true` when the response came from the API and
    /// `false` when it replaces a failed token request.
    async fn send_with_token(
        &self,
        request: &OutboundRequest,
    ) -> Result<(TransportResponse, bool), TransportError> {
        let bearer = match self.bearer().await? {
            Ok(bearer) => bearer,
            Err(response) => return Ok((response, false)),
        };
        let mut authorised = request.clone();
        authorised
            .secrets
            .push((SecretPlacement::Header("authorization".into()), bearer));
        Ok((self.inner.send(&authorised).await?, true))
    }
}

#[async_trait]
impl Transport for TokenTransport {
    /// Sends with a token; a 401 drops the cached token and sends once more with a new one,
    /// since a token can be revoked before its stated expiry.
    async fn send(&self, request: &OutboundRequest) -> Result<TransportResponse, TransportError> {
        let (response, from_api) = self.send_with_token(request).await?;
        if response.status != 401 || !from_api {
            return Ok(response);
        }
        *self.cached.lock().await = None;
        Ok(self.send_with_token(request).await?.0)
    }
}
