//! The `mdm-agent` binary's command line: clear messages and exit codes.

use std::process::Command;

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mdm-agent"))
        .args(args)
        .output()
        .expect("run mdm-agent")
}

/// A minimal device description file.
fn phone_file(dir: &std::path::Path) -> std::path::PathBuf {
    let device = dir.join("phone.toml");
    std::fs::write(
        &device,
        "serial = \"R58N12ABCDE\"\nimei = \"490154203237518\"\nplatform = \"android\"\nmodel = \"X\"\nos_version = \"14\"\n",
    )
    .expect("write");
    device
}

#[test]
fn status_of_a_fresh_state_directory_says_not_enrolled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = agent(&["status", "--state-dir", dir.path().to_str().expect("path")]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("not enrolled") && stdout.contains("0 report(s) waiting"),
        "{stdout}"
    );
}

#[test]
fn enrolling_with_something_that_is_not_a_token_exits_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = phone_file(dir.path());
    let out = agent(&[
        "enroll",
        "--token",
        "hello",
        "--state-dir",
        dir.path().join("state").to_str().expect("path"),
        "--device",
        device.to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an enrollment token"));
}

#[test]
fn running_before_enrolling_exits_non_zero_and_keeps_the_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = phone_file(dir.path());
    let state = dir.path().join("state");
    let out = agent(&[
        "run",
        "--once",
        "--state-dir",
        state.to_str().expect("path"),
        "--device",
        device.to_str().expect("path"),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not enrolled"));
    assert_eq!(
        std::fs::read_dir(state.join("pending"))
            .expect("pending")
            .count(),
        1
    );
}
