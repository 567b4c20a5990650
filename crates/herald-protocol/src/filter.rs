//! Publication filtering by tags: the `tf` filter of a subscribe request ([`FilterNode`]),
//! checked once when the subscription is made and compiled into a [`TagsFilter`] that the hub
//! tests every publication's tags against.
//!
//! The rules are Centrifugo's (centrifugal/centrifuge `internal/filter`), since the SDKs' filter
//! builders (centrifuge-python `Filter`, centrifuge-js `tagsFilter`) produce its trees:
//!
//! - a node is a leaf (`op` empty: `key`, `cmp`, `val` or `vals`) or a logical node
//!   (`op` = `and` | `or` | `not`, with `nodes`);
//! - comparisons: `eq`, `neq`, `in`, `nin`, `ex`, `nex`, `sw` (starts with), `ew` (ends with),
//!   `ct` (contains), and the numeric `gt`, `gte`, `lt`, `lte`;
//! - a missing tag reads as the empty string: `neq` and `nin` match it, `eq`, `sw`, `ew`, `ct`
//!   and the numeric comparisons do not, `in` matches it only when `vals` holds `""`;
//! - numbers are exact decimals `[+-]digits[.digits]` (at most 19 fraction digits, 200
//!   characters); a tag that is not such a number never satisfies a numeric comparison.
//!
//! A compiled filter holds its numbers parsed and its sets sorted, so testing a publication
//! allocates nothing. Validation is strict (an invalid tree is refused, never half applied),
//! and the node count is bounded by the caller.

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::FilterNode;

/// Why a filter was refused. The subscribe is answered with 107 (bad request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("unknown filter operator `{0}`")]
    UnknownOp(String),
    #[error("unknown filter comparison `{0}`")]
    UnknownCmp(String),
    #[error("filter comparison `{0}` needs a key")]
    MissingKey(String),
    #[error("filter comparison `{0}` needs a non-empty `val` and no `vals`")]
    NeedsVal(String),
    #[error("filter comparison `{0}` needs a non-empty `vals` and no `val`")]
    NeedsVals(String),
    #[error("filter comparison `{0}` takes neither `val` nor `vals`")]
    TakesNoValue(String),
    #[error("`{0}` needs at least one node")]
    NoNodes(String),
    #[error("`not` needs exactly one node")]
    NotArity,
    #[error("`{0}` is not a decimal number")]
    NotANumber(String),
    #[error("the filter has more than {0} nodes")]
    TooLarge(usize),
}

/// A validated tags filter, ready to test publications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagsFilter {
    And(Vec<TagsFilter>),
    Or(Vec<TagsFilter>),
    Not(Box<TagsFilter>),
    Leaf { key: String, test: Test },
}

/// What a leaf checks of its tag's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    Eq(String),
    Neq(String),
    /// Sorted, for a binary search.
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    /// The tag, as a decimal, compared with `value` must give an accepted ordering
    /// (`accept` is indexed Less, Equal, Greater).
    Number {
        value: Decimal,
        accept: [bool; 3],
    },
}

impl TagsFilter {
    /// Validate and compile a filter of at most `max_nodes` nodes.
    pub fn compile(node: &FilterNode, max_nodes: usize) -> Result<TagsFilter, FilterError> {
        let mut budget = max_nodes;
        compile_node(node, &mut budget, max_nodes)
    }

    /// Whether a publication with these tags passes the filter.
    pub fn matches(&self, tags: &HashMap<String, String>) -> bool {
        match self {
            TagsFilter::And(nodes) => nodes.iter().all(|n| n.matches(tags)),
            TagsFilter::Or(nodes) => nodes.iter().any(|n| n.matches(tags)),
            TagsFilter::Not(node) => !node.matches(tags),
            TagsFilter::Leaf { key, test } => test.matches(tags.get(key).map(String::as_str)),
        }
    }
}

