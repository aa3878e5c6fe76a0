//! `docs/commands.md` is the commands' own `--help`, so the reference cannot drift from the
//! code: this test renders it from both command lines (`xtask`'s, and `ops`' for the commands
//! `cargo xtask` hands to it) and compares it with the committed page. After changing a
//! command, `HIRING_BLESS=1 cargo xtask test -- -p ops commands` rewrites the page.

use clap::CommandFactory;

fn reference() -> String {
    let xtask = xtask::cli::Cli::command();
    let ops = ops::cli::Cli::command();
    let mut page = String::from(
        "# Commands\n\n\
         <!-- Generated from each command's --help by ops/tests/commands.rs; \
         `HIRING_BLESS=1 cargo xtask test -- -p ops commands` rewrites it. -->\n\n\
         Every command runs as `cargo xtask <command>`. The ones marked [ops] call AWS and are \
         handed to the `ops` binary, so only they compile the AWS SDK. Back to the \
         [README](../README.md).\n\n```text\n",
    );
    page.push_str(xtask.clone().render_long_help().to_string().trim_end());
    page.push_str("\n```\n");
    for command in xtask.get_subcommands().filter(|command| !command.is_hide_set()) {
        let name = command.get_name();
        let source = if xtask::cli::OPS_COMMANDS.contains(&name) {
            ops.find_subcommand(name).unwrap_or_else(|| panic!("ops has no `{name}` command")).clone()
        } else {
            command.clone()
        };
        let help = source.bin_name(format!("cargo xtask {name}")).render_long_help().to_string();
        page.push_str(&format!("\n## `cargo xtask {name}`\n\n```text\n{}\n```\n", help.trim_end()));
    }
    page
}

#[test]
fn the_command_reference_is_the_commands_own_help() {
    let path = devenv::project_root().join("docs/commands.md");
    let rendered = reference();
    if std::env::var_os("HIRING_BLESS").is_some() {
        std::fs::write(&path, &rendered).expect("docs/commands.md is writable");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "docs/commands.md differs from the commands' --help: run `HIRING_BLESS=1 cargo xtask test -- -p ops commands` and commit it"
    );
}

#[test]
fn every_command_cargo_xtask_hands_over_is_one_ops_has() {
    let ops = ops::cli::Cli::command();
    let names: Vec<&str> = ops.get_subcommands().map(|command| command.get_name()).collect();
    assert_eq!(names, xtask::cli::OPS_COMMANDS);
}
