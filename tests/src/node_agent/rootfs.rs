//! A container's root file system, built inside the pod's mount namespace by one shell script
//! (pure here, run with `nsenter --mount`): a tmpfs at `<run>/rootfs`; for every top-level
//! entry of the image directory and of the host's `/usr /bin /sbin /lib /lib64 /etc`, an overlay
//! with the image's files over the host's (writes go to `<run>/upper`, discarded with the
//! container); `/proc`, `/dev`; the pod's `/etc/hosts`; then the volumes at their mount paths.
//! Mounts never leave the pod's namespace (private propagation), so the host never sees them.

use std::path::{Path, PathBuf};

/// Host directories every container sees (read through an overlay: writes stay private).
pub const HOST_DIRS: [&str; 6] = ["usr", "bin", "sbin", "lib", "lib64", "etc"];

/// One mount of a volume into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// Host path of the volume (or of its `subPath`).
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    pub read_only: bool,
}

/// What the script needs to know.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The container run's directory (`rootfs`, `upper`, `work` go below it).
    pub run_dir: PathBuf,
    /// The image directory.
    pub image: PathBuf,
    /// Top-level entries of the image directory: (name, is a directory).
    pub image_entries: Vec<(String, bool)>,
    /// Host directories of `HOST_DIRS`: (name, the real directory, or the symlink target when
    /// the host's entry is a relative symlink such as `bin -> usr/bin`).
    pub host_entries: Vec<(String, HostEntry)>,
    /// The pod's hosts file.
    pub hosts_file: PathBuf,
    /// Volumes, in the order of the pod spec.
    pub volumes: Vec<VolumeMount>,
    /// The host's mount namespace (`readlink /proc/self/ns/mnt`): the script refuses to run in it.
    pub host_mnt_ns: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEntry {
    Dir(PathBuf),
    Symlink(String),
}

/// Reads the host side of `HOST_DIRS`.
pub fn host_entries() -> Vec<(String, HostEntry)> {
    HOST_DIRS
        .iter()
        .filter_map(|name| {
            let path = Path::new("/").join(name);
            let meta = std::fs::symlink_metadata(&path).ok()?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).ok()?;
                let real = std::fs::canonicalize(&path).ok()?;
                if target.is_relative() {
                    return Some((
                        (*name).to_owned(),
                        HostEntry::Symlink(target.to_string_lossy().into_owned()),
                    ));
                }
                return Some(((*name).to_owned(), HostEntry::Dir(real)));
            }
            meta.is_dir()
                .then(|| ((*name).to_owned(), HostEntry::Dir(path)))
        })
        .collect()
}

/// Reads the top-level entries of an image directory.
pub fn image_entries(image: &Path) -> std::io::Result<Vec<(String, bool)>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(image)? {
        let entry = entry?;
        let is_dir = std::fs::metadata(entry.path())?.is_dir();
        entries.push((entry.file_name().to_string_lossy().into_owned(), is_dir));
    }
    entries.sort();
    Ok(entries)
}

/// `s` quoted for the shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn q(p: &Path) -> String {
    quote(&p.to_string_lossy())
}

