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
    // Credentials whose secret holds `/`, `?` or `#` (half of AWS secret keys hold a `/`) end
    // the authority early: what is left of it then reads `user:secret-part`, no host or port.
    // Everything up to the first `@` is theirs (a secret never holds one unencoded).
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let before_query = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let rest = if cut_credentials(&rest[..authority_end], before_query, scheme == "s3") {
        match rest.split_once('@') {
            Some((_, after)) => after,
            None => return format!("{scheme}://… (credentials hidden)"),
        }
    } else {
        rest
    };
    let cut = rest.len() != url.len() - scheme.len() - 3;
    if scheme == "s3" {
        // A key may hold `?`, `#` and `@` (they are not a query here); only credentials some
        // tools put before the bucket are hidden.
        return match rest.split_once('/') {
            Some((authority, key)) if authority.contains('@') => {
                let bucket = authority.rsplit_once('@').map_or("", |(_, b)| b);
                format!("s3://{bucket}/{key} (credentials hidden)")
            }
            None if rest.contains('@') => "s3://… (credentials hidden)".to_string(),
            _ if cut => format!("s3://{rest} (credentials hidden)"),
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
        None => (authority, cut),
    };
    let hidden = if query || credentials {
        " (query or credentials hidden)"
    } else {
        ""
    };
    format!("{scheme}://{host}/{path}{hidden}")
}

/// Whether `authority` (a URL's text before its first `/`, `?` or `#`) is the start of
/// credentials cut short by one of those: a `:` followed by what is no port, or by digits with an
/// `@` further on before any query (`user:1234/5@host`: a secret that starts with digits; a
/// port with an `@` in the path is hidden too, rather than risk it). An S3 bucket holds no `:`
/// at all; an IPv6 literal's are inside its brackets.
fn cut_credentials(authority: &str, before_query: &str, s3: bool) -> bool {
    if authority.contains('@') {
        return false;
    }
    let host_and_port = match authority.rsplit_once(']') {
        Some((_, after)) => after,
        None => authority,
    };
    host_and_port.split_once(':').is_some_and(|(_, port)| {
        s3 || port.is_empty()
            || !port.bytes().all(|b| b.is_ascii_digit())
            || before_query.contains('@')
    })
}

/// A `--model` argument fit for titles and logs: a URL redacted, anything else as is.
pub fn redacted_model(model: &str) -> String {
    if is_remote(model) {
        redacted(model)
    } else {
        model.to_string()
    }
}

/// The store (or the keys' endpoint) could not be reached, or kept answering 429/5xx, through
/// every try: trouble that may pass, unlike [`fetch_error`]'s. `url` is redacted here.
pub fn unreachable_error(url: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::ModelUnreachable {
        url: redacted(url),
        message: message.into(),
    }
}

/// `url` is redacted here: callers pass the reference as given.
pub fn fetch_error(url: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::ModelFetch {
        url: redacted(url),
        message: message.into(),
    }
}
