//! The workstation side of `hab`: commands that drive a supervisor through its ctl gateway
//! (`hab svc status`, `hab config apply|show`, `hab file upload`, `hab sup depart`), with
//! Habitat's arguments, messages and output. One connection per request (`ctl::client`).
//! `hab census` reads the HTTP gateway instead (`census`), `hab sup term` signals the local
//! supervisor (`sup_term`).
//! Invariants: input is checked (size, TOML) before anything is sent, and with `--user` sealed
//! for the service group after that check (never sent in the clear); the secret never reaches
//! an error message or a log; output goes to the writer given, so tests read it back.

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::ctl::client::{self, ClientOptions};
use crate::ctl::messages::{
    self as msg, DesiredState, ErrCode, ProcessState, Reply, Request, ServiceStatus,
};
use crate::ctl::Error as CtlError;

pub mod census;
pub mod depot;
pub mod http_get;
pub mod pkg;
pub mod sup_term;
pub mod svc;
#[cfg(test)]
mod tests;

/// The ctl gateway's port when `--remote-sup` names none.
pub const DEFAULT_CTL_PORT: u16 = 9632;
/// Habitat's limit for a config (`MAX_SVC_CFG_SIZE`) and a file (`MAX_FILE_PUT_SIZE_BYTES`).
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Exit code of `hab svc status` when the gateway says the service is not loaded.
pub const EXIT_NOT_LOADED: u8 = 2;
/// Exit code of `hab svc status` when no gateway answers at the address.
pub const EXIT_UNREACHABLE: u8 = 3;

/// What a workstation command can fail with. Messages name the input and the expected form.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--remote-sup {0:?}: expected HOST[:PORT] (e.g. 10.0.0.5, sup.example.com:9632, [::1]:9632)")]
    BadAddr(String),
    #[error(
        "no ctl secret: set HAB_CTL_SECRET, or ctl_secret in {cli_toml}, or run a supervisor \
         here so that {local} exists (its root is --root or HAB_ROOT)"
    )]
    NoSecret { cli_toml: String, local: PathBuf },
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    #[error("{what}: {problem}")]
    Invalid { what: String, problem: String },
    #[error("{what} is more than {limit} bytes, the largest a supervisor accepts")]
    TooLarge { what: String, limit: usize },
    #[error(
        "no {kind} key {name} in {dir} (expected a file {name}-<YYYYMMDDhhmmss>{suffix}): \
         {hint}, or give the directory that holds it with --cache-key-path or \
         HAB_CACHE_KEY_PATH", dir = dir.display()
    )]
    MissingKey {
        kind: &'static str,
        name: String,
        suffix: &'static str,
        dir: PathBuf,
        hint: String,
    },
    #[error(transparent)]
    Key(crate::error::Error),
    #[error(
        "cannot reach a supervisor at {addr} ({detail}); if it is local, start one with \
         `hab sup run`, or name another with --remote-sup HOST[:PORT]"
    )]
    Unreachable { addr: String, detail: String },
    #[error("the supervisor at {addr}: {message} ({})", code_name(*.code))]
    Remote {
        addr: String,
        code: i32,
        message: String,
    },
    #[error("the supervisor at {addr}: {source}")]
    Ctl {
        addr: String,
        #[source]
        source: CtlError,
    },
    #[error("the supervisor at {addr} sent {found} where {expected} was expected")]
    UnexpectedReply {
        addr: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),

    // `hab census` (the HTTP gateway) and `hab sup term` (the local supervisor's lock).
    #[error("--remote-http {0:?}: expected HOST[:PORT] (e.g. 10.0.0.5, sup.example.com:9631, [::1]:9631)")]
    BadHttpAddr(String),
    #[error(
        "cannot reach a supervisor's HTTP gateway at {addr} ({detail}); if it is local, start \
         one with `hab sup run`, or name another with --remote-http HOST[:PORT]"
    )]
    GatewayUnreachable { addr: String, detail: String },
    #[error(
        "the HTTP gateway at {addr} wants a bearer token (401): {}",
        if *.token_sent { "the one in HAB_SUP_GATEWAY_AUTH_TOKEN was refused" }
        else { "set HAB_SUP_GATEWAY_AUTH_TOKEN to the supervisors' token" }
    )]
    GatewayUnauthorized { addr: String, token_sent: bool },
    #[error("GET {path} from the HTTP gateway at {addr}: {problem}")]
    Gateway {
        addr: String,
        path: &'static str,
        problem: String,
    },
    #[error(
        "no supervisor is running on {} ({} is not locked; start one with `hab sup run`, its \
         root is --root or HAB_ROOT)", root.display(), lock.display()
    )]
    NoSupervisor { root: PathBuf, lock: PathBuf },
    #[error("cannot send SIGTERM to the supervisor (pid {pid}): {problem}")]
    Signal { pid: i32, problem: String },
    #[error(
        "the supervisor (pid {pid}) still holds {} after {waited:?}; its services may need \
         longer to stop: wait with a larger --timeout, or look at its log", lock.display()
    )]
    StillRunning {
        pid: i32,
        lock: PathBuf,
        waited: std::time::Duration,
    },
}

