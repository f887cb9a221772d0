//! Tests of the ctl protocol as a whole: every message round-trips, frames written byte by byte
//! from the protocol description decode, malformed input gives the right error, arbitrary bytes
//! never panic, the bytes Habitat 2.1.78's own `hab` sent decode, and the client talks to a
//! gateway stand-in over TCP.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proptest::prelude::*;
use prost::Message;
use tokio::net::{TcpListener, TcpStream};

use super::client::{self, ClientOptions};
use super::codec::{Frame, Header, Limits, Txn, MAX_BODY_LEN, MAX_MESSAGE_ID_LEN, MAX_TXN_ID};
use super::error::{CodecError, Error};
use super::messages::*;

fn ident(origin: &str, name: &str) -> PackageIdent {
    PackageIdent {
        origin: origin.into(),
        name: name.into(),
        version: None,
        release: None,
    }
}

fn group(service: &str, group: &str) -> ServiceGroup {
    ServiceGroup {
        service: service.into(),
        group: group.into(),
        organization: None,
    }
}

fn full_ident() -> PackageIdent {
    PackageIdent {
        origin: "core".into(),
        name: "redis".into(),
        version: Some("7.2.4".into()),
        release: Some("20240101000000".into()),
    }
}

fn full_group() -> ServiceGroup {
    ServiceGroup {
        service: "redis".into(),
        group: "prod".into(),
        organization: Some("acme".into()),
    }
}

fn bind() -> ServiceBind {
    ServiceBind {
        name: "db".into(),
        service_group: group("postgres", "default"),
    }
}

fn sample_status() -> ServiceStatus {
    ServiceStatus {
        ident: ident("core", "redis"),
        process: Some(ProcessStatus {
            elapsed: Some(5),
            pid: Some(42),
            state: ProcessState::Up as i32,
        }),
        service_group: group("redis", "default"),
        desired_state: Some(DesiredState::DesiredUp as i32),
    }
}

/// A stopped service with no desired state (as a supervisor older than Habitat 0.61 reports it).
/// `process` is set: Habitat 2.1.78's `hab svc status` fails on a `ServiceStatus` without one
/// ("Invalid process state ""down""") and prints no row at all, so a gateway must always send it.
fn stopped_status() -> ServiceStatus {
    ServiceStatus {
        ident: full_ident(),
        process: Some(ProcessStatus {
            elapsed: None,
            pid: None,
            state: ProcessState::Down as i32,
        }),
        service_group: full_group(),
        desired_state: None,
    }
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| b.is_ascii_hexdigit())
        .map(|b| match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        })
        .collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
    digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encodes `message` in a frame, decodes the frame, and returns the message found in it.
fn round_trip<M: CtlMessage + Clone + std::fmt::Debug>(message: &M, txn: Option<Txn>) -> M {
    let bytes = Frame::new(message, txn).encode(&Limits::default()).unwrap();
    let (frame, used) = Frame::decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(frame.txn, txn);
    assert_eq!(frame.message_id, M::MESSAGE_ID);
    frame.decode_as::<M>().unwrap()
}

macro_rules! assert_round_trips {
    ($($value:expr),* $(,)?) => {
        $(
            let value = $value;
            assert_eq!(round_trip(&value, None), value);
            assert_eq!(round_trip(&value, Some(Txn::request(7))), value);
            assert_eq!(round_trip(&value, Some(Txn::request(MAX_TXN_ID).reply(true))), value);
        )*
    };
}

