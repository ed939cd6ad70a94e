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

/// A port free on loopback at the time of asking.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// One HTTP/1.1 GET over a fresh connection; the whole answer as text, or `None` while the
/// server is not listening yet.
fn get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

#[test]
fn serve_takes_string_settings_from_the_environment_logs_each_request_and_keeps_its_data_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (port, device_port) = (free_port(), free_port());
    let mut server = Command::new(env!("CARGO_BIN_EXE_mdm-server"))
        .arg("serve")
        .env("MDM_DATA_DIR", &data)
        .env("MDM_LISTEN", format!("127.0.0.1:{port}"))
        .env("MDM_DEVICE_LISTEN", format!("127.0.0.1:{device_port}"))
        // As the README writes them: a phone number and an all-digit secret stay text.
        .env("MDM_LEASING__SUPPORT_PHONE_NUMBER", "+46812345678")
        .env("MDM_NOTIFICATIONS__WEBHOOK_SECRET", "12345678901234567890")
        .env_remove("MDM_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run mdm-server serve");
    let mut answer = None;
    for _ in 0..300 {
        answer = get(port, "/api/v1/devices?limit=5");
        if answer.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = server.kill();
    let out = server.wait_with_output().expect("server output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let answer = answer.unwrap_or_else(|| panic!("the server never answered: {stdout} {stderr}"));
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    let request_id = answer
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap_or_else(|| panic!("no request id in the answer: {answer}"))
        .trim();

    let line = stdout
        .lines()
        .find(|l| l.contains(request_id))
        .unwrap_or_else(|| panic!("no access-log line for {request_id}: {stdout}"));
    for part in [
        "route=/api/v1/devices",
        "method=GET",
        "status=401",
        "latency=",
    ] {
        assert!(line.contains(part), "{part} missing from: {line}");
    }
    assert!(!line.contains("limit=5"), "the query is not logged: {line}");
    assert!(
        !stdout.contains('\u{1b}'),
        "no colour codes into a pipe: {stdout}"
    );

    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&data.join("mdm.sqlite3")), 0o600, "the database");
}
