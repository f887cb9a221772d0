//! Which files a dynamically linked ELF executable needs besides itself: its interpreter
//! (`PT_INTERP`) and the shared libraries that interpreter resolves for it. Asking the
//! interpreter (`ld.so --list`, what `ldd` runs) rather than walking `DT_NEEDED` ourselves
//! gives exactly the files the binary loads on this host, with the host's search paths and
//! `ld.so.cache`, and no second implementation of the loader's rules.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The ELF interpreter (`PT_INTERP`) `binary` names, `None` for a static binary.
pub fn interpreter(binary: &Path) -> Result<Option<PathBuf>> {
    let bad = |problem: String| Error::invalid(binary.display().to_string(), problem);
    let mut file = fs::File::open(binary).map_err(|e| Error::io(binary, e))?;
    // Program headers sit near the start; 64 KiB holds them in any binary a linker writes.
    let mut head = Vec::new();
    file.by_ref()
        .take(64 * 1024)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(binary, e))?;
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return Err(bad("expected an ELF executable".into()));
    }
    let wide = match head[4] {
        1 => false,
        2 => true,
        other => return Err(bad(format!("unknown ELF class {other}"))),
    };
    let little = match head[5] {
        1 => true,
        2 => false,
        other => return Err(bad(format!("unknown ELF byte order {other}"))),
    };
    let read = |at: usize, len: usize| -> Option<u64> {
        let bytes = head.get(at..at.checked_add(len)?)?;
        let mut value = 0u64;
        for i in 0..len {
            let b = if little { bytes[len - 1 - i] } else { bytes[i] };
            value = (value << 8) | u64::from(b);
        }
        Some(value)
    };
    let truncated = || bad("truncated ELF header".into());
    let (phoff, phentsize, phnum) = if wide {
        (read(0x20, 8), read(0x36, 2), read(0x38, 2))
    } else {
        (read(0x1c, 4), read(0x2a, 2), read(0x2c, 2))
    };
    let phoff = usize::try_from(phoff.ok_or_else(truncated)?).map_err(|_| truncated())?;
    let phentsize = phentsize.ok_or_else(truncated)? as usize;
    let phnum = phnum.ok_or_else(truncated)? as usize;
    const PT_INTERP: u64 = 3;
    for i in 0..phnum {
        let at = i
            .checked_mul(phentsize)
            .and_then(|o| o.checked_add(phoff))
            .ok_or_else(truncated)?;
        if read(at, 4).ok_or_else(truncated)? != PT_INTERP {
            continue;
        }
        let (offset, size) = if wide {
            (read(at + 8, 8), read(at + 32, 8))
        } else {
            (read(at + 4, 4), read(at + 16, 4))
        };
        let (offset, size) = (offset.ok_or_else(truncated)?, size.ok_or_else(truncated)?);
        if size == 0 || size > 4096 {
            return Err(bad(format!("PT_INTERP of {size} bytes; expected a path")));
        }
        let mut text = vec![0u8; size as usize];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut text))
            .map_err(|e| Error::io(binary, e))?;
        let end = text.iter().position(|b| *b == 0).unwrap_or(text.len());
        let path = PathBuf::from(String::from_utf8_lossy(&text[..end]).into_owned());
        if !path.is_absolute() {
            return Err(bad(format!(
                "PT_INTERP {}: expected an absolute path",
                path.display()
            )));
        }
        return Ok(Some(path));
    }
    Ok(None)
}

/// The shared libraries `binary` loads as `interpreter` resolves them (`<interpreter> --list
/// <binary>`): absolute paths, the interpreter itself and the kernel's vDSO left out. A
/// library it cannot find is an error naming it.
pub fn shared_libraries(interpreter: &Path, binary: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new(interpreter)
        .arg("--list")
        .arg(binary)
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("LD_PRELOAD")
        .output()
        .map_err(|e| Error::io(interpreter, e))?;
    if !output.status.success() {
        return Err(Error::invalid(
            format!("{} --list {}", interpreter.display(), binary.display()),
            format!(
                "exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    parse_library_list(&String::from_utf8_lossy(&output.stdout), interpreter).map_err(|problem| {
        Error::invalid(format!("shared libraries of {}", binary.display()), problem)
    })
}

/// Lines of `ld.so --list`: `name => /path (0x...)`, `/path (0x...)`, `name (0x...)` (the
/// vDSO), `name => not found`.
fn parse_library_list(text: &str, interpreter: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    let mut libs = BTreeSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (name, resolved) = line.split_once(" => ").unwrap_or((line, line));
        if resolved.starts_with("not found") {
            return Err(format!("{name} not found"));
        }
        let path = resolved.split(" (").next().unwrap_or(resolved).trim();
        if path.starts_with('/') && Path::new(path) != interpreter {
            libs.insert(PathBuf::from(path));
        }
    }
    Ok(libs.into_iter().collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_interpreter_comes_from_pt_interp_and_lists_the_libraries() {
        // This test binary is linked like hab: dynamically, against glibc.
        let me = std::env::current_exe().unwrap();
        let interp = interpreter(&me).unwrap().expect("a dynamic binary");
        assert!(
            interp.is_absolute() && interp.exists(),
            "{}",
            interp.display()
        );
        let libs = shared_libraries(&interp, &me).unwrap();
        assert!(
            libs.iter().any(|l| l.file_name().unwrap() == "libc.so.6"),
            "{libs:?}"
        );
        assert!(!libs.contains(&interp) && libs.iter().all(|l| l.is_absolute()));
    }

    #[test]
    fn what_is_not_an_elf_executable_is_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let text = tmp.path().join("script");
        fs::write(&text, "#!/bin/sh\n").unwrap();
        let err = interpreter(&text).unwrap_err().to_string();
        assert!(
            err.contains("script") && err.contains("expected an ELF"),
            "{err}"
        );
        // A header whose program headers lie beyond the file.
        let me = std::env::current_exe().unwrap();
        let mut head = fs::read(&me).unwrap()[..64].to_vec();
        head[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        let cut = tmp.path().join("cut");
        fs::write(&cut, &head).unwrap();
        let err = interpreter(&cut).unwrap_err().to_string();
        assert!(err.contains("truncated ELF header"), "{err}");
    }

    #[test]
    fn the_library_list_keeps_resolved_paths_and_refuses_missing_ones() {
        let interp = Path::new("/lib64/ld-linux-x86-64.so.2");
        let listed = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                      \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f23)\n\
                      \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f23)\n\
                      \t/lib64/ld-linux-x86-64.so.2 (0x00007f23)\n";
        assert_eq!(
            parse_library_list(listed, interp).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
            ]
        );
        let err = parse_library_list("\tlibssl.so.3 => not found\n", interp).unwrap_err();
        assert_eq!(err, "libssl.so.3 not found");
    }
}