#[test]
fn every_message_round_trips_in_a_frame() {
    assert_round_trips!(
        NetOk {},
        NetErr::new(ErrCode::TlsHandshakeFailed, "bad cert"),
        ident("core", "redis"),
        full_ident(),
        ProcessStatus::default(),
        ProcessStatus {
            elapsed: Some(u64::MAX),
            pid: Some(u32::MAX),
            state: ProcessState::Up as i32,
        },
        bind(),
        ServiceCfg {
            format: Some(service_cfg::Format::Toml as i32),
            default: Some("port = 6379\n".into()),
        },
        full_group(),
        sample_status(),
        ServiceStatus {
            ident: full_ident(),
            process: None,
            service_group: full_group(),
            desired_state: Some(DesiredState::DesiredNone as i32),
        },
        HealthCheckInterval { seconds: 30 },
        NetProgress {
            total: 100,
            position: 50,
        },
        Handshake {
            secret_key: Some("s3cret".into())
        },
        Handshake::default(),
        ServiceBindList {
            binds: vec![bind(), bind()]
        },
        SupDepart {
            member_id: Some("0123456789abcdef0123456789abcdef".into())
        },
        SupRestart {},
        SvcFilePut {
            service_group: Some(full_group()),
            content: Some(b"\x00binary\xff".to_vec()),
            filename: Some("cert.pem".into()),
            version: Some(3),
            is_encrypted: Some(true),
        },
        SvcGetDefaultCfg {
            ident: Some(full_ident())
        },
        SvcValidateCfg {
            service_group: Some(full_group()),
            format: Some(service_cfg::Format::Toml as i32),
            cfg: Some(b"a = 1".to_vec()),
        },
        SvcSetCfg {
            service_group: Some(full_group()),
            cfg: Some(b"a = 1".to_vec()),
            version: Some(u64::MAX),
            is_encrypted: Some(false),
        },
        SvcLoad {
            ident: Some(full_ident()),
            binds: Some(ServiceBindList {
                binds: vec![bind()]
            }),
            bldr_url: Some("https://bldr.example".into()),
            bldr_channel: Some("stable".into()),
            config_from: Some("/src".into()),
            force: Some(true),
            group: Some("prod".into()),
            svc_encrypted_password: Some("pw".into()),
            topology: Some(Topology::Leader as i32),
            update_strategy: Some(UpdateStrategy::Rolling as i32),
            binding_mode: Some(BindingMode::Strict as i32),
            health_check_interval: Some(HealthCheckInterval { seconds: 5 }),
            shutdown_timeout: Some(8),
            update_condition: Some(UpdateCondition::TrackChannel as i32),
            update_period: Some(60),
        },
        SvcLoad::default(),
        SvcUpdate {
            ident: Some(full_ident()),
            binds: Some(ServiceBindList {
                binds: vec![bind()]
            }),
            binding_mode: Some(BindingMode::Relaxed as i32),
            bldr_url: Some("u".into()),
            bldr_channel: Some("c".into()),
            group: Some("g".into()),
            svc_encrypted_password: Some("p".into()),
            topology: Some(Topology::Standalone as i32),
            update_strategy: Some(UpdateStrategy::AtOnce as i32),
            health_check_interval: Some(HealthCheckInterval { seconds: 1 }),
            shutdown_timeout: Some(2),
            update_condition: Some(UpdateCondition::Latest as i32),
            update_period: Some(1),
        },
        SvcUnload {
            ident: Some(full_ident()),
            timeout_in_seconds: Some(9),
        },
        SvcStart {
            ident: Some(full_ident())
        },
        SvcStop {
            ident: Some(full_ident()),
            timeout_in_seconds: Some(0),
        },
        SvcStatus::default(),
        SvcStatus {
            ident: Some(full_ident())
        },
        ConsoleLine {
            line: "hello".into(),
            color: Some("green".into()),
            bold: true,
        },
    );
}

#[test]
fn requests_and_replies_decode_by_message_id() {
    let requests: Vec<Request> = vec![
        Handshake::default().into(),
        SvcLoad::default().into(),
        SvcUpdate::default().into(),
        SvcUnload::default().into(),
        SvcStart::default().into(),
        SvcStop::default().into(),
        SvcStatus::default().into(),
        SvcGetDefaultCfg::default().into(),
        SvcValidateCfg::default().into(),
        SvcSetCfg::default().into(),
        SvcFilePut::default().into(),
        SupDepart::default().into(),
        SupRestart::default().into(),
    ];
    for request in requests {
        let frame = Frame::request(&request, Some(Txn::request(1)));
        assert!(ALL_MESSAGE_IDS.contains(&frame.message_id.as_str()));
        assert_eq!(frame.to_request().unwrap(), request);
        assert!(matches!(
            frame.to_reply(),
            Err(CodecError::UnknownMessage(_))
        ));
    }
    let replies: Vec<Reply> = vec![
        NetOk {}.into(),
        NetErr::new(ErrCode::NotFound, "x").into(),
        ConsoleLine::default().into(),
        NetProgress::default().into(),
        sample_status().into(),
        <ServiceCfg as Default>::default().into(),
    ];
    for reply in replies {
        let frame = Frame::reply(&reply, Some(Txn::request(1).reply(true)));
        assert_eq!(frame.to_reply().unwrap(), reply);
    }
}

#[test]
fn message_ids_are_the_bare_proto_names() {
    assert_eq!(SvcStatus::MESSAGE_ID, "SvcStatus");
    assert_eq!(NetErr::MESSAGE_ID, "NetErr");
    assert_eq!(ServiceStatus::MESSAGE_ID, "ServiceStatus");
    assert_eq!(ALL_MESSAGE_IDS.len(), 25);
    assert!(ALL_MESSAGE_IDS
        .iter()
        .all(|id| id.len() <= MAX_MESSAGE_ID_LEN));
}

