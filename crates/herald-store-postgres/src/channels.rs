//! Durable channel streams: `channel_meta` holds each channel's epoch and top offset,
//! `publications` its publications keyed by (channel, offset).
//!
//! Offsets are assigned by the database: an append run bumps each channel's `top_offset` by
//! the number of publications it brings (`UPDATE ... SET top_offset = top_offset + n
//! RETURNING`), which takes the row's lock until the batch commits. A node appending to the
//! same channel meanwhile waits at that row, then bumps from the committed top, so several
//! nodes produce one gapless sequence; a rolled-back run gives its offsets back with the
//! rollback. Channel rows are locked in name order (and created in name order), so two nodes'
//! runs over the same channels cannot deadlock on them. An unknown channel is created with a
//! fresh random epoch; when two nodes create it at once, the unique index keeps the first and
//! the other bumps that row, so the epoch is stable.
//!
//! Retention removes a prefix of a stream (the oldest offsets), never the middle, so what
//! remains is always a contiguous run ending at the top.

use std::collections::{BTreeMap, HashMap};

use super::rows::{Conn, Param, execute, get, json_opt, query, query_opt, to_i64, to_json, to_u64};
use herald_store::{NewPublication, StoreError, StoreResult, StoredPublication, StreamPosition, Timestamp};

/// A channel's stream row.
struct ChannelMeta {
    id: i64,
    epoch: String,
    top: i64,
}

/// Channels pruned per writer job, so retention never holds the writer for long.
pub(crate) const PRUNE_CHUNK: usize = 256;

