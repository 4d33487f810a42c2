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
