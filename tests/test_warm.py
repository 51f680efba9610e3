"""The warm server stays the one server of a workspace: nothing a stage's child does, and no probe of a starting
server, removes its socket. (Each child that did made the next stage start a server of its own: 6 s, and the
old one lingered for its idle time; 40 times in one 3-seed run.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

from demo2reward.core import warm
from tests.conftest import ROOT

SCRIPT = """
import os, signal, sys
from demo2reward.core.warm import run_warm

run_warm()
signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))  # what every stage installs (core.stage)
print(os.getpid())
"""


def _serving(path) -> bool:
    conn = warm._connect(path)
    if conn is None:
        return False
    conn.close()  # a probe, as a starting server sends
    return True


def test_probes_failed_children_and_finished_stages_leave_the_server_serving(tmp_path):
    path = warm._socket_path(str(tmp_path))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "DEMO2REWARD_WARM": "1"}
    env.pop(warm.CHILD_ENV, None)
    server = subprocess.Popen([sys.executable, "-m", "demo2reward.core.warm", str(path)], cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 120
        while not _serving(path):
            assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        inode = path.stat().st_ino

        for _ in range(3):  # probes: connect and close without a request
            assert _serving(path)
        time.sleep(0.5)
        assert path.exists() and path.stat().st_ino == inode

        # A child that fails before it runs the script (its working directory is gone) closes the connection.
        with warm._connect(path) as conn:
            request = {"argv": ["x.py"], "cwd": str(tmp_path / "gone"), "env": {}, "path": sys.path}
            socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
            assert conn.recv(1) == b""
        time.sleep(0.5)
        assert path.exists() and path.stat().st_ino == inode, "a failed child removed the server's socket"

        (tmp_path / "stage.py").write_text(SCRIPT)
        pids = set()
        for _ in range(8):
            out = subprocess.run([sys.executable, "stage.py"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
            pids.add(int(out.stdout))
            assert path.stat().st_ino == inode, "a finished stage's child removed the server's socket"
        assert len(pids) == 8 and server.poll() is None
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        path.unlink(missing_ok=True)
