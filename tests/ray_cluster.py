"""A real two-node Ray cluster on 127.0.0.1 for the cluster tests: `ray start --head` and a second
node joining it, each `ray start --block` in its own session so that stopping it (SIGTERM) stops
the processes it started and nothing else on the machine (never `ray stop`, which stops every
Ray on it). Token authentication with a token file of its own; a short temp dir of its own
(Ray's socket paths must stay under the Unix limit).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_STARTED = "Ray runtime started"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalRayCluster:
    """start() two nodes of `cpus_per_node` CPUs; `address`, `env` (for drivers); stop()."""

    def __init__(self, cpus_per_node: int = 1, object_store_bytes: int = 100 * 1024**2) -> None:
        self.cpus_per_node = cpus_per_node
        self.object_store_bytes = object_store_bytes
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ar-", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        token = self.temp_dir / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        user = self.temp_dir / "user"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_USAGE_STATS_ENABLED": "0",
            # The workers' own user folders (their node caches, the Linear choice), not the user's.
            "ANNOTATOR_CACHE_DIR": str(user / "cache"),
            "ANNOTATOR_DATA_DIR": str(user / "data"),
            "ANNOTATOR_CONFIG_DIR": str(user / "config"),
            "ANNOTATOR_LOG_DIR": str(user / "logs"),
        }
        self.env.pop("RAY_ADDRESS", None)
        self._nodes: list[tuple[subprocess.Popen, Path]] = []

    def _start_node(self, name: str, *args: str) -> None:
        log = self.temp_dir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("ray")),
                    "start",
                    *args,
                    "--node-ip-address=127.0.0.1",
                    f"--num-cpus={self.cpus_per_node}",
                    f"--object-store-memory={self.object_store_bytes}",
                    "--disable-usage-stats",
                    "--block",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self._nodes.append((process, log))
        deadline = time.monotonic() + 120
        while _STARTED not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start {name} failed:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)

    def start(self) -> LocalRayCluster:
        try:
            self._start_node(
                "head",
                "--head",
                f"--port={self.port}",
                f"--temp-dir={self.temp_dir}",
                "--include-dashboard=false",
            )
            self._start_node("node2", f"--address={self.address}")
            self.wait_for_nodes(2)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_for_nodes(self, count: int) -> None:
        code = (
            "import ray, time\n"
            f"ray.init(address={self.address!r}, logging_level='ERROR')\n"
            "deadline = time.monotonic() + 60\n"
            f"while sum(n['Alive'] for n in ray.nodes()) < {count}:\n"
            "    assert time.monotonic() < deadline, ray.nodes()\n"
            "    time.sleep(0.2)\n"
        )
        subprocess.run([sys.executable, "-c", code], env=self.env, check=True, timeout=120)

    def processes(self) -> list[int]:
        """Pids of processes whose command line names this cluster's temp dir."""
        mark = str(self.temp_dir).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if mark in cmdline:
                pids.append(int(entry.name))
        return pids

    def workers(self, title: str = "ray::") -> list[int]:
        """Pids of the worker processes of this cluster's raylets whose title starts with
        `title` (a Ray worker renames itself `ray::ClassName` once it runs an actor)."""
        ours = set(self.processes())
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent in ours and cmdline.startswith(title.encode()):
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        for process, _ in reversed(self._nodes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # `ray start --block` stops its processes
        for process, _ in self._nodes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for pid in self.processes() + self.workers():  # anything of ours that outlived its node
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)
