use super::*;
use proptest::prelude::*;

/// Feeds `chunks` in order, then finishes; returns the events, the end and the counters.
fn run_with(parser: &mut SseParser, chunks: &[&[u8]]) -> Outcome {
    let mut events = Vec::new();
    for chunk in chunks {
        parser.push(chunk, |e| events.push(e.to_owned_event()));
    }
    let end = parser.finish();
    Outcome {
        clean: end.clean,
        incomplete: end.incomplete.map(|e| e.to_owned_event()),
        events,
        comments: parser.comments(),
        oversized: parser.oversized_events(),
        retry: parser.retry(),
        last_id: parser.last_event_id().to_vec(),
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<OwnedSseEvent>,
    clean: bool,
    incomplete: Option<OwnedSseEvent>,
    comments: u64,
    oversized: u64,
    retry: Option<u64>,
    last_id: Vec<u8>,
}

fn run(input: &[u8]) -> Outcome {
    run_with(&mut SseParser::new(), &[input])
}

/// (event type, data, last event id) of each event, as text, for readable assertions.
fn triples(input: &[u8]) -> Vec<(String, String, String)> {
    run(input)
        .events
        .into_iter()
        .map(|e| {
            (
                String::from_utf8_lossy(&e.event_type).into_owned(),
                String::from_utf8_lossy(&e.data).into_owned(),
                String::from_utf8_lossy(&e.last_event_id).into_owned(),
            )
        })
        .collect()
}

fn msg(data: &str) -> (String, String, String) {
    ("message".into(), data.into(), String::new())
}

#[test]
fn single_event_borrows_from_the_chunk() {
    let chunk = b"data: hello\n\n";
    let mut parser = SseParser::new();
    let mut seen = 0;
    parser.push(chunk, |e| {
        seen += 1;
        assert_eq!(e.data(), b"hello");
        // Zero-copy: the data points into the caller's chunk.
        assert_eq!(e.data().as_ptr(), chunk[6..].as_ptr());
        assert_eq!(e.event_type(), b"message");
        assert_eq!(e.span(), 0..12);
    });
    assert_eq!(seen, 1);
    assert!(parser.finish().clean);
}

#[test]
fn line_endings_lf_crlf_cr_and_mixed() {
    for input in [
        &b"data: a\n\ndata: b\n\n"[..],
        b"data: a\r\n\r\ndata: b\r\n\r\n",
        b"data: a\r\rdata: b\r\r",
        b"data: a\r\n\ndata: b\r\r\n",
    ] {
        assert_eq!(triples(input), vec![msg("a"), msg("b")], "{input:?}");
    }
}

#[test]
fn crlf_split_across_chunks_is_one_line_ending() {
    let mut parser = SseParser::new();
    let mut got = Vec::new();
    for chunk in [&b"data: a\r"[..], b"\n", b"\r", b"\ndata: b\r\n\r", b"\n"] {
        parser.push(chunk, |e| got.push(e.to_owned_event()));
    }
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].data, b"a");
    assert_eq!(got[1].data, b"b");
    // The same spans as in one chunk.
    let whole = run(b"data: a\r\n\r\ndata: b\r\n\r\n").events;
    assert_eq!(got, whole);
    assert!(parser.finish().clean);
}

#[test]
fn multi_line_data_is_joined_with_lf() {
    assert_eq!(
        triples(b"data: first\ndata: second\ndata\ndata:third\n\n"),
        vec![msg("first\nsecond\n\nthird")]
    );
    // The WHATWG example: "YHOO\n+2\n10".
    assert_eq!(
        triples(b"data: YHOO\ndata: +2\ndata: 10\n\n"),
        vec![msg("YHOO\n+2\n10")]
    );
}

#[test]
fn event_field_sets_the_type_and_resets_after_dispatch() {
    assert_eq!(
        triples(b"event: add\ndata: 73857293\n\nevent: \ndata: x\n\ndata: y\n\n"),
        vec![
            ("add".into(), "73857293".into(), String::new()),
            msg("x"),
            msg("y"),
        ]
    );
}

