"""A llama.cpp OpenAI-compatible server from the `xllamacpp` wheel (which has no command line), for tests:

    python tests/scripts/llama_server.py MODEL.gguf PORT [PARALLEL]

It serves until terminated, on all the machine's cores; with LLAMA_SERVER_PIDFILE set it writes its pid there
once it answers (tests kill it)."""

import os
import signal
import sys
from pathlib import Path

import xllamacpp

model, port = sys.argv[1], int(sys.argv[2])
parallel = int(sys.argv[3]) if len(sys.argv) > 3 else 4
params = xllamacpp.CommonParams()
params.model.path = model
params.port = port
params.n_parallel = parallel
params.n_ctx = 2048 * parallel  # llama.cpp splits the context across its parallel slots
params.cpuparams.n_threads = params.cpuparams_batch.n_threads = os.cpu_count() or 2
server = xllamacpp.Server(params)
if pidfile := os.environ.get("LLAMA_SERVER_PIDFILE"):
    Path(pidfile).write_text(str(os.getpid()))
signal.sigwait({signal.SIGTERM, signal.SIGINT})
