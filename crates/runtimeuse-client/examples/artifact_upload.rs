//! Artifact upload handshake: the runtime watches a directory and, for each file written
//! there, asks where to upload it; the callback answers with a presigned URL.
//!
//! `cargo run -p runtimeuse-client --example artifact_upload -- [ws_url] [prompt]`
//!
//! `UPLOAD_BASE_URL` stands in for your object storage (default
//! `http://127.0.0.1:9000/uploads`); the runtime `PUT`s each file under it.

mod common;

use runtimeuse_client::{ArtifactUploadRequest, ArtifactUploadResult, QueryOptions};

/// What `my_storage.create_presigned_url` would do.
async fn presigned_url_for(request: &ArtifactUploadRequest) -> String {
    let base = std::env::var("UPLOAD_BASE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:9000/uploads".to_owned());
    format!("{}/{}", base.trim_end_matches('/'), request.filename)
}

fn guess_content_type(filename: &str) -> &'static str {
    match filename.rsplit('.').next() {
        Some("txt" | "md") => "text/plain",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let client = common::client()?;
    let artifacts_dir = std::env::temp_dir().join("runtimeuse-artifacts");
    let artifacts_dir = artifacts_dir.display().to_string();

    // Both together, or the call is refused with `Error::InvalidOptions`.
    let options = QueryOptions::new("You are a helpful assistant.", "gpt-4.1")
        .artifacts_dirs([artifacts_dir.clone()])
        .on_artifact_upload_request(|request| async move {
            let presigned_url = presigned_url_for(&request).await;
            println!("[artifact] {} -> {presigned_url}", request.filepath);
            ArtifactUploadResult::new(presigned_url, guess_content_type(&request.filename))
        });
    // The echo agent writes the file and waits until it was offered as an artifact.
    let default_prompt = format!("WRITE_FILE:{artifacts_dir}/hello.txt hello from the sandbox");
    let result = client
        .query(common::prompt(&default_prompt), options)
        .await?;

    println!("{}", result.text().unwrap_or_default());
    Ok(())
}
