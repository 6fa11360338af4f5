#!/usr/bin/env python3
"""Proves deploy/Dockerfile without a Docker engine, reading the Dockerfile itself so the two cannot drift.

Build stage: lays out, in a fresh directory, exactly the files its COPY lines name (minus .dockerignore),
installs the Debian packages its apt-get lines name (if missing), and runs its other RUN commands there — in a
private mount namespace where the stage's absolute paths (WORKDIR, install targets) are bind-mounted from the
fresh directory.

Runtime stage: debootstraps its base (`debian:<suite>-slim` → `debootstrap --variant=minbase <suite>`) with the
packages its apt-get line installs, runs its RUN command inside (users, groups), copies in what its
`COPY --from=build` lines name, and runs the ENTRYPOINT with `chroot` as its USER with exactly its ENV and
WORKDIR: `--help`, `validate` on a sample event, and the embedded default until `/readyz` is 200 and a WebSocket
subscriber receives a snapshot. A missing shared library or schema path fails here.

Usage: deploy/check_image.py [--work DIR] [--dockerfile FILE] [--idle-build]   (root: debootstrap, chroot, mount namespaces)
"""
import argparse
import asyncio
import fnmatch
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DOCKER_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SAMPLE_EVENT = json.dumps({
    "schema_version": 1, "event_id": "01JDA5Q6X8M3V0F4T2B9K7C1ZR", "type": "video.completed",
    "job_id": "job_01HABCDEF0123456789", "occurred_at": "2026-11-24T10:15:30.123Z", "seq": 812,
    "data": {"video_id": "vid_0042", "processing_ms": 48210, "attempt": 1,
             "output_url": "s3://content-outputs/job_01HABCDEF0123456789/vid_0042.mp4"}})


def log(message):
    print(f"check-image: {message}", flush=True)


def fail(message):
    print(f"check-image: FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def parse_dockerfile(path):
    """Stages as [{"from", "name", "instructions": [(KEYWORD, arguments)]}], continuation lines joined."""
    stages, logical, pending = [], [], ""
    for raw in path.read_text().splitlines():
        line = raw.rstrip()
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    for line in logical:
        keyword, _, arguments = line.strip().partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append({"from": words[0], "name": name, "instructions": []})
        elif stages:
            stages[-1]["instructions"].append((keyword, arguments))
    return stages


def dockerignore():
    path = ROOT / ".dockerignore"
    if not path.exists():
        return [], []
    patterns = [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]
    return [p for p in patterns if not p.startswith("!")], [p[1:] for p in patterns if p.startswith("!")]


def ignored(relative, patterns):
    """Docker's rule: a path is excluded when it or one of its parent directories matches a pattern."""
    excluded, included = patterns
    parts = pathlib.PurePosixPath(relative).parts
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    hit = any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes for pattern in excluded)
    return hit and not any(fnmatch.fnmatchcase(relative, pattern) for pattern in included)


def copy_from_context(source, destination, patterns):
    """COPY from the build context (the repository root) into `destination`, honouring .dockerignore."""
    src = ROOT / source
    if not src.exists() or ignored(source, patterns):
        fail(f"COPY {source}: not in the build context (missing, or excluded by .dockerignore)")
    if src.is_file():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, destination)
        return 1
    count = 0
    for path in sorted(src.rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_dir() or ignored(relative, patterns):
            continue
        target = destination / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        count += 1
    return count


def container_path(workdir, path):
    return path if path.startswith("/") else str(pathlib.PurePosixPath(workdir) / path)


def apt_packages(command):
    """The packages an `apt-get install` in a RUN line names."""
    match = re.search(r"apt-get install ([^&;|]*)", command)
    return [word for word in (match.group(1).split() if match else []) if not word.startswith("-")]


def ensure_packages(packages):
    missing = [p for p in packages
               if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout != "install ok installed"]
    if missing:
        log(f"installing {' '.join(missing)}")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True)


