//! Running one request: authentication, MULTI queueing, the arity check,
//! the write gate and the commit of a write's batch.

use std::sync::atomic::Ordering;

use crate::commands::{self, Ctx, Spec};
use crate::reply::Reply;
use crate::shared::{Client, Shared};
use crate::tx::Tx;

/// What the connection does after a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Read the next request.
    Continue,
    /// Send the reply, then close (QUIT).
    Close,
}

/// A request after the checks every request passes.
pub enum Prepared {
    /// Answered already.
    Done(Reply, After),
    /// A cluster node runs it asynchronously ([`crate::cluster::run`]).
    Cluster(&'static Spec),
}

/// Runs one request unless a cluster node must run it (`args[0]` is the command's name).
pub fn prepare(shared: &Shared, client: &mut Client, args: &[Vec<u8>]) -> Prepared {
    let (reply, after) = match check(shared, client, args) {
        Ok(spec) if shared.config.cluster.is_some() && crate::cluster::handles(spec) => {
            return Prepared::Cluster(spec);
        }
        Ok(spec) => {
            let after = if spec.name == "quit" { After::Close } else { After::Continue };
            (run_one(shared, client, spec, args), after)
        }
        Err(reply) => (reply, After::Continue),
    };
    Prepared::Done(reply, after)
}

/// The command to run, or the reply that refuses (or queues) it.
fn check(shared: &Shared, client: &mut Client, args: &[Vec<u8>]) -> Result<&'static Spec, Reply> {
    shared.total_commands.fetch_add(1, Ordering::Relaxed);
    let Some(spec) = commands::find(&args[0]) else {
        if client.multi.is_some() {
            client.multi_failed = true;
        }
        return Err(commands::unknown(args));
    };
    if !client.authed && !spec.no_auth {
        let refusal = Reply::Error("NOAUTH Authentication required.".into());
        if spec.name == "exec" {
            return Err(abort_exec(client, &refusal));
        }
        return Err(refusal);
    }
    if let Err(reply) = commands::check_arity(spec, args) {
        if spec.name == "exec" {
            return Err(abort_exec(client, &reply));
        }
        if client.multi.is_some() {
            client.multi_failed = true;
        }
        return Err(reply);
    }
    if let Some(queue) = &mut client.multi
        && !matches!(spec.name, "exec" | "discard" | "multi" | "quit" | "watch" | "unwatch")
    {
        queue.push(args.to_vec());
        return Err(Reply::Simple("QUEUED".into()));
    }
    Ok(spec)
}

/// An EXEC refused (wrong arity, no AUTH) discards the transaction, as
/// Redis's `execCommandAbort` does (in MULTI or not): the client is out of
/// MULTI afterwards.
fn abort_exec(client: &mut Client, refusal: &Reply) -> Reply {
    client.multi = None;
    client.multi_failed = false;
    let why = match refusal {
        Reply::Error(text) => text.strip_prefix("ERR ").unwrap_or(text),
        _ => "",
    };
    Reply::Error(format!("EXECABORT Transaction discarded because of: {why}"))
}

/// Runs one command on its own: a write under the write gate, committed.
pub fn run_one(shared: &Shared, client: &mut Client, spec: &Spec, args: &[Vec<u8>]) -> Reply {
    let _gate = spec.write.then(|| shared.write_gate());
    let mut tx = Tx::new(&shared.db);
    let reply = run(shared, client, spec, args, &mut tx);
    if reply.is_error() {
        // A command that failed wrote nothing (handlers check before they write).
        return reply;
    }
    match tx.commit() {
        Ok(changed) => {
            shared.watched_changed(&changed);
            reply
        }
        Err(e) => error_reply(&e),
    }
}

/// Runs `spec` inside `tx`.
pub fn run(shared: &Shared, client: &mut Client, spec: &Spec, args: &[Vec<u8>], tx: &mut Tx<'_>) -> Reply {
    let mut ctx = Ctx { shared, client, args, tx };
    (spec.run)(&mut ctx).unwrap_or_else(|error| error)
}

/// Runs the queued commands of a MULTI as one transaction: one write gate,
/// one view, one atomic commit. If the commit fails nothing was applied and
/// EXEC answers the error.
pub fn exec(shared: &Shared, client: &mut Client, queue: Vec<Vec<Vec<u8>>>) -> Reply {
    let _gate = shared.write_gate();
    let watching = std::mem::take(&mut client.watching);
    let dirty = shared.lock_watches().unwatch(client.id, &watching);
    if dirty {
        // A watched key changed since WATCH: nothing runs (Redis's null reply).
        return Reply::NilArray;
    }
    let mut tx = Tx::new(&shared.db);
    let mut replies = Vec::with_capacity(queue.len());
    for args in &queue {
        // Queued commands passed the lookup and arity checks when queued.
        let reply = match commands::find(&args[0]) {
            Some(spec) if spec.name == "exec" || spec.name == "multi" => Reply::err("MULTI and EXEC cannot be nested"),
            Some(spec) => run(shared, client, spec, args, &mut tx),
            None => commands::unknown(args),
        };
        replies.push(reply);
    }
    match tx.commit() {
        Ok(changed) => {
            shared.watched_changed(&changed);
            Reply::Array(replies)
        }
        Err(e) => Reply::Error(format!("EXECABORT the transaction changed nothing: {e}")),
    }
}

/// A library error as a reply (`-ERR ...`, the library's message).
pub fn error_reply(error: &redru::Error) -> Reply {
    Reply::err(error)
}
