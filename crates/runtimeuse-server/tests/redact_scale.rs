//! Redaction costs time linear in the output, whatever the number and shape of secrets.
//!
//! Before the fix, 20k short secrets plus one long one took minutes for 5 MB of streamed
//! output (a check of every secret at every position of the held tail: 38 s with a 1 kB
//! secret, growing with its length). The
//! bounds below are hang guards many times what the linear pass needs, even unoptimised
//! on a busy machine.

use std::time::Duration;

use runtimeuse_server::redact::{Redactor, StreamRedactor};

/// 20,000 distinct short secrets and one long one, and 5 MB of text that keeps starting
/// the long one (the worst case for a held tail) and holds a few real secrets.
fn workload() -> (Vec<String>, String, String) {
    let mut secrets: Vec<String> = (0..20_000).map(|i| format!("s{i:05}x")).collect();
    let long = "L".repeat(1000) + "-the-long-secret-" + &"z".repeat(3000);
    secrets.push(long.clone());
    let mut text = String::with_capacity(5_200_000);
    let mut n = 0;
    while text.len() < 5_000_000 {
        // Almost the long secret: a proper prefix, then something else.
        text.push_str(&long[..long.len() - 1 - (n % 50)]);
        text.push_str(" s12345x ");
        text.push_str(&secrets[n % 20_000]);
        text.push('\n');
        n += 1;
    }
    text.push_str(&long);
    (secrets, text, long)
}

#[tokio::test]
async fn twenty_thousand_secrets_and_a_long_one_over_five_megabytes_stay_linear() {
    let work = tokio::task::spawn_blocking(|| {
        let (secrets, text, long) = workload();
        let redactor = Redactor::new(&secrets);
        let mut stream = StreamRedactor::new(redactor.clone());
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        // Chunks the size a command's pipe yields, cut anywhere (on char boundaries).
        while at < text.len() {
            let end = (at + 8192).min(text.len());
            out.push_str(&stream.push(&text[at..end]));
            at = end;
        }
        out.push_str(&stream.finish());
        (out, redactor.redact(&text), long)
    });
    let (streamed, whole, long) = tokio::time::timeout(Duration::from_secs(40), work)
        .await
        .expect("redaction is not linear: 5 MB with 20k secrets took over 40 s")
        .unwrap();
    assert_eq!(streamed, whole, "streaming must redact like the whole text");
    assert!(!streamed.contains("s12345x"));
    assert!(!streamed.contains(&long));
    assert!(streamed.ends_with("[REDACTED]"));
}
