//! Helpers shared by the runtime's integration tests.

/// A committed test fixture (`runtime/tests/fixtures/`, made by `make_fixtures.py`), as a path
/// argument.
pub fn fixture(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// A finished command's status and output, for an assertion's message. (Each test crate includes
/// this module; not every one runs commands.)
#[allow(dead_code)]
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Whether a folder is empty (or absent): what a refused run must leave behind.
#[allow(dead_code)]
pub fn dir_is_empty(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
}

/// A short measurement protocol on one thread: enough to test what a run does, not how fast.
#[allow(dead_code)]
pub const FAST: &[&str] = &[
    "--windows",
    "3",
    "--window-seconds",
    "0.05",
    "--warmup-seconds",
    "0.02",
    "--threads",
    "1",
];
