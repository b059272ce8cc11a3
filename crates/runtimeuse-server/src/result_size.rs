//! Keeping a command execution result within one WebSocket frame a client accepts.
//!
//! Captured stdout may be up to 10 MiB per command, but common clients refuse bigger
//! frames (Python's `websockets`, used by the published client, stops at 1 MiB and closes
//! the connection, losing the result). So the result's stdout is cut further, largest
//! first, until the encoded message fits; cut items carry `stdout_truncated: true` like
//! items cut at the capture limit. The streamed output is never cut.

use runtimeuse_protocol::{CommandExecutionResultMessage, CommandResultItem, ServerMessage};

/// Default bound on the encoded result frame: under the 1 MiB default of Python's
/// `websockets`, with room for redaction markers.
pub const DEFAULT_MAX_RESULT_FRAME_BYTES: usize = 1_000_000;

/// Cut at least this much per round, so that the loop ends quickly.
const MIN_CUT: usize = 1024;

/// Counts bytes instead of keeping them: sizes are measured without building a copy of
/// up to 10 MiB per item.
#[derive(Default)]
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = ByteCounter::default();
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

/// Encoded size of the whole message: its envelope plus the results array.
fn encoded_len(results: &[CommandResultItem]) -> usize {
    let empty = ServerMessage::CommandExecutionResultMessage(CommandExecutionResultMessage {
        results: Vec::new(),
    });
    // The empty message holds `[]`; the real array replaces it.
    json_len(&empty)
        .saturating_sub(2)
        .saturating_add(json_len(results))
}

/// Cuts stdout of `results` (largest first, keeping each one's beginning) until the
/// encoded `command_execution_result_message` is at most `limit` bytes or no stdout is
/// left to cut.
pub fn fit_results(results: &mut [CommandResultItem], limit: usize) {
    loop {
        let size = encoded_len(results);
        if size <= limit {
            return;
        }
        let Some(item) = results
            .iter_mut()
            .filter(|i| i.stdout.as_deref().is_some_and(|s| !s.is_empty()))
            .max_by_key(|i| i.stdout.as_deref().map_or(0, str::len))
        else {
            return;
        };
        let Some(stdout) = item.stdout.as_mut() else {
            return;
        };
        // Cut in proportion to how this text encodes (control characters take six bytes
        // each); uneven text may need another round.
        let encoded = json_len(stdout.as_str());
        let target = encoded.saturating_sub((size - limit).max(MIN_CUT));
        // usize -> u128 is lossless; the product cannot overflow.
        let proportional = target as u128 * stdout.len() as u128 / encoded.max(1) as u128;
        let mut keep = usize::try_from(proportional)
            .unwrap_or(0)
            .min(stdout.len().saturating_sub(1));
        while !stdout.is_char_boundary(keep) {
            keep -= 1;
        }
        stdout.truncate(keep);
        item.stdout_truncated = Some(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(stdout: &str) -> CommandResultItem {
        CommandResultItem {
            command: "c".into(),
            exit_code: 0,
            stdout: Some(stdout.into()),
            stdout_truncated: None,
        }
    }

    #[test]
    fn small_results_are_left_alone() {
        let mut results = vec![item("hello\n")];
        fit_results(&mut results, 1000);
        assert_eq!(results, vec![item("hello\n")]);
    }

    #[test]
    fn largest_stdout_is_cut_until_the_frame_fits() {
        let mut results = vec![item(&"a".repeat(5000)), item(&"b".repeat(200_000))];
        fit_results(&mut results, 50_000);
        assert!(encoded_len(&results) <= 50_000);
        assert_eq!(results[0], item(&"a".repeat(5000)));
        let cut = results[1].stdout.as_deref().unwrap();
        assert!(
            cut.len() > 40_000 && cut.chars().all(|c| c == 'b'),
            "{}",
            cut.len()
        );
        assert_eq!(results[1].stdout_truncated, Some(true));
    }

    #[test]
    fn heavily_escaped_output_and_multibyte_chars_still_fit() {
        // Control characters encode to six bytes each; 'é' is two bytes in UTF-8.
        let nasty: String = std::iter::repeat_n("\u{1}é", 100_000).collect();
        let mut results = vec![item(&nasty)];
        fit_results(&mut results, 30_000);
        assert!(encoded_len(&results) <= 30_000);
        assert!(!results[0].stdout.as_deref().unwrap().is_empty());
    }
}
