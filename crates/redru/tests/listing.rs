//! Guards listing keys in order (`Db::list`, `list_entries`, `range`, `keys`,
//! `scan_prefix`): through random sets, deletes, batches, clears, bulk fills
//! and removals, saves and reopens, every listing (a range, a prefix, a
//! resume point, a limit), paged to its end, equals a brute-force sorted
//! filter of a model, and a page resumes after its cursor whatever was written in between.
//! An open keeps no key order (the first listing sorts them): the first
//! listing after an open from a snapshot, from the log or both, with writes
//! before it and during it, equals a sort of the model.

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use redru::{Batch, Db, Durability, Listing, Options, json};

#[derive(Clone, Debug)]
enum Op {
    Set(usize),
    Delete(usize),
    Batch(Vec<(usize, bool)>),
    /// Sets `n` keys `fill:{i}` with a long tail on every third one: enough
    /// keys that the shards' ordered sets split into many chunks.
    Fill(usize),
    /// Deletes the fill's keys whose number is `i % m == r`.
    Thin(usize, usize),
    Clear,
    Save,
    Reopen,
}

/// Keys with shared prefixes, an empty one, non-ASCII ones and ones past 23
/// bytes (kept outside the map's inline key slots).
const KEYS: [&str; 14] = [
    "",
    "a",
    "a:",
    "a:1",
    "a:10",
    "a:2",
    "ab",
    "b",
    "user:0420",
    "user:0421",
    "user:04210",
    "user:a-key-that-is-longer-than-twenty-three-bytes",
    "é",
    "日本",
];

/// Prefixes and bounds the listings use: the keys themselves and points between them.
const POINTS: [&str; 9] = ["", "a", "a:", "a:1", "b", "fill:", "fill:1", "user:", "user:0421"];

fn fill_key(i: usize) -> String {
    if i.is_multiple_of(3) { format!("fill:{i}:{}", "x".repeat(30)) } else { format!("fill:{i}") }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..KEYS.len()).prop_map(Op::Set),
        3 => (0..KEYS.len()).prop_map(Op::Delete),
        2 => prop::collection::vec((0..KEYS.len(), any::<bool>()), 0..6).prop_map(Op::Batch),
        1 => (0usize..4000).prop_map(Op::Fill),
        1 => (2usize..5, 0usize..5).prop_map(|(m, r)| Op::Thin(m, r % m)),
        1 => Just(Op::Clear),
        1 => Just(Op::Save),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Clone, Debug)]
struct Spec {
    prefix: Option<&'static str>,
    lower: Bound<&'static str>,
    upper: Bound<&'static str>,
    limit: Option<usize>,
}

fn bound() -> impl Strategy<Value = Bound<&'static str>> {
    let point = prop::sample::select(&POINTS[..]);
    prop_oneof![Just(Bound::Unbounded), point.clone().prop_map(Bound::Included), point.prop_map(Bound::Excluded),]
}

fn spec() -> impl Strategy<Value = Spec> {
    (prop::option::of(prop::sample::select(&POINTS[..])), bound(), bound(), prop::option::of(1usize..40))
        .prop_map(|(prefix, lower, upper, limit)| Spec { prefix, lower, upper, limit })
}

impl Spec {
    fn listing(&self, after: Option<&str>) -> Listing {
        let mut l = Listing::all();
        if let Some(p) = self.prefix {
            l = l.with_prefix(p);
        }
        l = match (after, self.lower) {
            (Some(a), _) => l.after(a),
            (None, Bound::Included(k)) => l.from(k),
            (None, Bound::Excluded(k)) => l.after(k),
            (None, Bound::Unbounded) => l,
        };
        l = match self.upper {
            Bound::Included(k) => l.through(k),
            Bound::Excluded(k) => l.to(k),
            Bound::Unbounded => l,
        };
        match self.limit {
            Some(n) => l.limit(n),
            None => l,
        }
    }

    fn brute(&self, model: &BTreeMap<String, u64>) -> Vec<String> {
        model
            .keys()
            .filter(|k| self.prefix.is_none_or(|p| k.starts_with(p)))
            .filter(|k| within(k, self.lower, self.upper))
            .cloned()
            .collect()
    }
}

fn within(k: &str, lower: Bound<&str>, upper: Bound<&str>) -> bool {
    let above = match lower {
        Bound::Included(b) => k >= b,
        Bound::Excluded(b) => k > b,
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(b) => k <= b,
        Bound::Excluded(b) => k < b,
        Bound::Unbounded => true,
    };
    above && below
}

