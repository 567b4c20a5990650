//! Reading requests: JSON bodies field by field, query strings, and pagination.
//!
//! Bodies are parsed into a map of raw JSON values, then each field is read on its own. That
//! keeps three things the Svix API needs: the message payload exactly as the client sent it
//! (no re-encoding), the difference between an absent field and `null` (PATCH semantics), and
//! one 422 item per bad field with its location (`["body", "url"]`), all reported at once.
//!
//! Bodies that are not JSON at all get a 400; JSON of the wrong shape gets a 422, as in Svix.

use std::collections::BTreeMap;

use axum::body::Body;
use herald_store::{Order, PageRequest, Timestamp};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use crate::error::{ApiError, ApiResult, ValidationItem};
use crate::time::parse_rfc3339;
use crate::validate;

/// Most items one list page returns, and the default.
pub(crate) const MAX_LIMIT: usize = 250;
const DEFAULT_LIMIT: usize = 50;

/// Read a whole body, refusing more than `limit` bytes with a 413.
pub(crate) async fn read_body(body: Body, limit: usize) -> ApiResult<bytes::Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        let inner = error.into_inner();
        if inner.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            ApiError::too_large()
        } else {
            ApiError::bad_request(format!("Failed to read the request body: {inner}"))
        }
    })
}

/// A field as found in a body.
#[derive(Debug)]
pub(crate) enum Field<T> {
    Absent,
    Null,
    Value(T),
}

impl<T> Field<T> {
    /// `null` and absent both read as `None`.
    pub fn into_option(self) -> Option<T> {
        match self {
            Field::Value(value) => Some(value),
            Field::Absent | Field::Null => None,
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Field<U> {
        match self {
            Field::Value(value) => Field::Value(f(value)),
            Field::Null => Field::Null,
            Field::Absent => Field::Absent,
        }
    }

    /// PATCH semantics: a value replaces `target`, `null` clears it, absent leaves it alone.
    pub fn apply_to(self, target: &mut Option<T>) {
        match self {
            Field::Value(value) => *target = Some(value),
            Field::Null => *target = None,
            Field::Absent => {}
        }
    }
}

/// A JSON object body, read field by field; problems accumulate until [`JsonBody::finish`].
pub(crate) struct JsonBody {
    fields: BTreeMap<String, Box<RawValue>>,
    errors: Vec<ValidationItem>,
}

impl JsonBody {
    /// Read a request body of at most `limit` bytes (see [`read_body`]) and parse it.
    pub async fn read(body: Body, limit: usize) -> ApiResult<Self> {
        Self::parse(&read_body(body, limit).await?)
    }

    /// Parse `bytes` as a JSON object. An empty body reads as `{}` (the SDKs send no body for
    /// some POSTs).
    pub fn parse(bytes: &[u8]) -> ApiResult<Self> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self { fields: BTreeMap::new(), errors: Vec::new() });
        }
        let value: Box<RawValue> = serde_json::from_slice(bytes)
            .map_err(|error| ApiError::bad_request(format!("Request body is not valid JSON: {error}")))?;
        let fields = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(value.get()).map_err(|_| {
            ApiError::Validation(vec![ValidationItem {
                loc: vec!["body".to_owned()],
                msg: "The request body must be a JSON object.".to_owned(),
                ty: "type_error".to_owned(),
            }])
        })?;
        Ok(Self { fields, errors: Vec::new() })
    }

    /// The field under the first of `names` present (Svix accepts aliases such as
    /// `filterTypes` for `eventTypes`). A value of the wrong type is recorded as an error and
    /// read as absent.
    pub fn field<T: DeserializeOwned>(&mut self, names: &[&str]) -> Field<T> {
        let Some((name, raw)) = names.iter().find_map(|name| self.fields.get(*name).map(|raw| (*name, raw))) else {
            return Field::Absent;
        };
        if raw.get() == "null" {
            return Field::Null;
        }
        match serde_json::from_str::<T>(raw.get()) {
            Ok(value) => Field::Value(value),
            Err(error) => {
                let msg = error.to_string();
                // serde_json appends " at line 1 column 5"; the location is already in `loc`.
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
                self.errors.push(ValidationItem {
                    loc: vec!["body".to_owned(), name.to_owned()],
                    msg,
                    ty: "value_error.jsondecode".to_owned(),
                });
                Field::Absent
            }
        }
    }

    /// An optional field: absent and `null` are `None`.
    pub fn optional<T: DeserializeOwned>(&mut self, names: &[&str]) -> Option<T> {
        self.field(names).into_option()
    }

    /// A required field: absent or `null` is recorded as missing.
    pub fn required<T: DeserializeOwned>(&mut self, name: &str) -> Option<T> {
        match self.field(&[name]) {
            Field::Value(value) => Some(value),
            Field::Null | Field::Absent => {
                if !self.errors.iter().any(|e| e.loc.get(1).is_some_and(|loc| loc == name)) {
                    self.errors.push(ValidationItem {
                        loc: vec!["body".to_owned(), name.to_owned()],
                        msg: "field required".to_owned(),
                        ty: "value_error.missing".to_owned(),
                    });
                }
                None
            }
        }
    }

    /// A field that may be left out but not set to `null` (PATCH fields that are not nullable).
    pub fn non_null<T: DeserializeOwned>(&mut self, name: &str) -> Option<T> {
        match self.field(&[name]) {
            Field::Value(value) => Some(value),
            Field::Absent => None,
            Field::Null => {
                self.errors.push(ValidationItem {
                    loc: vec!["body".to_owned(), name.to_owned()],
                    msg: "field may not be null".to_owned(),
                    ty: "type_error.none.not_allowed".to_owned(),
                });
                None
            }
        }
    }

    /// The problems recorded so far, for a nested object whose errors the caller relocates.
    pub fn into_errors(self) -> Vec<ValidationItem> {
        self.errors
    }

    /// The raw JSON text of the first of `names` present, exactly as sent, with its name.
    pub fn raw<'a>(&'a self, names: &[&'a str]) -> Option<(&'a str, &'a RawValue)> {
        names.iter().find_map(|name| self.fields.get(*name).map(|raw| (*name, raw.as_ref())))
    }

    /// Record a problem found by a validator.
    pub fn push(&mut self, item: ValidationItem) {
        self.errors.push(item);
    }

    pub fn extend(&mut self, items: impl IntoIterator<Item = ValidationItem>) {
        self.errors.extend(items);
    }

    /// 422 with every problem recorded, if any.
    pub fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() { Ok(()) } else { Err(ApiError::Validation(self.errors)) }
    }
}

