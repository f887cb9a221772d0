//! `hab census`: every service group of the ring as one table, from any member's HTTP gateway
//! (`GET /census`, and `GET /services` for the health of that member's own services, which
//! the census does not carry). JSON -> rows -> text are pure functions; `--watch` polls and
//! redraws only when the text changed. The bearer token never reaches output or errors.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use super::http_get::{self, GetError, GetOptions};
use super::Error;

/// The HTTP gateway's port when `--remote-http` names none.
pub const DEFAULT_HTTP_PORT: u16 = 9631;
/// How often `--watch` asks again.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// ANSI: cursor home, clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// One supervisor's HTTP gateway and the token it may want.
#[derive(Clone)]
pub struct HttpRemote {
    pub addr: String,
    pub token: Option<String>,
    pub options: GetOptions,
}

impl std::fmt::Debug for HttpRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRemote")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl HttpRemote {
    /// `HOST[:PORT]` (port 9631 when left out); an empty token counts as none.
    pub fn new(addr: &str, token: Option<String>) -> Result<HttpRemote, Error> {
        let addr = super::host_port(addr, DEFAULT_HTTP_PORT)
            .ok_or_else(|| Error::BadHttpAddr(addr.to_string()))?;
        Ok(HttpRemote {
            addr,
            token: token.filter(|t| !t.trim().is_empty()),
            options: GetOptions::default(),
        })
    }

    /// `GET path`, answered 200 with JSON.
    async fn get_json(&self, path: &'static str) -> Result<Value, Error> {
        let addr = self.addr.clone();
        let answer = http_get::get(&self.addr, path, self.token.as_deref(), &self.options)
            .await
            .map_err(|e| match e {
                GetError::Unreachable(detail) => Error::GatewayUnreachable {
                    addr: addr.clone(),
                    detail,
                },
                other => Error::Gateway {
                    addr: addr.clone(),
                    path,
                    problem: other.to_string(),
                },
            })?;
        match answer.status {
            200 => {}
            401 => {
                return Err(Error::GatewayUnauthorized {
                    addr,
                    token_sent: self.token.is_some(),
                })
            }
            status => {
                let text = String::from_utf8_lossy(&answer.body);
                let excerpt: String = text.trim().chars().take(200).collect();
                return Err(Error::Gateway {
                    addr,
                    path,
                    problem: format!("answered HTTP {status}: {excerpt}"),
                });
            }
        }
        serde_json::from_slice(&answer.body).map_err(|e| Error::Gateway {
            addr,
            path,
            problem: format!("expected JSON, found something else ({e})"),
        })
    }

    /// The census table as text: `/census`, plus `/services` when the gateway gives it (the
    /// service health column shows `-` without it).
    pub async fn census_text(&self) -> Result<String, Error> {
        let census = self.get_json("/census").await?;
        let services = self.get_json("/services").await.ok();
        let rows = rows(&census, services.as_ref()).map_err(|problem| Error::Gateway {
            addr: self.addr.clone(),
            path: "/census",
            problem: format!("expected Habitat's census JSON: {problem}"),
        })?;
        Ok(render(&self.addr, &census, &rows))
    }
}

/// One member of one service group, as the table shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub service_group: String,
    /// The first 8 hex characters, `*` appended for the group's leader.
    pub member: String,
    pub host: String,
    pub ip: String,
    /// alive, suspect, confirmed or departed.
    pub health: String,
    /// leader, follower, standalone (the group holds no election), or `-`.
    pub role: String,
    /// none, in-progress, no-quorum, finished.
    pub election: String,
    /// The group's gossiped config incarnation, `-` when none was applied.
    pub config: String,
    /// The service's health check (ok, warning, critical, unknown) where known: only the
    /// answering member's own services; `-` elsewhere.
    pub service_health: String,
}

const HEADER: [&str; 9] = [
    "service group",
    "member",
    "host",
    "ip",
    "health",
    "role",
    "election",
    "config",
    "svc health",
];

fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}

fn election_name(status: &str) -> String {
    match status {
        "None" => "none".to_string(),
        "ElectionInProgress" => "in-progress".to_string(),
        "ElectionNoQuorum" => "no-quorum".to_string(),
        "ElectionFinished" => "finished".to_string(),
        other => other.to_string(),
    }
}

