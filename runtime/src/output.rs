//! Writing results without half-written files: the destination is checked before the (long)
//! measurement starts, and the file appears only complete (written beside it, then renamed).

use crate::error::{Result, RuntimeError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A destination opened early and written once. A file sink holds a temporary file beside the
/// target until `commit` renames it into place; dropped uncommitted (an error on the way), the
/// temporary file is removed, so nothing half-written stays behind.
pub enum JsonSink {
    Stdout,
    File(PendingFile),
}

pub struct PendingFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::fs::File>,
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn out_err(path: &Path, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Output {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl JsonSink {
    /// Opens a temporary file beside `path` now, so a missing directory or permission fails fast.
    pub fn prepare(path: &Path) -> Result<Self> {
        if path.as_os_str() == "-" {
            return Ok(JsonSink::Stdout);
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| out_err(path, "not a file path"))?;
        let tmp = dir.join(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = std::fs::File::create(&tmp).map_err(|e| out_err(path, e))?;
        Ok(JsonSink::File(PendingFile {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
        }))
    }

    /// Writes `value` as pretty JSON.
    pub fn commit_json(self, value: &impl serde::Serialize) -> Result<()> {
        let json = serde_json::to_string_pretty(value).map_err(|e| RuntimeError::Output {
            path: "json".into(),
            message: e.to_string(),
        })?;
        self.commit(&json)
    }

    pub fn commit(self, contents: &str) -> Result<()> {
        match self {
            JsonSink::Stdout => {
                println!("{contents}");
                Ok(())
            }
            JsonSink::File(mut pending) => {
                let Some(mut file) = pending.file.take() else {
                    return Err(out_err(&pending.path, "already written"));
                };
                let written = file
                    .write_all(contents.as_bytes())
                    .and_then(|_| file.sync_all());
                if let Err(e) = written.and_then(|_| std::fs::rename(&pending.tmp, &pending.path)) {
                    let _ = std::fs::remove_file(&pending.tmp);
                    return Err(out_err(&pending.path, e));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritable_destinations_fail_before_any_work() {
        let err = JsonSink::prepare(Path::new("/nonexistent-dir/x/profile.json"))
            .err()
            .unwrap();
        assert_eq!(err.exit_code(), 9);
        assert!(
            err.to_string().contains("/nonexistent-dir/x/profile.json"),
            "{err}"
        );
    }

    #[test]
    fn files_appear_only_complete_and_abandon_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        let sink = JsonSink::prepare(&path).unwrap();
        assert!(!path.exists());
        sink.commit("{}").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}");
        let again = JsonSink::prepare(&dir.path().join("q.json")).unwrap();
        drop(again); // an error on the way: dropped uncommitted
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("p.json")]);
    }
}