#[test]
fn proto2_required_fields_are_encoded_even_at_their_default() {
    // `bold` is required: a false must still be on the wire (tag 3, varint 0).
    let line = ConsoleLine {
        line: String::new(),
        color: None,
        bold: false,
    };
    assert_eq!(line.encode_to_vec(), hex("0a00 1800"));
    // `version` is optional: a set zero is encoded, an unset one is not.
    let set = SvcSetCfg {
        version: Some(0),
        ..Default::default()
    };
    assert_eq!(set.encode_to_vec(), hex("1800"));
    assert_eq!(SvcSetCfg::default().encode_to_vec(), Vec::<u8>::new());
    // Optional fields with proto2 defaults read as the default when unset.
    assert_eq!(SvcLoad::default().group(), "default");
    assert!(!SvcSetCfg::default().is_encrypted());
}

#[test]
fn display_matches_habitats() {
    assert_eq!(full_ident().to_string(), "core/redis/7.2.4/20240101000000");
    let no_version = PackageIdent {
        release: Some("1".into()),
        ..ident("core", "redis")
    };
    assert_eq!(no_version.to_string(), "core/redis");
    assert_eq!(full_group().to_string(), "redis.prod@acme");
    assert_eq!(group("redis", "default").to_string(), "redis.default");
}

#[test]
fn handshake_debug_hides_the_secret() {
    let handshake = Handshake {
        secret_key: Some("s3cret".into()),
    };
    let shown = format!("{handshake:?} {:?}", Request::from(handshake.clone()));
    assert!(!shown.contains("s3cret"), "{shown}");
    let frame = Frame::new(&handshake, None);
    assert!(!format!("{frame:?}").contains("s3cret"));
}

// ---- frames written by hand from the description in docs/protocol.md ----

#[test]
fn hand_built_svc_status_request_decodes() {
    // header: txn bit, id length 9, body length 0; txn: request, id 1; "SvcStatus"; no body.
    let bytes = hex("8090 0000  0000 0001  5376635374617475 73");
    let (frame, used) = Frame::decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(frame.txn, Some(Txn::request(1)));
    assert_eq!(
        frame.to_request().unwrap(),
        Request::SvcStatus(SvcStatus::default())
    );
}

#[test]
fn hand_built_handshake_decodes() {
    // header: txn, id length 9, body 3; txn id 0; "Handshake"; field 1 (LEN) "x".
    let bytes = hex("8090 0003 0000 0000 48616e647368616b65 0a 01 78");
    let (frame, _) = Frame::decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(frame.txn, Some(Txn::request(0)));
    assert_eq!(
        frame
            .decode_as::<Handshake>()
            .unwrap()
            .secret_key
            .as_deref(),
        Some("x")
    );
}

#[test]
fn hand_built_net_err_reply_decodes() {
    // header: txn, id length 6, body 6; txn: response + complete, id 1; "NetErr";
    // field 1 varint 2 (NotFound), field 2 LEN "no".
    let bytes = hex("8060 0006 c000 0001 4e6574457272 0802 1202 6e6f");
    let (frame, _) = Frame::decode(&bytes, &Limits::default()).unwrap();
    let txn = frame.txn.unwrap();
    assert!(txn.is_response && txn.is_complete && txn.id == 1);
    assert!(frame.is_complete());
    assert_eq!(
        frame.to_reply().unwrap(),
        Reply::NetErr(NetErr::new(ErrCode::NotFound, "no"))
    );
}

#[test]
fn hand_built_service_status_reply_decodes() {
    let body = concat!(
        "0a0d 0a04 636f7265 1205 7265646973", // 1: ident core/redis
        "1206 0805 102a 1801",                // 2: process 5 s, pid 42, Up
        "1a10 0a05 7265646973 1207 64656661756c74", // 3: redis.default
        "2801",                               // 5: DesiredUp
    );
    // header: txn, id length 13, body 43 (0x2b); txn: response + complete, id 1.
    let bytes = hex(&format!(
        "80d0 002b c000 0001 53657276696365537461747573 {body}"
    ));
    let (frame, used) = Frame::decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(
        frame.to_reply().unwrap(),
        Reply::ServiceStatus(sample_status())
    );
    // And our encoder writes exactly those bytes.
    let ours = Frame::new(&sample_status(), Some(Txn::request(1).reply(true)))
        .encode(&Limits::default())
        .unwrap();
    assert_eq!(to_hex(&ours), to_hex(&bytes));
}

