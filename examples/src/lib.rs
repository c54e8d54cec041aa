//! Examples of the labloop library API live under `[[example]]` entries; this library holds what they
//! share.

/// The example CLO workflow of `workflows/fast-charge-clo.yaml`.
pub fn clo_workflow() -> labloop_workflow::Workflow {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../workflows/fast-charge-clo.yaml"
    );
    labloop_workflow::load(std::path::Path::new(path)).expect("the example workflow is valid")
}