/// Pages through `spec` to its end: the pages, joined, equal the brute-force
/// filter; each is within the limit and has a cursor exactly when cut short.
fn check_listing(db: &Db, model: &BTreeMap<String, u64>, spec: &Spec) -> Result<(), TestCaseError> {
    let expected = spec.brute(model);
    let mut got: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..=expected.len() + 1 {
        let page = db.list(&spec.listing(after.as_deref()));
        prop_assert!(page.items.len() <= spec.limit.unwrap_or(usize::MAX));
        got.extend(page.items.iter().cloned());
        let left = expected.len() - got.len().min(expected.len());
        prop_assert_eq!(page.next.is_some(), left > 0, "cursor after {} of {}", got.len(), expected.len());
        match page.next {
            Some(next) => {
                prop_assert_eq!(Some(&next), page.items.last());
                after = Some(next);
            }
            None => break,
        }
    }
    prop_assert_eq!(&got, &expected, "{:?}", spec);
    let entries = db.list_entries(&spec.listing(None));
    let limit = spec.limit.unwrap_or(usize::MAX);
    let keys: Vec<String> = entries.items.iter().map(|(k, _)| k.clone()).collect();
    prop_assert_eq!(&keys[..], &expected[..expected.len().min(limit)]);
    for (k, doc) in &entries.items {
        prop_assert_eq!(Some(doc.to_value()), model.get(k).map(|n| json!(n)));
    }
    Ok(())
}

fn check_all(db: &Db, model: &BTreeMap<String, u64>) -> Result<(), TestCaseError> {
    let all: Vec<String> = model.keys().cloned().collect();
    prop_assert_eq!(db.keys(), all.clone());
    prop_assert_eq!(db.range(..), all);
    let under_a: Vec<String> = model.keys().filter(|k| k.starts_with("a:")).cloned().collect();
    let scanned: Vec<String> = db.scan_prefix("a:").into_iter().map(|(k, _)| k).collect();
    prop_assert_eq!(&scanned, &under_a);
    prop_assert_eq!(db.range("a:".."a;"), under_a);
    Ok(())
}

/// `ops[i].1`: whether to list after step `i`; steps that do not list let
/// writes and deletes come between an open and its first listing.
fn run(ops: Vec<(Op, bool)>, specs: Vec<Spec>) -> Result<(), TestCaseError> {
    let fail = |e: redru::Error| TestCaseError::fail(e.to_string());
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let open = || Options::new().durability(Durability::Never).auto_compact_min_bytes(1 << 16).open(dir.path());
    let mut db = open().map_err(fail)?;
    let mut model: BTreeMap<String, u64> = BTreeMap::new();
    for (step, (op, list)) in ops.into_iter().enumerate() {
        let n = step as u64;
        match op {
            Op::Set(k) => {
                db.set(KEYS[k], json!(n)).map_err(fail)?;
                model.insert(KEYS[k].to_owned(), n);
            }
            Op::Delete(k) => {
                prop_assert_eq!(db.delete(KEYS[k]).map_err(fail)?, model.remove(KEYS[k]).is_some());
            }
            Op::Batch(ops) => {
                let mut batch = Batch::new();
                for (k, set) in ops {
                    if set {
                        batch.push_set(KEYS[k], json!(n));
                        model.insert(KEYS[k].to_owned(), n);
                    } else {
                        batch.push_delete(KEYS[k]);
                        model.remove(KEYS[k]);
                    }
                }
                db.batch(batch).map_err(fail)?;
            }
            Op::Fill(count) => {
                let mut batch = Batch::new();
                for i in 0..count {
                    batch.push_set(fill_key(i), json!(n));
                    model.insert(fill_key(i), n);
                }
                db.batch(batch).map_err(fail)?;
            }
            Op::Thin(m, r) => {
                let doomed: Vec<String> = model
                    .keys()
                    .filter(|k| k.starts_with("fill:"))
                    .filter(|k| {
                        k[5..].split(':').next().and_then(|i| i.parse::<usize>().ok()).is_some_and(|i| i % m == r)
                    })
                    .cloned()
                    .collect();
                let mut batch = Batch::new();
                for k in doomed {
                    batch.push_delete(k.clone());
                    model.remove(&k);
                }
                db.batch(batch).map_err(fail)?;
            }
            Op::Clear => {
                prop_assert_eq!(db.clear().map_err(fail)?, model.len());
                model.clear();
            }
            Op::Save => {
                db.save().map_err(fail)?;
            }
            Op::Reopen => {
                drop(db);
                db = open().map_err(fail)?;
            }
        }
        if list {
            for spec in &specs {
                check_listing(&db, &model, spec)?;
            }
        }
    }
    check_all(&db, &model)?;
    drop(db);
    let db = open().map_err(fail)?;
    check_all(&db, &model)?;
    for spec in &specs {
        check_listing(&db, &model, spec)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn listings_match_a_sorted_filter(
        ops in prop::collection::vec((op(), any::<bool>()), 1..30),
        specs in prop::collection::vec(spec(), 1..5),
    ) {
        run(ops, specs)?;
    }
}

#[test]
fn pages_resume_after_their_cursor() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    for i in 0..3000 {
        db.set(format!("k:{i:05}"), json!(i))?;
    }
    let first = db.list(&Listing::prefix("k:").limit(10));
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.next.as_deref(), Some("k:00009"));
    // Keys written and deleted between pages: the next page starts after the cursor.
    db.delete("k:00010")?;
    db.set("k:000095", json!(0))?;
    let next = db.list(&Listing::prefix("k:").after("k:00009").limit(3));
    assert_eq!(next.items, ["k:000095", "k:00011", "k:00012"]);
    // The last page has no cursor; a limit of zero lists nothing.
    let last = db.list(&Listing::prefix("k:").after("k:02997").limit(5));
    assert_eq!((last.items.len(), last.next), (2, None));
    assert!(db.list(&Listing::all().limit(0)).items.is_empty());
    // An inverted range is empty, not a panic.
    assert!(db.list(&Listing::all().from("z").to("a")).items.is_empty());
    Ok(())
}

