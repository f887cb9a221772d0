//! Gossiped config and files sealed for this service's group (`hab config apply --user`,
//! `hab file upload --user`), opened with the keys this member holds. What cannot be opened is
//! never applied: the service keeps the config layer and the copy of each file it had, and the
//! reason stays listed (`/services`) until a newer config or file replaces it. Each outcome is
//! noticed once per incarnation, for one log line. Pure: opening is a function passed in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::status::KeptEncrypted;
use crate::census::{CensusFile, GossipedConfig};
use crate::error::Result;
use crate::keys::Opened;

/// Opens a `BOX-1` message for this service group (`keys::open_box_with_keys` in the runtime).
pub type Open<'a> = &'a dyn Fn(&[u8]) -> Result<Opened>;

/// Something worth one log line, once per incarnation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Opened {
        /// `None` for the config, else the file's name.
        filename: Option<String>,
        incarnation: u64,
        /// The key that sealed it, `<user>-<revision>`.
        sender: String,
    },
    Kept(KeptEncrypted),
}

/// A value in use, and the box it was opened from (`None` when it was gossiped in the clear).
#[derive(Clone, Debug)]
struct Held<T> {
    incarnation: u64,
    sealed: Option<Vec<u8>>,
    value: T,
}

impl<T> Held<T> {
    fn is(&self, incarnation: u64, sealed: Option<&[u8]>) -> bool {
        self.incarnation == incarnation && self.sealed.as_deref() == sealed
    }
}

/// One service's view of its group's sealed config and files. `Debug` shows no values.
#[derive(Default)]
pub struct Unsealer {
    /// The config last opened.
    config: Option<Held<toml::Table>>,
    /// The last good content of every file of the group, opened or gossiped in the clear.
    files: BTreeMap<String, Held<Vec<u8>>>,
    kept: Vec<KeptEncrypted>,
    /// (file name or `None` for the config, incarnation) already noticed as kept.
    noticed: BTreeSet<(Option<String>, u64)>,
    notices: Vec<Notice>,
}

impl std::fmt::Debug for Unsealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unsealer")
            .field("config", &self.config.as_ref().map(|h| h.incarnation))
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .field("kept", &self.kept)
            .finish_non_exhaustive()
    }
}

impl Unsealer {
    /// The gossiped config layer to apply: the census's as it is, or opened when sealed.
    /// `None` when there is none, or when it cannot be opened: the layer in use then stays.
    pub fn config_layer<'a>(
        &'a mut self,
        gossiped: Option<&'a GossipedConfig>,
        open: Open<'_>,
    ) -> Option<(u64, &'a toml::Table)> {
        self.kept.retain(|k| k.filename.is_some());
        let gossiped = gossiped?;
        if !gossiped.encrypted {
            self.config = None;
            return Some((gossiped.incarnation, &gossiped.value));
        }
        let (incarnation, sealed) = (gossiped.incarnation, gossiped.sealed.as_slice());
        if !self
            .config
            .as_ref()
            .is_some_and(|held| held.is(incarnation, Some(sealed)))
        {
            match open(sealed)
                .map_err(|e| e.to_string())
                .and_then(config_table)
            {
                Ok((table, sender)) => {
                    self.config = Some(Held {
                        incarnation,
                        sealed: Some(sealed.to_vec()),
                        value: table,
                    });
                    self.notices.push(Notice::Opened {
                        filename: None,
                        incarnation,
                        sender,
                    });
                }
                Err(reason) => {
                    self.keep(None, incarnation, reason);
                    return None;
                }
            }
        }
        self.config
            .as_ref()
            .map(|held| (held.incarnation, &held.value))
    }

    /// The group's files to write into the svc dir: those gossiped in the clear as they are,
    /// sealed ones opened. A file that cannot be opened keeps the content it had here (opened
    /// or in the clear, at an older incarnation), or is left out when it had none.
    pub fn files(&mut self, files: &[CensusFile], open: Open<'_>) -> BTreeMap<PathBuf, Vec<u8>> {
        self.kept.retain(|k| k.filename.is_none());
        self.files
            .retain(|name, _| files.iter().any(|f| &f.filename == name));
        let mut out = BTreeMap::new();
        for file in files {
            let sealed = file.encrypted.then_some(file.body.as_slice());
            let held = self.files.get(&file.filename);
            if !held.is_some_and(|held| held.is(file.incarnation, sealed)) {
                let opened = match sealed {
                    None => Ok(file.body.clone()),
                    Some(sealed) => open(sealed).map(|opened| {
                        self.notices.push(Notice::Opened {
                            filename: Some(file.filename.clone()),
                            incarnation: file.incarnation,
                            sender: opened.sender,
                        });
                        opened.plaintext
                    }),
                };
                match opened {
                    Ok(value) => {
                        self.files.insert(
                            file.filename.clone(),
                            Held {
                                incarnation: file.incarnation,
                                sealed: sealed.map(<[u8]>::to_vec),
                                value,
                            },
                        );
                    }
                    Err(e) => {
                        self.keep(Some(file.filename.clone()), file.incarnation, e.to_string())
                    }
                }
            }
            if let Some(held) = self.files.get(&file.filename) {
                out.insert(PathBuf::from(&file.filename), held.value.clone());
            }
        }
        out
    }

    /// What is kept encrypted now: the config first, then files by name.
    pub fn kept(&self) -> Vec<KeptEncrypted> {
        let mut kept = self.kept.clone();
        kept.sort_by(|a, b| a.filename.cmp(&b.filename));
        kept
    }

    /// The notices since the last call.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    fn keep(&mut self, filename: Option<String>, incarnation: u64, reason: String) {
        let kept = KeptEncrypted {
            filename,
            incarnation,
            reason,
        };
        self.noticed
            .retain(|(name, i)| *name != kept.filename || *i >= incarnation);
        if self.noticed.insert((kept.filename.clone(), incarnation)) {
            self.notices.push(Notice::Kept(kept.clone()));
        }
        self.kept.push(kept);
    }
}