#[test]
fn hand_built_frame_without_transaction_decodes() {
    // header: no txn, id length 11, body 6; "ConsoleLine"; line "hi", bold false.
    let bytes = hex("00b0 0006 436f6e736f6c654c696e65 0a02 6869 1800");
    let (frame, _) = Frame::decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(frame.txn, None);
    assert!(frame.is_complete());
    assert_eq!(
        frame.decode_as::<ConsoleLine>().unwrap(),
        ConsoleLine {
            line: "hi".into(),
            color: None,
            bold: false
        }
    );
}

#[test]
fn reserved_header_bits_are_ignored_as_habitat_does() {
    // Bits 26-30 set, id length 5 ("NetOk"), body 0.
    let bytes = hex("fc50 0000 c000 0001 4e65744f6b");
    let (frame, _) = Frame::decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(frame.to_reply().unwrap(), Reply::NetOk(NetOk {}));
}

#[test]
fn frames_back_to_back_decode_one_at_a_time() {
    let mut bytes = Frame::new(&NetOk {}, Some(Txn::request(0).reply(true)))
        .encode(&Limits::default())
        .unwrap();
    let second = Frame::new(&sample_status(), None)
        .encode(&Limits::default())
        .unwrap();
    bytes.extend_from_slice(&second);
    let (first, used) = Frame::decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(first.message_id, "NetOk");
    let (next, rest) = Frame::decode(&bytes[used..], &Limits::default()).unwrap();
    assert_eq!(next.message_id, "ServiceStatus");
    assert_eq!(used + rest, bytes.len());
}

// ---- malformed input ----

#[test]
fn a_body_above_the_limit_is_refused_before_it_is_read() {
    // Only the header: the limit is checked before the body is needed.
    let bytes = hex("8060 0400");
    let limits = Limits { max_body_len: 1000 };
    assert_eq!(
        Frame::decode(&bytes, &limits).unwrap_err(),
        CodecError::BodyTooLarge {
            len: 1024,
            limit: 1000
        }
    );
    assert_eq!(
        CodecError::BodyTooLarge { len: 0, limit: 0 }.err_code(),
        ErrCode::EntityTooLarge
    );
}

#[test]
fn the_encoder_refuses_what_the_header_cannot_express() {
    let big = Frame {
        txn: None,
        message_id: "SvcSetCfg".into(),
        body: vec![0; MAX_BODY_LEN + 1],
    };
    assert_eq!(
        big.encode(&Limits::default()).unwrap_err(),
        CodecError::BodyTooLarge {
            len: MAX_BODY_LEN + 1,
            limit: MAX_BODY_LEN
        }
    );
    let long_id = Frame {
        txn: None,
        message_id: "x".repeat(64),
        body: vec![],
    };
    assert_eq!(
        long_id.encode(&Limits::default()).unwrap_err(),
        CodecError::MessageIdTooLong { len: 64, limit: 63 }
    );
    let big_txn = Frame {
        txn: Some(Txn::request(MAX_TXN_ID + 1)),
        message_id: "NetOk".into(),
        body: vec![],
    };
    assert!(matches!(
        big_txn.encode(&Limits::default()),
        Err(CodecError::TxnIdTooLarge { .. })
    ));
    // The largest expressible frame encodes and decodes.
    let largest = Frame {
        txn: Some(Txn::request(MAX_TXN_ID)),
        message_id: "y".repeat(63),
        body: vec![7; MAX_BODY_LEN],
    };
    let bytes = largest.encode(&Limits::default()).unwrap();
    assert_eq!(bytes.len(), super::codec::MAX_FRAME_LEN);
    assert_eq!(
        Frame::decode(&bytes, &Limits::default()).unwrap().0,
        largest
    );
    // A gateway's lower limit applies to what it sends too.
    assert!(matches!(
        largest.encode(&Limits { max_body_len: 10 }),
        Err(CodecError::BodyTooLarge { .. })
    ));
}

#[test]
fn an_unknown_message_id_is_reported_by_name() {
    let bytes = hex("8060 0000 0000 0001 537663466f6f"); // "SvcFoo"
    let (frame, _) = Frame::decode(&bytes, &Limits::default()).unwrap();
    let err = frame.to_request().unwrap_err();
    assert_eq!(err, CodecError::UnknownMessage("SvcFoo".into()));
    assert_eq!(err.err_code(), ErrCode::NotSupported);
    assert!(matches!(
        frame.decode_as::<SvcStatus>(),
        Err(CodecError::WrongMessage { .. })
    ));
}