def build_stage(stage, work, patterns):
    """Runs the build stage in `work/root` (the stage's filesystem paths under it). Returns that root."""
    root = work / "build-root"
    # A fresh layout every run; only SwiftPM's build folder survives between local runs (as a build cache would):
    # CI starts from a new clone, so it builds from scratch.
    cache = work / "swiftpm-build-cache"
    for previous in root.glob("*/.build"):
        shutil.rmtree(cache, ignore_errors=True)
        previous.rename(cache)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    workdir, mounts = "/", set()
    for keyword, arguments in stage["instructions"]:
        if keyword == "WORKDIR":
            workdir = container_path(workdir, arguments)
            (root / workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
            mounts.add("/" + pathlib.PurePosixPath(workdir).parts[1])
        elif keyword == "COPY":
            words = [w for w in shlex.split(arguments) if not w.startswith("--")]
            *sources, destination = words
            for source in sources:
                target = pathlib.PurePosixPath(container_path(workdir, destination))
                if destination.endswith("/") or len(sources) > 1:
                    target = target / pathlib.PurePosixPath(source).name
                count = copy_from_context(source, root / str(target).lstrip("/"), patterns)
                log(f"COPY {source} → {target} ({count} files)")
        elif keyword == "RUN":
            if "apt-get" in arguments:
                ensure_packages(apt_packages(arguments))
                continue
            if cache.exists() and workdir != "/":
                cache.rename(root / workdir.lstrip("/") / ".build")
            for path in re.findall(r"(?<![\w$.])(/[a-z]+)/", arguments):
                if path not in ("/usr", "/bin", "/etc", "/tmp", "/opt", "/var", "/lib", "/proc", "/dev"):
                    mounts.add(path)
            run_in_namespace(arguments, root, workdir, mounts)
        elif keyword in ("ENV", "ARG"):
            fail(f"{keyword} in the build stage is not handled by this check; extend deploy/check_image.py")
    return root


# A prefix for the build stage's commands: empty, or idle priority (`--idle-build`). Only the build: the runtime
# stage's checks wait for the binary with deadlines, which an idle-priority process beside busy tests could miss.
BUILD_PRIORITY = []


def run_in_namespace(command, root, workdir, mounts):
    """Runs `command` with cwd `workdir`, each path in `mounts` bind-mounted from `root` (private mount namespace)."""
    created = []
    for mount in sorted(mounts):
        (root / mount.lstrip("/")).mkdir(parents=True, exist_ok=True)
        if not os.path.exists(mount):
            os.makedirs(mount)
            created.append(mount)
    binds = " && ".join(f"mount --bind {shlex.quote(str(root / m.lstrip('/')))} {m}" for m in sorted(mounts))
    script = f"{binds} && cd {shlex.quote(workdir)} && {command}"
    log(f"RUN {command}")
    started = time.time()
    try:
        result = subprocess.run([*BUILD_PRIORITY, "unshare", "--mount", "--propagation", "private", "bash", "-euo", "pipefail", "-c", script])
    finally:
        for path in created:
            os.rmdir(path)
    if result.returncode != 0:
        fail(f"RUN {command}: exit {result.returncode}")
    log(f"RUN took {time.time() - started:.0f} s")


def runtime_stage(stage, build_root, work):
    """Builds the runtime root filesystem; returns (rootfs, env, user, workdir, entrypoint)."""
    match = re.fullmatch(r"debian:([a-z]+)(-slim)?", stage["from"])
    if not match:
        fail(f"runtime base {stage['from']}: only debian:<suite>[-slim] can be debootstrapped here")
    suite = match.group(1)
    packages = [p for keyword, arguments in stage["instructions"] if keyword == "RUN" for p in apt_packages(arguments)]
    # The debootstrapped base is kept between runs (in --work); each run starts from a copy of it.
    base = work / f"base-{suite}-{'-'.join(sorted(packages))}"
    if not (base / "usr" / "bin" / "apt-get").exists():
        shutil.rmtree(base, ignore_errors=True)
        log(f"debootstrap --variant=minbase --include={','.join(packages)} {suite}")
        started = time.time()
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(base), DEBIAN_MIRROR],
                       check=True, stdout=subprocess.DEVNULL)
        log(f"debootstrap took {time.time() - started:.0f} s")
    rootfs = work / "rootfs"
    unmount_below(rootfs)
    shutil.rmtree(rootfs, ignore_errors=True)
    subprocess.run(["cp", "-a", str(base), str(rootfs)], check=True)
    env, user, workdir, entrypoint = {"PATH": DOCKER_DEFAULT_PATH}, "0:0", "/", None
    with mounted(rootfs):
        shutil.copy2("/etc/resolv.conf", rootfs / "etc" / "resolv.conf")
        for keyword, arguments in stage["instructions"]:
            if keyword == "RUN":
                log(f"RUN (in the root filesystem) {arguments}")
                result = subprocess.run(["chroot", str(rootfs), "/bin/sh", "-c", arguments], stdout=subprocess.DEVNULL)
                if result.returncode != 0:
                    fail(f"RUN {arguments}: exit {result.returncode}")
            elif keyword == "COPY":
                words = shlex.split(arguments)
                if not any(w.startswith("--from=") for w in words):
                    fail("the runtime stage copies from the build context; extend deploy/check_image.py")
                source, destination = [w for w in words if not w.startswith("--")]
                target = rootfs / destination.lstrip("/")
                origin = build_root / source.lstrip("/")
                if not origin.exists():
                    fail(f"COPY --from=build {source}: the build stage did not produce it")
                if target.exists():
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                target.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if origin.is_dir() else shutil.copy2)(origin, target)
                log(f"COPY --from=build {source} → {destination}")
            elif keyword == "WORKDIR":
                workdir = container_path(workdir, arguments)
            elif keyword == "ENV":
                for word in shlex.split(arguments):
                    key, _, value = word.partition("=")
                    env[key] = value
            elif keyword == "USER":
                user = arguments if ":" in arguments else f"{arguments}:{arguments}"
            elif keyword == "ENTRYPOINT":
                entrypoint = json.loads(arguments)
    if not entrypoint:
        fail("the runtime stage has no ENTRYPOINT in exec form")
    return rootfs, env, user, workdir, entrypoint


