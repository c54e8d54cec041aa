//! What the server's tests share: one raw HTTP/1.1 request over a real socket.
#![allow(dead_code)]

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request (a JSON body unless `headers` name a content type); returns the status,
/// the raw head and the body.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // `Host: localhost`: the dashboard's own origin is http://localhost.
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    stream
        .write_all(format!("{head}\r\n{body}").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_owned(), body.to_owned())
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A store in the temporary folder named after `name`, served on loopback by the real connection
/// loop (`labloop_server::serve`: header timeout, client addresses), plain HTTP.
pub async fn served(name: &str) -> (labloop_store::Store, SocketAddr) {
    let path =
        std::env::temp_dir().join(format!("labloop-srv-{name}-{}.sqlite", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let store = labloop_store::Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(labloop_server::serve(
        listener,
        store.clone(),
        None,
        std::future::pending(),
    ));
    (store, addr)
}
