//! The resumable-sessions extension on the wire (docs/protocol.md, "Extension: resumable
//! sessions"), with a raw WebSocket peer through a cutting TCP proxy to the runtime
//! binary: sequence numbers, replay after the client's `last_seq`, duplicates ignored,
//! acknowledgements, refusals (unknown id, wrong key, replay out of range, ended), a
//! cancel and an end_session around a cut, takeover, and the `--token` rule.

mod binary;
mod common;
mod resume_support;

use std::time::Duration;

use common::{command_execution, invocation};
use resume_support::{
    DurablePeer, FRAME_TIMEOUT, Frame, Received, assert_refused, assert_resumable_frame, bogus_id,
    durable_runtime, is_terminal, resume_headers, seq_of,
};
use runtimeuse_protocol::resume::{
    CLOSE_TAKEN_OVER, HEADER_RESUMABLE, QUERY_LAST_SEQ, QUERY_RESUME_KEY, QUERY_SESSION_ID,
};
use runtimeuse_testkit::{CutProxy, Direction};
use serde_json::{Value, json};

const BUFFER: u64 = 4 * 1024 * 1024;

/// Reads frames into `got` until a terminal; returns it.
async fn until_terminal(peer: &mut DurablePeer, got: &mut Received) -> Value {
    loop {
        let frame = peer.recv().await;
        let terminal = is_terminal(&frame);
        got.take(frame.clone());
        if terminal {
            return frame;
        }
    }
}

