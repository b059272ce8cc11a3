//! Cancellation: abort a running query from another task.
//!
//! `cargo run -p runtimeuse-client --example cancellation -- [ws_url] [prompt]`

mod common;

use std::time::Duration;

use runtimeuse_client::{Error, QueryOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = common::client()?;

    let abort = client.abort_handle();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        abort.abort();
    });

    // The echo agent sleeps for `SLOW:<ms>`; the abort arrives long before.
    let options = QueryOptions::new("You are a helpful assistant.", "gpt-4.1");
    match client.query(common::prompt("SLOW:30000"), options).await {
        Err(Error::Cancelled) => println!("Run was cancelled"),
        Ok(result) => println!("finished before the abort: {:?}", result.data),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
