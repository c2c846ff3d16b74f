use super::files::{rotated_stamp_ms, utc_stamp, MAX_SLUG_LEN};
use super::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::fs;
use std::path::Path;

fn config(dir: &Path) -> ChatLogConfig {
    ChatLogConfig {
        dir: dir.to_path_buf(),
        ..ChatLogConfig::default()
    }
}

fn lines(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn rec(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"seq": i, "answer": "hello\nworld"})).unwrap()
}

#[tokio::test]
async fn writes_valid_jsonl_per_route() {
    let tmp = tempfile::tempdir().unwrap();
    let log = ChatLog::start(config(tmp.path()));
    for i in 0..100 {
        log.record("/openai", rec(i));
        log.record("/", rec(i));
        log.record("/a/b", rec(i));
    }
    log.flush().await;
    for slug in ["openai", "root", "a_b"] {
        let got = lines(&tmp.path().join(slug).join(ACTIVE_FILE));
        assert_eq!(got.len(), 100, "{slug}");
        for (i, v) in got.iter().enumerate() {
            assert_eq!(v["seq"], i, "{slug} keeps order");
            assert_eq!(v["answer"], "hello\nworld");
        }
    }
    assert_eq!(log.written(), 300);
    assert_eq!((log.dropped(), log.errors()), (0, 0));
}

#[tokio::test]
async fn record_json_and_raw_newlines_stay_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let log = ChatLog::start(config(tmp.path()));
    let pretty = serde_json::to_vec_pretty(&json!({"a": [1, 2], "b": "x"})).unwrap();
    log.record("/r", pretty);
    log.record_json("/r", &json!({"c": true}));
    log.record("/r", b" \n ".to_vec()); // blank: dropped, not an empty line
    log.flush_and_stop().await;
    let got = lines(&tmp.path().join("r").join(ACTIVE_FILE));
    assert_eq!(
        got,
        vec![json!({"a": [1, 2], "b": "x"}), json!({"c": true})]
    );
    assert_eq!(log.dropped(), 1);
}

#[test]
fn slugs() {
    for (route, slug) in [
        ("/", "root"),
        ("", "root"),
        ("/openai", "openai"),
        ("/a/b", "a_b"),
        ("/a//b/", "a_b"),
        ("/../etc/passwd", "etc_passwd"),
        ("/v1.beta", "v1_beta"),
        ("/Gemini-Pro", "Gemini-Pro"),
        ("/模型", "root"),
    ] {
        assert_eq!(route_slug(route), slug, "{route:?}");
    }
    assert_eq!(route_slug(&"/x".repeat(500)).len(), MAX_SLUG_LEN - 1);
}

