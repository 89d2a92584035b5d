//! The families as Prometheus text, and the same figures as EMF lines.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::emf::{render, Emf, Head, Service};
use super::*;

fn request(route: &str, code: &'static str) -> RequestFigures {
    RequestFigures {
        route: route.into(),
        code,
        key: "alice".into(),
        duration: Duration::from_millis(40),
        request_id: "r-1".into(),
    }
}

fn execution(code: &'static str, start: Option<Start>) -> ExecutionFigures {
    ExecutionFigures {
        code,
        sandbox: "nsjail",
        queue_wait: Duration::from_millis(2),
        run: Duration::from_millis(30),
        cpu: Some(Duration::from_millis(12)),
        peak_memory_bytes: Some(9 * 1024 * 1024),
        start,
    }
}

fn state() -> State {
    State {
        in_flight: 1,
        capacity: 4,
        templates: vec![TemplateState {
            name: "data",
            restarts: 2,
            recycles: 1,
            grown: true,
        }],
    }
}

#[test]
fn every_family_renders_in_the_text_format() {
    let metrics = Metrics::new(false);
    metrics.observe_state(state);
    metrics.request(request("/execute", "OK"));
    let spare = Start::Template {
        name: "data",
        spare: true,
    };
    metrics.execution(execution("OK", Some(spare)));
    metrics.execution(execution(
        "TIMEOUT",
        Some(Start::Cold(ColdReason::Disabled)),
    ));
    metrics.overloaded();
    metrics.quota_refused("alice", "rate");
    metrics.offload(true);
    let text = metrics.render();
    for line in [
        "python_executor_requests_total{code=\"OK\",key=\"alice\",route=\"/execute\"} 1",
        "python_executor_executions_total{code=\"TIMEOUT\",sandbox=\"nsjail\"} 1",
        "python_executor_queue_wait_seconds_count 2",
        "python_executor_template_serves_total{spare=\"true\",template=\"data\"} 1",
        "python_executor_cold_starts_total{reason=\"templates_off\"} 1",
        "python_executor_template_restarts_total{template=\"data\"} 2",
        "python_executor_template_growths_total{template=\"data\"} 1",
        "python_executor_executions_in_flight 1",
        "python_executor_execution_capacity 4",
        "python_executor_overloaded_total 1",
        "python_executor_quota_refusals_total{key=\"alice\",quota=\"rate\"} 1",
        "python_executor_offloads_total{outcome=\"stored\"} 1",
        "# TYPE python_executor_script_peak_memory_bytes histogram",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }
    // Read twice, the state's counts are not added twice.
    assert!(metrics
        .render()
        .contains("python_executor_template_restarts_total{template=\"data\"} 2\n"));
}

#[test]
fn the_window_is_kept_only_where_it_is_drained() {
    let without = Metrics::new(false);
    without.request(request("/health", "OK"));
    assert_eq!(without.take_window(), Window::default());
    let with = Metrics::new(true);
    with.request(request("/health", "OK"));
    assert_eq!(with.take_window().requests.len(), 1);
    assert_eq!(with.take_window(), Window::default(), "drained");
}

/// The members a directive names must be on the root, dimensions as strings, metrics as
/// numbers or arrays of numbers (the EMF specification's rules).
fn assert_valid_emf(line: &Value) {
    let meta = &line["_aws"];
    assert!(meta["Timestamp"].is_u64(), "{line}");
    let directives = meta["CloudWatchMetrics"].as_array().expect("directives");
    assert!(!directives.is_empty());
    for directive in directives {
        assert!(directive["Namespace"]
            .as_str()
            .is_some_and(|n| !n.is_empty()));
        for set in directive["Dimensions"].as_array().expect("dimension sets") {
            for name in set.as_array().expect("a dimension set") {
                let name = name.as_str().expect("a dimension name");
                assert!(line[name].is_string(), "dimension {name}: {line}");
            }
        }
        for metric in directive["Metrics"].as_array().expect("metrics") {
            let name = metric["Name"].as_str().expect("a name");
            let value = &line[name];
            let numbers = value.is_number()
                || value
                    .as_array()
                    .is_some_and(|v| v.iter().all(Value::is_number));
            assert!(numbers, "metric {name}: {line}");
        }
    }
}

#[test]
fn one_invocation_is_one_valid_emf_line() {
    let metrics = Arc::new(Metrics::new(true));
    metrics.observe_state(state);
    let emf = Emf::new(Arc::clone(&metrics), "python-executor", "fn");
    metrics.request(request("/execute", "EXCEPTION"));
    let forked = Start::Template {
        name: "plain",
        spare: false,
    };
    metrics.execution(execution("EXCEPTION", Some(forked)));
    let lines = emf.lines();
    assert_eq!(lines.len(), 1);
    let line: Value = serde_json::from_str(&lines[0]).expect("JSON");
    assert_valid_emf(&line);
    assert_eq!(line["Route"], "/execute");
    assert_eq!(line["Code"], "EXCEPTION");
    assert_eq!(line["ExecutionCode"], "EXCEPTION");
    assert_eq!(line["Sandbox"], "nsjail");
    assert_eq!(line["Requests"], 1.0);
    assert_eq!(line["Executions"], 1.0);
    assert_eq!(line["ScriptCpu"], 12.0);
    assert_eq!(line["TemplateServes"], 1.0);
    assert_eq!(line["FirstInvocation"], 1.0);
    assert_eq!(line["TemplateRestarts"], 2.0);
    assert_eq!(line["Key"], "alice");
    // The next invocation is not the first, and restarts already told are not told again.
    metrics.request(request("/health", "OK"));
    let line: Value = serde_json::from_str(&emf.lines()[0]).expect("JSON");
    assert_valid_emf(&line);
    assert_eq!(line["FirstInvocation"], 0.0);
    assert_eq!(line["TemplateRestarts"], 0.0);
    assert!(line.get("Executions").is_none(), "{line}");
}

#[test]
fn overlapping_requests_of_different_outcomes_get_a_line_each() {
    let window = Window {
        requests: vec![
            request("/execute", "OK"),
            request("/execute", "OK"),
            request("/execute", "SYNTAX_ERROR"),
        ],
        ..Window::default()
    };
    let head = Head {
        namespace: "ns",
        function: "fn",
        timestamp_ms: 1,
    };
    let lines = render(&head, &window, &Service::default());
    assert_eq!(lines.len(), 2);
    lines.iter().for_each(assert_valid_emf);
    assert_eq!(lines[0]["Requests"], 2.0);
    assert_eq!(lines[0]["RequestTime"], serde_json::json!([40.0, 40.0]));
    assert_eq!(lines[1]["Code"], "SYNTAX_ERROR");
    assert!(lines[1].get("Capacity").is_none(), "service figures once");
}
