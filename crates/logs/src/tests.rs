//! Engine tests (no HTTP): groups and streams, batches and tokens, filtering, retention,
//! bounds and recovery.

use super::*;
use kd_storage::ManualClock;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn scope() -> Scope {
    Scope {
        account: "000000000000".into(),
        region: "us-east-1".into(),
    }
}

fn open_with(dir: &std::path::Path, config: Config, clock: Arc<ManualClock>) -> Arc<Logs> {
    let meta = Arc::new(MetaStore::open(&dir.join("meta.redb")).expect("meta"));
    Logs::open(config, meta, clock).expect("open")
}

fn ev(ts: i64, m: &str) -> InputEvent {
    InputEvent {
        timestamp: ts,
        message: m.to_owned(),
    }
}

fn messages(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.message.as_str()).collect()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn events_keys(logs: &Logs) -> usize {
    logs.meta
        .scan_prefix(T_EVENTS, "")
        .map(|v| v.len())
        .unwrap_or(usize::MAX)
}

#[test]
fn names_retention_and_tokens() {
    assert!(check_group_name("/aws/lambda/my-fn_1.x#2").is_ok());
    for bad in ["", "a b", "a:b", "a*"] {
        assert!(
            matches!(check_group_name(bad), Err(Error::InvalidParameter(_))),
            "{bad:?}"
        );
    }
    assert!(check_group_name(&"a".repeat(512)).is_ok());
    assert!(check_group_name(&"a".repeat(513)).is_err());
    assert!(check_stream_name("2026/01/01/[$LATEST]0123abcd").is_ok());
    for bad in ["", "a:b", "a*b"] {
        assert!(check_stream_name(bad).is_err(), "{bad:?}");
    }
    assert_eq!(check_retention(14).ok(), Some(14));
    let msg = check_retention(2).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("Member must satisfy enum value set: [1, 3, 5, 7, 14"),
        "{msg}"
    );
    assert_eq!(
        group_arn_star(&scope(), "/aws/lambda/f"),
        "arn:aws:logs:us-east-1:000000000000:log-group:/aws/lambda/f:*"
    );
    assert_eq!(
        stream_arn(&scope(), "g", "s"),
        "arn:aws:logs:us-east-1:000000000000:log-group:g:log-stream:s"
    );
    let t = position_token('f', T0, 7);
    assert_eq!(t.len(), 58);
    assert_eq!(parse_position(&t).ok(), Some(('f', T0, 7)));
    for bad in ["x/1", "f/12", "b/abc"] {
        assert!(parse_position(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_key(&event_key("u", 5, 9)), Some((5, 9)));
}

#[tokio::test]
async fn groups_and_streams_create_describe_page_and_delete() -> Result<()> {
    let dir = tmp();
    let clock = Arc::new(ManualClock::new(T0));
    let logs = open_with(dir.path(), Config::default(), clock.clone());
    let s = scope();
    for i in 0..7 {
        logs.create_group(&s, &format!("/app/g{i}"), BTreeMap::new(), None, None)
            .await?;
    }
    logs.create_group(&s, "other", BTreeMap::from([("team".into(), "a".into())]), None, None)
        .await?;
    let dup = logs.create_group(&s, "/app/g0", BTreeMap::new(), None, None).await;
    assert!(
        matches!(&dup, Err(Error::ResourceAlreadyExists(m)) if m == "The specified log group already exists"),
        "{dup:?}"
    );
    let first = logs.describe_groups(&s, Some("/app/"), None, None, Some(3))?;
    assert_eq!(first.items.len(), 3);
    let second = logs.describe_groups(&s, Some("/app/"), None, first.next_token.as_deref(), Some(3))?;
    let third = logs.describe_groups(&s, Some("/app/"), None, second.next_token.as_deref(), Some(3))?;
    assert_eq!((second.items.len(), third.items.len()), (3, 1));
    assert!(third.next_token.is_none());
    assert_eq!(third.items[0].doc.name, "/app/g6");
    assert_eq!(logs.describe_groups(&s, None, Some("the"), None, None)?.items.len(), 1);
    assert_eq!(logs.describe_groups(&s, None, None, None, None)?.items.len(), 8);
    assert!(logs.describe_groups(&s, None, None, Some("%%%"), None).is_err());
    assert!(logs.describe_groups(&s, Some("a"), Some("b"), None, None).is_err());

    logs.create_stream(&s, "other", "b").await?;
    clock.advance(10);
    logs.create_stream(&s, "other", "a").await?;
    assert!(matches!(
        logs.create_stream(&s, "other", "a").await,
        Err(Error::ResourceAlreadyExists(_))
    ));
    let missing = logs.create_stream(&s, "nope", "a").await;
    assert!(
        matches!(&missing, Err(Error::ResourceNotFound(m)) if m == "The specified log group does not exist."),
        "{missing:?}"
    );
    logs.put_events(&s, "other", "b", &[ev(T0 + 5, "later")]).await?;
    logs.put_events(&s, "other", "a", &[ev(T0 + 1, "earlier")]).await?;
    let by_name = logs.describe_streams(&s, "other", None, false, false, None, None)?;
    assert_eq!(
        by_name.items.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    let newest = logs.describe_streams(&s, "other", None, true, true, None, Some(1))?;
    assert_eq!(newest.items[0].name, "b");
    let rest = logs.describe_streams(&s, "other", None, true, true, newest.next_token.as_deref(), Some(1))?;
    assert_eq!(rest.items[0].name, "a");
    assert!(rest.next_token.is_none());
    assert!(matches!(
        logs.describe_streams(&s, "other", Some("a"), true, false, None, None),
        Err(Error::InvalidParameter(_))
    ));
    let b = &by_name.items[1];
    assert_eq!(
        (b.first_event_ms, b.last_event_ms, b.events),
        (Some(T0 + 5), Some(T0 + 5), 1)
    );

    logs.delete_stream(&s, "other", "a").await?;
    let gone = logs.put_events(&s, "other", "a", &[ev(T0, "x")]).await;
    assert!(
        matches!(&gone, Err(Error::ResourceNotFound(m)) if m == "The specified log stream does not exist."),
        "{gone:?}"
    );
    logs.purge_trash().await?;
    assert_eq!(events_keys(&logs), 1);
    logs.set_retention(&s, "other", Some(30)).await?;
    logs.tag_group(
        &s,
        "other",
        BTreeMap::from([("env".into(), "dev".into())]),
        &["team".into()],
    )
    .await?;
    drop(logs);

    // Everything survives a reopen.
    let logs = open_with(dir.path(), Config::default(), clock);
    let g = logs
        .group(&s, "other")
        .ok_or_else(|| Error::Internal("no group".into()))?;
    assert_eq!(g.doc.retention_days, Some(30));
    assert_eq!(g.doc.tags, BTreeMap::from([("env".to_owned(), "dev".to_owned())]));
    assert_eq!(g.stored_bytes, 5 + 26);
    let page = logs.get_events(&s, "other", "b", &GetQuery::default())?;
    assert_eq!(messages(&page.events), ["later"]);
    logs.delete_group(&s, "other").await?;
    assert!(logs.group(&s, "other").is_none());
    assert!(matches!(
        logs.delete_group(&s, "other").await,
        Err(Error::ResourceNotFound(_))
    ));
    logs.purge_trash().await?;
    assert_eq!(events_keys(&logs), 0);
    Ok(())
}

#[tokio::test]
async fn put_checks_batches_and_get_pages_with_tokens() -> Result<()> {
    let dir = tmp();
    let clock = Arc::new(ManualClock::new(T0));
    let logs = open_with(dir.path(), Config::default(), clock);
    let s = scope();
    logs.create_group(&s, "g", BTreeMap::new(), None, None).await?;
    logs.create_stream(&s, "g", "s").await?;
    // Two batches, the second older: the stream reads in timestamp order.
    logs.put_events(&s, "g", "s", &[ev(T0 + 30, "e3"), ev(T0 + 40, "e4"), ev(T0 + 50, "e5")])
        .await?;
    let out = logs
        .put_events(&s, "g", "s", &[ev(T0 + 10, "e1"), ev(T0 + 20, "e2")])
        .await?;
    assert_eq!((out.accepted, out.too_new_start, out.too_old_end), (2, None, None));

    let head = logs.get_events(
        &s,
        "g",
        "s",
        &GetQuery {
            start_from_head: true,
            limit: Some(2),
            ..GetQuery::default()
        },
    )?;
    assert_eq!(messages(&head.events), ["e1", "e2"]);
    let next = logs.get_events(
        &s,
        "g",
        "s",
        &GetQuery {
            token: Some(head.forward_token.clone()),
            limit: Some(2),
            ..GetQuery::default()
        },
    )?;
    assert_eq!(messages(&next.events), ["e3", "e4"]);
    let back = logs.get_events(
        &s,
        "g",
        "s",
        &GetQuery {
            token: Some(next.backward_token.clone()),
            ..GetQuery::default()
        },
    )?;
    assert_eq!(messages(&back.events), ["e1", "e2"]);
    let tail = logs.get_events(
        &s,
        "g",
        "s",
        &GetQuery {
            limit: Some(2),
            ..GetQuery::default()
        },
    )?;
    assert_eq!(messages(&tail.events), ["e4", "e5"]);
    // At the end the forward token comes back unchanged, and new events follow it.
    let end = logs.get_events(
        &s,
        "g",
        "s",
        &GetQuery {
            token: Some(tail.forward_token.clone()),
            ..GetQuery::default()
        },
    )?;
    assert!(end.events.is_empty());
    assert_eq!(end.forward_token, tail.forward_token);
    logs.put_events(&s, "g", "s", &[ev(T0 + 60, "e6")]).await?;
    let more = logs.get_events(
        &s,
        "g",
        "s",
        &GetQuery {
            token: Some(end.forward_token),
            ..GetQuery::default()
        },
    )?;
    assert_eq!(messages(&more.events), ["e6"]);
    let window = logs.get_events(
        &s,
        "g",
        "s",
        &GetQuery {
            start: Some(T0 + 20),
            end: Some(T0 + 40),
            start_from_head: true,
            ..GetQuery::default()
        },
    )?;
    assert_eq!(messages(&window.events), ["e2", "e3"]);
    assert!(matches!(
        logs.get_events(
            &s,
            "g",
            "s",
            &GetQuery {
                token: Some("f/nope".into()),
                ..GetQuery::default()
            }
        ),
        Err(Error::InvalidParameter(_))
    ));

    // Refused batches.
    for (batch, want) in [
        (vec![ev(T0 + 2, "b"), ev(T0 + 1, "a")], "chronological order"),
        (vec![ev(T0, &"x".repeat(MAX_EVENT_BYTES))], "Log event too large"),
        (
            (0..5).map(|_| ev(T0, &"x".repeat(250_000))).collect(),
            "Upload too large",
        ),
        (vec![ev(T0, "")], "length greater than or equal to 1"),
        (Vec::new(), "length greater than or equal to 1"),
    ] {
        let got = logs.put_events(&s, "g", "s", &batch).await;
        assert!(
            matches!(&got, Err(Error::InvalidParameter(m)) if m.contains(want)),
            "{want}: {got:?}"
        );
    }
    // Too old and too new events are reported, the rest kept.
    let out = logs
        .put_events(
            &s,
            "g",
            "s",
            &[
                ev(T0 - 15 * DAY_MS, "old"),
                ev(T0 - 14 * DAY_MS - 1, "old2"),
                ev(T0 - 1, "ok"),
                ev(T0 + 3 * 3_600_000, "new"),
            ],
        )
        .await?;
    assert_eq!(
        (out.accepted, out.too_old_end, out.too_new_start),
        (1, Some(2), Some(3))
    );
    let out = logs
        .put_events(&s, "g", "s", &[ev(T0 - 2 * DAY_MS, "a"), ev(T0 - 1, "b")])
        .await;
    assert!(
        matches!(&out, Err(Error::InvalidParameter(m)) if m.contains("cannot span more than 24 hours")),
        "{out:?}"
    );
    Ok(())
}

#[tokio::test]
async fn filter_merges_streams_matches_and_pages() -> Result<()> {
    let dir = tmp();
    let clock = Arc::new(ManualClock::new(T0));
    let logs = open_with(dir.path(), Config::default(), clock);
    let s = scope();
    logs.create_group(&s, "g", BTreeMap::new(), None, None).await?;
    for name in ["a", "b"] {
        logs.create_stream(&s, "g", name).await?;
    }
    logs.put_events(
        &s,
        "g",
        "a",
        &[
            ev(T0 + 1, "ERROR one"),
            ev(T0 + 3, "INFO two"),
            ev(T0 + 5, "ERROR three"),
        ],
    )
    .await?;
    logs.put_events(
        &s,
        "g",
        "b",
        &[
            ev(T0 + 2, "WARN four"),
            ev(T0 + 3, "ERROR five"),
            ev(T0 + 6, "INFO six"),
        ],
    )
    .await?;
    let all = logs.filter_events(&s, "g", &FilterQuery::default())?;
    assert_eq!(
        messages(&all.events),
        [
            "ERROR one",
            "WARN four",
            "INFO two",
            "ERROR five",
            "ERROR three",
            "INFO six"
        ]
    );
    assert_eq!(all.events[1].stream, "b");
    assert!(all.next_token.is_none());
    assert_eq!(all.searched, ["a", "b"]);
    let ids: std::collections::BTreeSet<&str> = all.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), 6);

    let errors = FilterQuery {
        pattern: "ERROR".into(),
        limit: Some(2),
        ..FilterQuery::default()
    };
    let first = logs.filter_events(&s, "g", &errors)?;
    assert_eq!(messages(&first.events), ["ERROR one", "ERROR five"]);
    let second = logs.filter_events(
        &s,
        "g",
        &FilterQuery {
            token: first.next_token.clone(),
            ..errors.clone()
        },
    )?;
    assert_eq!(messages(&second.events), ["ERROR three"]);
    assert!(second.next_token.is_none());

    let q = |f: FilterQuery| logs.filter_events(&s, "g", &f).map(|p| p.events);
    let got = q(FilterQuery {
        pattern: "?WARN ?six".into(),
        ..FilterQuery::default()
    })?;
    assert_eq!(messages(&got), ["WARN four", "INFO six"]);
    let got = q(FilterQuery {
        stream_names: vec!["a".into()],
        start: Some(T0 + 3),
        end: Some(T0 + 5),
        ..FilterQuery::default()
    })?;
    assert_eq!(messages(&got), ["INFO two", "ERROR three"]);
    let got = q(FilterQuery {
        stream_prefix: Some("b".into()),
        pattern: "\"ERROR five\"".into(),
        ..FilterQuery::default()
    })?;
    assert_eq!(messages(&got), ["ERROR five"]);
    assert!(
        q(FilterQuery {
            pattern: "{ $.x = 1 }".into(),
            ..FilterQuery::default()
        })
        .is_err()
    );
    assert!(
        q(FilterQuery {
            stream_names: vec!["a".into()],
            stream_prefix: Some("a".into()),
            ..FilterQuery::default()
        })
        .is_err()
    );
    assert!(matches!(
        logs.filter_events(&s, "nope", &FilterQuery::default()),
        Err(Error::ResourceNotFound(_))
    ));
    Ok(())
}

