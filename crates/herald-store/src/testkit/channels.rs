//! Durable channel streams: offsets, positions, history, retention, concurrency and restarts.

use super::Harness;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::roles::*;
use crate::{NewApp, StoreError, now_ms};

use super::common::publication;

pub async fn appends_number_each_channel_from_one<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let positions = store
        .append_publications(vec![
            publication("a", "a1", 1),
            publication("b", "b1", 1),
            publication("a", "a2", 1),
            publication("a", "a3", 1),
            publication("b", "b2", 1),
        ])
        .await
        .expect("append");
    let offsets: Vec<(u64, &str)> =
        positions.iter().zip(["a", "b", "a", "a", "b"]).map(|(p, c)| (p.offset, c)).collect();
    assert_eq!(offsets, vec![(1, "a"), (1, "b"), (2, "a"), (3, "a"), (2, "b")]);
    assert_eq!(positions[0].epoch, positions[2].epoch);
    assert_eq!(positions[1].epoch, positions[4].epoch);
    assert_eq!(store.channel_position("a").await.expect("position"), positions[3]);
    let more = store.append_publications(vec![publication("a", "a4", 2)]).await.expect("append");
    assert_eq!((more[0].offset, more[0].epoch.as_str()), (4, positions[0].epoch.as_str()));
    assert!(store.append_publications(Vec::new()).await.expect("empty append").is_empty());
}

pub async fn an_unknown_channel_gets_a_stable_epoch<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let position = store.channel_position("fresh").await.expect("position");
    assert_eq!(position.offset, 0);
    assert!(!position.epoch.is_empty());
    assert_eq!(store.channel_position("fresh").await.expect("again"), position);
    let (history, from_history) = store.channel_history("other", None, 10, false).await.expect("history");
    assert!(history.is_empty());
    assert_eq!(from_history.offset, 0);
    assert_eq!(store.channel_position("other").await.expect("position"), from_history);
    let appended = store.append_publications(vec![publication("fresh", "x", 1)]).await.expect("append");
    assert_eq!(appended[0].epoch, position.epoch);
    assert_eq!(appended[0].offset, 1);
}

pub async fn history_reads_forward_backward_and_since<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let mut tags = BTreeMap::new();
    tags.insert("k".to_owned(), "v".to_owned());
    let mut batch: Vec<_> = (1..=10).map(|i| publication("h", &format!("p{i}"), 100 + i)).collect();
    batch[0].tags = tags.clone();
    batch[0].info = Some(bytes::Bytes::from_static(b"\x0a\x03bob"));
    store.append_publications(batch).await.expect("append");

    let offsets = |pubs: &[crate::StoredPublication]| pubs.iter().map(|p| p.offset).collect::<Vec<_>>();
    let (all, position) = store.channel_history("h", None, 100, false).await.expect("history");
    assert_eq!(offsets(&all), (1..=10).collect::<Vec<_>>());
    assert_eq!(position.offset, 10);
    assert_eq!(all[0].tags, tags);
    assert_eq!(all[0].info.as_deref(), Some(&b"\x0a\x03bob"[..]));
    assert_eq!((all[0].channel.as_str(), &all[0].data[..], all[0].created_at), ("h", &b"p1"[..], 101));
    assert!(all[1].tags.is_empty() && all[1].info.is_none());

    let (first, _) = store.channel_history("h", Some(3), 4, false).await.expect("since");
    assert_eq!(offsets(&first), vec![4, 5, 6, 7]);
    let (newest, _) = store.channel_history("h", None, 3, true).await.expect("reverse");
    assert_eq!(offsets(&newest), vec![10, 9, 8]);
    let (newest_since, _) = store.channel_history("h", Some(8), 5, true).await.expect("reverse since");
    assert_eq!(offsets(&newest_since), vec![10, 9]);
    let (none, position) = store.channel_history("h", None, 0, false).await.expect("limit 0");
    assert!(none.is_empty());
    assert_eq!(position.offset, 10);
    let (past_top, _) = store.channel_history("h", Some(10), 5, false).await.expect("at top");
    assert!(past_top.is_empty());
}

pub async fn removing_history_keeps_the_position<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let first =
        store.append_publications(vec![publication("r", "1", 1), publication("r", "2", 1)]).await.expect("append");
    store.channel_history_remove("r").await.expect("remove");
    store.channel_history_remove("never-seen").await.expect("remove unknown");
    let (history, position) = store.channel_history("r", None, 10, false).await.expect("history");
    assert!(history.is_empty());
    assert_eq!(position, first[1]);
    let next = store.append_publications(vec![publication("r", "3", 1)]).await.expect("append");
    assert_eq!((next[0].offset, next[0].epoch.as_str()), (3, first[0].epoch.as_str()));
}

