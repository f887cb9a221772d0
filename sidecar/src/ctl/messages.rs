//! The ctl protocol's protobuf messages, as Habitat 2.1.78 defines them in
//! `components/sup-protocol/protocols/{ctl,net,types}.proto` (proto2; packages `sup.ctl`,
//! `sup.net`, `sup.types`), written by hand with prost's derive macros.
//! Invariant: tags, names and labels are Habitat's. A proto2 `required` field is a plain value that
//! prost always encodes; an `optional` one is an `Option`, encoded only when set. Enums travel as
//! `i32` (prost's representation), so an unknown value from a newer peer still decodes.

use std::fmt;

use prost::Message;

use super::error::CodecError;

/// A message that can travel in a ctl frame, tied to the message id the frame carries.
pub trait CtlMessage: prost::Message + Default {
    /// Habitat names each message by its bare proto name ("SvcStatus", not "sup.ctl.SvcStatus").
    const MESSAGE_ID: &'static str;
}

macro_rules! message_ids {
    ($($ty:ident),* $(,)?) => {
        $(impl CtlMessage for $ty {
            const MESSAGE_ID: &'static str = stringify!($ty);
        })*

        /// Every message id this module defines, for tests and docs.
        pub const ALL_MESSAGE_IDS: &[&str] = &[$(stringify!($ty)),*];
    };
}

message_ids!(
    // sup.ctl
    NetProgress,
    Handshake,
    ServiceBindList,
    SupDepart,
    SupRestart,
    SvcFilePut,
    SvcGetDefaultCfg,
    SvcValidateCfg,
    SvcSetCfg,
    SvcLoad,
    SvcUpdate,
    SvcUnload,
    SvcStart,
    SvcStop,
    SvcStatus,
    ConsoleLine,
    // sup.net
    NetOk,
    NetErr,
    // sup.types
    PackageIdent,
    ProcessStatus,
    ServiceBind,
    ServiceCfg,
    ServiceGroup,
    ServiceStatus,
    HealthCheckInterval,
);

// ---------------------------------------------------------------------------------------------
// sup.net

/// Why a request failed (`sup.net.ErrCode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum ErrCode {
    Internal = 0,
    Io = 1,
    NotFound = 2,
    Conflict = 3,
    Unauthorized = 4,
    /// A valid request for something the remote does not support: do not retry.
    NotSupported = 5,
    /// A field could not be read: do not retry.
    BadPayload = 6,
    /// Well-formed but rejected: do not retry.
    InvalidPayload = 7,
    /// Well-formed but above a limit.
    EntityTooLarge = 8,
    /// The remote cannot process this message: update the client.
    UpdateClient = 9,
    TlsHandshakeFailed = 10,
}

/// Success of a request that returns nothing else (an empty body on the wire).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NetOk {}

/// Failure of a request: a code and a message for a person.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NetErr {
    #[prost(enumeration = "ErrCode", required, tag = "1")]
    pub code: i32,
    #[prost(string, required, tag = "2")]
    pub msg: String,
}