impl Test {
    fn matches(&self, tag: Option<&str>) -> bool {
        let value = tag.unwrap_or_default();
        match self {
            Test::Eq(v) => tag == Some(v.as_str()),
            Test::Neq(v) => tag != Some(v.as_str()),
            Test::In(vals) => vals.binary_search_by(|v| v.as_str().cmp(value)).is_ok(),
            Test::NotIn(vals) => vals.binary_search_by(|v| v.as_str().cmp(value)).is_err(),
            Test::Exists => tag.is_some(),
            Test::NotExists => tag.is_none(),
            Test::StartsWith(v) => tag.is_some_and(|t| t.starts_with(v.as_str())),
            Test::EndsWith(v) => tag.is_some_and(|t| t.ends_with(v.as_str())),
            Test::Contains(v) => tag.is_some_and(|t| t.contains(v.as_str())),
            Test::Number { value: bound, accept } => tag.and_then(Decimal::parse).is_some_and(|number| {
                accept[match number.cmp(bound) {
                    Ordering::Less => 0,
                    Ordering::Equal => 1,
                    Ordering::Greater => 2,
                }]
            }),
        }
    }
}

fn compile_node(node: &FilterNode, budget: &mut usize, max_nodes: usize) -> Result<TagsFilter, FilterError> {
    *budget = budget.checked_sub(1).ok_or(FilterError::TooLarge(max_nodes))?;
    let mut children = || -> Result<Vec<TagsFilter>, FilterError> {
        if node.nodes.is_empty() {
            return Err(FilterError::NoNodes(node.op.clone()));
        }
        node.nodes.iter().map(|n| compile_node(n, budget, max_nodes)).collect()
    };
    match node.op.as_str() {
        "" => compile_leaf(node),
        "and" => Ok(TagsFilter::And(children()?)),
        "or" => Ok(TagsFilter::Or(children()?)),
        "not" => {
            if node.nodes.len() != 1 {
                return Err(FilterError::NotArity);
            }
            let mut nodes = children()?;
            Ok(TagsFilter::Not(Box::new(nodes.remove(0))))
        }
        other => Err(FilterError::UnknownOp(other.to_owned())),
    }
}

fn compile_leaf(node: &FilterNode) -> Result<TagsFilter, FilterError> {
    let cmp = node.cmp.as_str();
    let val = || {
        if node.val.is_empty() || !node.vals.is_empty() {
            Err(FilterError::NeedsVal(cmp.to_owned()))
        } else {
            Ok(node.val.clone())
        }
    };
    let vals = || {
        if node.vals.is_empty() || !node.val.is_empty() {
            return Err(FilterError::NeedsVals(cmp.to_owned()));
        }
        let mut vals = node.vals.clone();
        vals.sort_unstable();
        vals.dedup();
        Ok(vals)
    };
    let number = |accept: [bool; 3]| {
        let text = val()?;
        let value = Decimal::parse(&text).ok_or(FilterError::NotANumber(text))?;
        Ok(Test::Number { value, accept })
    };
    // Orderings accepted: [Less, Equal, Greater].
    let test = match cmp {
        "eq" => Test::Eq(val()?),
        "neq" => Test::Neq(val()?),
        "in" => Test::In(vals()?),
        "nin" => Test::NotIn(vals()?),
        "sw" => Test::StartsWith(val()?),
        "ew" => Test::EndsWith(val()?),
        "ct" => Test::Contains(val()?),
        "gt" => number([false, false, true])?,
        "gte" => number([false, true, true])?,
        "lt" => number([true, false, false])?,
        "lte" => number([true, true, false])?,
        "ex" | "nex" => {
            if !node.val.is_empty() || !node.vals.is_empty() {
                return Err(FilterError::TakesNoValue(cmp.to_owned()));
            }
            if cmp == "ex" { Test::Exists } else { Test::NotExists }
        }
        "" => return Err(FilterError::UnknownCmp(String::new())),
        other => return Err(FilterError::UnknownCmp(other.to_owned())),
    };
    // `ex` and `nex` accept an empty key (a tag named ""), as Centrifugo does.
    if node.key.is_empty() && !matches!(test, Test::Exists | Test::NotExists) {
        return Err(FilterError::MissingKey(cmp.to_owned()));
    }
    Ok(TagsFilter::Leaf { key: node.key.clone(), test })
}

