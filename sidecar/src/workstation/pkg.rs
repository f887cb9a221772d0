//! `hab origin key generate|export|import` and `hab pkg build|sign|install|verify|info`: origin
//! signing keys and .hart files on this machine, with Habitat's messages. Output goes to the
//! writer given, so tests read it back; the work itself is `crate::pkg`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::package::PackageIdent;
use crate::pkg::depot::Depot;
use crate::pkg::hart;
use crate::pkg::keys::{self, ImportedKey, SigSecretKey};

fn out_err(e: std::io::Error) -> Error {
    Error::io("standard output", e)
}

/// `hab origin key generate ORIGIN`.
pub fn origin_key_generate(origin: &str, cache: &Path, out: &mut impl Write) -> Result<String> {
    keys::validate_origin_name(origin)?;
    writeln!(out, "» Generating origin key for {origin}").map_err(out_err)?;
    let name_rev = keys::generate_origin_key(origin, cache)?;
    writeln!(out, "★ Generated origin key pair {name_rev}.").map_err(out_err)?;
    Ok(name_rev)
}

/// Which half of a pair `hab origin key export` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    Public,
    Secret,
}

/// `hab origin key export ORIGIN --type public|secret`: the newest key's file content, as
/// Habitat prints it (no trailing newline).
pub fn origin_key_export(
    origin: &str,
    key_type: KeyType,
    cache: &Path,
    out: &mut impl Write,
) -> Result<()> {
    let text = match key_type {
        KeyType::Public => keys::render_sig_public_key(&keys::latest_public_key(origin, cache)?),
        KeyType::Secret => keys::render_sig_secret_key(&keys::latest_secret_key(origin, cache)?),
    };
    out.write_all(text.as_bytes()).map_err(out_err)
}

/// `hab origin key import`: a key from standard input (`content`) into the cache.
pub fn origin_key_import(content: &str, cache: &Path, out: &mut impl Write) -> Result<()> {
    writeln!(out, "» Importing origin key from standard input").map_err(out_err)?;
    match keys::import_key(content, "standard input", cache)? {
        ImportedKey::Public { name_rev, .. } => {
            writeln!(out, "★ Imported public origin key {name_rev}").map_err(out_err)
        }
        ImportedKey::Secret { name_rev, .. } => {
            writeln!(out, "★ Imported secret origin key {name_rev}").map_err(out_err)
        }
    }
}

/// The signing key `--origin-key NAME` names: `<origin>-<revision>` exactly, or an origin's
/// newest key.
pub fn signing_key(name: &str, cache: &Path) -> Result<SigSecretKey> {
    if keys::split_name_rev(name).is_some() {
        keys::secret_key(name, cache)
    } else {
        keys::latest_secret_key(name, cache)
    }
}

/// `hab pkg build DIR [--origin-key NAME] [-o OUT_DIR]`: signs the package directory as it is
/// (no studio) into `OUT_DIR/<origin>-<name>-<version>-<release>-x86_64-linux.hart`.
pub fn pkg_build(
    dir: &Path,
    origin_key: Option<&str>,
    out_dir: &Path,
    cache: &Path,
    out: &mut impl Write,
) -> Result<PathBuf> {
    let package = crate::package::Package::load(dir)?;
    let key = signing_key(origin_key.unwrap_or(&package.ident.origin), cache)?;
    writeln!(
        out,
        "» Building {} from {} (signed with {})",
        package.ident,
        dir.display(),
        key.name_rev()
    )
    .map_err(out_err)?;
    let path = hart::build_hart(dir, &key, out_dir)?;
    writeln!(out, "★ Built {}", path.display()).map_err(out_err)?;
    writeln!(out, "{}", path.display()).map_err(out_err)?;
    Ok(path)
}

