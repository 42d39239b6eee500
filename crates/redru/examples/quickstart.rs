//! The README's library example as a program: open, write, read back typed,
//! index, query, batch, save, close. Run it as often as you like on the same
//! directory (`cargo run -p redru --example quickstart -- DIR`, default
//! `quickstart-data`): everything it does is safe to repeat.

use redru::{Batch, Db, Query, json};

#[derive(serde::Deserialize)]
struct User {
    name: String,
    age: u32,
}

fn main() -> redru::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "quickstart-data".into());
    let db = Db::open(&dir)?;
    db.set("user:1", json!({"name": "Alice", "age": 30, "address": {"city": "Oslo"}}))?;
    db.set("user:2", json!({"name": "Bob", "age": 25}))?;

    if let Some(doc) = db.get("user:1") {
        // A Doc is the stored JSON text, shared, not copied.
        assert_eq!(doc.as_str(), r#"{"address":{"city":"Oslo"},"age":30,"name":"Alice"}"#);
        let user: User = doc.deserialize()?;
        println!("user:1 is {} ({})", user.name, user.age);
    }
    assert_eq!(db.get_value("user:2"), Some(json!({"name": "Bob", "age": 25})));

    // Index definitions are kept in the database: create one only once.
    if !db.indexes().iter().any(|index| index.field == "name") {
        db.create_index("name")?;
    }
    assert_eq!(db.find("name", &json!("Alice"))?, ["user:1"]);
    let adults = db.query(&Query::parse("age >= 18 and exists address.city")?)?;
    println!("{} match ({})", adults.entries.len(), adults.plan);

    db.batch(Batch::new().set("a", json!(1)).delete("user:2"))?; // all or nothing
    let saved = db.save()?; // compact the log into database.json
    println!("saved {} keys ({} bytes) in {dir}", saved.keys, saved.bytes);
    db.close()
}
