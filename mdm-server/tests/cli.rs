//! The `mdm-server` binary's command line: bad input gets a clear message and a non-zero exit.

use std::process::Command;

fn mdm_server(args: &[&str], data: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mdm-server"))
        .args(args)
        .env("MDM_DATA_DIR", data)
        .output()
        .expect("run mdm-server")
}

#[test]
fn create_user_with_an_unknown_role_exits_non_zero_and_names_the_role() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = mdm_server(
        &[
            "admin",
            "create-user",
            "--email",
            "a@kommun.example",
            "--name",
            "A",
            "--role",
            "superuser",
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown role 'superuser'"), "{stderr}");
}

#[test]
fn an_unknown_configuration_key_in_the_environment_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_mdm-server"))
        .args(["migrate"])
        .env("MDM_DATA_DIR", dir.path())
        .env("MDM_LISTEN_PORT", "80")
        .output()
        .expect("run mdm-server");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen_port"), "{stderr}");
}

#[test]
fn migrate_creates_the_sqlite_database_in_the_data_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = mdm_server(&["migrate"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("mdm.sqlite3").exists());
}

#[test]
fn import_of_a_missing_file_exits_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = mdm_server(
        &["devices", "import", "/nonexistent/delivery.csv"],
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"));
}
