//! Signs a service principal in to Microsoft Entra with the OAuth 2.0 client-credentials grant
//! (`POST {authority}/{tenant}/oauth2/v2.0/token`), so that the `azure` block's `client_secret`
//! can be used by the Azure adapter, which takes a bearer token. The secret is sent in the
//! form body only; neither it nor the token ever appears in an error.

use std::time::Duration;

/// Errors of the sign-in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The authority could not be reached.
    #[error("sign-in request to {url} failed")]
    Request {
        /// The token URL (no secret in it).
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The authority refused the credentials.
    #[error("sign-in at {url} refused with HTTP {status}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Refused {
        /// The token URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The OAuth `error` code, when the answer had one.
        code: Option<String>,
    },
    /// The answer had no `access_token`.
    #[error("sign-in answer from {url} has no access_token")]
    NoToken {
        /// The token URL.
        url: String,
    },
}

/// Form-encodes one value (RFC 3986 unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A bearer token for `resource` (its `/.default` scope) from a tenant's token endpoint.
///
/// # Errors
/// [`Error`] when the endpoint cannot be reached, refuses, or answers without a token.
pub async fn client_credentials_token(
    authority: &str,
    tenant: &str,
    client_id: &str,
    client_secret: &str,
    resource: &str,
) -> Result<String, Error> {
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        authority.trim_end_matches('/'),
        encode(tenant)
    );
    let scope = format!("{}/.default", resource.trim_end_matches('/'));
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
        encode(client_id),
        encode(client_secret),
        encode(&scope)
    );
    let answer = reqwest::Client::new()
        .post(&url)
        .timeout(Duration::from_secs(30))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|source| Error::Request {
            url: url.clone(),
            source: source.without_url(),
        })?;
    let status = answer.status();
    let json: serde_json::Value = answer.json().await.unwrap_or(serde_json::Value::Null);
    if !status.is_success() {
        return Err(Error::Refused {
            url,
            status: status.as_u16(),
            code: json
                .get("error")
                .and_then(|c| c.as_str())
                .map(str::to_string),
        });
    }
    json.get("access_token")
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .ok_or(Error::NoToken { url })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_should_be_percent_encoded() {
        assert_eq!(encode("a b/c+d=e&f~"), "a%20b%2Fc%2Bd%3De%26f~");
        assert_eq!(
            encode("https://management.azure.com/.default"),
            "https%3A%2F%2Fmanagement.azure.com%2F.default"
        );
    }
}
