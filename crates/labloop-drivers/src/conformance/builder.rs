//! The rules of a cell builder.

use super::*;

/// The rules of a cell builder: a build, idempotent by order key, and (MQTT) by command id.
pub(super) async fn check_builder(run: &mut Run<'_>, mqtt: bool) {
    let order = |key: &str| crate::CellOrder {
        key: key.to_owned(),
        formulation: vec![("EC".into(), 0.3), ("EMC".into(), 0.7)],
        parameters: Vec::new(),
        electrolyte_ul: 70.0,
        ..crate::CellOrder::default()
    };
    let key = format!("labloop-check/{}/build/1", run.nonce);
    let build = Op::Build { order: order(&key) };
    let build_id = run.id();
    let cell = |reply: Result<Reply, String>| -> Result<crate::BuiltCell, String> {
        match reply? {
            Ok(v) => {
                serde_json::from_value(v).map_err(|e| format!("a build reply is a built cell: {e}"))
            }
            Err(f) => Err(format!("refused: {} {}", f.code, f.message)),
        }
    };
    let first = cell(run.call_as(&build_id, &build).await);
    let verdict = first
        .as_ref()
        .map(|c| format!("cell {} ({} µL)", c.cell_id, c.electrolyte_ul))
        .map_err(Clone::clone);
    run.record(
        "build",
        "build answers a built cell {cell_id, electrolyte_ul, qc}",
        verdict,
    );
    let Ok(first) = first else { return };
    let again = cell(run.call(&build).await);
    let verdict = match again {
        Ok(c) if c == first => Ok("the same key again: the same cell".into()),
        Ok(c) => Err(format!(
            "the same key again built another cell: {} (first {})",
            c.cell_id, first.cell_id
        )),
        Err(e) => Err(e),
    };
    run.record(
        "build-idempotent-by-key",
        "a repeated order key returns the same cell, never a second one",
        verdict,
    );
    if mqtt {
        let other = Op::Build {
            order: order(&format!("labloop-check/{}/build/other", run.nonce)),
        };
        let verdict = match cell(run.call_as(&build_id, &other).await) {
            Ok(c) if c == first => Ok("the repeated id got the first cell again".into()),
            Ok(c) => Err(format!(
                "the repeated id was carried out again: cell {}",
                c.cell_id
            )),
            Err(e) => Err(e),
        };
        run.record(
            "command-id-replay",
            "a command id answered before is not carried out again",
            verdict,
        );
    }
}
