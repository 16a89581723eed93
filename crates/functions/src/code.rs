//! The code store: deployment packages, content-addressed by SHA-256.
//!
//! # On-disk format
//!
//! * `<root>/code/<sha256 hex>.zip`: the package as uploaded, written to a `.tmp` file,
//!   fsynced, renamed into place and the directory fsynced BEFORE the function document that
//!   names it is committed.
//! * `<root>/code/<sha256 hex>/`: the package unpacked (the instances' `LAMBDA_TASK_ROOT`),
//!   a cache: built in `<hex>.unpacking/` and renamed, so a complete directory is the only
//!   kind that exists under the final name.
//!
//! # Recovery rule
//!
//! A zip or directory no function version names is an orphan of a crash (or of a deleted
//! function) and is removed at open ([`CodeStore::retain`]). A named zip whose directory is
//! missing is unpacked again on first use.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::Digest as _;

/// Largest package accepted in a request (AWS: 50 MB zipped for direct upload).
pub const MAX_ZIP_BYTES: u64 = 50 * 1024 * 1024;
/// Largest unpacked size (AWS: 250 MB).
pub const MAX_UNZIPPED_BYTES: u64 = 250 * 1024 * 1024;
/// Most entries in one package.
pub const MAX_ENTRIES: usize = 20_000;

/// A stored package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCode {
    /// Lower-case hex SHA-256.
    pub sha256_hex: String,
    /// Base64 SHA-256 (`CodeSha256`).
    pub sha256_b64: String,
    /// Size of the zip.
    pub size: u64,
}

/// Why a package was refused.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// The bytes are not a usable zip (InvalidParameterValueException).
    #[error("{0}")]
    Invalid(String),
    /// Local I/O failed.
    #[error("code store I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// The code store under `<root>/code`.
#[derive(Debug)]
pub struct CodeStore {
    dir: PathBuf,
}

/// Base64 of a lower-case hex SHA-256.
pub fn b64_of_hex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl CodeStore {
    /// Opens (creating) the store.
    pub fn open(root: &Path) -> Result<CodeStore, CodeError> {
        let dir = root.join("code");
        std::fs::create_dir_all(&dir)?;
        Ok(CodeStore { dir })
    }

    /// Checks `zip` (a readable archive, safe entry names, bounded size), stores it durably
    /// and unpacks it. Idempotent for the same bytes.
    pub fn put(&self, zip: &[u8]) -> Result<StoredCode, CodeError> {
        if zip.len() as u64 > MAX_ZIP_BYTES {
            return Err(CodeError::Invalid(format!(
                "Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes"
            )));
        }
        let digest = sha2::Sha256::digest(zip);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let stored = StoredCode {
            sha256_b64: base64::engine::general_purpose::STANDARD.encode(digest),
            sha256_hex: hex.clone(),
            size: zip.len() as u64,
        };
        // Validate before anything touches the disk.
        check_archive(zip)?;
        let final_zip = self.zip_path(&hex);
        if !final_zip.exists() {
            let tmp = self.dir.join(format!("{hex}.zip.tmp"));
            {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(zip)?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &final_zip)?;
            std::fs::File::open(&self.dir)?.sync_all()?;
        }
        self.unpacked(&hex)?;
        Ok(stored)
    }

    fn zip_path(&self, hex: &str) -> PathBuf {
        self.dir.join(format!("{hex}.zip"))
    }

    /// The zip's bytes (GetFunction's code download).
    pub fn read_zip(&self, hex: &str) -> Result<Vec<u8>, CodeError> {
        Ok(std::fs::read(self.zip_path(hex))?)
    }

    /// The unpacked directory of package `hex`, unpacking it if needed.
    pub fn unpacked(&self, hex: &str) -> Result<PathBuf, CodeError> {
        let dir = self.dir.join(hex);
        if dir.is_dir() {
            return Ok(dir);
        }
        let zip = std::fs::read(self.zip_path(hex))?;
        let work = self.dir.join(format!("{hex}.unpacking"));
        if work.exists() {
            std::fs::remove_dir_all(&work)?;
        }
        std::fs::create_dir_all(&work)?;
        unpack(&zip, &work)?;
        std::fs::rename(&work, &dir)?;
        Ok(dir)
    }

    /// Removes every package not in `keep` (hex digests) and every leftover temporary file.
    pub fn retain(&self, keep: &BTreeSet<String>) -> Result<usize, CodeError> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name
                .strip_suffix(".zip")
                .or_else(|| name.strip_suffix(".zip.tmp"))
                .or_else(|| name.strip_suffix(".unpacking"))
                .unwrap_or(&name);
            let temporary = name.ends_with(".tmp") || name.ends_with(".unpacking");
            if temporary || !keep.contains(stem) {
                let path = entry.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn invalid_zip() -> CodeError {
    CodeError::Invalid("Could not unzip uploaded file. Please check your file, then try to upload again.".to_owned())
}

/// Entry names must stay inside the task root.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p if p.contains('\\') || p.contains('\0') => return None,
            p => out.push(p),
        }
    }
    Some(out)
}

