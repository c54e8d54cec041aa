//! Serving connections (HTTP/1.1, plain or TLS): each in its own task, with a header read timeout so
//! a client that opens connections and never finishes its request headers holds nothing for long
//! (thousands of such connections once stayed open indefinitely), and a graceful end: on shutdown
//! no new connection is taken, requests in flight finish, and what is still open after
//! [`DRAIN`] is dropped (live-event streams never end on their own).

use crate::ClientAddr;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper_util::rt::{TokioIo, TokioTimer};
use labloop_core::limits::HEADER_READ_TIMEOUT_S;
use std::net::SocketAddr;
use std::time::Duration;
use tower_service::Service;

/// How long open connections get to finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown` resolves.
pub(crate) async fn serve<L>(
    mut listener: L,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // Finished connections' tasks are reaped as new ones come.
        while connections.try_join_next().is_some() {}
        let app = app.clone();
        let mut closing = closing.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo(ClientAddr(addr)));
                let mut app = app.clone();
                async move { app.call(request.map(axum::body::Body::new)).await }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(HEADER_READ_TIMEOUT_S))
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(connection);
            let closed = async move {
                let _ = closing.wait_for(|c| *c).await;
            };
            tokio::select! {
                _ = connection.as_mut() => {}
                () = closed => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(DRAIN, connection).await;
                }
            }
        });
    }
    let _ = closing_tx.send(true);
    let _ = tokio::time::timeout(DRAIN + Duration::from_secs(1), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}