/// `hab pkg sign --origin ORIGIN SOURCE DEST`.
pub fn pkg_sign(
    src: &Path,
    dest: &Path,
    origin: &str,
    cache: &Path,
    out: &mut impl Write,
) -> Result<()> {
    let key = signing_key(origin, cache)?;
    writeln!(
        out,
        "» Signing {} with {} to create {}",
        src.display(),
        key.name_rev(),
        dest.display()
    )
    .map_err(out_err)?;
    hart::sign_archive(src, &key, dest)?;
    writeln!(out, "★ Signed artifact {}.", dest.display()).map_err(out_err)
}

/// Whether `hab pkg install` was given a file (a path that exists, or ends in `.hart`) rather
/// than an ident.
pub fn is_hart_path(arg: &str) -> bool {
    arg.ends_with(".hart") || Path::new(arg).is_file()
}

/// `hab pkg install FILE.hart`: verified against the key cache, then unpacked under `root`.
pub fn pkg_install_file(
    hart_path: &Path,
    root: &Path,
    cache: &Path,
    out: &mut impl Write,
) -> Result<PathBuf> {
    writeln!(out, "» Installing {}", hart_path.display()).map_err(out_err)?;
    let ident = hart::read_ident(hart_path)?;
    let already = installed_dir(root, &ident).is_dir();
    let dest = hart::install(hart_path, root, cache)?;
    if already {
        writeln!(out, "→ Using {ident}").map_err(out_err)?;
        writeln!(
            out,
            "★ Install of {ident} complete with 0 new packages installed."
        )
    } else {
        writeln!(out, "✓ Installed {ident}").map_err(out_err)?;
        writeln!(
            out,
            "★ Install of {ident} complete with 1 new packages installed."
        )
    }
    .map_err(out_err)?;
    Ok(dest)
}

/// `hab pkg install IDENT --url URL [--channel C]`: the newest release of `ident` in `channel`
/// (or exactly that release, when fully qualified), downloaded into `<root>/cache/artifacts`
/// and installed as a file is. A release already installed is not downloaded again.
pub async fn pkg_install_ident(
    depot: &Depot,
    ident: &PackageIdent,
    channel: &str,
    root: &Path,
    cache: &Path,
    out: &mut impl Write,
) -> Result<PathBuf> {
    let release = if ident.is_fully_qualified() {
        ident.clone()
    } else {
        depot.latest(ident, channel).await?.ok_or_else(|| {
            Error::invalid(
                format!("package {ident}"),
                format!("no release in channel {channel} of depot {}", depot.name()),
            )
        })?
    };
    let dest = installed_dir(root, &release);
    if dest.is_dir() {
        writeln!(out, "→ Using {release}").map_err(out_err)?;
        writeln!(
            out,
            "★ Install of {release} complete with 0 new packages installed."
        )
        .map_err(out_err)?;
        return Ok(dest);
    }
    writeln!(out, "↓ Downloading {release} from {}", depot.name()).map_err(out_err)?;
    let artifacts = root.join("cache").join("artifacts");
    let hart_path = depot.fetch(&release, &artifacts).await?;
    pkg_install_file(&hart_path, root, cache, out)
}

/// `<root>/pkgs/<origin>/<name>/<version>/<release>`.
pub fn installed_dir(root: &Path, ident: &PackageIdent) -> PathBuf {
    root.join("pkgs")
        .join(&ident.origin)
        .join(&ident.name)
        .join(ident.version.as_deref().unwrap_or_default())
        .join(ident.release.as_deref().unwrap_or_default())
}

/// `hab pkg verify FILE.hart`.
pub fn pkg_verify(hart_path: &Path, cache: &Path, out: &mut impl Write) -> Result<()> {
    writeln!(out, "» Verifying artifact {}", hart_path.display()).map_err(out_err)?;
    let (signer, hash) = hart::check_signature(hart_path, cache)?;
    writeln!(out, "✓ Verified checksum {hash} signed with {signer}").map_err(out_err)?;
    writeln!(out, "★ Verified artifact {}.", hart_path.display()).map_err(out_err)
}

