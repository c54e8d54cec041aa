//! Which discharge capacities a model's capacity features were computed from, as a typed field
//! of its model file. The two kinds differ by a bias (~14 mAh on the Severson cells): the
//! cycler's own per-cycle counter (what a campaign's cyclers record and vendor files hold), and the
//! capacity read off each cycle's discharge curve at 2.0 V (the Severson arrays' `Qdlin`). A model
//! trained on one kind and fed the other predicts biased lives, so whoever feeds it is told.

use serde::{Deserialize, Serialize};

/// Where a cell's per-cycle discharge capacities come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CapacitySource {
    /// The cycler's own per-cycle discharge capacity.
    Cycler,
    /// Read off each cycle's discharge curve at 2.0 V.
    Curve,
}

impl CapacitySource {
    /// How people read it, and how older model files' provenance (`trained_on`) says it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Cycler => "cycler capacities",
            Self::Curve => "capacities at 2.0 V",
        }
    }

    /// What a model file from before the typed field says in its free-text provenance: the
    /// wordings `labloop predict train` wrote (cells from a store carry the cycler's).
    pub fn of_provenance(trained_on: &str) -> Option<Self> {
        if trained_on.contains(Self::Cycler.describe())
            || trained_on.contains("observed ends of life")
        {
            Some(Self::Cycler)
        } else if trained_on.contains(Self::Curve.describe()) {
            Some(Self::Curve)
        } else {
            None
        }
    }
}

/// Whether any of `features` is read from the discharge capacities (`qd_…`).
pub fn reads_capacities(features: &[String]) -> bool {
    features.iter().any(|f| f.starts_with("qd_"))
}

/// What a model with `features` says it was trained on: its typed field, else its provenance's
/// wording (files from before the field); `None` when it reads no capacities.
pub(crate) fn trained_on(
    features: &[String],
    typed: Option<CapacitySource>,
    provenance: &str,
) -> Option<CapacitySource> {
    if !reads_capacities(features) {
        return None;
    }
    typed.or_else(|| CapacitySource::of_provenance(provenance))
}

/// The note for `model`, whose capacity features were trained on `trained` capacities
/// ([`crate::Predictor::capacities_trained_on`]), fed cells whose capacities are `fed`: `None`
/// when it reads none, does not say, or the kinds agree.
pub fn mismatch(
    model: &str,
    trained: Option<CapacitySource>,
    fed: CapacitySource,
) -> Option<String> {
    let trained = trained?;
    if trained == fed {
        return None;
    }
    Some(format!(
        "{model} reads discharge capacities and was trained on {}, but these cells' are {}: its \
         predictions are biased",
        trained.describe(),
        match fed {
            CapacitySource::Cycler => "the cycler's",
            CapacitySource::Curve => "read off the curves at 2.0 V",
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_provenance_wordings_are_read() {
        let cases = [
            (
                "41 cells from cells (lives l.txt, cycler capacities caps.csv)",
                Some(CapacitySource::Cycler),
            ),
            (
                "campaign clo in sqlite:///x (observed ends of life)",
                Some(CapacitySource::Cycler),
            ),
            (
                "Severson et al. 2019 training cells (41), Qdlin cycles 2-100, capacities at 2.0 V",
                Some(CapacitySource::Curve),
            ),
            ("by-batch split", None),
        ];
        for (text, source) in cases {
            assert_eq!(CapacitySource::of_provenance(text), source, "{text}");
        }
    }

    #[test]
    fn only_a_model_reading_the_other_kind_is_told() {
        let qd = ["qd_cycle2".to_owned(), "variance".to_owned()];
        let plain = ["variance".to_owned()];
        let (cycler, curve) = (CapacitySource::Cycler, CapacitySource::Curve);
        let told = |features: &[String], typed, provenance: &str, fed| {
            mismatch("m", trained_on(features, typed, provenance), fed).is_some()
        };
        assert!(told(&qd, Some(curve), "", cycler));
        assert!(told(&qd, Some(cycler), "", curve));
        assert!(!told(&qd, Some(cycler), "", cycler));
        assert!(!told(&qd, None, "by-batch split", cycler));
        assert!(told(&qd, None, "x, capacities at 2.0 V", cycler));
        // The typed field wins over the provenance's wording.
        assert!(!told(&qd, Some(cycler), "x, capacities at 2.0 V", cycler));
        assert!(!told(&plain, Some(curve), "", cycler));
    }
}
