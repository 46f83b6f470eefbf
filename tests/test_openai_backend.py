"""The `openai` backend against a real OpenAI-compatible server: llama.cpp from the `xllamacpp` wheel, serving
SmolLM2 as a GGUF file the run writes from the policy's weights. Bad-server cases use small HTTP servers that
answer what a broken server would."""

import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import smollm2_missing

pytest.importorskip("xllamacpp")
pytest.importorskip("openai")
if reason := smollm2_missing():
    pytest.skip(reason, allow_module_level=True)

from selfalign.config import ServerConfig  # noqa: E402
from selfalign.errors import ServerError  # noqa: E402
from selfalign.generation import SamplingParams, make_sampler  # noqa: E402
from selfalign.generation.server import stop_server  # noqa: E402
from selfalign.models.loading import load_policy  # noqa: E402

SMOL = "builtin:smollm2-135m-instruct"
LAUNCHER = Path(__file__).parent / "scripts" / "llama_server.py"
COMMAND = f"{sys.executable} {LAUNCHER} {{gguf}} {{port}}"
PROMPTS = ["Write a haiku about rain.", "Name three colors.", "What is 2+3?"]


def served(policy, checkpoint: str = SMOL, base: str = SMOL, **server):
    """The openai sampler for `policy`, loaded from `checkpoint`; `server` as in sampling.server (a test that
    hangs on a server fails within minutes instead)."""
    server = {"startup_timeout": 120, "timeout": 120, **server}
    return make_sampler("openai", policy, server=ServerConfig(**server), checkpoint=checkpoint, base=base)


@pytest.fixture(scope="module")
def smol():
    return load_policy(SMOL, dtype="float32")


@pytest.fixture(autouse=True, scope="module")
def _stop_server_after():
    yield
    stop_server()


def test_server_samples_what_the_policy_samples(smol):
    """Greedy completions from the served GGUF equal the HF sampler's; n samples per prompt come back in order."""
    greedy = SamplingParams(max_new_tokens=24)
    server = served(smol, command=COMMAND)
    remote = server.generate(PROMPTS, greedy)
    local = make_sampler("hf", smol).generate(PROMPTS, greedy)
    assert [g.text for g in remote] == [g.text for g in local]
    assert [g.n_tokens for g in remote] == [g.n_tokens for g in local]
    assert server.backend.startswith("openai server (llamacpp) serving ") and server.backend.endswith("-f32.gguf")

    sampled = server.generate(PROMPTS, SamplingParams(n=3, temperature=1.0, max_new_tokens=16, seed=1))
    assert [(g.prompt_index, g.sample_index) for g in sampled] == [(i, j) for i in range(3) for j in range(3)]
    assert len({g.text for g in sampled}) > 3  # sampled, not three copies of the greedy answer
    assert all(g.n_tokens <= 16 + 1 and g.n_tokens == len(g.token_ids) for g in sampled)


