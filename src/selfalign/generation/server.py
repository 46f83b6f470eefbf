"""A server process the run starts for the `openai` backend: the checkpoint it serves, made into the files the
command needs, started from `sampling.server.command`, waited for, restarted when the checkpoint changes and
stopped on exit, Ctrl-C or SIGTERM. One server per process, reused by consecutive stages on one checkpoint."""

from __future__ import annotations

import atexit
import copy
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selfalign.errors import ServerError
from selfalign.models.gguf import GGUF_BUILTINS, converted_path, export_gguf, gguf_file
from selfalign.models.loading import BUILTIN_PREFIX, Policy, merged_weights, resolve_model_path

PLACEHOLDERS = ("model", "gguf", "port")


def served_files(policy: Policy, checkpoint: str, base: str, command: str) -> dict[str, str]:
    """The placeholders `command` uses, filled for `checkpoint` (whose weights `policy` holds): {model} a full HF
    directory (LoRA adapters merged into `<checkpoint>/served/`), {gguf} an fp32 GGUF file next to it, with the
    metadata of the GGUF file that `base` (the run's model.path) was converted from. Made once, atomically."""
    used = {name for name in PLACEHOLDERS if "{" + name + "}" in command}
    resolved = Path(resolve_model_path(checkpoint))
    adapter = (resolved / "adapter_config.json").is_file()
    served = resolved / "served" if adapter else resolved
    out = {}
    if "model" in used:
        if adapter and not (served / "config.json").is_file():
            tmp = Path(tempfile.mkdtemp(prefix=".served-", dir=resolved))
            try:
                copy.deepcopy(policy.model).merge_and_unload().save_pretrained(tmp)
                policy.tokenizer.save_pretrained(tmp)
                os.replace(tmp, served)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        out["model"] = str(served)
    if "gguf" in used:
        name = base.removeprefix(BUILTIN_PREFIX)
        if not base.startswith(BUILTIN_PREFIX) or name not in GGUF_BUILTINS:
            raise ServerError(
                f"sampling.server.command uses {{gguf}}, which needs a model converted from a GGUF builtin"
                f" ({', '.join(BUILTIN_PREFIX + n for n in GGUF_BUILTINS)}); model.path is {base!r}: serve {{model}}"
            )
        # the starting model's file lives beside its converted checkpoint, a trained one's inside the checkpoint
        dest = (converted_path(name) if resolved == converted_path(name) else served) / "model-f32.gguf"
        if not dest.is_file():
            dest.parent.mkdir(exist_ok=True)
            export_gguf(merged_weights(policy.model), gguf_file(name)[0], dest)
        out["gguf"] = str(dest)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the run's process dies, even by SIGKILL, so no server outlives its run."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class LocalServer:
    """One server process: `command` (placeholders filled) started in its own process group."""

    def __init__(self, command: str, port: int, startup_timeout: float):
        self.command, self.port, self.startup_timeout = command, port or _free_port(), startup_timeout
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = Path(tempfile.mkstemp(prefix="selfalign-server-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def log_tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:] if self.log.is_file() else []
        return "\n".join("  | " + line for line in text)

    def start(self) -> None:
        cmd = self.command.replace("{port}", str(self.port))
        with open(self.log, "wb") as log:
            try:
                self.proc = subprocess.Popen(
                    shlex.split(cmd),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Ctrl-C reaches the run, which then stops the server itself
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                )
            except OSError as e:
                raise ServerError(f"sampling.server.command could not start ({cmd}): {e}") from None
        import openai

        probe = openai.OpenAI(
            base_url=self.url, api_key=os.environ.get("OPENAI_API_KEY", "none"), max_retries=0, timeout=5
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerError(
                    f"the server exited with code {self.proc.returncode} before answering ({cmd});"
                    f" its log {self.log}:\n{self.log_tail()}"
                )
            try:
                probe.models.list()
                return
            except openai.APIError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServerError(
                    f"the server did not answer at {self.url} within {self.startup_timeout:g} s"
                    f" (sampling.server.startup_timeout); its log {self.log}:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


_SERVER: LocalServer | None = None  # the process's one started server


def serving(command: str, port: int, startup_timeout: float) -> LocalServer:
    """The process's server for `command` (placeholders but {port} filled): the running one if it is the same
    command and still alive, else a fresh start after stopping the old one."""
    global _SERVER
    if _SERVER is not None and _SERVER.command == command and _SERVER.alive():
        return _SERVER
    stop_server()
    _SERVER = LocalServer(command, port, startup_timeout)
    _SERVER.start()
    return _SERVER


def stop_server() -> None:
    global _SERVER
    if _SERVER is not None:
        _SERVER.stop()
        _SERVER = None


atexit.register(stop_server)
