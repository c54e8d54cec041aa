//! The last rule: a restarted instrument keeps its tests, their records and their keys.

use super::*;

/// Restarts the bridge with the `--restart-hook` and checks the channel's test (started by
/// `start` with `key`, ended at `end_seq` with `pulled_records`) is still there, unchanged, and its
/// key still starts nothing new.
pub(super) async fn restart_persistence(
    run: &mut Run<'_>,
    channel: &str,
    start: &Op,
    key: &str,
    end_seq: u64,
    pulled_records: &[labloop_core::Telemetry],
) {
    let Some(hook) = &run.options.restart_hook else {
        run.skip(
            "restart-persistence",
            "tests and records survive a restart",
            "no --restart-hook given",
        );
        return;
    };
    run.exchange.push(format!("$ {hook}"));
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(hook)
        .status()
        .await;
    if !status.as_ref().is_ok_and(|s| s.success()) {
        run.record(
            "restart-persistence",
            "tests and records survive a restart",
            Err(format!("the restart hook failed: {status:?}")),
        );
        return;
    }
    let deadline = Instant::now() + run.options.wait;
    let back = loop {
        if let Ok(Ok(_)) = run.call(&Op::Identify).await {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let verdict = if !back {
        Err(format!(
            "no identify within {:?} of the restart",
            run.options.wait
        ))
    } else {
        match run.data(channel, 1, end_seq as u32 + 10).await {
            Ok(d) if d.test_key.as_deref() == Some(key) && d.records == pulled_records && d.end_seq == Some(end_seq) => match run.call(start).await {
                Ok(Ok(_)) => match run.loaded(channel).await {
                    Ok(d) if d.test_key.as_deref() == Some(key) && d.end_seq == Some(end_seq) => Ok("after the restart: the same test, the same records, and its key still starts nothing new".into()),
                    Ok(d) => Err(format!("starting the old key after the restart started a new test: {:?} {:?}", d.test_key, d.end_seq)),
                    Err(e) => Err(e),
                },
                Ok(Err(f)) => Err(format!("the old key refused after the restart: {} {}", f.code, f.message)),
                Err(e) => Err(e),
            },
            Ok(d) => Err(format!("after the restart the channel holds {:?} with {} records ending {:?}; before: {key} with {end_seq}", d.test_key, d.records.len(), d.end_seq)),
            Err(e) => Err(e),
        }
    };
    run.record(
        "restart-persistence",
        "a restarted instrument keeps its tests, their records and their keys",
        verdict,
    );
}