impl Error {
    /// The remote's error code, when the gateway refused the request with a known one.
    pub fn remote_code(&self) -> Option<ErrCode> {
        match self {
            Error::Remote { code, .. } => ErrCode::try_from(*code).ok(),
            _ => None,
        }
    }

    /// Exit code of `hab svc status`: 2 for a service that is not loaded, 3 when no supervisor
    /// answers, 1 for anything else. Other commands exit 1 on any error, as Habitat's do.
    pub fn status_exit_code(&self) -> u8 {
        match self {
            Error::Unreachable { .. } | Error::GatewayUnreachable { .. } => EXIT_UNREACHABLE,
            _ if self.remote_code() == Some(ErrCode::NotFound) => EXIT_NOT_LOADED,
            _ => 1,
        }
    }

    fn invalid(what: impl Into<String>, problem: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            problem: problem.into(),
        }
    }
}

fn code_name(code: i32) -> String {
    match ErrCode::try_from(code) {
        Ok(known) => format!("{known:?}"),
        Err(_) => format!("error code {code}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Where to send, and with which secret

/// `HOST[:PORT]` of a ctl gateway, port 9632 when none is given; IPv6 as `[::1]:9632` or `::1`.
pub fn parse_remote_addr(text: &str) -> Result<String, Error> {
    host_port(text, DEFAULT_CTL_PORT).ok_or_else(|| Error::BadAddr(text.to_string()))
}

/// `HOST[:PORT]` with `default_port` when none is given; `None` when it is not one.
pub fn host_port(text: &str, default_port: u16) -> Option<String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.to_string());
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, default_port).to_string());
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().ok()?),
        None => (text, default_port),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    (host_ok && port != 0).then(|| format!("{host}:{port}"))
}

/// Where the ctl secret may come from, first match wins: the `HAB_CTL_SECRET` value, the key
/// `ctl_secret` of the CLI config (`~/.hab/etc/cli.toml`), the local supervisor's
/// `<root>/sup/default/CTL_SECRET`. The same order as Habitat's `hab`.
#[derive(Clone)]
pub struct SecretSources {
    pub env: Option<String>,
    pub cli_toml: Option<PathBuf>,
    pub root: PathBuf,
}

impl fmt::Debug for SecretSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSources")
            .field("env", &self.env.as_ref().map(|_| "<redacted>"))
            .field("cli_toml", &self.cli_toml)
            .field("root", &self.root)
            .finish()
    }
}

