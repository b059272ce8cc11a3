//! `extract_zip` directly: symlinks that stay inside or escape, writing through existing
//! links, cancellation, and the limits against zip bombs.

mod support;

use std::path::PathBuf;

use runtimeuse_server::unzip::{UnzipError, UnzipLimits, extract_zip, extract_zip_with};
use tokio_util::sync::CancellationToken;

use support::memory::RssWatch;
use support::zips::{Entry, REGULAR, SYMLINK, make_zip, zeros_zip};
use support::{HEAVY, MIB, RSS_BUDGET, entries};

#[test]
fn hand_made_zeros_zip_is_a_valid_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("z.zip");
    std::fs::write(&archive, zeros_zip("z.bin", 10_000, None, REGULAR)).unwrap();
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&archive).unwrap()).unwrap();
    let mut entry = zip.by_index(0).unwrap();
    let mut out = Vec::new();
    // Only the (uncomputed) CRC is wrong.
    let err = std::io::Read::read_to_end(&mut entry, &mut out).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    assert_eq!(out.len(), 1 + 258 * (9_999 / 258));
    assert!(out.iter().all(|&b| b == 0));
}

#[test]
fn zip_symlink_inside_the_destination_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.zip");
    let bytes = make_zip(&[
        ("pkg/cli.js", Entry::File(b"cli", 0o755)),
        (".bin/cli", Entry::Symlink("../pkg/cli.js")),
    ]);
    std::fs::write(&archive, bytes).unwrap();
    let dest = tmp.path().join("out");

    assert_eq!(extract_zip(&archive, &dest).unwrap(), 2);

    assert_eq!(
        std::fs::read_link(dest.join(".bin/cli")).unwrap(),
        PathBuf::from("../pkg/cli.js")
    );
    assert_eq!(std::fs::read(dest.join(".bin/cli")).unwrap(), b"cli");
}

#[test]
fn zip_chained_symlinks_that_escape_together_are_removed() {
    // Each link alone stays inside; `up/..` through `up -> .` leaves the destination.
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.zip");
    let bytes = make_zip(&[
        ("escape", Entry::Symlink("up/..")),
        ("write-out", Entry::Symlink("up/../created-outside")),
        ("up", Entry::Symlink(".")),
    ]);
    std::fs::write(&archive, bytes).unwrap();
    let dest = tmp.path().join("out");

    let err = extract_zip(&archive, &dest).unwrap_err();

    assert!(matches!(err, UnzipError::UnsafeSymlink { .. }), "{err}");
    assert!(
        !dest.join("escape").exists() && std::fs::symlink_metadata(dest.join("escape")).is_err()
    );
    assert!(std::fs::symlink_metadata(dest.join("write-out")).is_err());
}

#[test]
fn zip_entry_is_never_written_through_an_existing_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let dest = tmp.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    std::os::unix::fs::symlink(&outside, dest.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim.txt"), dest.join("file-link")).unwrap();
    let archive = tmp.path().join("a.zip");

    std::fs::write(
        &archive,
        make_zip(&[("file-link", Entry::File(b"new", 0o644))]),
    )
    .unwrap();
    extract_zip(&archive, &dest).unwrap();
    assert!(!outside.join("victim.txt").exists(), "link followed");
    assert_eq!(std::fs::read(dest.join("file-link")).unwrap(), b"new");

    std::fs::write(
        &archive,
        make_zip(&[("link/x.txt", Entry::File(b"x", 0o644))]),
    )
    .unwrap();
    let err = extract_zip(&archive, &dest).unwrap_err();
    assert!(matches!(err, UnzipError::ThroughSymlink { .. }), "{err}");
    assert!(entries(&outside).is_empty());
}

#[test]
fn zip_extraction_with_a_cancelled_token_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.zip");
    std::fs::write(&archive, make_zip(&[("a.txt", Entry::File(b"a", 0o644))])).unwrap();
    let dest = tmp.path().join("out");
    let cancel = CancellationToken::new();
    cancel.cancel();

    let err = extract_zip_with(&archive, &dest, &UnzipLimits::default(), &cancel).unwrap_err();

    assert!(matches!(err, UnzipError::Cancelled), "{err}");
    assert!(entries(&dest).is_empty());
}

fn small_limits(max_total_bytes: u64) -> UnzipLimits {
    UnzipLimits {
        max_total_bytes,
        ..UnzipLimits::default()
    }
}

