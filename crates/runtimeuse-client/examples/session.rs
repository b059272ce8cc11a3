//! Sessions: many sequential calls over one connection, then a clean close.
//!
//! `cargo run -p runtimeuse-client --example session -- [ws_url]`

mod common;

use runtimeuse_client::{Command, ExecuteCommandsOptions, QueryOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = common::client()?;
    let session = client.session().await?;
    let notes = std::env::temp_dir().join("runtimeuse-session-notes.txt");
    let notes = notes.display();

    let setup = session
        .execute_commands(
            vec![Command::new(format!("echo 'first line' > {notes}"))],
            ExecuteCommandsOptions::new(),
        )
        .await?;
    println!("setup exit code: {}", setup.results[0].exit_code);

    // The echo agent answers `READ_FILE:<path>` with the file's contents.
    let options = QueryOptions::new("You are a helpful assistant.", "gpt-4.1");
    let result = session
        .query(format!("READ_FILE:{notes}"), &options)
        .await?;
    println!(
        "the agent read: {}",
        result.text().unwrap_or_default().trim_end()
    );

    let result = session
        .query("ECHO:still the same connection", &options)
        .await?;
    println!("{}", result.text().unwrap_or_default());

    // Sends end_session_message and answers late artifact requests until confirmed.
    session.close().await?;
    Ok(())
}