def unmount_below(path):
    """Unmounts whatever is mounted at or below `path`, as a run killed before its cleanup leaves /proc and /dev in the
    root filesystem: removing the tree with the host's /dev bound into it would delete the host's device nodes."""
    prefix = os.path.realpath(path)

    def points():
        with open("/proc/self/mountinfo") as info:
            # The mount point is the fifth field, with spaces and the like as octal escapes (\040).
            found = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4]) for line in info]
        return sorted({p for p in found if p == prefix or p.startswith(prefix + "/")}, key=len, reverse=True)

    for point in points():
        log(f"unmounting {point}, left by an earlier run")
        subprocess.run(["umount", "-l", point], check=False)
    if points():
        fail(f"still mounted below {prefix}: {points()}; not removing it")


class mounted:
    """/proc and /dev inside the root filesystem, as a container has them."""

    def __init__(self, rootfs):
        self.points = [(rootfs / "proc", ["mount", "-t", "proc", "proc"]), (rootfs / "dev", ["mount", "--bind", "/dev"])]

    def __enter__(self):
        for point, command in self.points:
            point.mkdir(exist_ok=True)
            subprocess.run([*command, str(point)], check=True)

    def __exit__(self, *_):
        for point, _ in reversed(self.points):
            subprocess.run(["umount", "-l", str(point)], check=False)


