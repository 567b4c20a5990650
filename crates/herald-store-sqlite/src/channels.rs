//! Durable channel streams: `channel_meta` holds each channel's epoch and top offset,
//! `publications` its publications keyed by (channel, offset).
//!
//! Offsets are assigned on the writer thread inside the group-commit transaction. A run of
//! append requests (consecutive in the batch) reads each channel's top offset once, which
//! already includes every earlier request of the batch since it is the same transaction,
//! numbers the run's publications consecutively in queue order, and writes the new tops back
//! once. A run that fails rolls back to its savepoint, tops included, and is redone one request
//! at a time, so the next request numbers from where the last successful one stopped. Offsets
//! are therefore contiguous and never reused within an epoch.
//!
//! Retention removes a prefix of a stream (the oldest offsets), never the middle, so what
//! remains is always a contiguous run ending at the top.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{DbResultExt, json_opt, to_i64, to_json, to_u64};
use herald_store::{NewPublication, StoreResult, StoredPublication, StreamPosition, Timestamp};

/// A channel's stream row.
struct ChannelMeta {
    id: i64,
    epoch: String,
    /// Kept as SQLite's i64; offsets never come near its limit.
    top: i64,
}

/// Channels pruned per writer job, so retention never holds the writer for long.
pub(crate) const PRUNE_CHUNK: usize = 256;

