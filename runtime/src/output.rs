//! Writing results without half-written files: the destination is checked before the (long)
//! measurement starts, and the file appears only complete (written beside it, then renamed).
//! Destinations that are not regular files (`/dev/null`, a FIFO, `/dev/stdout`) are written in
//! place: renaming over them would replace the device with a file — which is how a run with
//! `--json /dev/null` once turned this machine's /dev/null into a regular file.

use crate::error::{Result, RuntimeError};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Prints `text` for a reader on standard output. A reader that went away (`| head -1`) is no
/// failure of the run: what remains (files, the cluster's status) is still written, where
/// `print!` would panic.
pub fn show(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        tracing::debug!("standard output closed: {e}");
    }
}

/// [`show`], or to standard error when standard output carries a result (`--json -`).
pub fn show_beside(result_on_stdout: bool, text: &str) {
    if !result_on_stdout {
        return show(text);
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
}

/// A destination opened early and written once. A file sink holds a temporary file beside the
/// target until `commit` renames it into place; dropped uncommitted (an error on the way), the
/// temporary file is removed, so nothing half-written stays behind.
pub enum JsonSink {
    Stdout,
    File(PendingFile),
    /// A device, FIFO or socket: opened and written when the result is ready.
    InPlace(PathBuf),
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
        if ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]
            .iter()
            .any(|s| path.as_os_str() == *s)
        {
            return Ok(JsonSink::Stdout);
        }
        // A process's descriptors (`/dev/stderr`, `/proc/self/fd/N`): a pipe resolves to no
        // path, and a redirect's file must be appended to, never replaced by a rename.
        if path.starts_with("/proc")
            || path.starts_with("/dev/fd")
            || path == Path::new("/dev/stderr")
        {
            // Checked now like any destination: a closed descriptor fails before measuring.
            std::fs::metadata(path).map_err(|e| out_err(path, e))?;
            return Ok(JsonSink::InPlace(path.to_path_buf()));
        }
        // A symlink is followed: the file it points to is replaced, the link stays.
        let resolved;
        let path = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                resolved = std::fs::canonicalize(path).map_err(|e| out_err(path, e))?;
                resolved.as_path()
            }
            _ => path,
        };
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => return Err(out_err(path, "is a directory")),
            Ok(m) if !m.is_file() => return Ok(JsonSink::InPlace(path.to_path_buf())),
            _ => {}
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| out_err(path, "not a file path"))?;
        // A name of its own (two sinks of one run, a link left at the name, are never written
        // through): made new, never truncated.
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| out_err(path, e))?;
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
                let mut out = std::io::stdout().lock();
                writeln!(out, "{contents}")
                    .and_then(|()| out.flush())
                    .map_err(|e| RuntimeError::Output {
                        path: "-".into(),
                        message: e.to_string(),
                    })
            }
            // Appended: a descriptor redirected to a file (`>> run.log`) keeps what it holds.
            JsonSink::InPlace(path) => std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(contents.as_bytes()))
                .map_err(|e| out_err(&path, e)),
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
    fn devices_and_fifos_are_written_in_place_not_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
        };
        let sink = JsonSink::prepare(&fifo).unwrap();
        assert!(matches!(sink, JsonSink::InPlace(_)));
        sink.commit("{\"ok\":1}").unwrap();
        assert_eq!(reader.join().unwrap(), "{\"ok\":1}");
        let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(kind.is_fifo(), "the FIFO was replaced: {kind:?}");
        // The same path a user gives for "throw it away": it must stay a character device.
        let null = JsonSink::prepare(Path::new("/dev/null")).unwrap();
        assert!(matches!(null, JsonSink::InPlace(_)));
        null.commit("{}").unwrap();
        let kind = std::fs::metadata("/dev/null").unwrap().file_type();
        assert!(kind.is_char_device(), "/dev/null was replaced: {kind:?}");
        assert!(
            JsonSink::prepare(dir.path()).is_err(),
            "a directory is not a destination"
        );
    }

    #[test]
    fn a_process_s_descriptors_are_its_output_or_appended_to() {
        use std::os::fd::AsRawFd;
        assert!(matches!(
            JsonSink::prepare(Path::new("/dev/stdout")).unwrap(),
            JsonSink::Stdout
        ));
        // `--json /proc/self/fd/N` where N is a file opened for appending (a `>> run.log`
        // redirect): resolved and renamed over, the log's earlier lines were lost.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("run.log");
        std::fs::write(&log, "earlier line\n").unwrap();
        let held = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let fd = PathBuf::from(format!("/proc/self/fd/{}", held.as_raw_fd()));
        let sink = JsonSink::prepare(&fd).unwrap();
        assert!(matches!(sink, JsonSink::InPlace(_)));
        sink.commit("{}").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "earlier line\n{}");
        // A descriptor that is not open fails before any work, as a missing directory does.
        let err = JsonSink::prepare(Path::new("/proc/self/fd/987654"))
            .err()
            .unwrap();
        assert_eq!(err.exit_code(), 9);
    }

    #[test]
    fn two_sinks_for_one_path_never_mix_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("same.out");
        let (a, b) = (
            JsonSink::prepare(&path).unwrap(),
            JsonSink::prepare(&path).unwrap(),
        );
        a.commit(&"a".repeat(1000)).unwrap();
        b.commit("b").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b");
    }

    #[test]
    fn a_symlinked_destination_keeps_its_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.json");
        std::fs::write(&target, "old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        JsonSink::prepare(&link).unwrap().commit("new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
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