#[test]
fn id_persists_and_nul_ids_are_ignored() {
    let got = triples(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 7\0x\ndata: d\n\n");
    assert_eq!(
        got.iter().map(|t| t.2.as_str()).collect::<Vec<_>>(),
        ["1", "1", "", ""]
    );
    // An id without data dispatches nothing but still sets the stream's last id.
    let out = run(b"id: 42\n\n");
    assert!(out.events.is_empty());
    assert_eq!(out.last_id, b"42");
}

#[test]
fn retry_accepts_only_ascii_digits() {
    assert_eq!(run(b"retry: 1500\n\n").retry, Some(1500));
    for bad in [
        &b"retry: 15s\n\n"[..],
        b"retry: -1\n\n",
        b"retry:\n\n",
        b"retry: 99999999999999999999999\n\n",
    ] {
        assert_eq!(run(bad).retry, None, "{bad:?}");
    }
    assert_eq!(run(b"retry: 10\n\nretry: x\n\n").retry, Some(10));
}

#[test]
fn comments_are_ignored_and_counted() {
    let out = run(b": keep-alive\n\n:\ndata: a\n: inside\n\n: trailing\n");
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].data, b"a");
    assert_eq!(out.comments, 4);
    assert!(out.clean, "a trailing comment is not a cut event");
}

#[test]
fn field_without_colon_has_empty_value() {
    assert_eq!(triples(b"data\n\n"), vec![msg("")]);
    assert_eq!(triples(b"data\ndata\n\n"), vec![msg("\n")]);
    // "event" alone resets the type to the default.
    assert_eq!(triples(b"event\ndata: z\n\n"), vec![msg("z")]);
}

#[test]
fn only_one_space_after_the_colon_is_removed() {
    assert_eq!(
        triples(b"data:no-space\n\ndata:  two\n\ndata:\tTab\n\n"),
        vec![msg("no-space"), msg(" two"), msg("\tTab")]
    );
    assert_eq!(triples(b"data: a:b: c\n\n"), vec![msg("a:b: c")]);
}

#[test]
fn unknown_fields_and_wrong_case_are_ignored() {
    assert_eq!(
        triples(b"foo: bar\nDATA: no\nData: no\ndata: yes\n\n"),
        vec![msg("yes")]
    );
}

#[test]
fn an_event_without_data_is_not_dispatched() {
    let out = run(b"event: ping\n\nid: 3\n\n\n\ndata: x\n\n");
    assert_eq!(out.events.len(), 1);
    assert_eq!(
        out.events[0].event_type, b"message",
        "type reset after the empty event"
    );
    assert_eq!(out.events[0].last_event_id, b"3");
}

#[test]
fn done_sentinel() {
    let mut dones = Vec::new();
    SseParser::new().push(
        b"data: {\"a\":1}\n\ndata: [DONE]\n\ndata:[DONE] \n\ndata: [DONE]x\n\n",
        |e| dones.push(e.is_done()),
    );
    assert_eq!(dones, [false, true, true, false]);
}

#[test]
fn utf8_split_across_chunks() {
    let text = "data: héllo → 世界 🦀\n\n".as_bytes();
    for split in 0..text.len() {
        let (a, b) = text.split_at(split);
        let mut got = Vec::new();
        let mut parser = SseParser::new();
        parser.push(a, |e| got.push(e.data_str().map(str::to_owned)));
        parser.push(b, |e| got.push(e.data_str().map(str::to_owned)));
        assert_eq!(
            got,
            [Some("héllo → 世界 🦀".to_owned())],
            "split at {split}"
        );
    }
    // Invalid UTF-8 passes through as bytes.
    let out = run(b"data: \xff\xfe\n\n");
    assert_eq!(out.events[0].data, b"\xff\xfe");
}

#[test]
fn leading_bom_is_skipped_once_even_when_split() {
    let input = b"\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n";
    let whole = run(input);
    assert_eq!(
        whole.events.len(),
        1,
        "the second BOM makes an unknown field name"
    );
    assert_eq!(whole.events[0].data, b"a");
    assert_eq!(whole.events[0].span, 3..11);
    let split = run_with(
        &mut SseParser::new(),
        &[&input[..1], &input[1..2], &input[2..]],
    );
    assert_eq!(split, whole);
    // A BOM prefix that turns out not to be one is part of the first line.
    let out = run(b"\xEF\xBBdata: a\n\ndata: b\n\n");
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].data, b"b");
    assert_eq!(
        run_with(
            &mut SseParser::new(),
            &[b"\xEF", b"\xBB", b"data: a\n\ndata: b\n\n"]
        ),
        out
    );
}

