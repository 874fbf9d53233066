//! TCP listeners (a network load balancer's `TCP` listener): each accepted connection goes
//! to one routable target of the default action's group (chosen by weight, then by the
//! group's algorithm, [`crate::select::Choice`]) and the bytes are spliced both ways until
//! either side closes. A target that refuses the connection (or does not answer within
//! [`CONNECT_TIMEOUT`]) is counted as failed — health and outlier detection as for HTTP —
//! and the connection goes to another target, once. No rules, no access log line per
//! request (one per connection at `debug`).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::Action;
use crate::outlier::Observation;
use crate::proxy::{InFlight, Shared, TargetRt, accept_client, connect_failed, observe_outlier};
use crate::rules;
use crate::select::Choice;
use crate::upstream::CONNECT_TIMEOUT;

/// Accepts connections on a TCP listener until `shutdown` (or the task is aborted).
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    bind: SocketAddr,
    shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, client) = accept_client(&listener, bind).await;
        let mut shutdown = shutdown.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = splice(&shared, stream, bind, client) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        });
    }
}

/// One client connection: connect to a target (another one once if that fails), then copy
/// both ways.
async fn splice(shared: &Shared, mut client: TcpStream, bind: SocketAddr, from: SocketAddr) {
    let snap = shared.state.load();
    let Some(router) = snap.routers.get(&bind) else {
        return;
    };
    let Action::Forward { target_groups } = router.default_action() else {
        return;
    };
    let name = match target_groups.as_slice() {
        [only] if only.weight > 0 => only.name.as_str(),
        _ => match rules::choose_weighted(target_groups, rand::random()) {
            Some(n) => n,
            None => return,
        },
    };
    let Some(group) = snap.groups.get(name) else {
        return;
    };
    let choice = Choice::new(group);
    let mut target = match choice.pick(None) {
        Some(t) => t,
        None => {
            tracing::debug!(%bind, %from, group = %group.name, "no routable target: connection closed");
            return;
        }
    };
    let mut attempt = 0;
    let upstream = loop {
        attempt += 1;
        match connect(target).await {
            Ok(s) => break s,
            Err(e) => {
                connect_failed(group, target);
                tracing::debug!(target = %target.addr, group = %group.name, error = %e, attempt, "upstream connect failed");
                match choice.pick(Some(target.addr)) {
                    Some(next) if attempt == 1 => target = next,
                    _ => return,
                }
            }
        }
    };
    let _in_flight = InFlight::new(&target.shared);
    target.shared.requests.inc();
    observe_outlier(group, target, Observation::Success);
    let mut upstream = upstream;
    let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    tracing::debug!(%from, target = %target.addr, ?copied, "TCP connection closed");
}

async fn connect(target: &TargetRt) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
