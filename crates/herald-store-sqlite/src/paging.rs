//! Keyset pagination shared by every listing: rows after (or, with `prev`, before) the
//! iterator's key, one more than asked to learn whether the page is the last.
//!
//! The key is a sortable column: ids sort by creation time, event types by name, deliveries
//! by their numeric id (passed around as a decimal string). A page's `iterator` is its last
//! row's key and `prev_iterator` its first; `done` says no rows follow in the direction the
//! page was read. An empty page hands the request's iterator back, so a poller keeps its place.

use rusqlite::types::Value;
use rusqlite::{Connection, Row, params_from_iter};

use super::rows::DbResultExt;
use herald_store::{Order, Page, PageRequest, StoreError, StoreResult};

/// Largest page served, whatever is asked.
pub(crate) const MAX_PAGE: usize = 1000;

/// The type of the key column.
#[derive(Clone, Copy)]
pub(crate) enum KeyKind {
    Text,
    Integer,
}

/// One listing query: `SELECT <columns> FROM <from> WHERE <filter>` paged by `key`.
pub(crate) struct Listing<'a> {
    /// `SELECT ... FROM ... WHERE ...` with `?` placeholders for `params`; must end in a
    /// condition (use `1 = 1` for none) so `AND key > ?` can follow.
    pub(crate) select: &'a str,
    pub(crate) params: Vec<Value>,
    /// The key column as the query names it (`id`, `d.id`, `name`).
    pub(crate) key: &'a str,
    pub(crate) key_kind: KeyKind,
}

/// Run `listing` for `page`; `descending` is the order of the listing (the page's order, or
/// a fixed one where the contract says "newest first").
pub(crate) fn fetch_page<T>(
    conn: &Connection,
    listing: Listing<'_>,
    page: &PageRequest,
    descending: bool,
    key_of: impl Fn(&T) -> String,
    map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Page<T>> {
    let limit = page.limit.clamp(1, MAX_PAGE);
    // Reading backwards (a previous page) flips the direction of travel.
    let travel_descending = descending != page.prev;
    let mut params = listing.params;
    let mut sql = String::from(listing.select);
    if let Some(iterator) = &page.iterator {
        let key = match listing.key_kind {
            KeyKind::Text => Value::Text(iterator.clone()),
            KeyKind::Integer => Value::Integer(
                iterator.parse().map_err(|_| StoreError::Backend(format!("invalid iterator {iterator:?}")))?,
            ),
        };
        params.push(key);
        sql.push_str(&format!(" AND {} {} ?{}", listing.key, if travel_descending { "<" } else { ">" }, params.len()));
    }
    params.push(Value::Integer(limit as i64 + 1));
    sql.push_str(&format!(
        " ORDER BY {} {} LIMIT ?{}",
        listing.key,
        if travel_descending { "DESC" } else { "ASC" },
        params.len()
    ));
    let mut stmt = conn.prepare_cached(&sql).db()?;
    let mut data = stmt.query_map(params_from_iter(params), map).db()?.collect::<Result<Vec<T>, _>>().db()?;
    let done = data.len() <= limit;
    data.truncate(limit);
    if page.prev {
        data.reverse();
    }
    let (iterator, prev_iterator) = match (data.first(), data.last()) {
        (Some(first), Some(last)) => (Some(key_of(last)), Some(key_of(first))),
        _ => (page.iterator.clone(), page.iterator.clone()),
    };
    Ok(Page { data, iterator, prev_iterator, done })
}

/// Whether a listing that follows the page's order reads newest first.
pub(crate) fn is_descending(page: &PageRequest) -> bool {
    page.order == Order::Descending
}
