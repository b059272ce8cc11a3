//! Uploads of announced files to the presigned URLs the client answers with, at most
//! [`ArtifactOptions::max_concurrent_uploads`](super::ArtifactOptions) at a time per
//! session.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, error, info, warn};

use super::shared::Shared;
use crate::upload::upload_file;

/// Runs upload `id` (already registered with [`Shared`]) of `path` to `url` in the
/// background once an upload slot is free; it is unregistered when it ends (waiting for
/// a slot counts as running, so draining waits for it too).
pub(super) fn spawn(
    shared: &Arc<Shared>,
    id: u64,
    path: PathBuf,
    url: String,
    content_type: String,
) {
    let guard = Finished {
        shared: shared.clone(),
        id,
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        error!(path = %path.display(), "artifact upload needs a tokio runtime; skipped");
        return;
    };
    let slots = shared.upload_slots.clone();
    let task = runtime.spawn(async move {
        let shared = guard.shared.clone();
        let target = loggable(&url);
        let Ok(_slot) = slots.acquire().await else {
            return; // never closed
        };
        debug!(path = %path.display(), %target, "artifact upload starting");
        let started = Instant::now();
        let result = upload_file(
            &shared.http,
            &path,
            &url,
            &content_type,
            &shared.options.retry,
        )
        .await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(bytes) => {
                shared.record_uploaded(&path);
                info!(path = %path.display(), %target, bytes, elapsed_ms, "artifact uploaded");
            }
            Err(e) => {
                let reason = scrub(&e.to_string(), &url);
                warn!(path = %path.display(), %target, elapsed_ms, error = %reason, "artifact upload failed");
            }
        }
        drop(guard);
    });
    shared.upload_spawned(id, task.abort_handle());
}

/// Unregisters the upload when its task ends, however it ends (aborts included).
struct Finished {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Finished {
    fn drop(&mut self) {
        self.shared.upload_finished(self.id);
    }
}

/// The URL without the credentials a presigned URL carries (query, user info).
fn loggable(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// `text` with any copy of the URL's query string hidden.
fn scrub(text: &str, url: &str) -> String {
    let mut queries: Vec<String> = url
        .split_once('?')
        .map(|(_, q)| q.to_owned())
        .into_iter()
        .collect();
    if let Some(q) = url::Url::parse(url)
        .ok()
        .and_then(|u| u.query().map(str::to_owned))
    {
        queries.push(q);
    }
    queries
        .iter()
        .filter(|q| !q.is_empty())
        .fold(text.to_owned(), |acc, q| {
            acc.replace(q.as_str(), "[query hidden]")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_query_never_reaches_the_logs() {
        let url = "https://bucket.example/a.txt?X-Amz-Signature=abc&X-Amz-Credential=k";
        assert_eq!(loggable(url), "https://bucket.example/a.txt");
        let error = format!("error sending request for url ({url})");
        assert!(!scrub(&error, url).contains("abc"));
    }
}