#[test]
fn truncated_frames_say_how_much_is_missing() {
    let full = hex("8060 0006 c000 0001 4e6574457272 0802 1202 6e6f");
    let limits = Limits::default();
    // Header cut short.
    assert_eq!(
        Frame::decode(&full[..3], &limits).unwrap_err(),
        CodecError::Truncated { needed: 1 }
    );
    // Transaction word cut short.
    assert_eq!(
        Frame::decode(&full[..6], &limits).unwrap_err(),
        CodecError::Truncated { needed: 2 }
    );
    // Message id cut short.
    assert_eq!(
        Frame::decode(&full[..10], &limits).unwrap_err(),
        CodecError::Truncated { needed: 4 }
    );
    // Body cut short.
    assert_eq!(
        Frame::decode(&full[..full.len() - 1], &limits).unwrap_err(),
        CodecError::Truncated { needed: 1 }
    );
    assert_eq!(
        Frame::decode(&[], &limits).unwrap_err(),
        CodecError::Truncated { needed: 4 }
    );
}

#[test]
fn a_message_id_that_is_not_utf8_is_refused() {
    let bytes = hex("0020 0000 fffe");
    assert_eq!(
        Frame::decode(&bytes, &Limits::default()).unwrap_err(),
        CodecError::MessageIdNotUtf8
    );
}

#[test]
fn an_undecodable_body_names_the_message() {
    // NetErr whose field 2 announces 5 bytes and has 1.
    let bytes = hex("8060 0003 c000 0001 4e6574457272 1205 61");
    let (frame, _) = Frame::decode(&bytes, &Limits::default()).unwrap();
    let err = frame.to_reply().unwrap_err();
    assert!(
        matches!(
            err,
            CodecError::BadBody {
                message_id: "NetErr",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.err_code(), ErrCode::BadPayload);
}

#[test]
fn header_words_round_trip() {
    let header = Header {
        has_txn: true,
        message_id_len: 63,
        body_len: MAX_BODY_LEN,
    };
    assert_eq!(header.to_word().unwrap(), 0x83ff_ffff);
    assert_eq!(Header::from_word(0x83ff_ffff), header);
    // The reserved bits are written as zero and ignored when read.
    assert_eq!(Header::from_word(0xbfff_ffff), header);
    let txn = Txn::request(MAX_TXN_ID).reply(true);
    assert_eq!(txn.to_word().unwrap(), 0xffff_ffff);
    assert_eq!(Txn::from_word(0xffff_ffff), txn);
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                            limit in 0usize..=MAX_BODY_LEN) {
        let limits = Limits { max_body_len: limit };
        if let Ok((frame, used)) = Frame::decode(&bytes, &limits) {
            prop_assert!(used <= bytes.len());
            let _ = frame.to_request();
            let _ = frame.to_reply();
        }
    }

    #[test]
    fn decoding_arbitrary_bodies_never_panics(id in proptest::sample::select(ALL_MESSAGE_IDS),
                                             body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Request::decode(id, &body);
        let _ = Reply::decode(id, &body);
    }

    #[test]
    fn any_encodable_frame_decodes_to_itself(id in "[A-Za-z]{0,63}",
                                             body in proptest::collection::vec(any::<u8>(), 0..1024),
                                             txn in proptest::option::of((0..=MAX_TXN_ID, any::<bool>(), any::<bool>()))) {
        let frame = Frame {
            txn: txn.map(|(id, is_response, is_complete)| Txn { id, is_response, is_complete }),
            message_id: id,
            body,
        };
        let bytes = frame.encode(&Limits::default()).unwrap();
        prop_assert_eq!(bytes.len(), frame.encoded_len());
        let (back, used) = Frame::decode(&bytes, &Limits::default()).unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(back, frame);
    }
}

// ---- async frame I/O ----

#[tokio::test]
async fn read_frame_reports_a_clean_close_and_a_cut_frame() {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut empty: &[u8] = &[];
    assert!(
        super::codec::read_frame(&mut empty, &Limits::default(), deadline)
            .await
            .unwrap()
            .is_none()
    );
    let mut cut: &[u8] = &hex("8060 0006 c000");
    let err = super::codec::read_frame(&mut cut, &Limits::default(), deadline)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Codec(CodecError::Truncated { needed: 14 })),
        "{err:?}"
    );
    let mut big: &[u8] = &hex("0000 ffff");
    let err = super::codec::read_frame(&mut big, &Limits { max_body_len: 10 }, deadline)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Codec(CodecError::BodyTooLarge { .. })));
}

#[tokio::test(start_paused = true)]
async fn read_frame_gives_up_at_the_deadline() {
    let (mut near, _far) = tokio::io::duplex(64);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let err = super::codec::read_frame(&mut near, &Limits::default(), deadline)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err:?}");
}