def test_a_trained_lora_checkpoint_is_served_merged(smol, tmp_path):
    """A LoRA checkpoint is served with its adapters merged: the restarted server's greedy answers are the trained
    policy's, which differ from the starting model's."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    trained = get_peft_model(
        load_policy(SMOL, dtype="float32").model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():
        for name, p in trained.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    trained.save_pretrained(tmp_path / "ckpt")
    smol.tokenizer.save_pretrained(tmp_path / "ckpt")
    policy = load_policy(str(tmp_path / "ckpt"), dtype="float32")
    greedy = SamplingParams(max_new_tokens=16)
    server = served(policy, str(tmp_path / "ckpt"), command=COMMAND)
    texts = [g.text for g in server.generate(PROMPTS, greedy)]
    assert texts == [g.text for g in make_sampler("hf", policy).generate(PROMPTS, greedy)]
    assert texts != [g.text for g in make_sampler("hf", smol).generate(PROMPTS, greedy)]
    assert server.backend.endswith(str(tmp_path / "ckpt" / "served" / "model-f32.gguf"))


def test_a_server_url_serves_only_the_starting_model(smol, tmp_path):
    with pytest.raises(ServerError, match="sampling.server.url serves one fixed model"):
        served(smol, str(tmp_path), url="http://127.0.0.1:9/v1")


def test_gguf_needs_a_gguf_builtin(tmp_path):
    policy = load_policy("builtin:arith-tiny")
    with pytest.raises(ServerError, match=r"uses \{gguf\}, which needs a model converted from a GGUF builtin"):
        served(policy, "builtin:arith-tiny", "builtin:arith-tiny", command=COMMAND)


class _BadServer(http.server.BaseHTTPRequestHandler):
    """Lists a model, then answers completions with `self.server.answer` (bytes)."""

    def do_GET(self):
        self._send(json.dumps({"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "bad"}]}).encode())

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send(self.server.answer)

    def _send(self, body: bytes):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # the sampler hangs up after the first bad answer, as it should
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)

    def log_message(self, *args):
        pass


def _choice(i: int) -> dict:
    return {"index": i, "text": "hi", "finish_reason": "stop"}


@pytest.mark.parametrize(
    "answer, message",
    [
        (b"{not json", "the server answered malformed JSON"),
        (json.dumps({"choices": [_choice(0)]}).encode(), "asked for n=2 completions of one prompt, got 1"),
        (json.dumps({"choices": [_choice(0), {"index": 1, "text": None}]}).encode(), "a malformed completion"),
    ],
)
def test_a_broken_server_is_a_clear_error(smol, answer, message):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BadServer)
    httpd.answer = answer
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        sampler = served(smol, url=url, retries=0)
        with pytest.raises(ServerError, match=message):
            sampler.generate(PROMPTS, SamplingParams(n=2, temperature=1.0, max_new_tokens=4))
    finally:
        httpd.shutdown()


def test_an_unreachable_or_dead_server_is_a_clear_error(smol):
    with pytest.raises(ServerError, match="listing the served model failed"):
        served(smol, url="http://127.0.0.1:9/v1", retries=0)
    dead = f"{sys.executable} -c 'import sys; print(\"no model\"); sys.exit(3)' {{port}}"
    with pytest.raises(ServerError, match=r"exited with code 3 before answering(.|\n)*no model"):
        served(smol, command=dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _server_pid(pidfile: Path, previous: int | None = None, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pidfile.is_file() and (text := pidfile.read_text().strip()) and int(text) != previous:
            return int(text)
        time.sleep(0.2)
    raise AssertionError("the run never started its server")


@pytest.mark.slow
def test_a_server_killed_mid_stage_fails_the_stage_cleanly_and_resume_finishes(tmp_path):
    """Kill the server while the first stage samples: the run stops with a one-line error and no stage written.
    SIGTERM the resumed run mid-stage: it stops its server. A second resume finishes the round, serving the
    trained checkpoint, with every record present once."""
    out = tmp_path / "run"
    pidfile = tmp_path / "server.pid"
    env = {**os.environ, "LLAMA_SERVER_PIDFILE": str(pidfile), "OMP_WAIT_POLICY": "PASSIVE"}
    config = Path(__file__).parents[1] / "configs" / "rejection_ifeval.yaml"
    overrides = [
        "task.n_train=4",
        "task.n_eval=24",
        "sampling.max_new_tokens=48",
        "params.rounds=1",
        "params.k=2",
        "params.min_score=0",  # every prompt's best sample is trained on: the round has a checkpoint to serve
        "training.steps=1",
        "training.batch_size=2",
        "sampling.backend=openai",
        f"sampling.server.command={COMMAND}",
        "sampling.server.retries=0",
        "sampling.server.startup_timeout=120",
        "sampling.server.timeout=120",
    ]
    cmd = [str(Path(sys.executable).parent / "selfalign"), "run", str(config), "--out", str(out), *overrides]

    run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid = _server_pid(pidfile)
    time.sleep(4)  # the eval stage is under way
    os.kill(pid, signal.SIGKILL)
    log = run.communicate(timeout=120)[0]
    assert run.returncode == 2, log
    assert "Traceback" not in log and "a request failed after 0 retries" in log, log
    assert not (out / "round-000" / "eval.jsonl").exists()

    resumed = subprocess.Popen([*cmd, "--resume"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pid = _server_pid(pidfile, previous=pid)
    time.sleep(4)
    resumed.send_signal(signal.SIGTERM)
    log = resumed.communicate(timeout=120)[0]
    assert resumed.returncode != 0 and "Traceback" not in log, log
    time.sleep(1)
    assert not _alive(pid), "the interrupted run left its server running"

    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    evals = [json.loads(line) for line in (out / "round-001" / "eval.jsonl").read_text().splitlines()]
    assert len(evals) == 24 and len({r["id"] for r in evals}) == 24
    assert {r["provenance"]["sampler"]["backend"] for r in evals} == {
        f"openai server (llamacpp) serving {out / 'round-001' / 'checkpoint' / 'served' / 'model-f32.gguf'}"
    }


def test_judges_read_their_verdicts_from_the_server(smol):
    """Pairwise and pointwise judges give the same probabilities from the server's top log-probs as in-process."""
    from selfalign.recipes.rlaif import RlaifParams
    from selfalign.scoring.pairwise import PairwiseJudge, PointwiseJudge

    server = served(smol, command=COMMAND).next_token_logprobs
    p = RlaifParams()
    prompts, a, b = PROMPTS, ["Rain falls softly.", "Red, blue, green.", "5"], ["No.", "Colors!", "2 + 3 = 6"]
    local = PairwiseJudge(smol, p.template, p.labels).judgements(prompts, a, b)
    remote = PairwiseJudge(smol, p.template, p.labels, engine=server).judgements(prompts, a, b)
    for x, y in zip(local, remote):
        assert y["valid"] and y["orders"] == pytest.approx(x["orders"], abs=0.02)
        assert y["label_mass"] == pytest.approx(x["label_mass"], rel=0.05)
    template = "{prompt}\nResponse: {response}\nRate the response from 1 to 5. Rating: "
    local = PointwiseJudge(smol, template).ratings(prompts, a)
    remote = PointwiseJudge(smol, template, engine=server).ratings(prompts, a)
    assert [r["score"] for r in remote] == pytest.approx([r["score"] for r in local], abs=0.03)
