//! The first use after start of each package the data template preloads on demand
//! (`PRELOAD_ON_DEMAND`), beside its use once the template has grown by it, and the idle memory
//! after every growth: what a script pays for a heavy import the service had not yet seen, and
//! what the service pays in memory once scripts have asked for them all. In this order, so each
//! first use forks from a template that already grew by the packages before it (scikit-learn
//! after scipy), as on a service whose scripts come to use them one after another.

use std::time::{Duration, Instant};

use crate::common::wait;
use crate::http::Service;
use crate::memory;
use crate::report::{Figures, Kind};

/// Each heavy module with the smallest script that uses it.
const HEAVY: [(&str, &str); 4] = [
    (
        "matplotlib.pyplot",
        "import matplotlib.pyplot as plt\ndef main():\n    plt.plot([1, 2])\n    return 1\n",
    ),
    (
        "scipy.stats",
        "from scipy import stats\ndef main():\n    return float(stats.norm.cdf(0))\n",
    ),
    (
        "sklearn.linear_model",
        "from sklearn.linear_model import LinearRegression\ndef main():\n    \
         return LinearRegression().fit([[0], [1]], [0, 1]).coef_.tolist()\n",
    ),
    (
        "pyarrow.parquet",
        "import pyarrow.parquet as pq\ndef main():\n    return pq.__name__\n",
    ),
];

/// How long a grown template may take to take over.
const GROWN_WITHIN: Duration = Duration::from_secs(60);

pub async fn measure(service: &Service, templates: bool, figures: &mut Figures) {
    for (module, script) in HEAVY {
        eprintln!("   first use: {module}");
        let first = timed(service, script).await;
        if templates {
            let grown = wait::until_async(GROWN_WITHIN, || async {
                let health = service.health().await?;
                let data = &health["templates"]["data"];
                let preload = data["preload"].as_array()?;
                (data["ready"] == true && preload.iter().any(|m| m == module)).then_some(())
            })
            .await;
            if grown.is_none() {
                figures
                    .notes
                    .push(format!("the data template never grew by {module}"));
            }
        }
        service.wait_until_idle().await;
        let again = timed(service, script).await;
        figures.push(format!("first use of {module} (ms)"), Kind::Lower, first);
        figures.push(format!("{module}, used again (ms)"), Kind::Lower, again);
    }
    service.wait_until_idle().await;
    let grown = memory::tree(service.pid());
    figures.push(
        "idle PSS sum, all four used (MiB)",
        Kind::Lower,
        Some(grown.pss_mib),
    );
}

/// One request's latency in ms; `None` (a dash) when it failed.
async fn timed(service: &Service, script: &str) -> Option<f64> {
    let began = Instant::now();
    let (status, body) = service.execute(script).await;
    let ms = began.elapsed().as_secs_f64() * 1000.0;
    (status == 200).then_some(ms).or_else(|| {
        eprintln!("   failed ({status}): {body}");
        None
    })
}