pub async fn retention_by_count_age_and_namespace<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    let now = now_ms();
    for channel in ["chat:room1", "chat:room2", "news:today", "plain", "other"] {
        // Offsets 1..=10, created 10 s .. 1 s ago.
        let batch = (1..=10).map(|i| publication(channel, "x", now - (11 - i) * 1_000)).collect();
        store.append_publications(batch).await.expect("append");
    }
    let kept = |store: H::Store, channel: &'static str| async move {
        let (history, _) = store.channel_history(channel, None, 100, false).await.expect("history");
        history.iter().map(|p| p.offset).collect::<Vec<_>>()
    };

    // The chat namespace keeps 4 publications.
    assert_eq!(store.prune_channels("chat:", 4, i64::MAX, now).await.expect("prune"), 12);
    assert_eq!(kept(store.clone(), "chat:room1").await, vec![7, 8, 9, 10]);
    assert_eq!(kept(store.clone(), "chat:room2").await, vec![7, 8, 9, 10]);
    assert_eq!(kept(store.clone(), "news:today").await.len(), 10, "other namespaces untouched");

    // Channels without a namespace keep 5.5 s worth: offsets 6..=10.
    assert_eq!(store.prune_channels("", usize::MAX, 5_500, now).await.expect("prune"), 10);
    assert_eq!(kept(store.clone(), "plain").await, vec![6, 7, 8, 9, 10]);
    assert_eq!(kept(store.clone(), "other").await, vec![6, 7, 8, 9, 10]);
    assert_eq!(kept(store.clone(), "news:today").await.len(), 10);

    // Both rules: the stricter wins. Nothing left to do prunes nothing.
    assert_eq!(store.prune_channels("news:", 8, 3_500, now).await.expect("prune"), 7);
    assert_eq!(kept(store.clone(), "news:today").await, vec![8, 9, 10]);
    assert_eq!(store.prune_channels("news:", 8, 3_500, now).await.expect("prune again"), 0);
    // Positions survive retention.
    assert_eq!(store.channel_position("news:today").await.expect("position").offset, 10);
}

pub async fn retention_walks_many_channels_in_chunks<H: Harness>() {
    let db = H::open().await;
    let store = db.store();
    // More channels than one prune job takes, so the cursor is exercised.
    let batch: Vec<_> = (0..700)
        .flat_map(|i| [publication(&format!("ns:{i:04}"), "x", 1), publication(&format!("ns:{i:04}"), "y", 1)])
        .collect();
    store.append_publications(batch).await.expect("append");
    store.append_publications(vec![publication("nt:0", "x", 1), publication("nt:0", "y", 1)]).await.expect("append");
    assert_eq!(store.prune_channels("ns:", 1, i64::MAX, 2).await.expect("prune"), 700);
    let (left, _) = store.channel_history("nt:0", None, 10, false).await.expect("history");
    assert_eq!(left.len(), 2);
}

pub async fn concurrent_appends_get_contiguous_offsets<H: Harness>() {
    const TASKS: usize = 50;
    const APPENDS: usize = 200;
    let db = H::open().await;
    let store = Arc::new(db.store().clone());
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.spawn(async move {
            let mut mine = Vec::with_capacity(APPENDS * 2);
            for i in 0..APPENDS {
                for channel in ["left", "right"] {
                    let position = store
                        .append_publications(vec![publication(channel, &format!("{task}-{i}"), 1)])
                        .await
                        .expect("append")
                        .remove(0);
                    mine.push((channel, position));
                }
            }
            mine
        });
    }
    let mut offsets: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut epochs: BTreeMap<&str, String> = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let mine = done.expect("task");
        for channel in ["left", "right"] {
            // One task's appends to a channel are numbered in the order it made them.
            let own: Vec<u64> = mine.iter().filter(|(c, _)| *c == channel).map(|(_, p)| p.offset).collect();
            assert!(own.windows(2).all(|w| w[0] < w[1]), "{own:?}");
        }
        for (channel, position) in mine {
            let epoch = epochs.entry(channel).or_insert_with(|| position.epoch.clone());
            assert_eq!(*epoch, position.epoch);
            offsets.entry(channel).or_default().push(position.offset);
        }
    }
    let expected: Vec<u64> = (1..=(TASKS * APPENDS) as u64).collect();
    for channel in ["left", "right"] {
        let mut got = offsets.remove(channel).expect("offsets");
        got.sort_unstable();
        assert_eq!(got, expected, "channel {channel}: offsets 1..=10000, each once");
        let (history, position) = store.channel_history(channel, None, usize::MAX, false).await.expect("history");
        assert_eq!(history.len(), TASKS * APPENDS);
        assert_eq!(position.offset, (TASKS * APPENDS) as u64);
        assert!(history.iter().zip(1u64..).all(|(p, offset)| p.offset == offset));
    }
}

pub async fn reopening_keeps_streams_and_epochs<H: Harness>() {
    let mut db = H::open().await;
    let before = db
        .store()
        .append_publications(vec![publication("durable", "1", 1), publication("durable", "2", 2)])
        .await
        .expect("append");
    let empty = db.store().channel_position("empty").await.expect("position");
    db.reopen().await;
    assert_eq!(db.store().channel_position("durable").await.expect("position"), before[1]);
    assert_eq!(db.store().channel_position("empty").await.expect("position"), empty);
    let (history, _) = db.store().channel_history("durable", None, 10, false).await.expect("history");
    assert_eq!(
        history.iter().map(|p| (p.offset, p.data.clone())).collect::<Vec<_>>(),
        vec![(1, bytes::Bytes::from_static(b"1")), (2, bytes::Bytes::from_static(b"2"))]
    );
    let next = db.store().append_publications(vec![publication("durable", "3", 3)]).await.expect("append");
    assert_eq!((next[0].offset, next[0].epoch.clone()), (3, before[0].epoch.clone()));
}

pub async fn a_failing_write_in_a_batch_fails_alone<H: Harness>() {
    let db = H::open().await;
    let store = Arc::new(db.store().clone());
    // Many concurrent creations land in shared group commits; two of them want the same uid.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = store.clone();
        let uid = if i % 20 == 0 { "taken".to_owned() } else { format!("app-{i}") };
        tasks.spawn(async move { store.create_app(NewApp { uid: Some(uid), ..NewApp::default() }).await });
    }
    let (mut ok, mut conflicts) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(other) => panic!("unexpected error {other}"),
        }
    }
    assert_eq!((ok, conflicts), (39, 1));
    let listed = store.list_apps(crate::PageRequest::first(100, crate::Order::Ascending)).await.expect("list");
    assert_eq!(listed.data.len(), 39);
}
