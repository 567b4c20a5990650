//! Keyset pagination shared by every listing: rows after (or, with `prev`, before) the
//! iterator's key, one more than asked to learn whether the page is the last. The same rules
//! as the SQLite store's (`herald-store-sqlite/src/paging.rs`).
//!
//! The key is a sortable column: ids sort by creation time, event types by name, deliveries
//! by their numeric id (passed around as a decimal string). A page's `iterator` is its last
//! row's key and `prev_iterator` its first; `done` says no rows follow in the direction the
//! page was read. An empty page hands the request's iterator back, so a poller keeps its place.

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::rows::{Conn, Param, query};
use herald_store::{Order, Page, PageRequest, StoreError, StoreResult};

/// Largest page served, whatever is asked.
pub(crate) const MAX_PAGE: usize = 1000;

/// An owned statement parameter, for queries built at run time.
pub(crate) type OwnedParam = Box<dyn ToSql + Sync + Send>;

/// The type of the key column.
#[derive(Clone, Copy)]
pub(crate) enum KeyKind {
    Text,
    Integer,
}

/// One listing query: `SELECT <columns> FROM <from> WHERE <filter>` paged by `key`.
pub(crate) struct Listing<'a> {
    /// `SELECT ... FROM ... WHERE ...` with `$n` placeholders for `params`; must end in a
    /// condition (use `TRUE` for none) so `AND key > $n` can follow.
    pub(crate) select: &'a str,
    pub(crate) params: Vec<OwnedParam>,
    /// The key column as the query names it (`id`, `d.id`, `name`).
    pub(crate) key: &'a str,
    pub(crate) key_kind: KeyKind,
}

/// Run `listing` for `page`; `descending` is the order of the listing (the page's order, or
/// a fixed one where the contract says "newest first").
pub(crate) async fn fetch_page<T>(
    conn: &Conn,
    listing: Listing<'_>,
    page: &PageRequest,
    descending: bool,
    key_of: impl Fn(&T) -> String,
    map: impl Fn(&Row) -> StoreResult<T>,
) -> StoreResult<Page<T>> {
    let limit = page.limit.clamp(1, MAX_PAGE);
    // Reading backwards (a previous page) flips the direction of travel.
    let travel_descending = descending != page.prev;
    let mut params = listing.params;
    let mut sql = String::from(listing.select);
    if let Some(iterator) = &page.iterator {
        let key: OwnedParam = match listing.key_kind {
            KeyKind::Text => Box::new(iterator.clone()),
            KeyKind::Integer => Box::new(
                iterator.parse::<i64>().map_err(|_| StoreError::Backend(format!("invalid iterator {iterator:?}")))?,
            ),
        };
        params.push(key);
        sql.push_str(&format!(" AND {} {} ${}", listing.key, if travel_descending { "<" } else { ">" }, params.len()));
    }
    params.push(Box::new(limit as i64 + 1));
    sql.push_str(&format!(
        " ORDER BY {} {} LIMIT ${}",
        listing.key,
        if travel_descending { "DESC" } else { "ASC" },
        params.len()
    ));
    let refs: Vec<Param<'_>> = params.iter().map(|p| p.as_ref() as Param<'_>).collect();
    let rows = query(conn, &sql, &refs).await?;
    let mut data = rows.iter().map(&map).collect::<StoreResult<Vec<T>>>()?;
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
