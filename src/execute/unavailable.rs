//! Why no sandbox can run scripts here, told twice: in full to the operator's logs, and as a
//! category with a fixed sentence to clients. `/health` is unauthenticated, and the full story
//! names host paths and layout ("could not start /opt/nsjail/bin/nsjail: ..."), which is
//! reconnaissance for an attacker and of no use to a client, who cannot fix the host.

use serde_json::{Map, Value};
use thiserror::Error;

/// What kind of failure keeps scripts from running; the only part a client sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// The platform cannot give the sandbox or the isolation the configuration requires.
    Isolation,
    /// The sandbox could not be built or started (a missing or broken layer, a refused spawn).
    Setup,
    /// The sandbox started but failed its start-up self-test.
    SelfTest,
}

impl Category {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Isolation => "isolation",
            Self::Setup => "setup",
            Self::SelfTest => "self_test",
        }
    }

    /// A sentence for clients: says what kind of failure it is, and nothing about the host.
    pub const fn public_sentence(self) -> &'static str {
        match self {
            Self::Isolation => {
                "this platform cannot provide the isolation the service is configured to \
                 require, so scripts are refused; the service's logs have the details"
            }
            Self::Setup => {
                "the sandbox could not be set up on this host, so scripts are refused; \
                 the service's logs have the details"
            }
            Self::SelfTest => {
                "the sandbox failed its start-up self-test, so scripts are refused; \
                 the service's logs have the details"
            }
        }
    }
}

/// No sandbox can run scripts: the category, and the full reason for the logs only.
#[derive(Clone, Debug, Error)]
#[error("{detail}")]
pub struct Unavailable {
    pub category: Category,
    /// The whole story, which may name host paths: logged, never sent to a client.
    pub detail: String,
}

/// The platform refused: an isolation failure.
impl From<crate::startup::platform::Refusal> for Unavailable {
    fn from(refusal: crate::startup::platform::Refusal) -> Self {
        Self::new(Category::Isolation, refusal.to_string())
    }
}

impl Unavailable {
    pub fn new(category: Category, detail: impl Into<String>) -> Self {
        Self {
            category,
            detail: detail.into(),
        }
    }

    /// What a client may see, as fields of `/health` and of the `SANDBOX_ERROR` envelope:
    /// `reason` (the fixed sentence) and `reason_category`.
    pub fn public_fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("reason".into(), self.category.public_sentence().into());
        fields.insert("reason_category".into(), self.category.as_str().into());
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_reason_never_carries_the_detail() {
        let detail = "could not start /opt/layer/nsjail/bin/nsjail: No such file or directory";
        for category in [Category::Isolation, Category::Setup, Category::SelfTest] {
            let fields = Unavailable::new(category, detail).public_fields();
            let public = Value::Object(fields).to_string();
            assert!(!public.contains("/opt"), "{public}");
            assert!(!public.contains("nsjail/bin"), "{public}");
            assert!(public.contains(category.as_str()), "{public}");
        }
    }
}