#[test]
fn finish_reports_clean_end_and_incomplete_event() {
    let mut parser = SseParser::new();
    parser.push(b"data: a\n\n", |_| {});
    let end = parser.finish();
    assert!(end.clean);
    assert!(end.incomplete.is_none());

    let mut parser = SseParser::new();
    parser.push(b"data: a\n\nevent: x\ndata: {\"par", |_| {});
    let end = parser.finish();
    assert!(!end.clean);
    let inc = end.incomplete.map(|e| e.to_owned_event());
    let inc = inc
        .as_ref()
        .map(|e| (e.event_type.as_slice(), e.data.as_slice(), e.span.clone()));
    assert_eq!(inc, Some((&b"x"[..], &b"{\"par"[..], 9..29)));
    // Asking again gives the same answer.
    assert!(!parser.finish().clean);

    // A data line with its line ending but no blank line: cut, not dispatched.
    let out = run(b"data: [DONE]\n");
    assert!(out.events.is_empty());
    assert!(!out.clean);
    assert!(out.incomplete.is_some_and(|e| e.data == b"[DONE]"));

    // A field line without data still makes the end unclean, but there is no event.
    let out = run(b"event: x\n");
    assert!(!out.clean);
    assert!(out.incomplete.is_none());

    // Empty stream and blank-line-only stream are clean.
    assert!(run(b"").clean);
    assert!(run(b"\n\n\r\n").clean);
    assert!(!run(b": partial comment").clean);
    assert!(!run(b"\xEF\xBB").clean);
}

#[test]
fn reset_starts_a_new_stream() {
    let mut parser = SseParser::new();
    parser.push(b"id: 9\nretry: 5\ndata: a", |_| {});
    parser.reset();
    let out = run_with(&mut parser, &[b"data: b\n\n"]);
    assert_eq!(out.events[0].data, b"b");
    assert_eq!(out.events[0].last_event_id, b"");
    assert_eq!(out.events[0].span, 0..8);
    assert_eq!(out.retry, None);
}

#[test]
fn oversized_events_are_dropped_and_counted() {
    // 20 bytes max; "data: 0123456789abcdef\n" is 23.
    let input = b"data: ok\n\ndata: 0123456789abcdef\ndata: more\n\ndata: ok2\n\n";
    let mut parser = SseParser::with_max_event_size(20);
    let out = run_with(&mut parser, &[input]);
    assert_eq!(
        out.events
            .iter()
            .map(|e| e.data.as_slice())
            .collect::<Vec<_>>(),
        [&b"ok"[..], b"ok2"]
    );
    assert_eq!(out.oversized, 1);
    // Byte by byte: the same, and the partial line never grows past the bound.
    let mut parser = SseParser::with_max_event_size(20);
    let mut events = Vec::new();
    for b in input.chunks(1) {
        parser.push(b, |e| events.push(e.to_owned_event()));
        assert!(parser.line.len() <= 20 && parser.data.len() <= 20);
    }
    assert_eq!(events, out.events);
    assert_eq!(parser.oversized_events(), 1);

    // A never-ending line is not buffered forever.
    let mut parser = SseParser::with_max_event_size(1024);
    for _ in 0..1000 {
        parser.push(&[b'x'; 100], |_| unreachable!());
    }
    assert!(parser.line.capacity() <= 2048);
    let end = parser.finish();
    assert!(!end.clean && end.incomplete.is_none());
}

#[test]
fn spans_cover_the_event_lines() {
    let input = b": hi\ndata: a\n\nevent: e\r\ndata: b\r\n\r\n";
    let out = run(input);
    assert_eq!(out.events[0].span, 0..13);
    assert_eq!(&input[0..13], b": hi\ndata: a\n");
    let s = &out.events[1].span;
    assert_eq!(s, &(14..33));
    assert_eq!(&input[14..33], b"event: e\r\ndata: b\r\n");
    // Cutting the first event's span out leaves a stream that yields only the second.
    let cut = &input[13..];
    assert_eq!(triples(cut), vec![("e".into(), "b".into(), String::new())]);
}

#[test]
fn openai_chat_stream() {
    let stream = concat!(
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
            ": OPENROUTER PROCESSING\n\n",
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: [DONE]\n\n",
        );
    let out = run(stream.as_bytes());
    assert_eq!(out.events.len(), 3);
    assert!(out.clean);
    assert_eq!(out.comments, 1);
    assert_eq!(out.events[2].data, b"[DONE]");
}