#[tokio::test]
async fn retention_hides_on_read_and_the_sweep_deletes() -> Result<()> {
    let dir = tmp();
    let clock = Arc::new(ManualClock::new(T0));
    let logs = open_with(dir.path(), Config::default(), clock.clone());
    let s = scope();
    logs.create_group(&s, "g", BTreeMap::new(), None, None).await?;
    logs.create_stream(&s, "g", "s").await?;
    logs.put_events(&s, "g", "s", &[ev(T0 - 2 * DAY_MS, "two days")])
        .await?;
    logs.put_events(&s, "g", "s", &[ev(T0 - 1000, "fresh")]).await?;
    logs.set_retention(&s, "g", Some(1)).await?;
    let page = logs.get_events(&s, "g", "s", &GetQuery::default())?;
    assert_eq!(messages(&page.events), ["fresh"]);
    assert_eq!(events_keys(&logs), 2);
    let expired = logs.put_events(&s, "g", "s", &[ev(T0 - DAY_MS - 5, "too old")]).await?;
    assert_eq!((expired.accepted, expired.expired_end), (0, Some(1)));
    assert_eq!(logs.sweep().await?, 1);
    assert_eq!(events_keys(&logs), 1);
    let (_, doc) = logs.stream_doc(&s, "g", "s")?;
    assert_eq!((doc.events, doc.first_event_ms), (1, Some(T0 - 1000)));
    clock.advance(2 * DAY_MS);
    assert!(logs.filter_events(&s, "g", &FilterQuery::default())?.events.is_empty());
    assert_eq!(logs.sweep().await?, 1);
    let (_, doc) = logs.stream_doc(&s, "g", "s")?;
    assert_eq!((doc.events, doc.stored_bytes, doc.first_event_ms), (0, 0, None));
    logs.set_retention(&s, "g", None).await?;
    assert_eq!(logs.group(&s, "g").and_then(|g| g.doc.retention_days), None);
    Ok(())
}