/// `hab pkg info FILE.hart`: the header (as Habitat's `hab pkg header` prints it) and the ident.
pub fn pkg_info(hart_path: &Path, out: &mut impl Write) -> Result<()> {
    let header = hart::read_header(hart_path)?;
    let ident = hart::read_ident(hart_path)?;
    writeln!(out, "Package        : {}", hart_path.display()).map_err(out_err)?;
    writeln!(out, "Format Version : {}", hart::HART_FORMAT).map_err(out_err)?;
    writeln!(out, "Key Name       : {}", header.signer).map_err(out_err)?;
    writeln!(out, "Hash Type      : {}", hart::HASH_TYPE).map_err(out_err)?;
    writeln!(out, "Raw Signature  : {}", header.encoded_signature()).map_err(out_err)?;
    writeln!(out, "Ident          : {ident}").map_err(out_err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::fs;

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    fn package(dir: &Path, ident: &str) -> PathBuf {
        let pkg = dir.join("src");
        fs::create_dir_all(pkg.join("hooks")).unwrap();
        fs::write(pkg.join("IDENT"), ident).unwrap();
        fs::write(pkg.join("hooks/run"), "#!/bin/sh\n").unwrap();
        pkg
    }

    #[test]
    fn generate_export_import_build_verify_info_install_as_a_user_would() {
        let work = tempfile::tempdir().unwrap();
        let maker = work.path().join("maker-keys");
        let mut out = Vec::new();
        let name_rev = origin_key_generate("acme", &maker, &mut out).unwrap();
        assert_eq!(
            text(out),
            format!("» Generating origin key for acme\n★ Generated origin key pair {name_rev}.\n")
        );

        let pkg = package(work.path(), "acme/app/1.0.0/20260102030405");
        let mut out = Vec::new();
        let hart_path =
            pkg_build(&pkg, None, &work.path().join("results"), &maker, &mut out).unwrap();
        assert_eq!(
            hart_path,
            work.path()
                .join("results/acme-app-1.0.0-20260102030405-x86_64-linux.hart")
        );
        assert!(text(out).ends_with(&format!("{}\n", hart_path.display())));

        // Another machine: only the public key, imported from what export prints.
        let mut public = Vec::new();
        origin_key_export("acme", KeyType::Public, &maker, &mut public).unwrap();
        let public = text(public);
        assert!(public.starts_with(&format!("SIG-PUB-1\n{name_rev}\n\n")));
        let other = work.path().join("other-keys");
        let mut out = Vec::new();
        origin_key_import(&public, &other, &mut out).unwrap();
        assert_eq!(
            text(out),
            format!("» Importing origin key from standard input\n★ Imported public origin key {name_rev}\n")
        );
        assert!(origin_key_export("acme", KeyType::Secret, &other, &mut Vec::new()).is_err());

        let mut out = Vec::new();
        pkg_verify(&hart_path, &other, &mut out).unwrap();
        let verified = text(out);
        assert!(
            verified.contains(&format!("signed with {name_rev}")),
            "{verified}"
        );

        let mut out = Vec::new();
        pkg_info(&hart_path, &mut out).unwrap();
        let info = text(out);
        assert!(
            info.contains(&format!("Key Name       : {name_rev}\n")),
            "{info}"
        );
        assert!(
            info.contains("Ident          : acme/app/1.0.0/20260102030405\n"),
            "{info}"
        );

        let root = work.path().join("root");
        let mut out = Vec::new();
        let dest = pkg_install_file(&hart_path, &root, &other, &mut out).unwrap();
        assert_eq!(dest, root.join("pkgs/acme/app/1.0.0/20260102030405"));
        assert!(text(out).contains("complete with 1 new packages installed"));
        let mut out = Vec::new();
        pkg_install_file(&hart_path, &root, &other, &mut out).unwrap();
        assert!(text(out).contains("→ Using acme/app/1.0.0/20260102030405"));
    }

    #[test]
    fn build_signs_with_the_key_named_and_refuses_a_missing_one() {
        let work = tempfile::tempdir().unwrap();
        let cache = work.path().join("keys");
        let pkg = package(work.path(), "acme/app/1.0.0/20260102030405");
        let err = pkg_build(&pkg, None, work.path(), &cache, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no secret origin signing key named acme"),
            "{err}"
        );
        let name_rev = origin_key_generate("acme", &cache, &mut Vec::new()).unwrap();
        let path = pkg_build(&pkg, Some(&name_rev), work.path(), &cache, &mut Vec::new()).unwrap();
        assert_eq!(hart::read_header(&path).unwrap().signer, name_rev);
    }

    #[test]
    fn sign_makes_a_hart_of_any_archive() {
        let work = tempfile::tempdir().unwrap();
        let cache = work.path().join("keys");
        origin_key_generate("acme", &cache, &mut Vec::new()).unwrap();
        let src = work.path().join("a.tar.xz");
        fs::write(&src, b"not even xz").unwrap();
        let dest = work.path().join("a.hart");
        pkg_sign(&src, &dest, "acme", &cache, &mut Vec::new()).unwrap();
        assert!(hart::check_signature(&dest, &cache).is_ok());
        // The signature is fine, but it is no package.
        assert!(hart::verify(&dest, &cache).is_err());
    }

    #[tokio::test]
    async fn install_by_ident_takes_the_newest_release_in_the_channel_from_a_depot() {
        let work = tempfile::tempdir().unwrap();
        let cache = work.path().join("keys");
        origin_key_generate("acme", &cache, &mut Vec::new()).unwrap();
        let depot_dir = work.path().join("depot");
        fs::create_dir_all(&depot_dir).unwrap();
        let depot = Depot::from_url(&format!("file://{}", depot_dir.display()), None).unwrap();
        for (ident, channel) in [
            ("acme/app/1.0.0/20260101000000", Some("stable")),
            ("acme/app/1.1.0/20260102000000", None),
        ] {
            let dir = work.path().join(ident.replace('/', "-"));
            let pkg = package(&dir, ident);
            let hart_path = pkg_build(&pkg, None, &dir, &cache, &mut Vec::new()).unwrap();
            depot.upload(&hart_path, channel).await.unwrap();
        }
        let root = work.path().join("root");
        let app: PackageIdent = "acme/app".parse().unwrap();

        let mut out = Vec::new();
        let dest = pkg_install_ident(&depot, &app, "stable", &root, &cache, &mut out)
            .await
            .unwrap();
        assert_eq!(dest, root.join("pkgs/acme/app/1.0.0/20260101000000"));
        let printed = text(out);
        assert!(
            printed.contains("↓ Downloading acme/app/1.0.0/20260101000000"),
            "{printed}"
        );
        assert!(
            printed.contains("complete with 1 new packages installed"),
            "{printed}"
        );

        let dest = pkg_install_ident(&depot, &app, "unstable", &root, &cache, &mut Vec::new())
            .await
            .unwrap();
        assert_eq!(dest, root.join("pkgs/acme/app/1.1.0/20260102000000"));

        // Already there: not downloaded again.
        let mut out = Vec::new();
        pkg_install_ident(&depot, &app, "stable", &root, &cache, &mut out)
            .await
            .unwrap();
        assert!(text(out).starts_with("→ Using acme/app/1.0.0/20260101000000"));

        let err = pkg_install_ident(&depot, &app, "prod", &root, &cache, &mut Vec::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no release in channel prod"), "{err}");

        // Downloaded but signed by a key this machine lacks: refused, nothing installed.
        let other_root = work.path().join("other-root");
        let empty = work.path().join("no-keys");
        let err = pkg_install_ident(&depot, &app, "stable", &other_root, &empty, &mut Vec::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not in") && err.contains("import it"), "{err}");
        assert!(!other_root.join("pkgs").exists());
    }

    #[test]
    fn install_arguments_are_files_or_idents() {
        assert!(is_hart_path("./acme-app-1-2-x86_64-linux.hart"));
        assert!(!is_hart_path("acme/app"));
        assert!(!is_hart_path("acme/app/1.0.0/20260102030405"));
    }
}
