//! The seed document's HackerNews example, unmodified, against a local
//! server that answers like the HackerNews API.

use axum::extract::Path;
use axum::routing::get;
use axum::Router;

use sandstack::store::Store;

use crate::support::{repo, run_ingest, TestServer};

#[test]
fn the_seed_example_stores_its_four_metrics() {
    let server = TestServer::start(
        Router::new()
            .route(
                "/v0/topstories.json",
                get(|| async { axum::Json((1..=30).collect::<Vec<u32>>()) }),
            )
            .route(
                "/v0/item/{file}",
                get(|Path(file): Path<String>| async move {
                    let id: u32 = file.trim_end_matches(".json").parse().unwrap_or(0);
                    axum::Json(serde_json::json!({"id": id, "score": id * 10, "type": "story"}))
                }),
            ),
    );
    // The shipped batch, with its API routed to the local server: the test
    // allows loopback for that server explicitly.
    let rewrite = format!(
        "{{\"https://hacker-news.firebaseio.com\": \"http://{}\"}}",
        server.addr
    );
    let env = [(
        "SANDSTACK__HN_TOP_STORIES_SCORES__HTTP_REWRITE",
        rewrite.as_str(),
    )];
    let env_map = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let folder = sandstack::config::load(&repo().join("metrics"), &env_map);
    let spec = folder.batch("hn_top_stories_scores").expect("hn batch");
    let mut store = Store::in_memory().expect("store");
    let report = run_ingest(spec, &mut store, &[])
        .unwrap_or_else(|e| panic!("{}\n{:?}", e.error, e.sandbox));
    assert_eq!(report.stored, 4);
    assert_eq!(report.sandbox.expect("details").stats.http_requests, 11);
    let mut stmt = crate::support::duck(&store)
        .prepare("select metric_name, metric_value from metrics_hackernews order by metric_name")
        .expect("prepare");
    let rows: Vec<(String, f64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        rows,
        vec![
            ("hn_top_10_avg_score".to_string(), 55.0),
            ("hn_top_10_max_score".to_string(), 100.0),
            ("hn_top_10_min_score".to_string(), 10.0),
            ("hn_top_10_total_score".to_string(), 550.0),
        ]
    );
}