impl NetErr {
    pub fn new(code: ErrCode, msg: impl Into<String>) -> NetErr {
        NetErr {
            code: code as i32,
            msg: msg.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sup.types

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum InstallSource {
    Ident = 0,
    Archive = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum ProcessState {
    Down = 0,
    Up = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum DesiredState {
    /// What a supervisor older than Habitat 0.61 reports.
    DesiredNone = -1,
    DesiredDown = 0,
    DesiredUp = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum Topology {
    Standalone = 0,
    Leader = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum UpdateStrategy {
    None = 0,
    AtOnce = 1,
    Rolling = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum UpdateCondition {
    Latest = 0,
    TrackChannel = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
#[repr(i32)]
pub enum BindingMode {
    /// Start whether binds are available or not.
    Relaxed = 0,
    /// Wait until every bind is available.
    Strict = 1,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct PackageIdent {
    #[prost(string, required, tag = "1")]
    pub origin: String,
    #[prost(string, required, tag = "2")]
    pub name: String,
    #[prost(string, optional, tag = "3")]
    pub version: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub release: Option<String>,
}

/// `origin/name[/version[/release]]`, as Habitat prints it (a release without a version is not
/// shown).
impl fmt::Display for PackageIdent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.origin, self.name)?;
        if let Some(version) = &self.version {
            write!(f, "/{version}")?;
            if let Some(release) = &self.release {
                write!(f, "/{release}")?;
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct ProcessStatus {
    /// Seconds since the process started.
    #[prost(uint64, optional, tag = "1")]
    pub elapsed: Option<u64>,
    #[prost(uint32, optional, tag = "2")]
    pub pid: Option<u32>,
    #[prost(enumeration = "ProcessState", required, tag = "3")]
    pub state: i32,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct ServiceBind {
    // Tag 3 (`service_name`) is reserved in Habitat's definition.
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(message, required, tag = "2")]
    pub service_group: ServiceGroup,
}

/// Nested types of `ServiceCfg`.
pub mod service_cfg {
    /// `sup.types.ServiceCfg.Format`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, prost::Enumeration)]
    #[repr(i32)]
    pub enum Format {
        Toml = 0,
    }
}

/// Note: prost's accessor for the field `default` shadows `Default::default`; write
/// `<ServiceCfg as Default>::default()` for an empty one.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct ServiceCfg {
    #[prost(
        enumeration = "service_cfg::Format",
        optional,
        tag = "1",
        default = "Toml"
    )]
    pub format: Option<i32>,
    /// The package's default configuration, as text in `format`.
    #[prost(string, optional, tag = "2")]
    pub default: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct ServiceGroup {
    #[prost(string, required, tag = "1")]
    pub service: String,
    #[prost(string, required, tag = "2")]
    pub group: String,
    // Tag 3 is unused in Habitat's definition.
    #[prost(string, optional, tag = "4")]
    pub organization: Option<String>,
}

/// `service.group[@organization]`, as Habitat prints it.
impl fmt::Display for ServiceGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.service, self.group)?;
        if let Some(org) = &self.organization {
            write!(f, "@{org}")?;
        }
        Ok(())
    }
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct ServiceStatus {
    // Tag 4 (`composite`) is reserved in Habitat's definition.
    #[prost(message, required, tag = "1")]
    pub ident: PackageIdent,
    #[prost(message, optional, tag = "2")]
    pub process: Option<ProcessStatus>,
    #[prost(message, required, tag = "3")]
    pub service_group: ServiceGroup,
    #[prost(enumeration = "DesiredState", optional, tag = "5")]
    pub desired_state: Option<i32>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct HealthCheckInterval {
    #[prost(uint64, required, tag = "1")]
    pub seconds: u64,
}

// ---------------------------------------------------------------------------------------------
// sup.ctl

/// Progress of a long remote operation (package download).
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct NetProgress {
    #[prost(uint64, required, tag = "1")]
    pub total: u64,
    #[prost(uint64, required, tag = "2")]
    pub position: u64,
}

/// The first request on every connection; the gateway closes the connection unless the secret
/// matches.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
#[prost(skip_debug)]
pub struct Handshake {
    #[prost(string, optional, tag = "1")]
    pub secret_key: Option<String>,
}

/// `Debug` by hand: the secret must never reach a log.
impl fmt::Debug for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.secret_key.as_ref().map(|_| "<redacted>");
        f.debug_struct("Handshake")
            .field("secret_key", &shown)
            .finish()
    }
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct ServiceBindList {
    #[prost(message, repeated, tag = "1")]
    pub binds: Vec<ServiceBind>,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SupDepart {
    #[prost(string, optional, tag = "1")]
    pub member_id: Option<String>,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SupRestart {}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SvcFilePut {
    #[prost(message, optional, tag = "1")]
    pub service_group: Option<ServiceGroup>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub content: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    pub filename: Option<String>,
    #[prost(uint64, optional, tag = "4")]
    pub version: Option<u64>,
    #[prost(bool, optional, tag = "5", default = "false")]
    pub is_encrypted: Option<bool>,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SvcGetDefaultCfg {
    #[prost(message, optional, tag = "1")]
    pub ident: Option<PackageIdent>,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SvcValidateCfg {
    #[prost(message, optional, tag = "1")]
    pub service_group: Option<ServiceGroup>,
    #[prost(
        enumeration = "service_cfg::Format",
        optional,
        tag = "2",
        default = "Toml"
    )]
    pub format: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub cfg: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SvcSetCfg {
    #[prost(message, optional, tag = "1")]
    pub service_group: Option<ServiceGroup>,
    /// TOML, or a box-encrypted message when `is_encrypted`.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub cfg: Option<Vec<u8>>,
    /// The config's incarnation: must be above the ring's current one.
    #[prost(uint64, optional, tag = "3")]
    pub version: Option<u64>,
    #[prost(bool, optional, tag = "4", default = "false")]
    pub is_encrypted: Option<bool>,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SvcLoad {
    // Tag 5 (`specified_binds`) is reserved in Habitat's definition; tag 2 is unused.
    #[prost(message, optional, tag = "1")]
    pub ident: Option<PackageIdent>,
    #[prost(message, optional, tag = "3")]
    pub binds: Option<ServiceBindList>,
    #[prost(string, optional, tag = "6")]
    pub bldr_url: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub bldr_channel: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub config_from: Option<String>,
    #[prost(bool, optional, tag = "9", default = "false")]
    pub force: Option<bool>,
    #[prost(string, optional, tag = "10", default = "default")]
    pub group: Option<String>,
    #[prost(string, optional, tag = "11")]
    pub svc_encrypted_password: Option<String>,
    #[prost(enumeration = "Topology", optional, tag = "12")]
    pub topology: Option<i32>,
    #[prost(enumeration = "UpdateStrategy", optional, tag = "13")]
    pub update_strategy: Option<i32>,
    #[prost(enumeration = "BindingMode", optional, tag = "14")]
    pub binding_mode: Option<i32>,
    #[prost(message, optional, tag = "15")]
    pub health_check_interval: Option<HealthCheckInterval>,
    #[prost(uint32, optional, tag = "16")]
    pub shutdown_timeout: Option<u32>,
    #[prost(enumeration = "UpdateCondition", optional, tag = "17")]
    pub update_condition: Option<i32>,
    /// Seconds between depot polls (ours, `--update-period`; a tag far from Habitat's, which
    /// its supervisor skips as unknown).
    #[prost(uint64, optional, tag = "1001")]
    pub update_period: Option<u64>,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SvcUpdate {
    #[prost(message, optional, tag = "1")]
    pub ident: Option<PackageIdent>,
    #[prost(message, optional, tag = "2")]
    pub binds: Option<ServiceBindList>,
    #[prost(enumeration = "BindingMode", optional, tag = "3")]
    pub binding_mode: Option<i32>,
    #[prost(string, optional, tag = "4")]
    pub bldr_url: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub bldr_channel: Option<String>,
    #[prost(string, optional, tag = "6")]
    pub group: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub svc_encrypted_password: Option<String>,
    #[prost(enumeration = "Topology", optional, tag = "8")]
    pub topology: Option<i32>,
    #[prost(enumeration = "UpdateStrategy", optional, tag = "9")]
    pub update_strategy: Option<i32>,
    #[prost(message, optional, tag = "10")]
    pub health_check_interval: Option<HealthCheckInterval>,
    #[prost(uint32, optional, tag = "11")]
    pub shutdown_timeout: Option<u32>,
    #[prost(enumeration = "UpdateCondition", optional, tag = "12")]
    pub update_condition: Option<i32>,
    /// Seconds between depot polls (ours, as in `SvcLoad`).
    #[prost(uint64, optional, tag = "1001")]
    pub update_period: Option<u64>,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SvcUnload {
    // Tag 2 (`signal`) is reserved in Habitat's definition.
    #[prost(message, optional, tag = "1")]
    pub ident: Option<PackageIdent>,
    #[prost(uint32, optional, tag = "3")]
    pub timeout_in_seconds: Option<u32>,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SvcStart {
    #[prost(message, optional, tag = "1")]
    pub ident: Option<PackageIdent>,
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SvcStop {
    // Tag 2 (`signal`) is reserved in Habitat's definition.
    #[prost(message, optional, tag = "1")]
    pub ident: Option<PackageIdent>,
    #[prost(uint32, optional, tag = "3")]
    pub timeout_in_seconds: Option<u32>,
}

/// Status of one service (`ident` set) or of all.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SvcStatus {
    #[prost(message, optional, tag = "1")]
    pub ident: Option<PackageIdent>,
}

/// A line of output for the operator's console, streamed during a long request.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct ConsoleLine {
    #[prost(string, required, tag = "1")]
    pub line: String,
    #[prost(string, optional, tag = "2")]
    pub color: Option<String>,
    #[prost(bool, required, tag = "3")]
    pub bold: bool,
}

// ---------------------------------------------------------------------------------------------
// Requests and replies by message id

macro_rules! message_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq)]
        pub enum $name {
            $($variant($variant)),*
        }

        impl $name {
            /// Decodes the body of a frame with this message id.
            pub fn decode(message_id: &str, body: &[u8]) -> Result<$name, CodecError> {
                $(if message_id == $variant::MESSAGE_ID {
                    return $variant::decode(body)
                        .map($name::$variant)
                        .map_err(|source| CodecError::BadBody {
                            message_id: $variant::MESSAGE_ID,
                            source,
                        });
                })*
                Err(CodecError::UnknownMessage(message_id.to_string()))
            }

            pub fn message_id(&self) -> &'static str {
                match self {
                    $($name::$variant(_) => $variant::MESSAGE_ID),*
                }
            }

            pub fn encode_body(&self) -> Vec<u8> {
                match self {
                    $($name::$variant(m) => m.encode_to_vec()),*
                }
            }
        }

        $(impl From<$variant> for $name {
            fn from(m: $variant) -> $name {
                $name::$variant(m)
            }
        })*
    };
}

message_enum!(
    /// What a client sends to a gateway: `Handshake` first, then one request.
    Request {
        Handshake,
        SvcLoad,
        SvcUpdate,
        SvcUnload,
        SvcStart,
        SvcStop,
        SvcStatus,
        SvcGetDefaultCfg,
        SvcValidateCfg,
        SvcSetCfg,
        SvcFilePut,
        SupDepart,
        SupRestart,
    }
);

message_enum!(
    /// What a gateway streams back, the last one marked complete.
    Reply {
        NetOk,
        NetErr,
        ConsoleLine,
        NetProgress,
        ServiceStatus,
        ServiceCfg,
    }
);
