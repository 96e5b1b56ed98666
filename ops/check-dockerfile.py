#!/usr/bin/env python3
"""Checks ops/Dockerfile and ops/compose.yaml without a container engine
(run by `make check-ops`, part of `make test`).

What it can check here, and does:

1. The Dockerfile's invariants: a build stage that runs `cargo build
   --release --locked` on an explicit list of sources (never the whole
   context, which may hold .env and data/) that covers every file the crate
   embeds; pinned base images; a runtime stage whose only RUN is
   ops/docker-setup.sh; a non-root USER that the setup creates; the data
   directory as the VOLUME, the WORKDIR and AGENT_RUNTIME_DATA_DIR; a
   HEALTHCHECK; the probe listener on loopback; EXPOSE = the admin port =
   the port of AGENT_RUNTIME_ADMIN_API_URL. And compose.yaml: one service
   built from this Dockerfile, the admin port published on 127.0.0.1 only,
   the data volume, an env file.
2. The runtime stage's steps: ops/docker-setup.sh in a temp root seeded
   with this machine's account files (Debian, like the image's base): the
   user, its uid and shell, the data directory's owner and mode.
3. With a built binary (AGENT_RUNTIME_BIN, default target/debug/agent-runtime):
   the daemon as the image would run it - as the image's user, with the
   image's ENV (only the ports changed to free ones), in the data directory
   created by step 2 - then the image's HEALTHCHECK script must pass, the
   CLI must reach the admin API by the image's AGENT_RUNTIME_ADMIN_API_URL
   (what `docker exec ... agent-runtime health` does), and after SIGTERM
   the health check must fail.

What it cannot check without an engine: that the image builds (the Rust
toolchain image, the registry cache mounts), the layers, the volume
initialisation, read_only and cap_drop in compose.yaml. Say so when you
report on it.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
DOCKERFILE = HERE / "Dockerfile"
COMPOSE = HERE / "compose.yaml"


def fail(msg):
    print(f"check-dockerfile: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def say(msg):
    print(f"check-dockerfile: {msg}")


def instructions(text):
    """(instruction, argument) pairs: comments dropped, continuations joined."""
    out, cur = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not cur and (not stripped or stripped.startswith("#")):
            continue
        if cur and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            cur += stripped[:-1] + " "
            continue
        cur += stripped
        word, _, rest = cur.partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def stages(instrs):
    """[(name, base, [(instruction, argument)])] in order."""
    result = []
    for word, arg in instrs:
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", arg, re.I)
            if not m:
                fail(f"cannot read FROM {arg}")
            result.append((m.group(2) or "", m.group(1), []))
        elif result:
            result[-1][2].append((word, arg))
    return result


def env_of(stage_instrs):
    env = {}
    for word, arg in stage_instrs:
        if word == "ENV":
            for m in re.finditer(r'(\w+)=("[^"]*"|\S+)', arg):
                env[m.group(1)] = m.group(2).strip('"')
    return env


def port_of(addr):
    return int(addr.rsplit(":", 1)[1].rstrip("/"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_static():
    text = DOCKERFILE.read_text()
    args = {m.group(1): m.group(2) for m in re.finditer(r"^ARG (\w+)=(\S+)$", text, re.M)}
    st = stages(instructions(text))
    if len(st) < 2:
        fail("the Dockerfile must have a build stage and a runtime stage")
    (build_name, build_base, build), (rt_name, rt_base, rt) = st[0], st[-1]
    for name, base in [(build_name, build_base), (rt_name, rt_base)]:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), "?"), base)
        if ":" not in resolved or resolved.endswith(":latest") or "?" in resolved:
            fail(f"stage {name or base}: base image {resolved} is not pinned to a tag")
    runs = [a for w, a in build if w == "RUN"]
    if not any(re.search(r"cargo build\b.*--release\b", r) and "--locked" in r for r in runs):
        fail("the build stage must run `cargo build --release --locked`")

    # The build stage copies an explicit list, which covers what the crate embeds.
    copied = []
    for w, a in build:
        if w in ("COPY", "ADD"):
            if w == "ADD":
                fail("use COPY, not ADD, in the build stage")
            parts = [p for p in a.split() if not p.startswith("--")]
            for src in parts[:-1]:
                if src in (".", "./", "*"):
                    fail("the build stage copies the whole context (it may hold .env and data/): list what the build needs")
                if not (REPO / src).exists():
                    fail(f"the build stage copies {src}, which is not in the repository")
                copied.append(src.rstrip("/"))
    embedded = set()
    for rs in (REPO / "src").rglob("*.rs"):
        for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"', rs.read_text()):
            target = (rs.parent / m.group(1)).resolve()
            embedded.add(target.relative_to(REPO).as_posix())
    for m in re.finditer(r'^\s*path\s*=\s*"([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M):
        embedded.add(m.group(1))
    # .env.example is embedded by a unit test only (not in the release build).
    needed = sorted(e for e in embedded if e != ".env.example")
    missing = [e for e in needed if not any(e == c or e.startswith(c + "/") for c in copied)]
    if (REPO / "build.rs").exists():
        # Without it cargo builds no build script at all, silently: no packed relocations, no commit.
        needed.append("build.rs")
    missing = [e for e in needed if not any(e == c or e.startswith(c + "/") for c in copied)]
    if missing:
        fail(f"the build stage does not copy files the crate reads at build time: {missing}")
    if not any("agent-runtime man /usr/local/share/man/man1" in r for r in runs):
        fail("the build stage must write the man pages (`agent-runtime man /usr/local/share/man/man1`)")
    say(f"build stage: cargo build --release --locked on {' '.join(copied)} (covers {len(needed)} embedded/target files)")

    # The runtime stage.
    rt_runs = [a for w, a in rt if w == "RUN"]
    if rt_runs != ["sh /tmp/docker-setup.sh && rm /tmp/docker-setup.sh"]:
        fail(f"the runtime stage's only RUN must be ops/docker-setup.sh (this check runs that script), not {rt_runs}")
    if ("COPY", "--from=build /usr/local/share/man/man1 /usr/local/share/man/man1") not in rt:
        fail("the runtime stage must COPY --from=build the man pages into /usr/local/share/man/man1")
    if ("COPY", "ops/docker-setup.sh /tmp/docker-setup.sh") not in rt:
        fail("the runtime stage must COPY ops/docker-setup.sh /tmp/docker-setup.sh")
    users = [a for w, a in rt if w == "USER"]
    if not users:
        fail("the runtime stage has no USER: it would run as root")
    uid, _, gid = users[-1].partition(":")
    if not uid.isdigit() or int(uid) == 0 or (gid and (not gid.isdigit() or int(gid) == 0)):
        fail(f"USER {users[-1]} must be a numeric non-root uid:gid")
    volumes = [a for w, a in rt if w == "VOLUME"]
    if len(volumes) != 1:
        fail("the runtime stage must declare exactly one VOLUME (the data directory)")
    volume = json.loads(volumes[0])[0] if volumes[0].startswith("[") else volumes[0]
    env = env_of(rt)
    workdir = [a for w, a in rt if w == "WORKDIR"]
    if env.get("AGENT_RUNTIME_DATA_DIR") != volume or workdir[-1:] != [volume]:
        fail(f"AGENT_RUNTIME_DATA_DIR ({env.get('AGENT_RUNTIME_DATA_DIR')}) and WORKDIR ({workdir}) must be the VOLUME {volume}")
    health = [a for w, a in rt if w == "HEALTHCHECK"]
    m = re.search(r'CMD \["(/usr/local/bin/agent-runtime-healthcheck)"\]$', health[0]) if health else None
    if not m:
        fail("the runtime stage needs HEALTHCHECK ... CMD [\"/usr/local/bin/agent-runtime-healthcheck\"]")
    if not any(w == "COPY" and "ops/healthcheck.sh /usr/local/bin/agent-runtime-healthcheck" in a and "--chmod=0755" in a for w, a in rt):
        fail("the runtime stage must COPY --chmod=0755 ops/healthcheck.sh to /usr/local/bin/agent-runtime-healthcheck")
    probe = env.get("AGENT_RUNTIME_HEALTH_ADDR", "")
    if not probe.startswith("127.0.0.1:"):
        fail(f"AGENT_RUNTIME_HEALTH_ADDR must be on loopback (the daemon refuses anything else), not {probe!r}")
    http_port = port_of(env.get("AGENT_RUNTIME_HTTP_ADDR", "127.0.0.1:8080"))
    api_url = env.get("AGENT_RUNTIME_ADMIN_API_URL", "")
    if not api_url.startswith("https://127.0.0.1:") or port_of(api_url) != http_port:
        fail(f"AGENT_RUNTIME_ADMIN_API_URL ({api_url!r}) must be https://127.0.0.1:<the admin port {http_port}>")
    exposed = [a for w, a in rt if w == "EXPOSE"]
    if exposed != [str(http_port)]:
        fail(f"EXPOSE {exposed} must be the admin port {http_port} (and only it: the probe port stays inside)")
    entry = [a for w, a in rt if w == "ENTRYPOINT"]
    if entry != ['["/usr/local/bin/agent-runtime"]']:
        fail(f"ENTRYPOINT must be the binary in exec form, not {entry}")
    say(f"runtime stage: USER {users[-1]}, VOLUME {volume}, HEALTHCHECK on {probe}/readyz, EXPOSE {http_port}")

    # compose.yaml
    try:
        import yaml  # noqa: PLC0415 (optional: python3-yaml)
    except ImportError:
        say("no python3-yaml: compose.yaml not checked")
        return env, int(uid), int(gid or uid), volume
    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc.get("services", {})
    if len(services) != 1:
        fail(f"compose.yaml must have one service, not {list(services)}")
    (svc,) = services.values()
    build_cfg = svc.get("build", {})
    if build_cfg.get("dockerfile") != "ops/Dockerfile" or not (HERE / build_cfg.get("context", "")).resolve() == REPO:
        fail("compose.yaml must build ops/Dockerfile with the repository as the context")
    ports = svc.get("ports", [])
    if [p for p in ports if not str(p).startswith("127.0.0.1:")]:
        fail(f"compose.yaml publishes a port beyond the host's loopback: {ports}")
    if [str(p) for p in ports] != [f"127.0.0.1:{http_port}:{http_port}"]:
        fail(f"compose.yaml must publish the admin port as 127.0.0.1:{http_port}:{http_port}, not {ports}")
    if not any(str(v).endswith(":" + volume) for v in svc.get("volumes", [])):
        fail(f"compose.yaml must mount a volume on {volume}")
    env_files = svc.get("env_file")
    if not env_files:
        fail("compose.yaml must read an env_file")
    # It holds secrets next to the checkout: git must ignore it.
    for f in [env_files] if isinstance(env_files, str) else env_files:
        path = (HERE / (f if isinstance(f, str) else f["path"])).relative_to(REPO)
        ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(path)], capture_output=True)
        if ignored.returncode == 1:
            fail(f"compose.yaml's env file {path} (secrets) is not in .gitignore")
    say(f"compose.yaml: one service, admin port on 127.0.0.1:{http_port} only, volume on {volume}, env_file")
    return env, int(uid), int(gid or uid), volume


def check_setup(root, uid, gid, volume):
    (root / "etc").mkdir(parents=True)
    for f in ["passwd", "group", "shadow", "gshadow", "login.defs"]:
        src = pathlib.Path("/etc") / f
        if src.exists():
            shutil.copy2(src, root / "etc" / f)
    # The image's /usr/sbin/nologin, so useradd finds the shell it names.
    (root / "usr/sbin").mkdir(parents=True)
    shutil.copy2("/usr/sbin/nologin", root / "usr/sbin/nologin")
    env = dict(os.environ, ROOT=str(root))
    r = subprocess.run(["sh", str(HERE / "docker-setup.sh")], env=env, capture_output=True, text=True)
    if r.returncode != 0 or r.stderr.strip():
        fail(f"ops/docker-setup.sh in a temp root: exit {r.returncode}: {r.stdout}{r.stderr}")
    entry = [line.split(":") for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("agent-runtime:")]
    if len(entry) != 1:
        fail("docker-setup.sh did not create the user agent-runtime")
    _, _, puid, pgid, _, home, shell = entry[0]
    if (int(puid), int(pgid)) != (uid, gid):
        fail(f"the user is {puid}:{pgid}, the Dockerfile's USER {uid}:{gid}")
    if home != volume or shell != "/usr/sbin/nologin":
        fail(f"the user's home is {home} (want {volume}) and shell {shell} (want /usr/sbin/nologin)")
    data = root / volume.lstrip("/")
    st = data.stat()
    if (st.st_uid, st.st_gid, st.st_mode & 0o7777) != (uid, gid, 0o700):
        fail(f"{volume} is {st.st_uid}:{st.st_gid} {oct(st.st_mode & 0o7777)}, want {uid}:{gid} 0o700")
    say(f"runtime setup (ops/docker-setup.sh in a temp root): user agent-runtime {uid}:{gid}, nologin, {volume} 0700")
    return data


def check_daemon(work, data, image_env, uid, gid):
    repo_target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = pathlib.Path(os.environ.get("AGENT_RUNTIME_BIN", repo_target / "debug/agent-runtime"))
    if not binary.is_file() or not os.access(binary, os.X_OK):
        say(f"no binary at {binary}: skipped the daemon check (run after cargo build, or set AGENT_RUNTIME_BIN)")
        return
    if os.geteuid() != 0:
        say("not root: cannot run the daemon as the image's user; skipped the daemon check")
        return
    # Everything on the way to the data dir and the binary must be reachable by the user.
    p = data.parent
    while p != work:
        p.chmod(0o755)
        p = p.parent
    work.chmod(0o755)
    exe = work / "agent-runtime"
    shutil.copy2(binary, exe)
    exe.chmod(0o755)
    http_port, probe_port = free_port(), free_port()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(data)}
    env.update(image_env)
    # What differs from the image: the data dir's place on this machine, ports free here.
    env["AGENT_RUNTIME_DATA_DIR"] = str(data)
    env["AGENT_RUNTIME_HTTP_ADDR"] = re.sub(r":\d+$", f":{http_port}", image_env["AGENT_RUNTIME_HTTP_ADDR"])
    env["AGENT_RUNTIME_HEALTH_ADDR"] = re.sub(r":\d+$", f":{probe_port}", image_env["AGENT_RUNTIME_HEALTH_ADDR"])
    env["AGENT_RUNTIME_ADMIN_API_URL"] = re.sub(r":\d+$", f":{http_port}", image_env["AGENT_RUNTIME_ADMIN_API_URL"])
    env["AGENT_RUNTIME_WATCH_ENABLED"] = "false"
    drop = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
    log = open(work / "serve.log", "w+")
    proc = subprocess.Popen([*drop, str(exe), "serve"], cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT)
    healthcheck = [str(HERE / "healthcheck.sh")]
    try:
        deadline = time.time() + 15
        while True:
            if proc.poll() is not None:
                log.seek(0)
                fail(f"the daemon exited at start ({proc.returncode}): {log.read()}")
            if subprocess.run(healthcheck, env=env, capture_output=True).returncode == 0:
                break
            if time.time() > deadline:
                log.seek(0)
                fail(f"the HEALTHCHECK never passed within 15 s: {log.read()}")
            time.sleep(0.1)
        say(f"daemon as {uid}:{gid} with the image's ENV (admin on {env['AGENT_RUNTIME_HTTP_ADDR']}): the HEALTHCHECK passes")
        r = subprocess.run([*drop, str(exe), "health"], cwd=data, env=env, capture_output=True, text=True, timeout=30)
        if r.returncode != 0 or "overall: healthy" not in r.stdout:
            fail(f"`agent-runtime health` inside the image's environment: exit {r.returncode}: {r.stdout}{r.stderr}")
        say("`agent-runtime health` as the image's user reaches the API by AGENT_RUNTIME_ADMIN_API_URL over mutual TLS")
        loose = [str(p) for p in data.rglob("*") if p.stat().st_uid != uid]
        if loose:
            fail(f"files in the data dir not owned by the image's user: {loose}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            fail("the daemon did not stop within 30 s of SIGTERM")
    if rc != 0:
        log.seek(0)
        fail(f"SIGTERM: exit {rc}: {log.read()}")
    r = subprocess.run(healthcheck, env=env, capture_output=True, text=True)
    if r.returncode == 0:
        fail("the HEALTHCHECK passes with the daemon stopped")
    say(f"after SIGTERM (exit 0) the HEALTHCHECK fails: {r.stderr.strip()}")


def main():
    image_env, uid, gid, volume = check_static()
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        data = check_setup(work / "root", uid, gid, volume)
        check_daemon(work, data, image_env, uid, gid)
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        say("a container engine is here: `docker build -f ops/Dockerfile .` would check the build itself (not run by make test)")
    else:
        say("no container engine here: the image itself was not built")


if __name__ == "__main__":
    main()
