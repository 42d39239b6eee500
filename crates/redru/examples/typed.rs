//! Typed values: store your own `serde` types and read them straight back
//! from the stored JSON text, with no `serde_json::Value` in between.
//! `cargo run -p redru --example typed -- DIR` (default `typed-data`); safe to
//! run again on the same directory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    customer: String,
    lines: Vec<Line>,
    paid: bool,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Line {
    sku: String,
    quantity: u32,
    cents: u64,
}

impl Order {
    fn total_cents(&self) -> u64 {
        self.lines.iter().map(|l| u64::from(l.quantity) * l.cents).sum()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "typed-data".into());
    let db = redru::Db::open(&dir)?;

    let order = Order {
        customer: "alice".into(),
        lines: vec![
            Line { sku: "tea".into(), quantity: 2, cents: 450 },
            Line { sku: "mug".into(), quantity: 1, cents: 1200 },
        ],
        paid: false,
    };
    // Any Serialize type becomes a JSON value; the database keeps its text.
    db.set("order:1", serde_json::to_value(&order)?)?;

    // Read it back as the type: `get_as` deserializes from the stored text.
    let back: Option<Order> = db.get_as("order:1")?;
    assert_eq!(back.as_ref(), Some(&order));

    // Or hold the shared text (`Doc`) and deserialize when needed.
    if let Some(doc) = db.get("order:1") {
        let again: Order = doc.deserialize()?;
        println!("order:1 for {} totals {} cents ({} bytes of JSON)", again.customer, again.total_cents(), doc.len());
    }

    // A value that does not fit the type is an error naming the key, not a panic.
    db.set("order:bad", redru::json!({"customer": 7}))?;
    match db.get_as::<Order>("order:bad") {
        Err(e) => println!("as expected: {e}"),
        Ok(_) => return Err("a number was accepted as a customer name".into()),
    }

    // Typed scans: every order, totalled.
    let totals: BTreeMap<String, u64> = db
        .scan_prefix("order:")
        .into_iter()
        .filter_map(|(key, doc)| doc.deserialize::<Order>().ok().map(|o| (key, o.total_cents())))
        .collect();
    println!("totals: {totals:?}");
    db.close()?;
    Ok(())
}
