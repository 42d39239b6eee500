//! [`Target`]: which server `--connect redis://...` (or `-h`/`-p`/`--pass`)
//! names, read from the URL the way Redis clients read it.
//!
//! Invariant: the password never appears in what is shown ([`Target::url`]).

use anyhow::{Result, bail};

/// Redis's port, the default.
pub const DEFAULT_PORT: u16 = 6379;

/// A server to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The ACL user, when the URL names one.
    pub user: Option<String>,
    /// The password, from the URL or `--pass`.
    pub password: Option<String>,
}

impl Target {
    /// Reads `redis://[[user]:password@]host[:port][/0]`.
    pub fn parse(url: &str) -> Result<Target> {
        let Some((scheme, rest)) = url.split_once("://") else {
            bail!("`{url}` is not a redis:// URL (write redis://HOST:PORT)");
        };
        match scheme.to_ascii_lowercase().as_str() {
            "redis" => {}
            "rediss" => bail!("TLS (rediss://) is not supported by the shell yet: connect over loopback or a tunnel"),
            other => bail!("unknown scheme `{other}://` (write redis://HOST:PORT)"),
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !matches!(path, "" | "0") {
            bail!("redru serves database 0 only, not `/{path}`");
        }
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let (user, password) = match credentials {
            None => (None, None),
            Some(c) => match c.split_once(':') {
                Some((u, p)) => ((!u.is_empty()).then(|| decode(u)).transpose()?, Some(decode(p)?)),
                None => (None, Some(decode(c)?)),
            },
        };
        let (host, port) = split_host_port(hostport)?;
        Ok(Target { host, port: port.unwrap_or(DEFAULT_PORT), user, password })
    }

    /// What is shown: the URL without the password.
    pub fn url(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("redis://{host}:{}", self.port)
    }
}

fn split_host_port(text: &str) -> Result<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else { bail!("unclosed `[` in `{text}`") };
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| anyhow::anyhow!("bad address `{text}`"))?),
        };
        (host, port)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| anyhow::anyhow!("bad port `{p}`"))?),
    };
    Ok((host.to_owned(), port))
}

/// Percent-decoding of a URL's user or password (`%40` is `@`).
fn decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else { bail!("bad percent-escape in the URL's credentials") };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow::anyhow!("the URL's credentials are not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_read_like_redis_clients_read_them() -> Result<()> {
        let t = Target::parse("redis://127.0.0.1:7000")?;
        assert_eq!((t.host.as_str(), t.port, t.password), ("127.0.0.1", 7000, None));
        let t = Target::parse("redis://:s%40cret@localhost")?;
        assert_eq!((t.host.as_str(), t.port, t.user, t.password.as_deref()), ("localhost", 6379, None, Some("s@cret")));
        let t = Target::parse("redis://default:pw@[::1]:6380/0")?;
        assert_eq!((t.host.as_str(), t.port, t.user.as_deref()), ("::1", 6380, Some("default")));
        assert_eq!(t.url(), "redis://[::1]:6380");
        assert_eq!(Target::parse("redis://:pw@h:1")?.url(), "redis://h:1");
        for bad in
            ["localhost:6379", "http://h", "rediss://h", "redis://h:0", "redis://h:x", "redis://h/1", "redis://:%zz@h"]
        {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }
}
