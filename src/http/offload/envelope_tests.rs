//! Output files in the envelope: planned for offload like the other fields, and replaced by a
//! URL without touching anything else.

use super::*;

#[test]
fn a_large_output_file_is_planned_and_replaced_alone() {
    let big = "A".repeat(9_000);
    let body = serde_json::json!({
        "result": 1,
        "stdout": "",
        "files": [
            {"path": "outputs/small.txt", "bytes": 3, "content_type": "text/plain", "content_base64": "YWJj"},
            {"path": "outputs/plot.png", "bytes": 6750, "content_type": "image/png", "content_base64": big},
        ],
    })
    .to_string();
    let budget = Budget {
        limit: 5_000,
        escaped: false,
    };
    let mut envelope = Envelope::parse(&body).expect("json");
    let plan = envelope.plan(budget, budget.cost(&body));
    assert_eq!(plan, vec![Piece::File(1)]);
    envelope
        .replace_file(1, "https://x/plot")
        .expect("replaced");
    let files: serde_json::Value =
        serde_json::from_str(envelope.raw("files").expect("files")).expect("json");
    assert_eq!(
        files[1],
        serde_json::json!({"path": "outputs/plot.png", "bytes": 6750, "content_type": "image/png",
                           "content_base64": null, "content_url": "https://x/plot"})
    );
    assert_eq!(files[0]["content_base64"], "YWJj");
    assert!(budget.fits(&envelope.to_json().expect("json")));
}
