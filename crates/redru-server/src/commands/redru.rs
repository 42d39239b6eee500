//! REDRU.*: what redru has beyond Redis, named as Redis modules name theirs.
//! Indexes, equality lookups, queries with their plan, statistics,
//! backups and the change feed; each the library call of the same name.

use redru::{Query, Seq, Value};

use super::Ctx;
use crate::exec::error_reply;
use crate::reply::Reply;

type R = Result<Reply, Reply>;

fn lib(e: redru::Error) -> Reply {
    error_reply(&e)
}

/// Index changes go straight to the database: they are records of their
/// own, not part of a batch. They run under the write gate.
pub fn index(c: &mut Ctx) -> R {
    let field = c.text(1)?.to_owned();
    let option = c.args.get(2).map(|_| c.upper(2));
    let db = c.tx.db();
    match option.as_deref() {
        None => db.create_index(&field),
        Some("UNIQUE") if c.args.len() == 3 => db.create_unique_index(&field),
        Some("ORDERED") if c.args.len() == 3 => db.create_ordered_index(&field),
        Some(_) => return Err(Reply::err("syntax error: REDRU.INDEX field [UNIQUE|ORDERED]")),
    }
    .map_err(lib)?;
    Ok(Reply::ok())
}

pub fn dropindex(c: &mut Ctx) -> R {
    c.tx.db().drop_index(c.text(1)?).map_err(lib)?;
    Ok(Reply::ok())
}

pub fn indexes(c: &mut Ctx) -> R {
    Ok(Reply::Array(
        c.tx.db()
            .indexes()
            .into_iter()
            .map(|i| {
                Reply::Map(vec![
                    (Reply::text("field"), Reply::text(i.field)),
                    (Reply::text("unique"), Reply::Bool(i.unique)),
                    (Reply::text("kind"), Reply::text(i.kind.to_string())),
                    (Reply::text("distinct_values"), Reply::Int(i.distinct_values as i64)),
                    (Reply::text("entries"), Reply::Int(i.entries as i64)),
                ])
            })
            .collect(),
    ))
}

pub fn find(c: &mut Ctx) -> R {
    let field = c.text(1)?.to_owned();
    let value: Value = redru::parse_value(c.text(2)?);
    let keys = c.tx.db().find(&field, &value).map_err(lib)?;
    Ok(Reply::Array(keys.into_iter().map(|k| Reply::Bulk(k.into_bytes())).collect()))
}

pub fn query(c: &mut Ctx) -> R {
    let query = Query::parse(c.text(1)?).map_err(lib)?;
    let result = c.tx.db().query(&query).map_err(lib)?;
    Ok(Reply::Array(
        result
            .entries
            .into_iter()
            .map(|(k, v)| Reply::Array(vec![Reply::Bulk(k.into_bytes()), Reply::text(v.as_str())]))
            .collect(),
    ))
}

pub fn explain(c: &mut Ctx) -> R {
    let query = Query::parse(c.text(1)?).map_err(lib)?;
    let result = c.tx.db().query(&query).map_err(lib)?;
    Ok(Reply::text(format!("{} matches; {}", result.entries.len(), result.plan)))
}

pub fn stats(c: &mut Ctx) -> R {
    let stats = c.tx.db().stats();
    Ok(Reply::text(serde_json::to_string(&stats).map_err(Reply::err)?))
}

pub fn backup(c: &mut Ctx) -> R {
    let info = c.tx.db().backup().map_err(lib)?;
    Ok(Reply::text(info.name))
}

/// Changes returned by one REDRU.CHANGES unless COUNT says otherwise.
const CHANGES_COUNT: i64 = 1000;

/// `REDRU.CHANGES prefix [from] [COUNT n]`: the durable changes to keys
/// under `prefix` after record `from` (after the last record written, without
/// it), at most about `n`, without waiting: `[position, [[seq, op, key,
/// value], ...]]`, key and value nil where there is none. Poll again from
/// `position`: it never points inside a batch (a batch is returned whole,
/// even past `n`), so no change comes twice. `Db::subscribe`, one read at a
/// time; the connection keeps its subscription between calls.
pub fn changes(c: &mut Ctx) -> R {
    let prefix = c.key(1)?.to_owned();
    let (mut from, mut count) = (None, CHANGES_COUNT);
    let mut i = 2;
    while i < c.args.len() {
        if c.upper(i) == "COUNT" && i + 1 < c.args.len() {
            count = c.int(i + 1)?;
            i += 2;
        } else if from.is_none() {
            from = Some(c.int(i)?);
            i += 1;
        } else {
            return Err(Reply::err("syntax error: REDRU.CHANGES prefix [from] [COUNT n]"));
        }
    }
    if from.is_some_and(|f| f < 0) || count < 1 {
        return Err(Reply::err("value is out of range, must be positive"));
    }
    let from = from.map(|f| Seq(f as u64));
    // The call after this one usually asks from the position this one
    // returns: go on with the same subscription, whose ring holds what came
    // since (a fresh one would scan the log segment from its start).
    let continues = |feed: &redru::Subscription| feed.prefix() == prefix && Some(feed.position()) == from;
    let mut feed = match c.client.feed.take() {
        Some(feed) if continues(&feed) => feed,
        _ => c.tx.db().subscribe(&prefix, from).map_err(lib)?,
    };
    let mut rows = Vec::new();
    let mut last = feed.position();
    // Past `count` only to finish a batch: the position must not point inside one.
    while (rows.len() as i64) < count || feed.position() < last {
        let Some(change) = feed.try_next().map_err(lib)? else { break };
        last = change.seq();
        let nil_or = |text: Option<&str>| text.map_or(Reply::Nil, |t| Reply::Bulk(t.as_bytes().to_vec()));
        rows.push(Reply::Array(vec![
            Reply::Int(change.seq().0 as i64),
            Reply::text(change.op()),
            nil_or(change.key()),
            nil_or(change.value().map(|v| v.as_str())),
        ]));
    }
    let position = feed.position().0 as i64;
    c.client.feed = Some(feed);
    Ok(Reply::Array(vec![Reply::Int(position), Reply::Array(rows)]))
}
