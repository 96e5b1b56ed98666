#!/usr/bin/python3
"""sandbox-exec.py UNIT PROGRAM [ARGS...]: executes PROGRAM under the
seccomp-based restrictions the systemd UNIT asks for, applied the way
systemd applies them, for ops/check-unit.sh on a machine where systemd is
not PID 1:

- SystemCallFilter= (allow lists and ~deny lists, groups expanded with
  `systemd-analyze syscall-filter` of this machine's systemd) with
  SystemCallErrorNumber= for everything else;
- SystemCallArchitectures=native (other architectures are killed);
- RestrictAddressFamilies= (socket() with another family: EAFNOSUPPORT);
- MemoryDenyWriteExecute= (mmap writable and executable, mprotect or
  pkey_mprotect adding PROT_EXEC, shmat with SHM_EXEC: EPERM), as systemd's
  seccomp filter does.

Without python3-seccomp it falls back to the kernel's PR_SET_MDWE for W^X
alone and says so on stderr. Either way the restrictions are kept across
execve (the daemon's own re-execution included).

`sandbox-exec.py UNIT --self-test` runs, under the same restrictions, a probe
that must be refused a writable and executable mapping, an AF_NETLINK socket
and setuid (in @privileged), and still get an AF_INET socket and resolve a
name (glibc's getaddrinfo tries netlink first): proof that the
emulation bites, so that the daemon running under it means something.
"""

import ctypes
import errno
import os
import socket
import subprocess
import sys

PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000

PROBE = """
import errno, mmap, os, socket, sys
bad = []
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    bad.append("a writable and executable mapping was allowed")
except PermissionError:
    pass
try:
    socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    bad.append("an AF_NETLINK socket was allowed")
except OSError as e:
    if e.errno != errno.EAFNOSUPPORT:
        bad.append("AF_NETLINK: %s" % e)
try:
    os.setuid(os.getuid())
    bad.append("setuid (@privileged) was allowed")
except PermissionError:
    pass
socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
# Name resolution as the connectors do it (glibc asks netlink for
# AI_ADDRCONFIG and must fall back when AF_NETLINK is refused).
socket.getaddrinfo("localhost", 443, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)
print("; ".join(bad) if bad else "ok")
sys.exit(1 if bad else 0)
"""


def unit_values(path, key):
    out = []
    for line in open(path):
        line = line.strip()
        if line.startswith(key + "="):
            out.append(line[len(key) + 1 :])
    return out


def expand(name, seen=None):
    """The syscalls of a name or @group, recursively."""
    seen = seen if seen is not None else set()
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    listing = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True).stdout
    result = set()
    for line in listing.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            result |= expand(item, seen)
    return result


def filter_sets(unit):
    """(allowed, denied): the unit's SystemCallFilter= lines, in order."""
    allowed, denied = None, set()
    for value in unit_values(unit, "SystemCallFilter"):
        deny = value.startswith("~")
        names = set()
        for word in value.lstrip("~").split():
            names |= expand(word)
        if deny:
            denied |= names
            if allowed is not None:
                allowed -= names
        else:
            allowed = (allowed or set()) | (names - denied)
    return allowed, denied


def mdwe_kernel():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        sys.exit(f"sandbox-exec: prctl(PR_SET_MDWE): errno {ctypes.get_errno()} (kernel before 6.3?)")


def main():
    unit, argv = sys.argv[1], sys.argv[2:]
    if argv == ["--self-test"]:
        argv = ["/usr/bin/python3", "-c", PROBE]
    try:
        import seccomp
    except ImportError:
        print("sandbox-exec: no python3-seccomp: only W^X (PR_SET_MDWE) is applied, not the syscall filter", file=sys.stderr)
        mdwe_kernel()
        os.execv(argv[0], argv)
    errno_name = (unit_values(unit, "SystemCallErrorNumber") or ["EPERM"])[-1]
    err = getattr(errno, errno_name)
    allowed, _ = filter_sets(unit)
    if allowed is None:
        sys.exit("sandbox-exec: the unit has no SystemCallFilter allow list")
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(err))
    if (unit_values(unit, "SystemCallArchitectures") or [""])[-1] != "native":
        sys.exit("sandbox-exec: only SystemCallArchitectures=native is emulated")
    # A new filter allows only the native architecture; systemd kills the rest.
    f.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    mdwe = (unit_values(unit, "MemoryDenyWriteExecute") or ["no"])[-1] == "yes"
    families = unit_values(unit, "RestrictAddressFamilies")
    special = set()
    if mdwe:
        special |= {"mmap", "mprotect", "pkey_mprotect", "shmat"}
    if families:
        special.add("socket")
    skipped = []
    for name in sorted(allowed - special):
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            skipped.append(name)  # not a syscall on this architecture
    if mdwe:
        # mmap: allowed unless both PROT_WRITE and PROT_EXEC are asked for.
        f.add_rule(seccomp.ALLOW, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_WRITE, 0))
        f.add_rule(seccomp.ALLOW, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, 0))
        f.add_rule(seccomp.ALLOW, "mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, 0))
        f.add_rule(seccomp.ALLOW, "pkey_mprotect", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, 0))
        f.add_rule(seccomp.ALLOW, "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, 0))
    if families:
        names = families[-1].split()
        for fam in names:
            f.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, int(getattr(socket, fam))))
        # Any other family: EAFNOSUPPORT, as systemd answers.
        for fam in range(0, 46):
            if fam not in {int(getattr(socket, n)) for n in names}:
                f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, fam))
    f.load()
    print(
        f"sandbox-exec: seccomp: {len(allowed) - len(skipped)} syscalls allowed (else {errno_name}), native only, "
        f"W^X {'on' if mdwe else 'off'}, address families {families[-1] if families else 'any'}",
        file=sys.stderr,
    )
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
