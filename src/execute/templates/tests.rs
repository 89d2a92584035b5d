//! The templates' lifecycle against a sandbox that fails when told to (`sandbox::Faults`,
//! compat with no_new_privs only, so no root is needed): failed starts retried until one
//! serves, a growth that never starts given up and not asked for again, a template past half
//! its forks replaced. The layer must be built (`make layer`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::*;
use crate::sandbox::{Faults, Layer};

/// Long enough for a template to import its preload on a busy machine, several times over.
const WITHIN: Duration = Duration::from_secs(60);
const ON_DEMAND: &str = "openpyxl";

fn config(max_forks: u32) -> TemplateConfig {
    TemplateConfig {
        enabled: true,
        preload: vec!["tabulate".into()],
        preload_on_demand: vec![ON_DEMAND.into()],
        spare_forks: 0,
        max_forks,
        max_age: Duration::from_secs(3600),
    }
}

fn start(faults: &Arc<Faults>, max_forks: u32) -> Templates {
    let layer = Layer::locate(None).expect("a built layer (make layer)");
    let packages = Packages::read(&layer.python_dir()).expect("the layer's packages");
    let runner = Runner::with_faults(&layer, Arc::clone(faults)).expect("the sandbox");
    Templates::start(runner, &Limits::default(), &config(max_forks), &packages)
}

async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn serving(templates: &Templates) -> bool {
    let status = templates.status();
    status.plain.ready && status.data.ready
}

/// The preload of every template asked for so far.
fn asked(faults: &Faults) -> Vec<Vec<String>> {
    let asked = faults.templates_asked.lock();
    asked.unwrap_or_else(PoisonError::into_inner).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_starts_are_retried_until_a_template_serves() {
    let faults = Arc::new(Faults::default());
    faults.failing_starts.store(3, Ordering::SeqCst);
    let templates = start(&faults, 1000);
    let meanwhile = templates.fork("x = 1").await.err();
    assert_eq!(
        meanwhile,
        Some(ColdReason::TemplateDown),
        "cold until one serves"
    );
    until("both templates serve", || serving(&templates)).await;
    let status = templates.status();
    assert_eq!(
        status.plain.restarts + status.data.restarts,
        3,
        "{status:?}"
    );
    assert!(
        templates.fork("x = 1").await.is_ok(),
        "a serving template forks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_growth_that_never_starts_is_given_up_and_not_asked_for_again() {
    let faults = Arc::new(Faults::default());
    faults
        .failing_modules
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(ON_DEMAND.into());
    let templates = start(&faults, 1000);
    until("both templates serve", || serving(&templates)).await;
    let script = format!("import {ON_DEMAND}\n");
    // The template serving now forks it meanwhile: the script imports the module itself.
    assert!(templates.fork(&script).await.is_ok());
    let grown = |faults: &Faults| {
        let asked = asked(faults);
        asked
            .iter()
            .filter(|p| p.contains(&ON_DEMAND.into()))
            .count()
    };
    until("the growth was tried three times", || grown(&faults) == 3).await;
    let given_up = || asked(&faults).last() == Some(&vec!["tabulate".to_owned()]);
    until("a template of the first preload started again", given_up).await;
    until("it serves", || serving(&templates)).await;
    assert_eq!(templates.status().data.preload, ["tabulate"]);
    assert!(templates.fork(&script).await.is_ok());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        grown(&faults),
        3,
        "a module given up is not asked for again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_past_half_its_forks_is_replaced() {
    let faults = Arc::new(Faults::default());
    let templates = start(&faults, 2);
    until("both templates serve", || serving(&templates)).await;
    let plain_asked = || asked(&faults).iter().filter(|p| p.is_empty()).count();
    assert_eq!(plain_asked(), 1);
    for _ in 0..2 {
        let forked = templates.fork("x = 1").await;
        assert!(forked.is_ok(), "a template within its span forks");
    }
    until("the plain template was replaced", || {
        let status = templates.status().plain;
        status.recycles == 1 && status.ready
    })
    .await;
    assert_eq!(plain_asked(), 2, "one replacement, started once");
}