def in_image(rootfs, env, user, workdir, argv, **kwargs):
    """argv run as the image runs it: chroot, its USER, exactly its ENV, its WORKDIR."""
    assignments = [f"{k}={v}" for k, v in env.items()]
    script = f"cd {shlex.quote(workdir)} && exec " + " ".join(shlex.quote(a) for a in argv)
    return ["chroot", f"--userspec={user}", str(rootfs), "/usr/bin/env", "-i", *assignments, "/bin/sh", "-c", script]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_runtime(rootfs, env, user, workdir, entrypoint):
    with mounted(rootfs):
        help_run = subprocess.run(in_image(rootfs, env, user, workdir, [*entrypoint, "--help"]), capture_output=True, text=True)
        if help_run.returncode != 0 or "USAGE" not in help_run.stdout:
            fail(f"--help: exit {help_run.returncode}\n{help_run.stdout}{help_run.stderr}")
        log("--help: ok")
        validate = subprocess.run(in_image(rootfs, env, user, workdir, [*entrypoint, "validate"]), input=SAMPLE_EVENT + "\n",
                                  capture_output=True, text=True)
        if validate.returncode != 0 or '"valid":true' not in validate.stdout:
            fail(f"validate: exit {validate.returncode}\n{validate.stdout}{validate.stderr}")
        log("validate on a sample event: valid")
        port, admin = free_port(), free_port()
        process = subprocess.Popen(in_image(rootfs, env, user, workdir, [*entrypoint, "--port", str(port), "--admin-port", str(admin)]),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 90
            while time.time() < deadline:
                if process.poll() is not None:
                    fail(f"the embedded default exited with {process.returncode}:\n{process.stderr.read()}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                time.sleep(0.3)
            else:
                fail("the embedded default never became ready")
            log("embedded default: /readyz 200")
            # A library the loader cannot find is skipped with a warning, not an error: check it is really mapped.
            preloaded = env.get("LD_PRELOAD", "").replace(":", " ").split()
            if preloaded:
                try:
                    maps = pathlib.Path(f"/proc/{process.pid}/maps").read_text()
                except OSError as error:
                    fail(f"cannot read the running bridge's memory map: {error}")
                mapped = {line.split()[-1].rsplit("/", 1)[-1] for line in maps.splitlines() if "/" in line}
                missing = [library for library in preloaded if library.rsplit("/", 1)[-1] not in mapped]
                if missing:
                    fail(f"LD_PRELOAD names {missing}, which the running bridge has not loaded")
                log(f"LD_PRELOAD {' '.join(preloaded)}: loaded")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                body = page.read().decode()
                if page.status != 200 or "<html" not in body.lower() or "Content-Security-Policy" not in page.headers:
                    fail(f"GET / did not serve the dashboard page: {page.status} {body[:200]}")
            log("GET /: the dashboard page")
            types = asyncio.run(subscribe(port))
            if types[:2] != ["connection.ack", "job.snapshot"]:
                fail(f"a WebSocket subscriber got {types}")
            log("a WebSocket subscriber received connection.ack and job.snapshot")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                fail("the embedded default did not stop within 30 s of SIGTERM")
        if code != 0:
            fail(f"the embedded default exited with {code} after SIGTERM")
        log("SIGTERM: exit 0")


async def subscribe(port):
    import websockets
    async with websockets.connect(f"ws://127.0.0.1:{port}/?job_id=job_demo_0001&token=any&connection_id=image-check") as ws:
        return [json.loads(await asyncio.wait_for(ws.recv(), 20))["type"] for _ in range(2)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(ROOT / ".build-image"), help="working directory (kept between runs: the root filesystem is reused)")
    parser.add_argument("--dockerfile", default=str(DOCKERFILE), help="the Dockerfile to prove (default deploy/Dockerfile)")
    parser.add_argument("--idle-build", action="store_true",
                        help="run the build stage's commands at the kernel's idle priority (beside other work: the test run)")
    arguments = parser.parse_args()
    # Killed (the test run's cleanup sends SIGTERM to the group), unwind: the runtime stage's finally blocks stop its
    # bridge and unmount /proc and /dev from the root filesystem.
    signal.signal(signal.SIGTERM, lambda number, _: sys.exit(128 + number))
    global BUILD_PRIORITY
    if arguments.idle_build:
        if shutil.which("chrt") and subprocess.run(["chrt", "--idle", "0", "true"], capture_output=True).returncode == 0:
            BUILD_PRIORITY = ["chrt", "--idle", "0", "nice", "-n", "19"]
        else:
            log("chrt --idle is not available here: the build stage runs at nice 19")
            BUILD_PRIORITY = ["nice", "-n", "19"]
    work = pathlib.Path(arguments.work)
    if os.geteuid() != 0:
        fail("needs root (debootstrap, chroot, mount namespaces)")
    work.mkdir(parents=True, exist_ok=True)
    stages = parse_dockerfile(pathlib.Path(arguments.dockerfile))
    if len(stages) != 2 or stages[0]["name"] != "build":
        fail(f"expected two stages, the first named build; found {[(s['from'], s['name']) for s in stages]}")
    expected = re.search(r"swift-(\d+\.\d+)", subprocess.run(["swift", "--version"], capture_output=True, text=True).stdout)
    image = re.fullmatch(r"swift:(\d+\.\d+)(-[a-z]+)?", stages[0]["from"])
    if not image or not expected or image.group(1) != expected.group(1):
        fail(f"the build stage uses {stages[0]['from']}; CI builds and tests with Swift {expected.group(1) if expected else '?'}")
    log(f"build stage {stages[0]['from']} matches the toolchain CI tests with (Swift {expected.group(1)})")
    started = time.time()
    build_root = build_stage(stages[0], work, dockerignore())
    rootfs, env, user, workdir, entrypoint = runtime_stage(stages[1], build_root, work)
    check_runtime(rootfs, env, user, workdir, entrypoint)
    log(f"both stages proven in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