fn check_archive(zip: &[u8]) -> Result<(), CodeError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).map_err(|_| invalid_zip())?;
    if archive.len() > MAX_ENTRIES {
        return Err(CodeError::Invalid(format!(
            "The package has more than {MAX_ENTRIES} entries"
        )));
    }
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let f = archive.by_index_raw(i).map_err(|_| invalid_zip())?;
        let name = f.name().map_err(|_| invalid_zip())?;
        if safe_relative(&name).is_none() {
            return Err(CodeError::Invalid(format!(
                "The package contains an entry outside its root: {name}"
            )));
        }
        total = total.saturating_add(f.size());
    }
    if total > MAX_UNZIPPED_BYTES {
        return Err(CodeError::Invalid(format!(
            "Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes"
        )));
    }
    Ok(())
}

fn unpack(zip: &[u8], into: &Path) -> Result<(), CodeError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).map_err(|_| invalid_zip())?;
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).map_err(|_| invalid_zip())?;
        let rel = safe_relative(&f.name().map_err(|_| invalid_zip())?).ok_or_else(invalid_zip)?;
        let path = into.join(&rel);
        if f.is_dir() {
            std::fs::create_dir_all(&path)?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::File::create(&path)?;
        // Bounded by the declared sizes checked before and by this running total.
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(|_| invalid_zip())?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > MAX_UNZIPPED_BYTES {
                return Err(CodeError::Invalid(format!(
                    "Unzipped size must be smaller than {MAX_UNZIPPED_BYTES} bytes"
                )));
            }
            out.write_all(&buf[..n])?;
        }
        // Keep the archive's permission bits (an executable `bootstrap` stays executable);
        // entries without Unix modes (zips made on Windows) get 0755 as Lambda treats them.
        let mode = f.unix_mode().map_or(0o755, |m| m & 0o777);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode | 0o400))?;
    }
    Ok(())
}

/// Builds a zip of `(name, bytes, mode)` entries (tests and the CLI's folder packaging).
pub fn zip_files(files: &[(&str, &[u8], u32)]) -> Result<Vec<u8>, CodeError> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, mode) in files {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        w.start_file(*name, opts)
            .map_err(|e| CodeError::Invalid(e.to_string()))?;
        w.write_all(bytes)?;
    }
    let cursor = w.finish().map_err(|e| CodeError::Invalid(e.to_string()))?;
    Ok(cursor.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_unpack_and_retain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CodeStore::open(dir.path()).expect("open");
        let zip = zip_files(&[
            ("bootstrap", b"#!/bin/sh\necho hi\n", 0o755),
            ("lib/data.txt", b"data", 0o644),
        ])
        .expect("zip");
        let code = store.put(&zip).expect("put");
        assert_eq!(code.size, zip.len() as u64);
        assert_eq!(b64_of_hex(&code.sha256_hex), code.sha256_b64);
        let root = store.unpacked(&code.sha256_hex).expect("unpacked");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(root.join("bootstrap"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "bootstrap stays executable");
        assert_eq!(std::fs::read(root.join("lib/data.txt")).expect("read"), b"data");
        // The cache is rebuilt from the zip.
        std::fs::remove_dir_all(&root).expect("rm");
        assert!(
            store
                .unpacked(&code.sha256_hex)
                .expect("again")
                .join("bootstrap")
                .exists()
        );
        assert_eq!(store.retain(&BTreeSet::new()).expect("retain"), 2);
        assert!(store.unpacked(&code.sha256_hex).is_err());
    }

    #[test]
    fn refuses_bad_archives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CodeStore::open(dir.path()).expect("open");
        assert!(matches!(store.put(b"not a zip"), Err(CodeError::Invalid(_))));
        let evil = zip_files(&[("../escape", b"x", 0o644)]).expect("zip");
        assert!(matches!(store.put(&evil), Err(CodeError::Invalid(_))));
    }
}