proptest! {
    #[test]
    fn slug_is_always_a_safe_file_name(route in any::<String>()) {
        let slug = route_slug(&route);
        prop_assert!(!slug.is_empty() && slug.len() <= MAX_SLUG_LEN);
        prop_assert!(slug.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        prop_assert!(!slug.starts_with('_') && !slug.ends_with('_'));
    }

    #[test]
    fn stamps_are_rotated_names_in_time_order(a in 0u64..8_000_000_000_000, b in 0u64..8_000_000_000_000) {
        let name = |ms: u64| format!("chat.{}.jsonl", utc_stamp(ms));
        prop_assert!(is_rotated_name(&name(a)));
        prop_assert_eq!(a.cmp(&b), name(a).cmp(&name(b)));
        prop_assert_eq!(rotated_stamp_ms(Path::new(&name(a))), Some(a));
    }
}

#[test]
fn utc_stamps() {
    let at = |s: u64, ms: u64| utc_stamp(s * 1000 + ms);
    assert_eq!(at(0, 0), "19700101T000000.000Z");
    assert_eq!(at(951_782_400, 5), "20000229T000000.005Z");
    assert_eq!(at(1_714_566_896, 789), "20240501T123456.789Z");
    assert!(!is_rotated_name("chat.jsonl"));
    assert!(!is_rotated_name("chat.20240501T123456Z.jsonl"));
    assert!(!is_rotated_name("chat.20240501T123456.789Z.jsonl.tmp"));
}

#[tokio::test]
async fn rotation_and_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let log = ChatLog::start(ChatLogConfig {
        max_file_bytes: 1_000,
        keep_files: 3,
        ..config(tmp.path())
    });
    let line = |i: usize| format!(r#"{{"seq":{i},"pad":"{}"}}"#, "x".repeat(80)).into_bytes();
    let total = 200; // ~95 bytes each: ~10 per file, ~20 rotations
    for i in 0..total {
        log.record("/openai", line(i));
        if i % 7 == 0 {
            log.flush().await; // rotation must also work across flushes
        }
    }
    log.flush_and_stop().await;
    assert_eq!((log.dropped(), log.errors()), (0, 0));

    let files = log_files(&tmp.path().join("openai")).unwrap();
    assert_eq!(files.len(), 4, "3 rotated + active: {files:?}");
    assert!(files[3].ends_with(ACTIVE_FILE));
    let mut seqs = Vec::new();
    for f in &files {
        assert!(fs::metadata(f).unwrap().len() <= 1_000, "{f:?} too big");
        seqs.extend(lines(f).iter().map(|v| v["seq"].as_u64().unwrap()));
    }
    // The newest records survive, contiguous and in order across the kept files.
    let first = seqs[0];
    let expected: Vec<u64> = (first..total as u64).collect();
    assert_eq!(seqs, expected);
}

#[tokio::test]
async fn rotated_names_stay_in_write_order_when_the_clock_is_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("root");
    fs::create_dir_all(&dir).unwrap();
    // A file from "the future" (clock stepped back since, or a restored backup).
    fs::write(dir.join("chat.20990101T000000.000Z.jsonl"), "{}\n").unwrap();
    let log = ChatLog::start(ChatLogConfig {
        max_file_bytes: 1,
        keep_files: 100,
        ..config(tmp.path())
    });
    for i in 0..3 {
        log.record("/", rec(i));
    }
    log.flush_and_stop().await;
    let names: Vec<_> = log_files(&dir)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "chat.20990101T000000.000Z.jsonl",
            "chat.20990101T000000.001Z.jsonl",
            "chat.20990101T000000.002Z.jsonl",
            ACTIVE_FILE
        ]
    );
    assert_eq!(lines(&dir.join(ACTIVE_FILE))[0]["seq"], 2);
}

#[tokio::test]
async fn full_queue_drops_and_counts_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let log = ChatLog::start(ChatLogConfig {
        queue_capacity: 4,
        ..config(tmp.path())
    });
    let release = log.hold().await; // the writer is now parked: nothing drains
    let started = Instant::now();
    for i in 0..10 {
        log.record("/", rec(i));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "record() blocked"
    );
    assert_eq!(log.queued(), 4);
    assert_eq!(log.dropped(), 6);
    release.send(()).unwrap();
    log.flush_and_stop().await;
    assert_eq!(log.written(), 4);
    let got = lines(&tmp.path().join("root").join(ACTIVE_FILE));
    let seqs: Vec<_> = got.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [0, 1, 2, 3]);
}

#[tokio::test]
async fn flood_accounts_for_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    let log = ChatLog::start(ChatLogConfig {
        queue_capacity: 1,
        ..config(tmp.path())
    });
    for i in 0..20_000 {
        log.record("/", rec(i));
    }
    log.flush_and_stop().await;
    // How many are dropped depends on thread scheduling; that each one is counted does not.
    assert_eq!(log.written() + log.dropped(), 20_000);
    let got = lines(&tmp.path().join("root").join(ACTIVE_FILE));
    assert_eq!(got.len() as u64, log.written());
}

#[tokio::test]
async fn removed_directory_is_recreated() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("logs");
    let log = ChatLog::start(config(&base));
    for i in 0..10 {
        log.record("/openai", rec(i));
    }
    log.flush().await;
    fs::remove_dir_all(&base).unwrap();
    for i in 10..25 {
        log.record("/openai", rec(i));
    }
    log.flush().await;
    let got = lines(&base.join("openai").join(ACTIVE_FILE));
    let seqs: Vec<_> = got.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (10..25).collect::<Vec<u64>>());
    assert_eq!((log.dropped(), log.errors()), (0, 0));

    // Same with records still buffered when the directory goes.
    log.record("/openai", rec(25));
    fs::remove_dir_all(&base).unwrap();
    log.flush().await;
    assert_eq!(lines(&base.join("openai").join(ACTIVE_FILE)).len(), 1);
}

