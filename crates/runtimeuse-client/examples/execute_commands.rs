//! Command-only execution: run shell commands in the sandbox without the agent.
//!
//! `cargo run -p runtimeuse-client --example execute_commands -- [ws_url]`

mod common;

use std::io::Write;

use runtimeuse_client::{Command, ExecuteCommandsOptions, OutputStream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = common::client()?;
    let workdir = std::env::temp_dir().join("runtimeuse-example");
    let workdir = workdir.display();

    let commands = vec![
        Command::new(format!("mkdir -p {workdir}/output")),
        Command::new(format!(
            "echo 'sandbox is ready' > {workdir}/output/status.txt"
        )),
        Command {
            command: format!("cat {workdir}/output/status.txt; echo \"MY_VAR=$MY_VAR\""),
            cwd: None,
            env: Some([("MY_VAR".to_owned(), "value".to_owned())].into()),
        },
    ];
    let options = ExecuteCommandsOptions::new().on_command_output(|chunk| async move {
        match chunk.stream {
            OutputStream::Stdout => print!("{}", chunk.text),
            OutputStream::Stderr => eprint!("{}", chunk.text),
        }
        let _ = std::io::stdout().flush();
    });

    let result = client.execute_commands(commands, options).await?;

    for item in &result.results {
        println!("{} -> exit code {}", item.command, item.exit_code);
    }
    if let Some(failed) = result.first_failure() {
        return Err(format!(
            "`{}` failed with exit code {}",
            failed.command, failed.exit_code
        )
        .into());
    }
    Ok(())
}