fn assistant_texts(got: &Received) -> Vec<String> {
    got.of_type("assistant_message")
        .iter()
        .map(|m| m["text_blocks"][0].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_resume_replays_after_the_clients_last_seq_and_ignores_resent_duplicates() {
    let runtime = durable_runtime(30.0, BUFFER, &[]);
    let proxy = CutProxy::to_url(&runtime.url).await.unwrap();
    let (mut peer, opened) = DurablePeer::open(&proxy.ws_url()).await;
    assert_resumable_frame(&opened, 30_000, BUFFER);

    peer.send_seq(invocation("STREAM:300"), 1).await;
    let mut got = Received::default();
    while got.last_seq() < 20 {
        got.take(peer.recv().await);
    }
    // Cut without acknowledging anything: the runtime still holds every frame.
    assert_eq!(proxy.cut(), 1);
    drop(peer);

    let (mut peer, runtime_last) =
        DurablePeer::resumed(&proxy.ws_url(), &opened.id, &opened.key, 20).await;
    assert_eq!(runtime_last, 1, "the runtime holds the invocation");
    // Re-sent anyway: a duplicate must not start a second stream.
    peer.send_seq(invocation("STREAM:300"), 1).await;
    let terminal = until_terminal(&mut peer, &mut got).await;
    assert_eq!(
        terminal["data"]["text"], "streamed 300 messages",
        "{terminal}"
    );
    let expected: Vec<String> = (1..=300).map(|i| format!("message {i} of 300")).collect();
    assert_eq!(assistant_texts(&got), expected);

    // Acknowledge it all; a second cut and resume at the end replays nothing.
    peer.ack(got.last_seq()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut();
    drop(peer);
    let (mut peer, runtime_last) =
        DurablePeer::resumed(&proxy.ws_url(), &opened.id, &opened.key, got.last_seq()).await;
    assert_eq!(runtime_last, 1);
    // The next request's frames follow on, numbered after the last one.
    peer.send_seq(invocation("ECHO:after"), 2).await;
    let terminal = until_terminal(&mut peer, &mut got).await;
    assert_eq!(terminal["data"]["text"], "after", "{terminal}");
    assert_eq!(
        assistant_texts(&got).len(),
        300,
        "the duplicate ran no second stream"
    );
    assert!(
        got.of_type("error_message").is_empty(),
        "{:?}",
        got.of_type("error_message")
    );
}

#[tokio::test]
async fn a_connection_without_the_opt_in_is_unchanged_and_a_cut_still_cancels() {
    let runtime = durable_runtime(30.0, BUFFER, &[]);
    let proxy = CutProxy::to_url(&runtime.url).await.unwrap();
    let mut peer = common::Peer::connect(&proxy.ws_url()).await;
    peer.send(invocation("STREAM:3")).await;
    let (before, terminal) = peer.until_terminal().await;
    for frame in before.iter().chain([&terminal]) {
        assert!(
            frame.get("seq").is_none(),
            "no seq without the opt-in: {frame}"
        );
        assert_ne!(frame["message_type"], "session_resumable_message");
    }
    assert_eq!(terminal["data"]["text"], "streamed 3 messages");
    let (_dir, pid) = common::start_grandchild(&mut peer).await;
    proxy.cut();
    assert!(
        common::wait_gone(pid, Duration::from_secs(10)).await,
        "a cut of a non-durable connection kills its command {pid}"
    );
}

#[tokio::test]
async fn every_upgrade_response_advertises_the_extension() {
    let runtime = durable_runtime(30.0, BUFFER, &[]);
    let advertised = |peer: &DurablePeer| {
        peer.upgrade_headers
            .get(HEADER_RESUMABLE)
            .map(|value| value.to_str().unwrap_or_default().to_owned())
    };
    let plain = DurablePeer::connect_with(&runtime.url, &[]).await.unwrap();
    assert_eq!(advertised(&plain).as_deref(), Some("1"), "plain connection");
    let (durable, opened) = DurablePeer::open(&runtime.url).await;
    assert_eq!(advertised(&durable).as_deref(), Some("1"), "durable opt-in");
    let (resumed, _) = DurablePeer::resumed(&runtime.url, &opened.id, &opened.key, 0).await;
    assert_eq!(advertised(&resumed).as_deref(), Some("1"), "resume");
}

#[tokio::test]
async fn an_unknown_id_and_a_wrong_key_are_refused_and_the_session_goes_on() {
    let runtime = durable_runtime(30.0, BUFFER, &[]);
    let proxy = CutProxy::to_url(&runtime.url).await.unwrap();

    // Unknown id, through the query-string form.
    let url = format!(
        "{}/?{QUERY_SESSION_ID}={}&{QUERY_RESUME_KEY}={}&{QUERY_LAST_SEQ}=0",
        runtime.url,
        bogus_id(),
        "ab".repeat(32)
    );
    let mut peer = DurablePeer::connect_with(&url, &[]).await.unwrap();
    let first = peer.next().await;
    assert_refused(&mut peer, first, "unknown_session").await;

    // A live session, detached by a cut, with a request running.
    let (mut peer, opened) = DurablePeer::open(&proxy.ws_url()).await;
    peer.send_seq(invocation("SLOW:1500"), 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut();
    drop(peer);
    let mut wrong = opened.key.clone();
    let flipped = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(63.., flipped);
    let (mut peer, first) = DurablePeer::resume(&runtime.url, &opened.id, &wrong, 0).await;
    assert_refused(&mut peer, first, "invalid_key").await;

    // The wrong key stopped nothing: the right one resumes and the request ends normally.
    let (mut peer, runtime_last) =
        DurablePeer::resumed(&runtime.url, &opened.id, &opened.key, 0).await;
    peer.resend_after(runtime_last, &[(1, invocation("SLOW:1500"))])
        .await;
    let mut got = Received::default();
    let terminal = until_terminal(&mut peer, &mut got).await;
    assert_eq!(terminal["data"]["text"], "done", "{terminal}");
}

#[tokio::test]
async fn a_last_seq_before_an_ack_or_past_the_last_frame_is_replay_unavailable() {
    let runtime = durable_runtime(30.0, BUFFER, &[]);
    for case in ["before_ack", "past_end"] {
        let (mut peer, opened) = DurablePeer::open(&runtime.url).await;
        peer.send_seq(invocation("STREAM:10"), 1).await;
        let mut got = Received::default();
        until_terminal(&mut peer, &mut got).await;
        let last = got.last_seq();
        assert_eq!(last, 11, "10 messages and the result");
        peer.ack(last).await;
        drop(peer);
        // A resume's last_seq counts as an ack too, and unlike the ack message (which a
        // busy runtime may not have read before the drop) it is applied before the
        // resumed frame comes back.
        let (peer, runtime_last) =
            DurablePeer::resumed(&runtime.url, &opened.id, &opened.key, last).await;
        assert_eq!(runtime_last, 1);
        drop(peer);
        let asked = if case == "before_ack" { 3 } else { last + 5 };
        let (mut peer, first) =
            DurablePeer::resume(&runtime.url, &opened.id, &opened.key, asked).await;
        assert_refused(&mut peer, first, "replay_unavailable").await;
    }
}

#[tokio::test]
async fn end_session_across_a_cut_is_confirmed_once_and_the_session_then_ends() {
    let runtime = durable_runtime(30.0, BUFFER, &[]);
    let proxy = CutProxy::to_url(&runtime.url).await.unwrap();
    let (mut peer, opened) = DurablePeer::open(&proxy.ws_url()).await;
    peer.send_seq(invocation("ECHO:x"), 1).await;
    let mut got = Received::default();
    until_terminal(&mut peer, &mut got).await;

    // The end_session goes out whole; the confirm is cut after its first byte.
    proxy.cut_live_after(Direction::ToClient, 1);
    peer.send_seq(json!({"message_type": "end_session_message"}), 2)
        .await;
    let mut cut_frames = Vec::new();
    while let Frame::Message(frame) = peer.next().await {
        cut_frames.push(frame);
    }
    assert!(cut_frames.is_empty(), "the cut came first: {cut_frames:?}");
    drop(peer);

    let (mut peer, runtime_last) =
        DurablePeer::resumed(&proxy.ws_url(), &opened.id, &opened.key, got.last_seq()).await;
    assert_eq!(runtime_last, 2, "the runtime holds the end_session");
    // A duplicate end_session is ignored.
    peer.send_seq(json!({"message_type": "end_session_message"}), 2)
        .await;
    let confirm = peer.recv().await;
    assert_eq!(
        confirm["message_type"], "end_session_confirm_message",
        "{confirm}"
    );
    got.take(confirm.clone());
    peer.ack(seq_of(&confirm)).await;
    // Nothing follows the confirm but, perhaps, the runtime's close; a client closes
    // with 1000 after the confirm in any case.
    match peer.try_next(Duration::from_secs(2)).await {
        None => {
            eprintln!("end_session: the runtime waited for the client's close after the ack");
            peer.close_with(1000).await;
        }
        Some(Frame::Closed(close)) => {
            eprintln!("end_session: the runtime closed after the ack: {close:?}");
            if let Some((code, _)) = close {
                assert_eq!(code, 1000);
            }
        }
        Some(Frame::Message(extra)) => panic!("a frame after the confirm: {extra}"),
    }
    let (mut peer, first) =
        DurablePeer::resume(&runtime.url, &opened.id, &opened.key, got.last_seq()).await;
    assert_refused(&mut peer, first, "ended").await;
}

/// The runtime acknowledges the client's frames as the session takes them (so that a
/// client need not keep them for a resume), and goes on doing so after a resume.
#[tokio::test]
async fn the_runtime_acknowledges_client_frames_as_the_session_takes_them() {
    let runtime = durable_runtime(30.0, BUFFER, &[]);
    let (mut peer, opened) = DurablePeer::open(&runtime.url).await;
    let mut got = Received::default();
    for seq in 1..=3 {
        peer.send_seq(invocation(&format!("ECHO:{seq}")), seq).await;
        let terminal = until_terminal(&mut peer, &mut got).await;
        assert_eq!(terminal["data"]["text"], seq.to_string(), "{terminal}");
        peer.wait_runtime_ack(seq).await;
    }
    drop(peer);
    let (mut peer, runtime_last) =
        DurablePeer::resumed(&runtime.url, &opened.id, &opened.key, got.last_seq()).await;
    assert_eq!(runtime_last, 3);
    peer.send_seq(invocation("ECHO:4"), 4).await;
    let terminal = until_terminal(&mut peer, &mut got).await;
    assert_eq!(terminal["data"]["text"], "4", "{terminal}");
    peer.wait_runtime_ack(4).await;
}

/// A resume whose `last_seq` covers the end_session confirm acknowledges it: the session
/// is over even though the old connection is still open and never sent its ack (two TCP
/// connections are not ordered, so a client's ack and close may be read after its resume).
#[tokio::test]
async fn a_resume_past_the_confirm_is_refused_ended_while_the_old_connection_is_open() {
    let runtime = durable_runtime(30.0, BUFFER, &[]);
    let (mut peer, opened) = DurablePeer::open(&runtime.url).await;
    peer.send_seq(json!({"message_type": "end_session_message"}), 1)
        .await;
    let confirm = peer.recv().await;
    assert_eq!(
        confirm["message_type"], "end_session_confirm_message",
        "{confirm}"
    );
    // No ack, no close: the old connection stays open while the client resumes.
    let (mut resumed, first) =
        DurablePeer::resume(&runtime.url, &opened.id, &opened.key, seq_of(&confirm)).await;
    assert_refused(&mut resumed, first, "ended").await;
    // The session is retired: the old connection closes and a later resume is refused too.
    if let Frame::Message(extra) = peer.next().await {
        panic!("a frame after the confirm: {extra}");
    }
    let (mut again, first) = DurablePeer::resume(&runtime.url, &opened.id, &opened.key, 0).await;
    assert_refused(&mut again, first, "ended").await;
}

/// A cancel cut before it reaches the runtime (its first byte only), and one that
/// arrived but whose terminal was cut: re-sent after the resume each time, each applies
/// once, and the next request is not cancelled by a late duplicate.
#[tokio::test]
async fn a_cancel_around_a_cut_is_neither_lost_nor_applied_twice() {
    let runtime = durable_runtime(30.0, BUFFER, &[]);
    let proxy = CutProxy::to_url(&runtime.url).await.unwrap();
    let (mut peer, opened) = DurablePeer::open(&proxy.ws_url()).await;
    let mut got = Received::default();
    let mut seq = 0;
    for case in ["cancel_cut", "terminal_cut"] {
        let terminals_before = got.frames.iter().filter(|f| is_terminal(f)).count();
        seq += 1;
        let request_seq = seq;
        peer.send_seq(invocation("SLOW:60000"), request_seq).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        seq += 1;
        let cancel_seq = seq;
        if case == "cancel_cut" {
            // Only the cancel's first byte gets through.
            proxy.cut_live_after(Direction::ToTarget, 1);
        }
        peer.send_seq(json!({"message_type": "cancel_message"}), cancel_seq)
            .await;
        if case == "terminal_cut" {
            // The next runtime frame (the cancel's terminal) is cut.
            proxy.cut_live_after(Direction::ToClient, 0);
        }
        // Whatever got through before the cut.
        while let Frame::Message(frame) = peer.next().await {
            got.take(frame);
        }
        drop(peer);
        let (mut resumed, runtime_last) =
            DurablePeer::resumed(&proxy.ws_url(), &opened.id, &opened.key, got.last_seq()).await;
        if case == "cancel_cut" {
            // The cancel's first byte is no frame. The invocation, sent 300 ms before, is
            // normally held, but a cut (a reset) on a busy machine may find it still
            // unread in the runtime's socket: then it is re-sent, as a client does.
            assert!(runtime_last < cancel_seq, "{case}: {runtime_last}");
            resumed
                .resend_after(runtime_last, &[(request_seq, invocation("SLOW:60000"))])
                .await;
        } else {
            assert_eq!(
                runtime_last, cancel_seq,
                "{case}: the terminal came after it"
            );
        }
        // Re-sent (or, when it had arrived, sent again: a duplicate to ignore).
        resumed
            .send_seq(json!({"message_type": "cancel_message"}), cancel_seq)
            .await;
        if got.frames.iter().filter(|f| is_terminal(f)).count() == terminals_before {
            let terminal = until_terminal(&mut resumed, &mut got).await;
            assert_eq!(terminal["error"], "Request cancelled", "{case}: {terminal}");
        }
        peer = resumed;
    }
    // A late duplicate of the last cancel must not hit a new request.
    peer.send_seq(json!({"message_type": "cancel_message"}), seq)
        .await;
    seq += 1;
    peer.send_seq(invocation("SLOW:300"), seq).await;
    let terminal = until_terminal(&mut peer, &mut got).await;
    assert_eq!(terminal["data"]["text"], "done", "{terminal}");
    let cancelled: Vec<&Value> = got
        .frames
        .iter()
        .filter(|f| f["message_type"] == "error_message")
        .collect();
    assert_eq!(
        cancelled.len(),
        2,
        "one terminal per cancelled request: {cancelled:?}"
    );
    assert!(cancelled.iter().all(|f| f["error"] == "Request cancelled"));
}

#[tokio::test]
async fn a_second_connection_takes_the_session_over_and_the_first_gets_4001() {
    let runtime = durable_runtime(30.0, BUFFER, &[]);
    let (mut first, opened) = DurablePeer::open(&runtime.url).await;
    first.send_seq(invocation("SLOW:1500"), 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut second, runtime_last) =
        DurablePeer::resumed(&runtime.url, &opened.id, &opened.key, 0).await;
    second
        .resend_after(runtime_last, &[(1, invocation("SLOW:1500"))])
        .await;
    match first.next().await {
        Frame::Closed(Some((code, reason))) => {
            assert_eq!(code, CLOSE_TAKEN_OVER);
            assert!(reason.contains("taken over"), "{reason}");
        }
        other => panic!("the old connection must be closed with 4001: {other:?}"),
    }
    let mut got = Received::default();
    let terminal = until_terminal(&mut second, &mut got).await;
    assert_eq!(terminal["data"]["text"], "done");
}

#[tokio::test]
async fn two_clients_racing_to_resume_end_with_one_owner() {
    let runtime = durable_runtime(30.0, BUFFER, &[]);
    for round in 0..3 {
        let (mut first, opened) = DurablePeer::open(&runtime.url).await;
        first.send_seq(invocation("SLOW:2500"), 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(first);
        let headers = resume_headers(&opened.id, &opened.key, 0);
        let (a, b) = tokio::join!(
            DurablePeer::connect_with(&runtime.url, &headers),
            DurablePeer::connect_with(&runtime.url, &headers),
        );
        // Each peer's fate, in words (a silence is reported, not waited out twice).
        let outcome = |peer: Result<DurablePeer, _>| async move {
            let mut peer: DurablePeer = peer.expect("upgrade");
            match peer.try_next(FRAME_TIMEOUT).await {
                None => return "silent before its first frame".to_owned(),
                Some(Frame::Message(m)) if m["message_type"] == "session_resumed_message" => {
                    // A takeover leaves a frame the old connection had not read yet
                    // with it: re-sent, as a client does.
                    let runtime_last = m["last_seq"].as_u64().expect("last_seq");
                    peer.resend_after(runtime_last, &[(1, invocation("SLOW:2500"))])
                        .await;
                }
                Some(Frame::Message(m)) if m["message_type"] == "error_message" => {
                    assert_eq!(m["metadata"]["error_name"], "ResumeRefused", "{m}");
                    return "refused".to_owned();
                }
                Some(other) => return format!("first frame {other:?}"),
            }
            let mut got = Received::default();
            loop {
                match peer.try_next(FRAME_TIMEOUT).await {
                    None => return format!("silent after resumed and {:?}", got.frames),
                    Some(Frame::Message(m)) => {
                        let terminal = is_terminal(&m);
                        got.take(m.clone());
                        if terminal {
                            assert_eq!(m["data"]["text"], "done", "{m}");
                            return "owner".to_owned();
                        }
                    }
                    Some(Frame::Closed(Some((code, _)))) if code == CLOSE_TAKEN_OVER => {
                        return "taken_over".to_owned();
                    }
                    Some(Frame::Closed(close)) => return format!("closed {close:?}"),
                }
            }
        };
        let (a, b) = tokio::join!(outcome(a), outcome(b));
        let mut outcomes = [a, b];
        outcomes.sort();
        assert!(
            outcomes == ["owner", "refused"] || outcomes == ["owner", "taken_over"],
            "round {round}: {outcomes:?}"
        );
    }
}

#[tokio::test]
async fn the_token_applies_to_a_resume() {
    let runtime = durable_runtime(30.0, BUFFER, &["--token", "resume-test-token"]);
    let authorised = format!("{}/?token=resume-test-token", runtime.url);
    let (mut peer, opened) = DurablePeer::open(&authorised).await;
    peer.send_seq(invocation("SLOW:800"), 1).await;
    drop(peer);
    let refused = DurablePeer::connect_with(
        &runtime.url,
        &[
            ("x-runtimeuse-session-id", opened.id.clone()),
            ("x-runtimeuse-resume-key", opened.key.clone()),
            ("x-runtimeuse-last-seq", "0".into()),
        ],
    )
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        Err(other) => panic!("expected HTTP 401, got {other}"),
        Ok(_) => panic!("a resume without the token was accepted"),
    }
    let (mut peer, runtime_last) =
        DurablePeer::resumed(&authorised, &opened.id, &opened.key, 0).await;
    peer.resend_after(runtime_last, &[(1, invocation("SLOW:800"))])
        .await;
    let mut got = Received::default();
    let terminal = until_terminal(&mut peer, &mut got).await;
    assert_eq!(terminal["data"]["text"], "done");
}

#[tokio::test]
async fn grace_expiry_kills_the_tree_and_a_later_resume_is_refused_expired() {
    let runtime = durable_runtime(2.0, BUFFER, &[]);
    let proxy = CutProxy::to_url(&runtime.url).await.unwrap();
    let (mut peer, opened) = DurablePeer::open(&proxy.ws_url()).await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    peer.send_seq(
        command_execution(&[&common::grandchild_command(&pid_file)]),
        1,
    )
    .await;
    let pid = common::read_pid_file(&pid_file).await;
    proxy.set_refusing(true);
    proxy.cut();
    drop(peer);
    assert!(
        common::process_alive(pid),
        "a detached session keeps its work"
    );
    assert!(
        common::wait_gone(pid, Duration::from_secs(20)).await,
        "the tree of an expired session dies ({pid})"
    );
    let (mut peer, first) = DurablePeer::resume(&runtime.url, &opened.id, &opened.key, 0).await;
    assert_refused(&mut peer, first, "expired").await;
}

#[tokio::test]
async fn a_client_close_with_1000_ends_a_durable_session_at_once() {
    let runtime = durable_runtime(30.0, BUFFER, &[]);
    let (mut peer, opened) = DurablePeer::open(&runtime.url).await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    peer.send_seq(
        command_execution(&[&common::grandchild_command(&pid_file)]),
        1,
    )
    .await;
    let pid = common::read_pid_file(&pid_file).await;
    peer.close_with(1000).await;
    assert!(
        common::wait_gone(pid, Duration::from_secs(10)).await,
        "close 1000 ends the session and its work ({pid})"
    );
    let (mut peer, first) = DurablePeer::resume(&runtime.url, &opened.id, &opened.key, 0).await;
    // A session its client ended is `ended`, as after an acknowledged confirm.
    assert_refused(&mut peer, first, "ended").await;
}