impl SecretSources {
    /// From this process's environment (`HAB_CTL_SECRET`, `HOME`) and the supervisor root.
    pub fn from_env(root: &Path) -> SecretSources {
        SecretSources {
            env: std::env::var("HAB_CTL_SECRET").ok(),
            cli_toml: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|home| PathBuf::from(home).join(".hab/etc/cli.toml")),
            root: root.to_path_buf(),
        }
    }

    pub fn local_secret_path(&self) -> PathBuf {
        self.root.join("sup/default/CTL_SECRET")
    }

    /// The secret, read from the first source that has one. Empty values count as absent.
    pub fn resolve(&self) -> Result<String, Error> {
        if let Some(secret) = self.env.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            return Ok(secret.to_string());
        }
        if let Some(path) = &self.cli_toml {
            if let Some(secret) = read_cli_toml_secret(path)? {
                return Ok(secret);
            }
        }
        let local = self.local_secret_path();
        match std::fs::read_to_string(&local) {
            Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::File {
                    path: local.display().to_string(),
                    problem: format!("cannot read the ctl secret: {e}"),
                })
            }
        }
        Err(Error::NoSecret {
            cli_toml: self.cli_toml.as_ref().map_or_else(
                || "~/.hab/etc/cli.toml (HOME is not set)".to_string(),
                |p| p.display().to_string(),
            ),
            local,
        })
    }
}

/// `ctl_secret` of a CLI config file; `None` when the file or the key is absent.
fn read_cli_toml_secret(path: &Path) -> Result<Option<String>, Error> {
    let file_error = |problem: String| Error::File {
        path: path.display().to_string(),
        problem,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(format!("cannot read: {e}"))),
    };
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| file_error(format!("not valid TOML: {}", toml_error(&text, &e))))?;
    match table.get("ctl_secret") {
        None => Ok(None),
        Some(toml::Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(other) => Err(file_error(format!(
            "ctl_secret: expected a string, found a {}",
            other.type_str()
        ))),
    }
}

/// One supervisor's ctl gateway, and how to authenticate to it. The secret is resolved when a
/// request is about to go out, after the input was checked.
#[derive(Debug, Clone)]
pub struct Remote {
    pub addr: String,
    pub secret: SecretSources,
    pub options: ClientOptions,
}

impl Remote {
    pub fn new(addr: &str, secret: SecretSources) -> Result<Remote, Error> {
        Ok(Remote {
            addr: parse_remote_addr(addr)?,
            secret,
            options: ClientOptions::default(),
        })
    }

    /// Sends one request and hands each reply (the `NetErr` that ends a refusal aside) to
    /// `on_reply`.
    async fn send(
        &self,
        request: impl Into<Request>,
        on_reply: impl FnMut(Reply),
    ) -> Result<(), Error> {
        let secret = self.secret.resolve()?;
        client::request_with(&self.addr, &secret, request, &self.options, on_reply)
            .await
            .map_err(|e| self.error(e))
    }

    fn error(&self, e: CtlError) -> Error {
        let addr = self.addr.clone();
        match e {
            CtlError::Connect { source, .. } => Error::Unreachable {
                addr,
                detail: source.to_string(),
            },
            CtlError::ConnectTimeout { timeout, .. } => Error::Unreachable {
                addr,
                detail: format!("no connection within {timeout:?}"),
            },
            CtlError::Remote { code, message } => Error::Remote {
                addr,
                code,
                message,
            },
            source => Error::Ctl { addr, source },
        }
    }