/// A deliberately naive implementation of the spec (whole input, owned strings), used as
/// the reference for the streaming parser.
fn reference(input: &[u8]) -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let input = input.strip_prefix(&BOM[..]).unwrap_or(input);
    let mut lines = Vec::new();
    let mut cur = Vec::new();
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' => {
                lines.push(std::mem::take(&mut cur));
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => lines.push(std::mem::take(&mut cur)),
            b => cur.push(b),
        }
        i += 1;
    }
    let (mut data, mut event, mut id, mut out) = (Vec::new(), Vec::new(), Vec::new(), vec![]);
    let mut has_data = false;
    for line in lines {
        if line.is_empty() {
            if has_data {
                data.pop();
                let ty = if event.is_empty() {
                    b"message".to_vec()
                } else {
                    event.clone()
                };
                out.push((ty, data.clone(), id.clone()));
            }
            data.clear();
            event.clear();
            has_data = false;
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (name, mut value) = match line.iter().position(|&b| b == b':') {
            Some(c) => (&line[..c], &line[c + 1..]),
            None => (&line[..], &[][..]),
        };
        if value.first() == Some(&b' ') {
            value = &value[1..];
        }
        match name {
            b"data" => {
                data.extend_from_slice(value);
                data.push(b'\n');
                has_data = true;
            }
            b"event" => event = value.to_vec(),
            b"id" if !value.contains(&0) => id = value.to_vec(),
            _ => {}
        }
    }
    out
}

/// Streams built from SSE-ish pieces: every kind of line, every line ending, UTF-8 and
/// stray control bytes, so that random splits land on the interesting places.
fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"data".to_vec()),
        Just(b"event: ".to_vec()),
        Just(b"id: ".to_vec()),
        Just(b"retry: ".to_vec()),
        Just(b": ".to_vec()),
        Just(b":".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just(b"{\"choices\":[{\"delta\":{\"content\":\"h\xc3\xa9\"}}]}".to_vec()),
        Just("世界🦀".as_bytes().to_vec()),
        Just(b"\xEF\xBB\xBF".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"123".to_vec()),
        Just(b" ".to_vec()),
        "[a-z]{0,8}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

/// Split points: sorted offsets inside `len`.
fn split(input: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for c in cuts {
        out.push(input[last..c].to_vec());
        last = c;
    }
    out.push(input[last..].to_vec());
    out
}

fn outcome_of_chunks(max: usize, chunks: &[Vec<u8>]) -> Outcome {
    let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    run_with(&mut SseParser::with_max_event_size(max), &refs)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_split_gives_the_same_events(
        input in sse_stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = outcome_of_chunks(DEFAULT_MAX_EVENT_SIZE, std::slice::from_ref(&input));
        prop_assert_eq!(&outcome_of_chunks(DEFAULT_MAX_EVENT_SIZE, &split(&input, &cuts)), &whole);
        let bytes: Vec<Vec<u8>> = input.chunks(1).map(<[u8]>::to_vec).collect();
        prop_assert_eq!(&outcome_of_chunks(DEFAULT_MAX_EVENT_SIZE, &bytes), &whole);
    }

    #[test]
    fn matches_the_reference_implementation(input in sse_stream()) {
        let got: Vec<_> = run(&input)
            .events
            .into_iter()
            .map(|e| (e.event_type, e.data, e.last_event_id))
            .collect();
        prop_assert_eq!(got, reference(&input));
    }

    #[test]
    fn cutting_an_event_span_removes_just_that_event(input in sse_stream(), pick in any::<usize>()) {
        let events = run(&input).events;
        let mut last_end = 0;
        for e in &events {
            prop_assert!(last_end <= e.span.start && e.span.start <= e.span.end);
            prop_assert!(e.span.end <= input.len() as u64);
            last_end = e.span.end;
        }
        if !events.is_empty() {
            let k = pick % events.len();
            let span = &events[k].span;
            let mut cut = input[..span.start as usize].to_vec();
            cut.extend_from_slice(&input[span.end as usize..]);
            let typed = |evs: Vec<OwnedSseEvent>| -> Vec<(Vec<u8>, Vec<u8>)> {
                evs.into_iter().map(|e| (e.event_type, e.data)).collect()
            };
            let mut expected = events.clone();
            expected.remove(k);
            prop_assert_eq!(typed(run(&cut).events), typed(expected));
        }
    }

    #[test]
    fn small_bounds_drop_the_same_events_however_split(
        input in sse_stream(),
        max in 0usize..64,
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = outcome_of_chunks(max, std::slice::from_ref(&input));
        prop_assert_eq!(&outcome_of_chunks(max, &split(&input, &cuts)), &whole);
        for e in &whole.events {
            // The raw event (each line plus one byte) fits the bound.
            prop_assert!(e.data.len() <= max);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_split_alike(
        input in proptest::collection::vec(
            prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(b'd'), any::<u8>()],
            0..200,
        ),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let whole = outcome_of_chunks(DEFAULT_MAX_EVENT_SIZE, std::slice::from_ref(&input));
        prop_assert_eq!(&outcome_of_chunks(DEFAULT_MAX_EVENT_SIZE, &split(&input, &cuts)), &whole);
    }
}
