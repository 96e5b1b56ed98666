//! Records the git commit the binary is built from, for `agent-runtime
//! version --json`: `AGENT_RUNTIME_BUILD_COMMIT` when set (a build from a
//! source archive or a container without `.git`), else `git rev-parse`,
//! else none (the version then says `"git_commit": null`).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=AGENT_RUNTIME_BUILD_COMMIT");
    let given = std::env::var("AGENT_RUNTIME_BUILD_COMMIT").ok().filter(|c| !c.trim().is_empty());
    if given.is_none() {
        // Build again when HEAD moves: HEAD itself (a checkout) and the branch it names (a commit).
        for path in [
            git(&["rev-parse", "--git-path", "HEAD"]),
            git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r])),
        ]
        .into_iter()
        .flatten()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(commit) = given.or_else(|| git(&["rev-parse", "--short=12", "HEAD"])) {
        println!("cargo:rustc-env=BUILT_FROM_GIT_COMMIT={commit}");
    }
}