/// `uid`, checked as a uid whose ids start with `id_prefix`; `null` clears it in a PATCH.
pub(crate) fn uid_field(body: &mut JsonBody, id_prefix: &str, errors: &mut Vec<ValidationItem>) -> Field<String> {
    let uid: Field<String> = body.field(&["uid"]);
    if let Field::Value(uid) = &uid {
        validate::uid(uid, id_prefix, &["body", "uid"], errors);
    }
    uid
}

/// `metadata`, checked for size: `null` reads as empty, absent as `None`.
pub(crate) fn metadata_field(
    body: &mut JsonBody,
    errors: &mut Vec<ValidationItem>,
) -> Option<BTreeMap<String, String>> {
    let metadata = match body.field(&["metadata"]) {
        Field::Value(metadata) => Some(metadata),
        Field::Null => Some(BTreeMap::new()),
        Field::Absent => None,
    };
    if let Some(metadata) = &metadata {
        validate::metadata(metadata, &["body", "metadata"], errors);
    }
    metadata
}

/// An application's or endpoint's rate limit: `throttleRate` and its deprecated alias
/// `rateLimit`, each checked. A value out of range reads as absent (the body then fails).
pub(crate) struct RateFields {
    throttle_rate: Field<u32>,
    rate_limit: Field<u32>,
}