#[test]
fn zip_expanding_past_the_size_limit_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("bomb.zip");
    std::fs::write(&archive, zeros_zip("big.bin", 64 * MIB, None, REGULAR)).unwrap();
    let dest = tmp.path().join("out");

    let err = extract_zip_with(
        &archive,
        &dest,
        &small_limits(MIB),
        &CancellationToken::new(),
    )
    .unwrap_err();

    assert!(matches!(err, UnzipError::TooLarge { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "zip archive expands to more than 1 MiB (the limit); refused as a possible zip bomb"
    );
    assert!(entries(&dest).is_empty(), "written: {:?}", entries(&dest));
}

#[test]
fn zip_lying_about_its_size_is_stopped_by_the_bytes_written() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("liar.zip");
    // The headers claim 10 bytes; the data inflates to 64 MiB.
    std::fs::write(&archive, zeros_zip("big.bin", 64 * MIB, Some(10), REGULAR)).unwrap();
    let dest = tmp.path().join("out");

    let err = extract_zip_with(
        &archive,
        &dest,
        &small_limits(MIB),
        &CancellationToken::new(),
    )
    .unwrap_err();

    assert!(matches!(err, UnzipError::TooLarge { .. }), "{err}");
    assert!(entries(&dest).is_empty(), "left: {:?}", entries(&dest));
}

#[test]
fn zip_within_the_size_limit_is_extracted() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.zip");
    std::fs::write(
        &archive,
        make_zip(&[
            ("a.bin", Entry::File(&[7; 1000], 0o644)),
            ("b.bin", Entry::File(&[8; 24], 0o644)),
        ]),
    )
    .unwrap();
    let dest = tmp.path().join("out");

    let n = extract_zip_with(
        &archive,
        &dest,
        &small_limits(1024),
        &CancellationToken::new(),
    )
    .unwrap();

    assert_eq!(n, 2);
    assert_eq!(std::fs::read(dest.join("a.bin")).unwrap(), [7; 1000]);
}

#[test]
fn zip_with_too_many_entries_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("many.zip");
    let names: Vec<String> = (0..5).map(|i| format!("f{i}.txt")).collect();
    let items: Vec<(&str, Entry<'_>)> = names
        .iter()
        .map(|n| (n.as_str(), Entry::File(b"x", 0o644)))
        .collect();
    std::fs::write(&archive, make_zip(&items)).unwrap();
    let dest = tmp.path().join("out");
    let limits = UnzipLimits {
        max_entries: 4,
        ..UnzipLimits::default()
    };

    let err = extract_zip_with(&archive, &dest, &limits, &CancellationToken::new()).unwrap_err();

    assert!(
        matches!(err, UnzipError::TooManyEntries { count: 5, limit: 4 }),
        "{err}"
    );
    assert!(entries(&dest).is_empty());
}

#[tokio::test]
async fn zip_symlink_with_a_huge_target_is_refused_without_reading_it() {
    let _heavy = HEAVY.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("link.zip");
    std::fs::write(&archive, zeros_zip("link", 256 * MIB, None, SYMLINK)).unwrap();
    let dest = tmp.path().join("out");

    let watch = RssWatch::start();
    let err = extract_zip(&archive, &dest).unwrap_err();
    let growth = watch.growth();

    assert!(
        matches!(err, UnzipError::SymlinkTargetTooLong { .. }),
        "{}",
        err.to_string().chars().take(200).collect::<String>()
    );
    assert!(
        err.to_string().len() < 200,
        "{} chars",
        err.to_string().len()
    );
    assert!(growth < RSS_BUDGET, "RSS grew by {} MiB", growth / MIB);
    assert!(entries(&dest).is_empty());
}

#[test]
fn zip_symlink_target_longer_than_linux_allows_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.zip");
    let fits = format!("{}a", "a/".repeat(2047)); // 4095 bytes, the most a link can hold
    std::fs::write(&archive, make_zip(&[("ok", Entry::Symlink(&fits))])).unwrap();
    let dest = tmp.path().join("out");
    extract_zip(&archive, &dest).unwrap();
    assert_eq!(
        std::fs::read_link(dest.join("ok")).unwrap(),
        PathBuf::from(&fits)
    );

    let too_long = format!("{fits}b");
    std::fs::write(
        &archive,
        make_zip(&[
            ("first.txt", Entry::File(b"x", 0o644)),
            ("long", Entry::Symlink(&too_long)),
        ]),
    )
    .unwrap();
    let err = extract_zip(&archive, &dest).unwrap_err();

    assert!(
        matches!(err, UnzipError::SymlinkTargetTooLong { ref entry } if entry == "long"),
        "{err}"
    );
    assert!(err.to_string().contains("4095"), "{err}");
    assert_eq!(entries(&dest), ["ok"], "nothing written");
}

#[test]
fn escaping_symlink_target_is_shortened_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.zip");
    let target = "../".repeat(1000);
    std::fs::write(&archive, make_zip(&[("link", Entry::Symlink(&target))])).unwrap();

    let err = extract_zip(&archive, &tmp.path().join("out")).unwrap_err();

    assert!(matches!(err, UnzipError::UnsafeSymlink { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("../../"), "{text}");
    assert!(text.len() < 300, "{} chars: {text}", text.len());
}