// ---- Habitat 2.1.78's own `hab`, bytes captured by hand (see docs/protocol.md) ----
// Captured on 2026-12-06 with `interop_stand_in_gateway` below (secret "x") from
// Habitat 2.1.78's `hab` (HAB_LICENSE=accept-no-persist, HAB_CTL_SECRET=x,
// `--remote-sup 127.0.0.1:19632`); cfg.toml is "a = 1\n", hello.txt is "hello\n".
// Every connection began with the same handshake.

/// Handshake, transaction 0, secret "x".
const HAB_HANDSHAKE: &str = "809000030000000048616e647368616b650a0178";

/// (command, frame of the request in transaction 1)
const HAB_REQUESTS: &[(&str, &str)] = &[
    ("svc status", "8090000000000001537663537461747573"),
    (
        "svc status core/redis",
        "8090000f000000015376635374617475730a0d0a04636f726512057265646973",
    ),
    (
        "config apply redis.default 1 cfg.toml (first connection)",
        "80e0001a0000000153766356616c69646174654366670a100a057265646973120764656661756c741a0661203d20310a",
    ),
    (
        "config apply redis.default 1 cfg.toml (second connection)",
        "8090001c000000015376635365744366670a100a057265646973120764656661756c74120661203d20310a1801",
    ),
    (
        "file upload redis.default 2 hello.txt",
        "80a000270000000153766346696c655075740a100a057265646973120764656661756c74120668656c6c6f0a1a0968656c6c6f2e7478742002",
    ),
    (
        "svc load core/redis --topology leader --group prod --strategy rolling",
        "80700043000000015376634c6f61640a0d0a04636f726512057265646973321768747470733a2f2f626c64722e686162697461742e73683a04626173654800520470726f646001680270017a02081e880100",
    ),
    (
        "svc unload core/redis",
        "8090000f00000001537663556e6c6f61640a0d0a04636f726512057265646973",
    ),
    (
        "svc start core/redis",
        "8080000f0000000153766353746172740a0d0a04636f726512057265646973",
    ),
    (
        "svc stop core/redis",
        "8070000f0000000153766353746f700a0d0a04636f726512057265646973",
    ),
    (
        "sup depart 0123456789abcdef0123456789abcdef",
        "80900022000000015375704465706172740a203031323334353637383961626364656630313233343536373839616263646566",
    ),
    ("sup restart", "80a000000000000153757052657374617274"),
    (
        "config show core/redis",
        "8100000f0000000153766347657444656661756c744366670a0d0a04636f726512057265646973",
    ),
];

fn hab_request(command: &str) -> Frame {
    let (_, bytes) = HAB_REQUESTS.iter().find(|(c, _)| *c == command).unwrap();
    let bytes = hex(bytes);
    let (frame, used) = Frame::decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(used, bytes.len(), "{command}");
    assert_eq!(frame.txn, Some(Txn::request(1)), "{command}");
    frame
}

#[test]
fn habitats_handshake_decodes() {
    let bytes = hex(HAB_HANDSHAKE);
    let (frame, _) = Frame::decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(frame.txn, Some(Txn::request(0)));
    assert_eq!(
        frame.to_request().unwrap(),
        Request::Handshake(Handshake {
            secret_key: Some("x".into())
        })
    );
}

#[test]
fn every_frame_habitats_hab_sent_decodes_and_encodes_back_to_the_same_bytes() {
    for (command, bytes) in HAB_REQUESTS {
        let frame = hab_request(command);
        let request = frame
            .to_request()
            .unwrap_or_else(|e| panic!("{command}: {e}"));
        let ours = Frame::request(&request, frame.txn)
            .encode(&Limits::default())
            .unwrap();
        assert_eq!(to_hex(&ours), *bytes, "{command}");
    }
}

#[test]
fn habitats_svc_status_decodes() {
    assert_eq!(
        hab_request("svc status").to_request().unwrap(),
        Request::SvcStatus(SvcStatus { ident: None })
    );
    assert_eq!(
        hab_request("svc status core/redis").to_request().unwrap(),
        Request::SvcStatus(SvcStatus {
            ident: Some(ident("core", "redis"))
        })
    );
}

#[test]
fn habitats_config_apply_validates_then_sets() {
    assert_eq!(
        hab_request("config apply redis.default 1 cfg.toml (first connection)")
            .to_request()
            .unwrap(),
        Request::SvcValidateCfg(SvcValidateCfg {
            service_group: Some(group("redis", "default")),
            format: None,
            cfg: Some(b"a = 1\n".to_vec()),
        })
    );
    assert_eq!(
        hab_request("config apply redis.default 1 cfg.toml (second connection)")
            .to_request()
            .unwrap(),
        Request::SvcSetCfg(SvcSetCfg {
            service_group: Some(group("redis", "default")),
            cfg: Some(b"a = 1\n".to_vec()),
            version: Some(1),
            is_encrypted: None,
        })
    );
}