fn new_epoch() -> String {
    // Short random epochs, like Centrifugo's and the hub's in-memory streams.
    let bytes: [u8; 4] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn find_channel(conn: &Conn, channel: &str) -> StoreResult<Option<ChannelMeta>> {
    let row = query_opt(conn, "SELECT id, epoch, top_offset FROM channel_meta WHERE channel = $1", &[&channel]).await?;
    row.map(|row| Ok(ChannelMeta { id: get(&row, 0)?, epoch: get(&row, 1)?, top: get(&row, 2)? })).transpose()
}

/// Bump the top of each channel of `counts` by its count, creating unknown channels; returns
/// each channel's row after the bump.
async fn bump_channels(
    conn: &Conn,
    counts: &BTreeMap<&str, i64>,
    now: Timestamp,
) -> StoreResult<HashMap<String, ChannelMeta>> {
    let mut bumped: HashMap<String, ChannelMeta> = HashMap::with_capacity(counts.len());
    // Two rounds at most: bump the known, create the unknown (a row another node created
    // meanwhile is bumped in the second round).
    for _ in 0..3 {
        let (names, ns): (Vec<&str>, Vec<i64>) =
            counts.iter().filter(|(name, _)| !bumped.contains_key(**name)).map(|(name, n)| (*name, *n)).unzip();
        if names.is_empty() {
            return Ok(bumped);
        }
        if names.len() > 1 {
            // Lock in name order first: a multi-row UPDATE locks in whatever order it scans.
            query(conn, "SELECT id FROM channel_meta WHERE channel = ANY($1) ORDER BY channel FOR UPDATE", &[&names])
                .await?;
        }
        let rows = query(
            conn,
            "UPDATE channel_meta AS m SET top_offset = m.top_offset + v.n \
             FROM unnest($1::text[], $2::bigint[]) AS v (channel, n) WHERE m.channel = v.channel \
             RETURNING m.channel, m.id, m.epoch, m.top_offset",
            &[&names, &ns],
        )
        .await?;
        for row in &rows {
            bumped.insert(get(row, 0)?, ChannelMeta { id: get(row, 1)?, epoch: get(row, 2)?, top: get(row, 3)? });
        }
        let (missing, missing_ns): (Vec<&str>, Vec<i64>) =
            names.iter().zip(&ns).filter(|(name, _)| !bumped.contains_key(**name)).map(|(name, n)| (*name, *n)).unzip();
        if missing.is_empty() {
            return Ok(bumped);
        }
        let epochs: Vec<String> = missing.iter().map(|_| new_epoch()).collect();
        let rows = query(
            conn,
            "INSERT INTO channel_meta (channel, epoch, top_offset, created_at) \
             SELECT v.channel, v.epoch, v.n, $4 FROM unnest($1::text[], $2::text[], $3::bigint[]) AS v (channel, epoch, n) \
             ORDER BY v.channel ON CONFLICT (channel) DO NOTHING RETURNING channel, id, epoch, top_offset",
            &[&missing, &epochs, &missing_ns, &now],
        )
        .await?;
        for row in &rows {
            bumped.insert(get(row, 0)?, ChannelMeta { id: get(row, 1)?, epoch: get(row, 2)?, top: get(row, 3)? });
        }
    }
    Err(StoreError::Backend("durable channels kept appearing and vanishing during an append".to_owned()))
}

/// Writer side: append and number the publications of several requests (`groups`, in queue
/// order), returning each request's positions. Each channel's row is bumped once for the whole
/// run and the publications go in with one statement.
pub(crate) async fn append_run(
    conn: &Conn,
    groups: &[&[NewPublication]],
    now: Timestamp,
) -> StoreResult<Vec<Vec<StreamPosition>>> {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for publication in groups.iter().flat_map(|group| group.iter()) {
        *counts.entry(publication.channel.as_str()).or_default() += 1;
    }
    if counts.is_empty() {
        return Ok(groups.iter().map(|_| Vec::new()).collect());
    }
    let metas = bump_channels(conn, &counts, now).await?;
    // Each channel's run of offsets ends at its new top: hand them out in queue order.
    let mut next: HashMap<&str, (i64, &ChannelMeta)> = HashMap::with_capacity(metas.len());
    for (name, n) in &counts {
        let meta = metas.get(*name).ok_or_else(|| StoreError::Backend(format!("channel {name} was not bumped")))?;
        next.insert(*name, (meta.top - n + 1, meta));
    }
    let total = counts.values().sum::<i64>() as usize;
    let mut channel_ids = Vec::with_capacity(total);
    let mut offsets = Vec::with_capacity(total);
    let mut datas: Vec<&[u8]> = Vec::with_capacity(total);
    let mut infos: Vec<Option<&[u8]>> = Vec::with_capacity(total);
    let mut tags: Vec<Option<String>> = Vec::with_capacity(total);
    let mut created: Vec<i64> = Vec::with_capacity(total);
    let mut all_positions = Vec::with_capacity(groups.len());
    for group in groups {
        let mut positions = Vec::with_capacity(group.len());
        for publication in group.iter() {
            let (offset, meta) = next
                .get_mut(publication.channel.as_str())
                .ok_or_else(|| StoreError::Backend("a channel was not counted".to_owned()))?;
            channel_ids.push(meta.id);
            offsets.push(*offset);
            datas.push(publication.data.as_ref());
            infos.push(publication.info.as_deref());
            tags.push(if publication.tags.is_empty() { None } else { Some(to_json(&publication.tags)?) });
            created.push(publication.created_at);
            positions.push(StreamPosition { epoch: meta.epoch.clone(), offset: to_u64(*offset) });
            *offset += 1;
        }
        all_positions.push(positions);
    }
    let params: [Param<'_>; 6] = [&channel_ids, &offsets, &datas, &infos, &tags, &created];
    execute(
        conn,
        "INSERT INTO publications (channel_id, stream_offset, data, info, tags, created_at) \
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[], $5::text[], $6::bigint[])",
        &params,
    )
    .await?;
    Ok(all_positions)
}

/// A known channel's position, `None` for an unknown one.
pub(crate) async fn find_position(conn: &Conn, channel: &str) -> StoreResult<Option<StreamPosition>> {
    Ok(find_channel(conn, channel).await?.map(|meta| StreamPosition { epoch: meta.epoch, offset: to_u64(meta.top) }))
}

/// A channel's position, creating the channel (and its epoch) if unknown. One statement each,
/// committed on its own: a channel created by another node meanwhile keeps its epoch.
pub(crate) async fn ensure_position(conn: &Conn, channel: &str, now: Timestamp) -> StoreResult<StreamPosition> {
    execute(
        conn,
        "INSERT INTO channel_meta (channel, epoch, top_offset, created_at) VALUES ($1, $2, 0, $3) \
         ON CONFLICT (channel) DO NOTHING",
        &[&channel, &new_epoch(), &now],
    )
    .await?;
    find_position(conn, channel).await?.ok_or_else(|| StoreError::Backend(format!("channel {channel} vanished")))
}

/// History of a known channel, `None` for an unknown one. Publications after `since_offset`
/// (all without it) up to the position read first: the oldest `limit` of them oldest first,
/// or with `reverse` the newest `limit` of them newest first.
pub(crate) async fn history(
    conn: &Conn,
    channel: &str,
    since_offset: Option<u64>,
    limit: usize,
    reverse: bool,
) -> StoreResult<Option<(Vec<StoredPublication>, StreamPosition)>> {
    let Some(meta) = find_channel(conn, channel).await? else { return Ok(None) };
    let after = i64::try_from(since_offset.unwrap_or(0)).unwrap_or(i64::MAX);
    let sql = if reverse {
        "SELECT stream_offset, data, info, tags, created_at FROM publications \
         WHERE channel_id = $1 AND stream_offset > $2 AND stream_offset <= $3 ORDER BY stream_offset DESC LIMIT $4"
    } else {
        "SELECT stream_offset, data, info, tags, created_at FROM publications \
         WHERE channel_id = $1 AND stream_offset > $2 AND stream_offset <= $3 ORDER BY stream_offset ASC LIMIT $4"
    };
    let rows = query(conn, sql, &[&meta.id, &after, &meta.top, &to_i64(limit)]).await?;
    let publications = rows
        .iter()
        .map(|row| {
            let data: Vec<u8> = get(row, 1)?;
            let info: Option<Vec<u8>> = get(row, 2)?;
            let tags: Option<_> = json_opt(row, 3)?;
            Ok(StoredPublication {
                channel: channel.to_owned(),
                offset: to_u64(get(row, 0)?),
                data: data.into(),
                info: info.map(Into::into),
                tags: tags.unwrap_or_default(),
                created_at: get(row, 4)?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Some((publications, StreamPosition { epoch: meta.epoch, offset: to_u64(meta.top) })))
}

/// Writer side: drop a channel's publications, keeping its position.
pub(crate) async fn history_remove(conn: &Conn, channel: &str) -> StoreResult<()> {
    execute(
        conn,
        "DELETE FROM publications WHERE channel_id = (SELECT id FROM channel_meta WHERE channel = $1)",
        &[&channel],
    )
    .await?;
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
pub(crate) async fn prune_chunk(
    conn: &Conn,
    rule: &Retention,
    cursor: Option<&str>,
) -> StoreResult<(u64, Option<String>)> {
    // Channels of a namespace sort together from the prefix on (the column's collation is
    // "C"); channels without one are spread over the whole table.
    let (sql, start) = match cursor {
        Some(cursor) => {
            ("SELECT id, channel, top_offset FROM channel_meta WHERE channel > $1 ORDER BY channel LIMIT $2", cursor)
        }
        None => (
            "SELECT id, channel, top_offset FROM channel_meta WHERE channel >= $1 ORDER BY channel LIMIT $2",
            rule.prefix.as_str(),
        ),
    };
    let rows = query(conn, sql, &[&start, &to_i64(PRUNE_CHUNK)]).await?;
    let full_chunk = rows.len() == PRUNE_CHUNK;
    let mut removed = 0;
    let mut last = None;
    for row in &rows {
        let (channel_id, channel, top): (i64, String, i64) = (get(row, 0)?, get(row, 1)?, get(row, 2)?);
        if !rule.prefix.is_empty() && !channel.starts_with(&rule.prefix) {
            // Past the namespace: nothing further can match.
            return Ok((removed, None));
        }
        if rule.covers(&channel) {
            removed += prune_channel(conn, channel_id, top, rule).await?;
        }
        last = Some(channel);
    }
    Ok((removed, if full_chunk { last } else { None }))
}

async fn prune_channel(conn: &Conn, channel_id: i64, top: i64, rule: &Retention) -> StoreResult<u64> {
    // Everything at or below the cut goes: the count rule keeps the newest `max_count`
    // offsets, and the age rule removes the oldest publications up to the first young enough
    // one (the last too old publication before it, found in SQL).
    let count_cut = top.saturating_sub(to_i64(rule.max_count)).max(0);
    let oldest_kept = rule.now.saturating_sub(rule.max_age_ms);
    let removed = execute(
        conn,
        "DELETE FROM publications WHERE channel_id = $1 AND stream_offset <= GREATEST($2, COALESCE(( \
            SELECT MAX(p.stream_offset) FROM publications p WHERE p.channel_id = $1 AND p.stream_offset > $2 \
            AND p.created_at < $3 AND p.stream_offset < COALESCE(( \
                SELECT MIN(y.stream_offset) FROM publications y \
                WHERE y.channel_id = $1 AND y.stream_offset > $2 AND y.created_at >= $3), 9223372036854775807) \
         ), 0))",
        &[&channel_id, &count_cut, &oldest_kept],
    )
    .await?;
    Ok(removed)
}