/// An opened config as a TOML table, with its sender. The error names where the TOML breaks,
/// never what it says (it holds secrets).
fn config_table(opened: Opened) -> std::result::Result<(toml::Table, String), String> {
    let text = String::from_utf8(opened.plaintext).map_err(|e| {
        format!(
            "decrypted (sealed by {}), but not UTF-8: a byte at offset {} is not",
            opened.sender,
            e.utf8_error().valid_up_to()
        )
    })?;
    let table = toml::from_str::<toml::Table>(&text).map_err(|e| {
        let at = e.span().map_or_else(String::new, |span| {
            let before = text.get(..span.start).unwrap_or_default();
            let line = before.matches('\n').count() + 1;
            let column = before
                .rsplit('\n')
                .next()
                .unwrap_or_default()
                .chars()
                .count()
                + 1;
            format!(" at line {line}, column {column}")
        });
        format!(
            "decrypted (sealed by {}), but not valid TOML{at}",
            opened.sender
        )
    })?;
    Ok((table, opened.sender))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::cell::Cell;

    use super::*;
    use crate::error::Error;
    use crate::keys::{open_box, seal_box, BoxSecretKey, BOX_KEY_LEN};

    struct Keys {
        user: BoxSecretKey,
        service: BoxSecretKey,
    }

    fn keys() -> Keys {
        Keys {
            user: BoxSecretKey::new("ruby", "20260101000000", [7; BOX_KEY_LEN]),
            service: BoxSecretKey::new("redis.default@acme", "20260101000000", [8; BOX_KEY_LEN]),
        }
    }

    impl Keys {
        fn seal(&self, plaintext: &[u8], nonce: u8) -> Vec<u8> {
            seal_box(
                plaintext,
                &self.user,
                &self.service.public_key(),
                [nonce; 24],
            )
            .unwrap()
            .into_bytes()
        }

        /// Opens as a member holding both keys; counts the attempts.
        fn opener<'a>(&'a self, tries: &'a Cell<u32>) -> impl Fn(&[u8]) -> Result<Opened> + 'a {
            move |text| {
                tries.set(tries.get() + 1);
                open_box(
                    text,
                    "redis.default@acme",
                    |_| Ok(self.service.clone()),
                    |_| Ok(self.user.public_key()),
                )
            }
        }
    }

    /// A member without the group's secret key.
    fn locked(text: &[u8]) -> Result<Opened> {
        open_box(
            text,
            "redis.default@acme",
            |id| {
                Err(Error::KeyNotFound {
                    kind: "secret box",
                    name: id.to_owned(),
                    dir: "/hab/cache/keys".into(),
                })
            },
            |_| unreachable!("the secret key is looked up first"),
        )
    }

    fn sealed_config(incarnation: u64, sealed: Vec<u8>) -> GossipedConfig {
        GossipedConfig {
            incarnation,
            encrypted: true,
            value: toml::Table::new(),
            sealed,
        }
    }

    fn plain_config(incarnation: u64, text: &str) -> GossipedConfig {
        GossipedConfig {
            incarnation,
            encrypted: false,
            value: toml::from_str(text).unwrap(),
            sealed: Vec::new(),
        }
    }

    fn file(name: &str, incarnation: u64, encrypted: bool, body: Vec<u8>) -> CensusFile {
        CensusFile {
            filename: name.into(),
            incarnation,
            encrypted,
            body,
        }
    }

    #[test]
    fn a_sealed_config_opens_once_and_is_reused_until_a_new_one_comes() {
        let keys = keys();
        let tries = Cell::new(0);
        let open = keys.opener(&tries);
        let mut unsealer = Unsealer::default();
        let gossiped = sealed_config(2, keys.seal(b"password = \"hunter2\"\n", 1));
        for _ in 0..3 {
            let (incarnation, table) = unsealer.config_layer(Some(&gossiped), &open).unwrap();
            assert_eq!(incarnation, 2);
            assert_eq!(table["password"].as_str(), Some("hunter2"));
        }
        assert_eq!(tries.get(), 1);
        assert_eq!(
            unsealer.take_notices(),
            [Notice::Opened {
                filename: None,
                incarnation: 2,
                sender: "ruby-20260101000000".into(),
            }]
        );
        assert!(unsealer.kept().is_empty());
        assert!(!format!("{unsealer:?}").contains("hunter2"));
        let newer = sealed_config(3, keys.seal(b"password = \"hunter3\"\n", 2));
        let (_, table) = unsealer.config_layer(Some(&newer), &open).unwrap();
        assert_eq!(table["password"].as_str(), Some("hunter3"));
        assert_eq!(tries.get(), 2);
    }

    #[test]
    fn a_config_that_cannot_be_opened_is_not_applied_and_is_noticed_once_per_incarnation() {
        let keys = keys();
        let mut unsealer = Unsealer::default();
        let gossiped = sealed_config(2, keys.seal(b"password = \"hunter2\"\n", 1));
        for _ in 0..3 {
            assert_eq!(unsealer.config_layer(Some(&gossiped), &locked), None);
        }
        let kept = unsealer.kept();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].filename.as_deref(), kept[0].incarnation),
            (None, 2)
        );
        assert!(
            kept[0].reason.starts_with(
                "cannot decrypt: no secret key redis.default@acme-20260101000000 in \
                 /hab/cache/keys"
            ),
            "{}",
            kept[0].reason
        );
        assert_eq!(unsealer.take_notices(), [Notice::Kept(kept[0].clone())]);

        // A newer one that also cannot be opened: noticed again.
        let newer = sealed_config(3, keys.seal(b"x = 1\n", 2));
        assert_eq!(unsealer.config_layer(Some(&newer), &locked), None);
        assert_eq!(unsealer.take_notices().len(), 1);

        // The keys arrive: it opens, and nothing is kept any more.
        let tries = Cell::new(0);
        let (incarnation, _) = unsealer
            .config_layer(Some(&newer), &keys.opener(&tries))
            .unwrap();
        assert_eq!(incarnation, 3);
        assert!(unsealer.kept().is_empty());

        // A config in the clear replaces whatever was sealed before.
        let clear = plain_config(4, "port = 1");
        let (incarnation, table) = unsealer.config_layer(Some(&clear), &locked).unwrap();
        assert_eq!((incarnation, table["port"].as_integer()), (4, Some(1)));
        assert_eq!(unsealer.config_layer(None, &locked), None);
    }

    #[test]
    fn an_opened_config_that_is_not_toml_is_kept_without_quoting_it() {
        let keys = keys();
        let tries = Cell::new(0);
        let mut unsealer = Unsealer::default();
        let gossiped = sealed_config(5, keys.seal(b"a = 1\npassword = hunter2\n", 1));
        assert_eq!(
            unsealer.config_layer(Some(&gossiped), &keys.opener(&tries)),
            None
        );
        let reason = &unsealer.kept()[0].reason;
        assert_eq!(
            reason,
            "decrypted (sealed by ruby-20260101000000), but not valid TOML at line 2, column 12"
        );
    }

    #[test]
    fn sealed_files_open_and_unopenable_ones_keep_their_previous_content() {
        let keys = keys();
        let tries = Cell::new(0);
        let open = keys.opener(&tries);
        let mut unsealer = Unsealer::default();
        let v1 = [
            file("a.txt", 1, false, b"clear\n".to_vec()),
            file("secret.pem", 1, true, keys.seal(b"PEM v1\n", 1)),
        ];
        let written = unsealer.files(&v1, &open);
        assert_eq!(written[&PathBuf::from("a.txt")], b"clear\n");
        assert_eq!(written[&PathBuf::from("secret.pem")], b"PEM v1\n");
        assert_eq!(unsealer.files(&v1, &open), written);
        assert_eq!(tries.get(), 1, "an opened file is not opened again");

        // Version 2 of both, sealed, on a member that lost the key: both keep version 1.
        let v2 = [
            file("a.txt", 2, true, keys.seal(b"sealed now\n", 2)),
            file("secret.pem", 2, true, keys.seal(b"PEM v2\n", 3)),
            file("new.txt", 1, true, keys.seal(b"new\n", 4)),
        ];
        unsealer.take_notices();
        for _ in 0..2 {
            assert_eq!(unsealer.files(&v2, &locked), written);
        }
        let kept: Vec<_> = unsealer
            .kept()
            .into_iter()
            .map(|k| (k.filename.unwrap(), k.incarnation))
            .collect();
        assert_eq!(
            kept,
            [
                ("a.txt".to_string(), 2),
                ("new.txt".to_string(), 1),
                ("secret.pem".to_string(), 2)
            ]
        );
        assert_eq!(unsealer.take_notices().len(), 3, "once each");

        // The config's entry is independent of the files'.
        let config = sealed_config(1, keys.seal(b"a = 1\n", 5));
        assert_eq!(unsealer.config_layer(Some(&config), &locked), None);
        assert_eq!(unsealer.kept().len(), 4);
        assert_eq!(unsealer.kept()[0].filename, None);

        let written = unsealer.files(&v2, &open);
        assert_eq!(written[&PathBuf::from("secret.pem")], b"PEM v2\n");
        assert_eq!(written[&PathBuf::from("new.txt")], b"new\n");
        assert_eq!(unsealer.kept().len(), 1);
    }
}