    fn unexpected(&self, expected: &'static str, reply: &Reply) -> Error {
        Error::UnexpectedReply {
            addr: self.addr.clone(),
            expected,
            found: reply.message_id(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Arguments

/// `SERVICE.GROUP[@ORG]` as the ctl protocol carries it.
pub fn parse_service_group(text: &str) -> Result<msg::ServiceGroup, Error> {
    crate::gossip::rumor::ServiceGroup::parse(text)
        .map_err(|e| Error::invalid("SERVICE_GROUP", e))?;
    let (body, org) = match text.split_once('@') {
        Some((body, org)) => (body, Some(org.to_string())),
        None => (text, None),
    };
    let (service, group) = body
        .split_once('.')
        .ok_or_else(|| Error::invalid("SERVICE_GROUP", "expected SERVICE.GROUP[@ORG]"))?;
    Ok(msg::ServiceGroup {
        service: service.to_string(),
        group: group.to_string(),
        organization: org,
    })
}

/// `ORIGIN/NAME[/VERSION[/RELEASE]]` as the ctl protocol carries it.
pub fn parse_package_ident(text: &str) -> Result<msg::PackageIdent, Error> {
    let ident: crate::package::PackageIdent = text
        .parse()
        .map_err(|e: String| Error::invalid("PKG_IDENT", e))?;
    Ok(msg::PackageIdent {
        origin: ident.origin,
        name: ident.name,
        version: ident.version,
        release: ident.release,
    })
}

/// Where a config or file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

impl Input {
    /// `-` (or nothing) is standard input, as in Habitat.
    pub fn from_arg(arg: Option<&Path>) -> Input {
        match arg {
            None => Input::Stdin,
            Some(p) if p.as_os_str() == "-" => Input::Stdin,
            Some(p) => Input::File(p.to_path_buf()),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Input::Stdin => "standard input".to_string(),
            Input::File(path) => path.display().to_string(),
        }
    }

    /// The whole input, refused once it passes `MAX_PAYLOAD_BYTES` (never read further).
    pub fn read_limited(&self) -> Result<Vec<u8>, Error> {
        let name = self.name();
        let io_error = |e: std::io::Error| Error::File {
            path: name.clone(),
            problem: format!("cannot read: {e}"),
        };
        match self {
            Input::Stdin => {
                read_limited(std::io::stdin().lock(), &name).map_err(|e| e.or(io_error))
            }
            Input::File(path) => {
                let file = std::fs::File::open(path).map_err(io_error)?;
                read_limited(file, &name).map_err(|e| e.or(io_error))
            }
        }
    }
}

enum ReadError {
    TooLarge(Error),
    Io(std::io::Error),
}

impl ReadError {
    fn or(self, io: impl FnOnce(std::io::Error) -> Error) -> Error {
        match self {
            ReadError::TooLarge(e) => e,
            ReadError::Io(e) => io(e),
        }
    }
}

fn read_limited(reader: impl Read, name: &str) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::new();
    reader
        .take(MAX_PAYLOAD_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    check_size(&buf, name).map_err(ReadError::TooLarge)?;
    Ok(buf)
}

fn check_size(bytes: &[u8], name: &str) -> Result<(), Error> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(Error::TooLarge {
            what: name.to_string(),
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(())
}

/// Checks a config before it is sent: at most 64 KiB of UTF-8 TOML.
pub fn check_config(bytes: &[u8], name: &str) -> Result<(), Error> {
    check_size(bytes, name)?;
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::invalid(
            name,
            format!(
                "expected UTF-8 TOML, found a byte that is not UTF-8 at offset {}",
                e.valid_up_to()
            ),
        )
    })?;
    toml::from_str::<toml::Table>(text)
        .map_err(|e| Error::invalid(name, format!("not valid TOML: {}", toml_error(text, &e))))?;
    Ok(())
}

/// "line L, column C: message", 1-based, from a TOML error's span.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit_once('\n')
                .map_or(before, |(_, last)| last)
                .chars()
                .count()
                + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

/// `hab svc status [PKG_IDENT]`: Habitat's table, or "No services loaded.".
pub async fn svc_status(
    remote: &Remote,
    ident: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let ident = ident.map(parse_package_ident).transpose()?;
    let mut statuses = Vec::new();
    let mut unexpected = None;
    let mut no_services = false;
    remote
        .send(msg::SvcStatus { ident }, |reply| match reply {
            Reply::ServiceStatus(status) => statuses.push(status),
            Reply::NetOk(_) => no_services = true,
            other => {
                unexpected.get_or_insert(other);
            }
        })
        .await?;
    if let Some(reply) = unexpected {
        return Err(remote.unexpected("ServiceStatus", &reply));
    }
    if statuses.is_empty() {
        if no_services {
            writeln!(out, "No services loaded.")?;
        }
        return Ok(());
    }
    out.write_all(status_table(&statuses).as_bytes())?;
    Ok(())
}

const STATUS_HEADER: [&str; 7] = [
    "package",
    "type",
    "desired",
    "state",
    "elapsed (s)",
    "pid",
    "group",
];

/// Habitat's `hab svc status` table: its header, one row per service, columns left-aligned
/// two spaces apart (Habitat's tabwriter), the last one unpadded.
pub fn status_table(statuses: &[ServiceStatus]) -> String {
    let rows: Vec<[String; 7]> = std::iter::once(STATUS_HEADER.map(String::from))
        .chain(statuses.iter().map(status_row))
        .collect();
    let mut widths = [0usize; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                table.push_str(cell);
            } else {
                let pad = widths[i] + 2 - cell.chars().count();
                table.push_str(cell);
                table.extend(std::iter::repeat_n(' ', pad));
            }
        }
        table.push('\n');
    }
    table
}

fn status_row(status: &ServiceStatus) -> [String; 7] {
    let none = || "<none>".to_string();
    let desired = match status.desired_state.map(DesiredState::try_from) {
        None => none(),
        Some(Ok(DesiredState::DesiredNone)) => none(),
        Some(Ok(DesiredState::DesiredUp)) => "up".to_string(),
        Some(Ok(DesiredState::DesiredDown)) => "down".to_string(),
        Some(Err(_)) => format!("unknown({})", status.desired_state.unwrap_or_default()),
    };
    let (state, elapsed, pid) = match &status.process {
        Some(process) => (
            match ProcessState::try_from(process.state) {
                Ok(ProcessState::Up) => "up".to_string(),
                Ok(ProcessState::Down) => "down".to_string(),
                Err(_) => format!("unknown({})", process.state),
            },
            process.elapsed.unwrap_or_default().to_string(),
            process.pid.map_or_else(none, |p| p.to_string()),
        ),
        None => ("down".to_string(), none(), none()),
    };
    [
        status.ident.to_string(),
        "standalone".to_string(),
        desired,
        state,
        elapsed,
        pid,
        status.service_group.to_string(),
    ]
}

/// `--user USER`: seal the payload with USER's secret key for the service group's public key,
/// both the newest revisions in `keys_dir` (the workstation's key cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptAs {
    pub user: String,
    pub keys_dir: PathBuf,
}

