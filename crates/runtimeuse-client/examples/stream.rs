//! Beyond the seed: handle a query as a stream of typed events instead of callbacks.
//!
//! `cargo run -p runtimeuse-client --example stream -- [ws_url] [prompt]`

mod common;

use futures_util::StreamExt;
use runtimeuse_client::{ArtifactUploadResult, Event, QueryOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = common::client()?;
    let options = QueryOptions::new("You are a helpful assistant.", "gpt-4.1");

    let mut events = client.query_stream(common::prompt("STREAM:5"), options);
    while let Some(event) = events.next().await {
        match event? {
            Event::AssistantMessage(msg) => println!("[assistant] {}", msg.text_blocks.join(" ")),
            Event::CommandOutput(chunk) => print!("{}", chunk.text),
            Event::Heartbeat(beat) => println!("[still working after {} ms]", beat.elapsed_ms),
            Event::ArtifactUploadRequest(request) => {
                let url = format!(
                    "http://127.0.0.1:9000/uploads/{}",
                    request.request().filename
                );
                request.respond(ArtifactUploadResult::new(url, "application/octet-stream"))?;
            }
            Event::Result(result) => println!("result: {:?}", result.data),
            _ => {}
        }
    }
    Ok(())
}
