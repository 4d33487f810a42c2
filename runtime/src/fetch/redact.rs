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
    let rest = match cut_credentials(
        &rest[..authority_end],
        &rest[authority_end..],
        scheme == "s3",
    ) {
        Credentials::None => rest,
        Credentials::Cut => match rest.split_once('@') {
            Some((_, after)) => after,
            None => return format!("{scheme}://… (credentials hidden)"),
        },
        // A port, or a secret starting with digits: neither the host nor the path is told
        // apart from the secret, so nothing of it is shown.
        Credentials::Ambiguous => return format!("{scheme}://… (credentials hidden)"),
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

/// What the text before a URL's first `/`, `?` or `#` says of credentials cut short by one of
/// those (a secret holding them).
enum Credentials {
    /// A host (and port), or credentials ended by their `@` before it.
    None,
    /// `user:secret-part`: a `:` followed by what is no port (an S3 bucket holds no `:` at all).
    Cut,
    /// `x:1234` with an `@` somewhere after it: a port and an `@` in the path, or a secret that
    /// starts with digits — not told apart.
    Ambiguous,
}

fn cut_credentials(authority: &str, after: &str, s3: bool) -> Credentials {
    if authority.contains('@') {
        return Credentials::None;
    }
    // An IPv6 literal's `:`s are inside its brackets.
    let host_and_port = match authority.rsplit_once(']') {
        Some((_, after_bracket)) => after_bracket,
        None => authority,
    };
    match host_and_port.split_once(':') {
        None => Credentials::None,
        Some((_, port)) if s3 || port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) => {
            Credentials::Cut
        }
        Some(_) if after.contains('@') => Credentials::Ambiguous,
        Some(_) => Credentials::None,
    }
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