#[tokio::test]
async fn streams_and_groups_stay_within_their_caps() -> Result<()> {
    let dir = tmp();
    let clock = Arc::new(ManualClock::new(T0));
    let config = Config {
        max_stream_bytes: 10 * (10 + EVENT_OVERHEAD as u64),
        max_stream_events: 1_000,
        max_group_bytes: 25 * (10 + EVENT_OVERHEAD as u64),
    };
    let logs = open_with(dir.path(), config, clock.clone());
    let s = scope();
    logs.create_group(&s, "g", BTreeMap::new(), None, None).await?;
    for stream in ["s1", "s2", "s3"] {
        logs.create_stream(&s, "g", stream).await?;
        for i in 0..15 {
            logs.put_events(&s, "g", stream, &[ev(T0 + i, &format!("message{i:03}"))])
                .await?;
        }
        clock.advance(1);
    }
    // Each stream keeps its newest 10 events.
    let page = logs.get_events(&s, "g", "s1", &GetQuery::default())?;
    assert_eq!(page.events.len(), 10);
    assert_eq!(page.events[0].message, "message005");
    let (_, doc) = logs.stream_doc(&s, "g", "s1")?;
    assert_eq!((doc.events, doc.first_event_ms), (10, Some(T0 + 5)));
    // The group keeps at most 25 events' worth: the sweep empties the oldest stream.
    assert_eq!(logs.sweep().await?, 10);
    assert!(logs.get_events(&s, "g", "s1", &GetQuery::default())?.events.is_empty());
    assert_eq!(logs.get_events(&s, "g", "s3", &GetQuery::default())?.events.len(), 10);
    assert_eq!(events_keys(&logs), 20);
    Ok(())
}