/// The payload sealed for `service_group` (`SERVICE.GROUP[@ORG]`, which is also its key's name)
/// as `as_user`, in Habitat's `BOX-1` text, checked against the size limit once sealed (the
/// plaintext was checked before). Prints Habitat's "Encrypting" line with both key revisions.
pub fn seal_for_group(
    payload: &[u8],
    what: &str,
    service_group: &str,
    as_user: &EncryptAs,
    out: &mut dyn Write,
) -> Result<Vec<u8>, Error> {
    use crate::keys;
    let dir = &as_user.keys_dir;
    let service = keys::service_key_name(service_group, None).map_err(Error::Key)?;
    keys::validate_box_key_name(&as_user.user)
        .map_err(|e| Error::invalid("--user", e.to_string()))?;
    let missing = |e: crate::error::Error, kind, name: &str, suffix, hint: String| match e {
        crate::error::Error::KeyNotFound { .. } => Error::MissingKey {
            kind,
            name: name.to_string(),
            suffix,
            dir: dir.clone(),
            hint,
        },
        other => Error::Key(other),
    };
    let user_key = keys::latest_box_secret_key(dir, &as_user.user).map_err(|e| {
        let hint = format!("make one with `hab user key generate {}`", as_user.user);
        missing(
            e,
            "user secret",
            &as_user.user,
            keys::BOX_SECRET_SUFFIX,
            hint,
        )
    })?;
    let service_key = keys::latest_box_public_key(dir, &service).map_err(|e| {
        let generate = match service.split_once('@') {
            Some((group, org)) => format!("hab svc key generate {group} {org}"),
            None => format!("hab svc key generate {service}"),
        };
        let hint = format!("make the pair with `{generate}` or copy the group's .pub file there");
        missing(
            e,
            "service group public",
            &service,
            keys::BOX_PUBLIC_SUFFIX,
            hint,
        )
    })?;
    writeln!(
        out,
        "☛ Encrypting {what} (user rev = {}, service rev = {})",
        user_key.name_with_rev(),
        service_key.name_with_rev()
    )?;
    let mut nonce = [0u8; keys::BOX_NONCE_LEN];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut nonce);
    let sealed = keys::seal_box(payload, &user_key, &service_key, nonce).map_err(Error::Key)?;
    check_size(sealed.as_bytes(), &format!("the encrypted {what}"))?;
    Ok(sealed.into_bytes())
}

