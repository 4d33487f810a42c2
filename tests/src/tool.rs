//! Running command-line tools (kubectl, helm) with a timeout and captured output.

use crate::error::{HarnessError, IoContext, Result};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// What a finished command printed, and how it exited.
#[derive(Clone, Debug)]
pub struct CommandOutput {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// `Ok(self)` when the command exited 0, else an error with its stderr.
    pub fn ok(self) -> Result<Self> {
        if self.success() {
            Ok(self)
        } else {
            Err(HarnessError::CommandFailed {
                command: self.command,
                status: self.status.to_string(),
                stdout: self.stdout,
                stderr: self.stderr,
            })
        }
    }
}

impl std::fmt::Display for CommandOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> {}\n--- stdout\n{}--- stderr\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

pub(crate) async fn run_tool(
    program: &Path,
    args: &[OsString],
    envs: &[(&str, PathBuf)],
    stdin: Option<&str>,
    timeout: Duration,
) -> Result<CommandOutput> {
    let command = std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env_remove("KUBECONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().context(|| format!("starting `{command}`"))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .context(|| format!("writing the stdin of `{command}`"))?;
        drop(pipe);
    }
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.context(|| format!("waiting for `{command}`"))?,
        Err(_) => return Err(HarnessError::CommandTimedOut { command, timeout }),
    };
    Ok(CommandOutput {
        command,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs `promtool` with `args`, feeding `stdin`: `None` when it is not installed on a developer's
/// machine (CI sets GREENBATCH_REQUIRE_PROMTOOL and must have it).
pub fn promtool(args: &[&str], stdin: &str) -> Option<std::process::Output> {
    match std::process::Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut p) => {
            use std::io::Write;
            p.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
            Some(p.wait_with_output().unwrap())
        }
        Err(_) if std::env::var("GREENBATCH_REQUIRE_PROMTOOL").is_err() => {
            eprintln!(
                "promtool not installed: `promtool {}` skipped",
                args.join(" ")
            );
            None
        }
        Err(e) => panic!("promtool required but not runnable: {e}"),
    }
}

/// Asserts that `promtool check metrics` accepts `text`, a classic Prometheus text exposition;
/// `what` names it in the failure. Skipped, like [`promtool`], where promtool is not installed.
pub fn assert_promtool_accepts_metrics(text: &str, what: &str) {
    if let Some(o) = promtool(&["check", "metrics"], text) {
        assert!(
            o.status.success(),
            "promtool check metrics refuses {what}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
