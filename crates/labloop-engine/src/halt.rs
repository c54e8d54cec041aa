//! The one signal that stops a campaign from starting steps: a pause (Ctrl-C, a step's
//! `on_failure: pause_campaign`, a person's request, the campaign's lease lost to another engine)
//! or an abort (a person's request). Tests already on instruments go on; the campaign ends
//! `paused` (resumable) or `aborted` once its experiments have stopped.

use std::sync::Arc;
use tokio::sync::watch;

/// Why the campaign stops starting steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Halt {
    /// It pauses; `labloop resume` continues it.
    Pause {
        /// Why, as people read it.
        reason: String,
        /// Whether a person asked through the store (a resume request may continue it).
        by_request: bool,
    },
    /// A person aborted it: it does not resume.
    Abort {
        /// Who and which request.
        reason: String,
    },
}

/// The campaign's halt signal: unset while it runs, set once (a pause may still turn into an
/// abort), read by every experiment.
#[derive(Clone)]
pub(crate) struct HaltSignal(Arc<watch::Sender<Option<Halt>>>);

impl HaltSignal {
    /// A signal not yet set.
    pub fn new() -> Self {
        Self(Arc::new(watch::channel(None).0))
    }

    /// Pauses the campaign for `reason`, unless it is already halting (the first reason stands).
    pub fn pause(&self, reason: &str, by_request: bool) {
        self.0.send_if_modified(|halt| {
            if halt.is_some() {
                return false;
            }
            *halt = Some(Halt::Pause {
                reason: reason.to_owned(),
                by_request,
            });
            true
        });
    }

    /// Aborts the campaign for `reason`; an abort overrides a pause under way, not another abort.
    pub fn abort(&self, reason: &str) {
        self.0.send_if_modified(|halt| {
            if matches!(halt, Some(Halt::Abort { .. })) {
                return false;
            }
            *halt = Some(Halt::Abort {
                reason: reason.to_owned(),
            });
            true
        });
    }

    /// Why the campaign halts, if it does.
    pub fn current(&self) -> Option<Halt> {
        self.0.borrow().clone()
    }

    /// Whether the campaign halts.
    pub fn is_set(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Resolves once the campaign halts.
    pub async fn halted(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }

    /// Pauses the campaign for `reason` once `outside` turns true (Ctrl-C, a lost lease), from a
    /// task that ends with that, or when the returned guard drops.
    pub fn follow(&self, mut outside: watch::Receiver<bool>, reason: &'static str) -> FollowGuard {
        let signal = self.clone();
        FollowGuard(tokio::spawn(async move {
            if outside.wait_for(|set| *set).await.is_ok() {
                signal.pause(reason, false);
            }
        }))
    }
}

/// Stops following an outside signal when dropped.
pub(crate) struct FollowGuard(tokio::task::JoinHandle<()>);

impl Drop for FollowGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_pause_stands_and_an_abort_overrides_it() {
        let halt = HaltSignal::new();
        assert!(!halt.is_set());
        halt.pause("paused by ana", true);
        halt.pause("asked to pause", false);
        assert_eq!(
            halt.current(),
            Some(Halt::Pause {
                reason: "paused by ana".into(),
                by_request: true
            })
        );
        halt.abort("aborted by bo");
        halt.abort("aborted by cy");
        halt.pause("asked to pause", false);
        assert_eq!(
            halt.current(),
            Some(Halt::Abort {
                reason: "aborted by bo".into()
            })
        );
    }

    #[tokio::test]
    async fn an_outside_signal_pauses_and_wakes_waiters() {
        let halt = HaltSignal::new();
        let (tx, rx) = watch::channel(false);
        let _guard = halt.follow(rx, "asked to pause");
        let waiter = tokio::spawn({
            let halt = halt.clone();
            async move { halt.halted().await }
        });
        tx.send(true).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert!(matches!(
            halt.current(),
            Some(Halt::Pause {
                by_request: false,
                ..
            })
        ));
    }
}