/// An exact decimal, `[+-]digits[.digits]`, kept as its significant digits for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decimal {
    negative: bool,
    /// Integer digits without leading zeros ("" for zero).
    int: String,
    /// Fraction digits without trailing zeros.
    frac: String,
}

impl Decimal {
    const MAX_LEN: usize = 200;
    const MAX_FRACTION_DIGITS: usize = 19;

    /// Parse Centrifugo's decimal form; `None` for anything else (exponents, a bare `.`, ...).
    pub fn parse(text: &str) -> Option<Decimal> {
        if text.is_empty() || text.len() > Self::MAX_LEN {
            return None;
        }
        let (negative, rest) = match text.as_bytes()[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (int, frac) = match rest.split_once('.') {
            Some((int, frac)) => {
                if frac.is_empty() || frac.len() > Self::MAX_FRACTION_DIGITS {
                    return None;
                }
                (int, frac)
            }
            None => (rest, ""),
        };
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) {
            return None;
        }
        let int = int.trim_start_matches('0').to_owned();
        let frac = frac.trim_end_matches('0').to_owned();
        // -0 is 0.
        let negative = negative && !(int.is_empty() && frac.is_empty());
        Some(Decimal { negative, int, frac })
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(&other.int))
            .then_with(|| self.frac.cmp(&other.frac))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(key: &str, cmp: &str, val: &str) -> FilterNode {
        FilterNode { key: key.into(), cmp: cmp.into(), val: val.into(), ..Default::default() }
    }

    fn leaf_vals(key: &str, cmp: &str, vals: &[&str]) -> FilterNode {
        FilterNode {
            key: key.into(),
            cmp: cmp.into(),
            vals: vals.iter().map(|v| (*v).to_owned()).collect(),
            ..Default::default()
        }
    }

    fn logical(op: &str, nodes: Vec<FilterNode>) -> FilterNode {
        FilterNode { op: op.into(), nodes, ..Default::default() }
    }

    fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn passes(node: &FilterNode, pairs: &[(&str, &str)]) -> bool {
        TagsFilter::compile(node, 64).expect("valid filter").matches(&tags(pairs))
    }

    #[test]
    fn comparisons_follow_centrifugo() {
        let t = [("ticker", "AAPL"), ("price", "42.5"), ("empty", "")];
        assert!(passes(&leaf("ticker", "eq", "AAPL"), &t));
        assert!(!passes(&leaf("ticker", "eq", "BTC"), &t));
        assert!(!passes(&leaf("missing", "eq", "x"), &t));
        assert!(passes(&leaf("ticker", "neq", "BTC"), &t));
        assert!(passes(&leaf("missing", "neq", "x"), &t), "neq matches a missing tag");
        assert!(passes(&leaf_vals("ticker", "in", &["BTC", "AAPL"]), &t));
        assert!(!passes(&leaf_vals("missing", "in", &["BTC"]), &t));
        assert!(passes(&leaf_vals("missing", "in", &["", "BTC"]), &t), "a missing tag reads as \"\"");
        assert!(passes(&leaf_vals("ticker", "nin", &["BTC"]), &t));
        assert!(passes(&leaf_vals("missing", "nin", &["BTC"]), &t));
        assert!(!passes(&leaf_vals("missing", "nin", &[""]), &t));
        assert!(passes(&leaf("empty", "ex", ""), &t));
        assert!(!passes(&leaf("missing", "ex", ""), &t));
        assert!(passes(&leaf("missing", "nex", ""), &t));
        assert!(passes(&leaf("ticker", "sw", "AA"), &t));
        assert!(passes(&leaf("ticker", "ew", "PL"), &t));
        assert!(passes(&leaf("ticker", "ct", "AP"), &t));
        assert!(!passes(&leaf("missing", "ct", "A"), &t));
    }

