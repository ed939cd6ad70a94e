//! The catalogue of phone models and which of them are supported.

use chrono::NaiveDate;
use std::collections::HashSet;

use super::device::Platform;

/// A model as the support rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelGeneration {
    pub id: i64,
    pub platform: Platform,
    /// The day the operator made this the recommended model; `None` if it never was.
    pub recommended_since: Option<NaiveDate>,
}

/// The contracts promise backward compatibility for at least two models after each new
/// recommendation: per platform, the current recommended model and the `generations_back`
/// recommended before it are supported. A model recommended from a future date is not yet
/// current, and a model that was never recommended is not supported.
pub fn supported_models(
    models: &[ModelGeneration],
    today: NaiveDate,
    generations_back: usize,
) -> HashSet<i64> {
    let mut supported = HashSet::new();
    for platform in [Platform::Android, Platform::Ios] {
        let mut recommended: Vec<(NaiveDate, i64)> = models
            .iter()
            .filter(|m| m.platform == platform)
            .filter_map(|m| {
                m.recommended_since
                    .filter(|d| *d <= today)
                    .map(|d| (d, m.id))
            })
            .collect();
        recommended.sort_unstable_by(|a, b| b.cmp(a));
        supported.extend(
            recommended
                .iter()
                .take(generations_back + 1)
                .map(|(_, id)| *id),
        );
    }
    supported
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: i64, platform: Platform, since: Option<&str>) -> ModelGeneration {
        ModelGeneration {
            id,
            platform,
            recommended_since: since.map(|s| s.parse().expect("date")),
        }
    }

    fn today() -> NaiveDate {
        "2026-11-23".parse().expect("date")
    }

    #[test]
    fn current_and_two_before_are_supported_per_platform() {
        let models = [
            model(1, Platform::Ios, Some("2022-09-01")),
            model(2, Platform::Ios, Some("2023-09-01")),
            model(3, Platform::Ios, Some("2024-09-01")),
            model(4, Platform::Ios, Some("2025-09-01")),
            model(5, Platform::Android, Some("2021-01-01")),
        ];
        let supported = supported_models(&models, today(), 2);
        assert_eq!(supported, HashSet::from([2, 3, 4, 5]));
    }

    #[test]
    fn a_future_recommendation_is_not_current_yet_and_unrecommended_models_are_unsupported() {
        let models = [
            model(1, Platform::Ios, Some("2024-09-01")),
            model(2, Platform::Ios, Some("2027-01-01")),
            model(3, Platform::Ios, None),
        ];
        let supported = supported_models(&models, today(), 2);
        assert_eq!(supported, HashSet::from([1]));
    }

    #[test]
    fn more_generations_back_widens_support() {
        let models: Vec<_> = (1..=5)
            .map(|i| model(i, Platform::Android, Some(&format!("202{i}-01-01"))))
            .collect();
        assert_eq!(supported_models(&models, today(), 3).len(), 4);
    }
}