#[tokio::test]
async fn ingest_makes_groups_and_streams_and_reset_empties() -> Result<()> {
    let dir = tmp();
    let clock = Arc::new(ManualClock::new(T0));
    let logs = open_with(dir.path(), Config::default(), clock);
    let s = scope();
    logs.ingest(vec![
        IngestBatch {
            scope: s.clone(),
            group: "/aws/lambda/f".into(),
            stream: "2026/01/01/[$LATEST]abc".into(),
            events: vec![
                (T0 + 2, "second".into()),
                (T0 + 1, "first".into()),
                (T0 + 3, String::new()),
            ],
        },
        IngestBatch {
            scope: s.clone(),
            group: "bad name".into(),
            stream: "x".into(),
            events: vec![(T0, "dropped".into())],
        },
        IngestBatch {
            scope: s.clone(),
            group: "/aws/lambda/f".into(),
            stream: "2026/01/01/[$LATEST]abc".into(),
            events: vec![(T0 + 4, "x".repeat(MAX_EVENT_BYTES + 10))],
        },
    ])
    .await?;
    let page = logs.filter_events(&s, "/aws/lambda/f", &FilterQuery::default())?;
    assert_eq!(messages(&page.events)[..2], ["first", "second"]);
    assert_eq!(page.events[2].message.len(), MAX_EVENT_BYTES - EVENT_OVERHEAD);
    assert_eq!(logs.describe_groups(&s, None, None, None, None)?.items.len(), 1);
    logs.reset().await?;
    assert!(logs.describe_groups(&s, None, None, None, None)?.items.is_empty());
    assert_eq!(events_keys(&logs), 0);
    Ok(())
}
