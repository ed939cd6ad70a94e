// `sqlx::migrate!` embeds the migration files when this crate compiles, but cargo only knows to
// compile it again when its own sources change. A new or edited migration must do that too.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
