"""LoRA adapters: Modelfile ADAPTER is uploaded, stored as an adapter layer, loaded by the
runner, and changes the output; a model with an adapter never shares a runner with its base."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import ollama
import pytest

from tests import tinygguf
from tests.conftest import CACHE, start_server, stop_server

pytestmark = pytest.mark.e2e


def test_adapter_from_modelfile(tmp_path: object) -> None:
    model = tinygguf.cached(CACHE)
    lora = tinygguf.write_lora(os.path.join(str(tmp_path), "lora.gguf"))
    srv = start_server(os.path.join(str(tmp_path), "srv"))
    try:
        client = ollama.Client(host=srv.url)
        for name, extra in (("tiny", ""), ("tinylora", f"ADAPTER {lora}\n")):
            mf = os.path.join(str(tmp_path), f"Modelfile.{name}")
            with open(mf, "w") as f:
                f.write(f"FROM {model}\n{extra}PARAMETER temperature 0\nPARAMETER num_predict 8\n")
            r = subprocess.run(
                [sys.executable, "-m", "pollama.cli.main", "create", name, "-f", mf],
                env=srv.env, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
        base = client.generate(model="tiny", prompt="hello world", raw=True)
        tuned = client.generate(model="tinylora", prompt="hello world", raw=True)
        assert base.eval_count and tuned.eval_count
        assert base.response != tuned.response  # the adapter changed what the model generates
        again = client.generate(model="tiny", prompt="hello world", raw=True)
        assert again.response == base.response  # and the base model runner is still plain
        assert "\nADAPTER " in client.show("tinylora").modelfile
        assert len(client.ps().models) == 2  # two runners: base and base+adapter
        # An adapter that is not a LoRA GGUF is refused at create time.
        digest = client.create_blob(model)
        with pytest.raises(ollama.ResponseError) as err:
            client.create(model="bad", from_="tiny", adapters={"x.gguf": digest})
        assert err.value.status_code == 400 and "not a GGUF LoRA adapter" in err.value.error
        r = httpx.post(f"{srv.url}/api/create", json={"model": "bad", "from": "tiny", "adapters": {
            "a": digest, "b": digest}, "stream": False})
        assert r.json() == {"error": "only one adapter is currently supported"}
    finally:
        stop_server(srv)
