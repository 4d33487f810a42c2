//! Model references fit for logs and errors: a URL without its credentials, query or fragment (a
//! presigned URL carries its secret in the query), an `s3://` URI without credentials written
//! before its bucket.

use crate::error::RuntimeError;

/// Whether `model` is downloaded (an http(s) URL or an `s3://` object).
pub fn is_remote(model: &str) -> bool {
    model.starts_with("http://") || model.starts_with("https://") || model.starts_with("s3://")
}

/// A URL fit for logs and errors: no credentials, query or fragment (a presigned URL carries its
/// secret in the query).
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    if scheme == "s3" {
        // A key may hold `?` and `#` (they are not a query here); only credentials some tools
        // put before the bucket are hidden.
        return match rest.split_once('/') {
            Some((authority, key)) if authority.contains('@') => {
                let bucket = authority.rsplit_once('@').map_or("", |(_, b)| b);
                format!("s3://{bucket}/{key} (credentials hidden)")
            }
            None if rest.contains('@') => "s3://… (credentials hidden)".to_string(),
            _ => url.to_string(),
        };
    }
    let (kept, query) = match rest.find(['?', '#']) {
        Some(i) => (&rest[..i], true),
        None => (rest, false),
    };
    let (authority, path) = kept.split_once('/').unwrap_or((kept, ""));
    let (host, credentials) = match authority.rsplit_once('@') {
        Some((_, host)) => (host, true),
        None => (authority, false),
    };
    let hidden = if query || credentials {
        " (query or credentials hidden)"
    } else {
        ""
    };
    format!("{scheme}://{host}/{path}{hidden}")
}

/// A `--model` argument fit for titles and logs: a URL redacted, anything else as is.
pub fn redacted_model(model: &str) -> String {
    if is_remote(model) {
        redacted(model)
    } else {
        model.to_string()
    }
}

/// `url` is redacted here: callers pass the reference as given.
pub fn fetch_error(url: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::ModelFetch {
        url: redacted(url),
        message: message.into(),
    }
}