/// The rows of a `/census` document, groups by name and members by id; `services` is the same
/// member's `/services` list.
pub fn rows(census: &Value, services: Option<&Value>) -> Result<Vec<Row>, String> {
    let groups = census
        .get("census_groups")
        .and_then(Value::as_object)
        .ok_or("no census_groups object")?;
    let local = census
        .get("local_member_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let service_health = |group: &str| -> Option<String> {
        services?
            .as_array()?
            .iter()
            .find(|s| s.get("service_group").and_then(Value::as_str) == Some(group))?
            .get("health_check")
            .and_then(Value::as_str)
            .map(str::to_lowercase)
    };
    let mut names: Vec<&String> = groups.keys().collect();
    names.sort();
    let mut rows = Vec::new();
    for name in names {
        let group = &groups[name];
        let population = group
            .get("population")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("census_groups.{name}: no population object"))?;
        let leader_id = group.get("leader_id").and_then(Value::as_str);
        let election_status = group
            .get("election_status")
            .and_then(Value::as_str)
            .unwrap_or("None");
        let config = group
            .get("service_config")
            .and_then(|c| c.get("incarnation"))
            .and_then(Value::as_u64)
            .map_or_else(|| "-".to_string(), |i| i.to_string());
        let mut ids: Vec<&String> = population.keys().collect();
        ids.sort();
        for id in ids {
            let member = &population[id];
            let flag = |field: &str| member.get(field).and_then(Value::as_bool) == Some(true);
            let sys = |field: &str| {
                member
                    .get("sys")
                    .and_then(|s| s.get(field))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .unwrap_or("-")
                    .to_string()
            };
            let health = ["alive", "suspect", "confirmed", "departed"]
                .into_iter()
                .find(|h| flag(h))
                .unwrap_or("-");
            let is_leader = flag("leader") || leader_id == Some(id.as_str());
            let role = if is_leader {
                "leader"
            } else if flag("follower") {
                "follower"
            } else if election_status == "None" {
                "standalone"
            } else {
                "-"
            };
            let mut member_cell = short_id(id);
            if is_leader {
                member_cell.push('*');
            }
            rows.push(Row {
                service_group: name.clone(),
                member: member_cell,
                host: sys("hostname"),
                ip: sys("ip"),
                health: health.to_string(),
                role: role.to_string(),
                election: election_name(election_status),
                config: config.clone(),
                service_health: (id == local)
                    .then(|| service_health(name))
                    .flatten()
                    .unwrap_or_else(|| "-".to_string()),
            });
        }
    }
    Ok(rows)
}

/// Rows as a table: lowercase header, columns left-aligned two spaces apart, the last one
/// unpadded (as `hab svc status`).
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 9]> = std::iter::once(HEADER.map(String::from))
        .chain(rows.iter().map(|r| {
            [
                r.service_group.clone(),
                r.member.clone(),
                r.host.clone(),
                r.ip.clone(),
                r.health.clone(),
                r.role.clone(),
                r.election.clone(),
                r.config.clone(),
                r.service_health.clone(),
            ]
        }))
        .collect();
    let mut widths = [0usize; 9];
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            text.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] + 2 - cell.chars().count();
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.push('\n');
    }
    text
}

/// The whole output: a line naming the gateway and the member that answered, then the table
/// (or a sentence when the census is empty), then the leader's legend when there is one.
pub fn render(addr: &str, census: &Value, rows: &[Row]) -> String {
    let local = census
        .get("local_member_id")
        .and_then(Value::as_str)
        .map_or_else(|| "?".to_string(), short_id);
    let groups = {
        let mut names: Vec<&str> = rows.iter().map(|r| r.service_group.as_str()).collect();
        names.dedup();
        names.len()
    };
    let mut text = format!(
        "Census from {addr} (member {local}): {groups} service group{}\n",
        if groups == 1 { "" } else { "s" }
    );
    if rows.is_empty() {
        text.push_str("No service groups in the census.\n");
        return text;
    }
    text.push_str(&table(rows));
    if rows.iter().any(|r| r.member.ends_with('*')) {
        text.push_str("* leader\n");
    }
    text
}