/// `hab config apply SERVICE_GROUP VERSION [FILE|-]`.
#[derive(Debug, Clone)]
pub struct ConfigApply {
    pub service_group: String,
    pub version: u64,
    /// Where the config was read from, for messages.
    pub source: String,
    pub cfg: Vec<u8>,
    /// `--user`: encrypt for the service group.
    pub encrypt_as: Option<EncryptAs>,
}

/// Checks the config (size, TOML) without connecting, then, as Habitat's `hab`, sends
/// `SvcValidateCfg` and `SvcSetCfg` on two connections. A `NetErr` `InvalidPayload` to the
/// validation is a warning (Habitat applies anyway); any other refusal ends the command.
///
/// With `--user` the config is sealed after it was checked, and only `SvcSetCfg` goes out:
/// Habitat's `hab` also sends the plaintext to be validated, which would put the secrets the
/// user meant to encrypt on the wire in the clear.
pub async fn config_apply(
    remote: &Remote,
    apply: &ConfigApply,
    out: &mut dyn Write,
    warn: &mut dyn Write,
) -> Result<(), Error> {
    let group = parse_service_group(&apply.service_group)?;
    check_config(&apply.cfg, &apply.source)?;
    writeln!(
        out,
        "» Setting new configuration version {} for {}",
        apply.version, group
    )?;
    writeln!(out, "Ω Creating service configuration")?;
    let cfg = match &apply.encrypt_as {
        Some(as_user) => Some(seal_for_group(
            &apply.cfg,
            "config",
            &apply.service_group,
            as_user,
            out,
        )?),
        None => None,
    };
    if cfg.is_none() {
        let validate = msg::SvcValidateCfg {
            service_group: Some(group.clone()),
            format: None,
            cfg: Some(apply.cfg.clone()),
        };
        match expect_net_ok(remote, validate).await {
            Err(e) if e.remote_code() == Some(ErrCode::InvalidPayload) => writeln!(
                warn,
                "hab: warning: {e}; applying it anyway, as Habitat's hab does"
            )?,
            other => other?,
        }
    }
    writeln!(out, "↑ Applying applying...")?;
    let is_encrypted = cfg.is_some().then_some(true);
    let set = msg::SvcSetCfg {
        service_group: Some(group),
        cfg: Some(cfg.unwrap_or_else(|| apply.cfg.clone())),
        version: Some(apply.version),
        is_encrypted,
    };
    expect_net_ok(remote, set).await?;
    writeln!(out, "★ Applied configuration")?;
    Ok(())
}

