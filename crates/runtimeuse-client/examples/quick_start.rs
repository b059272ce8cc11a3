//! Quick start: a text query with live assistant messages.
//!
//! `cargo run -p runtimeuse-client --example quick_start -- [ws_url] [prompt]`

mod common;

use runtimeuse_client::{QueryData, QueryOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = common::client()?;

    let options = QueryOptions::new("You are a helpful assistant.", "gpt-4.1")
        .on_assistant_message(|msg| async move {
            for block in msg.text_blocks {
                println!("[assistant] {block}");
            }
        });
    // With the echo agent, `STREAM:3` sends three assistant messages before the result.
    let result = client.query(common::prompt("STREAM:3"), options).await?;

    match &result.data {
        QueryData::Text(text) => println!("{text}"),
        QueryData::StructuredOutput(value) => println!("{value:#}"),
    }
    println!("metadata: {}", serde_json::Value::Object(result.metadata));
    Ok(())
}