/// What `--watch` writes for each new text: nothing when it did not change, else the text,
/// after a screen clear on a terminal or a blank line between versions elsewhere.
#[derive(Debug, Default)]
pub struct Redraw {
    last: Option<String>,
}

impl Redraw {
    pub fn next(&mut self, text: String, terminal: bool) -> Option<String> {
        if self.last.as_ref() == Some(&text) {
            return None;
        }
        let first = self.last.is_none();
        let out = match (terminal, first) {
            (true, _) => format!("{CLEAR}{text}"),
            (false, true) => text.clone(),
            (false, false) => format!("\n{text}"),
        };
        self.last = Some(text);
        Some(out)
    }
}

/// `hab census [--watch]`. Once: prints the table. Watching: polls every `WATCH_INTERVAL` and
/// redraws on change until Ctrl-C (then exits 0); the first poll must succeed, later failures
/// are shown in place of the table and the polling goes on.
pub async fn census(
    remote: &HttpRemote,
    watch: bool,
    terminal: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let first = remote.census_text().await?;
    if !watch {
        out.write_all(first.as_bytes())?;
        return Ok(());
    }
    let mut redraw = Redraw::default();
    let mut text = first;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if let Some(output) = redraw.next(text, terminal) {
            out.write_all(output.as_bytes())?;
            out.flush()?;
        }
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
        text = match remote.census_text().await {
            Ok(text) => text,
            Err(e) => format!("hab census: {e} (retrying every {WATCH_INTERVAL:?})\n"),
        };
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const A: &str = "3f2a9c1b00000000000000000000000a";
    const B: &str = "7d0e4a2200000000000000000000000b";
    const C: &str = "c0ffee0000000000000000000000000c";

    fn member(id: &str, host: &str, ip: &str, health: &str, leader: bool, follower: bool) -> Value {
        json!({
            "member_id": id,
            "service": "redis", "group": "default",
            "leader": leader, "follower": follower,
            "alive": health == "alive", "suspect": health == "suspect",
            "confirmed": health == "confirmed", "departed": health == "departed",
            "sys": {"hostname": host, "ip": ip},
        })
    }

    /// Two groups: redis.default with an election won by B and config 3; web.default
    /// standalone, on A only.
    fn canned_census() -> Value {
        json!({
            "changed": true,
            "local_member_id": A,
            "census_groups": {
                "web.default": {
                    "service_group": "web.default",
                    "election_status": "None",
                    "leader_id": null,
                    "service_config": null,
                    "population": { A: member(A, "node-a", "10.0.0.1", "alive", false, false) },
                },
                "redis.default": {
                    "service_group": "redis.default",
                    "election_status": "ElectionFinished",
                    "leader_id": B,
                    "service_config": {"incarnation": 3, "value": {}},
                    "population": {
                        C: member(C, "node-c", "10.0.0.3", "confirmed", false, false),
                        B: member(B, "node-b", "10.0.0.2", "suspect", true, false),
                        A: member(A, "node-a", "10.0.0.1", "alive", false, true),
                    },
                },
            },
        })
    }

    fn canned_services() -> Value {
        json!([
            {"service_group": "redis.default", "health_check": "Ok"},
            {"service_group": "web.default", "health_check": "Critical"},
        ])
    }

    #[test]
    fn the_census_table_lists_every_member_and_marks_the_leader() {
        let census = canned_census();
        let rows = rows(&census, Some(&canned_services())).unwrap();
        let text = render("127.0.0.1:9631", &census, &rows);
        let expected = "\
Census from 127.0.0.1:9631 (member 3f2a9c1b): 2 service groups
service group  member     host    ip        health     role        election  config  svc health
redis.default  3f2a9c1b   node-a  10.0.0.1  alive      follower    finished  3       ok
redis.default  7d0e4a22*  node-b  10.0.0.2  suspect    leader      finished  3       -
redis.default  c0ffee00   node-c  10.0.0.3  confirmed  -           finished  3       -
web.default    3f2a9c1b   node-a  10.0.0.1  alive      standalone  none      -       critical
* leader
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn without_services_every_service_health_is_unknown() {
        let rows = rows(&canned_census(), None).unwrap();
        assert!(rows.iter().all(|r| r.service_health == "-"), "{rows:#?}");
        let standalone: Vec<Row> = rows
            .into_iter()
            .filter(|r| r.role == "standalone")
            .collect();
        let text = render("h:9631", &canned_census(), &standalone);
        assert!(!text.contains("* leader"), "no leader, no legend:\n{text}");
    }

    #[test]
    fn an_empty_census_says_so() {
        let census = json!({"local_member_id": A, "census_groups": {}});
        let rows = rows(&census, None).unwrap();
        assert_eq!(
            render("h:9631", &census, &rows),
            "Census from h:9631 (member 3f2a9c1b): 0 service groups\nNo service groups in the \
             census.\n"
        );
    }

    #[test]
    fn json_that_is_not_a_census_is_refused_naming_what_is_missing() {
        assert_eq!(
            rows(&json!({"members": []}), None).unwrap_err(),
            "no census_groups object"
        );
        let err = rows(&json!({"census_groups": {"x.y": {}}}), None).unwrap_err();
        assert_eq!(err, "census_groups.x.y: no population object");
    }

    #[test]
    fn watch_redraws_only_on_change_and_clears_only_a_terminal() {
        let mut tty = Redraw::default();
        assert_eq!(tty.next("a\n".into(), true).unwrap(), format!("{CLEAR}a\n"));
        assert_eq!(tty.next("a\n".into(), true), None);
        assert_eq!(tty.next("b\n".into(), true).unwrap(), format!("{CLEAR}b\n"));
        let mut pipe = Redraw::default();
        assert_eq!(pipe.next("a\n".into(), false).unwrap(), "a\n");
        assert_eq!(pipe.next("a\n".into(), false), None);
        assert_eq!(pipe.next("b\n".into(), false).unwrap(), "\nb\n");
    }

    async fn remote_answering(answer: &str) -> HttpRemote {
        let (addr, _requests) = super::super::http_get::test_server(answer.into()).await;
        HttpRemote::new(&addr, Some("t0ken".into())).unwrap()
    }

    #[tokio::test]
    async fn a_census_over_http_becomes_the_table() {
        let body = canned_census().to_string();
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let remote = remote_answering(&answer).await;
        let mut out = Vec::new();
        census(&remote, false, false, &mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("7d0e4a22*  node-b"), "{text}");
    }

    #[tokio::test]
    async fn a_401_names_the_token_variable() {
        let remote = remote_answering("HTTP/1.1 401 Unauthorized\r\n\r\n").await;
        let err = remote.census_text().await.unwrap_err();
        assert!(matches!(
            err,
            Error::GatewayUnauthorized {
                token_sent: true,
                ..
            }
        ));
        assert!(
            err.to_string().contains("HAB_SUP_GATEWAY_AUTH_TOKEN"),
            "{err}"
        );
        assert!(!err.to_string().contains("t0ken"), "{err}");
        assert_eq!(err.status_exit_code(), 1);
    }

    #[tokio::test]
    async fn an_answer_that_is_not_json_is_an_error_naming_the_path() {
        let remote = remote_answering("HTTP/1.1 200 OK\r\n\r\n<html>").await;
        let err = remote.census_text().await.unwrap_err().to_string();
        assert!(
            err.contains("GET /census") && err.contains("expected JSON"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_gateway_exits_3_naming_the_flag() {
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let err = HttpRemote::new(&addr, None)
            .unwrap()
            .census_text()
            .await
            .unwrap_err();
        assert_eq!(err.status_exit_code(), 3, "{err}");
        assert!(err.to_string().contains("--remote-http"), "{err}");
    }

    #[test]
    fn the_address_defaults_to_port_9631_and_an_empty_token_is_none() {
        let remote = HttpRemote::new("10.0.0.5", Some(String::new())).unwrap();
        assert_eq!(remote.addr, "10.0.0.5:9631");
        assert!(remote.token.is_none());
        assert!(!format!("{:?}", HttpRemote::new("h", Some("s3".into())).unwrap()).contains("s3"));
        assert!(HttpRemote::new("bad host:x", None).is_err());
    }
}