#[test]
fn habitats_file_upload_decodes() {
    assert_eq!(
        hab_request("file upload redis.default 2 hello.txt")
            .to_request()
            .unwrap(),
        Request::SvcFilePut(SvcFilePut {
            service_group: Some(group("redis", "default")),
            content: Some(b"hello\n".to_vec()),
            filename: Some("hello.txt".into()),
            version: Some(2),
            is_encrypted: None,
        })
    );
}

#[test]
fn habitats_svc_load_sends_its_defaults_explicitly() {
    // Worth knowing for the gateway: `hab` sets force, binding mode, health-check interval,
    // update condition and a Builder URL and channel even when the user gave none.
    assert_eq!(
        hab_request("svc load core/redis --topology leader --group prod --strategy rolling")
            .to_request()
            .unwrap(),
        Request::SvcLoad(SvcLoad {
            ident: Some(ident("core", "redis")),
            binds: None,
            bldr_url: Some("https://bldr.habitat.sh".into()),
            bldr_channel: Some("base".into()),
            config_from: None,
            force: Some(false),
            group: Some("prod".into()),
            svc_encrypted_password: None,
            topology: Some(Topology::Leader as i32),
            update_strategy: Some(UpdateStrategy::Rolling as i32),
            binding_mode: Some(BindingMode::Strict as i32),
            health_check_interval: Some(HealthCheckInterval { seconds: 30 }),
            shutdown_timeout: None,
            update_condition: Some(UpdateCondition::Latest as i32),
            update_period: None,
        })
    );
}

#[test]
fn habitats_other_requests_decode() {
    let redis = Some(ident("core", "redis"));
    let cases = [
        (
            "svc unload core/redis",
            Request::SvcUnload(SvcUnload {
                ident: redis.clone(),
                timeout_in_seconds: None,
            }),
        ),
        (
            "svc start core/redis",
            Request::SvcStart(SvcStart {
                ident: redis.clone(),
            }),
        ),
        (
            "svc stop core/redis",
            Request::SvcStop(SvcStop {
                ident: redis.clone(),
                timeout_in_seconds: None,
            }),
        ),
        (
            "sup depart 0123456789abcdef0123456789abcdef",
            Request::SupDepart(SupDepart {
                member_id: Some("0123456789abcdef0123456789abcdef".into()),
            }),
        ),
        ("sup restart", Request::SupRestart(SupRestart {})),
        (
            "config show core/redis",
            Request::SvcGetDefaultCfg(SvcGetDefaultCfg {
                ident: redis.clone(),
            }),
        ),
    ];
    for (command, expected) in cases {
        assert_eq!(
            hab_request(command).to_request().unwrap(),
            expected,
            "{command}"
        );
    }
}

// ---- a gateway stand-in, for the client here and for Habitat's `hab` by hand ----

/// Answers one connection as a gateway would: `NetOk` to a matching handshake, then to
/// `SvcStatus` two `ServiceStatus` (one if it names a package), to `SvcLoad` a `ConsoleLine` and
/// `NetOk`, to `SvcGetDefaultCfg` a `ServiceCfg`, to anything else `NetOk`.
/// Returns the raw bytes of each frame received.
async fn stand_in_gateway(stream: &mut TcpStream, secret: &str) -> Result<Vec<Vec<u8>>, Error> {
    super::test_gateway::serve_connection(stream, secret, |request| match request {
        Request::SvcStatus(SvcStatus { ident: None }) => {
            vec![sample_status().into(), stopped_status().into()]
        }
        Request::SvcStatus(_) => vec![sample_status().into()],
        Request::SvcLoad(_) => vec![
            ConsoleLine {
                line: "loading core/redis\n".into(),
                color: Some("green".into()),
                bold: true,
            }
            .into(),
            NetOk {}.into(),
        ],
        Request::SvcGetDefaultCfg(_) => vec![ServiceCfg {
            format: None,
            default: Some("port = 6379\n".into()),
        }
        .into()],
        _ => vec![NetOk {}.into()],
    })
    .await
}

#[tokio::test]
async fn the_client_handshakes_sends_one_request_and_collects_the_replies() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        stand_in_gateway(&mut stream, "x").await.unwrap()
    });
    let replies = client::request(&addr, "x", SvcStatus::default(), &ClientOptions::default())
        .await
        .unwrap();
    assert_eq!(
        replies,
        vec![
            Reply::ServiceStatus(sample_status()),
            Reply::ServiceStatus(stopped_status())
        ]
    );
    let received = server.await.unwrap();
    assert_eq!(
        to_hex(&received[0]),
        to_hex(&hex("8090 0003 0000 0000 48616e647368616b65 0a01 78"))
    );
    assert_eq!(
        to_hex(&received[1]),
        to_hex(&hex("8090 0000 0000 0001 5376635374617475 73"))
    );
}