#[tokio::test]
async fn full_disk_counts_errors_and_recovers() {
    if !Path::new("/dev/full").exists() {
        eprintln!("no /dev/full: skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("openai");
    fs::create_dir_all(&dir).unwrap();
    let active = dir.join(ACTIVE_FILE);
    // Every write through this path fails with ENOSPC, even as root.
    std::os::unix::fs::symlink("/dev/full", &active).unwrap();
    let log = ChatLog::start(config(tmp.path()));
    for i in 0..50 {
        log.record("/openai", rec(i));
    }
    log.flush().await;
    assert_eq!(log.dropped(), 50);
    assert_eq!(log.written(), 0);
    assert!(log.errors() >= 1);

    // The writer is still alive: once the disk has room, logging resumes.
    for i in 50..55 {
        log.record("/openai", rec(i));
    }
    log.flush().await;
    assert!(log.errors() >= 2);
    fs::remove_file(&active).unwrap();
    for i in 55..60 {
        log.record("/openai", rec(i));
    }
    log.flush_and_stop().await;
    let seqs: Vec<_> = lines(&active)
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (55..60).collect::<Vec<u64>>());
    assert_eq!(log.dropped(), 55);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_and_stop_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let log = ChatLog::start(config(tmp.path()));
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0..2_500 {
                    log.record("/openai", rec(p * 2_500 + i));
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
    log.flush_and_stop().await;
    let got = lines(&tmp.path().join("openai").join(ACTIVE_FILE));
    assert_eq!(got.len(), 10_000);
    let mut seqs: Vec<_> = got.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..10_000).collect::<Vec<u64>>());
    assert_eq!((log.written(), log.dropped()), (10_000, 0));

    // Stopped: later records are counted, and a second stop returns at once.
    log.record("/openai", rec(0));
    assert_eq!(log.dropped(), 1);
    log.flush_and_stop().await;
    log.flush().await;
}

#[tokio::test]
async fn periodic_flush_without_explicit_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let log = ChatLog::start(ChatLogConfig {
        flush_interval: Duration::from_millis(20),
        ..config(tmp.path())
    });
    log.record("/", rec(1));
    let path = tmp.path().join("root").join(ACTIVE_FILE);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs::read(&path).map_or(true, |b| b.is_empty()) {
        assert!(Instant::now() < deadline, "never flushed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(lines(&path).len(), 1);
}

#[tokio::test]
async fn cut_off_last_line_is_terminated_before_appending() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("root");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(ACTIVE_FILE), b"{\"seq\":0}\n{\"seq\":1,\"cut").unwrap();
    let log = ChatLog::start(config(tmp.path()));
    log.record("/", rec(2));
    log.flush_and_stop().await;
    let text = fs::read_to_string(dir.join(ACTIVE_FILE)).unwrap();
    let parsed: Vec<bool> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).is_ok())
        .collect();
    assert_eq!(parsed, [true, false, true]);
}

#[test]
fn start_works_outside_a_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let log = ChatLog::start(config(tmp.path()));
    log.record("/", rec(0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(log.flush_and_stop());
    assert_eq!(log.written(), 1);
}

/// The hand-written RFC 3339 text is chrono's: the epoch, leap days, century rules, the ends of
/// days and years, the last millisecond of year 9999 and a spread of times in between (and
/// chrono's own text past that).
#[test]
fn record_times_are_chronos() {
    use chrono::{DateTime, SecondsFormat};
    let chrono = |ms: u64| {
        DateTime::from_timestamp_millis(ms as i64)
            .unwrap()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    };
    let mut cases = vec![
        0,
        1,
        999,
        86_399_999,
        86_400_000,
        951_782_400_000,   // 2000-02-29
        951_868_800_000,   // 2000-03-01
        1_709_164_800_000, // 2024-02-29
        4_107_542_400_000, // 2100-03-01
        1_700_000_000_123,
        1_735_689_599_999,   // 2024-12-31T23:59:59.999Z
        253_402_300_799_999, // 9999-12-31T23:59:59.999Z
        253_402_300_800_000,
        300_000_000_000_000,
    ];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        cases.push(x % 253_402_300_800_000);
    }
    for ms in cases {
        assert_eq!(rfc3339_utc(ms), chrono(ms), "{ms}");
    }
}