    #[test]
    fn numeric_comparisons_are_exact_decimals() {
        let t = |v: &str| vec![("n", v.to_owned())];
        let check = |cmp: &str, bound: &str, value: &str| {
            let pairs = t(value);
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            passes(&leaf("n", cmp, bound), &pairs)
        };
        assert!(check("gte", "42", "42.00000001"));
        assert!(!check("gte", "42", "41.99999999"));
        assert!(check("gte", "42", "42.000"));
        assert!(check("gt", "-1", "0"));
        assert!(check("lt", "-1.5", "-2"));
        assert!(check("lte", "0", "-0"));
        assert!(check("gt", "99", "100"));
        assert!(check("gt", "9", "0010"));
        assert!(!check("gt", "10", "abc"), "not a number never matches");
        assert!(!check("gt", "10", "1e3"), "no exponents");
        assert!(!check("lt", "10", ".5"), "a digit before the point");
        assert!(!passes(&leaf("n", "lt", "10"), &[]), "missing tag never matches");
        let huge = "9".repeat(150);
        assert!(check("gt", "1", &huge));
        assert!(!check("gt", "1", &"9".repeat(201)), "longer than 200 characters");
    }

    #[test]
    fn logical_nodes() {
        let t = [("ticker", "AAPL"), ("price", "150")];
        let both = logical("and", vec![leaf("ticker", "eq", "AAPL"), leaf("price", "gte", "100")]);
        assert!(passes(&both, &t));
        let any = logical("or", vec![leaf("ticker", "eq", "BTC"), leaf("price", "lt", "100")]);
        assert!(!passes(&any, &t));
        assert!(passes(&logical("not", vec![any.clone()]), &t));
    }

    #[test]
    fn invalid_filters_are_refused() {
        let refused = |node: FilterNode| TagsFilter::compile(&node, 64).expect_err("invalid");
        assert_eq!(refused(FilterNode::default()), FilterError::UnknownCmp(String::new()));
        assert_eq!(refused(leaf("k", "eq", "")), FilterError::NeedsVal("eq".into()));
        assert_eq!(refused(leaf("", "eq", "v")), FilterError::MissingKey("eq".into()));
        assert_eq!(refused(leaf_vals("k", "in", &[])), FilterError::NeedsVals("in".into()));
        assert_eq!(refused(leaf("k", "in", "v")), FilterError::NeedsVals("in".into()));
        assert_eq!(refused(leaf("k", "ex", "v")), FilterError::TakesNoValue("ex".into()));
        assert_eq!(refused(leaf("k", "like", "v")), FilterError::UnknownCmp("like".into()));
        assert_eq!(refused(leaf("k", "gt", "ten")), FilterError::NotANumber("ten".into()));
        assert_eq!(refused(logical("and", vec![])), FilterError::NoNodes("and".into()));
        assert_eq!(refused(logical("xor", vec![leaf("k", "ex", "")])), FilterError::UnknownOp("xor".into()));
        assert_eq!(refused(logical("not", vec![leaf("k", "ex", ""), leaf("j", "ex", "")])), FilterError::NotArity);
        // `ex` with an empty key is accepted, as in Centrifugo.
        assert!(TagsFilter::compile(&leaf("", "ex", ""), 1).is_ok());
    }

    #[test]
    fn node_count_is_bounded() {
        let wide = logical("or", (0..10).map(|i| leaf("k", "eq", &i.to_string())).collect());
        assert!(TagsFilter::compile(&wide, 11).is_ok());
        assert_eq!(TagsFilter::compile(&wide, 10), Err(FilterError::TooLarge(10)));
        let mut deep = leaf("k", "ex", "");
        for _ in 0..100 {
            deep = logical("not", vec![deep]);
        }
        assert_eq!(TagsFilter::compile(&deep, 64), Err(FilterError::TooLarge(64)));
    }
}