fn new_epoch() -> String {
    // Short random epochs, like Centrifugo's and the hub's in-memory streams.
    let bytes: [u8; 4] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn find_channel(conn: &Connection, channel: &str) -> StoreResult<Option<ChannelMeta>> {
    conn.prepare_cached("SELECT id, epoch, top_offset FROM channel_meta WHERE channel = ?1")
        .db()?
        .query_row(params![channel], |row| Ok(ChannelMeta { id: row.get(0)?, epoch: row.get(1)?, top: row.get(2)? }))
        .optional()
        .db()
}

fn ensure_channel(conn: &Connection, channel: &str, now: Timestamp) -> StoreResult<ChannelMeta> {
    if let Some(meta) = find_channel(conn, channel)? {
        return Ok(meta);
    }
    let epoch = new_epoch();
    conn.prepare_cached("INSERT INTO channel_meta (channel, epoch, top_offset, created_at) VALUES (?1, ?2, 0, ?3)")
        .db()?
        .execute(params![channel, epoch, now])
        .db()?;
    Ok(ChannelMeta { id: conn.last_insert_rowid(), epoch, top: 0 })
}

/// Writer side: append and number the publications of several requests (`groups`, in queue
/// order), returning each request's positions. Each channel's row is read once and written
/// once for the whole run (see the module doc).
pub(crate) fn append_run(
    conn: &Connection,
    groups: &[&[NewPublication]],
    now: Timestamp,
) -> StoreResult<Vec<Vec<StreamPosition>>> {
    let mut metas: HashMap<&str, ChannelMeta> = HashMap::new();
    let mut all_positions = Vec::with_capacity(groups.len());
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO publications (channel_id, stream_offset, data, info, tags, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .db()?;
    for group in groups {
        let mut positions = Vec::with_capacity(group.len());
        for publication in group.iter() {
            let meta = match metas.entry(publication.channel.as_str()) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => entry.insert(ensure_channel(conn, &publication.channel, now)?),
            };
            meta.top += 1;
            let tags = if publication.tags.is_empty() { None } else { Some(to_json(&publication.tags)?) };
            insert
                .execute(params![
                    meta.id,
                    meta.top,
                    publication.data.as_ref(),
                    publication.info.as_deref(),
                    tags,
                    publication.created_at
                ])
                .db()?;
            positions.push(StreamPosition { epoch: meta.epoch.clone(), offset: to_u64(meta.top) });
        }
        all_positions.push(positions);
    }
    let mut update = conn.prepare_cached("UPDATE channel_meta SET top_offset = ?2 WHERE id = ?1").db()?;
    for meta in metas.values() {
        update.execute(params![meta.id, meta.top]).db()?;
    }
    Ok(all_positions)
}

/// Reader side: a known channel's position, `None` for an unknown one.
pub(crate) fn find_position(conn: &Connection, channel: &str) -> StoreResult<Option<StreamPosition>> {
    Ok(find_channel(conn, channel)?.map(|meta| StreamPosition { epoch: meta.epoch, offset: to_u64(meta.top) }))
}

/// Writer side: a channel's position, creating the channel (and its epoch) if unknown.
pub(crate) fn ensure_position(conn: &Connection, channel: &str, now: Timestamp) -> StoreResult<StreamPosition> {
    let meta = ensure_channel(conn, channel, now)?;
    Ok(StreamPosition { epoch: meta.epoch, offset: to_u64(meta.top) })
}

/// Reader side: history of a known channel, `None` for an unknown one. Publications after
/// `since_offset` (all without it): the oldest `limit` of them oldest first, or with
/// `reverse` the newest `limit` of them newest first.
pub(crate) fn history(
    conn: &Connection,
    channel: &str,
    since_offset: Option<u64>,
    limit: usize,
    reverse: bool,
) -> StoreResult<Option<(Vec<StoredPublication>, StreamPosition)>> {
    let Some(meta) = find_channel(conn, channel)? else { return Ok(None) };
    let after = i64::try_from(since_offset.unwrap_or(0)).unwrap_or(i64::MAX);
    let sql = if reverse {
        "SELECT stream_offset, data, info, tags, created_at FROM publications \
         WHERE channel_id = ?1 AND stream_offset > ?2 ORDER BY stream_offset DESC LIMIT ?3"
    } else {
        "SELECT stream_offset, data, info, tags, created_at FROM publications \
         WHERE channel_id = ?1 AND stream_offset > ?2 ORDER BY stream_offset ASC LIMIT ?3"
    };
    let publications = conn
        .prepare_cached(sql)
        .db()?
        .query_map(params![meta.id, after, to_i64(limit)], |row| {
            let data: Vec<u8> = row.get(1)?;
            let info: Option<Vec<u8>> = row.get(2)?;
            let tags: Option<_> = json_opt(row, 3)?;
            Ok(StoredPublication {
                channel: channel.to_owned(),
                offset: to_u64(row.get(0)?),
                data: data.into(),
                info: info.map(Into::into),
                tags: tags.unwrap_or_default(),
                created_at: row.get(4)?,
            })
        })
        .db()?
        .collect::<Result<Vec<_>, _>>()
        .db()?;
    Ok(Some((publications, StreamPosition { epoch: meta.epoch, offset: to_u64(meta.top) })))
}

/// Writer side: drop a channel's publications, keeping its position.
pub(crate) fn history_remove(conn: &Connection, channel: &str) -> StoreResult<()> {
    if let Some(meta) = find_channel(conn, channel)? {
        conn.prepare_cached("DELETE FROM publications WHERE channel_id = ?1").db()?.execute(params![meta.id]).db()?;
    }
    Ok(())
}

/// The retention rule of one `prune_channels` call.
#[derive(Clone)]
pub(crate) struct Retention {
    pub(crate) prefix: String,
    pub(crate) max_count: usize,
    pub(crate) max_age_ms: i64,
    pub(crate) now: Timestamp,
}

impl Retention {
    /// Whether `channel` falls under this rule: it starts with the namespace prefix, or, for the
    /// empty prefix, it has no namespace at all.
    fn covers(&self, channel: &str) -> bool {
        if self.prefix.is_empty() { !channel.contains(':') } else { channel.starts_with(&self.prefix) }
    }
}

/// Writer side: enforce `rule` on up to [`PRUNE_CHUNK`] channels after `cursor` (the last
/// channel name of the previous chunk; `None` to start). Returns how many publications were
/// removed and the cursor for the next chunk (`None` when all are done).
pub(crate) fn prune_chunk(
    conn: &Connection,
    rule: &Retention,
    cursor: Option<&str>,
) -> StoreResult<(u64, Option<String>)> {
    // Channels of a namespace sort together from the prefix on; channels without one are
    // spread over the whole table.
    let (sql, start) = match cursor {
        Some(cursor) => {
            ("SELECT id, channel, top_offset FROM channel_meta WHERE channel > ?1 ORDER BY channel LIMIT ?2", cursor)
        }
        None => (
            "SELECT id, channel, top_offset FROM channel_meta WHERE channel >= ?1 ORDER BY channel LIMIT ?2",
            rule.prefix.as_str(),
        ),
    };
    let chunk: Vec<(i64, String, i64)> = conn
        .prepare_cached(sql)
        .db()?
        .query_map(params![start, to_i64(PRUNE_CHUNK)], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .db()?
        .collect::<Result<_, _>>()
        .db()?;
    let full_chunk = chunk.len() == PRUNE_CHUNK;
    let mut removed = 0;
    let mut last = None;
    for (channel_id, channel, top) in chunk {
        if !rule.prefix.is_empty() && !channel.starts_with(&rule.prefix) {
            // Past the namespace: nothing further can match.
            return Ok((removed, None));
        }
        if rule.covers(&channel) {
            removed += prune_channel(conn, channel_id, top, rule)?;
        }
        last = Some(channel);
    }
    Ok((removed, if full_chunk { last } else { None }))
}

fn prune_channel(conn: &Connection, channel_id: i64, top: i64, rule: &Retention) -> StoreResult<u64> {
    // Everything at or below `cut` goes: the count rule keeps the newest `max_count` offsets...
    let mut cut = top.saturating_sub(to_i64(rule.max_count)).max(0);
    // ...and the age rule removes the oldest publications up to the first young enough one.
    let oldest_kept = rule.now.saturating_sub(rule.max_age_ms);
    let mut stmt = conn
        .prepare_cached(
            "SELECT stream_offset, created_at FROM publications WHERE channel_id = ?1 AND stream_offset > ?2 \
             ORDER BY stream_offset",
        )
        .db()?;
    let mut rows = stmt.query(params![channel_id, cut]).db()?;
    while let Some(row) = rows.next().db()? {
        let created_at: Timestamp = row.get(1).db()?;
        if created_at >= oldest_kept {
            break;
        }
        cut = row.get(0).db()?;
    }
    drop(rows);
    if cut == 0 {
        return Ok(0);
    }
    let removed = conn
        .prepare_cached("DELETE FROM publications WHERE channel_id = ?1 AND stream_offset <= ?2")
        .db()?
        .execute(params![channel_id, cut])
        .db()?;
    Ok(removed as u64)
}