/// Records in parts (a shared body between head and tail), small ones through the buffer and
/// large ones written from their parts, keep their order and are the bytes of the whole line,
/// raw newlines blanked whether the body is still shared or not.
#[tokio::test]
async fn records_in_parts_are_whole_lines_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let log = ChatLog::start(config(tmp.path()));
    let big = |nl: &str| {
        let items: Vec<String> = (0..20_000).map(|i| format!("{nl}{i}")).collect();
        bytes::Bytes::from(format!("[{}{nl}]", items.join(",")))
    };
    let part = |seq: usize, body: bytes::Bytes| {
        let head = format!(r#"{{"seq":{seq},"body":"#);
        let at = head.len();
        Line::new(format!("{head}}}").into_bytes(), at, body)
    };
    let shared = big("\r\n");
    let held = shared.clone();
    log.record("/p", rec(0));
    log.record("/p", part(1, bytes::Bytes::from_static(b"[1,\n2]")));
    log.record("/p", part(2, big("")));
    log.record("/p", part(3, shared));
    log.record("/p", part(4, big("\n")));
    log.record("/p", rec(5));
    // Parked (a shared body to blank) and nothing after it: the stop writes it.
    let last = big("\n");
    let held_last = last.clone();
    log.record("/q", part(6, last));
    log.flush_and_stop().await;
    drop(held_last);
    let q = lines(&tmp.path().join("q").join(ACTIVE_FILE));
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["seq"], 6);
    // The shared body itself is never edited.
    assert_eq!(&held[..3], b"[\r\n");
    let text = fs::read_to_string(tmp.path().join("p").join(ACTIVE_FILE)).unwrap();
    let got: Vec<&str> = text.lines().collect();
    assert_eq!(got.len(), 6);
    let numbers: Vec<u64> = (0..20_000).collect();
    for (line, seq) in got.iter().zip([0, 1, 2, 3, 4, 5]) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], seq);
        if (2..=4).contains(&seq) {
            assert_eq!(v["body"], json!(numbers));
        }
    }
    assert_eq!(got[1], r#"{"seq":1,"body":[1, 2]}"#);
    assert_eq!(
        got[3],
        format!(
            r#"{{"seq":3,"body":[{}  ]}}"#,
            numbers
                .iter()
                .map(|i| format!("  {i}"))
                .collect::<Vec<_>>()
                .join(",")
        )
    );
    assert_eq!((log.written(), log.dropped()), (7, 0));
}

/// A parked record (over the buffer, raw newlines, its body still held by the request) holds
/// that whole body: it is written as soon as the request lets go, not at the flush interval.
#[tokio::test]
async fn a_parked_record_is_written_long_before_the_flush_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let log = ChatLog::start(ChatLogConfig {
        flush_interval: Duration::from_secs(60),
        ..config(tmp.path())
    });
    let items: Vec<String> = (0..20_000).map(|i| format!("\n{i}")).collect();
    let body = bytes::Bytes::from(format!("[{}\n]", items.join(",")));
    let held = body.clone();
    let head = r#"{"seq":1,"body":"#;
    log.record(
        "/p",
        Line::new(format!("{head}}}").into_bytes(), head.len(), body),
    );
    // The request lets go of its body a little after handing the record over; until then the
    // writer has to park the record. (Should the writer take longer than this to see the record,
    // it finds the body unshared and writes it at once: this test then proves less, never fails.)
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(held);
    let path = tmp.path().join("p").join(ACTIVE_FILE);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&path).is_ok_and(|t| t.ends_with('\n')) {
        assert!(
            std::time::Instant::now() < deadline,
            "not written within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let got = lines(&path);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["body"], json!((0..20_000).collect::<Vec<u64>>()));
    assert_eq!((log.written(), log.dropped()), (1, 0));
    log.flush_and_stop().await;
}
