//! The data template grows on demand: the first script that imports a package of
//! `PRELOAD_ON_DEMAND` (matplotlib) is answered by the current template, which it imports the
//! module in, while a template that preloads the module too starts. That one takes over, and
//! the old one retires only once the executions forked from it are over: one in flight across
//! the takeover still gets its answer. Growths accumulate: a script importing `scipy.stats`
//! then grows the template by that module too, keeping matplotlib.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::common::wait;
use crate::support::{Kind, Service};
use crate::templates::data_template_processes;

/// Says whether matplotlib was already imported when the script's module code began.
const PLOTS: &str = r#"
import sys
PRELOADED = "matplotlib.pyplot" in sys.modules
import matplotlib.pyplot as plt
def main():
    plt.plot([1, 2, 3], [3, 1, 2])
    plt.savefig("outputs/plot.png")
    return PRELOADED
"#;

/// Long enough to be in flight when the grown template takes over.
const IN_FLIGHT: &str = "import time, numpy\ndef main():\n    time.sleep(10)\n    return 'done'\n";

const QUICK: &str = "import numpy\ndef main():\n    return 'done'\n";

/// Says whether scipy.stats was already imported when the script's module code began.
const STATS: &str = r#"
import sys
PRELOADED = "scipy.stats" in sys.modules
from scipy import stats
def main():
    return [PRELOADED, round(float(stats.norm.cdf(0)), 3)]
"#;

const BASE: [&str; 3] = ["numpy", "pandas", "fractions"];
const GROWN: [&str; 4] = ["numpy", "pandas", "fractions", "matplotlib.pyplot"];
const GROWN_AGAIN: [&str; 5] = [
    "numpy",
    "pandas",
    "fractions",
    "matplotlib.pyplot",
    "scipy.stats",
];

async fn the_data_template_grows_on_demand(kind: Kind) {
    // Two at once, so that one is in flight across the takeover. Under Lambda's conditions
    // executions take turns whatever the concurrency (they share the uid and /tmp), so there
    // none is in flight, and the old template retires at once.
    let settings = [
        ("MAX_CONCURRENCY", "2"),
        ("PRELOAD", "numpy,pandas,fractions"),
    ];
    let service = Service::start_with(kind, &settings).await;
    let overlapping = kind != Kind::Lambda;
    service.wait_for_templates().await;
    let health = service.get("/health").await.body;
    assert_eq!(
        health["templates"]["data"]["preload"],
        json!(BASE),
        "{health}"
    );
    let old_template = data_template_processes("numpy,pandas,fractions");
    assert!(!old_template.is_empty(), "no data template found");
    let in_flight = service.run(if overlapping { IN_FLIGHT } else { QUICK });
    let growth = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let first = service.run(PLOTS).await;
        assert_eq!(first.expect_result(), &json!(false), "{}", first.body);
        assert_eq!(first.body["usage"]["warm_start"], true, "{}", first.body);
        let grown = wait::until_async(Duration::from_secs(30), || async {
            let health = service.get("/health").await.body;
            let data = &health["templates"]["data"];
            (data["preload"] == json!(GROWN) && data["ready"] == true).then_some(())
        })
        .await;
        assert!(grown.is_some(), "the data template did not grow");
        let second = service.run(PLOTS).await;
        assert_eq!(second.expect_result(), &json!(true), "{}", second.body);
        assert_eq!(second.body["files"][0]["path"], "outputs/plot.png");
        if overlapping {
            // The old template waits for the execution it still has in flight.
            let alive: Vec<i32> = old_template
                .iter()
                .copied()
                .filter(|pid| exists(*pid))
                .collect();
            assert_eq!(
                alive, old_template,
                "the old template ended under its execution"
            );
        }
    };
    let (reply, ()) = tokio::join!(in_flight, growth);
    assert_eq!(reply.expect_result(), &json!("done"), "{}", reply.body);
    let retired = wait::until_async(Duration::from_secs(30), || async {
        old_template.iter().all(|pid| !exists(*pid)).then_some(())
    })
    .await;
    assert!(retired.is_some(), "the old template never retired");
    grows_again(&service).await;
    let health = service.get("/health").await.body;
    assert_eq!(health["templates"]["data"]["restarts"], 0, "{health}");
    service.assert_still_healthy().await;
}

/// A second growth adds to the first: `from scipy import stats` grows the template by
/// `scipy.stats`, and matplotlib stays.
async fn grows_again(service: &Service) {
    let first = service.run(STATS).await;
    assert_eq!(
        first.expect_result(),
        &json!([false, 0.5]),
        "{}",
        first.body
    );
    let grown = wait::until_async(Duration::from_secs(60), || async {
        let health = service.get("/health").await.body;
        let data = &health["templates"]["data"];
        (data["preload"] == json!(GROWN_AGAIN) && data["ready"] == true).then_some(())
    })
    .await;
    assert!(grown.is_some(), "the data template did not grow again");
    let second = service.run(STATS).await;
    assert_eq!(
        second.expect_result(),
        &json!([true, 0.5]),
        "{}",
        second.body
    );
    let plots = service.run(PLOTS).await;
    assert_eq!(plots.expect_result(), &json!(true), "{}", plots.body);
}

/// A module of `PRELOAD_ON_DEMAND` that cannot be imported: the script asking for it gets its
/// own ModuleNotFoundError, the grown template fails to start a few times, and the set gives
/// the growth up and goes on with `PRELOAD`, warm, without retrying for ever.
async fn a_growth_that_cannot_start_is_given_up(kind: Kind) {
    let settings = [("PRELOAD_ON_DEMAND", "pyexec_no_such_module")];
    let service = Service::start_with(kind, &settings).await;
    service.wait_for_templates().await;
    let reply = service
        .run("import pyexec_no_such_module\ndef main():\n    return 1\n")
        .await;
    reply.expect_error(422, "EXCEPTION");
    assert_eq!(reply.body["exception_type"], "ModuleNotFoundError");
    let restarts = || async {
        let health = service.get("/health").await.body;
        health["templates"]["data"]["restarts"].as_u64()
    };
    // Each failed start but the last is counted; then the attempts stop.
    let tried = wait::until_async(Duration::from_secs(60), || async {
        (restarts().await >= Some(2)).then_some(())
    })
    .await;
    assert!(tried.is_some(), "the grown template was never tried");
    // Long enough for another attempt, had the growth not been given up.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        restarts().await,
        Some(2),
        "the growth was retried after it was given up"
    );
    service.wait_for_templates().await;
    let health = service.get("/health").await.body;
    assert_eq!(
        health["templates"]["data"]["preload"],
        json!(["numpy", "pandas"])
    );
    let numpy = service
        .run("import numpy\ndef main():\n    return int(numpy.arange(4).sum())\n")
        .await;
    assert_eq!(numpy.expect_result(), &json!(6));
    assert_eq!(numpy.body["usage"]["warm_start"], true, "{}", numpy.body);
}

fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

for_each_sandbox!(
    the_data_template_grows_on_demand,
    a_growth_that_cannot_start_is_given_up,
);