/// Sends `request`; any reply but `NetOk` (and console lines, which are printed) is an error.
async fn expect_net_ok(remote: &Remote, request: impl Into<Request>) -> Result<(), Error> {
    let mut unexpected = None;
    remote
        .send(request, |reply| match reply {
            Reply::NetOk(_) => {}
            other => {
                unexpected.get_or_insert(other);
            }
        })
        .await?;
    match unexpected {
        Some(reply) => Err(remote.unexpected("NetOk", &reply)),
        None => Ok(()),
    }
}

/// `hab file upload SERVICE_GROUP VERSION FILE`.
#[derive(Debug, Clone)]
pub struct FileUpload {
    pub service_group: String,
    pub version: u64,
    pub file: PathBuf,
    /// `--user`: encrypt for the service group.
    pub encrypt_as: Option<EncryptAs>,
}

/// Reads the file (at most 64 KiB) before connecting, then sends `SvcFilePut` with its base
/// name. With `--user` the content is sealed for the service group, whether or not the group
/// names an organization (Habitat's `hab` encrypts only for groups with one, and otherwise sends
/// the file in the clear).
pub async fn file_upload(
    remote: &Remote,
    upload: &FileUpload,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let group = parse_service_group(&upload.service_group)?;
    let filename = upload
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::File {
            path: upload.file.display().to_string(),
            problem: "expected a path ending in a UTF-8 file name".to_string(),
        })?
        .to_string();
    let content = Input::File(upload.file.clone()).read_limited()?;
    writeln!(
        out,
        "» Uploading file {} to {} incarnation {}",
        upload.file.display(),
        group,
        upload.version
    )?;
    writeln!(out, "Ω Creating service file")?;
    let (content, is_encrypted) = match &upload.encrypt_as {
        Some(as_user) => (
            seal_for_group(&content, "file", &upload.service_group, as_user, out)?,
            Some(true),
        ),
        None => (content, None),
    };
    writeln!(out, "↑ Applying via peer {}", remote.addr)?;
    let put = msg::SvcFilePut {
        service_group: Some(group),
        content: Some(content),
        filename: Some(filename),
        version: Some(upload.version),
        is_encrypted,
    };
    expect_net_ok(remote, put).await?;
    writeln!(out, "★ Uploaded file")?;
    Ok(())
}

/// `hab sup depart MEMBER_ID`: console lines from the gateway are printed as they come.
pub async fn sup_depart(
    remote: &Remote,
    member_id: &str,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let member_id = member_id.trim();
    if member_id.is_empty() {
        return Err(Error::invalid(
            "MEMBER_ID",
            "expected a member id, found nothing",
        ));
    }
    writeln!(out, "» Permanently marking {member_id} as departed")?;
    writeln!(out, "↑ Applying via peer {}", remote.addr)?;
    let depart = msg::SupDepart {
        member_id: Some(member_id.to_string()),
    };
    svc::send_printing(remote, depart, out).await?;
    writeln!(out, "★ Departure recorded.")?;
    Ok(())
}

/// `hab config show PKG_IDENT`: sends `SvcGetDefaultCfg` as Habitat's `hab` does, and prints
/// the package's default configuration (TOML) it answers with. Habitat's `hab` receives it and
/// prints nothing.
pub async fn config_show(remote: &Remote, ident: &str, out: &mut dyn Write) -> Result<(), Error> {
    let ident = parse_package_ident(ident)?;
    let mut configs = Vec::new();
    let mut unexpected = None;
    remote
        .send(
            msg::SvcGetDefaultCfg { ident: Some(ident) },
            |reply| match reply {
                Reply::ServiceCfg(cfg) => configs.push(cfg),
                other => {
                    unexpected.get_or_insert(other);
                }
            },
        )
        .await?;
    if let Some(reply) = unexpected {
        return Err(remote.unexpected("ServiceCfg", &reply));
    }
    for cfg in configs {
        let text = cfg.default.unwrap_or_default();
        out.write_all(text.as_bytes())?;
        if !text.is_empty() && !text.ends_with('\n') {
            writeln!(out)?;
        }
    }
    Ok(())
}
