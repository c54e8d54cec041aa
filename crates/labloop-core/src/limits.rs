//! Every bound on what labloop accepts from outside, in one place: the workflow file, the HTTP API
//! and the job queue. Each input that exceeds one is refused with an error naming the limit and the
//! place, never by running out of memory or time.
//!
//! The numbers are generous for real campaigns (the largest published search space, 224 protocols,
//! is far below [`MAX_CANDIDATES`]) and small enough that one file or request cannot exhaust a
//! laboratory PC (a few hundred MB at worst).

/// A workflow file (and each file it includes), in bytes.
pub const MAX_WORKFLOW_BYTES: usize = 4 << 20;
/// Files a workflow may include (directly or not).
pub const MAX_INCLUDES: usize = 32;
/// The document after `${{ }}` references are substituted, in bytes: references cannot multiply a
/// small file into a large one.
pub const MAX_EXPANDED_BYTES: usize = 16 << 20;
/// Nesting of mappings and lists in a workflow document.
pub const MAX_NESTING: usize = 64;
/// Diagnostics reported for one file; the rest are counted in one last diagnostic.
pub const MAX_DIAGNOSTICS: usize = 100;
/// Steps of a workflow.
pub const MAX_STEPS: usize = 1_000;
/// Variables of a workflow.
pub const MAX_VARIABLES: usize = 1_000;
/// Candidates a search space may enumerate (its size is computed before anything is enumerated).
pub const MAX_CANDIDATES: u64 = 1_000_000;
/// Length of a name in a search space (a mixture component, a categorical choice, a parameter).
pub const MAX_NAME_LEN: usize = 64;

/// Capabilities one worker may register or name in one claim.
pub const MAX_CAPABILITIES: usize = 32;
/// Length of one capability name.
pub const MAX_CAPABILITY_LEN: usize = 64;
/// The longest lease a claim or heartbeat may ask for, in seconds; a worker that needs longer
/// renews it with heartbeats, so a dead worker holds a job at most this long.
pub const MAX_LEASE_S: f64 = 3_600.0;
/// Jobs one worker may hold under live leases at once: a robot does one thing at a time, so a
/// worker cannot take a campaign's whole queue.
pub const MAX_HELD_JOBS: u64 = 4;
/// An HTTP request body, in bytes.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// How long a client may take to send a request's headers, in seconds.
pub const HEADER_READ_TIMEOUT_S: u64 = 10;

/// Whether `name` is a plain name: non-empty, at most [`MAX_NAME_LEN`] characters, only letters,
/// digits, spaces and `_ - . + % / ( ) ,` — nothing that means something in markup, shells or URLs
/// (`< > & " ' \` ` and control characters).
pub fn is_plain_name(name: &str) -> bool {
    !name.trim().is_empty()
        && name.chars().count() <= MAX_NAME_LEN
        && name.chars().all(|c| {
            c.is_alphanumeric()
                || matches!(c, ' ' | '_' | '-' | '.' | '+' | '%' | '/' | '(' | ')' | ',')
        })
}

/// Whether `name` is a capability name: 1 to [`MAX_CAPABILITY_LEN`] ASCII letters, digits, `_ - .`.
pub fn is_capability(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CAPABILITY_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_mean_markup_are_not_plain() {
        for ok in [
            "EC",
            "LiPF6",
            "VC wt%",
            "1.2 M LiFSI",
            "DMC/EMC (3,7)",
            "Élyte-2",
        ] {
            assert!(is_plain_name(ok), "{ok}");
        }
        for bad in [
            "",
            " ",
            "</title><img src=x onerror=alert(1)>",
            "a\"b",
            "a'b",
            "a&b",
            "a\nb",
            "a`b",
        ] {
            assert!(!is_plain_name(bad), "{bad:?}");
        }
        assert!(!is_plain_name(&"x".repeat(MAX_NAME_LEN + 1)));
        assert!(is_capability("coin-cell-robot"));
        assert!(!is_capability("robot arm"));
        assert!(!is_capability(&"r".repeat(MAX_CAPABILITY_LEN + 1)));
    }
}