#[tokio::test]
async fn a_wrong_secret_comes_back_as_a_remote_error_with_its_code() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = stand_in_gateway(&mut stream, "right").await;
    });
    let err = client::request(
        &addr,
        "wrong",
        SvcStatus::default(),
        &ClientOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.remote_code(), Some(ErrCode::Unauthorized));
    assert!(!err.to_string().contains("wrong"), "{err}");
    assert!(err.to_string().contains("Unauthorized"), "{err}");
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    // Bind then drop: the port is very likely closed afterwards.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let err = client::request(&addr, "x", SvcStatus::default(), &ClientOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn replies_stream_until_the_complete_flag() {
    let (mut near, mut far) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move {
        let limits = Limits::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let hs = super::codec::read_frame(&mut far, &limits, deadline)
            .await
            .unwrap()
            .unwrap();
        let ok = Frame::new(&NetOk {}, Some(hs.txn.unwrap().reply(true)));
        super::codec::write_frame(&mut far, &ok, &limits, deadline)
            .await
            .unwrap();
        let req = super::codec::read_frame(&mut far, &limits, deadline)
            .await
            .unwrap()
            .unwrap();
        let txn = req.txn.unwrap();
        for (i, last) in [(0, false), (1, false), (2, true)] {
            let line = ConsoleLine {
                line: format!("line {i}"),
                color: None,
                bold: false,
            };
            let frame = Frame::new(&line, Some(txn.reply(last)));
            super::codec::write_frame(&mut far, &frame, &limits, deadline)
                .await
                .unwrap();
        }
        // Anything after the complete reply is not read by the client.
        far
    });
    let mut seen = Vec::new();
    client::exchange(
        &mut near,
        "x",
        SvcLoad::default().into(),
        &ClientOptions::default(),
        |r| seen.push(r),
    )
    .await
    .unwrap();
    assert_eq!(seen.len(), 3);
    assert!(matches!(&seen[2], Reply::ConsoleLine(l) if l.line == "line 2"));
    drop(server.await.unwrap());
}

#[tokio::test]
async fn a_close_before_the_complete_reply_is_an_error() {
    let (mut near, mut far) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let limits = Limits::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let hs = super::codec::read_frame(&mut far, &limits, deadline)
            .await
            .unwrap()
            .unwrap();
        let ok = Frame::new(&NetOk {}, Some(hs.txn.unwrap().reply(true)));
        super::codec::write_frame(&mut far, &ok, &limits, deadline)
            .await
            .unwrap();
        let _ = super::codec::read_frame(&mut far, &limits, deadline).await;
        // Dropped here: closed without a reply.
    });
    let err = client::exchange(
        &mut near,
        "x",
        SvcStatus::default().into(),
        &ClientOptions::default(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Closed), "{err:?}");
}

/// By hand, never in CI: serves Habitat's `hab` on 127.0.0.1:19632 (or `CTL_INTEROP_ADDR`) with
/// secret "x" for `CTL_INTEROP_SECONDS` (default 60) and prints the bytes of every frame received.
/// `cargo test -p habitat-sidecar --lib ctl::tests::interop_stand_in_gateway -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn interop_stand_in_gateway() {
    let addr = std::env::var("CTL_INTEROP_ADDR").unwrap_or_else(|_| "127.0.0.1:19632".into());
    let seconds: u64 = std::env::var("CTL_INTEROP_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let listener = TcpListener::bind(&addr).await.unwrap();
    // Our own client first, against the same stand-in.
    let own = {
        let addr = addr.clone();
        tokio::spawn(async move {
            client::request(&addr, "x", SvcStatus::default(), &ClientOptions::default()).await
        })
    };
    let until = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut own = Some(own);
    while let Ok(Ok((mut stream, peer))) = tokio::time::timeout_at(until, listener.accept()).await {
        let received = stand_in_gateway(&mut stream, "x").await;
        eprintln!("connection from {peer}:");
        match received {
            Ok(frames) => {
                for raw in frames {
                    let (frame, _) = Frame::decode(&raw, &Limits::default()).unwrap();
                    eprintln!(
                        "  {:?}\n    {:?}\n    {}",
                        frame,
                        frame.to_request(),
                        to_hex(&raw)
                    );
                }
            }
            Err(e) => eprintln!("  error: {e}"),
        }
        if let Some(own) = own.take() {
            eprintln!("our client got: {:?}", own.await.unwrap());
        }
    }
}
