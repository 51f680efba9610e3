"""A warm start for stage processes: a fork server that has torch, transformers, TRL and MLflow imported already.

Every DVC stage is its own process, and importing those libraries costs about 5 s, more than many stages compute.
So the first stage of a run starts a server (`python -m demo2reward.core.warm`) that imports them once and then
waits on a Unix socket in the repository's .tmp/. Each stage script's first call, `run_warm()`, hands its argv,
working directory, environment and standard streams to the server, which forks a child that runs the script
exactly as `python stages/<x>.py` would (with the stage's own PYTHONPATH, so a queued experiment runs its own copy
of the code), and the script's process waits for the child's exit code. Signals are forwarded; if the script's
process is killed, the child is killed too. The server exits after `IDLE_S` seconds without a stage.

The server imports no demo2reward module but this one, and the socket's name hashes this file, the interpreter and
the working directory, so an edit or another checkout starts a fresh server. `DEMO2REWARD_WARM=0` turns it off:
then a stage imports everything itself, as it would without this module; results are the same either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IDLE_S = 120
CHILD_ENV = "DEMO2REWARD_WARM_CHILD"  # set in a forked child, so that its run_warm() returns at once
STARTED_ENV = "DEMO2REWARD_STARTED"  # when the stage's own process started, for the start-up time it logs
CALLER_ENV = "DEMO2REWARD_CALLER_PID"  # the stage's own process, whose ancestor is the `dvc` that runs it
PRELOAD = (  # what every torch stage imports; demo2reward itself is imported fresh by each child
    "import numpy, torch, transformers, datasets, accelerate, peft, trl, mlflow, mlflow.tracking, psutil, yaml, pydantic",
    "from trl import SFTTrainer, RewardTrainer, DPOTrainer, RLOOTrainer, GRPOTrainer",
    "from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore",
)


def _socket_path(cwd: str) -> Path:
    """Short (a Unix socket's path has ~100 characters at most) and unique per code, interpreter and workspace."""
    key = hashlib.sha256("\0".join([Path(__file__).read_text(), sys.executable, cwd]).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"demo2reward-warm-{key}.sock"


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _send_msg(conn: socket.socket, obj) -> None:
    data = json.dumps(obj).encode()
    conn.sendall(len(data).to_bytes(4, "big") + data)


def _recv_msg(conn: socket.socket):
    return json.loads(_recv_exactly(conn, int.from_bytes(_recv_exactly(conn, 4), "big")))


# ----------------------------------------------------------------------------------------------------- the client


# Set in the stage's own process before any library is imported. Telemetry is off because its threads (MLflow's,
# huggingface_hub's) read the environment while accelerate clears and restores it (`clear_environment`, at every
# Trainer's creation): glibc's getenv racing a setenv segfaults (seen once: an oracle stage
# killed in a queued experiment, `dmesg` showing the fault in libc). The stages run offline, so nothing was sent anyway.
STAGE_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
}


def run_warm() -> None:
    """Run this stage script in the warm server and exit with its code; return (run cold) when that is not possible."""
    for key, value in STAGE_ENV.items():
        os.environ.setdefault(key, value)
    if os.environ.get(CHILD_ENV) or os.environ.get("DEMO2REWARD_WARM", "1") == "0" or not hasattr(socket, "AF_UNIX"):
        return
    if "WORLD_SIZE" in os.environ:
        return  # a rank under accelerate launch: its process group needs a process of its own
    os.environ.setdefault(STARTED_ENV, str(time.time()))
    os.environ[CALLER_ENV] = str(os.getpid())  # the forked child's ancestors are the server's, not DVC
    cwd = os.getcwd()
    path = _socket_path(cwd)
    conn = _connect(path) or _start_server(path, cwd)
    if conn is None:
        return
    with conn:
        try:
            request = {"argv": sys.argv, "cwd": cwd, "env": dict(os.environ), "path": sys.path}
            socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
            child = _recv_msg(conn)["pid"]
        except (OSError, ConnectionError, ValueError):
            return  # the server went away before the child started: run cold
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda s, _f: os.kill(child, s))
        try:
            code = _recv_msg(conn)["exit"]
        except (OSError, ConnectionError, ValueError):
            code = 137  # the child died without a word (killed)
    sys.stdout.flush()
    os._exit(code)


def _connect(path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
        return conn
    except OSError:
        conn.close()
        return None


def _start_server(path: Path, cwd: str, timeout_s: float = 120.0) -> socket.socket | None:
    log = path.with_suffix(".log").open("ab")
    subprocess.Popen(
        [sys.executable, "-m", "demo2reward.core.warm", str(path)],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # outlives this stage, and DVC's Ctrl-C does not reach it
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if conn := _connect(path):
            return conn
        time.sleep(0.05)
    return None


# ----------------------------------------------------------------------------------------------------- the server


def serve(path: Path) -> None:
    for key, value in STAGE_ENV.items():
        os.environ.setdefault(key, value)
    for line in PRELOAD:
        exec(line, {})
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped automatically
    if conn := _connect(path):  # another stage started a server meanwhile
        conn.close()
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a stale socket of a killed server
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_mask = os.umask(0o177)  # the socket runs code for whoever can connect: its owner only
    try:
        server.bind(str(path))
    finally:
        os.umask(old_mask)
    ours = path.stat().st_ino
    server.listen(16)
    server.settimeout(IDLE_S)
    try:
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                return
            msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
            if msg and os.fork() == 0:  # an empty message: a starting server probing whether this one is up
                try:
                    server.close()
                    _child(conn, json.loads(msg), fds)
                finally:
                    # A child never returns into this loop: the `finally` below would remove the socket, and every
                    # later stage would start a server of its own (6 s each, and the old one lingers).
                    os._exit(1)
            conn.close()
            for fd in fds:
                os.close(fd)
    finally:
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_ino == ours:  # not a newer server's socket at the same path
                path.unlink()


def _child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: become the stage's process, run its script, report the exit code."""
    import runpy
    import threading

    os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"], **{CHILD_ENV: "1"})
    argv = request["argv"]
    script = str(Path(argv[0]).resolve())
    sys.path[:] = request["path"]  # the stage process's own: its PYTHONPATH and editable installs
    for name in [m for m in sys.modules if m == "demo2reward" or m.startswith("demo2reward.")]:
        del sys.modules[name]  # the stage's own copy of the code, imported fresh
    sys.argv = argv
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    _send_msg(conn, {"pid": os.getpid()})

    def watchdog() -> None:  # the stage's process is gone (killed): so is the stage, after cleaning up what it
        with contextlib.suppress(OSError):  # started (the ranks of an `accelerate launch`, scratch folders)
            conn.recv(1)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watchdog, daemon=True).start()
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, int | None):
            print(exit_.code, file=sys.stderr)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    # Once the caller has the exit code it exits, and the watchdog then sends SIGTERM: the stage's own handler
    # (which raises SystemExit) must not run any more, so the signal just ends this process.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(OSError):
        _send_msg(conn, {"exit": code})
    os._exit(code)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