/// The script that builds the root file system of `plan`.
pub fn script(plan: &Plan) -> String {
    let root = plan.run_dir.join("rootfs");
    let upper = plan.run_dir.join("upper");
    let work = plan.run_dir.join("work");
    let mut s = String::new();
    s.push_str("set -e\n");
    s.push_str(&format!(
        "[ \"$(readlink /proc/self/ns/mnt)\" != {} ] || {{ echo 'refusing to mount in the host mount namespace' >&2; exit 97; }}\n",
        quote(&plan.host_mnt_ns)
    ));
    s.push_str(&format!(
        "mkdir -p {} {} {}\n",
        q(&root),
        q(&upper),
        q(&work)
    ));
    s.push_str(&format!("mount -t tmpfs -o mode=755 rootfs {}\n", q(&root)));

    let mut names: Vec<&str> = plan
        .image_entries
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(plan.host_entries.iter().map(|(n, _)| n.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let image = plan.image_entries.iter().find(|(n, _)| n == name);
        let host = plan
            .host_entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, h)| h);
        let target = root.join(name);
        match (image, host) {
            // A file at the image's top level: bound as it is.
            (Some((_, false)), _) => {
                s.push_str(&format!(
                    "touch {t}\nmount --bind {src} {t}\n",
                    t = q(&target),
                    src = q(&plan.image.join(name))
                ));
            }
            // The host's relative symlink (bin -> usr/bin) when the image has no such directory.
            (None, Some(HostEntry::Symlink(link))) => {
                s.push_str(&format!("ln -s {} {}\n", quote(link), q(&target)));
            }
            (image, host) => {
                let mut lowers = Vec::new();
                if image.is_some() {
                    lowers.push(plan.image.join(name));
                }
                match host {
                    Some(HostEntry::Dir(dir)) => lowers.push(dir.clone()),
                    Some(HostEntry::Symlink(link)) => lowers.push(Path::new("/").join(link)),
                    None => {}
                }
                let lowerdir = lowers
                    .iter()
                    .map(|p| p.to_string_lossy().replace(':', r"\:"))
                    .collect::<Vec<_>>()
                    .join(":");
                let (u, w) = (upper.join(name), work.join(name));
                s.push_str(&format!(
                    "mkdir -p {t} {u} {w}\nmount -t overlay overlay -o {opts} {t}\n",
                    t = q(&target),
                    u = q(&u),
                    w = q(&w),
                    opts = quote(&format!(
                        "lowerdir={lowerdir},upperdir={},workdir={}",
                        u.display(),
                        w.display()
                    )),
                ));
            }
        }
    }
    for dir in ["proc", "dev", "sys", "tmp", "run", "var/tmp", "root"] {
        s.push_str(&format!("mkdir -p {}\n", q(&root.join(dir))));
    }
    s.push_str(&format!(
        "chmod 1777 {} {}\n",
        q(&root.join("tmp")),
        q(&root.join("var/tmp"))
    ));
    s.push_str(&format!("mount -t proc proc {}\n", q(&root.join("proc"))));
    s.push_str(&format!("mount --rbind /dev {}\n", q(&root.join("dev"))));
    s.push_str(&format!(
        "mount --rbind /sys {s}\nmount -o remount,bind,ro {s}\n",
        s = q(&root.join("sys"))
    ));
    let hosts = root.join("etc/hosts");
    s.push_str(&format!(
        "mkdir -p {}\n[ -e {h} ] || touch {h}\nmount --bind {} {h}\n",
        q(&root.join("etc")),
        q(&plan.hosts_file),
        h = q(&hosts)
    ));
    for v in &plan.volumes {
        let target = root.join(v.target.trim_start_matches('/'));
        let t = q(&target);
        s.push_str(&format!(
            "if [ -d {src} ]; then mkdir -p {t}; else mkdir -p \"$(dirname {t})\"; [ -e {t} ] || touch {t}; fi\n\
             mount --bind {src} {t}\n",
            src = q(&v.source)
        ));
        if v.read_only {
            s.push_str(&format!("mount -o remount,bind,ro {t}\n"));
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            run_dir: PathBuf::from("/state/pods/p/c/app-0"),
            image: PathBuf::from("/images/hab"),
            image_entries: vec![("bin".into(), true), ("hab".into(), true)],
            host_entries: vec![
                ("usr".into(), HostEntry::Dir("/usr".into())),
                ("bin".into(), HostEntry::Symlink("usr/bin".into())),
                ("lib".into(), HostEntry::Symlink("usr/lib".into())),
            ],
            hosts_file: PathBuf::from("/state/pods/p/hosts"),
            volumes: vec![VolumeMount {
                source: "/state/pods/p/volumes/creds".into(),
                target: "/etc/creds".into(),
                read_only: true,
            }],
            host_mnt_ns: "mnt:[1]".into(),
        }
    }

    #[test]
    fn image_files_lie_over_the_hosts_and_volumes_come_last() {
        let s = script(&plan());
        assert!(s.contains(
            "lowerdir=/images/hab/bin:/usr/bin,upperdir=/state/pods/p/c/app-0/upper/bin"
        ));
        assert!(s.contains("lowerdir=/images/hab/hab,upperdir="));
        assert!(s.contains("ln -s 'usr/lib' '/state/pods/p/c/app-0/rootfs/lib'"));
        assert!(s.contains("lowerdir=/usr,upperdir="));
        let volume = s.find("'/state/pods/p/c/app-0/rootfs/etc/creds'").unwrap();
        assert!(volume > s.find("mount -t proc").unwrap());
        assert!(s.contains("mount -o remount,bind,ro '/state/pods/p/c/app-0/rootfs/etc/creds'"));
    }

    #[test]
    fn quotes_survive_the_shell() {
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }
}
