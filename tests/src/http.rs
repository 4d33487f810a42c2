//! A minimal HTTP/1.1 GET for probing what tests start (health, metrics), without an HTTP client
//! crate in the harness.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `path` at `addr` (one connection, closed after the answer, 5 s to answer): the status code
/// and the body. Errors are strings, for test messages.
pub async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad response {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// [`get`] on 127.0.0.1.
pub async fn get_local(port: u16, path: &str) -> Result<(u16, String), String> {
    get(SocketAddr::from(([127, 0, 0, 1], port)), path).await
}
