//! Structured output: ask for JSON matching a schema and deserialise it into a type.
//!
//! `cargo run -p runtimeuse-client --example structured_query -- [ws_url] [prompt]`

mod common;

use runtimeuse_client::QueryOptions;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct Counts {
    file_count: u64,
    char_count: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = common::client()?;

    let options =
        QueryOptions::new("You are a helpful assistant.", "gpt-4.1").output_schema(json!({
            "type": "object",
            "properties": {
                "file_count": { "type": "integer" },
                "char_count": { "type": "integer" }
            },
            "required": ["file_count", "char_count"],
            "additionalProperties": false
        }));
    // The echo agent answers `STRUCTURED:<json>` with that JSON.
    let prompt = common::prompt(r#"STRUCTURED:{"file_count": 12, "char_count": 3400}"#);
    let result = client.query(prompt, options).await?;

    let counts: Counts = result.structured()?;
    println!(
        "{} files, {} characters",
        counts.file_count, counts.char_count
    );
    println!("metadata: {}", serde_json::Value::Object(result.metadata));
    Ok(())
}
