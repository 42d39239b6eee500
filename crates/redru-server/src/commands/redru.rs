//! REDRU.*: what redru has beyond Redis, named as Redis modules name theirs.
//! Indexes, equality lookups, queries with their plan, statistics and
//! backups; each the library call of the same name.

use redru::{Query, Value};

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
