//! redis-rs, the Rust client, against the server: connection setup (it
//! sends CLIENT SETINFO), commands, pipelines and transactions.

use crate::util::{Server, TestResult};

#[test]
fn redis_rs_speaks_to_redru() -> TestResult {
    let server = Server::start()?;
    let client = redis::Client::open(format!("redis://{}/", server.addr()))?;
    let mut con = client.get_connection()?;
    let () = redis::cmd("SET").arg("greeting").arg("hello").query(&mut con)?;
    let got: String = redis::cmd("GET").arg("greeting").query(&mut con)?;
    assert_eq!(got, "hello");
    let missing: Option<String> = redis::cmd("GET").arg("nope").query(&mut con)?;
    assert_eq!(missing, None);
    let (a, b): (i64, i64) = redis::pipe().cmd("INCR").arg("n").cmd("INCRBY").arg("n").arg(5).query(&mut con)?;
    assert_eq!((a, b), (1, 6));
    let (x,): (String,) =
        redis::pipe().atomic().cmd("SET").arg("t").arg("1").ignore().cmd("GET").arg("t").query(&mut con)?;
    assert_eq!(x, "1");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut con)?;
    assert_eq!(keys, ["greeting", "n", "t"]);
    Ok(())
}
