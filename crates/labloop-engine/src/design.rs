//! The campaign's candidates: what the optimizer chooses among, each with what an experiment needs
//! to run it (the charge protocol, the cell's formulation) and a label people read.

use crate::EngineError;
use labloop_core::ChargeProtocol;
use labloop_drivers::DesignParameter;
use labloop_optimize::{Mixture, Parameter, Space};
use labloop_workflow::{SearchSpaceSpec, Workflow};
use rand::SeedableRng;
use rand::rngs::StdRng;

/// Every candidate of a campaign, by index. Built the same way from the same workflow every time, so
/// a resumed campaign sees the candidates it had.
pub struct Candidates {
    /// The optimizer's inputs (one-hot for categories).
    pub inputs: Vec<Vec<f64>>,
    /// The label of each, e.g. `4.8-5.2-5.2-4.16` or `EC 0.30 · EMC 0.70`.
    pub labels: Vec<String>,
    /// The charge protocol each runs.
    pub protocols: Vec<ChargeProtocol>,
    /// Each cell's electrolyte mixture: the components' fractions, summing to 1 (empty for
    /// protocol campaigns).
    pub formulations: Vec<Vec<(String, f64)>>,
    /// Each cell's other design parameters, in their own units (empty for protocol campaigns).
    pub parameters: Vec<Vec<DesignParameter>>,
    /// Values in the workflow's own terms (JSON), recorded with each experiment.
    pub values: Vec<serde_json::Value>,
}