impl RateFields {
    /// Read both fields; `owner` ("Application", "Endpoint") starts the error messages.
    pub fn read(body: &mut JsonBody, owner: &str, errors: &mut Vec<ValidationItem>) -> Self {
        let throttle_rate = rate_field(body, "throttleRate", &format!("{owner} throttle rate"), errors);
        let rate_limit = rate_field(body, "rateLimit", &format!("{owner} rate limits"), errors);
        Self { throttle_rate, rate_limit }
    }

    /// The rate of a create or a full update: `throttleRate` if set, else `rateLimit`.
    pub fn value(self) -> Option<u32> {
        self.throttle_rate.into_option().or(self.rate_limit.into_option())
    }

    /// A PATCH: `throttleRate`, `null` included, wins over its alias when both are given.
    pub fn apply_to(self, target: &mut Option<u32>) {
        self.rate_limit.apply_to(target);
        self.throttle_rate.apply_to(target);
    }
}

fn rate_field(body: &mut JsonBody, name: &str, what: &str, errors: &mut Vec<ValidationItem>) -> Field<u32> {
    match body.field::<u64>(&[name]) {
        Field::Value(rate) => match validate::rate(rate, what, &["body", name], errors) {
            Some(rate) => Field::Value(rate),
            None => Field::Absent,
        },
        Field::Null => Field::Null,
        Field::Absent => Field::Absent,
    }
}

/// A parsed query string. Values that cannot be parsed give a 400, values out of range a 422,
/// as Svix's `ValidatedQuery` does.
pub(crate) struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
        Self { pairs }
    }

    /// The last value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    pub fn bool(&self, name: &str, default: bool) -> ApiResult<bool> {
        match self.get(name) {
            None => Ok(default),
            Some("true" | "True" | "1") => Ok(true),
            Some("false" | "False" | "0") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "Failed to deserialize query string: {name}: invalid boolean `{other}`"
            ))),
        }
    }

    pub fn timestamp(&self, name: &str) -> ApiResult<Option<Timestamp>> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(text) => parse_rfc3339(text).map(Some).ok_or_else(|| {
                ApiError::bad_request(format!("Failed to deserialize query string: {name}: invalid date-time `{text}`"))
            }),
        }
    }

    /// Svix's list parameters: `?event_types=a,b`, `?event_types=a&event_types=b` and
    /// `?event_types[]=a` all work.
    pub fn list(&self, name: &str) -> Vec<String> {
        let bracketed = format!("{name}[");
        let mut values: Vec<String> = Vec::new();
        for (key, value) in &self.pairs {
            if key == name || (key.starts_with(&bracketed) && key.ends_with(']')) {
                for item in value.split(',').filter(|s| !s.is_empty()) {
                    if !values.iter().any(|v| v == item) {
                        values.push(item.to_owned());
                    }
                }
            }
        }
        values
    }

    /// `limit`, `iterator` (a leading `-` asks for the page before it) and `order`.
    pub fn page(&self, default_order: Order) -> ApiResult<PageRequest> {
        let limit = match self.get("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .parse::<u64>()
                .map_err(|_| {
                    ApiError::bad_request(format!("Failed to deserialize query string: limit: invalid number `{text}`"))
                })?
                .try_into()
                .unwrap_or(usize::MAX),
        };
        if limit > MAX_LIMIT {
            return Err(ApiError::validation(&["query", "limit"], format!("Given limit must not exceed {MAX_LIMIT}")));
        }
        if limit == 0 {
            return Err(ApiError::validation(&["query", "limit"], "Given limit must be at least 1"));
        }
        let (iterator, prev) = match self.get("iterator").filter(|s| !s.is_empty()) {
            None => (None, false),
            Some(text) => match text.strip_prefix('-') {
                Some(rest) => (Some(rest.to_owned()), true),
                None => (Some(text.to_owned()), false),
            },
        };
        let order = match self.get("order") {
            None | Some("") => default_order,
            Some("ascending") => Order::Ascending,
            Some("descending") => Order::Descending,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Failed to deserialize query string: order: unknown variant `{other}`, expected `ascending` or `descending`"
                )));
            }
        };
        Ok(PageRequest { limit, iterator, prev, order })
    }
}
