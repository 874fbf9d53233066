//! The access log: one `lb::access` tracing event per request with the documented fields.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime: every task runs on this thread, under the scoped subscriber.
#[tokio::test]
async fn one_access_event_per_request() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("lb::access=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let a = Backend::start("a").await;
    let lb = healthy_lb(&[&a]).await;
    assert_eq!(
        get(&client(), &format!("{}/hello", url(&lb)), &[])
            .await
            .status,
        200
    );

    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("path=/hello"))
        .unwrap_or_else(|| panic!("no access event in {log:?}"));
    assert!(line.contains("lb::access"), "{line}");
    for field in [
        "client=127.0.0.1:",
        "method=GET",
        "status=200",
        &format!("target={}", a.addr),
        "duration_ms=",
    ] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
}