impl Candidates {
    /// The candidates of a workflow.
    pub fn of(workflow: &Workflow) -> Result<Self, EngineError> {
        match &workflow.campaign.search_space {
            SearchSpaceSpec::ChargeProtocol(spec) => {
                let protocols = spec.to_space().enumerate();
                Ok(Self {
                    inputs: protocols.iter().map(ChargeProtocol::c_rates).collect(),
                    labels: protocols.iter().map(ToString::to_string).collect(),
                    formulations: vec![Vec::new(); protocols.len()],
                    parameters: vec![Vec::new(); protocols.len()],
                    values: protocols
                        .iter()
                        .map(|p| serde_json::json!(p.c_rates()))
                        .collect(),
                    protocols,
                })
            }
            SearchSpaceSpec::Formulation(spec) => {
                let protocol = workflow
                    .cycle_step()
                    .and_then(|c| c.protocol.as_ref())
                    .ok_or_else(|| {
                        EngineError::Workflow(
                            "a formulation campaign needs `protocol` on its cycle step".into(),
                        )
                    })?
                    .to_protocol();
                let mut parameters: Vec<Parameter> = spec
                    .components
                    .iter()
                    .map(|c| Parameter::Continuous {
                        name: c.name.clone(),
                        low: c.min,
                        high: c.max,
                    })
                    .collect();
                for p in &spec.parameters {
                    parameters.push(match (&p.continuous, &p.integer, &p.categorical) {
                        (Some(r), _, _) => Parameter::Continuous {
                            name: p.name.clone(),
                            low: r.min,
                            high: r.max,
                        },
                        (_, Some(r), _) => Parameter::Integer {
                            name: p.name.clone(),
                            low: r.min,
                            high: r.max,
                        },
                        (_, _, Some(choices)) => Parameter::Categorical {
                            name: p.name.clone(),
                            choices: choices.clone(),
                        },
                        _ => {
                            return Err(EngineError::Workflow(format!(
                                "parameter `{}` has no kind",
                                p.name
                            )));
                        }
                    });
                }
                let space = Space {
                    parameters,
                    constraints: Vec::new(),
                    mixture: Some(Mixture {
                        components: (0..spec.components.len()).collect(),
                        total: spec.total,
                    }),
                };
                let mut rng = StdRng::seed_from_u64(workflow.campaign.seed ^ 0x5eed_f0e1);
                let points = space
                    .sample(spec.candidates as usize, &mut rng)
                    .map_err(|e| EngineError::Workflow(format!("formulation space: {e}")))?;
                let n = points.len();
                Ok(Self {
                    inputs: points.iter().map(|x| space.encode(x)).collect(),
                    labels: points.iter().map(|x| label(&space, x)).collect(),
                    formulations: points
                        .iter()
                        .map(|x| fractions(&space, spec.total, x))
                        .collect(),
                    parameters: points
                        .iter()
                        .map(|x| design_parameters(&space, &spec.parameters, x))
                        .collect(),
                    values: points
                        .iter()
                        .map(|x| {
                            serde_json::Value::Object(
                                space
                                    .parameters
                                    .iter()
                                    .zip(x)
                                    .map(|(p, v)| (name_of(p).to_owned(), value_of(p, *v)))
                                    .collect(),
                            )
                        })
                        .collect(),
                    protocols: vec![protocol; n],
                })
            }
        }
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}

fn name_of(p: &Parameter) -> &str {
    match p {
        Parameter::Continuous { name, .. }
        | Parameter::Integer { name, .. }
        | Parameter::Categorical { name, .. } => name,
    }
}

fn value_of(p: &Parameter, v: f64) -> serde_json::Value {
    match p {
        Parameter::Categorical { choices, .. } => {
            serde_json::json!(choices.get(v as usize).cloned().unwrap_or_default())
        }
        Parameter::Integer { .. } => serde_json::json!(v.round() as i64),
        Parameter::Continuous { .. } => serde_json::json!((v * 1e4).round() / 1e4),
    }
}

fn label(space: &Space, x: &[f64]) -> String {
    space
        .parameters
        .iter()
        .zip(x)
        .map(|(p, v)| match value_of(p, *v) {
            serde_json::Value::String(s) => format!("{} {s}", name_of(p)),
            other => format!("{} {other}", name_of(p)),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The mixture's components as fractions of the total (summing to 1).
fn fractions(space: &Space, total: f64, x: &[f64]) -> Vec<(String, f64)> {
    let components = space.mixture.as_ref().map_or(0, |m| m.components.len());
    space
        .parameters
        .iter()
        .zip(x)
        .take(components)
        .map(|(p, &v)| (name_of(p).to_owned(), v / total))
        .collect()
}

/// The parameters after the mixture's components, as named values in their units with the range
/// the campaign searches.
fn design_parameters(
    space: &Space,
    specs: &[labloop_workflow::ParameterSpec],
    x: &[f64],
) -> Vec<DesignParameter> {
    let components = space.mixture.as_ref().map_or(0, |m| m.components.len());
    space
        .parameters
        .iter()
        .zip(x)
        .skip(components)
        .zip(specs)
        .map(|((p, &v), spec)| {
            let (min, max) = match p {
                Parameter::Continuous { low, high, .. } => (Some(*low), Some(*high)),
                Parameter::Integer { low, high, .. } => (Some(*low as f64), Some(*high as f64)),
                Parameter::Categorical { .. } => (None, None),
            };
            DesignParameter {
                name: name_of(p).to_owned(),
                value: value_of(p, v),
                unit: spec.unit.clone(),
                min,
                max,
            }
        })
        .collect()
}

/// The optimizer's posterior over every candidate, for people: the numeric dimensions (C-rates of
/// the free steps, or the formulation's numeric parameters) and each candidate's coordinates,
/// posterior mean and standard deviation of the objective.
pub(crate) fn surrogate_snapshot(
    candidates: &Candidates,
    ranking: &[crate::RankedProtocol],
    best_probability: f64,
    last: bool,
) -> serde_json::Value {
    let dimensions: Vec<String> = match candidates.values.first() {
        Some(serde_json::Value::Object(first)) => first
            .iter()
            .filter(|(_, v)| v.is_number())
            .map(|(k, _)| k.clone())
            .collect(),
        Some(serde_json::Value::Array(first)) => {
            (1..=first.len()).map(|i| format!("CC{i}")).collect()
        }
        _ => Vec::new(),
    };
    let coordinates = |value: &serde_json::Value| -> Vec<f64> {
        match value {
            serde_json::Value::Object(o) => dimensions
                .iter()
                .map(|d| {
                    o.get(d)
                        .and_then(serde_json::Value::as_f64)
                        .unwrap_or(f64::NAN)
                })
                .collect(),
            serde_json::Value::Array(a) => a.iter().filter_map(serde_json::Value::as_f64).collect(),
            _ => Vec::new(),
        }
    };
    let mut points: Vec<(usize, serde_json::Value)> = ranking
        .iter()
        .map(|r| {
            (
                r.candidate_index,
                serde_json::json!({
                    "x": coordinates(&candidates.values[r.candidate_index]),
                    "mean": r.predicted_life,
                    "sd": r.sigma,
                    "label": r.protocol,
                    "cells": r.cells,
                }),
            )
        })
        .collect();
    points.sort_by_key(|(i, _)| *i);
    serde_json::json!({
        "dimensions": dimensions,
        "candidates": points.into_iter().map(|(_, p)| p).collect::<Vec<_>>(),
        // The ranking as `labloop run` prints it (best first), for the dashboard.
        "ranking": ranking.iter().take(RANKING_KEPT).collect::<Vec<_>>(),
        "best_probability": best_probability,
        // The campaign's final ranking (what its result reports), not a round's.
        "final": last,
    })
}

/// Ranked candidates a surrogate snapshot keeps (the dashboard's table; `labloop run --json`
/// prints them all).
pub(crate) const RANKING_KEPT: usize = 100;