/// Where the keys are at the open: in the snapshot, in the log, or both.
#[derive(Clone, Copy, Debug)]
enum Source {
    Snapshot,
    Log,
    Both,
}

/// The first listing after an open sorts the key orders the open left
/// deferred, on a copy, while a writer sets and deletes: every listing is
/// in order and holds every key the writer does not touch, and once the
/// writer is done the listings equal a sort of the model, whatever the keys'
/// source and whatever was written between the open and the listing.
#[test]
fn the_first_listing_after_an_open_during_writes_equals_a_sort() -> Result<(), Box<dyn std::error::Error>> {
    for source in [Source::Snapshot, Source::Log, Source::Both] {
        let dir = tempfile::tempdir()?;
        let open = || Options::new().durability(Durability::Never).auto_compact(false).open(dir.path());
        let mut model = std::collections::BTreeSet::new();
        let db = open()?;
        let n = 20_000u64;
        for i in 0..n {
            // Keys arrive out of byte order; one in seven is deleted again.
            let key = format!("k:{}", i.wrapping_mul(7919) % n);
            db.set(key.as_str(), json!(i))?;
            model.insert(key);
            if matches!(source, Source::Both) && i == n / 2 {
                db.save()?;
            }
        }
        for i in (0..n).step_by(7) {
            db.delete(&format!("k:{i}"))?;
            model.remove(&format!("k:{i}"));
        }
        if matches!(source, Source::Snapshot) {
            db.save()?;
        }
        db.close()?;
        let db = open()?;
        // Written between the open and the first listing.
        for i in 0..300u64 {
            db.set(format!("between:{i}").as_str(), json!(i))?;
            model.insert(format!("between:{i}"));
            db.delete(&format!("k:{}", i * 7 + 1))?;
            model.remove(&format!("k:{}", i * 7 + 1));
        }
        let untouched: Vec<String> = model.iter().filter(|k| !k.starts_with("k:")).cloned().collect();
        // The writer is under way before the first listing starts, so that
        // its writes fall during the listing's sort of the deferred orders.
        let progress = std::sync::atomic::AtomicUsize::new(0);
        let written = std::thread::scope(|s| -> Result<Vec<(String, bool)>, Box<dyn std::error::Error>> {
            let writer = s.spawn(|| -> redru::Result<Vec<(String, bool)>> {
                let mut done = Vec::new();
                for i in 0..4000u64 {
                    db.set(format!("during:{i}").as_str(), json!(i))?;
                    done.push((format!("during:{i}"), true));
                    if i % 5 == 0 {
                        db.delete(&format!("during:{}", i / 2))?;
                        done.push((format!("during:{}", i / 2), false));
                    }
                    db.delete(&format!("k:{}", i * 5 + 3))?;
                    done.push((format!("k:{}", i * 5 + 3), false));
                    progress.store(i as usize + 1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok(done)
            });
            while progress.load(std::sync::atomic::Ordering::Relaxed) < 20 && !writer.is_finished() {
                std::thread::yield_now();
            }
            for _ in 0..3 {
                let keys = db.keys();
                assert!(keys.windows(2).all(|w| w[0] < w[1]), "{source:?}: a listing is in order");
                let between = keys.iter().filter(|k| k.starts_with("between:")).count();
                assert_eq!(between, untouched.len(), "{source:?}: the keys written before the listing");
            }
            Ok(writer.join().map_err(|_| "the writer thread panicked")??)
        })?;
        for (key, set) in written {
            if set {
                model.insert(key);
            } else {
                model.remove(&key);
            }
        }
        let sorted: Vec<String> = model.iter().cloned().collect();
        let listed = db.keys();
        let missing = sorted.iter().filter(|k| listed.binary_search(k).is_err()).take(5).collect::<Vec<_>>();
        assert!(
            listed == sorted,
            "{source:?}: {} keys listed, {} expected, missing {missing:?}",
            listed.len(),
            sorted.len()
        );
        let under: Vec<String> = sorted.iter().filter(|k| k.starts_with("k:1")).take(50).cloned().collect();
        assert_eq!(db.list(&Listing::prefix("k:1").limit(50)).items, under, "{source:?}");
        // And after another reopen, with nothing written before the listing.
        db.close()?;
        assert!(open()?.keys() == sorted, "{source:?}, reopened");
    }
    Ok(())
}
