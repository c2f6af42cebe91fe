//! Connecting: session settings pinned, and failures sorted into what helps.
#![allow(clippy::unwrap_used)]

mod sink_support;

use sink_support::endpoint;
use tandem_core::config::TlsMode;
use tandem_core::error::{ErrorClass, StageError};
use tandem_postgres::connect::connect;
use tandem_testkit::shared_pg;

#[tokio::test]
async fn sessions_are_pinned_to_utc_and_iso_dates() {
    let pg = shared_pg().await;
    let mut ep = endpoint(&pg.url("postgres"));
    // The kit's server has no certificate: `prefer` falls back to plain text as libpq does.
    ep.tls.mode = TlsMode::Prefer;
    let (client, _task) = connect(&ep, None, "tandem-test").await.unwrap();
    let row = client
        .query_one(
            "SELECT current_setting('TimeZone'), current_setting('DateStyle'),
                    current_setting('extra_float_digits'), current_setting('application_name'),
                    '2024-01-02 03:04:05+02'::timestamptz::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "UTC");
    assert!(row.get::<_, String>(1).starts_with("ISO"));
    assert_eq!(row.get::<_, String>(2), "3");
    assert_eq!(row.get::<_, String>(3), "tandem-test");
    assert_eq!(row.get::<_, String>(4), "2024-01-02 01:04:05+00");
}

#[tokio::test]
async fn an_unknown_database_is_definite_and_a_closed_port_transient() {
    let pg = shared_pg().await;
    let err = connect(&endpoint(&pg.url("no_such_db")), None, "t")
        .await
        .err()
        .unwrap();
    let StageError::Definite { what, advice, .. } = &err else {
        panic!("{}", err.report())
    };
    assert!(
        what.contains("no_such_db") && advice.contains("create it"),
        "{what} / {advice}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = connect(
        &endpoint(&format!("postgres://postgres@127.0.0.1:{port}/x")),
        None,
        "t",
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.class(), ErrorClass::Transient, "{}", err.report());
}

#[tokio::test]
async fn tls_required_of_a_server_without_tls_is_definite() {
    let pg = shared_pg().await;
    let mut ep = endpoint(&pg.url("postgres"));
    ep.tls.mode = TlsMode::Require;
    let err = connect(&ep, None, "t").await.err().unwrap();
    assert_eq!(err.class(), ErrorClass::Definite, "{}", err.report());
    assert!(err.to_string().contains("tls.mode"), "{err}");
}
