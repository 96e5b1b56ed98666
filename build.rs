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

/// Packs the binary's relative relocations (`-z pack-relative-relocs`,
/// DT_RELR): about 60,000 24-byte `.rela.dyn` entries (1.4 MB) become a
/// bitmap of a few KiB, and the binary stays position independent (ASLR
/// kept). The loader must know DT_RELR (glibc 2.36 or later), so this is
/// done only when building for this machine on such a glibc;
/// `AGENT_RUNTIME_BUILD_RELR=0` leaves it out (a binary for older systems).
fn pack_relocations() {
    println!("cargo:rerun-if-env-changed=AGENT_RUNTIME_BUILD_RELR");
    if std::env::var("AGENT_RUNTIME_BUILD_RELR").is_ok_and(|v| v.trim() == "0") {
        return;
    }
    let (target, host) = (std::env::var("TARGET").unwrap_or_default(), std::env::var("HOST").unwrap_or_default());
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else { return };
    // "glibc 2.36"
    let text = String::from_utf8_lossy(&out.stdout);
    let mut version = text.trim().strip_prefix("glibc ").unwrap_or("").split('.').map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    if (major, minor) >= (2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

fn main() {
    pack_relocations();
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
